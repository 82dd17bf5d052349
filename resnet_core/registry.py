"""Small string-keyed registries of model parts (one dict per part, as in pycls' anynet).

A registry is the vocabulary of its config key: `ModelConfig` accepts exactly the registered names, and the reports
name a part by its registered ``label`` (the name itself when none was given), so a part added with one
``register`` call — built in or from a researcher's plugin (`resnet_core.plugins`) — is a first-class value.
"""
from __future__ import annotations

import re
import sys
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar

from .errors import choices_error
from .values import parse_value

# A part's name is a config value, a grid axis value (``-m model.pooling=a,b`` splits on commas), part of a cell id
# and of a trial's folder name, so it is a plain token that a YAML file and ``--set`` read back as the same string.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a name to a part factory. `get` also accepts the factory itself (as timm's get_act_layer does)."""

    ALL: list["Registry[Any]"] = []  # every registry made, so a plugin's registrations can be listed (`snapshot`)

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._parts: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}
        self._source: dict[str, str] = {}  # name → the module that registered it
        Registry.ALL.append(self)

    def register(self, name: str, *, label: str | None = None, **meta: Any) -> Callable[[T], T]:
        """A decorator that adds ``part`` under ``name``. ``label``: how reports print it (default: ``name``);
        ``meta``: facts other modules ask about the part (e.g. a shortcut's ``option`` letter). ValueError if the
        name is not a plain token (`check_name`), KeyError if it is taken."""
        check_name(self.kind, name)

        def add(part: T) -> T:
            if name in self._parts:
                raise KeyError(f"{self.kind} {name!r} is already registered")
            self._parts[name] = part
            self._meta[name] = {"label": label or name, **meta}
            self._source[name] = sys._getframe(1).f_globals.get("__name__", "")
            return part

        return add

    def get(self, name: str | T) -> T:
        if not isinstance(name, str):
            return name
        try:
            return self._parts[name]
        except KeyError:
            raise choices_error(self.kind, name, self._parts, part=True) from None

    def check(self, name: str) -> str:
        """Validate a name without building anything."""
        self.get(name)
        return name

    def names(self) -> list[str]:
        return list(self._parts)

    def meta(self, name: object) -> Mapping[str, Any]:
        """What was registered with the part (``label`` and the extra keywords); empty for an unknown name."""
        return dict(self._meta.get(name, {})) if isinstance(name, str) else {}

    def label(self, name: object) -> str:
        """The report's name for a part: its registered label, else ``str(name)`` (an unknown or user part)."""
        return str(self.meta(name).get("label", name))

    def source(self, name: object) -> str:
        """The file (else the module name) of a part registered outside resnet_core, e.g. by a plugin; "" for a
        built-in or unknown part."""
        module = self._source.get(name, "") if isinstance(name, str) else ""
        if not module or module.split(".")[0] == "resnet_core":
            return ""
        return str(getattr(sys.modules.get(module), "__file__", None) or module)

    def __contains__(self, name: object) -> bool:
        return name in self._parts

    def __iter__(self) -> Iterator[str]:
        return iter(self._parts)


def check_name(kind: str, name: object) -> None:
    """ValueError (one line) unless ``name`` matches `NAME_PATTERN` and YAML reads it back as itself (not ``null``,
    ``true`` or ``12``: a config would hold None, a bool or a number, never the part)."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or parse_value(name) != name:
        raise ValueError(f"{kind}: a part's name must be letters, digits, '_' or '-' (not starting with '-') that "
                         f"YAML reads as that string (not null, true, false or a number), got {name!r}")


def snapshot() -> set[tuple[str, str]]:
    """Every registered part as ``(kind, name)``: the difference of two is what an import registered."""
    return {(r.kind, name) for r in Registry.ALL for name in r.names()}
