"""The study format: what a sweep writes into its Optuna study and what readers (``reports``) read back.

One home for the names and rules both sides use, so a reader never re-derives them:
- where a study lives by default (``<root>/<study>/optuna.journal``) and how a storage URL is shown (``mask_url``,
  from ``resnet_core.redact``: password and secret query parameters masked);
- a cell id (``model.depth=20,model.shortcut=none``: YAML-like scalars, so ``true`` / ``null``, not Python's), and
  the study user attr ``cell_aliases`` (a trial's cell id → the grid cell that runs the same config: ``trial_cell``,
  ``trial_unit``; ``identity`` computes it);
- a trial's user attrs (``unit_attrs``; the run summary's ``params`` is stored as ``n_parameters``);
- the status of a trial from its Optuna state and ``status`` user attr (``trial_status``);
- the resolved spec a study stores (``read_spec``: what workers run and readers read, never the grid file again).

Imports run one way: ``resnet_core`` ← ``sweeps`` ← ``reports``; this module imports no Optuna.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from resnet_core.redact import mask_url  # noqa: F401 - how a storage URL is shown (one home: resnet_core.redact)

from .grid import GridSpec, Unit

JOURNAL_NAME = "optuna.journal"
DEFAULT_ROOT = "runs"

# the study user attr of `sweep --until-decided`: its sequential plan and its rounds (sweeps/verdicts/rounds.py)
DECIDE_ATTR = "until_decided"

DONE = ("complete", "pruned")
FAILED = ("failed", "diverged")
LOST = "lost"       # the ``status`` of a placeholder trial whose create record a damaged journal lost (journal.py)
STATE_STATUS = {"COMPLETE": "complete", "PRUNED": "pruned", "RUNNING": "running", "WAITING": "waiting"}


# -- where ------------------------------------------------------------------------------------------------------
def journal_path(root: str | Path, study: str) -> Path:
    """The default storage of ``study``: ``<root>/<study>/optuna.journal``."""
    return Path(root) / study / JOURNAL_NAME


def find_journals(root: str | Path) -> list[Path]:
    """Every ``<root>/*/optuna.journal``, sorted."""
    return sorted(Path(root).glob(f"*/{JOURNAL_NAME}"))


# -- the spec --------------------------------------------------------------------------------------------------
def read_spec(study: Any) -> GridSpec:
    """The resolved ``GridSpec`` an Optuna study stores (``GridSpec.study_attrs``, written by every launch), with the
    seeds its recorded ``--until-decided`` rounds added (as a launch sets them: ``extra_seeds_of``)."""
    attrs = dict(study.user_attrs)
    spec = GridSpec.from_study(study.study_name, attrs)
    spec.extra_seeds = extra_seeds_of(attrs)
    return spec


# -- cell aliases ---------------------------------------------------------------------------------------------
ALIASES_ATTR = "cell_aliases"


def trial_cell(attrs: dict, aliases: dict[str, str] | None = None) -> str | None:
    """The grid cell a trial belongs to: its ``cell`` user attr, or the cell that id is an alias of."""
    cell = attrs.get("cell")
    return aliases.get(cell, cell) if isinstance(aliases, dict) and isinstance(cell, str) else cell


def trial_unit(attrs: dict, aliases: dict[str, str] | None = None) -> str | None:
    """The unit key of a trial (``<cell id>|s<seed>`` or ``…|t<slot>``) under the grid's cell ids."""
    unit, cell = attrs.get("unit"), attrs.get("cell")
    if not isinstance(aliases, dict) or not isinstance(unit, str) or not isinstance(cell, str) \
            or cell not in aliases or not unit.startswith(f"{cell}|"):
        return unit
    return aliases[cell] + unit[len(cell):]


# -- trials -----------------------------------------------------------------------------------------------------
def unit_attrs(unit: Unit, *, attempt: int, run_dir: str, resume: bool, replaces: int | None = None) -> dict:
    """The user attrs a trial of ``unit`` is enqueued with (the worker adds ``worker``, then the results)."""
    attrs = {
        "unit": unit.key,
        "cell": unit.cell.id,
        "cell_params": unit.cell.params,
        "cell_slug": unit.cell.slug,
        "seed": unit.seed,
        "run_dir": run_dir,
        "attempt": attempt,
        "resume": resume,
        "status": "waiting",
    }
    if unit.slot is not None:
        attrs["slot"] = unit.slot
    if replaces is not None:
        attrs["replaces"] = replaces
    return attrs


def trial_status(state: str, status: Any) -> str:
    """The outcome of one trial from its Optuna state name and ``status`` user attr: complete, pruned, running,
    waiting; for FAIL the sweep's verdict (failed, diverged; duplicate: never run), "cancelled" (left out by hand)
    counts as failed, anything else is interrupted (killed, stale, stopped)."""
    if state in STATE_STATUS:
        return STATE_STATUS[state]
    if status == "cancelled":
        return "failed"
    return status if status in FAILED + ("duplicate",) else "interrupted"


# -- `--until-decided` rounds -----------------------------------------------------------------------------------
def record_of(attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The study's ``until_decided`` record (plan, rounds, stop), or None."""
    rec = attrs.get(DECIDE_ATTR)
    return dict(rec) if isinstance(rec, Mapping) else None


def extra_seeds_of(attrs: Mapping[str, Any]) -> dict[str, list[int]]:
    """Cell id → the seeds the recorded rounds added to it."""
    out: dict[str, list[int]] = {}
    for r in (record_of(attrs) or {}).get("rounds") or []:
        for cell in r.get("cells") or []:
            have = out.setdefault(str(cell), [])
            have += [int(s) for s in r.get("seeds") or [] if int(s) not in have]
    return out
