"""What a study's trials ran as: ``precision: auto`` resolves per machine (bf16 on a GPU or a CPU with native bf16,
fp32 elsewhere), so a study resumed or extended on another machine could mix bf16 and fp32 trials in one cell.

A cell runs as its first completed trial ran (``cell_precision``); while none has completed, as its earliest trial
still running claimed as its worker took it (``running_claim``): workers take trials one at a time under the study's
claim lock (``packing.claim_group``) and each records there the precision its trial's config resolves to on its
machine (``claim_precisions``), so of two machines that start a fresh cell at once the first decides and the second
is refused. A launch (for its workers' devices) and every worker (for its own, on its own machine, at its start and
at every trial it takes) refuse in one line to run a cell whose config resolves here to another precision than the
cell runs as, and say how to pin it; a launch whose own devices resolve a cell to two precisions is refused too. A
grid that pins ``precision`` to what the study's trials ran (or started) as is the same experiment
(``same_precision``). A cell already mixed (a study from before the check) is noted MIXED in the results. The device
is not compared: at one precision a CPU and a GPU train the same experiment.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from resnet_core.errors import ConfigError

from ..spec.cells import Cell, with_params
from ..spec.grid import GridSpec
from ..spec.identity import cell_aliases
from ..spec.study_format import trial_cell


CLAIM_KEY = "precision"   # in a trial's worker record (its ``worker`` attr): what its config resolved to there


def trial_precision(attrs: dict[str, Any]) -> str | None:
    """The precision a trial's config resolved to: its ``precision`` attr, or where the fast-path guard replayed it
    in full precision, the one it started in."""
    change = attrs.get("precision_changed")
    if isinstance(change, dict) and change.get("from"):
        return str(change["from"])
    value = attrs.get("precision")
    return str(value) if value else None


def trials_precisions(trials: Iterable[Any]) -> list[str]:
    """The precisions ``trials`` ran as, or, still running, started as (their claim) (sorted, each once)."""
    return sorted({p for t in trials if (p := trial_precision(t.user_attrs) or _claim(t)) is not None})


def _state(trial: Any) -> str:
    return getattr(getattr(trial, "state", None), "name", "COMPLETE")


def _claim(trial: Any) -> str | None:
    """The precision a RUNNING trial claimed as its worker took it (None for a trial that ended: its claim ended)."""
    worker = trial.user_attrs.get("worker") if _state(trial) == "RUNNING" else None
    value = worker.get(CLAIM_KEY) if isinstance(worker, dict) else None
    return str(value) if value else None


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
    done = sorted((t for t in trials if _state(t) == "COMPLETE"), key=lambda t: getattr(t, "number", 0))
    for t in done:
        p = trial_precision(t.user_attrs)
        if p is not None:
            return p
    return None


def running_claim(trials: Iterable[Any], dead: Callable[[Any], bool]) -> tuple[str, int] | None:
    """(precision, trial number) of the earliest trial still running that claimed a precision as its worker took it,
    where ``dead`` (``liveness.trial_is_dead``) says its worker lives; what a cell none of whose trials has completed
    runs as. A claim ends with its trial: one that failed, diverged or was interrupted before completing (or whose
    worker died) holds the cell no longer, so a first attempt that crashed cannot lock a cell no trial of which ran to
    the end to a precision; an interrupted run keeps its own precision (the engine refuses to resume it in another)."""
    for t in sorted((t for t in trials if _claim(t) is not None), key=lambda t: getattr(t, "number", 0)):
        if not dead(t):
            return str(_claim(t)), int(getattr(t, "number", 0))
    return None


def _by_cell(trials: list[Any], aliases: dict[str, str]) -> dict[str, list[Any]]:
    """Grid cell id → its trials (a renamed cell's under the grid cell they count for: ``aliases``)."""
    out: dict[str, list[Any]] = {}
    for t in trials:
        cell = trial_cell(t.user_attrs, aliases)
        out.setdefault(cell if isinstance(cell, str) else "", []).append(t)
    return out


def _asked(spec: GridSpec, cell: Cell) -> Any:
    return with_params(spec.base, cell.params).get("precision", "auto")


def _check_cell(spec: GridSpec, cell: Cell, trials: list[Any], device: str,
                dead: Callable[[Any], bool] | None) -> str:
    """What ``cell``'s config resolves to on ``device`` here, refused in one line (``ConfigError``) where the cell
    runs as another precision: its first completed trial's, else (``dead`` given) a running trial's claim."""
    asked = _asked(spec, cell)
    here = resolves_to(asked, device)
    ran = cell_precision(trials)
    claim = running_claim(trials, dead) if ran is None and dead is not None else None
    runs_as = ran or (claim[0] if claim else None)
    if runs_as is not None and here != runs_as:
        how = f"pin it (--set precision={runs_as}) or " if asked == "auto" else ""
        what = f"ran as {ran}" if ran else f"run as {runs_as} (trial {claim[1]} started as {runs_as} and is running)"
        raise ConfigError(f"precision: {asked} resolves to {here} on {device} here, but the trials of cell "
                          f"{cell.id or 'base'} in study {spec.study!r} {what}; a study never mixes the two: "
                          f"{how}use another study name (--study NAME)")
    return here


def check_ran_as(spec: GridSpec, trials: list[Any], devices: Iterable[str],
                 dead: Callable[[Any], bool] | None = None) -> None:
    """Refuse to run a cell on ``devices`` here when its config resolves here to another precision than the cell
    runs as (``cell_precision``; with ``dead`` given, while none of its trials completed, ``running_claim``), or
    resolves to two precisions on ``devices``: a one-line ``ConfigError`` naming both and the pin that keeps the
    study one experiment."""
    by_cell = _by_cell(trials, cell_aliases(spec, trials))
    devices = list(dict.fromkeys(devices))
    for cell in spec.cells:
        here = {device: _check_cell(spec, cell, by_cell.get(cell.id, []), device, dead) for device in devices}
        if len(set(here.values())) > 1:
            shown = ", ".join(f"{p} on {d}" for d, p in here.items())
            raise ConfigError(f"precision: {_asked(spec, cell)} resolves to {shown} here: the workers of one launch "
                              f"would mix them in cell {cell.id or 'base'}; pin it (--set precision=bf16 or fp32) "
                              f"or give --devices of one kind")


def claim_precisions(spec: GridSpec, trials: list[Any], taking: Iterable[Any], device: str,
                     dead: Callable[[Any], bool]) -> dict[int, str]:
    """Trial number → the precision each of the waiting trials ``taking`` claims for its cell as a worker on
    ``device`` takes it (``CLAIM_KEY`` in the worker record written with the take): what its config resolves to
    here. ``trials``: all the study's trials, read under the claim lock, under which every claim is made
    (``packing.claim_group``): of two workers that start a fresh cell at once, the first decides what it runs as
    (``running_claim``), and the second is refused in one line (``ConfigError``) rather than take a trial of it, as
    it is where a trial of the cell completed. A trial taken without a worker record claims nothing."""
    aliases = cell_aliases(spec, trials)
    by_cell = _by_cell(trials, aliases)
    cells = {c.id: c for c in spec.cells}
    out: dict[int, str] = {}
    for t in taking:
        cell_id = trial_cell(t.user_attrs, aliases)
        cell = cells.get(cell_id) if isinstance(cell_id, str) else None
        cell = cell or spec.cell_of(t.user_attrs)
        out[t.number] = _check_cell(spec, cell, by_cell.get(cell.id, []), device, dead)
    return out


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
