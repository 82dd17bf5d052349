"""`resnet-ablate bench` on a CPU: the engine as configured against the variants a CPU offers, and against the peak.

For each depth and each thread count it prints, in one run: the seed-style loop (the tutorials' PIL DataLoader and
fp32 eager step), the engine as configured (precision auto, channels_last, the default fast path), and the engine
forced to each variant (fp32 / bf16 autocast × NCHW / channels_last, and torch.compile over bf16 channels_last), with
img/s, the ratio to the seed-style loop and the achieved GFLOP/s against the peak matmul GFLOP/s measured on the same
threads (a training step counted as 3 × the forward FLOPs: the backward pass costs about twice the forward).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from .devices import cpu_has_native_bf16

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
    from .config import ModelConfig
    from .flops import forward_flops

    return 3.0 * forward_flops(ModelConfig(family="cifar", depth=depth), image_size)


def run_cpu_bench(args: argparse.Namespace, config: Callable[..., Any],
                  engine_throughput: Callable[..., float], seed_style_throughput: Callable[..., float]) -> list[dict]:
    """Measure and print the CPU table; returns its rows (one dict per measurement) for --out."""
    threads_list = [int(t) for t in args.threads.split(",")] if args.threads else [torch.get_num_threads()]
    depths = [int(d) for d in args.depths.split(",")]
    print(f"CPU: native bf16 {'yes' if cpu_has_native_bf16() else 'no'}; image 32×32, batch {args.batch_size}, "
          f"{args.steps} timed steps after {args.warmup} warm-up steps", flush=True)
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
            measured: list[tuple[str, float, str]] = []
            if not args.no_seed_style:
                measured.append(("seed-style loop", seed_style_throughput(base, args.steps, args.warmup), "fp32"))
            engine_cfg = config(depth, args, probes=True)
            from .devices import autocast_dtype
            from .graphs import GraphCaptureError

            auto_prec = "bf16" if autocast_dtype(engine_cfg.precision, torch.device("cpu")) else "fp32"
            measured.append(("engine as configured", engine_throughput(engine_cfg, 1, args.steps, args.warmup)[0],
                             auto_prec))
            for label, overrides in VARIANTS:
                cfg = type(base).from_dict({**base.to_dict(), **overrides})
                try:
                    ips = engine_throughput(cfg, 1, args.steps, args.warmup)[0]
                except GraphCaptureError as e:   # e.g. torch.compile unavailable here: say so, measure the rest
                    print(f"resnet{depth:<4} engine {label:<27} failed: {str(e).split(';')[0]}", flush=True)
                    continue
                measured.append((f"engine {label}", ips, overrides["precision"]))
            seed = measured[0][1] if not args.no_seed_style else None
            best = max(v for _, v, _ in measured)
            for label, ips, prec in measured:
                gf = ips * flops / 1e9
                ratio = f"{ips / seed:.2f}" if seed else "–"
                mark = "  ← best" if ips == best else ""
                print(f"resnet{depth:<4} {label:<34} {ips:>8,.0f} {ratio:>7} {gf:>8,.1f} "
                      f"{100 * gf / peaks[prec]:>6.1f}%{mark}", flush=True)
                rows.append({**Row(depth, threads, label, ips, gf).as_dict(), "peak_gflop_per_s": peaks[prec],
                             "ratio_to_seed_style": ips / seed if seed else None})
            configured = next(v for lbl, v, _ in measured if lbl == "engine as configured")
            print(f"resnet{depth:<4} engine as configured = {configured / best:.0%} of the best variant"
                  + (f", {configured / seed:.2f}× the seed-style loop" if seed else ""), flush=True)
    return rows
