"""The optimizer a run trains with, and the per-step hyper-parameters its schedule sets on it.

The schedule sets the learning rate every step and, for a one-cycle schedule with ``cycle_momentum``, the momentum
(SGD's ``momentum``, Adam's ``betas[0]``), exactly where torch.optim.lr_scheduler.OneCycleLR writes them. On CUDA
the values live in device tensors that a captured CUDA graph reads (``lr``, and Adam's ``beta1``); torch's SGD takes
its momentum as a Python float only, so a run whose SGD momentum cycles steps eagerly (see `needs_eager`).
"""
from __future__ import annotations

from typing import Any, Iterable

import torch

from .run_config import OptimConfig
from .schedules import ScheduleConfig, cycles_momentum


def needs_eager(optim: OptimConfig, schedule: ScheduleConfig) -> bool:
    """True when a captured CUDA graph cannot follow the schedule: SGD with cycled momentum (torch's fused SGD
    bakes the momentum, a Python float, into the captured kernel)."""
    return optim.name == "sgd" and cycles_momentum(schedule)


def build_optimizer(optim: OptimConfig, schedule: ScheduleConfig, params: Iterable[torch.nn.Parameter], *,
                    lr: float | torch.Tensor, beta1: torch.Tensor | None = None,
                    on_cuda: bool = False, fused: bool | None = None) -> torch.optim.Optimizer:
    """SGD (fused on CUDA, or where ``fused`` says), Adam or AdamW (capturable on CUDA) over ``params``.

    ``lr``: a float, or a 0-d device tensor on CUDA. ``beta1``: a 0-d device tensor holding Adam's first beta when
    the schedule cycles momentum on CUDA (the graph reads it; `set_momentum` fills it), else None.
    With cycled momentum, the optimizer starts at ``schedule.max_momentum`` whatever ``optim.momentum`` or
    ``optim.betas[0]`` say, as OneCycleLR does: it overwrites them when it is built, so an SGD built without
    momentum (``optim.momentum: 0``) gets one.
    """
    params = list(params)
    cycled = cycles_momentum(schedule)
    if optim.name == "sgd":
        momentum = schedule.max_momentum if cycled else optim.momentum
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=optim.nesterov,
                               weight_decay=optim.weight_decay, fused=(on_cuda if fused is None else fused) or None)
    cls = torch.optim.Adam if optim.name == "adam" else torch.optim.AdamW
    betas: tuple[Any, Any] = tuple(optim.betas)
    if cycled:
        betas = (schedule.max_momentum, betas[1])
    if beta1 is not None:  # both betas as tensors, as torch requires
        beta1.fill_(betas[0])
        betas = (beta1, torch.tensor(float(betas[1]), device=beta1.device))
    return cls(params, lr=lr, betas=betas, weight_decay=optim.weight_decay, capturable=on_cuda)


def set_momentum(opt: torch.optim.Optimizer, value: float, beta1: torch.Tensor | None = None) -> None:
    """Write the schedule's momentum: into ``beta1`` (the device tensor Adam reads) when given, else into every
    param group's ``momentum`` (SGD) or ``betas[0]`` (Adam, AdamW), as OneCycleLR.get_lr does."""
    if beta1 is not None:
        beta1.fill_(value)
        return
    for group in opt.param_groups:
        if "betas" in group:
            group["betas"] = (value, *group["betas"][1:])
        else:
            group["momentum"] = value


@torch.no_grad()
def reset_state(opt: torch.optim.Optimizer) -> None:
    """Zero every state tensor in place (momentum buffers; Adam's moments and step count).

    The next step then updates exactly as a freshly built optimizer's first step would: Adam's step goes 0 → 1 with
    zero moments, and an SGD buffer of zeros becomes the gradient (no dampening), as a new buffer would. In place,
    so a captured CUDA graph keeps reading the same tensors.
    """
    for state in opt.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                value.zero_()
