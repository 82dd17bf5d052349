"""What a study's trials ran as: ``precision: auto`` resolves per machine (bf16 on a GPU or a CPU with native bf16,
fp32 elsewhere), so a study resumed or extended on another machine could mix bf16 and fp32 trials in one cell.

A launch (for its workers' devices) and every worker (for its own, on its own machine) refuse in one line to run a
cell whose config resolves here to another precision than its first completed trial ran as (``cell_precision``),
and say how to pin it; a grid that pins
``precision`` to what the study's trials ran as is the same experiment (``same_precision``). A cell already mixed
(a study from before the check) is noted MIXED in the results. The device is not compared: at one precision a CPU
and a GPU train the same experiment.
"""
from __future__ import annotations

from typing import Any, Iterable

from resnet_core.errors import ConfigError

from ..spec.grid import GridSpec
from ..spec.cells import with_params
from ..spec.identity import cell_aliases
from ..spec.study_format import trial_cell


def trial_precision(attrs: dict[str, Any]) -> str | None:
    """The precision a trial's config resolved to: its ``precision`` attr, or where the fast-path guard replayed it
    in full precision, the one it started in."""
    change = attrs.get("precision_changed")
    if isinstance(change, dict) and change.get("from"):
        return str(change["from"])
    value = attrs.get("precision")
    return str(value) if value else None


def trials_precisions(trials: Iterable[Any]) -> list[str]:
    """The precisions ``trials`` ran as (sorted, each once)."""
    return sorted({p for t in trials if (p := trial_precision(t.user_attrs)) is not None})


def resolves_to(precision: str, device: str) -> str:
    """What ``precision`` resolves to on ``device`` on this machine (``auto``: per machine; others: themselves)."""
    import torch

    from resnet_core.devices import autocast_dtype, param_dtype, precision_name

    dev = torch.device(device)
    return precision_name(autocast_dtype(precision, dev), param_dtype(precision))


def same_precision(old: Any, new: Any, trials: Iterable[Any]) -> bool:
    """Whether a base ``precision`` change from ``old`` to ``new`` keeps the experiment: ``auto`` pinned to (or
    unpinned from) a precision the study's trials ran as (``check_ran_as`` then compares each cell)."""
    if old == new:
        return True
    if "auto" not in (old, new):
        return False
    return (new if old == "auto" else old) in trials_precisions(trials)   # then `check_ran_as` compares each cell


def cell_precision(trials: Iterable[Any]) -> str | None:
    """The precision a cell runs as: what its first completed trial (lowest number) ran as. An interrupted or failed
    attempt does not count (its checkpoint, if any, is checked on resume: ``engine``), and a cell already mixed (a
    study from before the check) goes on as it began, so one stray trial cannot license another precision."""
    done = sorted((t for t in trials if getattr(getattr(t, "state", None), "name", "COMPLETE") == "COMPLETE"),
                  key=lambda t: getattr(t, "number", 0))
    for t in done:
        p = trial_precision(t.user_attrs)
        if p is not None:
            return p
    return None


def check_ran_as(spec: GridSpec, trials: list[Any], devices: Iterable[str]) -> None:
    """Refuse to run a cell on ``devices`` here when its config resolves here to another precision than the cell
    runs as (``cell_precision``): a one-line ``ConfigError`` naming both and the pin that keeps the study one
    experiment."""
    aliases = cell_aliases(spec, trials)
    by_cell: dict[str, list[Any]] = {}
    for t in trials:
        cell = trial_cell(t.user_attrs, aliases)
        by_cell.setdefault(cell if isinstance(cell, str) else "", []).append(t)
    for device in dict.fromkeys(devices):
        for cell in spec.cells:
            asked = with_params(spec.base, cell.params).get("precision", "auto")
            ran = cell_precision(by_cell.get(cell.id, []))
            here = resolves_to(asked, device)
            if ran is not None and here != ran:
                how = f"pin it (--set precision={ran}) or " if asked == "auto" else ""
                raise ConfigError(f"precision: {asked} resolves to {here} on {device} here, but the trials of cell "
                                  f"{cell.id or 'base'} in study {spec.study!r} ran as {ran}; a study never mixes "
                                  f"the two: {how}use another study name (--study NAME)")


def mixed_note(trials: Iterable[Any]) -> str | None:
    """A result line's note for a cell whose trials ran as several precisions (a study from before the check)."""
    counts: dict[str, int] = {}
    for t in trials:
        p = trial_precision(t.user_attrs)
        if p is not None:
            counts[p] = counts.get(p, 0) + 1
    if len(counts) < 2:
        return None
    return "MIXED precision: " + ", ".join(f"{n} in {p}" for p, n in sorted(counts.items()))
