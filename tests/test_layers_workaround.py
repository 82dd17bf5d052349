"""A strided 1×1 convolution (a projection shortcut) trains on every CPU: torch 2.14.1's oneDNN weight-gradient kernel
for it corrupts the heap on AVX2-only CPUs with a channels_last input of fewer than 8 channels, so `layers.conv`
computes it on the subsampled input. The crash kills the process, so it is checked in a subprocess."""
from __future__ import annotations

import subprocess
import sys

import torch

from resnet_core.layers import StridedPointwiseConv2d, conv

SCRIPT = """
import torch
from resnet_core.layers import conv
torch.manual_seed(0)
torch.set_num_threads(1)
layer = conv(4, 8, 1, stride=2).to(memory_format=torch.channels_last)
x = torch.randn(32, 4, 8, 8).to(memory_format=torch.channels_last).requires_grad_()
for _ in range(50):
    layer(x).sum().backward()
print("trained")
"""


def test_a_strided_pointwise_conv_with_few_channels_trains_channels_last_without_a_crash():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "trained" in done.stdout, (done.returncode, done.stderr[-2000:])


def test_it_is_the_strided_convolution_the_module_says_it_is():
    torch.manual_seed(0)
    for members, cin in ((1, 4), (1, 7), (3, 4)):
        layer = conv(cin, 8, 1, stride=2, members=members, bias=True)
        assert isinstance(layer, StridedPointwiseConv2d) and layer.stride == (2, 2)
        x = torch.randn(5, cin * members, 9, 9)
        ref = torch.nn.functional.conv2d(x, layer.weight, layer.bias, stride=2, groups=members)
        out = layer(x)
        assert out.shape == ref.shape == (5, 8 * members, 5, 5)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
        grads = torch.autograd.grad(out.square().sum(), [layer.weight, layer.bias])
        ref_grads = torch.autograd.grad(ref.square().sum(), [layer.weight, layer.bias])
        for g, r in zip(grads, ref_grads):
            torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5 * float(r.abs().max()))
    # only where torch's kernel is unsound: a real-width projection keeps torch's own (its round-off unchanged)
    assert type(conv(4, 8, 1, stride=1)) is torch.nn.Conv2d and type(conv(4, 8, 3, stride=2)) is torch.nn.Conv2d
    assert type(conv(16, 32, 1, stride=2)) is torch.nn.Conv2d and type(conv(8, 16, 1, stride=2, members=2)) is \
        torch.nn.Conv2d
