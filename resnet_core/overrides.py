"""`--set key=value` overrides on nested config dicts, with YAML-typed values (``values.parse_value``: the same
typing as a YAML file). A mapping set on a section merges into it: ``model={depth: 8}`` keeps the other model keys."""
from __future__ import annotations

import copy
from typing import Any, Iterable

from .errors import ConfigError
from .values import parse_value


HYDRA_PREFIXES = {"++": "force-add", "+": "add", "~": "delete"}


def check_key(text: str, what: str = "--set") -> None:
    """Refuse Hydra's override prefixes (``+key=value``, ``++key=value``, ``~key``) in one line: every config key
    exists already, so a key is set as ``key=value``; none is deleted (set the value wanted instead)."""
    stripped = text.strip()
    prefix = next((p for p in HYDRA_PREFIXES if stripped.startswith(p)), None)
    if prefix is None:
        return
    key = stripped[len(prefix):].partition("=")[0].strip()
    if prefix == "~":
        raise ConfigError(f"{what} {stripped}: Hydra's ~KEY (delete) is not supported; set {key} to the value wanted "
                          f"instead ({what} {key}=VALUE; `train --print-config` shows the defaults)")
    raise ConfigError(f"{what} {stripped}: Hydra's {prefix}KEY ({HYDRA_PREFIXES[prefix]}) is not needed, every config "
                      f"key exists already; write {what} {stripped[len(prefix):]}")


def parse_assignment(text: str) -> tuple[str, Any]:
    """``key=value`` → (key, YAML-typed value); a one-line ConfigError without ``=`` or with a Hydra prefix."""
    check_key(text)
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    return key.strip(), parse_value(raw)


def split_values(raw: str) -> list[str]:
    """``20,56`` → ["20", "56"]: the text split at top-level commas (not inside brackets, braces, parentheses or
    quotes: ``[8,16],[16,32]`` is two parts, ``'a,b'`` one), as Hydra's multirun syntax splits a value list."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(raw):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(raw[start:i])
            start = i + 1
    return parts + [raw[start:]]


def comma_list_hint(assignments: Iterable[str], error: str, *, multirun: bool) -> str:
    """What to write instead of a ``--set key=a,b`` that ``error`` refuses for its value (the list read as one string,
    ``'a,b'``): '; --set takes one value: …' naming ``-m key=a,b`` (``multirun``: the command has ``-m``, else the
    sweep that does), or '' where no such ``--set`` is to blame."""
    for text in assignments:
        key, eq, raw = text.partition("=")
        if not eq or len(split_values(raw)) < 2:
            continue
        try:
            value = parse_value(raw)
        except ConfigError:
            continue
        if isinstance(value, str) and repr(value) in error:
            axis = f"-m {key.strip()}={raw}"
            return (f"; --set takes one value: to run each of {raw}, make it a grid axis with {axis}" if multirun
                    else f"; --set takes one value: to run each of {raw}, sweep them (resnet-ablate sweep GRID.yaml "
                         f"{axis})")
    return ""


def merge(base: Any, value: Any) -> Any:
    """``value`` merged into ``base``: mappings key by key (recursively), anything else replaces."""
    if isinstance(base, dict) and isinstance(value, dict):
        out = dict(base)
        for k, v in value.items():
            out[k] = merge(base.get(k), v)
        return out
    return copy.deepcopy(value)


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    """``set_dotted(d, "model.depth", 56)``; intermediate dicts are created. A mapping set where a mapping is
    merges into it (``set_dotted(d, "model", {"depth": 8})`` keeps ``model.shortcut``)."""
    parts = key.split(".")
    node = d
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = merge(node.get(parts[-1]), value)


def get_dotted(d: dict[str, Any], key: str, default: Any = None) -> Any:
    node: Any = d
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def leaves(key: str, value: Any) -> list[tuple[str, Any]]:
    """The dotted keys a value set at ``key`` sets, with their values: a mapping's leaves (``model={depth: 8}`` →
    ``[("model.depth", 8)]``), anything else itself (a list is one value)."""
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in leaves(f"{key}.{k}", v)]
    return [(key, value)]


def overlaps(a: str, b: str) -> bool:
    """Whether the dotted keys ``a`` and ``b`` name the same value or one holds the other (``model`` and
    ``model.depth``)."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def apply_overrides(d: dict[str, Any], assignments: Iterable[str]) -> dict[str, Any]:
    """A copy of `d` with each ``key=value`` applied in order (dotted keys, YAML-typed values); `d` is unchanged.

    Raises ConfigError for an assignment without ``=`` or a dotted key through a non-mapping."""
    out = copy.deepcopy(d)
    for text in assignments or ():
        key, value = parse_assignment(text)
        set_dotted(out, key, value)
    return out


def diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """The dotted keys where two nested dicts differ (sorted): ``{"optim": {"lr": 1}}`` vs ``{"optim": {"lr": 2}}``
    → ``["optim.lr"]``."""
    if isinstance(a, dict) and isinstance(b, dict):
        return sorted(k for key in set(a) | set(b) for k in diff_keys(a.get(key), b.get(key), f"{prefix}{key}."))
    return [] if a == b else [prefix.rstrip(".")]
