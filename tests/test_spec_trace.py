"""Issue 29, item 2: one resolved spec, stored in the study once. A trace of one launch and its worker: the grid
file is read once per launch, the worker reads the spec from the study (never the file), and each trial's run
config is built once in the worker (the claim builds it; the objective trains with it)."""
from __future__ import annotations

import io
import warnings
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import sweeps.spec.grid as grid_mod
from sweeps.launch import launchers as launchers_mod, sweep as sweep_mod
from sweeps.queue.access import open_study
from sweeps.run.worker import run_worker
from sweeps.spec.grid import GridSpec, load_grid
from sweeps.spec.study_format import read_spec

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

BASE = {
    "data": {"name": "synthetic", "synthetic": {"image_size": 8, "n_train": 64, "n_test": 32}, "augment": "none"},
    "model": {"family": "cifar", "depth": 8, "widths": [4, 8, 8]},
    "optim": {"name": "sgd", "lr": 0.05},
    "schedule": {"name": "constant", "unit": "iter", "total": 2},
    "batch_size": 32, "eval_batch_size": 32, "log_every": 1, "eval_every": 2, "probes": False,
}


def fake_train(cfg, run_dir, *, callbacks=(), resume=False):
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    return SimpleNamespace(status="complete", reason=None, summary={"final_test_error": 50.0 + cfg["seed"]})


def test_one_launch_reads_the_grid_once_and_a_worker_builds_each_run_config_once(tmp_path, monkeypatch):
    grid_file = tmp_path / "g.yaml"
    grid_file.write_text(yaml.safe_dump({"study": "trace", "base": BASE, "grid": {"model.shortcut": ["none", "identity"]},
                                         "seeds": [0, 1], "wandb": {"mode": "disabled"}}, sort_keys=False))
    reads: list[str] = []
    real_load_yaml = grid_mod.load_yaml
    monkeypatch.setattr(grid_mod, "load_yaml", lambda path: reads.append(str(path)) or real_load_yaml(path))
    workers: list = []
    monkeypatch.setattr(launchers_mod, "run_worker", lambda ws, **kw: workers.append(ws) or SimpleNamespace(ran=0))
    root = tmp_path / "runs"
    sweep_mod.run_sweep(grid_file, workers=1, devices="cpu", root=root, fuse="off", out=io.StringIO(),
                        err=io.StringIO())
    assert reads == [str(grid_file)]                              # the grid file: read once per launch
    assert len(workers) == 1 and workers[0].spec == "trace"      # a worker gets the study's name, not a spec

    spec = read_spec(open_study(root / "trace"))                 # the spec the study stores, resolved again
    launched = load_grid(grid_file)                              # (this test's own read, to compare)
    reads.clear()
    assert [c.id for c in spec.cells] == [c.id for c in launched.cells]
    assert [u.key for u in spec.units()] == [u.key for u in launched.units()]
    assert spec.run_config(spec.cells[0], 1) == launched.run_config(launched.cells[0], 1)
    assert spec.study_attrs() == launched.study_attrs()          # one serialisation, read back whole

    built: Counter = Counter()
    real_run_config = GridSpec.run_config

    def counted(self, cell, seed, *args, **kwargs):
        built[(cell.id, seed)] += 1
        return real_run_config(self, cell, seed, *args, **kwargs)

    monkeypatch.setattr(GridSpec, "run_config", counted)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = run_worker(workers[0], train=fake_train)
    assert stats.ran == 4
    assert reads == []                                           # the worker never read the grid file
    assert built == {(c.id, s): 1 for c in spec.cells for s in (0, 1)}   # each trial's run config: built once


def test_units_run_seed_by_seed(tmp_path):
    """One worker runs every cell's first seed before any cell's second: a study stopped part-way (or run across
    sessions) holds comparable cells."""
    from sweeps.spec.grid import load_grid

    grid = tmp_path / "g.yaml"
    grid.write_text("study: order\nbase: {model: {family: cifar, depth: 8}, data: {name: synthetic}}\n"
                    "grid: {model.shortcut: [none, identity, conv1x1]}\nseeds: [0, 1]\n")
    units = load_grid(grid).units()
    assert [(u.cell.params["model.shortcut"], u.seed) for u in units] == [
        ("none", 0), ("identity", 0), ("conv1x1", 0), ("none", 1), ("identity", 1), ("conv1x1", 1)]
