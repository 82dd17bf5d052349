"""Every input takes effect or is refused: the one home of that rule for config keys.

A config section names the keys its choices do not read (``unread()``: key → ``Unread``, e.g. ``bias_init`` while
``conv_bias`` is false; a key another part overwrites counts as unread, e.g. ``model.num_classes`` that the dataset
sets, Adam's first beta that a one-cycle schedule cycles); ``RunConfig.unread()`` gathers them, dotted. A written value
equal to what runs in the key's place (``Unread.runs``: ``model.num_classes`` equal to the dataset's classes,
``optim.betas`` with a null first beta under a cycled momentum) states what runs and is accepted.

Only keys the user wrote count, never a dataclass default. Who wrote a key decides what happens to it when nothing
reads it (``check_effect``):

- a key written on the command line (``--set``) is refused: a one-line ``ConfigError`` naming the key, its value and
  what would read it;
- a key a config file wrote is refused when the file's own choices leave it unread; when a ``--set`` leaves it unread
  (the recipe's SGD ``momentum`` after ``--set optim.name=adam``), it is dropped with a one-line note on stderr
  (``dropped``), so switching a recipe's choice on the command line works and never silently.

One run (``train``, ``bench``, ``probe``, ``models``) refuses or drops a written key its config does not read; a grid
refuses (or drops, by the same rule) a written value that no cell it reaches reads (``sweeps.spec.grid``). A key
written as null gives no value, so it is never refused; a file that writes every key (a run's config.yaml, a dumped
config) states the whole config, so none of its keys counts as chosen (``chosen``). ``is_unread``, ``no_effect`` and
``dropped`` are the matching and the messages all use.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Iterable, Mapping, NamedTuple

from .errors import ConfigError
from .overrides import apply_overrides, leaves, overlaps
from .values import freeze


class Unread(NamedTuple):
    """Why a key is not read: what would read it (``needs``: 'model.conv_bias true, got false') and, where it helps,
    what to do instead (``hint``). ``runs``: for a key another part overwrites, what runs in its place given the
    written value; a written value equal to it is accepted (None: no written value takes effect)."""
    needs: str
    hint: str = ""
    runs: Callable[[Any], Any] | None = None


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


def is_unread(key: str, value: Any, unread: Mapping[str, Unread]) -> Unread | None:
    """Why ``key`` written as ``value`` takes no effect (it, or a section holding it, is in ``unread``, and ``value``
    is not what runs in its place), or None."""
    for name, why in unread.items():
        if key == name or key.startswith(name + "."):
            if why.runs is not None and key == name and freeze(why.runs(value)) == freeze(value):
                return None
            return why
    return None


def no_effect(key: str, value: Any, why: Unread) -> str:
    """'model.bias_init ('default') needs model.conv_bias true, got false: it would have no effect'."""
    return f"{key} ({value!r}) needs {why.needs}: it would have no effect" + (f"; {why.hint}" if why.hint else "")


def dropped(key: str, value: Any, why: Unread, source: str, by: str = "--set") -> str:
    """'optim.momentum (0.9) from smoke.yaml needs optim.name sgd, got 'adam' after --set: it has no effect,
    dropped' (``by``: what left it unread)."""
    return f"{key} ({value!r}) from {source} needs {why.needs} after {by}: it has no effect, dropped"


def refuse_taken(command: str, overrides: Iterable[str], taken: Mapping[str, str], instead: str) -> None:
    """Refuse a ``--set`` of a key ``command`` sets itself or never reads (``taken``: dotted key → why; a key inside
    it or a section holding it counts too): 'probe: --set model.depth has no effect here (--depths sets it); …'."""
    for key, _ in (leaf for k, v in apply_overrides({}, overrides).items() for leaf in leaves(k, v)):
        why = next((why for name, why in taken.items() if overlaps(key, name)), None)
        if why is not None:
            raise ConfigError(f"{command}: --set {key} has no effect here ({why}); {instead}")


def note(text: str) -> None:
    """Tell the user about a key dropped (``dropped``): one line on stderr, where a piped config dump stays clean."""
    print(f"note: {text}", file=sys.stderr)


def check_effect(cfg: Any, written: Mapping[str, Any] | None, prefix: str = "", *,
                 sets: Mapping[str, Any] | None = None, before: Callable[[], Any] | None = None,
                 source: str = "the config file") -> list[str]:
    """Refuse the first written key (keys relative to ``cfg``, named with ``prefix``) that ``cfg`` (a config with
    ``unread()``) does not read: a one-line ``ConfigError``. ``sets``: the command line's keys, refused whenever
    unread; ``written``: the file's keys (or all the user's, without ``sets``), of which one a ``--set`` left unread
    (read by ``before()``, the config the file alone builds) is dropped: its ``dropped`` note is returned."""
    unread = cfg.unread()
    for key, value in written_leaves(sets):
        why = is_unread(key, value, unread)
        if why is not None:
            raise ConfigError(no_effect(prefix + key, value, why))
    replaced = [k for key, value in (sets or {}).items() for k, _ in leaves(key, value)]
    notes, own = [], None
    for key, value in written_leaves(written):
        why = is_unread(key, value, unread)
        if why is None or any(overlaps(key, k) for k in replaced):   # read, or the --set's value replaced it
            continue
        if sets and own is None:
            own = _unread_of(before)
        if own is not None and is_unread(key, value, own) is None:
            notes.append(dropped(prefix + key, value, why, source))
            continue
        raise ConfigError(no_effect(prefix + key, value, why))
    return notes


def _unread_of(build: Callable[[], Any] | None) -> Mapping[str, Unread] | None:
    """The unread keys of the config ``build()`` makes, or None where there is none or it is no valid config (then
    nothing the file wrote can be shown to be read without the ``--set``)."""
    if build is None:
        return None
    try:
        return build().unread()
    except ConfigError:
        return None
