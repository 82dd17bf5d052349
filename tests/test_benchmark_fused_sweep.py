"""benchmarks/fused_sweep.py: the same grid unfused then fused, with its figures (run here on a tiny CPU grid)."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("optuna")
from test_sweeps import TINY_BASE, write_grid  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


def load_benchmark():
    spec = importlib.util.spec_from_file_location("fused_sweep", REPO / "benchmarks" / "fused_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fused_sweep_benchmark_runs_both_modes_and_reports_figures(tmp_path, capsys):
    bench = load_benchmark()
    base = {**TINY_BASE, "precision": "fp64"}
    grid = write_grid(tmp_path / "g.yaml", "fb", base=base, seeds=[0, 1])
    out = tmp_path / "fb.json"
    assert bench.main([str(grid), "--fuse", "2", "--root", str(tmp_path / "runs"), "--workers", "1",
                       "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "speed-up (unfused wall ÷ fused wall)" in text and "largest paired objective difference" in text
    result = json.loads(out.read_text())
    unfused, fused = result["modes"]["unfused"], result["modes"]["fused"]
    assert unfused["trials"] == fused["trials"] == 4 and result["paired_trials"] == 4
    assert unfused["fused_runs"] == 0 and fused["fused_runs"] == 2
    assert unfused["img_per_s"] > 0 and fused["img_per_s"] > 0
    # float64: the fused sweep's objectives equal the unfused ones
    assert result["max_abs_objective_diff"] <= 1e-9
    assert math.isclose(result["speedup"], unfused["wall_s"] / fused["wall_s"], rel_tol=1e-2)
    assert (tmp_path / "runs" / "fb-unfused" / "optuna.journal").exists()
    assert (tmp_path / "runs" / "fb-fused" / "optuna.journal").exists()


def test_fused_sweep_benchmark_bad_fuse_is_one_line(tmp_path, capsys):
    bench = load_benchmark()
    grid = write_grid(tmp_path / "g.yaml", "fb2")
    assert bench.main([str(grid), "--fuse", "zero", "--root", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--fuse" in err[0]
