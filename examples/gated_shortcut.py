"""A researcher's own part: a gated identity shortcut, y = F(x) + g·shortcut(x), with g a learnable scalar per
block (initialised to 1, so the net starts as the option-A ResNet; g → 0 makes the block plain).

One registration makes ``gated`` a value of ``model.shortcut`` in configs, grids, reports and W&B:

    resnet-ablate sweep examples/gated_shortcut.yaml      # the grid lists this file under `plugins:`
    resnet-ablate train --plugin examples/gated_shortcut.py --set model.shortcut=gated
"""
from __future__ import annotations

import torch
from einops import repeat
from torch import nn

from resnet_core.shortcuts import SHORTCUTS


class GatedShortcut(nn.Module):
    """``inner(x) · g``: x ``[B, G·in_ch, H, W]`` → ``[B, G·out_ch, H/s, W/s]``; one gate per fused member (``gate``
    is ``[G]``, member-major like every other parameter, so fused and solo models hold the same numbers)."""

    projects = False  # a pre-activation block feeds it the raw input, as it does the identity

    def __init__(self, inner: nn.Module, out_ch: int, members: int) -> None:
        super().__init__()
        self.inner, self.out_ch = inner, out_ch
        self.gate = nn.Parameter(torch.ones(members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * repeat(self.gate, "g -> 1 (g c) 1 1", c=self.out_ch).to(x.dtype)


@SHORTCUTS.register("gated", label="gated identity")
def gated_shortcut(*, in_ch: int, out_ch: int, stride: int, members: int, project: bool, with_norm: bool,
                   bias: bool) -> nn.Module:
    """Option A (identity, zero-padded where the shape changes) times a learnable gate."""
    inner = SHORTCUTS.get("identity")(in_ch=in_ch, out_ch=out_ch, stride=stride, members=members, project=project,
                                      with_norm=with_norm, bias=bias)
    return GatedShortcut(inner, out_ch, members)
