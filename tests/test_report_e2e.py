"""A report from a small real sweep (offline synthetic data, CPU): the table's numbers equal the trials' records."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import pandas as pd
import pytest
import torch

from reports import build_report
from resnet_core.cli import main

torch.set_num_threads(1)

GRID = """
study: e2e
base:
  data: {name: synthetic, pad: 2, synthetic: {image_size: 16, num_classes: 4, n_train: 256, n_test: 100}}
  model: {family: cifar, depth: 8}
  optim: {name: sgd, lr: 0.05}
  schedule: {name: constant, unit: epoch, total: 2}
  batch_size: 32
  log_every: 4
  eval_every: 1
  device: cpu
grid: {model.shortcut: [none, identity]}
seeds: [0, 1, 2]
wandb: {mode: disabled}
"""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    grid = root / "grid.yaml"
    grid.write_text(GRID)
    assert main(["sweep", str(grid), "--root", str(root), "--workers", "1"]) == 0
    return root


def _records(root: Path) -> dict[str, list[dict]]:
    """shortcut -> the summaries of its runs, read straight from the run directories."""
    out: dict[str, list[dict]] = {}
    for summary in sorted((root / "e2e" / "trials").glob("*/summary.json")):
        s = json.loads(summary.read_text())
        config = summary.parent / "config.yaml"
        shortcut = "none" if "shortcut: none" in config.read_text() else "identity"
        out.setdefault(shortcut, []).append(s)
    return out


def test_table_numbers_equal_the_records(sweep, tmp_path):
    out = build_report("e2e", root=sweep, out=tmp_path / "report")
    table = pd.read_csv(out / "table.csv")
    records = _records(sweep)
    assert sorted(records) == ["identity", "none"] and all(len(v) == 3 for v in records.values())
    shortcut_col = next(c for c in table.columns if "shortcut" in c)
    mean_col = next(c for c in table.columns if "test" in c and "mean" in c)
    std_col = next(c for c in table.columns if "test" in c and "std" in c)
    n_col = next(c for c in table.columns if c == "n" or c.startswith("n_") or c.endswith("_n"))
    for shortcut, runs in records.items():
        row = table[table[shortcut_col].astype(str) == shortcut].iloc[0]
        values = [r["final_test_error"] for r in runs]
        assert row[mean_col] == pytest.approx(statistics.mean(values), rel=1e-5)  # the CSV keeps 6 significant digits
        assert row[std_col] == pytest.approx(statistics.stdev(values), rel=1e-5)
        assert int(row[n_col]) == 3
    for name in ("table.md", "table.tex", "summary.md", "index.html", "curves.png"):
        assert (out / name).stat().st_size > 0
