"""Who a cell is: the run config it resolves to, not the text of its id.

A grid edit can rename cells without changing what they run: a new axis whose value is the one the base already had
(``model.pooling: [avg, max]`` after a study without it), an axis dropped whose value was the base's, a value spelled
another way. A study's trials keep the cell id they were enqueued with (user attrs ``cell`` and ``unit``), so
``cell_aliases`` maps every such id the grid no longer has onto the grid cell whose run config (base + cell values
through ``RunConfig``; name, seed and device aside) is the same: its trials count for that cell and nothing runs
twice. A launch records the map as the study user attr ``cell_aliases`` (``study_format.ALIASES_ATTR``) for
readers. An old id whose config two grid cells share is a one-line ``ConfigError`` naming the axis they differ in
(``cells.config_key`` is the config's text).
"""
from __future__ import annotations

from typing import Any, Iterable

from resnet_core.errors import ConfigError

from .cells import config_key, differing_keys
from .grid import GridSpec

_CACHE: dict[int, tuple[GridSpec, dict[str, Any]]] = {}   # id(spec) → (spec, {"index": …, "keys": …})
_CACHE_MAX = 8


def _cache(spec: GridSpec) -> dict[str, Any]:
    hit = _CACHE.get(id(spec))
    if hit is not None and hit[0] is spec:
        return hit[1]
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.pop(next(iter(_CACHE)))
    entry: dict[str, Any] = {"index": None, "keys": {}}
    _CACHE[id(spec)] = (spec, entry)
    return entry


def cell_aliases(spec: GridSpec, trials: Iterable[Any]) -> dict[str, str]:
    """Cell id of a trial that the grid does not have → the id of the grid cell with the same run config (ids with
    no such cell are left out: their trials belong to cells no longer in the grid). A ``ConfigError`` if two grid
    cells share that config (the trials cannot belong to both)."""
    ids = {c.id for c in spec.cells}
    strays: dict[str, dict[str, Any]] = {}
    for t in trials:
        cell, params = t.user_attrs.get("cell"), t.user_attrs.get("cell_params")
        if isinstance(cell, str) and cell not in ids and cell not in strays and isinstance(params, dict):
            strays[cell] = params
    if not strays:
        return {}
    out = {}
    for cell, params in strays.items():
        same = alias_of(spec, cell, params)
        if same is not None:
            out[cell] = same.id
    return out


def alias_of(spec: GridSpec, cell: str, params: dict[str, Any]) -> Any:
    """The grid cell whose run config (under the grid's base) is that of the old cell ``cell`` with ``params``, or
    None; a ``ConfigError`` if two grid cells share it."""
    cache = _cache(spec)
    if cache["index"] is None:
        index: dict[str, list[Any]] = {}
        for c in spec.cells:
            index.setdefault(config_key(spec.base, c.params), []).append(c)
        cache["index"] = index
    if cell not in cache["keys"]:
        cache["keys"][cell] = config_key(spec.base, params)
    same = cache["index"].get(cache["keys"][cell], [])
    if len(same) > 1:
        raise _ambiguous(spec, cell, same[0], same[1])
    return same[0] if same else None


def _ambiguous(spec: GridSpec, old: str, a: Any, b: Any) -> ConfigError:
    axes = differing_keys(a, b)
    shown = ", ".join(f"{k}={a.params[k] if k in a.params else b.params[k]}" for k in axes) or "no axis"
    return ConfigError(f"study {spec.study!r}: grid cells {a.id or 'base'!r} and {b.id or 'base'!r} run the same "
                       f"config ({shown} is what the base has), so the study's trials of cell {old or 'base'!r} "
                       f"would belong to both; drop the axis {axes[0] if axes else '?'} value that restates the "
                       f"base, or one of the two cells")
