"""`resnet-ablate`: the command line. Core commands live here; `sweep`, `studies` and `report` are added by the
`sweeps` and `reports` packages through the ``resnet_ablate.commands`` entry-point group, so that nothing in
resnet_core imports them."""
from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
import traceback
from importlib.metadata import entry_points
from typing import Callable, NoReturn, Sequence

from .errors import ConfigError, GraphCaptureError, NonFiniteOutputs
from .overrides import comma_list_hint
from .plugins import add_plugin_argument, load_plugins
from .signals import EXIT_CONFIG, EXIT_FAILED, EXIT_SIGTERM, interrupt_code, os_error_line, sigterm_as_interrupt
from .tracking import own_wandb_service


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a model name from `resnet-ablate models`, or a YAML file (run config or model)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model key, spelled as in train and sweep: --set model.depth=56 "
                        "--set model.shortcut=none (repeatable; a key given again: the last value wins)")


def _cmd_models(args: argparse.Namespace) -> int:
    from .describe import describe_model, models_table

    if args.config or args.overrides:
        print(describe_model(args.config, args.overrides))
    else:
        print(models_table())
    return 0


USAGE = """Ablate residual networks: train one model, sweep a grid of ablations as an Optuna study, and report
the results beside the papers' numbers.

first steps:
  resnet-ablate sweep ablations/quickstart.yaml        run a small ablation grid (re-run the same line to resume)
  resnet-ablate report quickstart                      tables, figures and checked claims (runs/quickstart/report/)
  optuna-dashboard runs/quickstart/optuna.journal      browse the study: params, importances, learning curves
  resnet-ablate train --config ablations/recipes/smoke.yaml   train one run
  resnet-ablate models                                 named models with parameters and FLOPs

`resnet-ablate COMMAND --help` explains each command."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("resnet-ablate")
    except PackageNotFoundError:
        return "unknown (not installed)"


class Parser(argparse.ArgumentParser):
    """argparse with a "did you mean" for a mistyped command, choice or option (as Python 3.14's
    ``suggest_on_error``, here for every Python the project supports), and every error one line (exit 2), as the
    commands' own errors are. Subcommand parsers are of this class too."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        self._argv = list(sys.argv[1:] if args is None else args)  # what error() reads a swallowed value from
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            options = re.findall(r"'([^']*)'", choice.group(2)) or [o.strip() for o in choice.group(2).split(",")]
            guess = difflib.get_close_matches(choice.group(1), options, n=1, cutoff=0.6)
            if guess:
                message += f"; did you mean '{guess[0]}'?"
        unknown = re.match(r"unrecognized arguments: (.*)", message)
        if unknown:
            known = [o for p in _all_parsers(self) for a in p._actions for o in a.option_strings]
            hints = [guess[0] for arg in unknown.group(1).split() if arg.startswith("--")
                     for guess in [difflib.get_close_matches(arg.split("=")[0], known, n=1, cutoff=0.7)] if guess]
            if hints:
                message += f" (did you mean {', '.join(hints)}?)"
        typed = re.search(r"invalid (int|float) value", message)
        if typed:
            message += f" (expected {'an integer' if typed.group(1) == 'int' else 'a number'})"
        if message.startswith("the following arguments are required:"):
            message += self._swallowed(message)
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")

    def _swallowed(self, message: str) -> str:
        """A hint when a positional is missing because an option took it as its value (``-m KEY=V1,V2 grid.yaml``)."""
        missing, option = message.partition(": ")[2], None
        for arg in getattr(self, "_argv", []):
            if arg.startswith("-"):
                action = self._option_string_actions.get(arg.split("=")[0])
                option = arg.split("=")[0] if action is not None and action.nargs != 0 and "=" not in arg else None
            elif option and arg.endswith((".yaml", ".yml")):
                return (f"; the {missing} file {arg} was read as a value of {option}: put the {missing} file "
                        f"before {option}")
        return ""


def _all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    out = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                out += _all_parsers(sub)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="resnet-ablate", description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"resnet-ablate {_version()}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list named models with parameters and FLOPs, or describe one",
                       description="Without options: the table of named models (the papers' networks and the seed "
                                   "programs') with parameters and forward FLOPs. With --config or --set: one model "
                                   "described (its layout, parameters, FLOPs and resolved config).")
    _add_model_args(p)
    add_plugin_argument(p)
    p.set_defaults(func=_cmd_models)

    from . import commands  # core commands that need the engine (train, eval, lesion, probe, bench)

    commands.register(sub)
    for ep in entry_points(group="resnet_ablate.commands"):
        try:
            register = ep.load()
        except Exception as e:  # noqa: BLE001 - a broken plugin must not take the core commands down with it
            print(f"warning: commands from {ep.value} unavailable ({type(e).__name__}: {e})", file=sys.stderr)
            continue
        register(sub)
    p = sub.add_parser("completion", help="print a bash or zsh completion script for resnet-ablate",
                       description="Print a shell completion script (generated with shtab from this command line: "
                                   "commands, options, choices, file names). bash: "
                                   "eval \"$(resnet-ablate completion bash)\" in ~/.bashrc; zsh: "
                                   "resnet-ablate completion zsh > ~/.zfunc/_resnet-ablate with ~/.zfunc on fpath.")
    p.add_argument("shell", choices=("bash", "zsh"), help="the shell to complete for")
    p.set_defaults(func=lambda args: _cmd_completion(parser, args.shell))
    return parser


# options that take a path, by dest: completed with file (or folder) names
PATH_DESTS = {"config": "file", "plugins": "file", "out": "file", "checkpoint": "file", "grid": "file",
              "fuse_table": "file", "probe": "file", "lesion": "file", "root": "dir"}


def _cmd_completion(parser: argparse.ArgumentParser, shell: str) -> int:
    import shtab

    for p in _all_parsers(parser):
        for action in p._actions:
            if action.dest in PATH_DESTS and action.nargs != 0 and not action.choices:
                kind = shtab.DIRECTORY if PATH_DESTS[action.dest] == "dir" else shtab.FILE
                action.complete = kind  # type: ignore[attr-defined]
    print(shtab.complete(parser, shell=shell))
    return 0


LOADING = "resnet-ablate: loading torch…"


def _say_loading() -> Callable[[], None]:
    """On a terminal, one line on stderr while the commands' imports load (torch, optuna, pandas: 40–90 s on a loaded
    machine); returns what clears it. Not on a pipe or a file, so output read by a program stays as it was."""
    if "torch" in sys.modules or not sys.stderr.isatty():
        return lambda: None
    sys.stderr.write(LOADING)
    sys.stderr.flush()
    return lambda: (sys.stderr.write("\r\x1b[K"), sys.stderr.flush())


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit codes are ``signals``' (0 done, 1 failed, 2 config error, 3 unfinished, 130/143
    interrupted). Set RESNET_ABLATE_DEBUG=1 to see the traceback behind a one-line error."""
    # first of all: SIGTERM = Ctrl-C (trials marked interrupted, records closed), and a SIGINT inherited ignored
    # handled again, so a stop while the commands load (40–90 s on a loaded machine) counts too
    with sigterm_as_interrupt():
        try:
            return _run(argv)
        except KeyboardInterrupt as e:
            print("interrupted (SIGTERM)" if interrupt_code(e) == EXIT_SIGTERM else "interrupted", file=sys.stderr)
            return interrupt_code(e)


def _run(argv: Sequence[str] | None) -> int:
    own_wandb_service()
    loaded = _say_loading()
    try:
        parser = build_parser()  # imports every command's modules
    finally:
        loaded()
    args = parser.parse_args(argv)
    try:
        load_plugins(getattr(args, "plugins", None))  # --plugin: before the command reads any config
        return int(args.func(args) or 0)
    except ConfigError as e:
        _debug()
        hint = comma_list_hint(getattr(args, "overrides", ()), str(e), multirun=hasattr(args, "axes"))
        print(f"error: {e}{hint}", file=sys.stderr)
        return EXIT_CONFIG
    except (GraphCaptureError, NonFiniteOutputs) as e:  # a fast path not buildable here, a model giving NaN: one line
        _debug()
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as e:  # a full disk, a read-only folder, a file where a folder should be
        _debug()
        print(f"error: {os_error_line(e)}", file=sys.stderr)
        return EXIT_CONFIG


def _debug() -> None:
    if os.environ.get("RESNET_ABLATE_DEBUG"):
        traceback.print_exc()


if __name__ == "__main__":
    sys.exit(main())
