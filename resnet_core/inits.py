"""Weight initialisation: ``model.init`` (the weights) and ``model.bias_init`` (the conv biases), a registry each.

`build_model` calls a weight init as ``init(module)`` on every module of a freshly built model, in
``model.modules()`` order, after BatchNorm is set to weight 1, bias 0; it touches the layers it knows and leaves the
rest as constructed. A bias init is called as ``bias_init(conv)`` on every ``nn.Conv2d`` that has a bias
(``model.conv_bias``), after that conv's weight init. Register your own with ``@INITS.register(name)`` or
``@BIAS_INITS.register(name)`` (docs/models.md, "Your own part"). A fused build (``members=G``) copies its members
from single builds, so each member is initialised as one model.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from .registry import Registry

Init = Callable[[nn.Module], None]

INITS: Registry[Init] = Registry("model.init")
BIAS_INITS: Registry[Init] = Registry("model.bias_init")


@INITS.register("kaiming")
def kaiming_init(module: nn.Module) -> None:
    """He et al. 2015 ("Delving deep into rectifiers"): conv weights N(0, 2/fan_out), ``mode="fan_out"`` as in
    torchvision's ResNet; the linear head keeps torch's default."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")


@INITS.register("xavier")
def xavier_init(module: nn.Module) -> None:
    """Glorot & Bengio 2010: conv and linear weights U(±sqrt(6/(fan_in+fan_out))), as seed 002 (d2l) has them."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)


@INITS.register("pytorch")
def pytorch_init(module: nn.Module) -> None:
    """The layers' own defaults, as a program without an init of its own has them (seeds 003, 004): conv and linear
    weights kaiming_uniform_(a=√5), bound 1/sqrt(fan_in)."""


@BIAS_INITS.register("zero")
def zero_bias(conv: nn.Module) -> None:
    """Zero (the framework's choice)."""
    nn.init.zeros_(conv.bias)


@BIAS_INITS.register("default")
def default_bias(conv: nn.Module) -> None:
    """PyTorch's default, U(±1/sqrt(fan_in)), as constructed (seed 002 keeps it)."""
