"""resnet_core: residual networks from pluggable parts, the training engine, probes and the run record.

Its names are imported on first use (PEP 562), so that `import resnet_core.cli` stays light: the command line says
it is loading before torch is imported."""
from __future__ import annotations

import importlib
from typing import Any

_HOMES = {"ModelConfig": "config", "ConfigError": "errors", "ResNet": "model", "build_model": "model",
          "count_params": "model", "fuse_state_dicts": "model", "load_member_state_dict": "model",
          "member_state_dict": "model", "train": "engine", "train_members": "engine", "RunResult": "engine"}

__all__ = ["ModelConfig", "ConfigError", "ResNet", "build_model", "count_params", "fuse_state_dicts",
           "load_member_state_dict", "member_state_dict"]


def __getattr__(name: str) -> Any:
    """`resnet_core.build_model`, `resnet_core.train(config, run_dir)`, …: imported from their module on first use."""
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
