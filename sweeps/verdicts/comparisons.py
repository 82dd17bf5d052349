"""Which comparisons a grid answers, and their evaluation (``inference``) from per-seed results.

A *planned comparison* is a contrast of cell means (``Planned.weights``): one of

- a **main effect** of an axis: each value against the axis's first value (its reference), averaged over the
  other axes' values (the cells of the full factorial only; extra cells are left out). A main effect needs no
  claim: its verdict is *decided* or *undecided*;
- a **two-way interaction** of two axes where the grid is full: ((a, b) − (a0, b)) − ((a, b0) − (a0, b0)),
  averaged over the rest — shown, never used to stop a sweep;
- a **claim** from the papers, which ``reports`` adds through ``CLAIM_SOURCES`` (``reports.cli.register``, as
  ``figures.SUMMARY_FIGURES``), so imports run sweeps → reports and sweeps never imports reports.

``decision_family`` is what ``sweep --until-decided`` decides: the claims plus the main effects — the questions a
grid is built to answer, fixed by the grid before any result exists (docs/verdicts.md).
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd

from resnet_core.run_config import RunConfig

from .inference import LEVEL, SETTLED, Estimate, contrast, seeds_needed, verdict

MAIN, INTERACTION, CLAIM = "main effect", "interaction", "claim"
# The data order of a run is drawn from its seed, its data config and its batch size (resnet_core.data.loaders):
# two cells pair by seed only when these agree.
DATA_ORDER_KEYS = ("data", "batch_size")


@dataclass(frozen=True)
class Planned:
    """One comparison: sum_i w_i * mean_i of ``metric`` (a run-summary key) over the cells in ``weights``."""
    id: str
    label: str
    weights: Mapping[str, float]
    kind: str = MAIN
    metric: str = "final_test_error"
    expect: int = 0                  # the claim: −1 the contrast is negative (A lower), +1 positive, 0 none
    margin: float | None = None      # a difference against the claim it calls negligible (points; inference.within_margin)
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)   # the source's own data (reports)

    @property
    def cells(self) -> list[str]:
        return [c for c, w in self.weights.items() if w]


@dataclass
class Result:
    plan: Planned
    est: Estimate | None
    verdict: str
    seeds_needed: int | None
    dead: dict[str, str]              # cell id → why it did not learn, for the cells this comparison uses
    lost: dict[str, str] = field(default_factory=dict)   # cell id → its seeds that failed or diverged (not counted)

    @property
    def id(self) -> str:
        return self.plan.id


# Sources of claim comparisons: GridSpec → planned comparisons (``reports`` adds one).
ClaimSource = Callable[[Any], list[Planned]]
CLAIM_SOURCES: list[ClaimSource] = []


# -- the grid's comparisons --------------------------------------------------------------------------------------
def _key(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value, sort_keys=True, default=str)


def _fmt(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str) if isinstance(value, (dict, list)) \
        else str(value)


def factorial_index(grid: Mapping[str, Sequence[Any]], cells: Mapping[str, Mapping[str, Any]]) -> dict[tuple, str]:
    """(level index per axis) → cell id, for the cells that are points of the full factorial of ``grid``."""
    axes = list(grid)
    out: dict[tuple, str] = {}
    for cid, params in cells.items():
        if set(params) != set(axes):
            continue
        try:
            idx = tuple([_key(v) for v in grid[a]].index(_key(params[a])) for a in axes)
        except ValueError:
            continue
        out.setdefault(idx, cid)
    return out


def main_effects(grid: Mapping[str, Sequence[Any]], cells: Mapping[str, Mapping[str, Any]],
                 metric: str = "final_test_error") -> list[Planned]:
    """Each axis value against the axis's first, averaged over the other axes (cells of the factorial present for
    both values)."""
    axes = [a for a in grid if len(grid[a]) > 1]
    index = factorial_index(grid, cells)
    pos = {a: i for i, a in enumerate(grid)}
    out = []
    for axis in axes:
        i = pos[axis]
        for level in range(1, len(grid[axis])):
            pairs = [(index[k], index[k[:i] + (0,) + k[i + 1:]]) for k in index
                     if k[i] == level and k[:i] + (0,) + k[i + 1:] in index]
            if not pairs:
                continue
            w: dict[str, float] = {}
            for a, b in pairs:
                w[a] = w.get(a, 0.0) + 1.0 / len(pairs)
                w[b] = w.get(b, 0.0) - 1.0 / len(pairs)
            name = axis.split(".")[-1]
            out.append(Planned(f"main:{axis}={_fmt(grid[axis][level])}-vs-{_fmt(grid[axis][0])}",
                               f"{name} {_fmt(grid[axis][level])} − {_fmt(grid[axis][0])}", w, MAIN, metric))
    return out


def interactions(grid: Mapping[str, Sequence[Any]], cells: Mapping[str, Mapping[str, Any]],
                 metric: str = "final_test_error") -> list[Planned]:
    """Two-way interactions of every pair of axes, where the full factorial is present."""
    index = factorial_index(grid, cells)
    sizes = [len(v) for v in grid.values()]
    axes = list(grid)
    if len(axes) < 2 or len(index) != _prod(sizes):
        return []
    out = []
    for i, j in itertools.combinations(range(len(axes)), 2):
        if sizes[i] < 2 or sizes[j] < 2:
            continue
        for a, b in itertools.product(range(1, sizes[i]), range(1, sizes[j])):
            w: dict[str, float] = {}
            rest = [k for k in index if k[i] == 0 and k[j] == 0]
            for k in rest:
                for li, lj, sign in ((a, b, 1), (0, b, -1), (a, 0, -1), (0, 0, 1)):
                    kk = list(k)
                    kk[i], kk[j] = li, lj
                    cid = index[tuple(kk)]
                    w[cid] = w.get(cid, 0.0) + sign / len(rest)
            ni, nj = axes[i].split(".")[-1], axes[j].split(".")[-1]
            vi, vj = _fmt(grid[axes[i]][a]), _fmt(grid[axes[j]][b])
            out.append(Planned(f"interaction:{axes[i]}={vi}×{axes[j]}={vj}",
                               f"{ni} {vi} × {nj} {vj}", w, INTERACTION, metric))
    return out


def _prod(xs: Iterable[int]) -> int:
    n = 1
    for x in xs:
        n *= x
    return n


def decision_family(spec: Any) -> list[Planned]:
    """What ``--until-decided`` decides for a grid: the registered claims, then each axis's main effects (on the
    objective's summary key)."""
    cells = {c.id: c.params for c in spec.cells}
    plans: list[Planned] = []
    for source in CLAIM_SOURCES:
        plans += source(spec)
    plans += main_effects(spec.grid, cells, spec.summary_key)
    seen, out = set(), []
    for p in plans:
        if p.id not in seen:
            seen.add(p.id)
            out.append(p)
    return out


# -- evaluation -----------------------------------------------------------------------------------------------------
def samples(runs: pd.DataFrame, metric: str) -> dict[str, pd.Series]:
    """Cell id → ``metric`` of its completed runs, indexed by seed (``runs``: columns cell, seed, metric)."""
    if metric not in runs.columns or runs.empty:
        return {}
    df = runs[["cell", "seed", metric]].copy()
    df[metric] = pd.to_numeric(df[metric], errors="coerce")
    df = df.dropna(subset=[metric])
    return {str(c): g.set_index("seed")[metric].astype(float) for c, g in df.groupby("cell", sort=False)}


def data_order(config: Mapping[str, Any]) -> str:
    """What fixes a run's data order besides its seed: ``DATA_ORDER_KEYS`` of the resolved config (defaults
    filled in, so a record written before a key existed compares equal), as text."""
    try:
        resolved = RunConfig.from_dict({k: v for k, v in config.items() if k not in ("device",)}).to_dict()
    except Exception:  # noqa: BLE001 - not a valid run config on its own: compare as written
        resolved = dict(config)
    return _key([resolved.get(k) for k in DATA_ORDER_KEYS])


def same_data_order(orders: Sequence[str]) -> bool:
    """True when every cell draws the same data order for a seed (``data_order`` agrees)."""
    return len(set(orders)) <= 1


def evaluate(plans: Sequence[Planned], runs: pd.DataFrame, *, configs: Mapping[str, Mapping[str, Any]],
             dead: Mapping[str, str] | None = None, lost: Mapping[str, str] | None = None,
             level: float = LEVEL) -> list[Result]:
    """Every planned comparison on ``runs`` (columns cell, seed and the metrics), paired by seed where its cells
    share seeds and data order (``configs``: cell id → run config), at ``level``; ``dead`` and ``lost`` (cell id →
    text: ``rounds.lost_seeds``) are named on the comparisons whose cells they concern."""
    dead, lost = dead or {}, lost or {}
    orders = {cid: data_order(cfg) for cid, cfg in configs.items()}
    cache: dict[str, dict[str, pd.Series]] = {}
    out = []
    for p in plans:
        if p.metric not in cache:
            cache[p.metric] = samples(runs, p.metric)
        paired = all(c in orders for c in p.cells) and same_data_order([orders[c] for c in p.cells])
        est = contrast(cache[p.metric], p.weights, paired=paired, level=level)
        v = verdict(est, p.expect, p.margin)
        need = None if v in SETTLED else seeds_needed(est, level=level, margin=p.margin, expect=p.expect)
        out.append(Result(p, est, v, need, {c: dead[c] for c in p.cells if c in dead},
                          {c: lost[c] for c in p.cells if c in lost}))
    return out
