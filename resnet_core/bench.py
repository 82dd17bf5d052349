"""`resnet-ablate bench`: training throughput, seed-style loop vs our engine, probe overhead, fused members.

A benchmark, not a test: it prints figures. The sweep's --dry-run can use a saved table to estimate a study's time.
"""
from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F

from .bench_cpu import run_cpu_bench
from .data import load_dataset, seed_style_loader
from .devices import resolve_device
from .effect import check_effect, refuse_taken
from .model import build_model
from .overrides import apply_overrides
from .record import atomic_write_json, check_out_file
from .run_config import RunConfig
from .values import int_at_least, int_list


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="img/s: seed-style loop vs our engine, probe overhead, fused members",
                       description="Training throughput (img/s) of a seed-style PyTorch loop against this engine, "
                                   "with and without gradient probes, and of G fused members; on a CPU, every "
                                   "precision × memory-format variant against the measured peak.")
    p.add_argument("--depths", default="20,56,110", help="comma-separated depths (default 20,56,110)")
    p.add_argument("--members", default="1", help="fused members to measure, e.g. 1,2,4,8 (on a CPU, the default 1 "
                   "prints the CPU table: every precision × memory-format variant against the measured peak)")
    p.add_argument("--batch-size", type=int, default=128, help="per member")
    p.add_argument("--steps", type=int, default=50, help="timed iterations per measurement")
    p.add_argument("--warmup", type=int, default=10, help="untimed iterations first (default 10)")
    p.add_argument("--data", default="synthetic", help="synthetic (32x32) or cifar10_jpeg (--set data.path=…)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a run config key, e.g. --set model.shortcut=none (repeatable; a key given again: the "
                        "last value wins)")
    p.add_argument("--fast", default="auto", help="engine fast path: auto | eager | graph | compile")
    p.add_argument("--no-seed-style", action="store_true", help="skip the seed-style loop")
    p.add_argument("--rounds", type=int, default=5, help="CPU table: the timed steps are split into this many "
                   "windows, taken in turn across the variants; each variant's figure is its fastest window (a shared "
                   "or throttled CPU slows for seconds at a time; default 5)")
    p.add_argument("--threads", help="on a CPU: torch thread counts to measure in turn, e.g. 1,2 (default: torch's)")
    p.add_argument("--device", default="auto", help="auto (cuda > npu > mps > cpu) | cpu | cuda | cuda:N | mps | npu")
    p.add_argument("--out", help="write the table as JSON here; `sweep --fuse auto` reads runs/bench.json (or "
                   "--fuse-table FILE) to choose the members per fused run, and its dry-run estimates use it")
    p.set_defaults(func=_cmd_bench)


BENCH_SETS = {"model.depth": "--depths sets it", "model.stages": "--depths sets the depth",
              "batch_size": "--batch-size sets it", "device": "--device sets it",
              "probes": "bench measures with and without probes", "seed": "fused member g trains seed g",
              "name": "bench writes no run"}   # a --set of these changed or mislabelled every row without a word


def _config(depth: int, args: argparse.Namespace, probes: bool) -> RunConfig:
    d: dict[str, Any] = {
        "name": f"bench-resnet{depth}",
        "data": {"name": args.data, **({"synthetic": {"image_size": 32, "n_train": 4096, "n_test": 256}}
                                      if args.data == "synthetic" else {})},
        "model": {"family": "cifar", "depth": depth},
        # a full-length run (He et al.'s 64k iterations): the fast path `auto` picks for a real study (on a CPU,
        # torch.compile); the bench itself times only warmup + steps
        "schedule": {"name": "constant", "unit": "iter", "total": max(64_000, args.warmup + args.steps)},
        "batch_size": args.batch_size, "probes": probes, "fast": args.fast, "checkpoint": False, "device": args.device,
        "log_every": 10**9, "eval_every": 10**9,
    }
    cfg = RunConfig.from_dict(apply_overrides(d, args.overrides))
    check_effect(cfg, apply_overrides({}, args.overrides))   # the user's keys must take effect, not the bench's
    return cfg


class Timer:
    """A warmed-up training loop: `timer(steps)` runs the next `steps` steps and returns their img/s; `fast` is the
    fast path that ran (`fast: auto` falls back to eager if a capture or compile fails)."""

    def __init__(self, step: Callable[[], None], images_per_step: int, device: torch.device, fast: Callable[[], str],
                 fallback: Callable[[], str | None] = lambda: None):
        self._step, self._images, self._device, self._fast = step, images_per_step, device, fast
        self._fallback = fallback

    @property
    def fallback(self) -> str | None:
        """Why the configured path was left (a build failure, or the fast-path guard's disagreement), if it was."""
        return self._fallback()

    @property
    def fast(self) -> str:
        return self._fast()

    def __call__(self, steps: int) -> float:
        _sync(self._device)
        t0 = time.perf_counter()
        for _ in range(steps):
            self._step()
        _sync(self._device)
        return steps * self._images / (time.perf_counter() - t0)


@contextlib.contextmanager
def engine_timer(cfg: RunConfig, members: int, warmup: int) -> Iterator[Timer]:
    """Our engine's training step (data on the device, the configured fast path) for `members` fused seeds of `cfg`,
    after `warmup` untimed steps (a graph capture or a torch.compile build happens there, and the first one is checked
    against the eager reference by the fast-path guard)."""
    from .engine import Trainer  # the engine loads when a bench runs, not when the CLI builds its parser

    cfgs = [RunConfig.from_dict({**cfg.to_dict(), "seed": s}) for s in range(members)]
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfgs, [Path(tmp) / f"m{g}" for g in range(members)], [])
        try:
            batches, path = _cycle(trainer.train_loader), trainer.path

            def step() -> None:
                path.train_step(*next(batches))

            for _ in range(warmup):
                step()
            yield Timer(step, cfg.batch_size * members, trainer.device, lambda: path.fast, lambda: path.fast_fallback)
        finally:
            trainer.close()


def engine_throughput(cfg: RunConfig, members: int, steps: int, warmup: int) -> tuple[float, str]:
    """Aggregate img/s of our engine's training step over `steps` steps after `warmup`, and the fast path that ran."""
    with engine_timer(cfg, members, warmup) as timer:
        return timer(steps), timer.fast


@contextlib.contextmanager
def seed_style_timer(cfg: RunConfig, warmup: int, workers: int = 4) -> Iterator[Timer]:
    """The tutorials' loop: PIL + torchvision transforms in DataLoader workers, fp32, eager, .item() every step."""
    device = resolve_device(cfg.device)
    data = load_dataset(cfg.data)
    loader = seed_style_loader(data.train, cfg.batch_size, workers, cfg.data.augment, data.mean, data.std)
    model = build_model(cfg.model).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    batches = _cycle_loader(loader)

    def step() -> None:
        x, y = next(batches)
        x, y = x.to(device), y.to(device)
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        loss.item()

    for _ in range(warmup):
        step()
    try:
        yield Timer(step, cfg.batch_size, device, lambda: "eager")
    finally:
        batches.close()  # drops the DataLoader's iterator: its worker processes stop


def seed_style_throughput(cfg: RunConfig, steps: int, warmup: int, workers: int = 4) -> float:
    """img/s of the tutorials' loop over `steps` steps after `warmup`."""
    with seed_style_timer(cfg, warmup, workers) as timer:
        return timer(steps)


def fast_path_field(paths: dict[int, str]) -> str:
    """The bench row's `fast_path`: the path every measurement ran ("graph"), or each G's if they differ
    ("G1=graph,G8=eager": a capture fell back, and those figures are not the graph's)."""
    if len(set(paths.values())) == 1:
        return next(iter(paths.values()))
    return ",".join(f"G{g}={p}" for g, p in sorted(paths.items()))


def _cycle(loader: Any):
    epoch = 0
    while True:
        yield from loader.epoch(epoch)
        epoch += 1


def _cycle_loader(loader: Any):
    while True:
        yield from loader


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _check_args(args: argparse.Namespace) -> None:
    """The counts and lists of integers, the --out file, and every depth's run config (--data, --fast, --set),
    before anything is measured (the CPU table measures the matmul peak first, minutes on a busy machine)."""
    for flag in ("--depths", "--members") + (("--threads",) if args.threads else ()):
        int_list(flag, getattr(args, flag[2:]))
    for flag, low in (("--batch-size", 1), ("--steps", 1), ("--warmup", 0), ("--rounds", 1)):
        int_at_least(flag, getattr(args, flag[2:].replace("-", "_")), low)
    if args.out:
        check_out_file(args.out)
    refuse_taken("bench", args.overrides, BENCH_SETS, "use its flag; --set takes the other keys, e.g. "
                                                      "--set model.shortcut=none")
    for depth in int_list("--depths", args.depths):
        for probes in (True, False):
            _config(depth, args, probes=probes)


def _cmd_bench(args: argparse.Namespace) -> int:
    _check_args(args)
    if resolve_device(args.device).type == "cpu" and args.members.strip() == "1":  # the CPU variants table
        rows = run_cpu_bench(args, _config, engine_timer, seed_style_timer)
        if args.out:
                atomic_write_json(Path(args.out), {"device": "cpu", "rows": rows})
        return 0
    depths, members = int_list("--depths", args.depths), int_list("--members", args.members)
    rows = []
    for depth in depths:
        cfg = _config(depth, args, probes=True)
        row: dict[str, Any] = {"model": f"resnet{depth}", "batch": args.batch_size}
        if not args.no_seed_style:
            row["seed_style"] = seed_style_throughput(cfg, args.steps, args.warmup)
        no_probe, _ = engine_throughput(_config(depth, args, probes=False), 1, args.steps, args.warmup)
        paths = {}
        for g in members:
            row[f"engine_G{g}"], paths[g] = engine_throughput(cfg, g, args.steps, args.warmup)
        row["fast_path"] = fast_path_field(paths)
        row["probe_overhead_%"] = 100.0 * (no_probe / row["engine_G1" if 1 in members else f"engine_G{members[0]}"]
                                           - 1) if 1 in members else float("nan")
        if "seed_style" in row and "engine_G1" in row:
            row["speedup_vs_seed"] = row["engine_G1"] / row["seed_style"]
        rows.append(row)
        print(_format_row(row), flush=True)
    if args.out:
        atomic_write_json(Path(args.out), {"device": _device_name(), "rows": rows})
    return 0


def _device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def _format_row(row: dict[str, Any]) -> str:
    parts = [f"{row['model']:<10}"]
    for k, v in row.items():
        if k in ("model",):
            continue
        parts.append(f"{k}={v:,.0f}" if isinstance(v, float) and k.startswith(("engine", "seed")) else
                     f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}")
    return "  ".join(parts)
