"""CLI commands of the sweeps package (registered through the resnet_ablate.commands entry point)."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Adds `sweep` and `studies` (being built)."""
    return None
