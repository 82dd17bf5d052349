"""Member-aware layer factories (horizontal fusion, docs/fused_trials.md).

A fused model holds G independent members in one module: every conv gets ``groups × G`` and ``channels × G``,
BatchNorm runs over G×C channels, and the head is a per-member linear map. Every parameter and buffer is laid out
member-major along dim 0 (member g owns rows ``g·n/G … (g+1)·n/G − 1``), which is what lets ``member_rows``
slice a member out. With ``members=1`` these are the ordinary torch layers, so names and counts are unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class StridedPointwiseConv2d(nn.Conv2d):
    """A 1×1 convolution with stride s (a projection shortcut at a shape change, options B/C), computed as the
    stride-1 one on every s-th pixel: the same sums, and the same module, parameters and ``stride`` attribute.

    Why: on CPUs without AVX-512 (AVX2 only), torch 2.14.1's oneDNN kernel for the weight gradient of a strided 1×1
    convolution on a channels_last input with fewer than 8 input channels per group corrupts the heap (``double free
    or corruption``, a crash; tests/test_layers_workaround.py). The subsampled input takes another kernel. `conv`
    uses it only there (``POINTWISE_SAFE_CHANNELS``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sh, sw = self.stride
        return F.conv2d(x[:, :, ::sh, ::sw], self.weight, self.bias, 1, 0, self.dilation, self.groups)


POINTWISE_SAFE_CHANNELS = 8   # input channels per group from which torch's strided 1×1 kernel is sound


def conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, members: int = 1, bias: bool = False) -> nn.Conv2d:
    """A k×k convolution with 'same' padding; G members become G groups. A strided 1×1 one with fewer than
    ``POINTWISE_SAFE_CHANNELS`` input channels is a `StridedPointwiseConv2d` (the same convolution, another CPU
    kernel); every other is torch's own, so real-width models keep their kernels and round-off."""
    few = in_ch < POINTWISE_SAFE_CHANNELS
    kind = StridedPointwiseConv2d if kernel == 1 and stride > 1 and few else nn.Conv2d
    return kind(in_ch * members, out_ch * members, kernel, stride=stride, padding=kernel // 2, groups=members,
                bias=bias)


def norm(channels: int, members: int = 1) -> nn.BatchNorm2d:
    """BatchNorm is per channel, so G×C channels are exactly G independent BNs."""
    return nn.BatchNorm2d(channels * members)


class MemberLinear(nn.Module):
    """G independent linear heads: input ``[B, G·in]``, output ``[B, G, out]``; weight ``[G·out, in]``."""

    def __init__(self, in_features: int, out_features: int, members: int) -> None:
        super().__init__()
        self.members = members
        self.in_features = in_features
        self.out_features = out_features
        heads = [nn.Linear(in_features, out_features) for _ in range(members)]  # torch's default init, per member
        self.weight = nn.Parameter(torch.cat([h.weight.data for h in heads]))
        self.bias = nn.Parameter(torch.cat([h.bias.data for h in heads]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = rearrange(self.weight, "(g o) i -> g o i", g=self.members)
        b = rearrange(self.bias, "(g o) -> g o", g=self.members)
        x = rearrange(x, "b (g i) -> b g i", g=self.members)
        return torch.einsum("bgi,goi->bgo", x, w) + b


def linear(in_features: int, out_features: int, members: int = 1) -> nn.Module:
    return nn.Linear(in_features, out_features) if members == 1 else MemberLinear(in_features, out_features, members)


def zero_pad_channels(x: torch.Tensor, out_ch: int, members: int) -> torch.Tensor:
    """Option A: pad each member's channels with zeros, half before and half after (as in the CIFAR reference)."""
    x = rearrange(x, "b (g c) h w -> b g c h w", g=members)
    extra = out_ch - x.shape[2]
    x = F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))
    return rearrange(x, "b g c h w -> b (g c) h w")


def member_rows(t: torch.Tensor, g: int, members: int) -> torch.Tensor:
    """Member g's part of a fused parameter, buffer or optimizer-state tensor: a view of its rows along dim 0
    (member-major layout); a 0-d tensor (a step counter, ``num_batches_tracked``) or a solo model's is whole."""
    if t.dim() == 0 or members == 1:
        return t
    n = t.shape[0] // members
    return t[g * n:(g + 1) * n]
