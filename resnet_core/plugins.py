"""A researcher's own parts: import a module that registers them, once per process.

A plugin is a Python file (``examples/gated_shortcut.py``) or an importable module name (``mylab.parts``) whose
import registers parts with one call each, e.g. ``@SHORTCUTS.register("gated")``. Name it in a grid's top-level
``plugins:`` list (a relative path is relative to the grid file) or with ``--plugin`` (relative to the working
directory) on ``sweep``, ``train``, ``models``, ``eval``, ``lesion`` and ``probe``. The sweep carries the resolved
list to every worker process (spawned, or a Slurm task), which imports it before it reads a config; the study records
each plugin with its SHA-256 (`plugin_records`), and a launch with another set or changed code is refused
(`check_same_plugins`).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Sequence

from .errors import ConfigError, UnknownPartError, reworded
from .registry import Registry, snapshot

_LOADED: dict[str, ModuleType] = {}   # resolved plugin → its module: a second load is a no-op


def is_path(plugin: str) -> bool:
    """A file path (has a slash or ends in .py) rather than a module name."""
    return plugin.endswith(".py") or "/" in plugin or "\\" in plugin


def resolve(plugin: Any, base: str | Path | None = None) -> str:
    """An absolute path for a file plugin (relative to ``base``, default the working directory), or the module
    name as given. ConfigError (one line, naming it) if the file does not exist or the name is malformed."""
    if not isinstance(plugin, str) or not plugin.strip():
        raise ConfigError(f"a plugin must be a .py path or a module name, got {plugin!r}")
    plugin = plugin.strip()
    if not is_path(plugin):
        if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", plugin):
            raise ConfigError(f"plugin {plugin!r} is neither a .py file nor a module name")
        return plugin
    path = Path(plugin).expanduser()
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    path = path.resolve()
    if not path.is_file():
        raise ConfigError(f"plugin {plugin}: no such file ({path})")
    return str(path)


def load_plugin(plugin: str, base: str | Path | None = None) -> str:
    """Import one plugin (see `resolve`) unless this process already has; return its resolved name. Any error while
    importing it is a one-line ConfigError naming the plugin."""
    key = resolve(plugin, base)
    if key in _LOADED:
        return key
    before, imported = snapshot(), not is_path(key) and key in sys.modules
    try:
        if is_path(key):
            name = "resnet_ablate_plugin_" + re.sub(r"\W", "_", Path(key).stem) + "_" + _digest(key)[:8]
            spec = importlib.util.spec_from_file_location(name, key)
            if spec is None or spec.loader is None:
                raise ImportError("not a Python module")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # dataclasses and pickling look a module up there
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
        else:
            module = importlib.import_module(key)
    except ConfigError as e:
        raise reworded(e, f"plugin {plugin}: {e}") from None
    except Exception as e:  # noqa: BLE001 - the user's code: any error is a config error naming the plugin
        text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)  # KeyError's str() quotes it
        first = text.strip().splitlines()[0] if text.strip() else ""
        raise ConfigError(f"plugin {plugin} failed to load: {type(e).__name__}" + (f": {first}" if first else "")) \
            from None
    if not imported and not snapshot() - before:
        raise ConfigError(f"plugin {plugin} registers no part: register one with e.g. "
                          f"@SHORTCUTS.register(\"name\") (kinds: {', '.join(r.kind for r in Registry.ALL)})")
    _LOADED[key] = module
    return key


def load_plugins(plugins: Iterable[str] | None, base: str | Path | None = None) -> list[str]:
    """`load_plugin` each, in order; the resolved names, without repeats."""
    if plugins is None:
        return []
    if isinstance(plugins, str) or not isinstance(plugins, (list, tuple)):
        raise ConfigError(f"plugins must be a list of .py paths or module names, got {plugins!r}")
    return list(dict.fromkeys(load_plugin(p, base) for p in plugins))


def _digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def plugin_records(plugins: Sequence[str]) -> list[dict[str, str]]:
    """What a study records per (loaded, resolved) plugin: ``{"plugin": name or path, "sha256": of its source}``."""
    out = []
    for key in plugins:
        source = key if is_path(key) else getattr(_LOADED.get(key) or importlib.import_module(key), "__file__", None)
        out.append({"plugin": key, "sha256": _digest(source) if source else ""})
    return out


def loaded_plugin_records() -> list[dict[str, str]]:
    """`plugin_records` of every plugin this process has loaded (in load order): what a run's provenance lists, so
    a trial's own summary.json says which user code its parts came from."""
    return plugin_records(list(_LOADED))


def missing_plugins_hint(records: Any, where: str, error: BaseException) -> str:
    """``"; <where> was trained with plugin X: pass --plugin X"`` for the plugin records (`plugin_records`) of a run
    that this process has not loaded, when ``error`` is about a part no registry holds (an `UnknownPartError`), so it
    says where the part came from; "" for any other error, or when every plugin is loaded or none is recorded."""
    if not isinstance(error, UnknownPartError):
        return ""
    missing = [r["plugin"] for r in records or [] if isinstance(r, dict) and isinstance(r.get("plugin"), str)
               and r["plugin"] not in _LOADED]
    if not missing:
        return ""
    return (f"; {where} was trained with plugin{'s' * (len(missing) > 1)} {', '.join(missing)}: pass "
            + " ".join(f"--plugin {p}" for p in missing))


def check_same_plugins(stored: Any, current: Sequence[dict[str, str]], study: str) -> None:
    """Refuse to add trials to a study made with other plugins (another set, or changed source): its trials
    would not be comparable. A study from before plugins existed recorded none."""
    def short(records: Any) -> dict[str, str]:
        return {(Path(r["plugin"]).name if is_path(r["plugin"]) else r["plugin"]): r.get("sha256", "")
                for r in records or [] if isinstance(r, dict) and "plugin" in r}

    old, new = short(stored), short(current)
    if old == new:
        return
    if set(old) != set(new):
        raise ConfigError(f"study {study!r} was run with plugins [{', '.join(old) or 'none'}], this launch loads "
                          f"[{', '.join(new) or 'none'}]; its trials would not be comparable — use another study "
                          f"name (--study NAME) or the same plugins")
    changed = sorted(k for k in new if old[k] != new[k])
    raise ConfigError(f"study {study!r} was run with another version of plugin {', '.join(changed)} (its source "
                      f"changed); its trials would not be comparable — use another study name (--study NAME)")


def add_plugin_argument(p: argparse.ArgumentParser) -> None:
    """``--plugin FILE.py|MODULE`` (repeatable): the CLI's main() imports them before the command runs."""
    p.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="FILE.py|MODULE",
                   help="import a module that registers your own parts (shortcut, block, activation, pooling, "
                        "stem, family, init, bias_init) before reading the config; repeatable (docs/models.md: "
                        "'Your own part')")
