"""Sweeps pack trials into fused runs (`--fuse`, docs/fused_trials.md): a worker takes up to N waiting trials that
differ only in seed and trains them as one horizontally fused model, yet every Optuna trial keeps its own state,
user attrs, run record and W&B run; exactly-once holds with several workers and after a SIGKILL; a fused sweep gives
the same numbers as an unfused one (float64); `--dry-run` shows the packing."""
from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import torch

optuna = pytest.importorskip("optuna")
from optuna.trial import TrialState  # noqa: E402

from test_sweeps import (TINY_BASE, assert_exactly_once, hold_first, journal_study,  # noqa: E402
                         kill_mid_trial_and_rerun, new_study, release_together, write_grid)
from numerics import assert_series_close  # noqa: E402
from wandb_reader import WANDB_WRITE_S, read_run, records  # noqa: E402

from resnet_core.cli import main  # noqa: E402
from resnet_core.errors import ConfigError  # noqa: E402
from resnet_core.fusion import auto_members, fused_gain  # noqa: E402
from resnet_core.record import read_metrics, read_summary  # noqa: E402
from sweeps.spec.grid import load_grid  # noqa: E402
from sweeps.queue.packing import Packing, claim_group, parse_fuse, plan_runs, trial_key  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
QUICK = ["--set", "data.synthetic.n_train=384", "--set", "data.synthetic.n_test=100", "--set", "schedule.total=2",
         "--set", "schedule.milestones=[1]", "--set", "eval_batch_size=100"]


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """Offline W&B with temporary folders and a dead server address (spawned workers inherit it)."""
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_DIR", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_GROUP",
                "WANDB_NAME", "WANDB_RUN_ID", "WANDB_RESUME"):
        monkeypatch.delenv(var, raising=False)
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))


def finished_wandb_run(run_dir: Path, timeout: float = WANDB_WRITE_S) -> dict:
    """The one offline run under run_dir once its file holds the exit record (wandb-core writes asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        files = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
        try:
            done = len(files) == 1 and any(r.WhichOneof("record_type") == "exit" for r in records(files[0]))
        except Exception:  # noqa: BLE001 - still being written
            done = False
        if done:
            return read_run(run_dir)
        assert time.monotonic() < deadline, f"no finished offline W&B run under {run_dir}: {files}"
        time.sleep(0.1)


# -- the check: a fused 4-worker quickstart on CPU ------------------------------------------------------
@pytest.mark.slow
def test_fused_four_worker_quickstart_one_record_and_wandb_run_per_trial(tmp_path, capsys, offline_wandb):
    root = tmp_path / "runs"
    args = ["sweep", str(REPO / "ablations" / "quickstart.yaml"), "--root", str(root), "--workers", "4",
            "--fuse", "2", *QUICK]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "with 4 workers" in out and "fuse up to 2 members: 4 fused runs" in out
    study = journal_study(root, "quickstart")
    complete = assert_exactly_once(study, 8)                   # C × S = 4 cells × 2 seeds, each exactly once
    assert len(study.get_trials(deepcopy=False)) == 8
    by_number = {t.number: t for t in complete}
    assert os.getpid() not in {t.user_attrs["worker"]["pid"] for t in complete}
    for t in complete:
        a = t.user_attrs
        group = [by_number[n] for n in a["fused_with"]]
        # fused with a trial of the same depth (another seed, or its plain/residual twin), in one worker process
        assert len(group) == 2 and t in group
        assert {g.user_attrs["cell_params"]["model.depth"] for g in group} == {a["cell_params"]["model.depth"]}
        assert len({g.user_attrs["unit"] for g in group}) == 2
        assert len({g.user_attrs["worker"]["pid"] for g in group}) == 1
        # its own record…
        run_dir = root / "quickstart" / a["run_dir"]
        summary = read_summary(run_dir)
        assert summary["fused_members"] == 2 and summary["status"] == "complete" and summary["seed"] == a["seed"]
        assert t.value == pytest.approx(summary["final_test_error"]) == pytest.approx(a["final_test_error"])
        # …and its own W&B run, named after it, holding exactly its own metrics
        run = finished_wandb_run(run_dir)
        assert run["run"]["name"] == summary["name"] == f"quickstart-{a['cell_slug']}-s{a['seed']}"
        assert run["run"]["group"] == "quickstart" and run["config"]["seed"] == a["seed"]
        assert run["config"]["trial"]["number"] == t.number
        history = {h["_step"]: h for h in run["history"]}
        rows = [m for m in read_metrics(run_dir) if m["split"] in ("train", "test")]
        assert rows
        for m in rows:
            assert history[m["step"]][f"{m['split']}/{m['name']}"] == pytest.approx(m["value"], rel=1e-12)
    # the two members of a fused run did not train the same network: their curves differ
    first = [m["value"] for m in read_metrics(root / "quickstart" / complete[0].user_attrs["run_dir"])
             if m["split"] == "train" and m["name"] == "loss"]
    twin = by_number[[n for n in complete[0].user_attrs["fused_with"] if n != complete[0].number][0]]
    second = [m["value"] for m in read_metrics(root / "quickstart" / twin.user_attrs["run_dir"])
              if m["split"] == "train" and m["name"] == "loss"]
    assert first != second
    # the report counts each fused run's clock once (each member's record holds the run's clock)
    from reports.compute import compute_lines
    from reports.study_reader import load_study

    line = compute_lines(load_study("quickstart", root=str(root)))[0]
    assert "over 8 run records (8 complete runs; 8 of the records trained as 4 fused runs of 2 members" in line, line


# -- fused = unfused --------------------------------------------------------------------------------------------
FP64_BASE = {**TINY_BASE, "precision": "fp64", "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9,
                                                          "weight_decay": 5e-4},
             "schedule": {"name": "constant", "unit": "iter", "total": 12}, "log_every": 4, "eval_every": 6}


@pytest.mark.slow
def test_fused_sweep_equals_unfused_sweep_in_float64(tmp_path, capsys):
    """Each trial of a `--fuse 3` sweep (and of `--fuse 6`: plain and residual members in one fused run) logs the
    same curves as the same trial of a `--fuse off` sweep."""
    results = {}
    for fuse in ("off", "3", "6"):
        root = tmp_path / f"runs-{fuse}"
        grid = write_grid(tmp_path / f"g-{fuse}.yaml", "eq", base=FP64_BASE, seeds=[0, 1, 2])
        assert main(["sweep", str(grid), "--root", str(root), "--workers", "1", "--fuse", fuse]) == 0
        capsys.readouterr()
        trials = assert_exactly_once(journal_study(root, "eq"), 6)
        results[fuse] = {t.user_attrs["run_dir"]: (t, list(read_metrics(root / "eq" / t.user_attrs["run_dir"])))
                         for t in trials}
        members = {read_summary(root / "eq" / t.user_attrs["run_dir"])["fused_members"] for t in trials}
        assert members == ({1} if fuse == "off" else {int(fuse)})
    for run_dir, (solo, solo_rows) in results["off"].items():
        assert "fused_with" not in solo.user_attrs
        for fuse in ("3", "6"):
            fused, fused_rows = results[fuse][run_dir]
            assert len(fused.user_attrs["fused_with"]) == int(fuse)
            assert [(r["step"], r["split"], r["name"]) for r in solo_rows] == \
                   [(r["step"], r["split"], r["name"]) for r in fused_rows]
            keyed = [{(r["step"], r["split"], r["name"]): r["value"] for r in rows if r["name"] != "throughput"}
                     for rows in (fused_rows, solo_rows)]
            assert_series_close(*keyed, lambda k: 1e-9 if k[1] in ("train", "val", "test") else 1e-6)  # probes: fp32
            assert abs(solo.value - fused.value) <= 1e-9 * 100  # test error in %


# -- exactly once after a SIGKILL -------------------------------------------------------------------------------
@pytest.mark.slow
def test_sigkill_mid_fused_run_then_rerun_completes_without_duplicates(tmp_path, capsys):
    """One worker, two cells × two seeds, `--fuse 2`: the first cell's fused run completes, the launcher is killed
    during the second; the rerun resumes both killed members from their checkpoints, exactly once."""
    kill_mid_trial_and_rerun(tmp_path, capsys, "killfused", extra=["--fuse", "2", "--workers", "1"])
    study = journal_study(tmp_path / "runs", "killfused")
    trials = study.get_trials(deepcopy=False)
    victims = [t for t in trials if t.user_attrs.get("status") == "interrupted"]
    # both members of the running fused run, or one whose twin was told its result just before the kill
    assert 1 <= len(victims) <= 2
    group = victims[0].user_attrs["fused_with"]
    assert len(group) == 2 and all(v.user_attrs["fused_with"] == group for v in victims)
    assert all(t.user_attrs["fused_with"] == [0, 1] for t in trials if t.number in (0, 1))


# -- claiming groups --------------------------------------------------------------------------------------------
def _claim_all(study, storage, ref, spec, study_dir, packing) -> list[list[tuple[str, int]]]:
    groups = []
    while tids := claim_group(study, storage, ref, spec, study_dir, packing):
        assert all(storage.get_trial(tid).state == TrialState.RUNNING for tid in tids)
        groups.append([(storage.get_trial(t).user_attrs["cell"], storage.get_trial(t).user_attrs["seed"])
                       for t in tids])
    return groups


def test_claim_group_takes_seeds_of_one_cell_up_to_the_cap(tmp_path):
    spec, ref, storage, study, study_dir = new_study(tmp_path, "groups", seeds=[0, 1, 2],
                                                     grid={"model.depth": [8, 14]})
    groups = _claim_all(study, storage, ref, spec, study_dir, Packing(2, "cpu"))
    # 2 depths × 3 seeds, at most 2 a run: each cell as 2 + 1, every trial taken once
    assert sorted(groups) == sorted([[("model.depth=8", 0), ("model.depth=8", 1)], [("model.depth=8", 2)],
                                     [("model.depth=14", 0), ("model.depth=14", 1)], [("model.depth=14", 2)]])


def test_plain_and_residual_twins_pack_together(tmp_path):
    """model.shortcut none and identity fuse (a per-member gate on the addition): one group for the whole grid."""
    spec, ref, storage, study, study_dir = new_study(tmp_path, "twins", seeds=[0, 1, 2])
    groups = _claim_all(study, storage, ref, spec, study_dir, Packing(4, "cpu"))
    # seed by seed (the enqueue order): the twins of seeds 0 and 1 in one run, seed 2's in another
    assert groups == [[("model.shortcut=none", 0), ("model.shortcut=identity", 0), ("model.shortcut=none", 1),
                       ("model.shortcut=identity", 1)], [("model.shortcut=none", 2), ("model.shortcut=identity", 2)]]
    spec, ref, storage, study, study_dir = new_study(tmp_path, "proj", seeds=[0, 1],
                                                     grid={"model.shortcut": ["none", "conv1x1"]})
    groups = _claim_all(study, storage, ref, spec, study_dir, Packing(4, "cpu"))
    # projections do not mix; they cost more FLOPs than the plain net, so their run goes first (claim_order)
    assert groups == [[("model.shortcut=conv1x1", 0), ("model.shortcut=conv1x1", 1)],
                      [("model.shortcut=none", 0), ("model.shortcut=none", 1)]]
    # fusion off: one at a time
    spec, ref, storage, study, study_dir = new_study(tmp_path, "solo", seeds=[0, 1])
    sizes = []
    while tids := claim_group(study, storage, ref, spec, study_dir, Packing(1, "cpu")):
        sizes.append(len(tids))
    assert sizes == [1, 1, 1, 1]


def test_resuming_trials_fuse_only_from_the_same_checkpoint_step(tmp_path):
    from resnet_core.checkpoint import atomic_save

    spec, ref, storage, study, study_dir = new_study(tmp_path, "resume", seeds=[0, 1, 2],
                                                     grid={"model.shortcut": ["none"]})
    trials = study.get_trials(deepcopy=False)
    for t, step in zip(trials, (100, 100, 200)):
        atomic_save({"step": step}, study_dir / t.user_attrs["run_dir"] / "last.pt")
    keys = [trial_key(spec, {**t.user_attrs, "resume": True}, study_dir, "cpu")[0] for t in trials]
    fresh = trial_key(spec, trials[0].user_attrs, study_dir, "cpu")[0]
    assert keys[0] == keys[1] != keys[2] and fresh not in keys
    assert keys[0].endswith("|resume@100") and keys[2].endswith("|resume@200")


@pytest.mark.parametrize("kind", ["journal", "postgresql"])
def test_claims_take_turns_so_a_fused_group_is_as_full_as_the_waiting_trials_allow(kind, tmp_path, request,
                                                                                    monkeypatch):
    """4 waiting seeds of one cell, 3 claimers, cap 2. The first claimer takes a trial, and the two others claim
    while it is mid-claim. Claiming one at a time gives 2 + 2 + 0; claimers reading the queue at once gave
    1 + 2 + 1 (the CI fault: a fused quickstart trial that ran alone).

    A goes on once B is at the claim lock and has not got past it within 2 s (with a lock, B waits for A however
    slow the machine; with none, B is past it at once), or once B and C are done (a claim that takes no lock). A
    fixed wait for B and C hid the fault on a loaded machine, where they needed longer."""
    import contextlib
    import threading

    import optuna

    import sweeps.queue.packing as packing_module
    from sweeps.queue.storage import open_storage

    at_lock, past_lock = threading.Event(), threading.Event()
    real_lock = packing_module.claim_lock

    @contextlib.contextmanager
    def claim_lock(*args, **kwargs):   # B's claim says when it reaches the lock and when it holds it
        mine = threading.current_thread().name == "claimers-B-C"
        if mine:
            at_lock.set()
        with real_lock(*args, **kwargs):
            if mine:
                past_lock.set()
            yield

    monkeypatch.setattr(packing_module, "claim_lock", claim_lock)

    name, url = "turns", None
    if kind == "postgresql":
        name, url = request.getfixturevalue("pg_study_name"), request.getfixturevalue("pg_url")
    spec, ref, storage, study, study_dir = new_study(tmp_path, name, url, seeds=[0, 1, 2, 3],
                                                     grid={"model.depth": [8]})
    got: dict[str, list[int]] = {}

    def claim(who: str) -> None:
        own = open_storage(ref)
        got[who] = claim_group(optuna.load_study(study_name=name, storage=own), own, ref, spec, study_dir,
                               Packing(2, "cpu"))

    class FirstClaimer:
        """A's storage: after its first trial is taken, B and then C claim before A goes on."""
        def __init__(self, inner):
            self.inner, self.others = inner, None

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def set_trial_state_values(self, *args, **kwargs):
            taken = self.inner.set_trial_state_values(*args, **kwargs)
            if self.others is None:
                self.others = threading.Thread(target=lambda: (claim("B"), claim("C")), daemon=True,
                                               name="claimers-B-C")
                self.others.start()
                t_end = time.monotonic() + 300
                while not at_lock.is_set() and self.others.is_alive():   # B at the lock, or B and C done
                    assert time.monotonic() < t_end, "B neither reached the claim lock nor finished in 300 s"
                    self.others.join(timeout=0.05)
                assert not past_lock.wait(timeout=2.0), "B took the claim lock while A held it"
            return taken

    a = FirstClaimer(open_storage(ref))
    got["A"] = claim_group(optuna.load_study(study_name=name, storage=a), a, ref, spec, study_dir,
                           Packing(2, "cpu"))
    a.others.join(timeout=120)
    assert not a.others.is_alive()
    assert [len(got[k]) for k in "ABC"] == [2, 2, 0], got
    assert sorted(got["A"] + got["B"]) == sorted(t._trial_id for t in study.get_trials(deepcopy=False))


def _group_claimer(root: str, grid: str, name: str, ready, go, queue, held) -> None:
    import optuna as _optuna

    from sweeps.spec.grid import load_grid as _load
    from sweeps.queue.packing import Packing as _Packing, claim_group as _claim_group
    from sweeps.queue.storage import open_storage as _open, resolve_storage as _resolve

    _optuna.logging.set_verbosity(_optuna.logging.ERROR)
    spec = _load(grid)
    ref = _resolve(None, root, name)
    storage = _open(ref)
    study = _optuna.load_study(study_name=name, storage=storage)
    ready.put(os.getpid())
    go.wait()
    taken = []
    while tids := _claim_group(study, storage, ref, spec, Path(root) / name, _Packing(3, "cpu")):
        trials = [_optuna.trial.Trial(study, tid) for tid in tids]
        first = not taken
        taken += [trial.number for trial in trials]
        if first and not hold_first(held):   # every claimer holds its first group before any is told
            break
        for trial in trials:
            study.tell(trial, 1.0)
        time.sleep(0.01)
    queue.put(taken)


@pytest.mark.slow
def test_group_claims_give_each_trial_to_exactly_one_process(tmp_path):
    name = f"race-{uuid.uuid4().hex[:6]}"
    spec, ref, storage, study, study_dir = new_study(tmp_path, name, seeds=[0, 1, 2, 3, 4, 5],
                                                     grid={"model.depth": [8, 14, 20, 26, 32]})
    grid = tmp_path / f"{name}.yaml"  # the grid new_study wrote
    results = release_together(_group_claimer, (str(tmp_path / "runs"), str(grid), name), 4, hold=True)
    assert all(results), f"a claimer took no trial: the race did not happen: {results}"
    taken = sorted(n for r in results for n in r)
    assert taken == list(range(30)), "a trial was taken twice or never"
    assert Counter(t.state for t in study.get_trials(deepcopy=False)) == {TrialState.COMPLETE: 30}


# -- choosing N, the dry run, bad input -------------------------------------------------------------------------
def test_fuse_auto_is_off_on_cpu_and_reads_the_bench_table_on_cuda(tmp_path):
    assert auto_members("cpu") == 1 and auto_members("mps") == 1
    assert auto_members("cuda") == 8  # the H100 measurement (docs/fused_trials.md), without a table
    table = tmp_path / "bench.json"
    table.write_text(json.dumps({"device": "H100", "rows": [
        {"model": "resnet20", "engine_G1": 50_000.0, "engine_G2": 52_000.0, "engine_G4": 95_000.0,
         "engine_G8": 100_000.0},
        {"model": "resnet56", "engine_G1": 20_000.0, "engine_G2": 30_000.0, "engine_G4": 50_000.0,
         "engine_G8": 74_000.0}]}))
    # ResNet-20: G=2 is < 10 % better than 1, 4 is, 8 is not better than 4 by 10 %: 4
    assert auto_members("cuda", "resnet20", table) == 4
    assert auto_members("cuda", "resnet56", table) == 8
    assert auto_members("cuda", "resnet110", table) == 8  # no row: the default
    assert fused_gain("cuda", 8, "resnet56", table) == pytest.approx(3.7)
    assert fused_gain("cpu", 8, "resnet56", table) == 1.0
    assert fused_gain("cuda", 6) == pytest.approx(2.5)  # between the assumed gains at 4 and 8
    packing = Packing("auto", "cuda:0", table)
    assert packing.cap({"model": {"family": "cifar", "depth": 20}}) == 4
    assert packing.cap({"model": {"family": "imagenet", "depth": 50}}) == 8
    assert Packing("auto", "cpu", table).cap({"model": {"depth": 20}}) == 1
    assert Packing(4, "cuda:0", table, search=True).cap({"model": {"depth": 20}}) == 1


def test_fuse_n_on_a_search_grid_is_refused_not_dropped(tmp_path, capsys):
    """A search grid runs unfused: an explicit ``--fuse 4`` there could not take effect (the launch ran unfused,
    saying 'fuse: off'); it is a one-line error before anything is written. ``--fuse off`` and auto stay fine."""
    grid = write_grid(tmp_path / "s.yaml", "srch", search={"optim.lr": {"log_uniform": [0.001, 0.1]}}, n_trials=2)
    root = tmp_path / "runs"
    assert main(["sweep", str(grid), "--root", str(root), "--fuse", "4"]) == 2
    err = capsys.readouterr().err
    assert "--fuse 4" in err and "search" in err and "--fuse off" in err and len(err.strip().splitlines()) == 1, err
    assert not root.exists()
    for fuse in ("off", "auto"):
        assert main(["sweep", str(grid), "--root", str(root), "--fuse", fuse, "--dry-run"]) == 0
    assert not root.exists()


@pytest.mark.parametrize("fuse, device, search, fuses", [
    (1, "cpu", False, False), ("auto", "cpu", False, False), ("auto", "mps", False, False),
    (2, "cpu", False, True), ("auto", "cuda:0", False, True), (4, "cuda:0", True, False)])
def test_a_packing_that_never_fuses_plans_one_run_per_trial_as_written(tmp_path, fuse, device, search, fuses):
    """Without fusion (--fuse 1, auto off the GPU, a search) every trial is its own run: the plan resolved each
    trial's run config three times per launch for nothing (a 1,152-trial dry run spent ~10 s there). Its runs are
    the trials in grid order, each with its own run config."""
    spec = load_grid(write_grid(tmp_path / "g.yaml", "never", seeds=[0, 1], grid={"model.depth": [8, 14]}))
    packing = Packing(fuse, device, search=search)
    assert packing.fuses is fuses
    if fuses:
        return
    runs = plan_runs(spec, spec.units(), packing)
    assert [[(u.cell.id, u.seed) for u in r.units] for r in runs] == [[(u.cell.id, u.seed)] for u in spec.units()]
    assert [r.cfg for r in runs] == [spec.run_config(u.cell, u.seed, device=device) for u in spec.units()]


def test_plan_runs_chunks_each_cell_by_the_cap(tmp_path):
    spec = load_grid(write_grid(tmp_path / "g.yaml", "plan", seeds=[0, 1, 2, 3, 4], grid={"model.depth": [8, 14]}))
    runs = plan_runs(spec, spec.units(), Packing(2, "cpu"))
    assert [(r.units[0].cell.id, [u.seed for u in r.units]) for r in runs] == [
        ("model.depth=8", [0, 1]), ("model.depth=8", [2, 3]), ("model.depth=8", [4]),
        ("model.depth=14", [0, 1]), ("model.depth=14", [2, 3]), ("model.depth=14", [4])]
    spec = load_grid(write_grid(tmp_path / "t.yaml", "twins", seeds=[0, 1, 2]))  # shortcut none + identity
    runs = plan_runs(spec, spec.units(), Packing(4, "cpu"))
    assert [[(u.cell.id, u.seed) for u in r.units] for r in runs] == [
        [("model.shortcut=none", 0), ("model.shortcut=identity", 0), ("model.shortcut=none", 1),
         ("model.shortcut=identity", 1)], [("model.shortcut=none", 2), ("model.shortcut=identity", 2)]]


def test_dry_run_shows_the_packing_and_a_shorter_estimate_on_cuda(tmp_path, capsys, monkeypatch):
    grid = write_grid(tmp_path / "g.yaml", "dry", seeds=[0, 1, 2, 3])
    root = tmp_path / "runs"
    assert main(["sweep", str(grid), "--root", str(root), "--dry-run", "--fuse", "4"]) == 0
    out = capsys.readouterr().out
    assert "fuse: up to 4 members; 8 trials → 2 runs (2 fused)" in out
    assert "model.shortcut=none + model.shortcut=identity: 8 trials as 4 + 4 fused members" in out
    assert main(["sweep", str(grid), "--root", str(root), "--dry-run"]) == 0
    assert "fuse: auto: off on cpu; 8 trials → 8 runs" in capsys.readouterr().out
    assert not root.exists()

    # On a GPU (faked: nothing runs in a dry run), auto packs 8 and the estimate shrinks by the fused gain.
    import sweeps.launch.sweep as sweep_mod

    monkeypatch.setattr(sweep_mod, "parse_devices", lambda text: ["cuda:0"])
    estimates = {}
    for fuse in ("off", "auto"):
        assert main(["sweep", str(grid), "--root", str(root), "--dry-run", "--fuse", fuse]) == 0
        out = capsys.readouterr().out
        line = next(x for x in out.splitlines() if x.startswith("estimate:"))
        estimates[fuse] = line
        if fuse == "auto":
            assert "fuse: auto on cuda (measured default); 8 trials → 1 run (1 fused)" in out
    assert estimates["off"] != estimates["auto"]


@pytest.mark.parametrize("value", ["0", "-2", "two", "2.5"])
def test_bad_fuse_value_exits_2_and_creates_nothing(value, tmp_path, capsys):
    grid = write_grid(tmp_path / "g.yaml", "bad")
    root = tmp_path / "runs"
    assert main(["sweep", str(grid), "--root", str(root), f"--fuse={value}"]) == 2
    err = capsys.readouterr().err
    assert "--fuse" in err and repr(value) in err and "auto, off" in err
    assert len(err.strip().splitlines()) == 1 and not root.exists()
    with pytest.raises(ConfigError):
        parse_fuse(value)
    assert parse_fuse("off") == 1 and parse_fuse("auto") == "auto" and parse_fuse("4") == 4


def test_missing_fuse_table_is_a_clear_error(tmp_path, capsys):
    grid = write_grid(tmp_path / "g.yaml", "tbl")
    assert main(["sweep", str(grid), "--root", str(tmp_path / "runs"), "--fuse-table",
                 str(tmp_path / "nope.json")]) == 2
    err = capsys.readouterr().err
    assert "--fuse-table" in err and "nope.json" in err and "bench --members" in err
