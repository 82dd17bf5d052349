"""Grid axes as Optuna params: every trial carries its cell's value of every axis as ``trial.params[axis]``.

So ``study.best_params``, ``study.trials_dataframe()``'s ``params_*`` columns, ``optuna.importance``,
``optuna.visualization`` and optuna-dashboard see the ablation. Each axis (a ``grid`` key, or a key only
``extra_cells`` set) has a distribution over the encoded values the cells take: ``IntDistribution`` for an integer
key's numbers, ``FloatDistribution`` for a float key's (whole ones too; ``log=True`` where `log_spaced`) and mixed
numbers, else a ``CategoricalDistribution`` whose choices are in grid order; a cell that does not set a key takes
the value its resolved run config has (the base's, or the default).

Encoding: ``None``, bools, ints, floats and strings are Optuna scalars and stay as they are; a list or mapping
becomes its JSON text with sorted keys and no spaces (``[16,32,64]``, ``{"a":1}``) — the same text as in the cell
id, stable across processes and storages. ``decode`` turns such a text back into the value.

The params are set when a trial is enqueued (WAITING trials already have them) and suggested again, as fixed
values, when a worker runs the trial (``suggest_axes``): Optuna then returns the stored value.
"""
from __future__ import annotations

import json
import math
from typing import Any

from resnet_core.errors import ConfigError
from resnet_core.overrides import get_dotted
from resnet_core.run_config import RunConfig
from resnet_core.values import accepts, field_type

from .cells import Cell, format_value
from .grid import GridSpec

SCALARS = (type(None), bool, int, float, str)


def encode(value: Any) -> Any:
    """An axis value as an Optuna categorical choice: scalars as they are, a list or mapping as JSON text."""
    return value if isinstance(value, SCALARS) else format_value(value)


def decode(value: Any) -> Any:
    """The inverse of ``encode`` for a JSON text of a list or mapping; anything else as it is."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def axis_keys(spec: GridSpec) -> list[str]:
    """The axes that become params: every key a cell sets, except searched keys (those are params already)."""
    searched = {k.key for k in spec.search}
    return [a for a in spec.axes if a not in searched]


def _resolved_value(spec: GridSpec, cell: Cell, key: str) -> Any:
    """The value a cell's run config has at ``key``: the cell's own, else the resolved base's (defaults filled)."""
    if key in cell.params:
        return cell.params[key]

    try:
        resolved = RunConfig.from_dict(spec.run_config(cell, spec.seeds[0])).to_dict()
    except Exception:  # noqa: BLE001 - a cell only valid with search values: fall back to the base as written
        resolved = spec.base
    return get_dotted(resolved, key, None)


def cell_params(spec: GridSpec, cell: Cell) -> dict[str, Any]:
    """Axis → encoded value of ``cell`` (every axis of the grid, in ``axis_keys`` order)."""
    return {key: encode(_resolved_value(spec, cell, key)) for key in axis_keys(spec)}


def takes_fractions(key: str) -> bool:
    """Whether the run-config key takes numbers that are not whole (``optim.lr``, ``schedule.warmup``: floats)."""
    tp = field_type(RunConfig, key)
    return tp is not None and accepts(tp, 0.5)


def log_spaced(numbers: list[float]) -> bool:
    """Whether an axis's values are spaced on a log scale: all positive, and either three or more whose ratios are
    more even than their differences (``0.05, 0.1, 0.2``; ``1e-3, 1e-2, 1e-1``) or two a decade or more apart."""
    xs = sorted(set(numbers))
    if len(xs) < 2 or xs[0] <= 0:
        return False
    if len(xs) == 2:
        return xs[1] / xs[0] >= 10

    def unevenness(gaps: list[float]) -> float:
        return max(gaps) / min(gaps)

    return (unevenness([math.log(b / a) for a, b in zip(xs, xs[1:])])
            < unevenness([b - a for a, b in zip(xs, xs[1:])]))


def _distribution(values: list[Any], fractions: bool) -> Any:
    """Ints of a key that takes no fractions → IntDistribution; other numbers (ints of a float key too, so a later
    0.5 widens the axis) → FloatDistribution over their range, ``log=True`` where they are `log_spaced` (so
    Optuna's plots put an lr axis 0.001, 0.01, 0.1 on a log scale); anything else → categorical."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if numbers and len(numbers) == len(values) and all(math.isfinite(v) for v in numbers):
        if not fractions and all(isinstance(v, int) for v in numbers):
            return IntDistribution(min(numbers), max(numbers))
        return FloatDistribution(float(min(numbers)), float(max(numbers)), log=log_spaced(numbers))
    return CategoricalDistribution(values)


def axis_values(spec: GridSpec) -> dict[str, list[Any]]:
    """Axis → the encoded values its cells take, in order of first appearance."""
    values: dict[str, list[Any]] = {k: [] for k in axis_keys(spec)}
    for cell in spec.cells:
        for key, value in cell_params(spec, cell).items():
            if not any(_same(value, c) for c in values[key]):
                values[key].append(value)
    return values


def axis_distributions(spec: GridSpec) -> dict[str, Any]:
    """Axis → its distribution over the values the cells take (``axis_values``): ``IntDistribution`` /
    ``FloatDistribution`` (lowest to highest value) for a numeric axis, else ``CategoricalDistribution``."""
    return {k: _distribution(v, takes_fractions(k)) for k, v in axis_values(spec).items()}


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b  # 1, 1.0 and True are different choices


def _contains(dist: Any, other: Any) -> bool:
    """Whether every value ``other`` allows is a value of ``dist`` (same kind)."""
    from optuna.distributions import CategoricalDistribution

    if type(dist) is not type(other):
        return False
    if isinstance(dist, CategoricalDistribution):
        return all(any(_same(c, d) for d in dist.choices) for c in other.choices)
    return dist.low <= other.low and other.high <= dist.high   # the values, whatever the scale


def merged_space(stored: Any, spec: GridSpec) -> dict[str, Any]:
    """The study's param space for ``spec``: the stored one (study user attr ``axis_space``: axis → distribution
    JSON) where it already holds the grid's values, widened where a numeric axis gets new values (on its stored
    scale: a log axis cannot take 0), new axes added.
    Optuna requires one distribution per param name in a study, so a categorical axis cannot gain values: that is a
    ConfigError (use another study name)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution, json_to_distribution

    old = {}
    if isinstance(stored, dict):
        for k, text in stored.items():
            try:
                old[k] = json_to_distribution(text)
            except Exception:  # noqa: BLE001 - unreadable: treat as new
                continue
    out = dict(old)
    for key, values in axis_values(spec).items():
        prev = old.get(key)
        # an integer axis of a float key, as a study made before float keys had FloatDistribution stored it
        new = _distribution(values, takes_fractions(key) and not isinstance(prev, IntDistribution))
        if prev is None or _contains(prev, new):
            out[key] = prev or new
        elif (isinstance(prev, (IntDistribution, FloatDistribution)) and type(prev) is type(new)
              and (not prev.log or new.low > 0)):   # the stored scale stays (Optuna allows one per param name)
            out[key] = type(new)(min(prev.low, new.low), max(prev.high, new.high), log=prev.log)
        else:
            was = (list(prev.choices) if isinstance(prev, CategoricalDistribution) else
                   f"{'integers' if isinstance(prev, IntDistribution) else 'numbers'} {prev.low}…{prev.high}"
                   f"{' on a log scale' if prev.log else ''}")
            raise ConfigError(f"study {spec.study!r} was created with grid axis {key!r} taking {was}; this grid gives "
                              f"it {values}, a value outside those — use another study name (--study NAME)")
    return out


def space_attr(space: dict[str, Any]) -> dict[str, str]:
    """The ``axis_space`` study user attr: axis → distribution JSON."""
    from optuna.distributions import distribution_to_json

    return {k: distribution_to_json(d) for k, d in space.items()}


def study_space(study: Any, spec: GridSpec) -> dict[str, Any]:
    """The param space of an existing study (its ``axis_space`` attr), else the grid's own."""
    stored = study.user_attrs.get("axis_space")
    try:
        return merged_space(stored, spec)
    except Exception:  # noqa: BLE001 - a worker of an older launch: the launcher checked already
        return axis_distributions(spec)


def unit_params(space: dict[str, Any], spec: GridSpec, cell: Cell) -> tuple[dict[str, Any], dict[str, Any]]:
    """(params, distributions) to enqueue a trial of ``cell`` with."""
    params = cell_params(spec, cell)
    return params, {k: space[k] for k in params}
