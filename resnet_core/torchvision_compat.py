"""Name mapping between torchvision's ResNets and ours, for parity checks and loading torchvision weights."""
from __future__ import annotations

import re

import torch

_RULES = [
    (r"^conv1\.", "stem.conv."),
    (r"^bn1\.", "stem.bn."),
    (r"^layer(\d+)\.(\d+)\.downsample\.0\.", r"stage\1.block\2.shortcut.conv."),
    (r"^layer(\d+)\.(\d+)\.downsample\.1\.", r"stage\1.block\2.shortcut.bn."),
    (r"^layer(\d+)\.(\d+)\.", r"stage\1.block\2."),
]


def from_torchvision_key(key: str) -> str:
    """``layer1.0.downsample.0.weight`` → ``stage1.block0.shortcut.conv.weight``; ``fc.*`` is unchanged."""
    for pattern, repl in _RULES:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return key


def from_torchvision_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {from_torchvision_key(k): v for k, v in state.items()}
