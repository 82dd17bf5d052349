"""`--set key=value` overrides on nested config dicts, with YAML-typed values."""
from __future__ import annotations

from typing import Any, Iterable

import yaml

from .errors import ConfigError


def parse_assignment(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):  # YAML 1.1 reads "1e6" as a string; a user means the number
        try:
            value = float(value)
        except ValueError:
            pass
    return key.strip(), value


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    """``set_dotted(d, "model.depth", 56)``; intermediate dicts are created."""
    parts = key.split(".")
    node = d
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def get_dotted(d: dict[str, Any], key: str, default: Any = None) -> Any:
    node: Any = d
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def apply_overrides(d: dict[str, Any], assignments: Iterable[str]) -> dict[str, Any]:
    for text in assignments or ():
        key, value = parse_assignment(text)
        set_dotted(d, key, value)
    return d
