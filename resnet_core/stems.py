"""Stems: the layers before the first stage."""
from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .layers import conv, norm
from .registry import Registry


class Stem(nn.Module):
    """conv, then optional BN, ReLU and max-pool (one op per line)."""

    def __init__(self, conv_layer: nn.Conv2d, bn: nn.BatchNorm2d | None, relu: bool, pool: bool) -> None:
        super().__init__()
        self.conv = conv_layer
        self.bn = bn
        self.relu = relu
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if pool else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.relu:
            x = F.relu(x)
        if self.pool is not None:
            x = self.pool(x)
        return x


class StemFactory(Protocol):
    """``factory(in_ch=, out_ch=, members=, bias=, with_norm=, with_relu=)`` → a module ``[B, G·in_ch, H, W]`` →
    ``[B, G·out_ch, H', W']``; ``with_norm``/``with_relu``: what the placement asks the stem to end with."""

    def __call__(self, *, in_ch: int, out_ch: int, members: int, bias: bool, with_norm: bool,
                 with_relu: bool) -> nn.Module: ...


# ``input_size``: the image size a net with this stem is usually run at (`models` quotes FLOPs there); a stem
# registered without one is described at its family's stem's size
STEMS: Registry[StemFactory] = Registry("model.stem")


@STEMS.register("cifar", input_size=32)
def cifar_stem(*, in_ch: int, out_ch: int, members: int, bias: bool, with_norm: bool, with_relu: bool) -> Stem:
    """3×3/1 conv; BN and ReLU as the placement asks (full pre-activation leaves them to the first block)."""
    return Stem(conv(in_ch, out_ch, 3, 1, members, bias), norm(out_ch, members) if with_norm else None,
                with_relu, pool=False)


@STEMS.register("imagenet", input_size=224)
def imagenet_stem(*, in_ch: int, out_ch: int, members: int, bias: bool, with_norm: bool, with_relu: bool) -> Stem:
    """7×7/2 conv, BN, ReLU, 3×3/2 max-pool (always normalised, as in both ImageNet papers)."""
    return Stem(conv(in_ch, out_ch, 7, 2, members, bias), norm(out_ch, members), True, pool=True)
