"""Numeric comparisons for the tests: a difference is measured against a floor tied to the reference's scale.

A relative error means nothing for a quantity that is zero in exact arithmetic: the bias of a conv (or of a
projection BN) that feeds a train-mode BatchNorm gets a zero gradient, so after training it holds round-off
(~1e-17), and two implementations' round-off, relative to itself, is O(1) — a test that decides on it passes on one
CPU and fails on another. So every comparison here divides the largest difference by
``max(max|ref|, floor)``, with ``floor`` a fraction (``FLOOR``) of the scale of the group the tensor belongs to (all
of one member's state tensors, all of one member's gradients, one metric series): such a tensor is compared on the
absolute scale of its neighbours, while the tolerance stays tight enough that a real fault — 1e-9 added to one
weight of one member — still fails (`tests/test_numerics.py` checks that).
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping

import torch

FLOOR = 1e-2  # the floor, as a fraction of the group's largest magnitude


def scale_of(tensors: Iterable[torch.Tensor]) -> float:
    """The largest magnitude over a group of tensors (floating ones; others are compared exactly)."""
    return max((t.detach().double().abs().max().item() for t in tensors if t.is_floating_point() and t.numel()),
               default=0.0)


def scaled_error(a: torch.Tensor, b: torch.Tensor, floor: float = 0.0) -> float:
    """max|a - b| / max(max|b|, floor): 0 when equal, inf when the shapes differ or a is not finite where b is."""
    if a.shape != b.shape:
        return math.inf
    a, b = a.detach().double(), b.detach().double()
    if not a.numel():
        return 0.0
    diff = (a - b).abs().max().item()
    if diff == 0:
        return 0.0
    if not math.isfinite(diff):
        return math.inf
    return diff / max(b.abs().max().item(), floor, 1e-300)


def state_errors(got: Mapping[str, torch.Tensor], ref: Mapping[str, torch.Tensor],
                 floor_fraction: float = FLOOR) -> dict[str, float]:
    """Per key: the scaled error of got[k] against ref[k], the floor being `floor_fraction` of the group's scale;
    non-floating tensors (counters) count as 0 if equal, else inf."""
    if got.keys() != ref.keys():
        return {k: math.inf for k in got.keys() ^ ref.keys()}
    floor = floor_fraction * scale_of(ref.values())
    return {k: (scaled_error(got[k], v, floor) if v.is_floating_point()
                else (0.0 if torch.equal(got[k], v) else math.inf)) for k, v in ref.items()}


def assert_states_close(got: Mapping[str, torch.Tensor], ref: Mapping[str, torch.Tensor], tol: float,
                        what: str = "state", floor_fraction: float = FLOOR) -> None:
    """Every tensor of `got` within `tol` of `ref`'s (scaled as `state_errors`)."""
    bad = {k: e for k, e in state_errors(got, ref, floor_fraction).items() if not e <= tol}
    assert not bad, f"{what}: {len(bad)} tensors differ by more than {tol:g} (scaled): {dict(list(bad.items())[:5])}"


def assert_series_close(got: Mapping[tuple, float], ref: Mapping[tuple, float], tol_of,
                        group_of=lambda key: key[1:], floor_fraction: float = FLOOR) -> None:
    """Scalar metrics keyed by tuples: the same keys, and each value within `tol_of(key)` of the reference, scaled by
    max(|ref|, floor_fraction × the largest |ref| of its series); a series is the keys sharing `group_of(key)`."""
    assert got.keys() == ref.keys(), f"different metric rows: {sorted(got.keys() ^ ref.keys())[:5]}"
    scales: dict[tuple, float] = {}
    for k, v in ref.items():
        scales[group_of(k)] = max(scales.get(group_of(k), 0.0), abs(v) if math.isfinite(v) else 0.0)
    bad = []
    for k, v in ref.items():
        w = got[k]
        if w == v:
            continue
        err = abs(w - v) / max(abs(v), floor_fraction * scales[group_of(k)], 1e-300)
        if not err <= tol_of(k):
            bad.append((k, w, v))
    assert not bad, f"{len(bad)} metrics differ beyond tolerance, e.g. {bad[:3]}"
