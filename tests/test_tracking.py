"""W&B tracking: one offline run per trial inside its run folder, whose files say exactly what the local
record says; a failing W&B never fails a trial; `off`/`disabled` writes nothing; the study summary run; the mode.

Everything runs offline (explicit `mode: offline`) with the W&B server address pointed at a dead local port, so no
test can reach the network. The `.wandb` files are read back with tests/wandb_reader.py.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from wandb_reader import read_finished_run

from resnet_core import ConfigError
from resnet_core.cli import main
from resnet_core.engine import train
from resnet_core.provenance import git_state
from resnet_core.record import read_config, read_metrics, read_summary
from resnet_core.tracking import WandbTracker, log_study_summary, resolve_mode, wandb_callback

torch.set_num_threads(1)

STUDY = "wb-test"
PROJECT = "wb-test-project"
BASE = {
    "data": {"name": "synthetic", "pad": 2, "synthetic": {"image_size": 16, "n_train": 256, "n_test": 100}},
    "model": {"family": "cifar", "depth": 8},
    "optim": {"name": "sgd", "lr": 0.05},
    "schedule": {"name": "constant", "unit": "epoch", "total": 2},
    "batch_size": 32,
    "log_every": 4,
    "eval_every": 1,
    "device": "cpu",
}
# 256 images / 32 = 8 steps an epoch, 2 epochs: logs at 4, 8, 12, 16 and evaluations at 8, 16
LOG_STEPS = [4, 8, 12, 16]
EVAL_STEPS = [8, 16]


def write_grid(path: Path, *, shortcuts=("none", "identity"), seeds=(0, 1), mode: str = "offline") -> Path:
    grid = {"study": STUDY, "base": BASE, "grid": {"model.shortcut": list(shortcuts)}, "seeds": list(seeds),
            "wandb": {"project": PROJECT, "mode": mode}}
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def sweep(grid: Path, root: Path, *extra: str) -> int:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        return main(["sweep", str(grid), "--root", str(root), "--workers", "1", *extra])


def trial_dirs(root: Path) -> list[Path]:
    return sorted(p for p in (root / STUDY / "trials").iterdir() if p.is_dir())


def wandb_files(root: Path) -> list[Path]:
    """The trials' run files (the sweep's own study-summary run lives in <study>/summary/, tested below)."""
    return sorted(p for p in root.rglob("*.wandb") if "summary" not in p.relative_to(root).parts)


def same(a: float, b: float) -> bool:
    return a == b or math.isclose(a, b, rel_tol=1e-9)


@pytest.fixture(scope="module", autouse=True)
def wandb_env(tmp_path_factory):
    """Silent, offline-only W&B whose config/cache/data folders are temporary; a dead server address so that
    anything trying to go online fails at once instead of reaching the network."""
    home = tmp_path_factory.mktemp("wandb-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_SILENT", "true")
        mp.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
        for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_DIR", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_GROUP",
                    "WANDB_JOB_TYPE", "WANDB_TAGS", "WANDB_NAME", "WANDB_RUN_ID", "WANDB_RESUME"):
            mp.delenv(var, raising=False)
        for var, sub in (("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data"),
                         ("WANDB_ARTIFACT_DIR", "artifacts")):
            mp.setenv(var, str(home / sub))
        yield


@pytest.fixture(scope="module", params=["off", "2"], ids=["solo", "fused"])
def offline_sweep(request, tmp_path_factory, wandb_env):
    """The 2 cells × 2 seeds grid swept once with `wandb: {mode: offline}`: (root, rc, trials, runs by folder).
    Twice: each trial alone (`--fuse off`), and the two seeds of each cell as one fused run (`--fuse 2`), where
    each member must still get its own W&B run holding exactly its own metrics."""
    import optuna

    from sweeps.queue.storage import open_storage, resolve_storage

    tmp = tmp_path_factory.mktemp("offline")
    root = tmp / "runs"
    rc = sweep(write_grid(tmp / "grid.yaml"), root, "--fuse", request.param)
    runs = {d.name: read_finished_run(d) for d in trial_dirs(root)}
    storage = open_storage(resolve_storage(None, root, STUDY), read_only=True)
    trials = optuna.load_study(study_name=STUDY, storage=storage).get_trials(deepcopy=False)
    fused = [t.user_attrs.get("fused_with") for t in trials]
    if request.param == "off":
        assert fused == [None] * 4
    else:  # the seeds of a cell trained together: trials 0+1 and 2+3
        assert fused == [[0, 1], [0, 1], [2, 3], [2, 3]]
        assert all(read_summary(root / STUDY / t.user_attrs["run_dir"])["fused_members"] == 2 for t in trials)
    return root, rc, trials, runs


PER_LAYER = ("grad_norm", "grad_norm_max", "grad_norm_block", "grad_norm_block_max", "weight_norm")


def wb_key(split: str, name: str) -> str:
    """Where a run record series goes in W&B: per-layer norms under their stage (stem, stage<i>, head)."""
    if split not in PER_LAYER:
        return f"{split}/{name}"
    group, _, rest = name.partition(".")
    return f"{split}/{group}/{rest}" if rest else f"{split}/head/{name}"


# -- 1. one run per trial, in its own run folder, with group / job type / name / tags / config ------------------
def test_one_offline_run_per_trial_with_identity_and_config(offline_sweep):
    root, rc, trials, runs = offline_sweep
    assert rc == 0
    assert sorted(runs) == ["shortcut-identity-s0", "shortcut-identity-s1", "shortcut-none-s0", "shortcut-none-s1"]
    study_dir = root / STUDY
    # exactly one .wandb file per trial, each inside its own trial folder, plus the sweep's one summary run
    assert wandb_files(root) == sorted(r["file"] for r in runs.values())
    summary = read_finished_run(study_dir / "summary")
    assert summary["run"]["group"] == STUDY and summary["run"]["job_type"] == "summary"
    assert summary["config"]["code"]["git_commit"] == git_state()[0]
    results = [row for row in summary["history"] if "results/_type" in row]
    assert results and results[0]["results/_type"] == "table-file" and results[0]["results/nrows"] == 4
    # one column per grid axis, so W&B can group the table by it
    table = json.loads((summary["file"].parent / "files" / results[0]["results/path"]).read_text())
    assert table["columns"][:3] == ["cell", "seed", "model.shortcut"]
    assert sorted(row[2] for row in table["data"]) == ["identity", "identity", "none", "none"]
    assert all(row[0] == f"model.shortcut={row[2]}" for row in table["data"])
    cells = [row for row in summary["history"] if "cells/_type" in row]
    cell_table = json.loads((summary["file"].parent / "files" / cells[0]["cells/path"]).read_text())
    assert cell_table["columns"][:2] == ["cell", "model.shortcut"]
    assert any(k.startswith("figures/curves") for row in summary["history"] for k in row)
    for name, r in runs.items():
        assert r["file"].parent.parent == study_dir / "trials" / name / "wandb"
    assert len(trials) == 4
    for t in trials:
        run_dir = study_dir / t.user_attrs["run_dir"]
        r, local = runs[run_dir.name], read_config(run_dir)
        shortcut, seed = t.user_attrs["cell_params"]["model.shortcut"], t.user_attrs["seed"]
        assert r["run"] == {"group": STUDY, "job_type": "trial", "name": f"{STUDY}-shortcut-{shortcut}-s{seed}",
                            "tags": [f"model.shortcut={shortcut}"], "project": PROJECT}
        assert r["run"]["name"] == local["name"]
        assert r["exit_code"] == 0
        cfg = r["config"]
        assert cfg["trial"] == {"number": t.number, "cell": f"model.shortcut={shortcut}", "params": {}}
        assert cfg["model"]["depth"] == local["model"]["depth"] == 8
        assert cfg["model"]["shortcut"] == local["model"]["shortcut"] == shortcut
        assert cfg["seed"] == local["seed"] == seed
        for section in ("optim", "schedule", "data"):
            assert cfg[section] == local[section], section
        assert cfg["optim"]["name"] == "sgd" and cfg["optim"]["lr"] == 0.05
        assert cfg["schedule"]["total"] == 2
        # the full resolved config: the model as built (block, stem, stages, widths), not the grid's "auto"s
        assert cfg["model"] == local["model"]
        assert cfg["model"]["stages"] == [1, 1, 1] and cfg["model"]["block"] == "basic"
        assert {k: v for k, v in cfg.items() if k not in ("_wandb", "trial", "ran", "code")} == local
        # what ran, resolved (the config says precision: auto) and the code version, as the run record has them
        ran, record = cfg["ran"], read_summary(run_dir)
        assert local["precision"] == "auto" and ran["precision"] == record["precision"] in ("bf16", "fp32")
        assert ran["device"] == "cpu" and ran["threads"] == record["threads"] >= 1
        assert ran["fast_path"] == record["fast_path"] == "eager" and ran["compiled"] is False
        # the path of each part of the run, in W&B and in the trial's attrs as in the record (only the record had it)
        assert ran["paths"] == record["paths"] == t.user_attrs["paths"] and record["paths"][0]["from_step"] == 1
        assert ran["memory_format"] == ("channels_last" if record["channels_last"] else "contiguous")
        assert ran["fused_members"] == record["fused_members"]
        assert cfg["code"]["git_commit"] == record["provenance"]["git_commit"] == git_state()[0]
        assert cfg["code"]["version"] == record["provenance"]["version"]


# -- 2. history = the local metrics, step by step --------------------------------------------------------------
def test_history_equals_local_metrics_at_every_logged_step(offline_sweep):
    _, _, _, runs = offline_sweep
    root = offline_sweep[0]
    for name, r in runs.items():
        rows = list(read_metrics(root / STUDY / "trials" / name))
        steps = sorted({m["step"] for m in rows})
        assert steps == LOG_STEPS
        history = r["history"]
        assert [h["_step"] for h in history] == steps, name  # one row per logging step, in order
        by_step = {h["_step"]: h for h in history}
        layers = sorted({m["name"] for m in rows if m["split"] == "grad_norm"})
        blocks = sorted({m["name"] for m in rows if m["split"] == "grad_norm_block"})
        assert {"stem.conv", "stage1.block0.conv1", "stage3.block0.conv2", "fc"} <= set(layers)
        assert blocks == ["stage1.block0", "stage2.block0", "stage3.block0"]
        for m in rows:  # every local value is in W&B, at its step, exactly (per-layer ones under their stage)
            key = wb_key(m["split"], m["name"])
            assert key in by_step[m["step"]], (name, m)
            assert same(by_step[m["step"]][key], m["value"]), (name, m, by_step[m["step"]][key])
            assert same(by_step[m["step"]]["epoch"], m["epoch"]) and by_step[m["step"]]["iteration"] == m["step"]
        local_keys = {(m["step"], wb_key(m["split"], m["name"])) for m in rows}
        for step, h in by_step.items():  # …and W&B holds nothing the record does not, but the per-stage norms
            stage = {k for k in h if k.startswith(("grad_norm_stage/", "weight_norm_stage/"))}
            assert {(step, k) for k in h if not k.startswith("_") and k not in stage | {"iteration", "epoch"}} \
                == {x for x in local_keys if x[0] == step}
            # the per-layer values of a step arrive together: every row holds every layer, block and weight norm
            assert {wb_key("grad_norm", x) for x in layers} <= set(h)
            assert {wb_key("weight_norm", x) for x in layers} <= set(h)
            assert {wb_key("grad_norm_block", x) for x in blocks} <= set(h)
            assert {"train/loss", "train/error", "train/lr", "train/throughput"} <= set(h)
            assert ("test/error" in h) == (step in EVAL_STEPS)
            # one visible series per stage: the root sum of squares of its layers' norms
            assert stage == {f"{k}_stage/{g}" for k in ("grad_norm", "weight_norm")
                             for g in ("stem", "stage1", "stage2", "stage3", "head")}
            for g in ("stem", "stage1", "stage3"):
                sq = sum(h[wb_key("grad_norm", x)] ** 2 for x in layers if x.startswith(g + "."))
                assert h[f"grad_norm_stage/{g}"] == pytest.approx(math.sqrt(sq), rel=1e-6)
        final = read_summary(root / STUDY / "trials" / name)["final_test_error"]
        assert by_step[16]["test/error"] == final


def test_each_step_is_one_batched_log_call(tmp_path, monkeypatch):
    """The callback driven by `engine.train` in-process: one `run.log` per on_log/on_eval, per-layer values
    together in it, logged at the iteration step; `sync_command` names the offline run folder."""
    import wandb
    from wandb.sdk.wandb_run import Run

    calls: list[tuple[int | None, dict[str, Any]]] = []
    original = Run.log

    def spy(self, data, step=None, commit=None):
        calls.append((step, dict(data)))
        return original(self, data, step=step, commit=commit)

    monkeypatch.setattr(Run, "log", spy)
    run_dir = tmp_path / "direct"
    tracker = WandbTracker(project=PROJECT, mode="offline", group="direct-group", names=["direct-run"],
                           tags=[["a=1"]], extra_config=[{"trial": {"number": 7}}])
    result = train({**BASE, "name": "direct", "seed": 3}, run_dir, callbacks=[tracker])
    assert result.status == "complete"
    assert [s for s, _ in calls] == [4, 8, 8, 12, 16, 16]  # on_log at each log step, on_eval at each eval step
    rows = list(read_metrics(run_dir))
    layers = {m["name"] for m in rows if m["split"] == "grad_norm"}
    for step, data in calls:
        if "train/loss" in data:
            assert {wb_key("grad_norm", x) for x in layers} <= set(data)
            assert {wb_key("weight_norm", x) for x in layers} <= set(data)
        else:
            assert set(data) == {"iteration", "epoch", "test/loss", "test/error"}
        assert data["iteration"] == step
    assert tracker.runs == {} and tracker.skipped == {}
    r = read_finished_run(run_dir)
    assert r["run"]["group"] == "direct-group" and r["run"]["name"] == "direct-run" and r["run"]["tags"] == ["a=1"]
    assert r["config"]["trial"] == {"number": 7} and r["config"]["seed"] == 3
    assert [h["_step"] for h in r["history"]] == LOG_STEPS
    assert tracker.sync_command() == f"wandb sync {r['file'].parent}"
    assert wandb.run is None  # finished, nothing left open


# -- 3. summary --------------------------------------------------------------------------------------------------
def test_summary_holds_final_and_best_values(offline_sweep):
    root, _, _, runs = offline_sweep
    for name, r in runs.items():
        local = read_summary(root / STUDY / "trials" / name)
        s = r["summary"]
        assert s["status"] == local["status"] == "complete"
        for key in ("final_test_error", "final_train_error", "final_train_loss", "step",
                    "wall_time_s", "img_per_s"):
            assert s[key] == local[key], (name, key)
        assert s["n_parameters"] == local["params"] and "params" not in s
        assert s["step"] == 16
        logged = [h["test/error"] for h in r["history"] if "test/error" in h]
        assert s["test/error"] == {"last": local["final_test_error"], "min": min(logged)}
        for key in ("reason", "final_val_error", "best_val_error", "test_error_at_best_val", "diverged_at"):  # None locally: not in W&B
            assert local[key] is None and key not in s, (name, key)


# -- 4. W&B failing never fails the sweep -----------------------------------------------------------------------
def check_local_records_complete(root: Path, n: int) -> None:
    dirs = trial_dirs(root)
    assert len(dirs) == n
    for d in dirs:
        summary = read_summary(d)
        assert summary["status"] == "complete", d
        assert summary["step"] == 16 and summary["final_test_error"] is not None
        rows = list(read_metrics(d))
        assert sorted({m["step"] for m in rows}) == LOG_STEPS
        assert {m["split"] for m in rows} >= {"train", "test", "grad_norm", "grad_norm_block", "weight_norm"}
        assert read_config(d)["name"] == f"{STUDY}-{d.name}"
        assert not list(d.glob("wandb/offline-run-*/run-*.wandb"))


def test_failing_wandb_init_warns_and_trials_complete(tmp_path, monkeypatch):
    import wandb

    def broken(*args, **kwargs):
        raise RuntimeError("W&B is broken here")

    monkeypatch.setattr(wandb, "init", broken)
    root = tmp_path / "runs"
    with pytest.warns(UserWarning, match="W&B skipped") as caught:
        rc = sweep(write_grid(tmp_path / "grid.yaml", shortcuts=("identity",)), root)
    assert rc == 0
    skipped = [str(w.message) for w in caught if "W&B skipped" in str(w.message)]
    assert len(skipped) == 2  # one per trial
    assert all("init: RuntimeError: W&B is broken here" in m and "local run record is complete" in m
               for m in skipped)
    check_local_records_complete(root, 2)


@pytest.mark.slow
def test_failing_wandb_in_worker_subprocesses(tmp_path, monkeypatch, capfd):
    """Two spawned workers inherit WANDB_MODE=nonsense, which makes wandb.init raise (a settings validation error);
    the grid's explicit `mode: offline` passes our validation."""
    monkeypatch.setenv("WANDB_MODE", "nonsense")
    root = tmp_path / "runs"
    grid = write_grid(tmp_path / "grid.yaml", seeds=(0,))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["sweep", str(grid), "--root", str(root), "--workers", "2"])
    assert rc == 0, out.getvalue()
    assert "2/2 trials done, 0 failed" in out.getvalue()
    err = capfd.readouterr().err
    assert "W&B skipped for member 0 (init:" in err and "nonsense" in err, err
    check_local_records_complete(root, 2)


def test_failing_wandb_log_mid_run_finishes_the_run(tmp_path, monkeypatch):
    from wandb.sdk.wandb_run import Run

    def broken(self, data, step=None, commit=None):
        raise OSError("disk full")

    monkeypatch.setattr(Run, "log", broken)
    tracker = WandbTracker(project=PROJECT, mode="offline", group="g")
    with pytest.warns(UserWarning, match=r"W&B skipped for member 0 \(log: OSError: disk full\)"):
        result = train({**BASE, "name": "broken-log", "seed": 0}, tmp_path / "run", callbacks=[tracker])
    assert result.status == "complete"
    assert read_summary(tmp_path / "run")["status"] == "complete"
    assert tracker.runs == {} and "log: OSError" in tracker.skipped[0]
    assert read_finished_run(tmp_path / "run")["exit_code"] == 1  # the run was finished, as failed


# -- 5. off / disabled write nothing; --wandb offline overrides the grid -----------------------------------------
@pytest.mark.parametrize("grid_mode, flag, expect_runs", [
    ("offline", "off", False),
    ("disabled", None, False),
    ("disabled", "offline", True),
], ids=["grid-offline--wandb-off", "grid-disabled", "grid-disabled--wandb-offline"])
def test_wandb_mode_off_disabled_and_cli_override(tmp_path, grid_mode, flag, expect_runs):
    root = tmp_path / "runs"
    grid = write_grid(tmp_path / "grid.yaml", shortcuts=("identity",), seeds=(0,), mode=grid_mode)
    rc = sweep(grid, root, *(["--wandb", flag] if flag else []))
    assert rc == 0
    [run_dir] = trial_dirs(root)
    assert read_summary(run_dir)["status"] == "complete"
    if expect_runs:
        r = read_finished_run(run_dir)
        assert r["run"]["group"] == STUDY and r["run"]["name"] == f"{STUDY}-shortcut-identity-s0"
        assert wandb_files(root) == [r["file"]]
    else:
        assert not [p for p in root.rglob("wandb") if p.is_dir()]
        assert wandb_files(root) == []


def test_the_summary_run_has_a_column_per_axis_and_the_comparisons(offline_sweep):
    """The sweep's summary run: its results and cells tables carry one column per grid axis (not only the cell
    string) and whether a run learned; its comparisons table gives each main effect's difference, interval, test,
    n and verdict (sweeps.verdicts.comparisons)."""
    import json

    root, rc, trials, runs = offline_sweep
    summary = read_finished_run(root / STUDY / "summary")
    [row] = [row for row in summary["history"] if "comparisons/_type" in row]
    folder = summary["file"].parent / "files"
    results = json.loads((folder / row["results/path"]).read_text())
    assert "model.shortcut" in results["columns"] and "dead" in results["columns"]
    col = results["columns"].index("model.shortcut")
    assert sorted(r[col] for r in results["data"]) == ["identity", "identity", "none", "none"]
    cells = json.loads((folder / row["cells/path"]).read_text())
    assert "model.shortcut" in cells["columns"] and "did not learn" in cells["columns"]
    table = json.loads((folder / row["comparisons/path"]).read_text())
    got = [dict(zip(table["columns"], r)) for r in table["data"]]
    main = [g for g in got if g["kind"] == "main effect"]
    assert [g["comparison"] for g in main] == ["shortcut identity − none"]
    g = main[0]
    assert g["test"] == "paired t" and g["n_a"] == g["n_b"] == 2 and g["level"] == pytest.approx(0.95)
    assert g["ci_low"] <= g["difference"] <= g["ci_high"]
    assert g["verdict"] in ("decided", "undecided")


def test_the_summary_run_gets_the_report_figures_of_a_study_whose_journal_is_elsewhere(tmp_path):
    """`--storage some/file.journal`: the summary's report read the default journal under --root and failed ("report
    figures skipped: unknown study"); it reads the study's own storage."""
    root = tmp_path / "runs"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["sweep", str(write_grid(tmp_path / "grid.yaml", seeds=(0,))), "--root", str(root), "--workers",
                   "1", "--storage", str(tmp_path / "elsewhere.journal")])
    assert rc == 0 and "report figures skipped" not in out.getvalue(), out.getvalue()
    assert (root / STUDY / "report" / "summary.md").is_file()
    assert list((root / STUDY / "report").glob("curves.png"))


def test_a_launch_stopped_before_its_summary_gets_one_from_the_next_launch(tmp_path):
    """Stopped after its trials and before the W&B summary run (Ctrl-C at the closing table), a study never got its
    summary: a relaunch ran nothing, and only a launch that ran trials logged one. A launch logs it whenever the last
    finished summary is not of the study's trials as they are, and only then."""
    import shutil

    from resnet_core.tracking import SUMMARY_STAMP

    root = tmp_path / "runs"
    grid = write_grid(tmp_path / "grid.yaml", seeds=(0,))
    assert sweep(grid, root) == 0
    summary = root / STUDY / "summary"
    assert (summary / SUMMARY_STAMP).is_file()
    shutil.rmtree(summary)                                   # as if stopped before the summary was logged
    assert sweep(grid, root) == 0                            # nothing left to run
    assert (summary / SUMMARY_STAMP).is_file() and read_finished_run(summary)["run"]["name"] == f"{STUDY}-summary"
    runs = sorted(summary.glob("wandb/offline-run-*"))
    assert sweep(grid, root) == 0                            # current: not logged again
    assert sorted(summary.glob("wandb/offline-run-*")) == runs


# -- 6. the study summary run --------------------------------------------------------------------------------------
def test_log_study_summary_writes_a_table_run(tmp_path):
    import json

    from PIL import Image

    figure = tmp_path / "error_vs_depth.png"
    Image.new("RGB", (8, 6), (200, 30, 30)).save(figure)
    rows = [{"seed": 0, "cell": "model.shortcut=none", "final_test_error": 12.5},
            {"cell": "model.shortcut=identity", "seed": 0, "final_test_error": 10.25}]
    run_dir = tmp_path / "summary"
    folder = log_study_summary(study=STUDY, project=PROJECT, mode="offline", rows=rows, figures=[figure],
                               run_dir=run_dir)
    r = read_finished_run(run_dir)
    assert folder == str(r["file"].parent)
    assert r["run"] == {"group": STUDY, "job_type": "summary", "name": f"{STUDY}-summary", "tags": [],
                        "project": PROJECT}
    assert r["exit_code"] == 0
    [row] = r["history"]
    assert row["results/_type"] == "table-file"
    assert row["results/nrows"] == 2 and row["results/ncols"] == 3
    assert row["results/path"].startswith("media/table/results") and row["results/path"].endswith(".table.json")
    table = json.loads((Path(folder) / "files" / row["results/path"]).read_text())
    assert table["columns"] == ["cell", "seed", "final_test_error"]  # cell and seed first
    assert table["data"] == [["model.shortcut=none", 0, 12.5], ["model.shortcut=identity", 0, 10.25]]
    assert row["figures/error_vs_depth/_type"] == "image-file"
    assert (Path(folder) / "files" / row["figures/error_vs_depth/path"]).is_file()


def test_log_study_summary_never_raises(tmp_path, monkeypatch):
    import wandb

    assert log_study_summary(study=STUDY, project=PROJECT, mode="disabled", rows=[{"cell": "a"}],
                             run_dir=tmp_path / "off") is None
    assert not (tmp_path / "off").exists()

    def broken(*args, **kwargs):
        raise RuntimeError("no W&B")

    monkeypatch.setattr(wandb, "init", broken)
    with pytest.warns(UserWarning, match=r"W&B study summary skipped \(RuntimeError: no W&B\)"):
        assert log_study_summary(study=STUDY, project=PROJECT, mode="offline", rows=[{"cell": "a"}],
                                 run_dir=tmp_path / "broken") is None


# -- 7. the mode ---------------------------------------------------------------------------------------------------
def test_resolve_mode(tmp_path, monkeypatch):
    for var in ("WANDB_API_KEY", "WANDB_MODE", "NETRC"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    assert resolve_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert resolve_mode("auto") == "online"
    monkeypatch.delenv("WANDB_API_KEY")
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "p" * 40 + "\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert resolve_mode("auto") == "online"  # `wandb login` writes the key to ~/.netrc
    (tmp_path / ".netrc").unlink()
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode("auto") == "disabled"
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)   # logged in, but WANDB_MODE says offline in wandb's older word
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert resolve_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_MODE", "run")
    assert resolve_mode("auto") == "online"
    monkeypatch.delenv("WANDB_API_KEY")
    monkeypatch.delenv("WANDB_MODE")
    for mode in ("online", "offline", "disabled"):
        assert resolve_mode(mode) == mode
    with pytest.raises(ConfigError, match="nonsense"):
        resolve_mode("nonsense")
    with pytest.raises(ConfigError, match="bogus"):
        WandbTracker(project=PROJECT, mode="bogus")
    assert wandb_callback(project=PROJECT, mode="disabled", name="n", config={}) is None


# -- 5. one run per trial across a kill and a resume; no secret in any W&B file ---------------------------------
def check_one_complete_run_per_trial(root: Path, study: str) -> list[Path]:
    """Every trial folder holds exactly one live offline segment, under the id kept in wandb_run.json, whose
    history is the run record's, every logged step once; returns the superseded segments."""
    import json

    superseded = []
    for d in sorted((root / study / "trials").iterdir()):
        rid = json.loads((d / "wandb_run.json").read_text())["id"]
        segs = sorted(d.glob("wandb/offline-run-*"))
        assert len(segs) == 1 and segs[0].name.endswith(rid), (d, segs)
        r = read_finished_run(d)
        steps = [h["_step"] for h in r["history"]]
        assert steps == sorted(set(steps)), f"{d.name}: steps repeat or go back: {steps}"
        assert steps == sorted({m["step"] for m in read_metrics(d)}), d.name
        assert r["exit_code"] == 0 and r["summary"]["status"] == "complete"
        old = sorted(d.glob("wandb/superseded/offline-run-*"))
        assert all(o.name.endswith(rid) for o in old), "a resumed trial opened a second W&B run"
        superseded += old
    return superseded


def assert_no_secret(root: Path, secret: str) -> None:
    hits = [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert not hits, f"the secret is in {hits}"


def test_a_secret_in_a_config_value_name_or_tag_reaches_no_wandb_init(tmp_path, monkeypatch):
    """A secret environment variable's value inside a config value, the run name or a tag reached W&B's files (only
    the command line was masked); every string ``wandb.init`` is given is now masked, the rest as it was."""
    import wandb

    from resnet_core.tracking import init_run

    seen: dict = {}
    monkeypatch.setattr(wandb, "init", lambda **kw: seen.update(kw))
    monkeypatch.setenv("HF_TOKEN", "hfTOKENsecret77")
    monkeypatch.setenv("MY_DB_URL", "postgresql://u:dbPASSsecret99@db.invalid/x")
    init_run(project="p", entity=None, mode="offline", run_dir=tmp_path, name="smoke-hfTOKENsecret77", group="g",
             tags=["tok-hfTOKENsecret77", "plain"],
             config={"data": {"root": "/data/tok_hfTOKENsecret77", "n": 3},
                     "storage": "postgresql://u:dbPASSsecret99@db.invalid/x", "widths": (16, 32)})
    assert "hfTOKENsecret77" not in repr(seen) and "dbPASSsecret99" not in repr(seen)
    assert seen["name"] == "smoke-***" and seen["tags"] == ["tok-***", "plain"] and seen["group"] == "g"
    assert seen["config"] == {"data": {"root": "/data/tok_***", "n": 3}, "storage": "postgresql://u:***@db.invalid/x",
                              "widths": (16, 32)}


@pytest.mark.slow
def test_killed_and_resumed_trials_end_as_one_wandb_run_each(tmp_path, capsys, monkeypatch):
    """A sweep with W&B offline SIGKILLed mid-trial (after a checkpoint) and launched again: each trial ends with
    one complete offline run (its id kept across the resume, the killed segment moved out of the sync glob), the
    sync command names the trials and the summary run, and a secret in the environment reaches no file."""
    import os
    import signal
    import subprocess

    from optuna.trial import TrialState

    from sweeps import open_study
    from test_sweeps import TINY_BASE
    from test_sweeps import write_grid as sweeps_grid

    import wandb

    # As after any earlier in-process W&B test: this process runs a W&B service and names it in WANDB_SERVICE, which
    # the sweep below inherits. It must not attach to it (a SIGKILLed attached process left its run open here, and
    # the resumed trial's wandb.init was refused: "run ID … is in use").
    wandb.init(mode="offline", dir=str(tmp_path), project="warm", settings=wandb.Settings(silent=True)).finish()
    assert os.environ.get("WANDB_SERVICE")
    secret = "S3cr3tPassw0rdXYZ"
    monkeypatch.setenv("MY_DB_URL", f"postgresql://u:{secret}@db.invalid/x")
    monkeypatch.setenv("MY_API_TOKEN", secret)
    root = tmp_path / "runs"
    base = {**TINY_BASE, "schedule": {"name": "constant", "unit": "iter", "total": 400}, "log_every": 20,
            "eval_every": 40}
    grid = sweeps_grid(tmp_path / "g.yaml", "wbkill", base=base, seeds=[0])
    args = ["sweep", str(grid), "--root", str(root), "--workers", "1", "--wandb", "offline"]
    proc = subprocess.Popen([sys.executable, "-m", "resnet_core", *args, "--fuse=off"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 600   # start-up, torch, W&B's service, 40 steps: seconds idle, minutes loaded
    killed = False
    try:
        while time.monotonic() < deadline and proc.poll() is None and not killed:
            time.sleep(0.2)
            ckpts = list(root.glob("wbkill/trials/*/last.pt"))
            segs = list(root.glob("wbkill/trials/*/wandb/offline-run-*"))
            if ckpts and segs:
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert killed, f"no trial was caught with a checkpoint:\n{proc.stdout.read() if proc.stdout else ''}"
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "resume (interrupted" in out
    assert check_one_complete_run_per_trial(root, "wbkill"), "no trial was resumed"
    study = open_study(root / "wbkill")
    assert sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)) == 2
    line = [x for x in out.splitlines() if "wandb sync" in x][0]
    globs = line.split("wandb sync ", 1)[1].split()
    synced = sorted(p for g in globs for p in Path("/").glob(g.lstrip("/")))
    assert synced == sorted([*root.glob("wbkill/trials/*/wandb/offline-run-*"),
                             *root.glob("wbkill/summary/wandb/offline-run-*")])
    assert len(synced) == 3 and not any("superseded" in str(p) for p in synced)
    summary = read_finished_run(root / "wbkill" / "summary")
    assert summary["config"]["grid"] == {"model.shortcut": ["none", "identity"]}
    assert sorted(summary["run"]["tags"]) == ["model.shortcut=identity", "model.shortcut=none"]
    cells = [row for row in summary["history"] if "cells/_type" in row]
    assert cells and cells[0]["cells/nrows"] == 2
    assert_no_secret(root, secret)


@pytest.mark.postgres
def test_storage_password_reaches_no_wandb_file(tmp_path, capsys, pg_url):
    """`--storage postgresql://user:PASSWORD@…` on the command line of a sweep (trial runs and summary run): the
    password is in no file under the study folder; the command line W&B records shows it masked."""
    import uuid

    from test_sweeps import write_grid as sweeps_grid

    password = pg_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    name = f"pytest-wbpw-{uuid.uuid4().hex[:8]}"
    root = tmp_path / "runs"
    grid = sweeps_grid(tmp_path / "g.yaml", name, seeds=[0])
    args = [sys.executable, "-m", "resnet_core", "sweep", str(grid), "--root", str(root), "--storage", pg_url,
            "--workers", "2", "--wandb", "offline"]
    import subprocess

    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert password not in done.stdout + done.stderr
    files = sorted((root / name).rglob("*.wandb"))
    assert len(files) == 3  # two trials and the summary
    assert_no_secret(root, password)
    metas = [p for p in (root / name).rglob("wandb-metadata.json")]
    for meta in metas:
        assert "postgresql://resnet_ablate:***@" in meta.read_text() or "args" not in meta.read_text()


def test_resnet110_opens_few_panels():
    """The keys a ResNet-110 logs: hundreds of per-layer series, hidden; a few dozen visible panels."""
    import torch

    from resnet_core.config import ModelConfig
    from resnet_core.model import build_model
    from resnet_core.tracking import visible_keys, wandb_payload

    with torch.device("meta"):
        model = build_model(ModelConfig(depth=110))
    layers = [n for n, _ in model.probe_layers()]
    blocks = [n for n, _ in model.blocks()]
    metrics = {"epoch": 1.0, **{f"train/{k}": 1.0 for k in ("loss", "error", "lr", "throughput")}}
    for kind in ("grad_norm", "grad_norm_max", "weight_norm"):
        metrics.update({f"{kind}/{x}": 1.0 for x in layers})
    for kind in ("grad_norm_block", "grad_norm_block_max"):
        metrics.update({f"{kind}/{x}": 1.0 for x in blocks})
    metrics.update({"test/error": 1.0, "test/loss": 1.0, "val/error": 1.0, "val/loss": 1.0})
    payload = wandb_payload(100, metrics)
    assert len(payload) > 400
    shown = visible_keys(list(payload))
    assert len(shown) <= 25, shown
    assert {"train/error", "test/error", "epoch", "grad_norm_stage/stage2"} <= set(shown)
    assert payload["grad_norm_stage/stage1"] == pytest.approx(math.sqrt(sum(
        1.0 for x in layers if x.startswith("stage1."))))


# -- 8. printed commands work when pasted ---------------------------------------------------------------------------
def test_printed_commands_are_shell_quoted_for_a_root_with_spaces_and_non_ascii(tmp_path, monkeypatch):
    """`--root` with a space, a quote and non-ASCII characters: the printed `wandb sync …` and `optuna-dashboard …`
    lines, pasted into bash, give each program exactly the existing paths (with the globs expanded)."""
    import shlex
    import subprocess

    root = tmp_path / "my runs – Müller's"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["sweep", str(write_grid(tmp_path / "grid.yaml", shortcuts=("identity",), seeds=(0,))),
                     "--root", str(root), "--workers", "1"]) == 0
    lines = out.getvalue().splitlines()
    sync = [x.split("upload them with: ", 1)[1] for x in lines if "upload them with: wandb sync" in x]
    dashboard = [x.split("dashboard: ", 1)[1] for x in lines if x.startswith("dashboard: ")]
    assert len(sync) == 1 and len(dashboard) == 1
    # each program replaced by a shell function that prints its arguments, one per line
    stub = "wandb() { printf '%s\\n' \"$@\"; }; optuna-dashboard() { printf '%s\\n' \"$@\"; }; "
    got = subprocess.run(["bash", "-c", stub + sync[0]], capture_output=True, text=True, check=True)
    args = got.stdout.splitlines()
    assert args[0] == "sync" and sorted(map(Path, args[1:])) == sorted(
        [*root.glob(f"{STUDY}/trials/*/wandb/offline-run-*"), *root.glob(f"{STUDY}/summary/wandb/offline-run-*")])
    assert len(args) == 3
    got = subprocess.run(["bash", "-c", stub + dashboard[0]], capture_output=True, text=True, check=True)
    assert got.stdout.splitlines() == [str(root / STUDY / "optuna.journal")]
    assert shlex.split(dashboard[0])[1] == str(root / STUDY / "optuna.journal")
    # a single run's sync command (train --wandb) too
    tracker = WandbTracker(project=PROJECT, mode="offline")
    tracker.offline_dirs = [root / "a b", root / "c"]
    assert shlex.split(tracker.sync_command()) == ["wandb", "sync", str(root / "a b"), str(root / "c")]


def test_a_run_replayed_in_full_precision_has_the_replay_in_wandb(tmp_path, monkeypatch):
    """bf16 (chosen by precision auto) goes non-finite at step 13, is detected at the log of step 14 and replayed in
    fp32 from step 8: W&B's history is the run record's at every step, the replayed steps (10, 12) with the fp32
    values, not the bf16 ones W&B had before the replay (a W&B run's steps only grow: step 10 logged again was
    dropped)."""
    from test_fast_guard import _poison_under_autocast

    _poison_under_autocast(monkeypatch, from_step=12)
    run_dir = tmp_path / "replayed"
    tracker = WandbTracker(project=PROJECT, mode="offline", names=["replayed"])
    with pytest.warns(UserWarning, match="replayed from step 8 in fp32"):
        result = train({**BASE, "name": "replayed", "log_every": 2, "precision": "auto", "fast": "eager"}, run_dir,
                       callbacks=[tracker])
    assert result.status == "complete" and result.summary["precision_changed"]["replayed_from_step"] == 8
    assert tracker.skipped == {}
    finished = read_finished_run(run_dir)   # one offline run: the segment before the replay is superseded
    assert tracker.sync_command() == f"wandb sync {finished['file'].parent}"
    history = finished["history"]
    by_step = {h["_step"]: h for h in history}
    rows = list(read_metrics(run_dir))
    assert [h["_step"] for h in history] == sorted({m["step"] for m in rows})  # each step once, in order
    for m in rows:
        assert same(by_step[m["step"]][wb_key(m["split"], m["name"])], m["value"]), m


def test_an_online_run_replayed_keeps_its_run_and_says_which_steps_hold_the_old_values():
    """Online, a W&B run cannot go back: a replay from step 8 keeps the run open (no second run in the project)
    and warns that the steps after 8 keep their values from before the replay; the run record holds the replay.
    The run is a stand-in: no W&B server is reachable here."""
    class Run:
        id, finished = "abc123", False

        def finish(self, **_):
            self.finished = True

    tracker = WandbTracker(project=PROJECT, mode="online")
    tracker.runs[0] = run = Run()
    with pytest.warns(UserWarning, match=r"W&B run abc123: steps 9 on keep the values logged before the replay "
                                         r"from step 8 .* the local run record holds the replay"):
        tracker.on_rewind(0, 8)
    assert tracker.runs == {0: run} and not run.finished and tracker.skipped == {}
    tracker.on_rewind(1, 8)    # a member without a W&B run: nothing to say


@pytest.mark.parametrize("before", ["no W&B", "W&B folder removed"])
def test_wandb_first_turned_on_at_a_resume_gets_the_steps_before_it(tmp_path, before):
    """A run interrupted at step 8 without W&B, or with its offline W&B folder removed since, and resumed with W&B
    offline: its W&B run holds every step of the record, those before the resume replayed from it, not only the
    steps trained after the resume."""
    import shutil

    from train_callbacks import InterruptAt

    run_dir, cfg = tmp_path / "late", {**BASE, "name": "late"}
    first = [] if before == "no W&B" else [WandbTracker(project=PROJECT, mode="offline", names=["late"])]
    with pytest.raises(KeyboardInterrupt):
        train(cfg, run_dir, callbacks=[*first, InterruptAt(8)])
    shutil.rmtree(run_dir / "wandb", ignore_errors=True)
    tracker = WandbTracker(project=PROJECT, mode="offline", names=["late"])
    assert train(cfg, run_dir, resume=True, callbacks=[tracker]).status == "complete"
    history = read_finished_run(run_dir)["history"]
    assert [h["_step"] for h in history] == LOG_STEPS
    by_step = {h["_step"]: h for h in history}
    for m in read_metrics(run_dir):
        assert same(by_step[m["step"]][wb_key(m["split"], m["name"])], m["value"]), m


@pytest.mark.parametrize("name", ["SSH_PRIVATE_KEY", "STRIPE_KEY", "OPENAI_APIKEY", "MY_DB_PW", "GITHUB_TOKEN"])
def test_every_secret_looking_environment_variable_is_masked(monkeypatch, name):
    """A key, a private key or a password named ``…_KEY``, ``…PRIVATE…``, ``…_PW`` was not secret-looking (only
    ``API_KEY``, ``PASS``, ``SECRET``, ``TOKEN``, ``CREDENTIAL`` and ``…_URL``): its value reached W&B as written.
    The working directory (``PWD``) is no secret and stays as it is."""
    from resnet_core.tracking import scrub

    monkeypatch.setenv(name, "kEyVaLuE4242")
    monkeypatch.setenv("PWD", "/home/me/project")
    assert scrub("--set data.root=/d/kEyVaLuE4242 --out /home/me/project/r") == \
        "--set data.root=/d/*** --out /home/me/project/r"
