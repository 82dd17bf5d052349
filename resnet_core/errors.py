"""The one error type a user sees: a bad key or value, named, with the allowed choices."""
from __future__ import annotations

from typing import Iterable


class ConfigError(ValueError):
    """A bad configuration key or value. The message is one line; the CLI prints it and exits with code 2."""


def choices_error(kind: str, value: object, allowed: Iterable[object]) -> ConfigError:
    """Build the standard 'unknown X; choose one of: ...' error."""
    listed = ", ".join(str(a) for a in allowed)
    return ConfigError(f"unknown {kind} {value!r}; choose one of: {listed}")
