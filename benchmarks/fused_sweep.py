"""Fused against unfused sweeps: the same grid run twice on the same device, wall time and aggregate img/s.

    python benchmarks/fused_sweep.py ablations/degradation_fast.yaml --fuse auto \
        --set data.name=cifar10_jpeg --set data.path=data/cifar10_jpeg.npz --root runs/fusebench --out fuse.json

Runs GRID as study ``<study>-unfused`` with ``--fuse off`` and then as ``<study>-fused`` with ``--fuse N``, one after
the other in this process (same GPU, same workers), and prints per mode: trials complete, fused runs, wall time,
aggregate img/s (every trial's images trained ÷ the sweep's wall time) and the objective mean; then the largest
difference between the paired trials' objectives (fusion is exact in float64; bf16 and fp32 round differently).
Each sweep resumes like any other, so an interrupted benchmark continues where it stopped (its wall time then
counts only the rerun).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _trials(root: Path, study: str) -> list[dict[str, Any]]:
    """(unit, objective value, images trained, fused members) of each complete trial, from the run records."""
    import optuna
    from optuna.trial import TrialState

    from resnet_core.values import read_yaml
    from sweeps.queue.storage import open_storage, resolve_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(resolve_storage(None, root, study), read_only=True)
    rows = []
    for t in optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False):
        if t.state != TrialState.COMPLETE:
            continue
        run_dir = root / study / t.user_attrs["run_dir"]
        summary = json.loads((run_dir / "summary.json").read_text())
        config = read_yaml(run_dir / "config.yaml")
        rows.append({"unit": t.user_attrs["unit"], "value": t.value, "fused_with": t.user_attrs.get("fused_with"),
                     "images": int(summary["step"]) * int(config["batch_size"])})
    return rows


def run(grid: str, fuse: str, root: Path, overrides: Sequence[str], workers: int | None, devices: str | None,
        wandb: str) -> dict[str, Any]:
    from sweeps.spec.grid import load_grid
    from sweeps.queue.packing import parse_fuse
    from sweeps.launch.sweep import run_sweep

    parse_fuse(fuse)  # a bad value fails here, before the unfused sweep spends any time
    study = load_grid(grid, overrides).study
    result: dict[str, Any] = {"grid": grid, "fuse": fuse, "modes": {}}
    for mode, value in (("unfused", "off"), ("fused", fuse)):
        name = f"{study}-{mode}"
        t0 = time.perf_counter()
        code = run_sweep(grid, workers=workers, devices=devices, root=root, overrides=overrides, wandb=wandb,
                         study=name, fuse=value)
        wall = time.perf_counter() - t0
        trials = _trials(root, name)
        groups = {tuple(t["fused_with"]) for t in trials if t["fused_with"]}
        images = sum(t["images"] for t in trials)
        result["modes"][mode] = {
            "exit_code": code, "trials": len(trials), "fused_runs": len(groups), "wall_s": round(wall, 2),
            "img_per_s": round(images / wall, 1) if wall > 0 else None,
            "objective_mean": sum(t["value"] for t in trials) / len(trials) if trials else None,
            "values": {t["unit"]: t["value"] for t in trials},
        }
    a, b = result["modes"]["unfused"]["values"], result["modes"]["fused"]["values"]
    paired = [abs(a[u] - b[u]) for u in a.keys() & b.keys()]
    result["paired_trials"] = len(paired)
    result["max_abs_objective_diff"] = max(paired) if paired else None
    u, f = result["modes"]["unfused"], result["modes"]["fused"]
    result["speedup"] = round(u["wall_s"] / f["wall_s"], 3) if f["wall_s"] else None
    return result


def print_table(result: dict[str, Any]) -> None:
    print(f"\n{result['grid']}  (fused: --fuse {result['fuse']})")
    print(f"{'mode':<8} {'trials':>6} {'fused runs':>10} {'wall s':>9} {'img/s':>11} {'objective mean':>15}")
    for mode, m in result["modes"].items():
        mean = f"{m['objective_mean']:.2f}" if m["objective_mean"] is not None else "-"
        ips = f"{m['img_per_s']:,.0f}" if m["img_per_s"] is not None else "-"
        print(f"{mode:<8} {m['trials']:>6} {m['fused_runs']:>10} {m['wall_s']:>9.1f} {ips:>11} {mean:>15}")
    diff = result["max_abs_objective_diff"]
    print(f"speed-up (unfused wall ÷ fused wall): {result['speedup']}×; largest paired objective difference over "
          f"{result['paired_trials']} trials: {'-' if diff is None else f'{diff:.3g}'}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("grid")
    p.add_argument("--fuse", default="auto", help="members per fused run for the fused sweep (default auto)")
    p.add_argument("--root", default="runs/fusebench", help="where both studies go (default runs/fusebench)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--devices", default=None)
    p.add_argument("--wandb", default="off", choices=("off", "offline", "online"))
    p.add_argument("--out", help="write the figures as JSON here")
    args = p.parse_args(argv)

    from resnet_core.errors import ConfigError
    from resnet_core.record import atomic_write_json

    try:
        result = run(args.grid, args.fuse, Path(args.root), args.overrides, args.workers, args.devices, args.wandb)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_table(result)
    if args.out:
        atomic_write_json(Path(args.out), result)
    return 0 if all(m["exit_code"] == 0 for m in result["modes"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
