"""Read a study: the Optuna trials, their run records (the source of truth), and the cells of the grid.

The study is found in ``<root>/<study>/optuna.journal`` (the sweeps' default) or any ``--storage`` URL. What was
planned is the resolved spec the study stores (``sweeps.spec.study_format.read_spec``: its cells, units, objective
and each cell's run config; for studies written before too); what happened is the trials. Each trial names its
cell, seed and run directory in its user_attrs; the run directory's ``summary.json`` and ``config.yaml`` win over
the copies in the trial, which are the fallback when a run directory is missing.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from resnet_core.config import PART_KEYS
from resnet_core.errors import ConfigError
from resnet_core.overrides import get_dotted as _nested_get
from resnet_core.record import metrics_frame, read_config, read_summary
from resnet_core.shortcuts import SHORTCUTS
from resnet_core.values import freeze, is_number
from sweeps.queue.access import open_study_named
from sweeps.queue.ran_as import trial_precision
from sweeps.spec.cells import Cell as SpecCell
from sweeps.spec.grid import GridSpec
from sweeps.spec.metrics import SUMMARY_ATTR_NAMES, SUMMARY_NUMBERS as NUMBERS
from sweeps.spec.study_format import (ALIASES_ATTR, LOST, STUDY_ID_ATTR, foreign_owner, owner_phrase, read_spec,
                                      trial_cell_params, trial_status)

from .lesion_file import checked_lesion
from .paper import PaperValue, normalize_dataset, paper_value, resolve_model

# Status of a (cell, seed): which attempt of several represents it (highest wins, then the latest trial).
STATUS_RANK = {"complete": 6, "diverged": 5, "running": 4, "waiting": 3, "interrupted": 2, "failed": 2, "pruned": 2,
               "missing": 0}

# Model attributes the reports reason about, as dotted keys into the run config.
MODEL_ATTRS = ("model.family", "model.depth", "model.block", "model.shortcut", "model.project_all",
               "model.activation", "model.pooling")


# ---------------------------------------------------------------------------------------------------------------
# small helpers
def get_dotted(config: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """``config["model"]["depth"]`` for "model.depth"; a flat ``{"model.depth": …}`` mapping works too."""
    if key in config:
        return config[key]
    return _nested_get(dict(config), key, default)


def part_label(key: str, value: Any) -> str:
    """How a report names a part value: the label its registry gives (``model.activation`` pre → "pre-act",
    ``model.pooling`` avg → "GAP"), else the value itself (a user's part without a label, or another key)."""
    registry = PART_KEYS.get(key[len("model."):]) if key.startswith("model.") else None
    return registry.label(value) if registry is not None else str(value)


def shortcut_option(shortcut: Any, project_all: Any) -> str:
    """He et al.'s names, as the shortcut registry gives them: A (identity + zero pad), B (projection where the
    shape changes), C (projection on every block: B with project_all); 3×3 projections (seed 004) are B3/C3; the
    plain net is 'plain'; a part without an option letter (a user's) is its registered name."""
    option = SHORTCUTS.meta(shortcut).get("option")
    if option is None:
        return str(shortcut)
    return "C" + option[1:] if project_all and option.startswith("B") else option


OPTION_TEXT = {"A": "A: identity + zero padding", "B": "B: 1×1 projection where the shape changes",
               "C": "C: 1×1 projection on every block", "B3": "B: 3×3 projection where the shape changes",
               "C3": "C: 3×3 projection on every block", "plain": "plain (no shortcut)"}


# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Cell:
    """One grid cell: its axis values, config, resolved model and derived labels."""
    id: str
    params: dict[str, Any]
    order: int
    config: dict[str, Any]
    model: dict[str, Any]
    dataset: str
    attrs: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    color_key: str = ""
    paper: PaperValue | None = None

    @property
    def depth(self) -> Any:
        return self.model.get("depth")

    @property
    def is_plain(self) -> bool:
        return self.model.get("shortcut") == "none"

    @property
    def option(self) -> str:
        return shortcut_option(self.model.get("shortcut"), self.model.get("project_all"))


# Trial statuses a relaunch of the sweep would still run (resume, or run for the first time).
UNFINISHED = ("running", "waiting", "interrupted", "missing")


@dataclass
class StudyData:
    name: str
    storage: str                       # where the study was read from (for messages)
    study_dirs: list[Path]             # folders a relative run_dir is resolved against
    user_attrs: dict[str, Any]
    spec: GridSpec                     # the resolved spec the study stores (read_spec): what was planned
    trials: pd.DataFrame               # one row per Optuna trial (every attempt)
    runs: pd.DataFrame                 # one row per expected (cell, seed): the attempt that represents it, or missing
    cells: dict[str, Cell]             # in grid order
    probe: pd.DataFrame | None = None
    lesion: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    optuna_study: Any = None           # the loaded Optuna study (importance reads it)

    @property
    def study_dir(self) -> Path | None:
        return self.study_dirs[0] if self.study_dirs else None

    @property
    def axes(self) -> list[str]:
        return list(self.spec.axes)

    @property
    def seeds(self) -> list[int]:
        return list(self.spec.seeds)

    @property
    def replicates(self) -> str:
        """What a cell's n counts: ``seeds``, or in a search study ``searched trials`` (one seed, other settings)."""
        return "searched trials" if self.spec.search else "seeds"

    @property
    def objective(self) -> dict[str, str]:
        """The study's objective: ``{"metric": "test_error", "direction": "minimize"}``."""
        return dict(self.spec.objective)

    @property
    def objective_key(self) -> str:
        """The run summary key of the study's objective metric (``test_error`` → ``final_test_error``)."""
        return self.spec.summary_key

    @property
    def maximize(self) -> bool:
        """Whether the study's objective is maximized (else a lower value is better)."""
        return self.spec.objective.get("direction") == "maximize"

    def counts(self) -> dict[str, int]:
        counts = self.runs["status"].value_counts().to_dict()
        return {k: int(counts.get(k, 0)) for k in ("complete", "diverged", "failed", "interrupted", "pruned",
                                                   "running", "waiting", "missing", "unreadable")}

    def status_line(self) -> str:
        c = self.counts()
        total = len(self.runs)
        if total == 0:
            return "The study has no trials yet: nothing to report."
        parts = [f"{c['complete']} of {total} runs complete"]
        for key, text in (("running", "running (or on a dead worker)"), ("waiting", "waiting"),
                          ("failed", "failed"), ("interrupted", "interrupted"), ("pruned", "pruned"),
                          ("diverged", "diverged"), ("missing", "missing (no trial)"),
                          ("unreadable", "left out (unreadable run record)")):
            if c[key]:
                parts.append(f"{c[key]} {text}")
        line = "; ".join(parts)
        if any(c[k] for k in UNFINISHED):
            line += ". The study is incomplete: numbers use the completed runs only"
        elif c["complete"] < total:   # every trial ended (a pruned or diverged one is a result): nothing to resume
            line += ". Numbers use the completed runs only"
        return line + "."

    def metrics(self, run_dir: str | Path | None) -> pd.DataFrame:
        """The run's metrics (columns step, epoch, split, name, value); empty if there is no record (or no run
        folder: ``run_dir`` None or NaN). Lines that cannot be read are skipped, counted in a note and a warning (once
        per file)."""
        # a run without a folder is NaN in the runs frame (a truthy float), None elsewhere
        path = Path(run_dir) / "metrics.jsonl" if isinstance(run_dir, (str, Path)) and str(run_dir) else None
        if path is None or not path.exists():
            return pd.DataFrame(columns=["step", "epoch", "split", "name", "value"])
        if not path.is_file():   # a folder of that name: read around, as a damaged file is
            note = f"{path}: not a file; its run's curves are left out"
            if note not in self.notes:
                self.notes.append(note)
                _warn(note)
            return pd.DataFrame(columns=["step", "epoch", "split", "name", "value"])
        stat = path.stat()  # a running study's file grows: the cache key changes with it
        df = _metrics_cached(str(run_dir), stat.st_mtime_ns, stat.st_size)
        bad = df.attrs.get("bad_lines") or []
        if bad:
            note = (f"{path}: {len(bad)} unreadable line{'s' * (len(bad) != 1)} skipped (line "
                    f"{', '.join(map(str, bad[:5]))}{', …' if len(bad) > 5 else ''})")
            if note not in self.notes:
                self.notes.append(note)
                _warn(note)
        return df

    def complete_runs(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] == "complete"]


METRIC_SPLITS = ("train", "val", "test", "grad_norm")  # what the figures and observations read


@lru_cache(maxsize=64)
def _metrics_cached(run_dir: str, _mtime: int, _size: int) -> pd.DataFrame:
    df = metrics_frame(run_dir, splits=METRIC_SPLITS)
    for col in ("split", "name"):  # a 64k-iteration run has ~10^5 rows: categories keep it small
        df[col] = df[col].astype("category")
    return df


# ---------------------------------------------------------------------------------------------------------------
# storage
def _finite(value: Any) -> bool:
    return is_number(value) and math.isfinite(float(value))


def _warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------
def _resolve_run_dir(run_dir: Any, bases: Iterable[Path]) -> Path | None:
    if not run_dir:
        return None
    p = Path(str(run_dir))
    if p.is_absolute():
        return p if p.exists() else None
    for base in bases:
        if (base / p).exists():
            return base / p
    return p if p.exists() else None


def _effective_status(state: str, record: str | None, attr: str | None) -> tuple[str, str | None]:
    """(status, extra reason) of one trial. The run record is the truth about the run, but it cannot know that its
    worker died or that the trial was re-queued; the trial's state says that."""
    record = record if record in ("complete", "diverged", "failed", "interrupted", "running") else None
    if state == "WAITING":
        return ("complete", None) if record == "complete" else ("waiting", None)
    if state == "RUNNING":
        return (record, None) if record in ("complete", "diverged") else ("running", None)
    if state == "PRUNED":
        return "pruned", None
    if state == "COMPLETE":
        return (record if record in ("complete", "diverged", "failed") else "complete"), None
    # FAIL: the record's verdict, else the sweep's (``study_format.trial_status``), else the worker was killed
    if record in ("complete", "diverged", "failed", "interrupted"):
        return record, None
    verdict = trial_status(state, attr)
    if verdict == "duplicate":  # a guard's twin that never ran: shown as an interrupted attempt
        verdict = "interrupted"
    if record == "running":
        return verdict, "the worker stopped while the run record still said running"
    return verdict, None


def _trial_rows(study, spec: GridSpec, dirs: list[Path]) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
    rows, configs = [], {}
    aliases = study.user_attrs.get(ALIASES_ATTR)   # a renamed cell's trials are rows of the cell it is now
    listed = {c.id: c.params for c in spec.cells}
    for t in study.get_trials(deepcopy=False):
        ua = dict(t.user_attrs)
        if ua.get("status") == LOST and "unit" not in ua:   # a placeholder of a salvaged journal: no run
            continue
        cell, params = trial_cell_params(t, aliases, listed)
        run_dir = _resolve_run_dir(ua.get("run_dir"), dirs)
        damaged = None
        try:
            summary = read_summary(run_dir) if run_dir else {}
        except ConfigError as e:
            summary, damaged = {}, str(e)
        if damaged and t.state.name == "COMPLETE":  # the study holds its result: the row comes from the trial's attrs
            _warn(f"{damaged}; trial {t.number} is COMPLETE in the study: its numbers are taken from the study")
            summary = {"status": "complete"}
        elif damaged:  # a damaged record: warn, leave the run out, count it
            _warn(f"{damaged}; trial {t.number} left out of the report")
            rows.append({"trial": t.number, "state": t.state.name, "cell": str(cell), "cell_params": dict(params),
                         "seed": ua.get("seed"), "slot": ua.get("slot"), "run_dir": str(run_dir),
                         "run_dir_attr": ua.get("run_dir"), "record": False, "status": "unreadable",
                         "reason": damaged, "name": ua.get("name"), "value": None,
                         **{key: float("nan") for key in NUMBERS}})
            continue
        if run_dir:
            try:
                configs[t.number] = read_config(run_dir)
            except ConfigError as e:   # one damaged config.yaml: the spec's run config of the cell stands in
                _warn(f"{e}; trial {t.number}'s run config is taken from the study's grid")
        state = t.state.name
        status, extra = _effective_status(state, summary.get("status"), ua.get("status"))
        reason = summary.get("reason") if summary else None
        reason = reason or ua.get("reason") or t.system_attrs.get("fail_reason") or extra
        if status in ("waiting", "running"):  # a retry: the record (or reason) is the previous attempt's
            before = summary.get("status") if summary.get("status") not in (None, "running") else None
            if ua.get("replaces") is not None or before:
                what = f"retry of trial #{ua['replaces']}" if ua.get("replaces") is not None else "retry"
                if before:
                    what += f" (was {before}" + (f": {reason}" if reason else "") + ")"
                reason = what
            elif status == "waiting":
                reason = None
        row = {"trial": t.number, "state": state, "cell": str(cell), "cell_params": dict(params),
               "seed": ua.get("seed", summary.get("seed")), "slot": ua.get("slot"),
               "run_dir": str(run_dir) if run_dir else None,
               "run_dir_attr": ua.get("run_dir"), "record": bool(summary), "status": status,
               "reason": reason, "name": summary.get("name") or ua.get("name"),
               "device": summary.get("device") or ua.get("device"),
               "fused_with": tuple(ua["fused_with"]) if ua.get("fused_with") else None,
               "best_selected_on": summary.get("best_selected_on") or (configs.get(t.number) or {}).get("best_on"),
               "value": t.value if state == "COMPLETE" else None,
               "started": t.datetime_start, "ended": t.datetime_complete}
        for key in NUMBERS:
            value = summary.get(key) if summary else None
            kept = ua.get(SUMMARY_ATTR_NAMES.get(key, key))
            if kept is None and key in SUMMARY_ATTR_NAMES:
                kept = ua.get(key)  # a study written before the user attr was renamed
            if value is None:
                value = kept
            elif not _finite(value) and _finite(kept):   # a record damaged after the study took its result
                _warn(f"{run_dir}/summary.json: {key} is {value!r}, the study holds {kept}: taken from the study")
                value = kept
            row[key] = float(value) if is_number(value) else float("nan")
        metric = spec.summary_key
        if status == "complete" and metric in row and not _finite(row[metric]):
            reason = f"{metric} is not a finite number in its record or the study"
            where = f"{run_dir}/summary.json" if run_dir else f"{ua.get('run_dir') or 'its run folder'} (not found)"
            _warn(f"{where}: {reason}; trial {t.number} left out of the report")
            row.update(status="unreadable", reason=reason)
        rows.append(row)
    return rows, configs


def _read_csv(path: Path | str | None, required: tuple[str, ...], what: str, explicit: bool,
              notes: list[str]) -> pd.DataFrame | None:
    if path is None:
        return None
    path = Path(path)
    if not path.exists():
        if explicit:
            raise ConfigError(f"{what} file not found: {path}")
        return None
    try:
        df = pd.read_csv(path)
    except Exception as e:
        if explicit:
            raise ConfigError(f"cannot read {what} file {path}: {str(e).splitlines()[0]}; expected a CSV with "
                              f"columns {', '.join(required)}") from None
        notes.append(f"{path} ignored: not a readable CSV")
        return None
    missing = [c for c in required if c not in df.columns]
    if missing:
        msg = f"{what} file {path} lacks column(s) {', '.join(missing)}; expected: {', '.join(required)}"
        if explicit:
            raise ConfigError(msg)
        notes.append(msg)
        return None
    return df


PROBE_COLUMNS = ("family", "depth", "shortcut", "activation", "layer_index", "layer", "grad_norm")
LESION_COLUMNS = ("block", "block_index", "test_error", "baseline_error")


def check_own_dirs(study: str, storage: str, study_id: Any, dirs: Iterable[Path]) -> None:
    """Refuse (one line) to read run records from a folder whose owner record names another study."""
    for d in dirs:
        record = foreign_owner(d, study_id)
        if record is not None:
            raise ConfigError(f"report {study} (in {storage}): {owner_phrase(d, record)}, not this study's runs: "
                              f"give --root the folder this study's launch used")


def load_study(study: str, root: str | Path | None = None, storage: str | None = None,
               probe: str | Path | None = None, lesion: str | Path | None = None) -> StudyData:
    loaded, desc, dirs = open_study_named(study, root, storage)
    ua = dict(loaded.user_attrs)
    # where the sweep put the study folder, read only when the given folders hold no run folders: a copied study
    # folder (a clone's results/) never reads records from the folder it was copied from
    notes: list[str] = []
    if ua.get("study_dir") and not any((d / "trials").is_dir() for d in dirs):
        notes.append(f"run records read from {ua['study_dir']}, the study folder its sweep recorded (none in "
                     f"{', '.join(map(str, dirs))})")
        _warn(notes[-1])
        dirs.append(Path(str(ua["study_dir"])))
    check_own_dirs(study, desc, ua.get(STUDY_ID_ATTR), dirs)
    spec = read_spec(loaded, notes)   # the plan: cells, units, objective, run configs (for old studies too)

    rows, configs = _trial_rows(loaded, spec, dirs)
    trials = pd.DataFrame(rows, columns=["trial", "state", "cell", "cell_params", "seed", "slot", "run_dir",
                                         "run_dir_attr",
                                         "record", "status", "reason", "name", "device", "fused_with", "best_selected_on",
                                         "value", "started", "ended", *NUMBERS])

    # -- cells, in grid order: the spec's, then those of trials outside it (they still count)
    cells_in_order = list(spec.cells)
    known = {c.id for c in cells_in_order}
    for row in sorted(rows, key=lambda r: r["trial"]):
        if row["cell"] not in known:
            known.add(row["cell"])
            cells_in_order.append(SpecCell(row["cell"], "", row["cell_params"]))
    order = {c.id: i for i, c in enumerate(cells_in_order)}
    if spec.search:
        notes.append(f"search study: each cell pools its {spec.n_trials} searched trials (different "
                     f"hyperparameters)")

    # -- one row per expected unit: the spec's (cell, seed), or (cell, slot) in a search study
    def unit_key(cell: str, seed: Any, slot: Any) -> tuple[str, str, str]:
        return cell, freeze(seed), freeze(slot)

    expected: list[tuple[str, Any, Any]] = [(u.cell.id, u.seed, u.slot) for u in spec.units()]
    seen = {unit_key(*u) for u in expected}
    for row in sorted(rows, key=lambda r: r["trial"]):  # trials outside the plan still count
        u = (row["cell"], row["seed"], row["slot"])
        if unit_key(*u) not in seen:
            seen.add(unit_key(*u))
            expected.append(u)
    expected.sort(key=lambda u: order[u[0]])
    params_of = {c.id: c.params for c in cells_in_order}
    by_key: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        by_key.setdefault(unit_key(row["cell"], row["seed"], row["slot"]), []).append(row)
    chosen: list[dict[str, Any]] = []
    for cell, seed, slot in expected:
        attempts = by_key.get(unit_key(cell, seed, slot), [])
        if attempts:
            best = max(attempts, key=lambda r: (STATUS_RANK.get(r["status"], 1), r["trial"]))
            chosen.append({**best, "attempts": len(attempts)})
        else:
            empty = {k: float("nan") for k in NUMBERS}
            chosen.append({"trial": None, "state": None, "cell": cell, "cell_params": params_of[cell],
                           "seed": seed, "slot": slot, "run_dir": None, "run_dir_attr": None, "record": False,
                           "status": "missing", "reason": "no trial in the study", "name": None,
                           "value": None, **empty, "attempts": 0})
    runs = pd.DataFrame(chosen, columns=list(trials.columns) + ["attempts"])

    # -- cell configs: a run record's config (the truth), else the spec's run config of the cell
    found: dict[str, dict[str, Any]] = {}
    for cell in order:
        for row in sorted((r for r in rows if r["cell"] == cell),
                          key=lambda r: (-STATUS_RANK.get(r["status"], 1), r["trial"])):
            if configs.get(row["trial"]):
                found[cell] = configs[row["trial"]]
                break
    cells = make_cells(spec, cells_in_order, found)

    # -- probe and lesion outputs: given, or found in the study folder
    def pick(given: Any, name: str) -> tuple[Any, bool]:
        if given:
            return given, True
        for d in dirs:
            if (d / name).exists():
                return d / name, False
        return None, False

    probe_path, probe_explicit = pick(probe, "probe.csv")
    lesion_path, lesion_explicit = pick(lesion, "lesion.csv")
    probe_df = _read_csv(probe_path, PROBE_COLUMNS, "probe", probe_explicit, notes)
    lesion_df = checked_lesion(_read_csv(lesion_path, LESION_COLUMNS, "lesion", lesion_explicit, notes), lesion_path,
                               lesion_explicit, notes, study, trials, dirs)

    picked = test_selected_note(runs, cells)
    if picked:
        notes.append(picked)
    mixed = mixed_precision_note(runs, loaded.get_trials(deepcopy=False), cells)
    if mixed:
        notes.append(mixed)
    return StudyData(name=study, storage=desc, study_dirs=dirs, user_attrs=ua, spec=spec, trials=trials, runs=runs,
                     cells=cells, probe=probe_df, lesion=lesion_df, notes=notes, optuna_study=loaded)


def mixed_precision_note(runs: pd.DataFrame, trials: Sequence[Any], cells: Mapping[str, "Cell"]) -> str | None:
    """A note naming the cells whose completed runs ran as more than one precision (a study from before a launch
    refused to mix them: ``sweeps.queue.ran_as``), with the seeds of each; their means pool both. None if none."""
    by_number = {t.number: t for t in trials}
    parts = []
    for cell, group in runs[runs["status"] == "complete"].groupby("cell", sort=False):
        seeds: dict[str, list[str]] = {}
        for number, seed in zip(group["trial"], group["seed"]):
            trial = by_number.get(number)
            ran = trial_precision(trial.user_attrs) if trial is not None else None
            if ran is not None:
                seeds.setdefault(ran, []).append(str(seed))
        if len(seeds) > 1:
            label = cells[cell].label if cell in cells else cell
            parts.append(f"{label}: " + ", ".join(f"{p} (seed{'s' * (len(s) > 1)} {', '.join(s)})"
                                                    for p, s in sorted(seeds.items())))
    if not parts:
        return None
    return ("MIXED precision (its runs' `precision` records; the means pool them): " + "; ".join(parts)
            + ". A launch now refuses to mix them (`precision: auto` resolves per machine).")


def test_selected_note(runs: pd.DataFrame, cells: Mapping[str, "Cell"]) -> str | None:
    """A note naming the cells with runs whose best checkpoint was picked on the test set (`best_on: test`: the
    summary's ``best_selected_on``, else the run config's ``best_on``), or None if the study has none."""
    picked = set(runs.loc[runs["best_selected_on"] == "test", "cell"]) if "best_selected_on" in runs else set()
    if not picked:
        return None
    names = ", ".join(cells[c].label or c for c in cells if c in picked)
    return (f"{names}: the best checkpoints (best.pt) were selected on the test set (`best_on: test`; the summaries' "
            f"`best_selected_on: test`), so their best_test_error is optimistic, not a held-out estimate; the test "
            f"error columns are each run's final test error.")


def make_cells(spec: GridSpec, cells: Iterable[SpecCell] | None = None,
               configs: Mapping[str, dict[str, Any]] | None = None) -> dict[str, Cell]:
    """The report's cells, in the given order (``cells``, default the spec's): each with its run config
    (``configs``: a run record's, the truth; else the spec's run config of the cell and its first seed), resolved
    model, dataset, paper value, attributes and label."""
    out: dict[str, Cell] = {}
    for order, cell in enumerate(spec.cells if cells is None else cells):
        config = (configs or {}).get(cell.id)
        if config is None:
            config = spec.run_config(cell, spec.seeds[0])
        model = resolve_model(config["model"]) if isinstance(config.get("model"), Mapping) else {}
        dataset = normalize_dataset(get_dotted(config, "data.name", "") or "")
        c = Cell(id=cell.id, params=dict(cell.params), order=order, config=config, model=model, dataset=dataset)
        c.paper = paper_value(dataset, model) if model else None
        out[cell.id] = c
    _derive_attrs(out, list(spec.axes))
    return out


# ---------------------------------------------------------------------------------------------------------------
def _axis_keys(cells: Mapping[str, Cell], axes: list[str]) -> list[str]:
    """Dotted keys the cells may differ in: the grid axes (a mapping-valued axis expands to its keys) and the model
    attributes the reports reason about."""
    keys: list[str] = []
    for axis in axes:
        values = [c.params.get(axis) for c in cells.values()]
        if any(isinstance(v, Mapping) for v in values):
            for v in values:
                if isinstance(v, Mapping):
                    keys += [k if "." in k else f"{axis}.{k}" for k in v]
        else:
            keys.append(axis)
    keys += list(MODEL_ATTRS) + ["data.name"]
    return list(dict.fromkeys(keys))


def _derive_attrs(cells: Mapping[str, Cell], axes: list[str]) -> None:
    keys = _axis_keys(cells, axes)
    for c in cells.values():
        attrs = {}
        for key in keys:
            if key.startswith("model."):
                attrs[key] = c.model.get(key[len("model."):], get_dotted(c.config, key))
            elif key == "data.name":
                attrs[key] = c.dataset
            else:
                attrs[key] = get_dotted(c.config, key, c.params.get(key))
        c.attrs = attrs
    varying = [k for k in keys if len({freeze(c.attrs.get(k)) for c in cells.values()}) > 1]
    residual = [c for c in cells.values() if not c.is_plain]
    options_vary = len({c.option for c in residual}) > 1
    for c in cells.values():
        if not c.model:  # no run config and no base: nothing to say about the network, name the cell
            c.label = c.color_key = ", ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in c.params.items()) or c.id
            continue
        head = "plain" if c.is_plain else "ResNet"
        depth = c.depth
        label = f"{head}-{depth}" if depth is not None else head
        if not c.is_plain and options_vary:
            label += f" {c.option}"
        extra = _extras(c, varying)
        c.label = label + (f" ({', '.join(extra)})" if extra else "")
        colour = [f"{depth}-layer" if depth is not None else ""]
        if not c.is_plain and options_vary:
            colour.append(c.option)
        c.color_key = " ".join(x for x in colour + extra if x)
    # labels must be unique; fall back to the cell id where two collide
    seen: dict[str, int] = {}
    for c in cells.values():
        seen[c.label] = seen.get(c.label, 0) + 1
    for c in cells.values():
        if seen[c.label] > 1:
            c.label = f"{c.label} [{c.id}]"
            c.color_key = f"{c.color_key} [{c.id}]"


def _extras(c: Cell, varying: list[str]) -> list[str]:
    out = []
    for key in varying:
        if key in ("model.depth", "model.shortcut", "model.project_all"):
            continue
        value = c.attrs.get(key)
        if key in ("model.family", "model.activation", "model.pooling", "model.block"):
            out.append(part_label(key, value))
        elif key == "data.name":
            out.append(str(value))
        elif key.startswith("model.") and key[len("model."):] in PART_KEYS:  # a stem, by its label
            out.append(f"{key.split('.')[-1]}={part_label(key, value)}")
        else:
            out.append(f"{key.split('.')[-1]}={_short(value)}")
    return out


def _short(value: Any) -> str:
    """A value for a label: floats to 4 significant digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def varying_keys(cells: Iterable[Cell]) -> list[str]:
    """The attribute keys whose values differ among these cells."""
    cells = list(cells)
    if not cells:
        return []
    keys = list(cells[0].attrs)
    return [k for k in keys if len({freeze(c.attrs.get(k)) for c in cells}) > 1]


def same_except(a: Cell, b: Cell, ignore: Iterable[str]) -> bool:
    """True when the two cells agree on every attribute but the ignored ones."""
    ignore = set(ignore)
    keys = (set(a.attrs) | set(b.attrs)) - ignore
    return all(freeze(a.attrs.get(k)) == freeze(b.attrs.get(k)) for k in keys)
