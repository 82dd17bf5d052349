"""Every input takes effect or is refused: the one home of that rule for config keys.

A config section names the keys its choices do not read (``unread()``: key → ``Unread``, e.g. ``bias_init`` while
``conv_bias`` is false); ``RunConfig.unread()`` gathers them, dotted. Only keys the user wrote count, never a
dataclass default: ``check_effect`` refuses a written key its config does not read (one run: ``train``, ``bench``,
``probe``, ``models``); a grid refuses a written value that no cell it reaches reads (``sweeps.spec.grid``). A key
written as null gives no value, so it is never refused; a file that writes every key (a run's config.yaml, a dumped
config) states the whole config, so none of its keys counts as chosen (``chosen``). ``is_unread`` and ``no_effect``
are the matching and the message both use.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, NamedTuple

from .errors import ConfigError
from .overrides import leaves


class Unread(NamedTuple):
    """Why a key is not read: what would read it (``needs``: 'model.conv_bias true, got false') and, where it helps,
    what to do instead (``hint``)."""
    needs: str
    hint: str = ""


def own_keys_unread(obj: Any, kind: str, own_keys: Mapping[str, Iterable[str]], prefix: str) -> dict[str, Unread]:
    """The fields of ``obj`` that only some kinds use (``own_keys``: field → the values of field ``kind`` that use
    it) where ``obj``'s kind is another (e.g. ``schedule.gamma`` on a cosine schedule)."""
    which = getattr(obj, kind)
    return {key: Unread(f"{prefix}{kind} {' or '.join(names)}, got {which!r}")
            for key, names in own_keys.items() if which not in names}


def written_leaves(mapping: Mapping[str, Any] | None) -> list[tuple[str, Any]]:
    """The dotted keys a user's mapping sets, with their values (a section's leaves; a null is no value)."""
    return [(k, v) for key, value in (mapping or {}).items() for k, v in leaves(key, value) if v is not None]


def chosen(d: Mapping[str, Any], every: Mapping[str, Any]) -> Mapping[str, Any]:
    """The keys of a config file's mapping ``d`` its user chose: all of them, or none where ``d`` writes every key of
    ``every`` (a config's whole dict): a run's config.yaml or a dumped config states each key, read or not."""
    def keys(m: Mapping[str, Any]) -> set[str]:
        return {k for key, value in m.items() for k, _ in leaves(key, value)}

    return {} if keys(every) <= keys(d) else d


def is_unread(key: str, unread: Mapping[str, Unread]) -> Unread | None:
    """Why ``key`` is not read (it, or a section holding it, is in ``unread``), or None."""
    for name, why in unread.items():
        if key == name or key.startswith(name + "."):
            return why
    return None


def no_effect(key: str, value: Any, why: Unread) -> str:
    """'model.bias_init ('default') needs model.conv_bias true, got false: it would have no effect'."""
    return f"{key} ({value!r}) needs {why.needs}: it would have no effect" + (f"; {why.hint}" if why.hint else "")


def check_effect(cfg: Any, written: Mapping[str, Any] | None, prefix: str = "") -> None:
    """Refuse the first key of the user's mapping ``written`` (keys relative to ``cfg``, named with ``prefix``) that
    ``cfg`` (a config with ``unread()``) does not read: a one-line ``ConfigError``."""
    unread = cfg.unread()
    for key, value in written_leaves(written):
        why = is_unread(key, unread)
        if why is not None:
            raise ConfigError(no_effect(prefix + key, value, why))
