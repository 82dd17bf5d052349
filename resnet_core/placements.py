"""Activation placements inside a residual unit (He et al. 2016b, Fig. 4 / Table 2).

A block owns ``conv1…convK`` and ``bn1…bnK`` (K = 2 basic, 3 bottleneck). A placement decides where BN and ReLU
go, where the addition sits, and what the stem and the network's end add around the blocks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .errors import choices_error
from .registry import Registry


ZERO_INITS = ("last_bn", "last_conv", "none")


@dataclass(frozen=True, kw_only=True)
class Placement:
    """Where BN, ReLU and the addition go. All fields are keyword-only; the flags default to the original
    (post-activation) unit, so a new placement names only what differs."""
    name: str
    forward: Callable[[Any, torch.Tensor], torch.Tensor]  # (block, x) -> y, x and y [B, G·C, H, W]
    bn_before_conv: bool = False  # bn_i normalises conv_i's input (pre) rather than its output
    stem_norm: bool = True        # the CIFAR stem ends conv-BN …
    stem_relu: bool = True        # … and ReLU
    final_norm: bool = False      # a BN-ReLU after the last block (full pre-activation)
    final_relu: bool = False
    zero_init: str = "last_bn"    # what `ResidualBlock.zero_init_last` zeroes: last_bn | last_conv | none

    def __post_init__(self) -> None:
        if self.zero_init not in ZERO_INITS:
            raise choices_error(f"placement {self.name!r} zero_init", self.zero_init, ZERO_INITS)


PLACEMENTS: Registry[Placement] = Registry("model.activation")


def _branch_post(blk, x: torch.Tensor, relu_last: bool, norm_last: bool) -> torch.Tensor:
    out = x
    for i in range(1, blk.n_convs + 1):
        out = blk.conv(i)(out)
        if i < blk.n_convs or norm_last:
            out = blk.bn(i)(out)
        if i < blk.n_convs or relu_last:
            out = F.relu(out)
    return out


def _post(blk, x):
    out = _branch_post(blk, x, relu_last=False, norm_last=True)
    return F.relu(blk.merge(out, blk.shortcut_of(x)))


def _bn_after_add(blk, x):
    out = _branch_post(blk, x, relu_last=False, norm_last=False)
    return F.relu(blk.bn(blk.n_convs)(blk.merge(out, blk.shortcut_of(x))))


def _relu_before_add(blk, x):
    out = _branch_post(blk, x, relu_last=True, norm_last=True)
    return blk.merge(out, blk.shortcut_of(x))


def _relu_only_pre(blk, x):
    out = x
    for i in range(1, blk.n_convs + 1):
        out = blk.bn(i)(blk.conv(i)(F.relu(out)))
    return blk.merge(out, blk.shortcut_of(x))


def _full_pre(blk, x):
    pre = F.relu(blk.bn(1)(x))
    shortcut = blk.shortcut_of(pre if blk.shortcut_projects else x)
    out = blk.conv(1)(pre)
    for i in range(2, blk.n_convs + 1):
        out = blk.conv(i)(F.relu(blk.bn(i)(out)))
    return blk.merge(out, shortcut)


LABELS = {"post": "post-act", "pre": "pre-act", "bn_after_add": "BN after add",
          "relu_before_add": "ReLU before add", "relu_only_pre": "ReLU-only pre-act"}
for _p in (
    Placement(name="post", forward=_post),
    Placement(name="bn_after_add", forward=_bn_after_add, zero_init="none"),
    Placement(name="relu_before_add", forward=_relu_before_add),
    Placement(name="relu_only_pre", forward=_relu_only_pre, stem_relu=False, final_relu=True),
    Placement(name="pre", forward=_full_pre, bn_before_conv=True, stem_norm=False, stem_relu=False, final_norm=True,
              final_relu=True, zero_init="last_conv"),
):
    PLACEMENTS.register(_p.name, label=LABELS[_p.name])(_p)
