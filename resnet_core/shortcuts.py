"""Shortcut registry: what a residual block adds to its branch (He et al. 2016, options A/B/C)."""
from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from .layers import conv, norm, zero_pad_channels
from .registry import Registry


class Identity(nn.Module):
    """x itself. `projects` tells a pre-activation block whether to feed it the raw or the pre-activated input."""

    projects = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class ZeroPadShortcut(nn.Module):
    """Option A where the shape changes: strided subsampling plus zero-padded channels, per member. No parameters."""

    projects = False

    def __init__(self, out_ch: int, stride: int, members: int) -> None:
        super().__init__()
        self.out_ch, self.stride, self.members = out_ch, stride, members

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return zero_pad_channels(x, self.out_ch, self.members)


class Projection(nn.Module):
    """Option B/C: a k×k strided conv, then BN (unless `with_norm` is off, as in seed 002)."""

    projects = True

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, members: int, with_norm: bool,
                 bias: bool) -> None:
        super().__init__()
        self.conv = conv(in_ch, out_ch, kernel, stride, members, bias=bias)
        self.bn = norm(out_ch, members) if with_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.bn(x) if self.bn is not None else x


class ShortcutFactory(Protocol):
    """``factory(in_ch=, out_ch=, stride=, members=, project=, with_norm=, bias=)`` → a module mapping the block's
    input ``[B, G·in_ch, H, W]`` to ``[B, G·out_ch, H/stride, W/stride]``, or None (a plain block). ``project``: the
    config asks for a projection even where the shapes match (option C, or a stage entry in seed 001)."""

    def __call__(self, *, in_ch: int, out_ch: int, stride: int, members: int, project: bool, with_norm: bool,
                 bias: bool) -> nn.Module | None: ...


# ``option``: He et al.'s letter without project_all (the reports turn B into C when every block projects);
# ``projection``: model.project_all / project_stage_entry may ask this shortcut to project.
SHORTCUTS: Registry[ShortcutFactory] = Registry("model.shortcut")


@SHORTCUTS.register("identity", option="A")
def identity_shortcut(*, in_ch: int, out_ch: int, stride: int, members: int, project: bool, with_norm: bool,
                      bias: bool) -> nn.Module:
    if stride == 1 and in_ch == out_ch:
        return Identity()
    return ZeroPadShortcut(out_ch, stride, members)


def _projection(kernel: int) -> ShortcutFactory:
    def make(*, in_ch: int, out_ch: int, stride: int, members: int, project: bool, with_norm: bool,
             bias: bool) -> nn.Module:
        if stride == 1 and in_ch == out_ch and not project:
            return Identity()
        return Projection(in_ch, out_ch, kernel, stride, members, with_norm, bias)

    return make


SHORTCUTS.register("conv1x1", option="B", projection=True)(_projection(1))
SHORTCUTS.register("conv3x3", option="B3", projection=True)(_projection(3))


@SHORTCUTS.register("none", option="plain")
def no_shortcut(*, in_ch: int, out_ch: int, stride: int, members: int, project: bool, with_norm: bool,
                bias: bool) -> None:
    return None
