"""Small string-keyed registries of model parts (one dict per part, as in pycls' anynet)."""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from .errors import choices_error

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a name to a part factory. `get` also accepts the factory itself (as timm's get_act_layer does)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._parts: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(part: T) -> T:
            if name in self._parts:
                raise KeyError(f"{self.kind} {name!r} is already registered")
            self._parts[name] = part
            return part

        return add

    def get(self, name: str | T) -> T:
        if not isinstance(name, str):
            return name
        try:
            return self._parts[name]
        except KeyError:
            raise choices_error(self.kind, name, self._parts) from None

    def check(self, name: str) -> str:
        """Validate a name without building anything."""
        self.get(name)
        return name

    def names(self) -> list[str]:
        return list(self._parts)

    def __contains__(self, name: object) -> bool:
        return name in self._parts

    def __iter__(self) -> Iterator[str]:
        return iter(self._parts)
