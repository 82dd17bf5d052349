"""Print a Markdown table of each trial's error at every evaluation of a study, one row per trial: the per-epoch
curve behind a budget choice (results/cifar10-pilot/README.md).

    .venv/bin/python scripts/epoch_table.py results/cifar10-pilot/fig6-pilot-cpu [--split test] [--name error]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from resnet_core.record import read_metrics  # noqa: E402


def curve(trial: Path, split: str, name: str) -> dict[float, float]:
    """Epoch → value of (split, name) in the trial's metrics.jsonl (the last one logged at each epoch)."""
    return {round(r["epoch"], 2): r["value"] for r in read_metrics(trial) if (r["split"], r["name"]) == (split, name)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study_dir", type=Path)
    ap.add_argument("--split", default="test")
    ap.add_argument("--name", default="error")
    args = ap.parse_args()
    trials = sorted(p for p in (args.study_dir / "trials").iterdir() if (p / "metrics.jsonl").is_file())
    curves = {t.name: curve(t, args.split, args.name) for t in trials}
    epochs = sorted({e for c in curves.values() for e in c})
    fmt = lambda e: f"{e:g}"  # noqa: E731
    print("| trial | " + " | ".join(fmt(e) for e in epochs) + " |")
    print("|---" * (len(epochs) + 1) + "|")
    for t, c in curves.items():
        print(f"| {t} | " + " | ".join(f"{c[e]:.1f}" if e in c else "" for e in epochs) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
