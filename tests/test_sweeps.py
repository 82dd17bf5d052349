"""The sweeps package: grid validation, exactly-once trials with several worker processes, resume after a killed
launcher, failures recorded with their reason, dry runs, and study listing. Every trial trains a tiny network with
the real engine on the offline synthetic dataset (8×8 images, a few iterations: well under a second each)."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
import uuid
import warnings
from collections import Counter
from pathlib import Path

import pytest
import yaml

optuna = pytest.importorskip("optuna")
from optuna.trial import TrialState  # noqa: E402

from killed_launcher import running_with_checkpoint, sigkill_launcher_when  # noqa: E402
from run_configs import tiny_run  # noqa: E402
from resnet_core.cli import main  # noqa: E402
from resnet_core.errors import ConfigError  # noqa: E402
from resnet_core.provenance import provenance  # noqa: E402
from resnet_core.record import read_summary  # noqa: E402
from sweeps.spec.cells import cell_id, make_slugs  # noqa: E402
from sweeps.spec.grid import load_grid  # noqa: E402
from sweeps.queue.storage import resolve_storage  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ["quickstart", "degradation", "degradation_fast", "shortcuts", "activation", "pooling", "blocks"]

TINY_BASE = tiny_run()


def write_grid(path: Path, study: str, **kw) -> Path:
    grid = {"study": study, "base": kw.pop("base", TINY_BASE), "grid": kw.pop("grid", {"model.shortcut": ["none",
                                                                                                          "identity"]}),
            "seeds": kw.pop("seeds", [0, 1]), "wandb": kw.pop("wandb", {"mode": "disabled"})}
    grid.update(kw)
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def journal_study(root: Path, study: str):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        storage = JournalStorage(JournalFileBackend(str(root / study / "optuna.journal")))
        return optuna.load_study(study_name=study, storage=storage)


def take_one(study, storage, ref, spec, study_dir: Path) -> int | None:
    """Take one waiting trial the way a worker does (``packing.claim_group``, one member): its id, or None."""
    from sweeps.queue.packing import Packing, claim_group

    tids = claim_group(study, storage, ref, spec, study_dir, Packing(1, "cpu"))
    assert len(tids) <= 1
    return tids[0] if tids else None


def file_state(path: Path) -> tuple:
    """A file's inode, modification time and bytes: equal before and after ⇔ not rewritten, even within one tick of
    the file system's clock (an mtime alone can miss a rewrite there; an atomic rewrite also changes the inode)."""
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, path.read_bytes()


def assert_exactly_once(study, expected_units: int) -> list:
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    units = Counter((t.user_attrs["cell"], t.user_attrs["seed"]) for t in complete)
    assert len(units) == expected_units, units
    assert all(n == 1 for n in units.values()), f"a (cell, seed) completed twice: {units}"
    assert not [t for t in trials if "unit" not in t.user_attrs], "a trial that no (cell, seed) asked for"
    return complete


# -- cells, storage URLs ----------------------------------------------------------------------------------------
def test_cell_ids_and_slugs_are_stable_and_unique():
    params = [{"model.depth": 20, "model.shortcut": "none"}, {"model.depth": 110, "schedule.warmup_lr": 0.01},
              {"optim.lr": 1e-4, "model.stages": [1, 1, 1]}, {}]
    assert cell_id(params[0]) == "model.depth=20,model.shortcut=none"
    assert cell_id({}) == ""
    slugs = make_slugs(params)
    assert slugs[0] == "depth-20_shortcut-none"
    assert slugs[3] == "base"
    assert len(set(slugs)) == len(slugs)
    assert all(set(s) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.+-_") for s in slugs)
    clash = make_slugs([{"model.width": 1, "data.width": 2}])  # same last part → the whole key
    assert clash == ["model-width-1_data-width-2"]


def test_storage_urls(tmp_path):
    ref = resolve_storage(None, tmp_path, "s")
    assert ref.kind == "journal" and ref.url == str(tmp_path / "s" / "optuna.journal")
    pg = resolve_storage("postgresql://u:secret@127.0.0.1:5432/db", tmp_path, "s")
    assert pg.kind == "postgresql" and "secret" not in pg.display and pg.url.endswith("@127.0.0.1:5432/db")
    assert resolve_storage("sqlite:///x.db", tmp_path, "s").kind == "sqlite"
    with pytest.raises(ConfigError):
        resolve_storage("redis://localhost", tmp_path, "s")


# -- grid validation --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_grids_validate(name):
    spec = load_grid(REPO / "ablations" / f"{name}.yaml")
    assert spec.cells and spec.seeds
    if name == "quickstart":
        assert spec.base["data"]["name"] == "synthetic"
        assert {c.params["model.shortcut"] for c in spec.cells} == {"none", "identity"}
        assert len(spec.units()) == 8
    if name == "degradation":
        assert spec.base["data"]["val_size"] == 5000 and spec.seeds == [0, 1, 2]
        assert spec.base["schedule"]["milestones"] == [32000, 48000] and spec.base["schedule"]["total"] == 64000
        r110 = [c for c in spec.cells if c.params.get("model.depth") == 110]
        assert len(r110) == 1 and r110[0].params["schedule.warmup_lr"] == 0.01
        assert len(spec.cells) == 9


BAD_GRIDS = {
    "unknown top-level key": ("study: x\nbase: {}\ngrid: {model.depth: [20]}\nsedes: [0]\n", "sedes"),
    "bad value": ("study: x\nbase: {}\ngrid: {model.depth: [20, 21]}\n", "21"),
    "empty axis": ("study: x\nbase: {}\ngrid: {model.depth: []}\n", "empty"),
    "axis naming no key": ("study: x\nbase: {}\ngrid: {model.deph: [20]}\n", "model.deph"),
    "unparsable yaml": ("study: x\nbase: {model: [\ngrid: {\n", "YAML"),
    "bad base key": ("study: x\nbase: {optim: {name: sgd, lrr: 0.1}}\ngrid: {model.depth: [20]}\n", "lrr"),
    "bad search": ("study: x\nbase: {}\nsearch: {optim.lr: {log_uniform: [0, 1]}}\nn_trials: 2\n", "log_uniform"),
    "n_trials without search": ("study: x\nbase: {}\ngrid: {model.depth: [20]}\nn_trials: 3\n", "n_trials"),
    "wandb mode off": ("study: x\nbase: {}\nwandb: {mode: off}\n",
                       "online, offline, disabled (the command line's --wandb off is disabled in a grid"),
}


@pytest.mark.parametrize("case", list(BAD_GRIDS))
def test_bad_grid_exits_2_and_creates_nothing(case, tmp_path, capsys):
    text, needle = BAD_GRIDS[case]
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    root = tmp_path / "runs"
    assert main(["sweep", str(path), "--root", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert needle in err, err
    assert not root.exists()


def test_missing_grid_file_exits_2(tmp_path, capsys):
    root = tmp_path / "runs"
    assert main(["sweep", str(tmp_path / "nope.yaml"), "--root", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "nope.yaml" in err and "\n" not in err
    assert not root.exists()


def test_bad_set_override_exits_2(tmp_path, capsys):
    grid = write_grid(tmp_path / "g.yaml", "setbad")
    root = tmp_path / "runs"
    assert main(["sweep", str(grid), "--root", str(root), "--set", "optim.name=sgdd"]) == 2
    assert "optim.name" in capsys.readouterr().err
    assert not root.exists()


# -- a sweep: results, failures, resume, retry, dry runs, listing -----------------------------------------------
@pytest.mark.slow
def test_sweep_records_diverged_resumes_and_lists(tmp_path, capsys):
    root = tmp_path / "runs"
    grid = write_grid(tmp_path / "g.yaml", "mini",
                      extra_cells=[{"model.shortcut": "identity", "optim.lr": 1.0e20}])

    assert main(["sweep", str(grid), "--root", str(root), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "model.shortcut=identity,optim.lr=1e+20" in out and "6 to run" in out and "estimate" in out
    assert not root.exists(), "a dry run created something"

    assert main(["sweep", str(grid), "--root", str(root), "--workers", "1"]) == 1  # 2 trials diverged
    out = capsys.readouterr().out
    assert "created the study; enqueued 6 trials" in out
    assert "study folder:" in out and "mean ± std" in out

    study = journal_study(root, "mini")
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 6
    complete = assert_exactly_once(study, 4)
    bad = [t for t in trials if t.state == TrialState.FAIL]
    assert len(bad) == 2
    for t in bad:
        assert t.user_attrs["status"] == "diverged" and t.user_attrs["reason"].startswith("diverged")
        assert t.user_attrs["cell_params"] == {"model.shortcut": "identity", "optim.lr": 1e20}
    for t in complete:  # the trial contract that `reports` reads
        a = t.user_attrs
        assert a["status"] == "complete" and a["reason"] is None
        assert a["cell"] in ("model.shortcut=none", "model.shortcut=identity")
        assert a["cell_params"] == {"model.shortcut": a["cell"].split("=")[1]}
        assert a["run_dir"] == f"trials/shortcut-{a['cell_params']['model.shortcut']}-s{a['seed']}"
        summary = json.loads((root / "mini" / a["run_dir"] / "summary.json").read_text())
        assert summary["status"] == "complete" and summary["seed"] == a["seed"]
        assert summary["name"] == f"mini-shortcut-{a['cell_params']['model.shortcut']}-s{a['seed']}"
        assert t.value == pytest.approx(summary["final_test_error"]) == pytest.approx(a["final_test_error"])
        for key in ("n_parameters", "best_val_error", "final_train_error", "wall_time_s"):
            assert key in a
        assert "params" not in a, "the parameter count is n_parameters; params are Optuna's"
        assert a["n_parameters"] == summary["params"] > 0
    attrs = study.user_attrs
    assert attrs["grid_axes"] == ["model.shortcut", "optim.lr"] and attrs["seeds"] == [0, 1]
    assert attrs["objective"] == {"metric": "test_error", "direction": "minimize"}
    assert attrs["base"]["model"]["depth"] == 8 and attrs["grid_file"] == str(grid)
    assert attrs["provenance"] == [provenance()]  # the code that ran the study
    for t in complete:  # and each run's record names the code that wrote it (git may time out in a busy worker)
        code = read_summary(root / "mini" / t.user_attrs["run_dir"])["provenance"]
        assert {k: code[k] for k in ("package", "version", "torch", "optuna", "wandb")} == \
            {k: provenance()[k] for k in ("package", "version", "torch", "optuna", "wandb")}
        assert code["git_commit"] in (None, provenance()["git_commit"])

    # The same command again: nothing runs, and it says what it skips.
    mtimes = {t.number: file_state(root / "mini" / t.user_attrs["run_dir"] / "summary.json") for t in complete}
    assert main(["sweep", str(grid), "--root", str(root)]) == 1  # still 2 diverged
    out = capsys.readouterr().out
    assert "resuming: 4 done" in out and "skip (done)" in out and "model.shortcut=none seed 0" in out
    assert "--retry-failed" in out
    assert len(study.get_trials(deepcopy=False)) == 6
    assert study.user_attrs["provenance"] == [provenance()]  # the same code again adds no entry
    assert main(["sweep", str(grid), "--root", str(root), "--dry-run"]) == 0
    assert "4 done" in capsys.readouterr().out and len(study.get_trials(deepcopy=False)) == 6

    # --retry-failed runs only the diverged cell again, in a new folder; it diverges again.
    assert main(["sweep", str(grid), "--root", str(root), "--retry-failed"]) == 1
    capsys.readouterr()
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 8
    retried = [t for t in trials if t.user_attrs.get("attempt") == 1]
    assert len(retried) == 2 and all(t.user_attrs["run_dir"].endswith("-r1") for t in retried)
    assert all(t.state == TrialState.FAIL and t.user_attrs["status"] == "diverged" for t in retried)
    for t in complete:  # completed trials were never rerun
        assert file_state(root / "mini" / t.user_attrs["run_dir"] / "summary.json") == mtimes[t.number]

    assert main(["studies", "--root", str(root)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("mini: 4/6 complete, 0 running, 2 failed, 0 waiting"), line

    # A changed base would mix incomparable trials into the study: refused.
    assert main(["sweep", str(grid), "--root", str(root), "--set", "optim.lr=0.01"]) == 2
    assert "different base" in capsys.readouterr().err


@pytest.mark.slow
def test_four_workers_run_each_cell_and_seed_exactly_once(tmp_path, capsys):
    root = tmp_path / "runs"
    grid = write_grid(tmp_path / "g.yaml", "four", grid={"model.shortcut": ["none", "identity", "conv1x1"]},
                      seeds=[0, 1, 2])
    assert main(["sweep", str(grid), "--root", str(root), "--workers", "4"]) == 0
    assert "with 4 workers" in capsys.readouterr().out
    study = journal_study(root, "four")
    complete = assert_exactly_once(study, 9)
    assert len(study.get_trials(deepcopy=False)) == 9
    pids = Counter(t.user_attrs["worker"]["pid"] for t in complete)
    print("trials per worker process:", dict(pids))  # how they shared depends on start-up skew under load
    assert os.getpid() not in pids, "the trials ran in the launcher, not in worker processes"
    assert {t.user_attrs["run_dir"] for t in complete} == {
        f"trials/shortcut-{s}-s{seed}" for s in ("none", "identity", "conv1x1") for seed in (0, 1, 2)}


def test_search_in_cells_uses_params_and_stays_per_cell(tmp_path, capsys):
    root = tmp_path / "runs"
    grid = write_grid(tmp_path / "g.yaml", "search", seeds=[0, 1],
                      search={"optim.lr": {"log_uniform": [0.001, 0.1]}, "optim.momentum": {"choice": [0.0, 0.9]}},
                      n_trials=3)
    assert main(["sweep", str(grid), "--root", str(root), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "6 trials (2 cells × 3 search trials)" in out and "best test_error" in out
    study = journal_study(root, "search")
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 6
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    for t in trials:
        assert set(t.params) == {"model.shortcut", "optim.lr", "optim.momentum"} and 0.001 <= t.params["optim.lr"] <= 0.1
        assert t.params["model.shortcut"] == t.user_attrs["cell_params"]["model.shortcut"]
        assert t.user_attrs["seed"] == [0, 1][t.user_attrs["slot"] % 2]
        cfg = yaml.safe_load((root / "search" / t.user_attrs["run_dir"] / "config.yaml").read_text())
        assert cfg["optim"]["lr"] == pytest.approx(t.params["optim.lr"])
    assert Counter(t.user_attrs["unit"] for t in trials).most_common(1)[0][1] == 1


def test_search_sampler_and_pruner_see_only_their_own_cell():
    """Median pruning compares a trial with the trials of its own cell only (one study holds every cell)."""
    from types import SimpleNamespace

    from optuna.distributions import FloatDistribution
    from sweeps.queue.search import CellPruner, _view

    study = optuna.create_study(pruner=CellPruner(optuna.pruners.MedianPruner(n_startup_trials=1,
                                                                              n_warmup_steps=0)))
    for cell, v in [("a", 1.0), ("a", 2.0), ("a", 3.0), ("b", 100.0), ("b", 200.0), ("b", 300.0)]:
        study.add_trial(optuna.trial.create_trial(value=v, params={"x": v}, intermediate_values={1: v},
                                                  distributions={"x": FloatDistribution(0, 500)},
                                                  user_attrs={"cell": cell}))
    view = _view(study, SimpleNamespace(user_attrs={"cell": "a"}))  # as the sampler and pruner see the study
    assert [t.value for t in view.get_trials()] == [1.0, 2.0, 3.0]
    assert [t.value for t in view._get_trials(deepcopy=False, states=(TrialState.COMPLETE,), use_cache=True)] == \
        [1.0, 2.0, 3.0]
    b = study.ask()
    b.set_user_attr("cell", "b")
    b.report(150.0, 1)  # above the all-cells median (51.5), below cell b's (200)
    assert not b.should_prune()
    a = study.ask()
    a.set_user_attr("cell", "a")
    a.report(5.0, 1)  # far below the all-cells median, above cell a's (2)
    assert a.should_prune()


# -- killed workers ---------------------------------------------------------------------------------------------
def load_study(root: Path, study: str, storage: str | None = None):
    if storage is None:
        return journal_study(root, study)
    from sweeps.queue.storage import open_storage

    return optuna.load_study(study_name=study, storage=open_storage(resolve_storage(storage, root, study)))


def new_study(tmp_path: Path, name: str, url: str | None = None, **grid):
    """Write a tiny grid, create its study (on ``url``, else the journal under tmp_path/runs) and enqueue its units:
    (spec, ref, storage, study, study_dir)."""
    from sweeps.queue.storage import open_storage, study_lock
    from sweeps.queue.study import create_or_load, reconcile

    spec = load_grid(write_grid(tmp_path / f"{name}.yaml", name, **grid))
    ref = resolve_storage(url, tmp_path / "runs", name)
    storage = open_storage(ref)
    study_dir = tmp_path / "runs" / name
    with study_lock(ref, name, storage):
        study, created = create_or_load(storage, spec, study_dir)
        reconcile(study, storage, spec, study_dir, ref)
    assert created
    return spec, ref, storage, study, study_dir


def exited_process() -> dict:
    """The ``pid`` and ``pid_start`` (as ``liveness.worker_record`` writes them) of a process that has exited: a dead
    worker. With its start time, not None: pids wrap (pid_max is 32768 on many machines), and a busy machine can
    give the pid to a new process before the test looks, which then counted as the worker, alive."""
    probe = "import os; print(os.getpid(), open('/proc/self/stat').read().rsplit(')', 1)[1].split()[19])"
    pid, start = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                                timeout=120).stdout.split()
    return {"pid": int(pid), "pid_start": start}


def kill_mid_trial_and_rerun(tmp_path: Path, capsys, study: str, storage: str | None = None,
                             extra: tuple[str, ...] | list[str] = ()) -> None:
    """Run a sweep as a subprocess with 2 workers, SIGKILL it once a trial has finished and another is RUNNING
    with a checkpoint, then rerun the same command: everything completes exactly once, nothing finished is lost or
    rerun, and the killed trials resume from their run folders."""
    root = tmp_path / "runs"
    total = 400   # long enough that a second trial is caught running with a checkpoint, even on a loaded machine
    base = {**TINY_BASE, "schedule": {"name": "constant", "unit": "iter", "total": total}, "log_every": 25,
            "eval_every": 50}
    grid = write_grid(tmp_path / "g.yaml", study, base=base)
    args = ["sweep", str(grid), "--root", str(root), "--workers", "2", *(["--storage", storage] if storage else []),
            *extra]
    study_dir = root / study

    def open_study():  # the journal only once the launcher has written it: opening it here would create it
        return load_study(root, study, storage) if storage is not None or (study_dir / "optuna.journal").exists() \
            else None

    def far_enough(s) -> bool:  # a trial has finished, and another one, still running, has written a checkpoint
        return any(t.state == TrialState.COMPLETE for t in s.get_trials(deepcopy=False)) and \
            bool(running_with_checkpoint(s, study_dir))

    # every trial RUNNING at the kill: the one caught with a checkpoint, and any a worker had just claimed and not
    # yet recorded itself on (a loaded machine kills some launches there); each is resumed by exactly one copy
    victims = sigkill_launcher_when(args, tmp_path / "launcher.log", open_study, far_enough)
    assert any("worker" in t.user_attrs for t in victims)

    before = load_study(root, study, storage).get_trials(deepcopy=False)
    finished = {t.number: file_state(root / study / t.user_attrs["run_dir"] / "summary.json")
                for t in before if t.state == TrialState.COMPLETE}
    assert finished

    assert main(args) == 0
    out = capsys.readouterr().out
    assert "resume (interrupted" in out and "skip (done)" in out
    the_study = load_study(root, study, storage)
    assert_exactly_once(the_study, 4)
    trials = the_study.get_trials(deepcopy=False)
    for number, mtime in finished.items():  # nothing finished was lost or rerun
        t = trials[number]
        assert t.state == TrialState.COMPLETE
        assert file_state(root / study / t.user_attrs["run_dir"] / "summary.json") == mtime
    for v in victims:
        t = trials[v.number]
        assert t.state == TrialState.FAIL and t.user_attrs["status"] == "interrupted"
        copies = [c for c in trials if c.user_attrs.get("replaces") == v.number]
        assert len(copies) == 1 and copies[0].state == TrialState.COMPLETE
        assert copies[0].user_attrs["resume"] is True and copies[0].user_attrs["run_dir"] == v.user_attrs["run_dir"]
        summary = json.loads((root / study / v.user_attrs["run_dir"] / "summary.json").read_text())
        assert summary["status"] == "complete" and summary["step"] == total
    assert len(trials) == 4 + len(victims)


@pytest.mark.slow
def test_sigkill_mid_trial_then_rerun_completes_without_duplicates(tmp_path, capsys):
    kill_mid_trial_and_rerun(tmp_path, capsys, "killme")


@pytest.mark.parametrize("record", ["written", "never written"])
def test_a_worker_killed_right_after_its_claim_leaves_a_trial_the_next_launch_resumes(tmp_path, monkeypatch, record):
    """The claimer writes its worker record in the storage call right after its compare-and-set (never before: it
    could overwrite the record of a worker that took the trial first). A worker SIGKILLed between the two left a
    RUNNING trial without a record, which a relaunch counted as alive for GRACE_PERIOD: "1 running elsewhere",
    exit 3 (CI's PostgreSQL SIGKILL test). A launch reads the RUNNING trials under the claim lock, where no claim is
    half done, and finds it dead at once."""
    from sweeps.queue.liveness import worker_record
    from sweeps.queue.optuna_adapter import trial_id
    from sweeps.queue.packing import Packing, claim_group
    from sweeps.queue.storage import study_lock
    from sweeps.queue.study import reconcile

    spec, ref, storage, study, study_dir = new_study(tmp_path, "claimed", seeds=[0])
    killed = {**worker_record(0, "cpu"), **exited_process()}
    calls: list[str] = []
    real_set_attr, real_set_state = storage.set_trial_user_attr, storage.set_trial_state_values
    monkeypatch.setattr(storage, "set_trial_user_attr", lambda *a, **k: (calls.append("record"),
                                                                         real_set_attr(*a, **k))[1])
    monkeypatch.setattr(storage, "set_trial_state_values", lambda *a, **k: (calls.append("claim"),
                                                                            real_set_state(*a, **k))[1])
    [tid] = claim_group(study, storage, ref, spec, study_dir, Packing(1, "cpu"),
                        worker=killed if record == "written" else None)
    assert calls == (["claim", "record"] if record == "written" else ["claim"])
    monkeypatch.setattr(storage, "set_trial_user_attr", real_set_attr)
    monkeypatch.setattr(storage, "set_trial_state_values", real_set_state)
    with study_lock(ref, "claimed", storage):
        plan = reconcile(study, storage, spec, study_dir, ref)
    assert [trial_id(t) for t in plan.dead] == [tid] and not plan.running and len(plan.interrupted) == 1


def test_a_claim_still_writing_its_worker_record_is_not_judged_dead_however_long_it_takes(tmp_path, monkeypatch):
    """A live claimer has taken a trial and not yet written its worker record (a slow storage call on a loaded
    machine) when another launch reconciles. Judged by a claim window, it was dead once the window passed: failed,
    and a resuming copy enqueued beside the live run. The launch reads under the claim lock, so it sees the claim
    whole: alive."""
    import threading

    from sweeps.queue import liveness
    from sweeps.queue.liveness import worker_record
    from sweeps.queue.packing import Packing, claim_group
    from sweeps.queue.storage import open_storage, study_lock
    from sweeps.queue.study import reconcile

    monkeypatch.setattr(liveness, "CLAIM_WINDOW_S", 0.0)   # any claim is "old": only the lock can keep it alive
    spec, ref, storage, study, study_dir = new_study(tmp_path, "slowclaim", seeds=[0], grid={"model.depth": [8]})
    plans = []

    def another_launch() -> None:
        other = open_storage(ref)
        with study_lock(ref, "slowclaim", other):
            plans.append(reconcile(optuna.load_study(study_name="slowclaim", storage=other), other, spec, study_dir,
                                   ref))

    launch = threading.Thread(target=another_launch, daemon=True)
    real_set_attr = storage.set_trial_user_attr

    def slow_record(tid, key, value):   # the other launch reconciles between the claim and its record
        if key == "worker" and not launch.is_alive() and not plans:
            launch.start()
            launch.join(timeout=5.0)
        real_set_attr(tid, key, value)

    monkeypatch.setattr(storage, "set_trial_user_attr", slow_record)
    [tid] = claim_group(study, storage, ref, spec, study_dir, Packing(1, "cpu"), worker=worker_record(0, "cpu"))
    launch.join(timeout=300)
    assert plans, "the other launch did not finish"
    assert not plans[0].dead and len(plans[0].running) == 1 and not plans[0].interrupted
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.RUNNING], "the live claim was failed or copied"


def test_running_trial_of_a_dead_process_is_failed_and_resumed(tmp_path):
    """reconcile(): a RUNNING trial whose worker pid is gone → FAIL (interrupted) + one resuming copy; a RUNNING
    trial whose worker is alive (this process) is left alone."""
    from sweeps.queue.liveness import worker_record
    from sweeps.queue.optuna_adapter import trial_id
    from sweeps.queue.storage import study_lock
    from sweeps.queue.study import reconcile

    spec, ref, storage, study, study_dir = new_study(tmp_path, "dead", seeds=[0])

    a, b = take_one(study, storage, ref, spec, study_dir), take_one(study, storage, ref, spec, study_dir)
    assert take_one(study, storage, ref, spec, study_dir) is None  # only enqueued trials are ever taken; none is created
    storage.set_trial_user_attr(a, "worker", {**worker_record(0, "cpu"), **exited_process()})
    storage.set_trial_user_attr(b, "worker", worker_record(1, "cpu"))
    with study_lock(ref, "dead", storage):
        plan = reconcile(study, storage, spec, study_dir, ref)
    assert [trial_id(t) for t in plan.dead] == [a] and len(plan.interrupted) == 1 and len(plan.running) == 1
    trials = {trial_id(t): t for t in study.get_trials(deepcopy=False)}
    assert trials[a].state == TrialState.FAIL and trials[a].user_attrs["status"] == "interrupted"
    assert trials[b].state == TrialState.RUNNING
    copies = [t for t in trials.values() if t.user_attrs.get("replaces") == trials[a].number]
    assert len(copies) == 1 and copies[0].state == TrialState.WAITING and copies[0].user_attrs["resume"] is True
    with study_lock(ref, "dead", storage):  # a second reconcile changes nothing
        plan = reconcile(study, storage, spec, study_dir, ref)
    assert plan.enqueued == 0 and len(study.get_trials(deepcopy=False)) == 3


def test_dry_run_counts_a_running_trial_of_a_dead_worker_as_to_run_and_writes_nothing(tmp_path, capsys):
    """A launcher killed mid-trial leaves its trials RUNNING; the next launch fails and resumes them, so its dry run
    counts them to run (it said '1 running, 1 to run' where the launch runs 2; `studies` called them stale)."""
    from sweeps.queue.liveness import worker_record
    from sweeps.spec.study_format import journal_path

    spec, ref, storage, study, study_dir = new_study(tmp_path, "orphan", seeds=[0])
    a, b = take_one(study, storage, ref, spec, study_dir), take_one(study, storage, ref, spec, study_dir)
    storage.set_trial_user_attr(a, "worker", {**worker_record(0, "cpu"), **exited_process()})
    storage.set_trial_user_attr(b, "worker", worker_record(1, "cpu"))   # this process: alive
    before = journal_path(tmp_path / "runs", "orphan").read_bytes()
    grid = tmp_path / "orphan.yaml"
    assert main(["sweep", str(grid), "--root", str(tmp_path / "runs"), "--workers", "1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "trials: 2 total, 0 done, 1 running, 0 failed, 1 to run (1 of them RUNNING with a dead worker" in out, out
    assert journal_path(tmp_path / "runs", "orphan").read_bytes() == before


def test_the_closing_wall_time_counts_the_trials_this_launch_ran_not_those_it_planned(tmp_path, capsys):
    """A launch whose timeout passed before its worker took a trial ran none of its 2; its closing line said 'wall
    time 0s for 2 trials (estimated ~…)', as if the estimate had been met."""
    grid = write_grid(tmp_path / "t.yaml", "late", seeds=[0], timeout=0.001)
    assert main(["sweep", str(grid), "--root", str(tmp_path / "runs"), "--workers", "1"]) == 3
    out = capsys.readouterr().out
    assert "0/2 trials done" in out and " for 0 of 2 trials (estimated ~" in out and "for all 2)" in out, out


def test_the_resuming_copy_of_an_interrupted_trial_is_taken_before_new_trials(tmp_path):
    """A relaunched study goes on with the trial it was stopped in (from its last.pt) before it starts the next
    unit: the resuming copy sits last in the queue, yet it is taken first."""
    from sweeps.queue.liveness import worker_record
    from sweeps.queue.optuna_adapter import trial_id
    from sweeps.queue.storage import study_lock
    from sweeps.queue.study import reconcile

    spec, ref, storage, study, study_dir = new_study(tmp_path, "order", seeds=[0, 1])
    first = take_one(study, storage, ref, spec, study_dir)
    storage.set_trial_user_attr(first, "worker", {**worker_record(0, "cpu"), **exited_process()})
    with study_lock(ref, "order", storage):
        reconcile(study, storage, spec, study_dir, ref)
    trials = {trial_id(t): t for t in study.get_trials(deepcopy=False)}
    (copy,) = [tid for tid, t in trials.items() if t.user_attrs.get("replaces") == trials[first].number]
    assert copy == max(trials)                                     # enqueued last, behind three new units
    assert take_one(study, storage, ref, spec, study_dir) == copy
    taken = [take_one(study, storage, ref, spec, study_dir) for _ in range(3)]
    assert taken == sorted(taken) and None not in taken            # then the others, in their enqueue order


def test_the_longest_trials_of_a_seed_are_taken_first(tmp_path):
    """New trials go to workers seed by seed (a study stopped part-way holds every cell at the same number of
    seeds), and within a seed longest first (their planned FLOPs: depth × iterations), so that a round does not
    end waiting on its deepest cell's trial, which the grid's order would start last."""
    from sweeps.queue.optuna_adapter import trial_id

    spec, ref, storage, study, study_dir = new_study(tmp_path, "longest", seeds=[0, 1],
                                                     grid={"model.depth": [8, 20], "schedule.total": [6, 30]})
    units = {trial_id(t): (t.params["model.depth"], t.params["schedule.total"], t.user_attrs["seed"])
             for t in study.get_trials(deepcopy=False)}
    enqueued = list(units.values())
    assert enqueued[0] == (8, 6, 0) and enqueued[-1] == (20, 30, 1)     # the grid's order: shortest first
    taken = [units[take_one(study, storage, ref, spec, study_dir)] for _ in units]
    assert take_one(study, storage, ref, spec, study_dir) is None
    # seed by seed; within a seed ResNet-20 costs about 3 ResNet-8s an iteration: 30 iterations of either first
    assert taken == [(20, 30, 0), (8, 30, 0), (20, 6, 0), (8, 6, 0), (20, 30, 1), (8, 30, 1), (20, 6, 1), (8, 6, 1)]


def test_liveness_of_a_worker_on_another_host_follows_its_heartbeat_file(tmp_path, monkeypatch):
    from datetime import datetime, timedelta
    from types import SimpleNamespace

    import sweeps.queue.liveness as liveness

    monkeypatch.setattr(liveness, "GRACE_PERIOD", 60)
    run_dir = tmp_path / "trials" / "x-s0"
    run_dir.mkdir(parents=True)
    beat = run_dir / liveness.HEARTBEAT_FILE
    beat.write_text("{}")
    far = {"host": "elsewhere", "pid": 12345, "pid_start": None}
    t = SimpleNamespace(user_attrs={"worker": far, "run_dir": "trials/x-s0"}, _trial_id=7,
                        datetime_start=datetime.now() - timedelta(hours=1))
    assert not liveness.trial_is_dead(t, tmp_path)            # fresh heartbeat
    old = time.time() - 120
    os.utime(beat, (old, old))
    assert liveness.trial_is_dead(t, tmp_path)                # stale heartbeat
    here = {**liveness.worker_record(0, "cpu")}
    t.user_attrs["worker"] = here
    assert not liveness.trial_is_dead(t, tmp_path)            # this process: alive whatever the file says
    t.user_attrs = {"run_dir": "trials/x-s0"}                 # killed before it said who it was
    assert liveness.trial_is_dead(t, tmp_path)                # … and started an hour ago


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_stale_rdb_heartbeat_of_a_live_worker_on_this_host_is_not_taken_over(tmp_path, monkeypatch):
    """A worker suspended past the grace period (Slurm's suspend preemption stops it with SIGSTOP) leaves its RDB
    heartbeat stale, but its process exists on this host: reconcile() keeps its trial RUNNING and enqueues no copy,
    and a stale trial of a worker on another host is still failed and resumed. Optuna's ``fail_stale_trials`` used to
    fail both. SQLite, not PostgreSQL: the same Optuna heartbeat table, no server."""
    import sweeps.queue.liveness as liveness
    import sweeps.queue.storage as storage_mod
    from sweeps.queue.optuna_adapter import record_heartbeat, stale_trial_ids, trial_id
    from sweeps.queue.storage import open_storage, study_lock
    from sweeps.queue.study import reconcile

    monkeypatch.setattr(storage_mod, "HEARTBEAT_INTERVAL", 1)
    url = f"sqlite:///{tmp_path / 's.db'}"
    spec, ref, storage, study, study_dir = new_study(tmp_path, "susp", url, seeds=[0, 1])
    here, away = take_one(study, storage, ref, spec, study_dir), take_one(study, storage, ref, spec, study_dir)
    storage.set_trial_user_attr(here, "worker", liveness.worker_record(0, "cpu"))   # this process: alive
    storage.set_trial_user_attr(away, "worker", {"host": "another-machine", "pid": 1, "pid_start": None,
                                                 "device": "cpu", "index": 1})
    for tid in (here, away):
        record_heartbeat(storage, tid)
    monkeypatch.setattr(storage_mod, "GRACE_PERIOD", 2)
    monkeypatch.setattr(liveness, "GRACE_PERIOD", 2)
    storage = open_storage(ref)   # a later launch, whose storage has the 2 s grace period
    study = optuna.load_study(study_name="susp", storage=storage)
    time.sleep(3.5)   # a lower bound: later is as stale
    assert stale_trial_ids(study, storage) == {here, away}
    with study_lock(ref, "susp", storage):
        plan = reconcile(study, storage, spec, study_dir, ref)
    assert [trial_id(t) for t in plan.dead] == [away]
    trials = {trial_id(t): t for t in study.get_trials(deepcopy=False)}
    assert trials[here].state == TrialState.RUNNING, "the suspended worker's trial was failed"
    assert trials[away].state == TrialState.FAIL
    copies = [t for t in trials.values() if t.user_attrs.get("replaces") is not None]
    assert [c.user_attrs["replaces"] for c in copies] == [trials[away].number], "a copy runs beside a live worker"


# -- claim atomicity --------------------------------------------------------------------------------------------
def _claimer(url: str, root: str, name: str, grid: str, ready, go, queue, held) -> None:
    """Take waiting trials as a worker does (``packing.claim_group``) until none is left; put their numbers. The
    first trial is held until every claimer holds one (``held``, a barrier)."""
    import optuna as _optuna
    from sweeps.spec.grid import load_grid as _load
    from sweeps.queue.storage import open_storage as _open, resolve_storage as _resolve

    _optuna.logging.set_verbosity(_optuna.logging.ERROR)
    ref = _resolve(url, root, name)
    storage = _open(ref)
    study = _optuna.load_study(study_name=name, storage=storage)
    spec = _load(grid)
    ready.put(os.getpid())
    go.wait()
    taken = []
    while (tid := take_one(study, storage, ref, spec, Path(root) / name)) is not None:
        trial = _optuna.trial.Trial(study, tid)
        taken.append(trial.number)
        if len(taken) == 1 and not hold_first(held):
            break
        time.sleep(0.01)
        study.tell(trial, 1.0)
    queue.put(taken)


HOLD_S = 300.0   # for every claimer to take its first trial (well under a second when idle)


def hold_first(held) -> bool:
    """Called by a claimer holding its first trial: wait until every claimer holds one (``held``, a barrier of
    `release_together`). Released by ``go`` alone, one claimer could take every trial before the others were
    scheduled on a loaded machine, and "the race happened" was up to the scheduler; held, each claimer is known to
    have claimed beside the others. False (and a line on stderr) if they did not all get there within HOLD_S."""
    import threading

    try:
        held.wait(timeout=HOLD_S)
        return True
    except threading.BrokenBarrierError:
        print(f"claimer {os.getpid()}: not every claimer took a trial within {HOLD_S:.0f} s", file=sys.stderr)
        return False


def release_together(target, args: tuple, n_procs: int, *, hold: bool = False) -> list[list[int]]:
    """Spawn n_procs processes running ``target(*args, ready, go, queue)`` (with ``hold``: ``target(*args, ready,
    go, queue, held)``, ``held`` a barrier of the n_procs processes for `hold_first`), release them at once when
    each has its storage open (``ready``), and return what each put on ``queue`` (the trial numbers it took).
    Deadlines of minutes: spawning and importing take seconds each when idle, ten times that on a loaded machine."""
    ctx = mp.get_context("spawn")
    ready, go, queue = ctx.Queue(), ctx.Event(), ctx.Queue()
    extra = (ctx.Barrier(n_procs),) if hold else ()
    procs = [ctx.Process(target=target, args=(*args, ready, go, queue, *extra)) for _ in range(n_procs)]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            ready.get(timeout=600)
        go.set()
        results = [queue.get(timeout=600) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
                p.join()
    return results


def race_claims(url: str | None, root: Path, n_trials: int = 40, n_procs: int = 4) -> list[list[int]]:
    """Enqueue n_trials, release n_procs processes at once to claim them; what each took."""
    from sweeps.queue.storage import open_storage

    name = f"race-{uuid.uuid4().hex[:8]}"
    ref = resolve_storage(url, root, name)
    study = optuna.create_study(study_name=name, storage=open_storage(ref))
    for i in range(n_trials):
        study.enqueue_trial({}, user_attrs={"unit": f"u{i}"})
    grid = write_grid(Path(root) / f"{name}.yaml", name)
    results = release_together(_claimer, (url, str(root), name, str(grid)), n_procs, hold=True)
    states = Counter(t.state for t in study.get_trials(deepcopy=False))
    assert states == {TrialState.COMPLETE: n_trials}, states
    taken = [n for r in results for n in r]
    optuna.delete_study(study_name=name, storage=open_storage(ref))
    assert sorted(taken) == list(range(n_trials)), "a trial was taken twice or never"
    return results


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["journal", "sqlite"])
def test_claim_gives_each_waiting_trial_to_exactly_one_process(backend, tmp_path):
    url = None if backend == "journal" else f"sqlite:///{tmp_path / 'race.db'}"
    results = race_claims(url, tmp_path)
    assert all(results), f"a claimer took no trial: the race did not happen: {results}"


def test_progress_counts_only_this_launchs_units(tmp_path):
    """Two launches on one study: each one's progress counts the units it runs, not those another launch
    finishes (it printed "4/2 done" when a second launch retried two units while the first ran two others)."""
    import io
    from types import SimpleNamespace

    from sweeps.launch.monitor import Monitor

    spec = load_grid(write_grid(tmp_path / "g.yaml", "two-launches"))
    keys = [u.key for u in spec.units()]
    assert len(keys) == 4

    def trial(number: int, key: str, state: TrialState):
        return SimpleNamespace(number=number, state=state, value=1.0 if state == TrialState.COMPLETE else None,
                               user_attrs={"unit": key, "cell": key.split("|")[0], "seed": 0},
                               datetime_start=None, datetime_complete=None)

    trials = [trial(i, k, TrialState.RUNNING) for i, k in enumerate(keys)]
    out = io.StringIO()
    with Monitor(spec, lambda: trials, units=set(keys[2:]), workers=2, interval=60, stream=out) as monitor:
        trials[:] = [trial(i, k, TrialState.COMPLETE) for i, k in enumerate(keys[:3])] + trials[3:]
        monitor.poll()
        assert monitor.last_line.startswith("1/2 done, 1 running, 0 failed"), monitor.last_line
    events = [ln for ln in out.getvalue().splitlines() if ln.startswith("[sweep] trial")]
    # named by cell and seed (a resume changes the Optuna number, shown after them)
    assert len(events) == 1 and events[0].startswith(f"[sweep] trial {keys[2].split('|')[0]} seed 0 (#2): "), \
        out.getvalue()


def test_progress_counts_a_unit_another_launch_left_once_this_launch_runs_it(tmp_path):
    """A launch whose workers take a trial another launch's stop put back counts it as its own: its line said
    "0 running" while that trial trained. The other launch's interrupted trial is not this launch's news, and a
    trial another launch's worker holds stays uncounted."""
    import io
    import os
    from types import SimpleNamespace

    from sweeps.launch.monitor import Monitor
    from sweeps.queue.liveness import HOST

    spec = load_grid(write_grid(tmp_path / "g.yaml", "adopt"))
    keys = [u.key for u in spec.units()]

    def trial(number: int, key: str, state: TrialState, launcher: int | None = None, status: str | None = None):
        worker = {"host": HOST, "pid": 1, "launcher": launcher} if launcher is not None else None
        return SimpleNamespace(number=number, state=state, value=1.0 if state == TrialState.COMPLETE else None,
                               user_attrs={"unit": key, "cell": key.split("|")[0], "seed": 0,
                                           **({"worker": worker} if worker else {}),
                                           **({"status": status, "reason": "interrupted: the worker was stopped"}
                                              if status else {})},
                               datetime_start=None, datetime_complete=None)

    mine, other = os.getpid(), os.getpid() + 1
    left = trial(0, keys[2], TrialState.FAIL, launcher=other, status="interrupted")
    trials = [left, trial(1, keys[0], TrialState.COMPLETE, launcher=mine),
              trial(2, keys[1], TrialState.COMPLETE, launcher=mine), trial(3, keys[3], TrialState.RUNNING, launcher=other)]
    out = io.StringIO()
    with Monitor(spec, lambda: trials, units=set(keys[:2]), workers=1, interval=60, stream=out) as monitor:
        monitor.poll()
        assert monitor.last_line.startswith("0/2 done, 0 running"), monitor.last_line
        trials.append(trial(4, keys[2], TrialState.RUNNING, launcher=mine))
        monitor.poll()
        assert monitor.last_line.startswith("0/3 done (1 left by another launch), 1 running, 0 failed"), \
            monitor.last_line
        trials[-1] = trial(4, keys[2], TrialState.COMPLETE, launcher=mine)
        monitor.poll()
        assert monitor.last_line.startswith("1/3 done (1 left by another launch), 0 running"), monitor.last_line
    events = [ln for ln in out.getvalue().splitlines() if ln.startswith("[sweep] trial")]
    assert len(events) == 1 and "(#4): test_error 1.00" in events[0], out.getvalue()


def test_closing_table_names_failed_and_unfinished_trials_by_seed(tmp_path):
    from types import SimpleNamespace

    from sweeps.launch.monitor import result_lines

    spec = load_grid(write_grid(tmp_path / "g.yaml", "closing", seeds=[0, 1, 2]))
    units = {(u.cell.id, u.seed): u.key for u in spec.units()}

    def trial(number: int, cell: str, seed: int, state: TrialState, status: str | None = None):
        return SimpleNamespace(number=number, state=state, value=5.0 if state == TrialState.COMPLETE else None,
                               user_attrs={"unit": units[(cell, seed)], "cell": cell, "seed": seed,
                                           **({"status": status} if status else {})})

    none, identity = "model.shortcut=none", "model.shortcut=identity"
    trials = [trial(10, none, 0, TrialState.COMPLETE), trial(11, none, 1, TrialState.FAIL, "diverged"),
              trial(12, identity, 0, TrialState.COMPLETE), trial(13, identity, 1, TrialState.COMPLETE),
              trial(14, identity, 2, TrialState.COMPLETE)]
    lines = result_lines(spec, trials)
    assert lines[0].endswith("[1 failed (1 diverged): seed 1, 1 not finished: seed 2]"), lines
    assert "not finished" not in lines[1] and "(n=3)" in lines[1], lines
    assert "±" in lines[1] and "±" not in lines[0] and "5.00         (n=1)" in lines[0], lines   # n=1: no spread


def test_closing_table_names_search_trials_by_slot_not_as_optuna_numbers(tmp_path):
    """A search cell's failed trials were listed as "trial 0, 1, 2" when Optuna numbered them #3–#5: they are the
    cell's slots, named as their run folders are (-t0)."""
    from types import SimpleNamespace

    from sweeps.launch.monitor import result_lines

    spec = load_grid(write_grid(tmp_path / "g.yaml", "slots", search={"optim.lr": {"uniform": [0.01, 0.1]}},
                                n_trials=2))
    units = [u for u in spec.units() if u.cell.id == spec.cells[-1].id]
    trials = [SimpleNamespace(number=3 + i, state=TrialState.FAIL, value=None, params={},
                              user_attrs={"unit": u.key, "cell": u.cell.id, "seed": u.seed, "slot": u.slot,
                                          "status": "failed"})
              for i, u in enumerate(units)]
    line = result_lines(spec, trials)[-1]
    assert line.endswith("[2 failed: slot t0, slot t1]"), line


def test_progress_counts_steps_and_its_eta_comes_from_the_measured_rate(tmp_path):
    """Progress reads each running trial's steps from its run folder (the tail of metrics.jsonl, summary.json) and
    the ETA is the steps left ÷ the steps per second over the recent window (a fake clock; no training)."""
    import io
    from types import SimpleNamespace

    from sweeps.launch.monitor import TAIL_BYTES, Monitor, RunSteps

    base = {**TINY_BASE, "schedule": {"name": "constant", "unit": "iter", "total": 100}}
    spec = load_grid(write_grid(tmp_path / "g.yaml", "steps", base=base))
    keys = [u.key for u in spec.units()]
    study_dir = tmp_path / "steps"

    def trial(i: int, state: TrialState, **attrs):
        return SimpleNamespace(number=i, state=state, value=1.0 if state == TrialState.COMPLETE else None,
                               user_attrs={"unit": keys[i], "cell": keys[i].split("|")[0], "seed": 0,
                                           "run_dir": f"trials/t{i}", **attrs},
                               datetime_start=None, datetime_complete=None)

    def progress(i: int, logged: int | None = None, summary: int | None = None) -> None:
        d = study_dir / "trials" / f"t{i}"
        d.mkdir(parents=True, exist_ok=True)
        if summary is not None:
            (d / "summary.json").write_text(json.dumps({"step": summary, "total_steps": 100}))
        if logged is not None:
            with open(d / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"step": logged, "epoch": 0.0, "split": "train", "name": "loss", "value": 1.0})
                        + "\n")

    now = [0.0]
    trials = [trial(i, TrialState.WAITING) for i in range(4)]
    out = io.StringIO()
    monitor = Monitor(spec, lambda: trials, units=set(keys), workers=2, estimate_s=1000.0, stream=out,
                      study_dir=study_dir, clock=lambda: now[0], window=120.0, line_every=30.0)
    monitor.start()
    monitor.poll()
    assert (monitor.steps_done, monitor.steps_total) == (0, 400)   # the planned totals, before any trial starts
    assert "steps 0/400 (0%)" in monitor.last_line and "ETA 16m40s (estimated)" in monitor.last_line

    now[0] = 10.0
    trials[:2] = [trial(0, TrialState.RUNNING), trial(1, TrialState.RUNNING)]
    for i in (0, 1):
        progress(i, logged=20, summary=0)
    monitor.poll()
    assert (monitor.steps_done, monitor.rate) == (40, None)   # one measurement: no rate yet (start-up is not one)
    assert "steps 40/400 (10%), steps/s not measured yet, ETA 16m30s (estimated)" in monitor.last_line, \
        monitor.last_line

    now[0] = 20.0
    progress(0, logged=60)
    progress(1, summary=50)   # an evaluation's summary is ahead of the last logged row
    monitor.poll()
    assert (monitor.steps_done, monitor.rate) == (110, 7.0)   # 70 steps in 10 s
    assert "7 steps/s, ETA 41s" in monitor.last_line, monitor.last_line       # 290 steps ÷ 7/s

    # trial 0 finishes; trial 2 resumes from its checkpoint at step 30: those 30 steps are done, not trained now
    now[0] = 30.0
    progress(0, summary=100)
    progress(2, summary=30)
    trials[0] = trial(0, TrialState.COMPLETE)
    trials[2] = trial(2, TrialState.RUNNING, resumed_from_step=30)
    monitor.poll()
    assert (monitor.steps_done, monitor.rate) == (180, 5.5)   # 110 steps trained in 20 s
    assert monitor.last_line.startswith("1/4 done, 2 running, 0 failed; steps 180/400 (45%)"), monitor.last_line

    # the rate is the recent window's: from the sample at or before 120 s ago (t=30, 150 steps), not the launch's
    now[0] = 150.0
    progress(1, logged=90)
    progress(2, logged=70)
    monitor.poll()
    assert monitor.rate == pytest.approx((230 - 150) / 120)
    assert monitor.last_line.endswith("ETA 3m30s"), monitor.last_line   # 140 steps ÷ 2/3 per s

    # a log or pipe: a line per 10 % of the steps or per 30 s, and one per finished trial, with the step counts
    lines = out.getvalue().splitlines()
    assert [ln.split("; ")[1].split(",")[0] for ln in lines] == [
        "steps 40/400 (10%)", "steps 110/400 (28%)", "steps 180/400 (45%)", "steps 260/400 (65%)"], lines
    assert lines[2].startswith(f"[sweep] trial {keys[0].split('|')[0]} seed 0 (#0): test_error 1.00"), lines

    # the tail of a long metrics file is enough, and a torn last line (a killed writer) is skipped
    d = study_dir / "long"
    d.mkdir()
    rows = [json.dumps({"step": s, "split": "train", "name": "loss", "value": 1.0}) for s in range(1, 500)]
    (d / "metrics.jsonl").write_text("\n".join(rows) + '\n{"step": 500, "spl')
    assert (d / "metrics.jsonl").stat().st_size > 4 * TAIL_BYTES
    assert RunSteps().read(d) == (499, None)


def test_the_estimate_shares_the_trials_out_in_the_order_the_workers_claim_them(tmp_path, monkeypatch):
    """Two GPUs, one seed of a 3-cell grid whose last cell costs more than the other two together: the claims take it
    first (``claim_order``), so the estimate is its time alone, not the grid order's (the two short ones, then it)."""
    import sweeps.launch.estimate as estimate

    monkeypatch.setitem(estimate.STARTUP_S, "cuda", 0.0)   # compute alone: the tiny runs' FLOPs decide
    spec = load_grid(write_grid(tmp_path / "g.yaml", "est", seeds=[0],
                                grid={"schedule.total": [6, 7, 30]}))
    units = list(spec.units())
    assert [u.cell.params["schedule.total"] for u in units] == [6, 7, 30]
    one = {u.cell.params["schedule.total"]: estimate.trial_cost(spec.run_config(u.cell, u.seed), "cuda:0")
           for u in units}
    wall, _ = estimate.sweep_seconds(spec, units, ["cuda:0", "cuda:1"], workers=2)
    assert wall == pytest.approx(sum(one[30]), rel=1e-9)


def test_the_estimate_counts_only_the_steps_an_interrupted_trial_has_left(tmp_path, monkeypatch):
    """A trial interrupted at 83 % of its steps resumes from its checkpoint: the dry run and the launch's first ETA
    gave the whole trial's time (a 2-hour ETA for 20 minutes of training left); now its compute is the 17 % left,
    found from its run folder's last.pt, and a waiting trial in a fresh folder counts whole."""
    import torch

    import sweeps.launch.estimate as estimate
    from sweeps.launch.sweep import checkpointed
    from sweeps.queue.study import UnitStatus

    monkeypatch.setitem(estimate.STARTUP_S, "cpu", 0.0)     # compute alone
    spec = load_grid(write_grid(tmp_path / "g.yaml", "est", seeds=[0],
                                grid={"schedule.total": [100]}))
    unit = next(iter(spec.units()))
    assert estimate.trial_steps(spec.run_config(unit.cell, unit.seed)) == 100
    whole, _ = estimate.sweep_seconds(spec, [unit], ["cpu"], workers=1)

    study_dir = tmp_path / "study"
    (study_dir / "trials/a").mkdir(parents=True)
    torch.save({"step": 83}, study_dir / "trials/a/last.pt")

    class Trial:
        def __init__(self, run_dir):
            self.user_attrs = {"run_dir": run_dir}

    sts = [UnitStatus(unit, "interrupted", [Trial("trials/a")])]
    assert checkpointed(study_dir, sts) == {unit.key: 83}
    assert checkpointed(study_dir, [UnitStatus(unit, "waiting", [Trial("trials/b")])]) == {}   # no folder yet
    assert checkpointed(study_dir, [UnitStatus(unit, "missing", [])]) == {}
    left, _ = estimate.sweep_seconds(spec, [unit], ["cpu"], workers=1, trained=checkpointed(study_dir, sts))
    assert left == pytest.approx(0.17 * whole, rel=1e-6)


@pytest.mark.parametrize("cores", [2, 8])
def test_the_estimate_counts_the_workers(tmp_path, monkeypatch, cores):
    """8 equal trials are shared out to the workers: 4 workers give a shorter estimate than 2 (it said the same for
    both), whether the CPU workers split 8 cores or time-share 2."""
    import sweeps.launch.estimate as estimate

    monkeypatch.setattr(estimate, "_cores", lambda: cores)
    spec = load_grid(write_grid(tmp_path / "g.yaml", "est", seeds=[0, 1, 2, 3]))
    units = list(spec.units())
    assert len(units) == 8
    wall = {w: estimate.sweep_seconds(spec, units, ["cpu"], workers=w)[0] for w in (1, 2, 4)}
    assert wall[4] < wall[2] < wall[1], wall
    # one trial alone on a worker takes longer with more workers beside it (a smaller share of the cores)
    one = {w: estimate.sweep_seconds(spec, units, ["cpu"], workers=w)[1] for w in (2, 4)}
    assert one[2][units[0].cell.id] < one[4][units[0].cell.id]
    # two GPUs run in parallel: half the time of one for the 8 equal trials
    gpu = {n: estimate.sweep_seconds(spec, units, [f"cuda:{i}" for i in range(n)], workers=n)[0] for n in (1, 2)}
    assert gpu[2] == pytest.approx(gpu[1] / 2)


def test_a_real_sweep_prints_step_counts_that_increase(tmp_path, capsys, monkeypatch):
    """A quickstart-shaped sweep (2 cells × 2 seeds, 2 workers; tiny synthetic trials) in a non-terminal stream:
    its progress lines give the training steps done of the total, rising to the total, with the ETA."""
    import functools
    import re

    import sweeps.launch.sweep as sweep_mod
    from sweeps.launch.monitor import Monitor

    # polled often, so that a fast machine's trials (well under a second) still show steps between their ends
    monkeypatch.setattr(sweep_mod, "Monitor", functools.partial(Monitor, interval=0.1))

    base = {**TINY_BASE, "schedule": {"name": "constant", "unit": "iter", "total": 30}, "log_every": 5,
            "eval_every": 10}
    grid = write_grid(tmp_path / "g.yaml", "steps-live", base=base)
    assert main(["sweep", str(grid), "--root", str(tmp_path / "runs"), "--workers", "2"]) == 0
    captured = capsys.readouterr()
    print(captured.err)
    lines = [ln for ln in captured.err.splitlines() if ln.startswith("[sweep]")]
    counts = [tuple(map(int, m.groups())) for ln in lines for m in [re.search(r"steps (\d+)/(\d+) \(", ln)] if m]
    assert counts and {total for _, total in counts} == {4 * 30}, lines
    done = [d for d, _ in counts]
    assert done == sorted(done) and done[-1] == 120 and len(set(done)) >= 3, lines
    assert all("ETA " in ln for ln in lines), lines
    assert re.search(r"wall time \S+ for 4 trials \(estimated ~", captured.out), captured.out
