"""Global pooling, written with einops.reduce: GAP (`avg`) or GMP (`max`)."""
from __future__ import annotations

import torch
from einops import reduce
from torch import nn

from .registry import Registry

POOLINGS: Registry[str] = Registry("model.pooling")
POOLINGS.register("avg")("mean")
POOLINGS.register("max")("max")


class GlobalPool(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.reduction = POOLINGS.get(kind)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reduce(x, "b c h w -> b c", self.reduction)

    def extra_repr(self) -> str:
        return self.kind
