"""The errors a user sees as one line: a bad key or value (exit 2), a fast path that could not be built and a model
whose outputs are not finite (exit 1)."""
from __future__ import annotations

from typing import Iterable


class ConfigError(ValueError):
    """A bad configuration key or value. The message is one line; the CLI prints it and exits with code 2."""


class GraphCaptureError(RuntimeError):
    """`fast: graph` or `fast: compile` was asked for and the step could not be captured or compiled (never a silent
    eager run). The message is one line, with the cause; the CLI prints it and exits with code 1."""


class NonFiniteOutputs(RuntimeError):
    """A model gave NaN or inf outputs on some images of a split, so no error rate is computed from it (`eval`,
    `lesion`). The message is one line, naming the split and how many images; the CLI prints it and exits with
    code 1."""


class UnknownPartError(ConfigError):
    """A name that no registry of parts holds (`registry.Registry`: a shortcut, a family, a data source, …), i.e. a
    part a plugin may register: a caller that knows the plugins a run or study was made with names the missing ones
    (`plugins.missing_plugins_hint`). Context added to its message keeps the type (`reworded`)."""


def choices_error(kind: str, value: object, allowed: Iterable[object], *, part: bool = False) -> ConfigError:
    """Build the standard 'unknown X; choose one of: ...' error; an `UnknownPartError` when ``part`` (``allowed`` are
    a registry's names and ``value`` a name it lacks)."""
    listed = ", ".join(str(a) for a in allowed)
    return (UnknownPartError if part else ConfigError)(f"unknown {kind} {value!r}; choose one of: {listed}")


def reworded(e: ConfigError, message: str) -> ConfigError:
    """``e`` with another ``message`` (its own with context added), of the same kind: an unknown part stays one."""
    return UnknownPartError(message) if isinstance(e, UnknownPartError) else ConfigError(message)


class FastPathMismatch(GraphCaptureError):
    """An explicitly chosen fast path (`fast: compile | graph`, `precision: bf16 | fp16`) computed numbers that
    disagree with the eager reference step from the same state (`fast_guard`). One line: the path, where, and the
    tensor that disagreed; the CLI prints it and exits with code 1."""


def first_line(e: BaseException) -> str:
    """`Type: message` of an exception, its first non-empty line only (torch's errors append pages of advice)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"[:300]
