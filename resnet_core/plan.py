"""What a run config will run on this machine, without training: `train --print-config` and
`sweep --print-config` print it.

The engine itself resolves it (its trainer is built in a throwaway folder and closed before a step): the model with
the dataset's channels and classes, the device ``auto`` picks, and the precision, memory format, fast path and
threads the run will use — the values its ``summary.json`` will record, not guesses beside them.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from .devices import precision_name
from .engine import Trainer
from .run_config import RunConfig


def plan(cfg: RunConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the run config as the run will write it to config.yaml, with ``device`` resolved; what will run:
    ``device``, ``precision``, ``memory_format``, ``fast_path``, ``threads``). ConfigError as `train` raises it."""
    with tempfile.TemporaryDirectory(prefix="resnet-ablate-plan-") as tmp:
        trainer = Trainer([cfg], [Path(tmp) / "run"], callbacks=[])
        try:
            config = dict(trainer.members[0].resolved)
            path = trainer.path
            ran = {"device": str(trainer.device), "precision": precision_name(path.amp, path.dtype),
                   "memory_format": "channels_last" if path.channels_last else "contiguous",
                   "fast_path": path.fast,
                   "threads": torch.get_num_threads() if trainer.device.type == "cpu" else None}
        finally:
            trainer.close()
    config["device"] = ran["device"]
    return config, ran


def describe(ran: dict[str, Any], threads: str | None = None) -> str:
    """A YAML comment line saying what will run (``threads``: a text that replaces the thread count)."""
    n = threads or (f"{ran['threads']} thread{'s' if ran['threads'] != 1 else ''}" if ran.get("threads") else None)
    parts = [f"device {ran['device']}", f"precision {ran['precision']}", f"memory format {ran['memory_format']}",
             f"fast path {ran['fast_path']}", *([n] if n else [])]
    return "# will run: " + ", ".join(parts)
