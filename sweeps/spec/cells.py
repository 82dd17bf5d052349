"""Cells: one point of the grid, and the one home of cell ids. A cell has an id (``model.depth=20,model.shortcut=
none``, the key every trial carries in its ``cell`` user attr), a filesystem slug (``depth-20_shortcut-none``) and
its params (axis → value); ``config_key`` is the run config it resolves to (who the cell is: two cells of one grid
never share one, ``identity`` maps renamed cells by it)."""
from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from resnet_core.errors import ConfigError
from resnet_core.overrides import set_dotted
from resnet_core.run_config import RunConfig

SLUG_MAX = 80
PER_TRIAL = ("name", "seed", "device")   # set per trial: not part of what a cell runs


def format_value(value: Any) -> str:
    """A value as written in a cell id: YAML-like scalars (``none``, ``true``, ``0.1``), JSON for lists/mappings."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def cell_id(params: dict[str, Any]) -> str:
    """``{"model.depth": 20, "model.shortcut": "none"}`` → ``model.depth=20,model.shortcut=none``; {} → ''."""
    return ",".join(f"{k}={format_value(v)}" for k, v in params.items())


def differing_keys(a: "Cell", b: "Cell") -> list[str]:
    """The axes whose values two cells differ in (one set and the other not counts), in first-seen order."""
    missing = object()
    return [k for k in dict.fromkeys([*a.params, *b.params]) if a.params.get(k, missing) != b.params.get(k, missing)]


def with_params(base: Any, params: dict[str, Any]) -> dict[str, Any]:
    """A copy of the run config dict ``base`` with a cell's ``params`` (dotted key → value) set in it; neither is
    changed. The one home of "base + cell" (a trial's config, a cell's identity, the checks of an edited grid)."""
    cfg = copy.deepcopy(base) if isinstance(base, dict) else {}
    for key, value in params.items():
        set_dotted(cfg, key, copy.deepcopy(value))
    return cfg


def config_key(base: dict[str, Any], params: dict[str, Any]) -> str:
    """A canonical text of the run config ``base`` + ``params`` resolves to (as written if it does not resolve)."""
    cfg = {k: v for k, v in with_params(base, params).items() if k not in PER_TRIAL}
    try:
        cfg = RunConfig.from_dict(cfg).to_dict()
    except ConfigError:
        pass  # valid only with search values: compare as written
    return config_text(cfg)


def config_text(cfg: dict[str, Any]) -> str:
    """A run config dict as ``config_key`` writes it: canonical JSON without the per-trial keys."""
    cfg = {k: v for k, v in cfg.items() if k not in PER_TRIAL}
    return json.dumps(cfg, sort_keys=True, default=str, separators=(",", ":"))


@dataclass(frozen=True)
class Cell:
    id: str
    slug: str
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


def _slug_value(value: Any) -> str:
    text = format_value(value)
    text = re.sub(r"[\[\]{}\"':]", "", text).replace(",", "-")
    text = re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-")
    return text or "x"


def make_slugs(params_list: list[dict[str, Any]]) -> list[str]:
    """Filesystem-safe, unique names for cells: the last part of each key and its value (``depth-20``), joined by
    ``_``; where two keys share a last part, the whole key. An empty cell is ``base``. Long or clashing slugs get a
    short hash of the cell id."""
    keys: list[str] = []
    for p in params_list:
        keys += [k for k in p if k not in keys]
    short: dict[str, str] = {}
    for k in keys:
        last = k.split(".")[-1]
        clash = any(o != k and o.split(".")[-1] == last for o in keys)
        short[k] = k.replace(".", "-") if clash else last
    slugs = []
    for p in params_list:
        s = "_".join(f"{short[k]}-{_slug_value(v)}" for k, v in p.items()) or "base"
        if len(s) > SLUG_MAX:
            s = s[: SLUG_MAX - 9].rstrip("-_") + "-" + _hash(cell_id(p))
        slugs.append(s)
    counts: dict[str, int] = {}
    for s in slugs:
        counts[s] = counts.get(s, 0) + 1
    return [s if counts[s] == 1 else f"{s}-{_hash(cell_id(p))}" for s, p in zip(slugs, params_list)]


def _hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]
