"""Activation placements inside a residual unit (He et al. 2016b, Fig. 4 / Table 2).

A block owns ``conv1…convK`` and ``bn1…bnK`` (K = 2 basic, 3 bottleneck). A placement decides where BN and ReLU
go, where the addition sits, and what the stem and the network's end add around the blocks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .registry import Registry


@dataclass(frozen=True)
class Placement:
    name: str
    forward: Callable  # (block, x) -> y
    bn_before_conv: bool      # bn_i normalises conv_i's input (pre) rather than its output
    stem_norm: bool           # the CIFAR stem ends conv-BN …
    stem_relu: bool           # … and ReLU
    final_norm: bool          # a BN-ReLU after the last block (full pre-activation)
    final_relu: bool
    zero_init: str            # which layer zero_init_residual zeroes: "last_bn" or "last_conv" or "none"


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


for _p in (
    Placement("post", _post, False, True, True, False, False, "last_bn"),
    Placement("bn_after_add", _bn_after_add, False, True, True, False, False, "none"),
    Placement("relu_before_add", _relu_before_add, False, True, True, False, False, "last_bn"),
    Placement("relu_only_pre", _relu_only_pre, False, True, False, False, True, "last_bn"),
    Placement("pre", _full_pre, True, False, False, True, True, "last_conv"),
):
    PLACEMENTS.register(_p.name)(_p)
