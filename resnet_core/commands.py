"""Engine commands for the CLI (train, eval, lesion, probe, bench); filled in by the training engine."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    return None
