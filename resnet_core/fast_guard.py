"""The fast-path guard: a fast step is trusted only after it agrees with the eager reference from the same state.

A fast path (torch.compile, a CUDA graph, fused members, bf16 autocast, channels_last) promises the reference numbers,
only faster. The engine checks that promise on its first training step and on the first evaluation of each split:
each member's loss (or logits) and every parameter's gradient are compared with those of an eager, full-precision,
NCHW solo model loaded with the member's state, on the member's own batch.

Tolerance: a full-precision path must agree to `FULL_PRECISION_RTOL` (10 %) of each tensor's norm. Under autocast the
tolerance is measured, not guessed: an eager NCHW step in the same autocast dtype (the *noise witness*) shows how far
rounding alone moves each tensor from the reference, and the fast path may move it at most `NOISE_FACTOR` times that,
plus `NOISE_SLACK`. At initialisation bf16 moves a CIFAR ResNet-20's gradients by up to ~35 % of their norm
(2026-12-06, this project's 2-core machine); a wrong kernel moves them by ≥ 100 % (uncorrelated: ~141 %, zeros:
100 %) or makes them non-finite. Found the hard way: inductor's C++ kernels built by g++ 12.2 at -O3 computed NaN
gradients in a compiled bf16 ResNet-20 (docs/fast_paths.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .devices import autocast, rng_state, set_rng_state

FULL_PRECISION_RTOL = 0.1    # fp32/fp64 paths: fused vs solo moves a gradient by ~3e-6 of its norm, but another
                             # kernel (oneDNN's channels_last conv) moved the stem's weight gradient by up to 2.8 %
                             # (ResNet-56 at init, 32 px; `bench --device cpu`, 2026-12-06); wrong kernels: >= 100 %
NOISE_FACTOR = 3.0           # autocast paths: at most 3x the witness's own rounding distance from the reference ...
NOISE_SLACK = 0.05           # ... plus 5 % of the tensor's norm
LOSS_RTOL = 1e-3             # full precision: loss within 0.1 % (of max(1, |loss|))
LOSS_NOISE_SLACK = 1e-2      # autocast: within 3x the witness's loss distance plus 1 % (of max(1, |loss|))


@dataclass
class Outputs:
    """One member's step (or evaluation) as the guard compares it: a scalar loss and named tensors (gradients by
    parameter name, or ``{"logits": …}`` for an evaluation)."""
    loss: float
    tensors: dict[str, torch.Tensor]


@dataclass
class Reference:
    """Per member: the eager full-precision outputs, and the eager autocast witness (None for a full-precision run)."""
    exact: list[Outputs]
    witness: list[Outputs] | None


def _rel(a: torch.Tensor, b: torch.Tensor, floor: float) -> float:
    """||a − b|| / max(||b||, floor), in float64."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / max(float(b.norm()), floor))


def _finite(out: Outputs) -> str | None:
    if not math.isfinite(out.loss):
        return "the loss"
    for name, t in out.tensors.items():
        if not bool(torch.isfinite(t).all()):
            return name
    return None


def compare(fast: Sequence[Outputs], ref: Reference, what: str = "gradient",
            members: Sequence[int] | None = None, autocast: bool = True) -> str | None:
    """None if every member of ``fast`` (those in ``members``; default all) keeps the promise; else one line naming
    the member, the tensor, how far it is from the reference (% of its norm) and the allowed distance. ``autocast``:
    whether ``fast`` ran under autocast (the witness's tolerance); a full-precision path gets the full-precision
    rule even where the reference holds a witness."""
    if not autocast:
        ref = Reference(ref.exact, None)
    for g, (f, r) in enumerate(zip(fast, ref.exact)):
        if members is not None and g not in members:
            continue
        who = f"member {g}: " if len(fast) > 1 else ""
        if _finite(r) is not None:  # nothing to hold a path to (a member whose weights went non-finite)
            continue
        bad = _finite(f)
        if bad is not None:
            return f"{who}non-finite {'loss' if bad == 'the loss' else f'{what} of {bad}'} (the reference is finite)"
        w = ref.witness[g] if ref.witness is not None else None
        scale = max(1.0, abs(r.loss))
        loss_tol = (LOSS_RTOL * scale if w is None
                    else NOISE_FACTOR * abs(w.loss - r.loss) + LOSS_NOISE_SLACK * scale)
        if abs(f.loss - r.loss) > loss_tol:
            return f"{who}loss {f.loss:.6g} against the reference's {r.loss:.6g} (allowed ±{loss_tol:.2g})"
        floor = 1e-6 * max((float(t.detach().double().norm()) for t in r.tensors.values()), default=1.0) or 1e-30
        for name, rt in r.tensors.items():
            got = _rel(f.tensors[name], rt, floor)
            if w is None:
                allowed = FULL_PRECISION_RTOL
            else:  # where rounding alone moves a tensor far (a plain net's near-cancelling gradients), so may the path
                allowed = NOISE_FACTOR * _rel(w.tensors[name], rt, floor) + NOISE_SLACK
            if not got <= allowed:
                return f"{who}{what} of {name} is {100 * got:.1f} % off the reference (allowed {100 * allowed:.1f} %)"
    return None


def step_outputs(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, amp: torch.dtype | None,
                 device: torch.device, label_smoothing: float = 0.0) -> Outputs:
    """One eager step of a solo ``model`` on (x: [B, C, H, W], y: [B]) without an optimizer update: the mean
    cross-entropy and each parameter's gradient (fresh tensors; the model's own .grad are left as they were)."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    with autocast(device, amp):
        out = model(x)
    acc = torch.promote_types(next(model.parameters()).dtype, torch.float32)
    loss = F.cross_entropy(out.to(acc), y, label_smoothing=label_smoothing)
    grads = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True)
    return Outputs(float(loss.detach()), {n: (torch.zeros_like(p) if gr is None else gr.detach())
                                          for (n, p), gr in zip(params, grads)})


def eval_outputs(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, amp: torch.dtype | None,
                 device: torch.device) -> Outputs:
    """A solo ``model``'s evaluation of one batch (x: [B, C, H, W], y: [B]), in eval mode: mean loss and logits."""
    was = model.training
    model.eval()
    with torch.no_grad(), autocast(device, amp):
        out = model(x)
    model.train(was)
    acc = torch.promote_types(next(model.parameters()).dtype, torch.float32)
    logits = out.to(acc)
    return Outputs(float(F.cross_entropy(logits, y)), {"logits": logits})


def reference(solo: Callable[[int], torch.nn.Module], x: torch.Tensor, y: torch.Tensor, *, members: int,
              amp: torch.dtype | None, device: torch.device, evaluate: bool = False,
              label_smoothing: float = 0.0) -> Reference:
    """The reference for a fused batch (x: [B, G·C, H, W], y: [B, G]; a solo run is G = 1): for each member g, an
    eager NCHW copy ``solo(g)`` in full precision, and the same in ``amp`` as the witness. Each draws the random
    numbers the step draws (a random part's): the torch generators are put back before each."""
    channels = x.shape[1] // members
    exact, witness = [], ([] if amp is not None else None)
    drawn = rng_state(device)
    for g in range(members):
        xg = x[:, g * channels:(g + 1) * channels].contiguous()
        yg = y.reshape(x.shape[0], members)[:, g]
        model = solo(g)
        for dtype, into in ((None, exact), (amp, witness)):
            if into is None:
                continue
            set_rng_state(device, drawn)
            if evaluate:
                into.append(eval_outputs(model, xg, yg, amp=dtype, device=device))
            else:
                into.append(step_outputs(model, xg, yg, amp=dtype, device=device, label_smoothing=label_smoothing))
    return Reference(exact, witness)
