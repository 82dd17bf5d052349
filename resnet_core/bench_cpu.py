"""`resnet-ablate bench` on a CPU: the engine as configured against the variants a CPU offers, and against the peak.

For each depth and each thread count it prints, in one run: the seed-style loop (the tutorials' PIL DataLoader and
fp32 eager step), the engine as configured (precision auto, channels_last, the default fast path), and the engine
forced to each variant (fp32 / bf16 autocast × NCHW / channels_last, and torch.compile over bf16 channels_last), with
img/s, the ratio to the seed-style loop and the achieved GFLOP/s against the peak matmul GFLOP/s measured on the same
threads (a training step counted as 3 × the forward FLOPs: the backward pass costs about twice the forward).
"""
from __future__ import annotations

import argparse
import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from .config import ModelConfig
from .devices import autocast_dtype, cpu_has_native_bf16
from .errors import FastPathMismatch, GraphCaptureError
from .flops import train_flops

# (label, run-config overrides): the engine forced to one variant
VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("fp32 NCHW", {"precision": "fp32", "channels_last": False, "fast": "eager"}),
    ("fp32 channels_last", {"precision": "fp32", "channels_last": True, "fast": "eager"}),
    ("bf16 NCHW", {"precision": "bf16", "channels_last": False, "fast": "eager"}),
    ("bf16 channels_last", {"precision": "bf16", "channels_last": True, "fast": "eager"}),
    ("compile bf16 channels_last", {"precision": "bf16", "channels_last": True, "fast": "compile"}),
)


@dataclass
class Row:
    depth: int
    threads: int
    variant: str
    img_per_s: float
    gflops: float

    def as_dict(self) -> dict[str, Any]:
        return {"model": f"resnet{self.depth}", "threads": self.threads, "variant": self.variant,
                "img_per_s": self.img_per_s, "gflop_per_s": self.gflops}


def peak_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """Measured peak of this CPU on the current threads: the best GFLOP/s of an n×n×n matmul in `dtype`."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b  # warm-up: lets oneDNN/MKL pick and JIT its kernel
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def train_step_flops(depth: int, image_size: int) -> float:
    """FLOPs of one image's training step: 3 × its forward FLOPs (torch's FlopCounterMode on the meta device)."""
    return train_flops(ModelConfig(family="cifar", depth=depth), image_size, images=1)


def _fastest_windows(timers: dict[str, Any], steps: int, rounds: int) -> dict[str, float]:
    """Each timer's fastest of `rounds` windows of steps // rounds steps, the windows taken in turn across the timers
    (so a slow spell of a shared CPU hits every variant alike, and the figures compare)."""
    window = max(1, steps // max(1, rounds))
    best = {label: 0.0 for label in timers}
    for _ in range(max(1, rounds)):
        for label, timer in timers.items():
            best[label] = max(best[label], timer(window))
    return best


def run_cpu_bench(args: argparse.Namespace, config: Callable[..., Any], engine_timer: Callable[..., Any],
                  seed_style_timer: Callable[..., Any]) -> list[dict]:
    """Measure and print the CPU table; returns its rows (one dict per measurement) for --out.

    `engine_timer(cfg, members, warmup)` and `seed_style_timer(cfg, warmup)` are context managers yielding
    `bench.Timer`s (warmed up; `timer(steps)` → img/s). A variant that cannot run here (torch.compile failing) is
    printed as failed and the others are measured."""
    threads_list = [int(t) for t in args.threads.split(",")] if args.threads else [torch.get_num_threads()]
    depths = [int(d) for d in args.depths.split(",")]
    rounds = getattr(args, "rounds", 1)
    print(f"CPU: native bf16 {'yes' if cpu_has_native_bf16() else 'no'}; image 32×32, batch {args.batch_size}, "
          f"{args.warmup} warm-up steps, then the fastest of {rounds} windows of {max(1, args.steps // rounds)} "
          "steps, taken in turn across the variants", flush=True)
    rows: list[dict] = []
    for threads in threads_list:
        torch.set_num_threads(threads)
        peaks = {"fp32": peak_gflops(torch.float32), "bf16": peak_gflops(torch.bfloat16)}
        print(f"\n{threads} thread{'s' * (threads != 1)}: peak matmul fp32 {peaks['fp32']:,.0f} GFLOP/s, "
              f"bf16 {peaks['bf16']:,.0f} GFLOP/s", flush=True)
        print(f"{'model':<10} {'variant':<34} {'img/s':>8} {'× seed':>7} {'GFLOP/s':>8} {'% peak':>7}", flush=True)
        for depth in depths:
            flops = train_step_flops(depth, 32)
            base = config(depth, args, probes=True)
            precision = {"seed-style loop": "fp32",
                         "engine as configured": "bf16" if autocast_dtype(base.precision, torch.device("cpu"))
                         else "fp32"}
            with contextlib.ExitStack() as stack:
                timers: dict[str, Any] = {}
                if not args.no_seed_style:
                    timers["seed-style loop"] = stack.enter_context(seed_style_timer(base, args.warmup))
                timers["engine as configured"] = stack.enter_context(engine_timer(base, 1, args.warmup))
                for label, overrides in VARIANTS:
                    cfg = type(base).from_dict({**base.to_dict(), **overrides})
                    try:
                        timer = stack.enter_context(engine_timer(cfg, 1, args.warmup))
                    except FastPathMismatch as e:  # the guard: this variant computes other numbers; no speed for it
                        print(f"resnet{depth:<4} engine {label:<27} wrong numbers: {e}", flush=True)
                        continue
                    except GraphCaptureError as e:   # e.g. torch.compile unavailable here: say so, measure the rest
                        print(f"resnet{depth:<4} engine {label:<27} failed: {str(e).split(';')[0]}", flush=True)
                        continue
                    if timer.fallback:  # it left the variant's path (e.g. channels_last → NCHW): not this variant
                        print(f"resnet{depth:<4} engine {label:<27} wrong numbers: {timer.fallback}", flush=True)
                        continue
                    timers[f"engine {label}"] = timer
                    precision[f"engine {label}"] = overrides["precision"]
                configured_path = timers["engine as configured"].fast  # read while its trainer is open
                configured_fallback = timers["engine as configured"].fallback
                measured = _fastest_windows(timers, args.steps, rounds)
            seed = measured.get("seed-style loop")
            best = max(measured.values())
            for label, ips in measured.items():
                gf = ips * flops / 1e9
                ratio = f"{ips / seed:.2f}" if seed else "–"
                mark = "  ← best" if ips == best else ""
                print(f"resnet{depth:<4} {label:<34} {ips:>8,.0f} {ratio:>7} {gf:>8,.1f} "
                      f"{100 * gf / peaks[precision[label]]:>6.1f}%{mark}", flush=True)
                rows.append({**Row(depth, threads, label, ips, gf).as_dict(),
                             "peak_gflop_per_s": peaks[precision[label]],
                             "ratio_to_seed_style": ips / seed if seed else None})
            configured = measured["engine as configured"]
            if configured_fallback:
                print(f"resnet{depth:<4} engine as configured fell back: {configured_fallback}", flush=True)
            print(f"resnet{depth:<4} engine as configured ({precision['engine as configured']}, fast path "
                  f"{configured_path}) = {configured / best:.0%} of the best variant"
                  + (f", {configured / seed:.2f}× the seed-style loop" if seed else ""), flush=True)
    return rows
