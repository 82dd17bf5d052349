"""`resnet-ablate`: the command line. Core commands live here; `sweep`, `studies` and `report` are added by the
`sweeps` and `reports` packages through the ``resnet_ablate.commands`` entry-point group, so that nothing in
resnet_core imports them."""
from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points
from typing import Sequence

from .errors import ConfigError


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a model name from `resnet-ablate models`, or a YAML file (run config or model)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model key, e.g. --set depth=56 --set shortcut=none")


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resnet-ablate", description=USAGE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"resnet-ablate {_version()}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list named models with parameters and FLOPs, or describe one")
    _add_model_args(p)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
