"""Values are parsed and typed in one place: every YAML file the project reads, every ``--set key=value``, and the
type check of every field of every config dataclass.

YAML. PyYAML implements YAML 1.1, where ``5e-4`` (no dot) is a *string*, ``yes``/``no``/``on``/``off`` are
booleans, ``010`` is octal 8, ``1:30`` is sexagesimal 90 and ``2024-01-05`` a date; YAML 1.2 (and every user) reads
the first as a number, ``010`` as ten, the others as strings. ``Loader`` is PyYAML's ``SafeLoader`` with YAML 1.2's
scalars: floats (``1e-5``, ``5E+3``, ``-2e3``, ``.5``, ``.inf``), integers (decimal, ``0x10``, ``0o17``; ``_``
between digits as in Python), booleans (true/false only) and no timestamps, so ``load_yaml_text`` and
``parse_value`` (the ``--set`` values, lists included) give the same typed values.

Every YAML file is read by ``read_yaml``: UTF-8, and a key given twice in one mapping is refused with its line
(PyYAML would keep the last one silently).

Types. ``check_fields(obj, prefix)`` checks each field of a config dataclass against its annotation (``int``,
``float``, ``bool``, ``str``, ``list[float]``, ``X | None``, ``int | float``): a bool is not an int, an int is a
float, a float must be finite. Range checks stay with each dataclass's ``validate``. ``is_int`` and ``is_number``
are those rules for one value, and ``freeze`` is a value as a hashable key (20 and 20.0 the same, True not 1).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, choices_error


class Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` reading plain scalars as YAML 1.2 does: floats without a dot (``5e-4``), integers without
    YAML 1.1's octal ``010``, binary and sexagesimal forms, true/false as the only booleans, no timestamps."""


# YAML 1.1's scalar rules out (yes/on booleans, 010 as octal, 1:30 as 90, dates), YAML 1.2's in
YAML_1_1_ONLY = {f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float", "timestamp")}
Loader.yaml_implicit_resolvers = {first: [(tag, rx) for tag, rx in resolvers if tag not in YAML_1_1_ONLY]
                                  for first, resolvers in Loader.yaml_implicit_resolvers.items()}
Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                             list("tTfF"))
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9][0-9_]*|0o[0-7_]+|0x[0-9a-fA-F_]+)$"), list("-+0123456789"))
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def _construct_int(loader: Loader, node: yaml.ScalarNode) -> int:
    """A YAML 1.2 integer: decimal (``010`` is ten, not YAML 1.1's octal 8), ``0o`` octal or ``0x`` hex."""
    text = loader.construct_scalar(node).replace("_", "")
    base = {"0o": 8, "0x": 16}.get(text[:2], 10)
    try:
        return int(text[2:] if base != 10 else text, base)
    except ValueError:   # an explicit !!int on text that is none
        raise yaml.constructor.ConstructorError(problem=f"{text!r} is not an integer",
                                                problem_mark=node.start_mark) from None


Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key given twice in one YAML mapping (PyYAML keeps the last silently: a whole axis or block would vanish)."""

    def __init__(self, key: Any, line: int, first: int) -> None:
        super().__init__(problem=f"key {key!r} given twice in one mapping (line {line}; first at line {first})")
        self.key, self.line, self.first = key, line, first

    def __str__(self) -> str:
        return str(self.problem)


def _construct_mapping(loader: Loader, node: yaml.MappingNode, deep: bool = False) -> Any:
    """``SafeLoader.construct_mapping`` that refuses a key written twice (merge keys ``<<`` may be overridden)."""
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key, line = loader.construct_object(key_node, deep=True), key_node.start_mark.line + 1
        try:
            if key in seen:
                raise DuplicateKeyError(key, line, seen[key])
            seen[key] = line
        except TypeError:  # an unhashable key: PyYAML's own error follows
            continue
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


Loader.construct_mapping = _construct_mapping  # type: ignore[method-assign]


def load_yaml_text(text: str) -> Any:
    """Parse YAML text with ``Loader``. Raises ``yaml.YAMLError`` (``DuplicateKeyError`` for a key given twice)."""
    return yaml.load(text, Loader=Loader)  # noqa: S506 - Loader is a SafeLoader subclass


class Dumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that quotes a string YAML 1.1 *or* ``Loader`` (YAML 1.2) would read as something else
    (``'yes'``, ``'010'``; ``'1e5'``, ``'0o17'``, which PyYAML's own dumper writes plain), so what ``dump_yaml``
    writes ``load_yaml_text`` and any YAML 1.1 reader read back as it was."""


Dumper.yaml_implicit_resolvers = {
    first: yaml.SafeDumper.yaml_implicit_resolvers.get(first, []) + Loader.yaml_implicit_resolvers.get(first, [])
    for first in {*yaml.SafeDumper.yaml_implicit_resolvers, *Loader.yaml_implicit_resolvers}}


def dump_yaml(data: Any) -> str:
    """``data`` as YAML text in its own key order, read back as the same values by ``load_yaml_text``."""
    return yaml.dump(data, Dumper=Dumper, sort_keys=False)


def read_yaml(path: str | Path) -> Any:
    """The one reader of YAML files (grids, run configs, recipes, model files): UTF-8 text parsed by ``Loader``.
    Raises a one-line ``ConfigError`` naming the file for a missing or undecodable file, invalid YAML and a key
    given twice (with its line)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}" if not path.exists() else f"{path} is not a file")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at line {line}); save it as UTF-8"
                          ) from None
    try:
        return load_yaml_text(text)
    except DuplicateKeyError as e:
        raise ConfigError(f"{path} line {e.line}: {e}; keep one") from None
    except yaml.YAMLError as e:
        first = " ".join(str(e).split())
        raise ConfigError(f"{path}: not valid YAML ({first[:160]})") from None


def parse_value(raw: str) -> Any:
    """A ``--set`` value typed as the same text in a YAML file would be (``5e-4`` → 0.0005, ``[1, 2]`` → a list);
    text that is not valid YAML stays a string; an empty value is the empty string."""
    if raw == "":
        return ""
    try:
        return load_yaml_text(raw)
    except DuplicateKeyError as e:
        raise ConfigError(f"--set value {raw!r}: {e}") from None
    except yaml.YAMLError:
        return raw


# -- types ------------------------------------------------------------------------------------------------------
def nonblank(text: str) -> str:
    """An option value that names something (a path, a URL, a device list): an empty one, as an unset shell variable
    gives (``--root "$RUNS"``), is refused rather than read as the option's default or the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"an empty value {text!r}; give one, or leave the option out for its "
                                         f"default")
    return text


def unless_null(value: Any, empty: Any) -> Any:
    """``value``, or ``empty`` where it is None (a key absent or null in YAML). A false, 0 or '' is kept, so the
    caller's type check names it rather than reading it as absent (``wandb: false`` is no ``{mode: disabled}``)."""
    return empty if value is None else value


def is_int(value: Any) -> bool:
    """An int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def positive_ints(values: Any) -> bool:
    """A non-empty list (or tuple) of positive integers (bools excluded)."""
    return isinstance(values, (list, tuple)) and len(values) > 0 and all(is_int(v) and v >= 1 for v in values)


def is_number(value: Any, *, finite: bool = True) -> bool:
    """An int or a float, not a bool; finite unless ``finite=False``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and (not finite or math.isfinite(value))


def freeze(value: Any) -> str:
    """A hashable, order-independent form of a value: numbers compare as numbers (20 == 20.0, in lists and mappings
    too), a bool is not a number, the order of a mapping's keys does not count."""
    return json.dumps(_plain(value), sort_keys=True, default=str)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _matches(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is Any:
        return True
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return is_int(value)
    if tp is float:
        return is_number(value)
    if tp is str:
        return isinstance(value, str)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = typing.get_args(tp)
        return not args or all(_matches(v, args[0]) for v in value)
    if dataclasses.is_dataclass(tp):
        return isinstance(value, tp)
    return True  # a type this checker does not know: the dataclass's own validate() decides


def field_type(cls: type, key: str) -> Any:
    """The annotation of dotted ``key`` in config dataclass ``cls`` (``schedule.warmup`` → ``float``), or None where
    it names no field."""
    tp: Any = cls
    for part in key.split("."):
        if not dataclasses.is_dataclass(tp):
            return None
        tp = typing.get_type_hints(tp).get(part)
    return tp


def accepts(tp: Any, value: Any) -> bool:
    """Whether a field annotated ``tp`` takes ``value`` (the type rules of ``check_fields``)."""
    return _matches(value, tp)


def describe_type(tp: Any) -> str:
    """``int | None`` → 'an integer or null'."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"a list of {_plural(args[0])}" if args else "a list"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _plural(tp: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(tp, describe_type(tp))


def check_fields(obj: Any, prefix: str = "", choices: typing.Mapping[str, typing.Iterable[Any]] | None = None,
                 parts: typing.Collection[str] = ()) -> None:
    """Check every field of dataclass ``obj`` against its type annotation, and each field named in ``choices``
    against its allowed values. Raises a one-line ``ConfigError`` naming ``<prefix><field>`` and the value, and the
    expected type, or the allowed values where the field has them (a value of the wrong type included). ``parts``:
    the fields whose choices are a registry's names; a name they lack is an ``UnknownPartError``."""
    hints = typing.get_type_hints(type(obj))
    choices = choices or {}
    for f in dataclasses.fields(obj):
        tp = hints.get(f.name, Any)
        value = getattr(obj, f.name)
        allowed = list(choices.get(f.name, ()))
        if allowed and (not _matches(value, tp) or value not in allowed):
            raise choices_error(f"{prefix}{f.name}", value, allowed, part=f.name in parts and isinstance(value, str))
        if not _matches(value, tp):
            shown = f"{value!r} ({type(value).__name__})" if isinstance(value, str) else repr(value)
            raise ConfigError(f"{prefix}{f.name} must be {describe_type(tp)}, got {shown}")


def check_range(key: str, value: Any, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> None:
    """``low <= value <= high`` (``<`` where open); None skips a bound. Call after ``check_fields``."""
    if value is None:
        return
    bad = (low is not None and (value <= low if low_open else value < low)) or \
          (high is not None and (value >= high if high_open else value > high))
    if bad:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
        raise ConfigError(f"{key} must be {' and '.join(x for x in (lo, hi) if x)}, got {value!r}")


def int_at_least(flag: str, value: Any, low: int = 1) -> int:
    """``value`` when it is an integer ≥ ``low`` (a command's count: seeds, steps, a batch size); else a one-line
    ``ConfigError`` naming ``flag``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{flag} must be an integer ≥ {low}, got {value}")
    return value


def int_list(flag: str, text: str, low: int = 1) -> list[int]:
    """Comma-separated integers, each ≥ ``low``, at least one (``--depths 8,20``); else a one-line ``ConfigError``
    naming ``flag``."""
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v < low for v in values):
        raise ConfigError(f"{flag} must be comma-separated integers ≥ {low}, e.g. 8,20, got {text!r}")
    return values


NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")   # a study's or a run's name: it names a folder


def check_name(key: str, value: Any) -> None:
    """A study or run name: letters, digits, '.', '_' or '-', not starting with '.', '_' or '-', at most 100 (no
    path separator, no '..', not empty); else a one-line ``ConfigError`` naming ``key``."""
    if not isinstance(value, str) or not NAME.match(value):
        raise ConfigError(f"{key} must be a name of letters, digits, '.', '_' or '-' (at most 100), got {value!r}")
