"""The study format: what a sweep writes into its Optuna study and what readers (``reports``) read back.

One home for the names and rules both sides use, so a reader never re-derives them:
- where a study lives by default (``<root>/<study>/optuna.journal``) and how a storage URL is shown (``mask_url``,
  from ``resnet_core.redact``: password and secret query parameters masked);
- a cell id (``model.depth=20,model.shortcut=none``: YAML-like scalars, so ``true`` / ``null``, not Python's), and
  the study user attr ``cell_aliases`` (a trial's cell id → the grid cell that runs the same config: ``trial_cell``,
  ``trial_unit``; ``identity`` computes it);
- a trial's user attrs (``unit_attrs``; the run summary's ``params`` is stored as ``n_parameters``);
- the status of a trial from its Optuna state and ``status`` user attr (``trial_status``);
- the resolved spec a study stores (``read_spec``: what workers run and readers read, never the grid file again);
- which study a study folder's runs belong to (``STUDY_ID_ATTR``, ``OWNER_FILE``: ``folder_owner``, ``foreign_owner``).

Imports run one way: ``resnet_core`` ← ``sweeps`` ← ``reports``; this module imports no Optuna.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from resnet_core.errors import ConfigError
from resnet_core.plugins import load_plugin
from resnet_core.record import OWNER_FILE, folder_owner  # noqa: F401 - a study folder's owner (one home: record)
from resnet_core.redact import mask_url  # noqa: F401 - how a storage URL is shown (one home: resnet_core.redact)
from resnet_core.values import freeze

from .cells import Cell, cell_id, make_slugs
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


# -- whose runs a study folder holds ----------------------------------------------------------------------------
STUDY_ID_ATTR = "study_id"   # a study's random id: set by the launch that creates it (or first launches it)
def foreign_owner(study_dir: str | Path, study_id: Any) -> dict[str, Any] | None:
    """The owner record of ``study_dir`` when it names another study than the one with id ``study_id`` (None for a
    study from before ids); None when the folder is that study's or has no owner record."""
    record = folder_owner(study_dir)
    return record if record is not None and record["study_id"] != study_id else None


def owner_phrase(study_dir: str | Path, record: dict[str, Any]) -> str:
    """'runs/tiny holds the runs of study 'tiny' in A.journal'."""
    return f"{study_dir} holds the runs of study {record.get('study')!r} in {record.get('storage')}"


# -- the spec --------------------------------------------------------------------------------------------------
def read_spec(study: Any, notes: list[str] | None = None) -> GridSpec:
    """The resolved ``GridSpec`` an Optuna study stores (``GridSpec.study_attrs``, written by every launch), with the
    seeds its recorded ``--until-decided`` rounds added (as a launch sets them: ``extra_seeds_of``).

    The one read path for studies written before as well: a study without a stored ``grid`` (made before the grid
    was stored, or by hand) has the cells its trials name, in the order they were enqueued (``trial_cell_params``),
    its axes from ``grid_axes`` (else those cells' keys) and, without stored ``seeds``, its trials' seeds; the grid
    file is never read. With ``notes`` (a reader), a stored plugin that cannot be imported here is a note there and
    its parts are named by their registered names, instead of a ``ConfigError``."""
    attrs = dict(study.user_attrs)
    if notes is not None:
        attrs["plugins"] = _importable_plugins(attrs.get("plugins"), notes)
    legacy = None
    if not isinstance(attrs.get("grid"), Mapping):
        trials = list(study.get_trials(deepcopy=False))
        legacy = _trial_cells(attrs, trials)
        attrs["base"] = attrs.get("base") if isinstance(attrs.get("base"), Mapping) else {}
        if not attrs.get("seeds"):
            seeds = {t.user_attrs.get("seed") for t in trials}
            attrs["seeds"] = sorted(s for s in seeds if isinstance(s, int) and not isinstance(s, bool) and s >= 0) \
                or None
    spec = GridSpec.from_study(study.study_name, attrs)
    if legacy is not None:
        axes = list(attrs.get("grid_axes") or dict.fromkeys(k for c in legacy for k in c.params))
        spec.grid = {a: list({freeze(c.params[a]): c.params[a] for c in legacy if a in c.params}.values())
                     for a in axes}
        spec.cells = legacy
    spec.extra_seeds = extra_seeds_of(attrs)
    return spec


def trial_cell_params(trial: Any, aliases: Mapping[str, str] | None = None,
                      cells: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[str, dict[str, Any]]:
    """(cell id, params) of a trial: its ``cell`` user attr under ``aliases`` (an aliased trial takes the params of
    the grid cell it counts for, from ``cells``: id → params) and ``cell_params``, else its Optuna params; a trial
    without a ``cell`` attr is named by its params (``cell_id``), or ``trial<number>`` without params (a ``cell`` of
    "" is the base cell of a grid without axes)."""
    ua = trial.user_attrs
    cell = trial_cell(ua, aliases)
    params = (cells or {}).get(cell) if cell != ua.get("cell") else ua.get("cell_params")
    if not isinstance(params, Mapping):
        params = ua.get("cell_params") if isinstance(ua.get("cell_params"), Mapping) else dict(trial.params)
    if not isinstance(cell, str):   # "" is a cell: the base, of a grid without axes
        cell = cell_id(dict(params)) if params else f"trial{trial.number}"
    return str(cell), dict(params)


def _trial_cells(attrs: Mapping[str, Any], trials: list[Any]) -> list[Cell]:
    """The cells a study without a stored grid holds: its stored ``cells`` list, else those its trials name."""
    found: dict[str, dict[str, Any]] = {}
    for c in attrs.get("cells") or []:
        if isinstance(c, Mapping) and c.get("id") is not None:
            found.setdefault(str(c["id"]), dict(c.get("params") or {}))
    if not found:
        for t in sorted(trials, key=lambda t: t.number):
            if t.user_attrs.get("status") == LOST and "unit" not in t.user_attrs:   # a salvaged journal's placeholder
                continue
            cell, params = trial_cell_params(t, attrs.get(ALIASES_ATTR))
            found.setdefault(cell, params)
    slugs = make_slugs(list(found.values()))
    return [Cell(cid, slug, params) for (cid, params), slug in zip(found.items(), slugs)]


def _importable_plugins(records: Any, notes: list[str]) -> list[dict[str, Any]]:
    """The stored plugin records that import here; each one that does not is a note."""
    out = []
    for r in records or []:
        if not isinstance(r, Mapping) or not r.get("plugin"):
            continue
        try:
            load_plugin(str(r["plugin"]))
        except ConfigError as e:
            notes.append(f"{e}; its parts are shown by name")
            continue
        out.append(dict(r))
    return out


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


def extra_seeds_of(attrs: Mapping[str, Any], aliases: Mapping[str, str] | None = None) -> dict[str, list[int]]:
    """Cell id → the seeds the recorded rounds added to it; a round recorded under a cell's old id counts for the
    cell it is now (``aliases``: old id → id, by default the map the last launch recorded, ``ALIASES_ATTR``)."""
    aliases = aliases if aliases is not None else attrs.get(ALIASES_ATTR) or {}
    out: dict[str, list[int]] = {}
    for r in (record_of(attrs) or {}).get("rounds") or []:
        for cell in r.get("cells") or []:
            have = out.setdefault(str(aliases.get(str(cell), cell)), [])
            have += [int(s) for s in r.get("seeds") or [] if int(s) not in have]
    return out
