"""Checkpoints, one per member, written atomically and loaded with ``weights_only=True``.

A fused run saves each member as an ordinary solo checkpoint (its slice of the weights and of the optimizer state),
so any member can be evaluated, lesioned or resumed on its own, and a fused run resumes from its members' files.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ConfigError
from .record import atomic_file
from .signals import os_error_in
from .layers import member_rows
from .model import ResNet, load_member_state_dict, member_state_dict


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` atomically (``record.atomic_file``). A write that fails (a full disk) raises the
    ``OSError`` naming ``path``, not the ``RuntimeError`` torch's zip writer wraps it in, so every caller sees a
    full disk as one (``signals.os_error_line``; a sweep's trial stays resumable)."""
    try:
        with atomic_file(path, "wb") as f:
            torch.save(obj, f)
    except RuntimeError as e:
        cause = os_error_in(e)
        if cause is None:
            raise
        raise OSError(cause.errno, cause.strerror, str(path)) from e


CHECKPOINT_KEYS = ("model", "model_config", "step")


def load(path: Path) -> dict[str, Any]:
    """A checkpoint written by ``atomic_save`` (``weights_only``). Raises a one-line ``ConfigError`` for a file
    that is not a readable checkpoint, or a state dict from elsewhere (no ``model``, ``model_config``, ``step``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle, zip and weights-only errors all mean "not a checkpoint"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"{path}: not a readable resnet-ablate checkpoint ({type(e).__name__}: {first[:120]})"
                          ) from None
    if not isinstance(state, dict) or not all(k in state for k in CHECKPOINT_KEYS):
        keys = ", ".join(list(state)[:5]) if isinstance(state, dict) else type(state).__name__
        raise ConfigError(f"{path}: not a resnet-ablate checkpoint (it has {keys or 'nothing'}; one written by "
                          f"`train` has {', '.join(CHECKPOINT_KEYS)})")
    return state


def global_rng_state() -> dict[str, torch.Tensor]:
    """The global RNG states a run may draw from (torch CPU, ``random``, numpy), as tensors (``weights_only``)."""
    version, mt, gauss = random.getstate()
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "random": torch.tensor([version, *mt], dtype=torch.int64),
            "random_gauss": torch.tensor([] if gauss is None else [gauss], dtype=torch.float64),
            "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
            "numpy_pos": torch.tensor([np_state[2], np_state[3]], dtype=torch.int64),
            "numpy_gauss": torch.tensor([np_state[4]], dtype=torch.float64)}


def set_global_rng_state(state: dict[str, torch.Tensor]) -> None:
    """Restore what ``global_rng_state`` saved."""
    torch.set_rng_state(state["torch"])
    r = state["random"].tolist()
    gauss = state["random_gauss"].tolist()
    random.setstate((r[0], tuple(r[1:]), gauss[0] if gauss else None))
    pos, has_gauss = state["numpy_pos"].tolist()
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), pos, has_gauss,
                         float(state["numpy_gauss"][0])))


def optimizer_member_state(opt: torch.optim.Optimizer, model: ResNet, g: int) -> dict[str, dict[str, torch.Tensor]]:
    """Member g's optimizer state keyed by parameter name (momentum buffers, Adam moments, step)."""
    names = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for p, state in opt.state.items():
        out[names[id(p)]] = {k: member_rows(v.detach(), g, model.members).clone().cpu()
                             for k, v in state.items() if torch.is_tensor(v)}
    return out


def _state_on_param_device(opt: torch.optim.Optimizer, p: torch.Tensor) -> bool:
    """Whether `opt` keeps p's scalar state (Adam's `step`) on p's device: capturable or fused, as torch's own
    `Optimizer.load_state_dict` places it; otherwise it lives on the CPU."""
    group = next(g for g in opt.param_groups if any(q is p for q in g["params"]))
    return bool(group.get("capturable") or group.get("fused"))


def _new_slot(opt: torch.optim.Optimizer, p: torch.Tensor, saved: torch.Tensor) -> torch.Tensor:
    """A zero optimizer-state tensor as `opt` would create it for p: a per-element slot like the parameter (device,
    dtype, memory format: fused SGD on channels_last weights requires matching layouts); a scalar (`step`, of the
    saved dtype) on p's device when the optimizer is capturable or fused, else on the CPU."""
    if saved.dim() == 0:
        device = p.device if _state_on_param_device(opt, p) else torch.device("cpu")
        return torch.zeros((), dtype=saved.dtype, device=device)
    return torch.zeros_like(p, memory_format=torch.preserve_format)


def load_optimizer_member_state(opt: torch.optim.Optimizer, model: ResNet, g: int,
                                state: dict[str, dict[str, torch.Tensor]]) -> None:
    """Copy member g's saved optimizer state into its slice of `opt`'s state, creating missing slots as `opt`
    expects them (`_new_slot`); existing slots keep their tensors (a captured graph holds their addresses)."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, entries in state.items():
            p = params[name]
            slot = opt.state[p]
            for k, v in entries.items():
                if k not in slot:
                    slot[k] = _new_slot(opt, p, v)
                member_rows(slot[k], g, model.members).copy_(v)


def member_checkpoint(model: ResNet, opt: torch.optim.Optimizer, g: int, **extra: Any) -> dict[str, Any]:
    return {"model": member_state_dict(model, g), "optim": optimizer_member_state(opt, model, g), **extra}


def restore_member(model: ResNet, opt: torch.optim.Optimizer, g: int, ckpt: dict[str, Any]) -> None:
    load_member_state_dict(model, g, ckpt["model"])
    load_optimizer_member_state(opt, model, g, ckpt["optim"])
