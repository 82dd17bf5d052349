"""Global pooling: ``[B, G·C, H, W]`` → ``[B, G·C]``. GAP (`avg`) and GMP (`max`) are einops reductions.

A pooling factory is called as ``factory(channels=C, members=G)`` (keyword-only) and returns the module; register
one with ``@POOLINGS.register(name, label=...)``.
"""
from __future__ import annotations

from typing import Protocol

import torch
from einops import reduce
from torch import nn

from .registry import Registry


class PoolingFactory(Protocol):
    def __call__(self, *, channels: int, members: int) -> nn.Module: ...


POOLINGS: Registry[PoolingFactory] = Registry("model.pooling")


class GlobalPool(nn.Module):
    """A parameter-free reduction over H and W (einops' "mean" or "max")."""

    def __init__(self, kind: str, reduction: str) -> None:
        super().__init__()
        self.kind, self.reduction = kind, reduction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reduce(x, "b c h w -> b c", self.reduction)

    def extra_repr(self) -> str:
        return self.kind


@POOLINGS.register("avg", label="GAP")
def global_avg_pool(*, channels: int, members: int) -> nn.Module:
    return GlobalPool("avg", "mean")


@POOLINGS.register("max", label="GMP")
def global_max_pool(*, channels: int, members: int) -> nn.Module:
    return GlobalPool("max", "max")
