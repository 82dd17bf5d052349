"""CLI commands of the sweeps package (registered through the resnet_ablate.commands entry point):

    resnet-ablate sweep GRID.yaml [-m KEY=V1,V2 ...] [--workers N] [--devices cpu|cuda:0,cuda:1] [--root DIR] [--storage URL]
                                  [--dry-run] [--retry-failed] [--set key=value] [--wandb off|offline|online]
                                  [--study NAME] [--fuse auto|N|off] [--fuse-table FILE] [--print-config [CELL]]
                                  [--plugin FILE.py|MODULE ...] [--until-decided [--max-seeds N] [--futility P]]
                                  [--launcher local|slurm [--shared-fs] [--partition P] [--time LIMIT]
                                   [--cpus-per-worker N] [--gpus-per-worker N] [--mem SIZE] [--sbatch KEY=VALUE]]
    resnet-ablate studies [--root DIR | --storage URL]
"""
from __future__ import annotations

import argparse
from typing import Any

from resnet_core.plugins import add_plugin_argument
from resnet_core.values import nonblank

from .slurm import add_arguments


class AxisOnce(argparse.Action):
    """``-m/--grid KEY=V1,V2 …`` (repeatable): an axis given twice is refused, as the second would replace the first
    without a word."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        given = list(getattr(namespace, self.dest, None) or [])
        for text in values:
            key = text.partition("=")[0].strip()
            first = next((t for t in given if t.partition("=")[0].strip() == key), None)
            if first is not None:
                parser.error(f"{key} given twice ({option_string} {first} and {option_string} {text}); give each "
                             f"axis once")
            given.append(text)
        setattr(namespace, self.dest, given)


def _cmd_sweep(args: argparse.Namespace) -> int:
    # lazy: the sweep machinery loads when a sweep command runs, not for every `resnet-ablate` start-up
    from .slurm import slurm_flags
    from .sweep import print_cell_configs, run_sweep

    if args.print_config is not None:
        return print_cell_configs(args.grid, args.print_config, overrides=args.overrides, study=args.study,
                                  plugins=args.plugins, axes=args.axes)
    return run_sweep(args.grid, workers=args.workers, devices=args.devices, root=args.root, storage=args.storage,
                     dry=args.dry_run, retry_failed=args.retry_failed, overrides=args.overrides,
                     wandb=args.wandb, study=args.study, fuse=args.fuse, fuse_table=args.fuse_table,
                     launcher=args.launcher, slurm=slurm_flags(args), shared_fs=args.shared_fs,
                     plugins=args.plugins, axes=args.axes, until_decided=args.until_decided,
                     max_seeds=args.max_seeds, futility=args.futility)


def _cmd_studies(args: argparse.Namespace) -> int:
    from .sweep import list_studies  # lazy: CLI start-up (as above)

    return list_studies(args.root, args.storage)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `sweep` and `studies`."""
    p = sub.add_parser(
        "sweep", help="run an ablation grid as an Optuna study (re-run the same command to resume)",
        description="Run every (cell, seed) of an ablation grid exactly once, with any number of workers. "
                    "Running the same command again resumes: only missing, interrupted (and with --retry-failed, "
                    "failed) trials run.")
    p.add_argument("grid", help="the grid YAML, e.g. ablations/quickstart.yaml")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes (default: one per GPU; on CPU one single-threaded worker per core, "
                        "at most 4)")
    p.add_argument("--devices", default=None, metavar="LIST", type=nonblank,
                   help="devices given to workers round-robin: cpu, or cuda:0,cuda:1 (default: every GPU, else cpu)")
    p.add_argument("--root", default="runs", metavar="DIR", type=nonblank,
                   help="where study folders go: DIR/<study>/ (journal, trials/) (default runs)")
    p.add_argument("--storage", default=None, metavar="URL", type=nonblank,
                   help="Optuna storage instead of DIR/<study>/optuna.journal: postgresql://user:pass@host/db "
                        "(several machines), sqlite:///file.db, or a .journal path")
    p.add_argument("--dry-run", action="store_true",
                   help="list cells and trials (total / done / to run) and estimate the time; create nothing")
    p.add_argument("--retry-failed", action="store_true", help="run failed and diverged trials again")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the grid's base run config, e.g. --set schedule.total=2 (a key given again: "
                        "the last value wins); on a grid axis it pins the axis to that value (the grid shrinks: --set "
                        "model.depth=20)")
    p.add_argument("-m", "--multirun", "--grid", dest="axes", action=AxisOnce, nargs="+",
                   default=[], metavar="KEY=V1,V2",
                   help="a grid axis from the command line, in Hydra's multirun comma syntax: -m model.depth=20,56 "
                        "model.shortcut=none,identity (after the grid file; or --grid KEY=V1,V2, repeatable, each key "
                        "once). It replaces the file's axis of that key or adds one, and is part of the grid like any "
                        "other: recorded in the study, and a relaunch with more values adds their cells (a numeric "
                        "axis may widen; a categorical one cannot gain values in one study: use --study NAME)")
    p.add_argument("--wandb", choices=("off", "offline", "online"), default=None,
                   help="W&B mode for the trials (default: the grid's wandb.mode)")
    p.add_argument("--study", default=None, metavar="NAME", help="use this study name instead of the grid's")
    p.add_argument("--fuse", default="auto", metavar="auto|N|off",
                   help="train up to N trials that differ only in seed (the seeds of a cell) as one horizontally "
                        "fused model; auto: off on CPU/MPS/NPU, on CUDA from --fuse-table or 8 (default auto)")
    p.add_argument("--fuse-table", default=None, metavar="FILE", type=nonblank,
                   help="a `resnet-ablate bench --members 1,2,4,8 --out FILE` table for --fuse auto "
                        "(default: <root>/bench.json when it exists)")
    p.add_argument("--print-config", nargs="?", const="", default=None, metavar="CELL",
                   help="print the resolved run config of every cell (or of CELL: its id or folder slug, e.g. "
                        "depth-20_shortcut-none) as YAML and exit without running")
    p.add_argument("--until-decided", action="store_true",
                   help="after the grid's seeds, add seeds in rounds (2 per round) to the cells of comparisons "
                        "still undecided (the claims the report checks and each axis's main effects) until each is "
                        "decided or --max-seeds is reached; every look uses a Bonferroni-adjusted interval so the "
                        "peeking does not inflate false decisions; the rounds are recorded in the study and a "
                        "relaunch continues them")
    p.add_argument("--max-seeds", type=int, default=None, metavar="N",
                   help="with --until-decided: at most N seeds per cell (default 10)")
    p.add_argument("--futility", type=float, default=None, metavar="P",
                   help="with --until-decided: a comparison whose power at --max-seeds seeds (the observed "
                        "difference and spread) is below P, e.g. 0.1, gets no more seeds and stays undecided "
                        "(non-binding: the false-decision guard holds); stored with the plan, a relaunch with "
                        "another P changes it from the next look, recorded (default: off)")
    add_plugin_argument(p)
    add_arguments(p)
    p.set_defaults(func=_cmd_sweep)

    q = sub.add_parser("studies", help="list studies and their progress",
                       description="Every study under --root (or in --storage): its trials done, running, waiting "
                                   "and failed.")
    g = q.add_mutually_exclusive_group()
    g.add_argument("--root", default="runs", metavar="DIR", type=nonblank,
                   help="look for DIR/*/optuna.journal (default runs)")
    g.add_argument("--storage", default=None, metavar="URL", type=nonblank,
                   help="list the studies in this Optuna storage")
    q.set_defaults(func=_cmd_studies)
