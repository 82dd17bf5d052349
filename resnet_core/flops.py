"""Forward FLOPs, counted by torch's own FlopCounterMode (a multiply-add counts as 2 FLOPs)."""
from __future__ import annotations

import json

import torch
from torch.utils.flop_counter import FlopCounterMode

from .config import ModelConfig
from .model import build_model


# (model config as sorted JSON, image size) → forward FLOPs per image, counted once per process: a sweep's launch
# counts them in the shape check's forward (`feasibility.check_forward`) and its time estimate reads them here
_COUNTED: dict[tuple[str, int], int] = {}


def _key(cfg: ModelConfig, image_size: int) -> tuple[str, int]:
    return json.dumps(cfg.to_dict(), sort_keys=True), image_size


def counting_forward(model: torch.nn.Module, x: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """``model(x)`` (x: ``[B, C, H, W]``, H = W), its forward FLOPs per image remembered for `forward_flops`."""
    with FlopCounterMode(display=False) as counter:
        out = model(x)
    _COUNTED[_key(cfg, x.shape[-1])] = counter.get_total_flops() // x.shape[0]
    return out


def forward_flops(cfg: ModelConfig, image_size: int, batch: int = 1) -> int:
    """FLOPs of one forward pass of ``batch`` images of ``image_size`` × ``image_size``, counted on the meta device
    (no memory, no compute) once per model and size."""
    key = _key(cfg, image_size)
    if key not in _COUNTED:
        with torch.device("meta"):
            model = build_model(cfg).eval()
            x = torch.empty(1, cfg.in_channels, image_size, image_size)
        counting_forward(model, x, cfg)
    return _COUNTED[key] * batch


def train_flops(cfg: ModelConfig, image_size: int, images: int) -> float:
    """FLOPs of training on `images` images: 3 × the forward FLOPs each (the backward pass costs about twice the
    forward), e.g. ResNet-20 at 32×32: 1.2e8 per image, 6.1e12 per CIFAR-10 epoch."""
    return 3.0 * forward_flops(cfg, image_size) * images
