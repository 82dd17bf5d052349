"""Forward FLOPs, counted by torch's own FlopCounterMode (a multiply-add counts as 2 FLOPs)."""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from .config import ModelConfig
from .model import build_model


def forward_flops(cfg: ModelConfig, image_size: int, batch: int = 1) -> int:
    """FLOPs of one forward pass, counted on the meta device (no memory, no compute)."""
    with torch.device("meta"):
        model = build_model(cfg).eval()
        x = torch.empty(batch, cfg.in_channels, image_size, image_size)
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


def train_flops(cfg: ModelConfig, image_size: int, images: int) -> float:
    """FLOPs of training on `images` images: 3 × the forward FLOPs each (the backward pass costs about twice the
    forward), e.g. ResNet-20 at 32×32: 1.2e8 per image, 6.1e12 per CIFAR-10 epoch."""
    return 3.0 * forward_flops(cfg, image_size) * images
