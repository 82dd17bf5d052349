"""Global pooling: ``[B, G·C, H, W]`` → ``[B, G·C]``. GAP (`avg`) and GMP (`max`) are einops reductions; GeM (`gem`)
learns its exponent.

A pooling factory is called as ``factory(channels=C, members=G)`` (keyword-only) and returns the module; register
one with ``@POOLINGS.register(name, label=...)``.
"""
from __future__ import annotations

from typing import Protocol

import torch
from einops import reduce, repeat
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


class GeneralizedMeanPool(nn.Module):
    """GeM (Radenović, Tolias & Chum 2018): ``mean_hw(max(x, eps)^p)^(1/p)``, a learnable p per fused member (``[G]``,
    initialised to 3): p = 1 is GAP, p → ∞ approaches GMP. ``[B, G·C, H, W]`` → ``[B, G·C]``."""

    def __init__(self, members: int, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.kind, self.eps = "gem", eps
        self.p = nn.Parameter(torch.full((members,), float(p)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = repeat(self.p, "g -> (g c)", c=x.shape[1] // self.p.numel()).to(x.dtype)
        mean = reduce(x.clamp(min=self.eps).pow(p[:, None, None]), "b c h w -> b c", "mean")
        return mean.pow(1.0 / p)

    def extra_repr(self) -> str:
        return f"gem, eps={self.eps}"


@POOLINGS.register("gem", label="GeM")
def generalized_mean_pool(*, channels: int, members: int) -> nn.Module:
    return GeneralizedMeanPool(members)
