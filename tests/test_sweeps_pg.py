"""The sweeps package on PostgreSQL (``--storage postgresql://…``, the several-machines setup): exactly-once trials
with 4 worker processes, atomic claims, a killed launcher resumed, a worker whose Optuna heartbeat went stale
failed and retried, and `studies --storage`. Needs the ``pg_url`` fixture (scripts/test.sh starts a server)."""
from __future__ import annotations

import os
import time

import pytest

optuna = pytest.importorskip("optuna")
pytest.importorskip("psycopg2")

from optuna.trial import TrialState  # noqa: E402

from resnet_core.cli import main  # noqa: E402
from test_sweeps import (assert_exactly_once, kill_mid_trial_and_rerun, new_study, race_claims,  # noqa: E402
                         take_one, write_grid)

pytestmark = [pytest.mark.postgres, pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]


def pg_study(pg_url: str, name: str):
    from sweeps.queue.storage import open_storage, resolve_storage

    return optuna.load_study(study_name=name, storage=open_storage(resolve_storage(pg_url, ".", name)))


@pytest.mark.slow
@pytest.mark.parametrize("fuse", ["off", "3"], ids=["solo", "fused"])
def test_pg_four_workers_run_each_cell_and_seed_exactly_once(fuse, pg_url, pg_study_name, tmp_path, capsys):
    root = tmp_path / "runs"
    grid = write_grid(tmp_path / "g.yaml", pg_study_name, grid={"model.shortcut": ["none", "identity", "conv1x1"]},
                      seeds=[0, 1, 2])
    assert main(["sweep", str(grid), "--root", str(root), "--storage", pg_url, "--workers", "4", "--fuse", fuse]) == 0
    out = capsys.readouterr().out
    assert "with 4 workers" in out and "created the study" in out
    assert pg_url.split("@")[0].split(":")[-1] not in out, "the password was printed"
    study = pg_study(pg_url, pg_study_name)
    complete = assert_exactly_once(study, 9)
    assert len(study.get_trials(deepcopy=False)) == 9
    assert os.getpid() not in {t.user_attrs["worker"]["pid"] for t in complete}
    for t in complete:  # run folders stay under --root with an RDB storage
        assert (root / pg_study_name / t.user_attrs["run_dir"] / "summary.json").is_file()
    fused = [t.user_attrs.get("fused_with") for t in complete]
    if fuse == "off":
        assert fused == [None] * 9
    else:  # packed by fusion key: plain and option-A twins may share a run, a projection shortcut never
        by_number = {t.number: t for t in complete}
        assert any(f is not None for f in fused)
        for t, group in zip(complete, fused):
            if group is not None:
                kinds = {by_number[n].user_attrs["cell_params"]["model.shortcut"] for n in group}
                assert kinds <= {"none", "identity"} or kinds == {"conv1x1"}, kinds
    assert study.user_attrs["study_dir"] == str((root / pg_study_name).resolve())

    # relaunch: nothing to do; `studies --storage` lists it
    assert main(["sweep", str(grid), "--root", str(root), "--storage", pg_url]) == 0
    assert "resuming: 9 done" in capsys.readouterr().out
    assert main(["studies", "--storage", pg_url]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(pg_study_name)]
    assert lines and "9/9 complete, 0 running, 0 failed, 0 waiting" in lines[0]


@pytest.mark.slow
def test_pg_claim_gives_each_waiting_trial_to_exactly_one_process(pg_url, tmp_path):
    results = race_claims(pg_url, tmp_path)
    assert all(results), f"a claimer took no trial: the race did not happen: {results}"


@pytest.mark.slow
def test_pg_sigkill_mid_trial_then_rerun(pg_url, pg_study_name, tmp_path, capsys):
    kill_mid_trial_and_rerun(tmp_path, capsys, pg_study_name, storage=pg_url)


def test_pg_stale_heartbeat_fails_and_requeues_a_trial_of_another_host(pg_url, pg_study_name, tmp_path, monkeypatch):
    """A worker on another machine stops beating: after the grace period reconcile() fails its trial (status
    interrupted) and enqueues one resuming copy — through Optuna's RDB heartbeat, not a pid check.

    The launch that finds the heartbeat fresh opens the storage with a grace period of minutes, the one that finds it
    stale with 2 s, after 3.5 s without a beat: with 2 s for both, the first reconcile failed the trial whenever 2 s
    passed between the beat and its stale check (the study lock, settling claims, a loaded machine)."""
    import sweeps.queue.liveness as liveness
    import sweeps.queue.storage as storage_mod
    from sweeps.queue.optuna_adapter import record_heartbeat, trial_id
    from sweeps.queue.storage import open_storage, study_lock
    from sweeps.queue.study import reconcile

    monkeypatch.setattr(storage_mod, "HEARTBEAT_INTERVAL", 1)
    monkeypatch.setattr(storage_mod, "GRACE_PERIOD", 600)
    monkeypatch.setattr(liveness, "GRACE_PERIOD", 600)
    spec, ref, storage, study, study_dir = new_study(tmp_path, pg_study_name, pg_url, seeds=[0])
    tid = take_one(study, storage, ref, spec, study_dir)
    storage.set_trial_user_attr(tid, "worker", {"host": "another-machine", "pid": 1, "pid_start": None,
                                                "device": "cuda:0", "index": 0})
    record_heartbeat(storage, tid)
    with study_lock(ref, pg_study_name, storage):
        plan = reconcile(study, storage, spec, study_dir, ref)
    assert not plan.dead and len(plan.running) == 1  # heartbeat fresh: alive
    monkeypatch.setattr(storage_mod, "GRACE_PERIOD", 2)
    monkeypatch.setattr(liveness, "GRACE_PERIOD", 2)
    storage = open_storage(ref)   # a later launch, whose storage has the 2 s grace period
    study = optuna.load_study(study_name=pg_study_name, storage=storage)
    time.sleep(3.5)   # a lower bound: later is as stale
    with study_lock(ref, pg_study_name, storage):
        plan = reconcile(study, storage, spec, study_dir, ref)
    assert [trial_id(t) for t in plan.dead] == [tid]
    trials = study.get_trials(deepcopy=False)
    failed = [t for t in trials if trial_id(t) == tid][0]
    assert failed.state == TrialState.FAIL and failed.user_attrs["status"] == "interrupted"
    copies = [t for t in trials if t.user_attrs.get("replaces") == failed.number]
    assert len(copies) == 1 and copies[0].state == TrialState.WAITING and copies[0].user_attrs["resume"] is True


def test_pg_a_study_folder_is_owned_by_the_study_id_not_by_a_path(pg_url, pg_study_name, tmp_path, capsys):
    """The study id lives in the database study: a second launch on it (another machine) resumes, a study of the
    same name in another storage is refused the folder, and a refused launch creates no study in the database."""
    import json

    root = tmp_path / "runs"
    grid = write_grid(tmp_path / "g.yaml", pg_study_name, grid={"model.shortcut": ["none"]}, seeds=[0])
    journal = tmp_path / "other.journal"
    assert main(["sweep", str(grid), "--root", str(root), "--storage", pg_url, "--workers", "1"]) == 0
    record = json.loads((root / pg_study_name / "owner.json").read_text())
    assert record["study_id"] == pg_study(pg_url, pg_study_name).user_attrs["study_id"]
    assert pg_url.split("@")[0].split(":")[-1] not in json.dumps(record), "the password was written"
    assert main(["sweep", str(grid), "--root", str(root), "--storage", pg_url]) == 0
    assert "resuming: 1 done" in capsys.readouterr().out
    assert main(["sweep", str(grid), "--root", str(root), "--storage", str(journal)]) == 2
    assert "another storage" in capsys.readouterr().err and not journal.exists()

    other = write_grid(tmp_path / "o.yaml", pg_study_name + "-b", grid={"model.shortcut": ["none"]}, seeds=[0])
    (root / (pg_study_name + "-b") / "trials" / "x").mkdir(parents=True)   # runs of a study from before owners
    assert main(["sweep", str(other), "--root", str(root), "--storage", pg_url]) == 2
    assert "holds runs of another study" in capsys.readouterr().err
    from sweeps.queue.storage import open_storage, resolve_storage

    names = optuna.get_all_study_names(storage=open_storage(resolve_storage(pg_url, ".", pg_study_name)))
    assert pg_study_name + "-b" not in names, "a refused launch created its study"
