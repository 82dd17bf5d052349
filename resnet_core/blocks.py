"""Residual blocks: a block kind lists its convs; a placement orders BN/ReLU/add; a shortcut is passed in.

As in torchvision's `_make_layer`, the builder makes the shortcut and hands it to the block, which only calls it.
Each block can be lesioned (Veit et al. 2016): it is replaced by its shortcut — the identity where the shapes match,
in a plain block too, so plain and residual nets are lesioned on equal footing. A plain block that changes the shape
(a stage entry) has no shortcut to fall back on and cannot be lesioned (`lesionable`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import einops

import torch
from torch import nn

from .errors import ConfigError
from .layers import conv, norm
from .placements import Placement
from .registry import Registry


@dataclass(frozen=True)
class ConvSpec:
    in_ch: int
    out_ch: int
    kernel: int
    stride: int


class BlockKind(Protocol):
    """``kind(in_ch=, width=, stride=)`` → the block's convs in order; its output channels are the last conv's.
    The number of convs sets the depth a stage layout gives (`families.depth_of`)."""

    def __call__(self, *, in_ch: int, width: int, stride: int) -> list[ConvSpec]: ...


BLOCKS: Registry[BlockKind] = Registry("model.block")


def convs_per_block(block: str) -> int:
    """How many convs a block of this kind has (2 basic, 3 bottleneck). ConfigError for an unknown kind."""
    return len(BLOCKS.get(block)(in_ch=1, width=1, stride=1))


@BLOCKS.register("basic")
def basic(*, in_ch: int, width: int, stride: int) -> list[ConvSpec]:
    """Two 3×3 convs."""
    return [ConvSpec(in_ch, width, 3, stride), ConvSpec(width, width, 3, 1)]


@BLOCKS.register("bottleneck")
def bottleneck(*, in_ch: int, width: int, stride: int) -> list[ConvSpec]:
    """1×1 reduce, 3×3 (strided, as torchvision's v1.5), 1×1 expand ×4."""
    return [ConvSpec(in_ch, width, 1, 1), ConvSpec(width, width, 3, stride), ConvSpec(width, 4 * width, 1, 1)]


class ResidualBlock(nn.Module):
    """conv1…convK with bn1…bnK, a shortcut (or None for a plain net), and a placement that wires them."""

    def __init__(self, convs: list[ConvSpec], placement: Placement, shortcut: nn.Module | None, members: int,
                 bias: bool) -> None:
        super().__init__()
        self.placement = placement
        self.n_convs = len(convs)
        self.in_ch, self.out_ch = convs[0].in_ch, convs[-1].out_ch
        self.keeps_shape = self.in_ch == self.out_ch and all(c.stride == 1 for c in convs)
        for i, c in enumerate(convs, start=1):
            self.add_module(f"conv{i}", conv(c.in_ch, c.out_ch, c.kernel, c.stride, members, bias=bias))
            self.add_module(f"bn{i}", norm(c.in_ch if placement.bn_before_conv else c.out_ch, members))
        self.shortcut = shortcut
        self.shortcut_projects = bool(getattr(shortcut, "projects", False))
        self.lesioned = False  # test-time switch: the block becomes its shortcut (Veit et al. 2016)
        self.members = members
        # per-member 0/1 on the shortcut (fused plain + residual members); not saved: it follows from the configs
        self.register_buffer("shortcut_gate", None, persistent=False)

    def set_shortcut_gate(self, gates: Sequence[bool]) -> None:
        """Multiply member g's shortcut by gates[g] (1: residual, 0: plain)."""
        if self.shortcut is None:
            raise ConfigError("a block without a shortcut cannot gate it; build the fused model with identity")
        like = next(self.parameters())
        gate = torch.tensor([float(g) for g in gates], dtype=like.dtype, device=like.device)
        self.shortcut_gate = einops.repeat(gate, "g -> 1 (g c) 1 1", c=self.out_ch)

    def zero_init_last(self) -> None:
        """Zero the layer that ends the residual branch (Goyal et al. 2017; torchvision's zero_init_residual), so
        the block starts as its post-addition function of the shortcut: the last BN's weight, or under full
        pre-activation the last conv's weight, as the placement's ``zero_init`` says ("none": nothing to zero)."""
        if self.placement.zero_init == "last_bn":
            nn.init.zeros_(self.bn(self.n_convs).weight)
        elif self.placement.zero_init == "last_conv":
            nn.init.zeros_(self.conv(self.n_convs).weight)

    def conv(self, i: int) -> nn.Conv2d:
        return getattr(self, f"conv{i}")

    def bn(self, i: int) -> nn.BatchNorm2d:
        return getattr(self, f"bn{i}")

    @property
    def has_shortcut(self) -> bool:
        return self.shortcut is not None

    def shortcut_of(self, x: torch.Tensor) -> torch.Tensor | None:
        return self.shortcut(x) if self.shortcut is not None else None

    def merge(self, branch: torch.Tensor, shortcut: torch.Tensor | None) -> torch.Tensor:
        """branch + shortcut; a plain block passes the branch alone; a lesioned block passes the shortcut alone."""
        if shortcut is not None and self.shortcut_gate is not None:
            shortcut = shortcut * self.shortcut_gate.to(shortcut.dtype)
        if self.lesioned:
            return shortcut if shortcut is not None else torch.zeros_like(branch)
        return branch if shortcut is None else branch + shortcut

    @property
    def lesionable(self) -> bool:
        """A residual block (its shortcut remains) or a plain block whose output has its input's shape (the identity
        remains); a plain stage-entry block has nothing to fall back on."""
        return self.shortcut is not None or self.keeps_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.lesioned and self.shortcut is None:
            return x  # a lesioned plain block is the identity, as a lesioned residual block of the same shape is
        return self.placement.forward(self, x)
