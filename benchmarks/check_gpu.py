"""GPU acceptance checks of the engine's fast path (issue 14): one PASS/FAIL line per check, under 5 minutes.

    bash scripts/check_gpu.sh                # from a fresh clone, after scripts/setup.sh, on a machine with CUDA
    python benchmarks/check_gpu.py --emulate --small --no-bench   # the same checks on the CPU graph stand-in (CI)

Checks (synthetic 32×32 data, offline; every run single-GPU, `device: cuda`):
  graph_vs_eager   ResNet-20, bf16 autocast, 200 steps: the graphed and the eager loss curves (logged every 10
                   steps) agree within bf16 tolerance (5 % of the curve's scale).
  resume_graph     float64, graphed, interrupted mid-epoch and resumed == uninterrupted (weights, optimizer state,
                   curves within 1e-8 of their scale: cuDNN may pick other algorithms between processes).
  fused_graph      float64, 4 members fused and graphed == 4 solo graphed runs (1e-8 of the scale).
  diverging_member float64, fused G=4, graphed: member 1's loss made NaN at step 11 inside the graph; it ends
                   diverged at step 11 and the other three equal the unpoisoned fused run.
  bench            `resnet-ablate bench --members 1,2,4,8` for ResNet-20/56/110; every figure ran on the graph.
Exit status: 0 all passed, 1 a check failed, 2 no CUDA device (nothing was run).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


@dataclasses.dataclass(frozen=True)
class Sizes:
    image: int = 32
    depth: int = 20
    n_train: int = 1024           # 8 steps an epoch at batch 128
    batch: int = 128
    curve_steps: int = 200


SMALL = Sizes(image=16, depth=8, n_train=128, batch=32, curve_steps=24)  # CPU stand-in: seconds, not minutes


def run_config(sizes: Sizes, device: str, **top: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": "check", "device": device, "seed": 0,
        "data": {"name": "synthetic", "synthetic": {"image_size": sizes.image, "n_train": sizes.n_train,
                                                     "n_test": 256}},
        "model": {"family": "cifar", "depth": sizes.depth},
        "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
        "schedule": {"name": "cosine", "unit": "epoch", "total": 3},
        "batch_size": sizes.batch, "eval_batch_size": 256, "log_every": 2, "eval_every": 0.5,
    }
    d.update(top)
    return d


def scaled_error(a: Any, b: Any, floor_fraction: float = 1e-2) -> float:
    """max|a-b| / max(max|b|, floor_fraction × max|b| over the group): the error of a state dict (or a float curve)
    against a floor tied to its scale (quantities zero in exact arithmetic hold only round-off)."""
    import torch

    if isinstance(a, dict):
        scale = max((v.double().abs().max().item() for v in b.values() if v.is_floating_point() and v.numel()),
                    default=0.0)
        worst = 0.0
        for k, v in b.items():
            if not v.is_floating_point():
                worst = max(worst, 0.0 if torch.equal(a[k], v) else math.inf)
                continue
            diff = (a[k].double() - v.double()).abs().max().item() if v.numel() else 0.0
            worst = max(worst, diff / max(v.double().abs().max().item(), floor_fraction * scale, 1e-300)
                        if diff else 0.0)
        return worst
    scale = max(abs(v) for v in b)
    return max((abs(x - y) / max(abs(y), floor_fraction * scale, 1e-300) for x, y in zip(a, b) if x != y),
               default=0.0)


def curve(run_dir: Path, split: str = "train", name: str = "loss") -> list[float]:
    from resnet_core.record import read_metrics

    return [r["value"] for r in read_metrics(run_dir) if r["split"] == split and r["name"] == name]


def last(run_dir: Path) -> dict[str, Any]:
    import torch

    return torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)


def state_error(a: Path, b: Path) -> float:
    x, y = last(a), last(b)
    worst = scaled_error(x["model"], y["model"])
    for name in y["optim"]:
        worst = max(worst, scaled_error(x["optim"][name], y["optim"][name]))
    return worst


# A copy of tests/train_callbacks.py's InterruptAt: this script is run on its own on a GPU machine and puts only the
# repository root on sys.path, not tests/ (the test suite's helpers are not part of what it imports).
class _InterruptAt:
    def __init__(self, step: int) -> None:
        self.step = step

    def on_eval(self, member: int, step: int, metrics: dict) -> bool:
        if step == self.step:
            raise KeyboardInterrupt
        return False


# -- the checks: each returns (passed, detail) ------------------------------------------------------------------
def check_graph_vs_eager(root: Path, sizes: Sizes, device: str) -> tuple[bool, str]:
    from resnet_core.engine import train

    base = run_config(sizes, device, precision="auto", log_every=10, probes=True, checkpoint=False,
                      schedule={"name": "constant", "unit": "iter", "total": sizes.curve_steps},
                      eval_every=sizes.curve_steps)
    runs = {fast: train({**base, "fast": fast}, root / f"curve-{fast}") for fast in ("eager", "graph")}
    paths = {fast: r.summary["fast_path"] for fast, r in runs.items()}
    a, b = curve(root / "curve-graph"), curve(root / "curve-eager")
    err = scaled_error(a, b, floor_fraction=1.0)
    ok = paths == {"eager": "eager", "graph": "graph"} and len(a) == len(b) > 0 and err <= 0.05
    return ok, (f"{len(a)} logged losses over {sizes.curve_steps} steps, largest difference {100 * err:.2f}% of the "
                f"curve's scale (bf16 tolerance 5%); first {b[0]:.3f} -> last eager {b[-1]:.3f} graph {a[-1]:.3f}; "
                f"paths {paths}")


def check_resume_graph(root: Path, sizes: Sizes, device: str) -> tuple[bool, str]:
    from resnet_core.engine import train

    cfg = run_config(sizes, device, precision="fp64", fast="graph")
    whole = train(cfg, root / "resume-whole")
    steps = whole.summary["total_steps"]
    at = steps // 2  # 3 epochs, evaluated every half epoch: the eval in the middle of epoch 2
    try:
        train(cfg, root / "resume-broken", callbacks=[_InterruptAt(at)])
        return False, f"the run was not interrupted at step {at}"
    except KeyboardInterrupt:
        pass
    resumed = train(cfg, root / "resume-broken", resume=True)
    err = state_error(root / "resume-broken", root / "resume-whole")
    curve_err = scaled_error(curve(root / "resume-broken"), curve(root / "resume-whole"))
    ok = (resumed.status == whole.status == "complete" and resumed.summary["fast_path"] == "graph"
          and err <= 1e-8 and curve_err <= 1e-8)
    return ok, (f"interrupted at step {at} of {steps}; weights+optimizer state differ by {err:.1e}, "
                f"loss curve by {curve_err:.1e} (of their scale; tolerance 1e-8)")


def _fused(root: Path, sizes: Sizes, device: str, tag: str) -> list[Any]:
    from resnet_core.engine import train_members

    cfgs = [run_config(sizes, device, precision="fp64", fast="graph", name=f"m{g}", seed=g) for g in range(4)]
    return train_members(cfgs, [root / f"{tag}{g}" for g in range(4)])


def check_fused_graph(root: Path, sizes: Sizes, device: str) -> tuple[bool, str]:
    from resnet_core.engine import train

    fused = _fused(root, sizes, device, "fused")
    solo = [train(run_config(sizes, device, precision="fp64", fast="graph", name=f"m{g}", seed=g),
                  root / f"solo{g}") for g in range(4)]
    errs = [max(state_error(f.run_dir, s.run_dir), scaled_error(curve(f.run_dir), curve(s.run_dir)))
            for f, s in zip(fused, solo)]
    ok = all(r.summary["fast_path"] == "graph" for r in fused + solo) and max(errs) <= 1e-8
    return ok, f"G=4 graphed vs 4 solo graphed runs, float64: largest difference {max(errs):.1e} (tolerance 1e-8)"


def check_diverging_member(root: Path, sizes: Sizes, device: str) -> tuple[bool, str]:
    import torch

    from resnet_core.fast_path import FastPath

    poison = 10  # 0-based step; reported as step 11
    original = FastPath._logits

    def poisoned(self, x):  # device-side, so it is part of the captured graph
        logits = original(self, x)
        mask = torch.zeros(self.G, dtype=logits.dtype, device=logits.device)
        mask[1] = float("nan")
        return logits + torch.where(self.step_t == poison, mask, torch.zeros_like(mask)).view(1, -1, 1)

    if not (root / "fused0").exists():
        _fused(root, sizes, device, "fused")
    FastPath._logits = poisoned
    try:
        results = _fused(root, sizes, device, "poisoned")
    finally:
        FastPath._logits = original
    bad = results[1]
    others = [0, 2, 3]
    errs = [state_error(results[g].run_dir, root / f"fused{g}") for g in others]
    ok = (bad.status == "diverged" and bad.summary["diverged_at"] == poison + 1
          and all(results[g].status == "complete" for g in others) and max(errs) <= 1e-8)
    return ok, (f"member 1: {bad.status} at step {bad.summary['diverged_at']} (want {poison + 1}); members 0,2,3: "
                f"{[results[g].status for g in others]}, largest difference from the unpoisoned run {max(errs):.1e}")


def check_bench(root: Path, sizes: Sizes, device: str) -> tuple[bool, str]:
    out = root / "bench.json"
    cmd = [sys.executable, "-m", "resnet_core", "bench", "--depths", "20,56,110", "--members", "1,2,4,8",
           "--steps", "30", "--warmup", "5", "--no-seed-style", "--set", f"device={device}", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    print(proc.stdout, end="", flush=True)
    if proc.returncode != 0:
        return False, f"bench exited {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"
    rows = json.loads(out.read_text())["rows"]
    paths = {r["model"]: r.get("fast_path") for r in rows}
    ok = len(rows) == 3 and all(p == "graph" for p in paths.values()) and all(
        r[f"engine_G{g}"] > 0 for r in rows for g in (1, 2, 4, 8))
    gains = ", ".join(f"{r['model']} G8/G1 ×{r['engine_G8'] / r['engine_G1']:.2f}" for r in rows)
    return ok, f"fast paths {paths}; {gains}"


CHECKS: dict[str, Callable[[Path, Sizes, str], tuple[bool, str]]] = {
    "graph_vs_eager": check_graph_vs_eager,
    "resume_graph": check_resume_graph,
    "fused_graph": check_fused_graph,
    "diverging_member": check_diverging_member,
    "bench": check_bench,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--emulate", action="store_true", help="run on the CPU graph stand-in (CI), not on CUDA")
    p.add_argument("--small", action="store_true", help="tiny sizes (ResNet-8, 16×16, 24 curve steps)")
    p.add_argument("--no-bench", action="store_true", help="skip the bench table")
    p.add_argument("--only", help="comma-separated checks to run: " + ", ".join(CHECKS))
    args = p.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("FAIL setup: torch is not importable here; run `bash scripts/setup.sh` first", flush=True)
        return 2
    if args.emulate:
        os.environ["RESNET_ABLATE_EMULATE_CUDA_GRAPH"] = "1"
        device = "cpu"
        torch.set_num_threads(1)  # tiny nets: OpenMP threads only spin on a shared CPU
    elif not torch.cuda.is_available():
        print("FAIL setup: no CUDA device here (torch.cuda.is_available() is False); these checks need a GPU "
              "(--emulate runs them on the CPU stand-in)", flush=True)
        return 2
    else:
        device = "cuda"
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    names = args.only.split(",") if args.only else list(CHECKS)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        print(f"error: unknown check {unknown[0]!r}; choose from {', '.join(CHECKS)}", file=sys.stderr)
        return 2
    if args.no_bench or args.emulate:
        names = [n for n in names if n != "bench"]
    sizes = SMALL if args.small else Sizes()
    failed = 0
    warnings.filterwarnings("ignore", category=UserWarning)
    with tempfile.TemporaryDirectory(prefix="check-gpu-") as tmp:
        for name in names:
            t0 = time.perf_counter()
            try:
                ok, detail = CHECKS[name](Path(tmp), sizes, device)
            except Exception as e:  # noqa: BLE001 - a crashing check is a failed check, reported on its line
                ok, detail = False, f"{type(e).__name__}: {e}".replace("\n", " ")
                traceback.print_exc(file=sys.stderr)
            failed += not ok
            print(f"{'PASS' if ok else 'FAIL'} {name}: {detail} ({time.perf_counter() - t0:.0f}s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
