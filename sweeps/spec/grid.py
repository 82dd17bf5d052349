"""Ablation grids: load a grid YAML, check it whole, and expand it into units (one trial each).

A grid file::

    study: degradation-cifar10            # the Optuna study name and the folder runs/<study>/
    base: {…}                             # a full run config (resnet_core.run_config.RunConfig)
    grid:                                 # dotted key → list of values; full factorial
      model.depth: [20, 32, 44, 56]
      model.shortcut: [none, identity]
    extra_cells:                          # optional: more cells outside the factorial (dotted key → value)
      - {model.depth: 110, model.shortcut: identity, schedule.warmup: 400, schedule.warmup_lr: 0.01}
    seeds: [0, 1, 2]                      # every cell runs once per seed
    search:                               # optional Optuna knobs, sampled by TPE inside every cell
      optim.lr: {log_uniform: [0.01, 0.5]}
    n_trials: 20                          # search only: trials per cell
    timeout: 3600                         # optional: start no new trial after this many seconds of a launch
    objective: {metric: test_error, direction: minimize}
    wandb: {project: resnet-ablate, entity: null, mode: offline}
    plugins: [my_parts.py]                # optional: modules registering your own parts (resnet_core.plugins);
                                          # a relative path is relative to this file; every worker imports them

Everything is checked when the file is loaded, before any study exists: an unknown key, an empty axis, an axis that
names no config key, a value that makes any cell's run config invalid, a cell no trial can train (``resnet_core.
feasibility``), two cells that resolve to one run config or build the same network and train it alike, a written
value that no cell it reaches reads (``resnet_core.effect``), or a ``--set`` that a cell would override is a one-line
`ConfigError`. Every value of every search knob is checked on its own (against every cell, or a bounded sample of
cells in a very large grid), and a bounded sample of whole combinations as well.
A grid of more than ``MAX_CELLS`` cells or ``MAX_TRIALS`` trials is refused before any cell is built.
An axis that names a whole section (``model: [{depth: 8}, {depth: 14}]``) merges into the base's section.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from resnet_core.data import dataset_shape
from resnet_core.data.imagefolder import check_imagefolder, train_images
from resnet_core.data.sources import check_present
from resnet_core.effect import Unread, dropped, is_unread, no_effect, note, written_leaves
from resnet_core.errors import ConfigError, choices_error, reworded
from resnet_core.feasibility import check_batches, check_trainable
from resnet_core.overrides import (apply_overrides, check_key, get_dotted, leaves, overlaps, parse_assignment,
                                   set_dotted, split_values)
from resnet_core.plugins import load_plugins, plugin_records, resolve as resolve_plugin
from resnet_core.run_config import SEED_MAX, RunConfig, canonical_dict, load_yaml
from resnet_core.values import check_name, freeze, is_int, is_number, parse_value, unless_null

from .cells import PER_TRIAL, Cell, cell_id, config_text, differing_keys, format_value, make_slugs, with_params
from .launcher import parse_launcher
from .metrics import DEFAULT_OBJECTIVE, DIRECTIONS, METRICS

TOP_KEYS = ("study", "description", "base", "grid", "extra_cells", "seeds", "search", "n_trials", "timeout",
            "objective", "wandb", "launcher", "plugins")
SEARCH_KINDS = ("uniform", "log_uniform", "int", "choice")
WANDB_KEYS = ("project", "entity", "mode")
WANDB_MODES = ("online", "offline", "disabled")
RESERVED_AXES = {"name": "set per trial to <study>-<cell>-s<seed>", "seed": "set by `seeds`",
                 "device": "set per worker by --devices"}
MAX_CELLS = 10_000          # a grid with more cells is refused (docs/sweeps.md: "Ablation studies")
MAX_TRIALS = 100_000        # …and one with more (cell, seed) / (cell, search slot) trials
SAMPLE = 64                 # whole search combinations checked per grid (every single value is checked anyway)
CHECK_BUDGET = 4_000        # run configs built for the per-value search checks before sampling cells
INT_PROBES = 256            # an int knob's values checked one by one: all of them up to this many, else a spread


@dataclass(frozen=True)
class SearchKnob:
    key: str
    kind: str            # uniform | log_uniform | int | choice
    args: tuple          # (low, high) or the choices

    def distribution(self):
        import optuna

        if self.kind == "uniform":
            return optuna.distributions.FloatDistribution(self.args[0], self.args[1])
        if self.kind == "log_uniform":
            return optuna.distributions.FloatDistribution(self.args[0], self.args[1], log=True)
        if self.kind == "int":
            return optuna.distributions.IntDistribution(self.args[0], self.args[1])
        return optuna.distributions.CategoricalDistribution(list(self.args))

    def suggest(self, trial) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.args))
        if self.kind == "int":
            return trial.suggest_int(self.key, self.args[0], self.args[1])
        return trial.suggest_float(self.key, self.args[0], self.args[1], log=self.kind == "log_uniform")

    def probe_values(self) -> list[Any]:
        """Values that validation builds a run config with: every choice; every integer of an int range (``INT_PROBES``
        of them spread over a longer one, the ends included); the ends of a float range."""
        if self.kind == "int":
            low, high = self.args
            count = high - low + 1
            if count <= INT_PROBES:
                return list(range(low, high + 1))
            return sorted({low + round(i * (count - 1) / (INT_PROBES - 1)) for i in range(INT_PROBES)})
        return list(self.args)

    def to_dict(self) -> dict[str, Any]:
        return {self.kind: list(self.args)}


@dataclass(frozen=True)
class Unit:
    """One trial's worth of work: a cell, a seed and (search only) a slot index."""
    cell: Cell
    seed: int
    slot: int | None = None          # search: the k-th trial of the cell

    @property
    def key(self) -> str:
        return f"{self.cell.id}|t{self.slot}" if self.slot is not None else f"{self.cell.id}|s{self.seed}"

    @property
    def run_name(self) -> str:
        """The default run folder under trials/ (a retried failure gets a -r<k> suffix)."""
        return f"{self.cell.slug}-t{self.slot}-s{self.seed}" if self.slot is not None else \
            f"{self.cell.slug}-s{self.seed}"


@dataclass
class GridSpec:
    study: str
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    seeds: list[int]
    cells: list[Cell]
    search: list[SearchKnob] = field(default_factory=list)
    n_trials: int | None = None
    timeout: float | None = None
    objective: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_OBJECTIVE))
    wandb: dict[str, Any] = field(default_factory=dict)
    extra_cells: list[dict[str, Any]] = field(default_factory=list)
    grid_file: str | None = None
    description: str | None = None
    launcher: dict[str, Any] = field(default_factory=dict)   # {slurm: {...}}: sweeps/launch/slurm.py reads it
    plugins: list[str] = field(default_factory=list)         # resolved plugins (absolute paths or module names)
    extra_seeds: dict[str, list[int]] = field(default_factory=dict)  # cell id → seeds `--until-decided` added

    # -- derived ----------------------------------------------------------------------------------------------
    @property
    def axes(self) -> list[str]:
        """Every dotted key some cell sets: the grid axes, then keys only extra cells set."""
        out = list(self.grid)
        for extra in self.extra_cells:
            out += [k for k in extra if k not in out]
        return out

    @property
    def summary_key(self) -> str:
        return METRICS[self.objective["metric"]][0]

    @property
    def report_key(self) -> str:
        return METRICS[self.objective["metric"]][1]

    def cell_seeds(self, cell: Cell) -> list[int]:
        """The seeds a cell runs: the grid's, then those rounds of ``--until-decided`` added (``rounds``)."""
        return self.seeds + [s for s in self.extra_seeds.get(cell.id, []) if s not in self.seeds]

    def trial_config(self, attrs: dict[str, Any], device: str | None = None) -> dict[str, Any]:
        """The run config of the trial with user attrs ``attrs`` (search values aside): its cell's, named
        ``<study>-<slug>[-t<slot>]-s<seed>`` (a resumed trial keeps its run's slug, even if its cell was renamed)."""
        cell = self.cell_of(attrs)
        seed, slot = int(attrs["seed"]), attrs.get("slot")
        slug = attrs.get("cell_slug") or cell.slug
        name = f"{self.study}-{slug}" + (f"-t{slot}" if slot is not None else "") + f"-s{seed}"
        return self.run_config(cell, seed, device=device, name=name)

    def cell_of(self, attrs: dict[str, Any]) -> Cell:
        """The cell a trial's user attrs name: the grid's, else one rebuilt from the trial's own ``cell_params``."""
        for c in self.cells:
            if c.id == attrs.get("cell"):
                return c
        return Cell(attrs.get("cell", ""), attrs.get("cell_slug", "cell"), dict(attrs.get("cell_params") or {}))

    def units(self) -> list[Unit]:
        """The (cell, seed) units in the order they are enqueued, so in the order one worker runs them: seed by
        seed (every cell's first seed, then every cell's second...), so that a study stopped part-way, or still
        running across sessions, holds comparable cells rather than all seeds of the first few."""
        if self.search:
            return [Unit(c, self.seeds[k % len(self.seeds)], k) for c in self.cells for k in range(self.n_trials)]
        seeds = {c.id: self.cell_seeds(c) for c in self.cells}
        order = list(dict.fromkeys(s for c in self.cells for s in seeds[c.id]))
        return [Unit(c, s) for s in order for c in self.cells if s in seeds[c.id]]

    def run_config(self, cell: Cell, seed: int, search_values: dict[str, Any] | None = None,
                   device: str | None = None, name: str | None = None) -> dict[str, Any]:
        """The run config dict of one trial: base, then the cell's values, the search values, name and seed."""
        cfg = with_params(self.base, cell.params)
        for key, value in (search_values or {}).items():
            set_dotted(cfg, key, value)
        cfg["name"] = name or f"{self.study}-{cell.slug}-s{seed}"
        cfg["seed"] = seed
        if device is not None:
            cfg["device"] = device
        return cfg

    def study_attrs(self) -> dict[str, Any]:
        """The spec's one serialization: the study's user attrs a launch writes, which workers (``from_study``) and
        `reports` read back."""
        return {
            "grid_axes": self.axes,
            "grid": self.grid,
            "extra_cells": self.extra_cells,
            "seeds": self.seeds,
            "objective": self.objective,
            "base": self.base,
            "grid_file": self.grid_file,
            "search": {k.key: k.to_dict() for k in self.search},
            "n_trials": self.n_trials,
            "wandb": self.wandb,
            "cells": [{"id": c.id, "slug": c.slug, "params": c.params} for c in self.cells],
            "n_units": len(self.units()),
            "description": self.description,
            "plugins": plugin_records(self.plugins),
            "extra_seeds": self.extra_seeds,
        }

    @classmethod
    def from_study(cls, name: str, attrs: dict[str, Any]) -> "GridSpec":
        """The spec a study stores (``study_attrs``, as every launch writes it), resolved again: the one read path,
        for studies written before as well. The grid file is not read; stored plugins are imported. The seeds that
        ``--until-decided`` rounds added are the study's record's (``study_format.read_spec``)."""
        raw = {k: attrs.get(k) for k in ("base", "grid", "extra_cells", "seeds", "search", "n_trials", "objective",
                                         "wandb", "description")}
        raw = {k: v for k, v in raw.items() if v is not None}
        raw["study"] = name
        plugins = [r["plugin"] for r in attrs.get("plugins") or [] if isinstance(r, dict) and r.get("plugin")]
        if plugins:
            raw["plugins"] = plugins
        return parse_grid(raw, grid_file=attrs.get("grid_file"), check_cells=False)


# -- loading ----------------------------------------------------------------------------------------------------
def load_grid(path: str | Path, overrides: Sequence[str] = (), *, study: str | None = None,
              wandb_mode: str | None = None, plugins: Sequence[str] = (), axes: Sequence[str] = ()) -> GridSpec:
    """Load and check a grid file. ``axes`` (``key=v1,v2``: Hydra's multirun comma syntax, `parse_axis`) are grid
    axes given on the command line: each replaces the file's axis of that key or adds one, and is then part of the
    grid like any other (checked, recorded in the study, compared on a relaunch). ``overrides`` (``key=value``)
    apply to ``base``, except on a grid axis, which they pin to that one value (the grid shrinks: ``--set
    model.depth=20`` runs only the depth-20 cells, and drops extra cells that set another depth); ``study`` renames
    the study; ``wandb_mode`` (off|offline|online) overrides ``wandb.mode``."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"grid file {path} is a directory; give a YAML file")
    d = load_yaml(path)  # ConfigError on a missing file or unparsable YAML
    if not d:
        raise ConfigError(f"{path}: empty grid file; it needs at least `study` and `base`")
    _check_trial_keys(overrides, d.get("seeds"))
    as_written = _cells_unread(d, path) if overrides or axes else None
    _add_axes(d, axes, overrides)
    overrides = _pin_axes(d, overrides)
    base = d.get("base")
    if overrides:
        if base is None:
            base = {}
        if not isinstance(base, dict):
            raise ConfigError(f"{path}: base must be a mapping (a run config), got {type(base).__name__}")
        d["base"] = apply_overrides(base, overrides)
    if study is not None:
        d["study"] = study
    if wandb_mode is not None:
        mode = {"off": "disabled"}.get(wandb_mode, wandb_mode)
        if mode not in WANDB_MODES:
            raise choices_error("--wandb mode", wandb_mode, ("off", "offline", "online"))
        w = unless_null(d.get("wandb"), {})
        if isinstance(w, dict):   # another type: parse_grid names the error
            d["wandb"] = {**w, "mode": mode}
    if plugins and isinstance(unless_null(d.get("plugins"), []), list):  # another type: parse_grid names the error
        d["plugins"] = list(unless_null(d.get("plugins"), [])) + [resolve_plugin(p) for p in plugins]
    try:
        spec = parse_grid(d, grid_file=str(path), overrides=overrides, as_written=as_written)
        _check_overrides_apply(spec, overrides)
        return spec
    except ConfigError as e:
        raise reworded(e, f"{path}: {e}") from None


def _cells_unread(d: dict[str, Any], path: Path) -> list[dict[str, Unread]] | None:
    """The keys each cell of grid dict ``d`` leaves unread as the file writes it (before the command line's
    ``--set`` and axes), or None where the file alone is no valid grid."""
    try:
        spec = parse_grid(copy.deepcopy(d), grid_file=str(path), check_cells=False)
        return [RunConfig.from_dict(spec.run_config(cell, spec.seeds[0])).unread() for cell in spec.cells]
    except ConfigError:
        return None


def _check_trial_keys(overrides: Sequence[str], seeds: Any) -> None:
    """``--set seed=…`` / ``--set name=…`` would be overwritten in every trial: refused, naming what to do instead
    (``device`` is a base key the workers take: see ``sweep.worker_devices``)."""
    for text in overrides:
        key, value = parse_assignment(text)
        if key == "seed":
            raise ConfigError(f"--set seed={value}: a sweep takes each trial's seed from `seeds` "
                              f"({seeds if seeds is not None else [0]} here); write seeds: [{value}] in the grid "
                              f"file, or use `train --set seed={value}` for one run")
        if key == "name":
            raise ConfigError(f"--set name={value}: a sweep names each trial <study>-<cell>-s<seed>; rename the "
                              f"study with --study NAME")


def parse_axis(text: str) -> tuple[str, list[Any]]:
    """``model.depth=20,56`` → ("model.depth", [20, 56]): Hydra's multirun syntax, values split at top-level commas
    (not inside ``[…]``, ``{…}`` or quotes: ``model.widths=[8,16,32],[16,32,64]`` is two values), each typed as YAML
    (as ``--set`` values are). A one-line ConfigError for text without ``=``, an empty key or an empty value."""
    check_key(text, "-m")
    key, eq, raw = text.partition("=")
    key = key.strip()
    if not eq or not key:
        raise ConfigError(f"grid axis {text!r}: write KEY=VALUE1,VALUE2 (Hydra's multirun syntax), e.g. "
                          f"model.depth=20,56")
    parts = split_values(raw)
    if any(not p.strip() for p in parts):
        raise ConfigError(f"grid axis {text!r}: an empty value (values are separated by single commas)")
    return key, [parse_value(p.strip()) for p in parts]


def _add_axes(d: dict[str, Any], axes: Sequence[str], overrides: Sequence[str]) -> None:
    """Put the command line's axes into ``d["grid"]`` (replacing a file axis of the same key); a key given both as
    an axis and by ``--set`` is a ConfigError."""
    if not axes:
        return
    grid = d.get("grid")
    if grid is None:
        grid = d["grid"] = {}
    if not isinstance(grid, dict):
        return  # parse_grid names the error
    pinned = {parse_assignment(o)[0] for o in overrides}
    for text in axes:
        key, values = parse_axis(text)
        if key in pinned:
            raise ConfigError(f"{key} is given both as a grid axis ({text}) and by --set; give it once")
        grid[key] = values


def _pin_axes(d: dict[str, Any], overrides: Sequence[str]) -> list[str]:
    """Apply the overrides of grid axes to ``d`` (the axis becomes ``[value]``) and keep the extra cells that run the
    pinned value (their own, or the base's); of an override of the base, drop the extra cells that set the key to
    another value themselves (the others run the overridden base). Return the overrides for the base (every one but
    a grid axis's)."""
    grid = d.get("grid")
    if not overrides or not isinstance(grid, dict):
        return list(overrides)
    last = dict(parse_assignment(text) for text in overrides)   # a key given again: the last value wins
    for key, value in last.items():
        extra = d.get("extra_cells")
        if isinstance(extra, list):
            kept = [e for e in extra if not isinstance(e, dict) or _runs(d.get("base"), e, key, value,
                                                                         axis=key in grid)]
            if key not in grid:   # a pinned axis drops cells by design; a base key's drop is told
                for e in (e for e in extra if not any(e is k for k in kept)):
                    note(f"--set {key}={format_value(value)} leaves out the extra cell {cell_id(e)!r} (it sets "
                         f"{key}={format_value(e[key])}); the other cells run the overridden base")
            d["extra_cells"] = kept
        if key in grid:
            grid[key] = [value]
    return [text for text in overrides if parse_assignment(text)[0] not in grid]


_UNSET = object()


def _runs(base: Any, extra: dict[str, Any], key: str, value: Any, *, axis: bool) -> bool:
    """Whether extra cell ``extra`` runs ``value`` at ``key``. Of a pinned ``axis``: its own value, else the base's as
    written, else the run config's default (no part is resolved, so no plugin is needed). Of a base override: it
    reaches every cell but one that sets ``key`` itself (a section that holds it is `_check_overrides_apply`'s)."""
    if not axis:
        return key not in extra or freeze(extra[key]) == freeze(value)
    ran = get_dotted(with_params(base, extra), key, _UNSET)
    if ran is _UNSET:
        ran = get_dotted(RunConfig().to_dict(), key, _UNSET)
    return ran is _UNSET or freeze(ran) == freeze(value)


def _check_overrides_apply(spec: GridSpec, overrides: Sequence[str]) -> None:
    """Every base override (``--set`` of a key that is no grid axis) takes effect in every cell: one a cell's value
    would override (a key inside a section axis, a section holding an axis) is a ConfigError naming the cell."""
    sets = [leaf for k, v in apply_overrides({}, overrides).items() for leaf in leaves(k, v)]   # what they set, last

    def given(k: str) -> str:   # the last --set that set ``k``, as the user wrote it
        return next(t for t in reversed(overrides) if overlaps(parse_assignment(t)[0], k))

    for k, _ in sets:   # a searched key: every trial samples its own value
        for knob in spec.search:
            if overlaps(knob.key, k):
                raise ConfigError(f"--set {given(k)} would not take effect: {knob.key} is searched (search: "
                                  f"{knob.key}); drop the --set, or the key from search")
    for cell in spec.cells:
        for axis, value in cell.params.items():
            for key, v in leaves(axis, value):
                for k, want in sets:
                    if overlaps(key, k) and not (key == k and freeze(v) == freeze(want)):
                        raise ConfigError(f"--set {given(k)} would not take effect in cell {cell.id!r}: its {axis} "
                                          f"sets {key}={format_value(v)}; pin the axis with --set {axis}=VALUE, or "
                                          f"change the grid")


def parse_grid(d: dict[str, Any], *, grid_file: str | None = None, check_cells: bool = True,
               overrides: Sequence[str] = (), as_written: list[dict[str, Unread]] | None = None) -> GridSpec:
    """The checked spec of grid dict ``d`` (``check_cells``: build and check every cell; ``overrides``: the
    ``--set`` texts already in ``d``'s base, to name them in an error; ``as_written``: the keys each cell of the
    grid file leaves unread before the command line changed it, see ``_check_effect``)."""
    for key in d:
        if key not in TOP_KEYS:
            raise choices_error("grid key", key, TOP_KEYS)
    # first: the cells' configs may name the parts these register (a relative path is relative to the grid file)
    plugins = load_plugins(d.get("plugins"), base=Path(grid_file).parent if grid_file else None)
    study = d.get("study")
    check_name("study", study)
    base = d.get("base")
    if not isinstance(base, dict):
        raise ConfigError(f"base must be a mapping (a run config), got {base!r}")
    base = copy.deepcopy(base)
    for key, instead in (("seed", "list the seeds in `seeds:`"), ("name", "the study's name is `study:`")):
        if key in base:   # every trial sets it: a value here would be dropped without a word
            raise ConfigError(f"base.{key} ({base[key]!r}) is {RESERVED_AXES[key]} in every trial; remove it "
                              f"({instead})")

    grid = unless_null(d.get("grid"), {})
    if not isinstance(grid, dict):
        raise ConfigError(f"grid must be a mapping of dotted key → list of values, got {grid!r}")
    for key, values in grid.items():
        _check_axis("grid axis", key)
        if not isinstance(values, list):
            raise ConfigError(f"grid axis {key!r} must be a list of values, got {values!r}")
        if not values:
            raise ConfigError(f"grid axis {key!r} is empty; give at least one value")
        if len({freeze(v) for v in values}) != len(values):
            raise ConfigError(f"grid axis {key!r} repeats a value: {values!r}")

    extra = unless_null(d.get("extra_cells"), [])
    if not isinstance(extra, list) or not all(isinstance(e, dict) and e for e in extra):
        raise ConfigError(f"extra_cells must be a list of non-empty mappings (dotted key → value), got {extra!r}")
    for e in extra:
        for key in e:
            _check_axis("extra_cells key", key)

    seeds = d.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(is_int(s) and 0 <= s <= SEED_MAX for s in seeds):
        raise ConfigError(f"seeds must be a non-empty list of integers from 0 to {SEED_MAX} (2**63 - 1), got "
                          f"{seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds repeats a seed: {seeds!r}")

    search = _parse_search(unless_null(d.get("search"), {}), grid, extra)
    n_trials = d.get("n_trials")
    if search:
        if not is_int(n_trials) or n_trials < 1:
            raise ConfigError(f"n_trials (trials per cell) must be a positive integer with `search`, got {n_trials!r}")
    elif n_trials is not None:
        raise ConfigError("n_trials is for `search` (trials per cell); a grid runs every (cell, seed) once")
    timeout = d.get("timeout")
    if timeout is not None and (not is_number(timeout) or timeout <= 0):
        raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")

    objective = unless_null(d.get("objective"), {})
    if not isinstance(objective, dict):
        raise ConfigError(f"objective must be a mapping {{metric, direction}}, got {objective!r}")
    for key in objective:
        if key not in ("metric", "direction"):
            raise choices_error("objective key", key, ("metric", "direction"))
    objective = {"metric": objective.get("metric", "test_error"), "direction": objective.get("direction", "minimize")}
    if objective["metric"] not in METRICS:
        raise choices_error("objective.metric", objective["metric"], METRICS)
    if objective["direction"] not in DIRECTIONS:
        raise choices_error("objective.direction", objective["direction"], DIRECTIONS)

    wandb = unless_null(d.get("wandb"), {})
    if not isinstance(wandb, dict):
        raise ConfigError(f"wandb must be a mapping with keys {', '.join(WANDB_KEYS)}, got {wandb!r} (W&B off: "
                          f"wandb: {{mode: disabled}})")
    for key in wandb:
        if key not in WANDB_KEYS:
            raise choices_error("wandb key", key, WANDB_KEYS)
    if "mode" in wandb and wandb["mode"] not in WANDB_MODES:
        same = " (the command line's --wandb off is disabled in a grid file)" if wandb["mode"] == "off" else ""
        raise ConfigError(f"{choices_error('wandb.mode', wandb['mode'], WANDB_MODES)}{same}")

    description = d.get("description")
    if description is not None and not isinstance(description, str):
        raise ConfigError(f"description must be text (a YAML string), got {description!r}")
    n_cells = math.prod(len(v) for v in grid.values()) + len(extra) if grid else 1 + len(extra)
    n_units = n_cells * (n_trials if search else len(seeds))
    if n_cells > MAX_CELLS or n_units > MAX_TRIALS:
        sizes = " × ".join(f"{k} {len(v)}" for k, v in grid.items()) or "no axes"
        raise ConfigError(f"the grid has {n_cells:,} cells ({sizes}{f' + {len(extra)} extra' if extra else ''}) "
                          f"and {n_units:,} trials; the limit is {MAX_CELLS:,} cells and {MAX_TRIALS:,} trials — "
                          f"split it into several studies or use `search` for continuous knobs")

    parse_launcher(d.get("launcher"))  # checked here, used by `sweep --launcher slurm`
    cells = _expand(grid, extra)
    spec = GridSpec(study=study, base=base, grid=grid, seeds=list(seeds), cells=cells, search=search,
                    n_trials=n_trials, timeout=timeout, objective=objective, wandb=dict(wandb),
                    extra_cells=extra, grid_file=grid_file,
                    description=description,
                    launcher=dict(unless_null(d.get("launcher"), {})), plugins=plugins)
    if check_cells:
        _check_cells(spec, overrides, as_written)
    return spec


def _expand(grid: dict[str, list[Any]], extra: list[dict[str, Any]]) -> list[Cell]:
    keys = list(grid)
    params_list = [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))] if keys else [{}]
    params_list += [dict(e) for e in extra]
    ids = [cell_id(p) for p in params_list]
    seen: set[str] = set()
    for i, p in zip(ids, params_list):
        if i in seen:
            raise ConfigError(f"extra_cells repeats the cell {i!r}")
        seen.add(i)
    slugs = make_slugs(params_list)
    return [Cell(i, s, p) for i, s, p in zip(ids, slugs, params_list)]


def _parse_search(search: Any, grid: dict[str, Any], extra: list[dict[str, Any]]) -> list[SearchKnob]:
    if not isinstance(search, dict):
        raise ConfigError(f"search must be a mapping of dotted key → {{uniform|log_uniform|int|choice: …}}, "
                          f"got {search!r}")
    knobs = []
    for key, spec in search.items():
        _check_axis("search key", key)
        for axis, value in [(k, v) for k, vs in grid.items() for v in vs] + [kv for e in extra for kv in e.items()]:
            if any(overlaps(leaf, key) for leaf, _ in leaves(axis, value)):   # the searched value would win
                raise ConfigError(f"search key {key!r} is also set by the grid ({axis}={format_value(value)}); a key "
                                  f"is either searched or gridded")
        if not isinstance(spec, dict) or len(spec) != 1:
            raise ConfigError(f"search {key!r} must be one of {{uniform: [a, b]}}, {{log_uniform: [a, b]}}, "
                              f"{{int: [a, b]}}, {{choice: [...]}}; got {spec!r}")
        kind, args = next(iter(spec.items()))
        if kind not in SEARCH_KINDS:
            raise choices_error(f"search kind for {key!r}", kind, SEARCH_KINDS)
        if not isinstance(args, list) or not args:
            raise ConfigError(f"search {key!r}: {kind} needs a non-empty list, got {args!r}")
        if kind != "choice":
            ok = len(args) == 2 and all(is_number(a) for a in args) and args[0] < args[1]
            if kind == "int":
                ok = ok and all(is_int(a) for a in args)
            if kind == "log_uniform":
                ok = ok and args[0] > 0
            if not ok:
                need = {"uniform": "two numbers a < b", "log_uniform": "two numbers 0 < a < b",
                        "int": "two integers a < b"}[kind]
                raise ConfigError(f"search {key!r}: {kind} needs {need}, got {args!r}")
        else:
            if len({freeze(a) for a in args}) != len(args):
                raise ConfigError(f"search {key!r}: choice repeats a value: {args!r}")
            if not all(a is None or isinstance(a, (bool, int, float, str)) for a in args):
                raise ConfigError(f"search {key!r}: choices must be scalars (Optuna stores them), got {args!r}")
        knobs.append(SearchKnob(key, kind, tuple(args)))
    return knobs


def _check_axis(what: str, key: Any) -> None:
    """A dotted key must name a field of the run config (e.g. model.depth, optim.lr, batch_size)."""
    if not isinstance(key, str) or not key:
        raise ConfigError(f"{what} must be a dotted config key like model.depth, got {key!r}")
    top = key.split(".")[0]
    if top in RESERVED_AXES and "." not in key:
        raise ConfigError(f"{what} {key!r} cannot vary: it is {RESERVED_AXES[top]}")
    node: Any = RunConfig()
    parts = key.split(".")
    path = []
    for i, part in enumerate(parts):
        if dataclasses.is_dataclass(node):
            names = [f.name for f in dataclasses.fields(node)]
            if part not in names:
                where = ".".join(path) + " keys" if path else "config keys"
                raise ConfigError(f"{what} {key!r} names no config key; {where}: {', '.join(names)}")
            node = getattr(node, part)
        elif isinstance(node, dict):
            return  # a free-form mapping: from_dict checks the rest
        else:
            raise ConfigError(f"{what} {key!r} names no config key: {'.'.join(path)} is a value, not a section")
        path.append(part)


def _check_cells(spec: GridSpec, overrides: Sequence[str] = (),
                 as_written: list[dict[str, Unread]] | None = None) -> None:
    """Build every cell's run config through RunConfig.from_dict, check it can train, that no two cells resolve
    to the same one (``cells.config_key``), that every value written takes effect in some cell (``_check_effect``)
    and that no two cells run the same (``_check_same_run``); then every value of every search knob on its own
    (against every cell, or an evenly spread sample of cells when that would build more than ``CHECK_BUDGET``
    configs), and ``SAMPLE`` whole combinations of knob values (the first, the last, the rest drawn with a fixed
    seed). ``overrides``: the ``--set`` keys in the base, named as such."""
    import random

    trainable = _trainable_checker()
    seen: dict[str, Cell] = {}
    configs = []
    for cell in spec.cells:
        rc = _check_one(spec, cell, {}, trainable)
        same = seen.setdefault(config_text(rc.to_dict()), cell)   # its config_key, from the config built already
        if same is not cell:
            raise _same_config(same, cell)
        configs.append(rc)
    _check_effect(spec, configs, overrides, as_written)
    _check_same_run(spec, configs)
    if not spec.search:
        return
    n_values = sum(len(k.probe_values()) for k in spec.search)
    step = max(1, math.ceil(len(spec.cells) * n_values / CHECK_BUDGET))
    cells = spec.cells[::step]
    for knob in spec.search:
        _check_knob(spec, knob, cells, trainable)
    rng = random.Random(0)
    combos = [{k.key: k.probe_values()[0] for k in spec.search}, {k.key: k.probe_values()[-1] for k in spec.search}]
    combos += [{k.key: rng.choice(k.probe_values()) for k in spec.search} for _ in range(SAMPLE - 2)]
    for i, probe in enumerate(combos):
        _check_one(spec, spec.cells[i % len(spec.cells)], probe, trainable)


def _same_config(a: Cell, b: Cell) -> ConfigError:
    """Two cells that resolve to one run config: the study would run it twice under two ids (and compare it with
    itself); named with the keys they differ in."""
    keys = differing_keys(a, b)
    return ConfigError(f"cells {a.id or 'base'!r} and {b.id or 'base'!r} run the same config (where their "
                       f"{', '.join(keys) or 'values'} differ, one restates the base or another axis overrides it); "
                       f"drop one of them, or that axis value")


def _check_effect(spec: GridSpec, configs: list[RunConfig], overrides: Sequence[str],
                  as_written: list[dict[str, Unread]] | None = None) -> None:
    """Every value the grid writes takes effect in some cell it reaches (``resnet_core.effect``): the base's (or a
    ``--set``'s) in a cell that does not set the key itself, an axis value's in a cell with it, an extra cell's in
    that cell, a searched key in any cell. A value that takes effect in some cells only is fine (``bias_init`` in the
    base, ``conv_bias: [true, false]`` an axis); one no cell reads is a ConfigError naming who wrote it, except a
    base value of the file that some cell read before the command line changed the grid (``as_written``): it is
    dropped with a note."""
    n_grid = len(spec.cells) - len(spec.extra_cells)
    state: dict[tuple[str, str], list[Any]] = {}   # (who, key) → [value, (cell, why) where unread first, read?]
    base = [(_who(k, overrides), k, v) for k, v in written_leaves(spec.base)]
    searched = [(f"search {knob.key}", knob.key, knob.to_dict()) for knob in spec.search]
    for i, (cell, rc) in enumerate(zip(spec.cells, configs)):
        unread = rc.unread()
        own = [(f"extra cell {cell.id!r}" if i >= n_grid else f"grid value {axis}={format_value(value)}", k, v)
               for axis, value in cell.params.items() for k, v in written_leaves({axis: value})] + searched
        writes = own + [w for w in base if not any(overlaps(w[1], k) for _, k, _ in own)]   # else theirs wins
        for who, key, value in writes:
            why = is_unread(key, value, unread)
            entry = state.setdefault((who, key), [value, None, False])
            if why is None:
                entry[2] = True
            elif entry[1] is None:
                entry[1] = (cell, why)
    for (who, key), (value, first, read) in state.items():
        if not read:
            cell, why = first
            if who == "the base" and any(is_unread(key, value, u) is None for u in as_written or []):
                note(dropped(key, value, why, f"{spec.grid_file or 'the grid'}'s base", "the command line's --set/-m"))
                continue
            raise ConfigError(f"no cell of the grid reads {key} as {who} sets it: in cell {cell.id or 'base'!r}, "
                              f"{no_effect(key, value, why)}")


def _who(key: str, overrides: Sequence[str]) -> str:
    """Who wrote base key ``key``: the last ``--set`` that set it, else the base."""
    given = [t for t in overrides if overlaps(parse_assignment(t)[0], key)]
    return f"--set {given[-1]}" if given else "the base"


def _check_same_run(spec: GridSpec, configs: list[RunConfig]) -> None:
    """No two cells build the same network and train it the same way (``run_config.canonical_dict``: auto values,
    stages and widths resolved, unread keys at their defaults), though their configs differ: e.g. ``model.stages:
    null`` against ``[1, 1, 1]`` at depth 8, ``model.block: auto`` against ``basic`` at depth 20. Cells keep their ids
    (``cells.config_key``); this compares what they run."""
    seen: dict[str, Cell] = {}
    for cell, rc in zip(spec.cells, configs):
        same = seen.setdefault(freeze({k: v for k, v in canonical_dict(rc).items() if k not in PER_TRIAL}), cell)
        if same is not cell:
            keys = differing_keys(same, cell)
            raise ConfigError(f"cells {same.id or 'base'!r} and {cell.id or 'base'!r} build the same network and run "
                              f"the same training: their {', '.join(keys) or 'values'} differ only in form (auto "
                              f"values, stages and widths resolve alike) or in keys neither reads; drop one of them, "
                              f"or that axis value")


def _check_knob(spec: GridSpec, knob: SearchKnob, cells: list[Cell], trainable: Any) -> None:
    """Every probe value of ``knob`` against ``cells``: one ConfigError naming the values that cannot run (an int
    range whose inner values fail, as depths that are not 6n+2 do, is refused with them, not trial by trial)."""
    bad: dict[Any, ConfigError] = {}
    for value in knob.probe_values():
        for cell in cells:
            try:
                _check_one(spec, cell, {knob.key: value}, trainable)
            except ConfigError as e:
                bad.setdefault(value, e)
                break
    if not bad:
        return
    first = next(iter(bad.values()))
    if len(bad) == 1 or knob.kind != "int":
        raise first
    good = [v for v in knob.probe_values() if v not in bad]
    shown = ", ".join(map(str, list(bad)[:8])) + (", …" if len(bad) > 8 else "")
    hint = (f"; search the values that can with `{knob.key}: {{choice: {good[:12]}}}`" if good and len(good) <= 12
            else "")
    raise reworded(first, f"search {knob.key} int {list(knob.args)}: {len(bad)} of its values cannot run ({shown}); "
                          f"the first: {first}{hint}")


def _check_one(spec: GridSpec, cell: Cell, probe: dict[str, Any], trainable: Any) -> RunConfig:
    cfg = spec.run_config(cell, spec.seeds[0], probe)
    where = f"cell {cell.id}" if cell.id else "base"
    if probe:
        where += " with " + ", ".join(f"{k}={v}" for k, v in probe.items())
    try:
        rc = RunConfig.from_dict(cfg)
        trainable(rc)
    except ConfigError as e:
        raise reworded(e, f"{where}: {e}") from None
    if spec.objective["metric"] == "val_error" and not rc.data.val_size:
        raise ConfigError("objective.metric val_error needs a validation split; set base.data.val_size "
                          "(e.g. 5000)")
    return rc


def _trainable_checker():
    """``check(rc)``: the dataset's files are there (``sources.check_present``), ``feasibility.check_trainable``
    with the dataset's shape where it is known without loading it (synthetic, the torchvision sets), and an
    ImageFolder tree's layout and its number of training images
    against the batch size; other datasets are checked when a trial loads them."""
    checked: dict[tuple[Any, Any], int] = {}   # (data.path, data.resize) → train images
    present: set[tuple[Any, ...]] = set()         # datasets whose files were found

    def check(rc: RunConfig) -> None:
        where = (rc.data.name, rc.data.path, str(rc.data.data_root()), rc.data.download)
        if where not in present:   # a dataset not there (offline, no download) fails every trial: refused first
            check_present(rc.data)
            present.add(where)
        if rc.data.name == "imagefolder":
            key = (rc.data.path, rc.data.resize)
            if key not in checked:   # refused before the study exists; once per tree
                checked[key] = train_images(check_imagefolder(rc.data.path, rc.data.resize))
            try:
                check_batches(rc, checked[key])   # every trial would fail as it loads the tree
            except ConfigError as e:
                raise reworded(e, f"data.path {rc.data.path}: {e}") from None
        shape = dataset_shape(rc.data)
        if shape is not None:
            n_train, _, size, channels, classes = shape
            check_trainable(rc, image_size=size, channels=channels, classes=classes, n_train=n_train)
    return check


__all__ = ["GridSpec", "SearchKnob", "Unit", "load_grid", "parse_grid"]
