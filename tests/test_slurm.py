"""`sweep --launcher slurm` (sweeps/launch/slurm.py): the launcher settings and refusals (no cluster needed), and on a real
one-node Slurm cluster (scripts/slurm_throwaway.sh, started by scripts/test.sh, which exports RESNET_ABLATE_SLURM=1
and SLURM_CONF) with the throwaway PostgreSQL: a 4-worker job array runs the shrunk quickstart exactly once;
`scancel` of an array task mid-trial, then a new launch, completes it; `scontrol requeue` of a running task resumes
its trial from last.pt."""
from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from resnet_core.cli import main
from resnet_core.errors import ConfigError
from sweeps.launch.launchers import LAUNCHER_TYPES, Launcher, LocalLauncher, SlurmLauncher, make_launcher
from sweeps.launch.slurm import SlurmWorker, check_storage, task_devices
from sweeps.spec.grid import parse_grid
from sweeps.spec.launcher import parse_launcher, parse_time
from sweeps.queue.storage import resolve_storage

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "ablations" / "quickstart.yaml"


# -- settings and refusals (no cluster) -------------------------------------------------------------------------
def test_parse_time_accepts_slurm_formats_and_refuses_others():
    assert parse_time(90) == 90
    assert parse_time("90") == 90
    assert parse_time("04:00:00") == 240
    assert parse_time("1-02:30:00") == 1590
    assert parse_time("2-00") == 2880
    assert parse_time("10:30") == 11              # MM:SS, rounded up to whole minutes
    for bad in ("1h", "", "0", "1:2:3:4", "x-01", True, None, 0, -5):
        with pytest.raises(ConfigError, match="launcher.slurm.time"):
            parse_time(bad)


def test_parse_launcher_merges_grid_section_and_flags():
    section = {"slurm": {"partition": "gpu", "time": "02:00:00", "cpus_per_worker": 8, "gpus_per_worker": 2,
                         "mem": "32g", "sbatch": {"account": "abc", "exclusive": True},
                         "setup": ["module load cuda"], "array_parallelism": 4}}
    cfg = parse_launcher(section, {"time": "30", "gpus_per_worker": None, "sbatch": {"qos": "high"}})
    assert (cfg.partition, cfg.time_min, cfg.cpus_per_worker, cfg.gpus_per_worker, cfg.mem) == ("gpu", 30, 8, 2, "32G")
    assert cfg.sbatch == {"account": "abc", "exclusive": True, "qos": "high"}
    p = cfg.executor_parameters("ablate-x")
    assert p["gpus_per_node"] == 2 and p["cpus_per_task"] == 8 and p["time"] == 30 and p["mem"] == "32G"
    assert p["additional_parameters"] == {"account": "abc", "exclusive": True, "qos": "high"}
    assert p["setup"] == ["module load cuda"] and p["array_parallelism"] == 4
    assert "gpus_per_node" not in parse_launcher(None).executor_parameters("x")   # CPU-only by default


@pytest.mark.parametrize("section, match", [
    ({"pbs": {}}, "unknown launcher 'pbs'; allowed: slurm"),
    ({"slurm": {"partiton": "gpu"}}, "unknown key 'partiton'; allowed: partition, time"),
    ({"slurm": {"gpus_per_worker": -1}}, "gpus_per_worker: expected an integer ≥ 0"),
    ({"slurm": {"cpus_per_worker": "many"}}, "cpus_per_worker: expected an integer ≥ 1"),
    ({"slurm": {"mem": "lots"}}, "mem: expected megabytes or a size like 16G"),
    ({"slurm": {"sbatch": {"array": "0-3"}}}, "'array' is set by the launcher"),
    ({"slurm": {"sbatch": {"Bad Key": 1}}}, "not an sbatch option name"),
    ({"slurm": {"sbatch": ["account=x"]}}, "expected a mapping of sbatch options"),
    ({"slurm": {"time": 1}}, "launcher.slurm.time: 00:01:00 leaves no time before the warning signal, sent 90 s"),
    ({"slurm": {"time": 10, "signal_delay_s": 600}}, "leaves no time before the warning signal, sent 600 s"),
    ("slurm", "launcher must be a mapping"),
])
def test_parse_launcher_refuses_bad_settings(section, match):
    with pytest.raises(ConfigError, match=match):
        parse_launcher(section)


def test_flag_errors_name_the_flag_and_empty_values_are_fine():
    cfg = parse_launcher({"slurm": {"sbatch": None, "setup": "module load cuda"}})   # `sbatch:` left empty
    assert cfg.sbatch == {} and cfg.setup == ["module load cuda"]
    with pytest.raises(ConfigError, match="^--cpus-per-worker: expected an integer ≥ 1, got 0$"):
        parse_launcher({"slurm": {"cpus_per_worker": 4}}, {"cpus_per_worker": 0})


def test_local_storage_is_refused_unless_on_a_shared_filesystem(tmp_path):
    journal = resolve_storage(None, tmp_path, "s")
    with pytest.raises(ConfigError, match="local journal file.*--shared-fs"):
        check_storage(journal, shared_fs=False)
    sqlite = resolve_storage(f"sqlite:///{tmp_path}/s.db", tmp_path, "s")
    with pytest.raises(ConfigError, match="local SQLite file"):
        check_storage(sqlite, shared_fs=False)
    check_storage(journal, shared_fs=True)
    check_storage(resolve_storage("postgresql://u:p@h/db", tmp_path, "s"), shared_fs=False)


def _write_quickstart(path: Path, study: str, *, grid: dict | None = None, seeds: list | None = None,
                      launcher: dict | None = None) -> Path:
    d = yaml.safe_load(QUICKSTART.read_text())
    d["study"] = study
    d["wandb"] = {"mode": "disabled"}
    if grid is not None:
        d["grid"] = grid
    if seeds is not None:
        d["seeds"] = seeds
    if launcher is not None:
        d["launcher"] = launcher
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


@pytest.mark.parametrize("extra, match", [
    ([], "storage .*optuna.journal is a local journal file"),
    (["--storage", "sqlite:///{tmp}/s.db"], "is a local SQLite file"),
    (["--storage", "postgresql://u:secret@127.0.0.1:1/db", "--devices", "cpu"], "--devices does not apply"),
    (["--storage", "postgresql://u:secret@127.0.0.1:1/db", "--time", "soon"], "--time: 'soon' is not a time"),
    (["--storage", "postgresql://u:secret@127.0.0.1:1/db", "--sbatch", "time=5"], "'time' is set by the launcher"),
])
def test_bad_slurm_launch_is_one_line_exit_2_and_writes_nothing(extra, match, tmp_path, capsys):
    grid = _write_quickstart(tmp_path / "g.yaml", "refused")
    root = tmp_path / "runs"
    args = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    code = main(["sweep", str(grid), "--root", str(root), "--launcher", "slurm", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert re.search(match, err), err
    assert "secret" not in err
    assert not root.exists() and not (tmp_path / "s.db").exists()


@pytest.mark.parametrize("extra, flag", [
    (["--time", "abc"], "--time"), (["--time", "-5"], "--time"), (["--mem", "lots"], "--mem"),
    (["--cpus-per-worker", "0"], "--cpus-per-worker"), (["--gpus-per-worker", "1"], "--gpus-per-worker"),
    (["--partition", "x"], "--partition"), (["--sbatch", "account=abc"], "--sbatch"),
])
def test_slurm_flags_without_the_slurm_launcher_are_refused_not_ignored(extra, flag, tmp_path, capsys):
    """A grid's launcher.slurm section does not pick the launcher (--launcher does): its settings wait for
    --launcher slurm, but a Slurm flag given to a local launch is refused, not ignored."""
    grid = _write_quickstart(tmp_path / "g.yaml", "local", launcher={"slurm": {"partition": "cpu"}})
    code = main(["sweep", str(grid), "--root", str(tmp_path / "runs"), "--dry-run", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {flag} is a Slurm option: add --launcher slurm"), err
    assert not (tmp_path / "runs").exists()


def test_sbatch_takes_key_value_or_a_bare_flag_as_its_help_says(tmp_path, capsys):
    grid = _write_quickstart(tmp_path / "g.yaml", "dry")
    argv = ["sweep", str(grid), "--root", str(tmp_path / "runs"), "--launcher", "slurm", "--shared-fs", "--dry-run"]
    assert main([*argv, "--sbatch", "exclusive", "--sbatch", "qos=high"]) == 0
    assert "--exclusive, --qos=high" in capsys.readouterr().out
    from resnet_core.cli import build_parser

    sweep = [a for a in build_parser()._actions if a.dest == "command"][0].choices["sweep"]
    help_text = next(a.help for a in sweep._actions if "--sbatch" in a.option_strings)
    assert "--sbatch exclusive is sbatch's --exclusive" in help_text and "the last value wins" in help_text


def test_bad_launcher_section_in_the_grid_is_refused_at_load(tmp_path, capsys):
    grid = _write_quickstart(tmp_path / "g.yaml", "bad", launcher={"slurm": {"gpus": 1}})
    code = main(["sweep", str(grid), "--root", str(tmp_path / "runs"), "--dry-run"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "launcher.slurm: unknown key 'gpus'" in err and len(err.splitlines()) == 1


def test_shared_fs_journal_dry_run_shows_the_array(tmp_path, capsys):
    grid = _write_quickstart(tmp_path / "g.yaml", "dry", launcher={"slurm": {"partition": "cpu", "time": 45}})
    code = main(["sweep", str(grid), "--root", str(tmp_path / "runs"), "--launcher", "slurm", "--shared-fs",
                 "--workers", "3", "--dry-run", "--sbatch", "account=abc"])
    out = capsys.readouterr().out
    assert code == 0
    assert "slurm: 3 worker(s) as one job array, each: partition cpu, 1 CPU, 0 GPUs, default mem, time 00:45:00, " \
           "--account=abc" in out
    assert not (tmp_path / "runs").exists()


def test_task_devices_follow_the_allocation():
    assert task_devices(0, {"CUDA_VISIBLE_DEVICES": "0,1"}) == ["cpu"]
    assert task_devices(2, {"CUDA_VISIBLE_DEVICES": "3,5"}) == ["cuda:0", "cuda:1"]   # renumbered from 0 by CUDA
    assert task_devices(1, {"CUDA_VISIBLE_DEVICES": "7"}) == ["cuda:0"]


def test_slurm_worker_pickles_and_checkpoints_as_itself(tmp_path, monkeypatch):
    ref = resolve_storage("postgresql://u:p@h/db", tmp_path, "s")
    w = SlurmWorker({"study": "s"}, ref, str(tmp_path), 2, 16, None, 1, None)
    specs = w.worker_specs(3, {"CUDA_VISIBLE_DEVICES": "4,6"})
    assert [(s.device, s.index, s.threads) for s in specs] == [("cuda:0", 6, 8), ("cuda:1", 7, 8)]
    w._procs = [object()]                      # running children never travel in the pickle
    again = pickle.loads(pickle.dumps(w))
    assert again._procs == [] and again.storage == ref and again.gpus == 2
    import multiprocessing as mp

    child = mp.get_context("spawn").Process(target=time.sleep, args=(60,))
    child.start()
    w._procs = [child]
    t0 = time.time()
    delayed = w.checkpoint(3)                  # stops the worker processes, then resubmits itself
    assert child.exitcode == -15 and time.time() - t0 < 30
    assert delayed.function is w and delayed.args == (3,)


# -- a real Slurm cluster ---------------------------------------------------------------------------------------
# Deadlines for the cluster's jobs, each several times what it takes on an idle 2-core machine (a job's tasks start
# Python and import torch, seconds each when idle; ten times that at 10x load) and within the jobs' 10-minute limit
# (`_launch`'s --time 10), so that a hang still fails here rather than at the job's time limit.
REACH_S = 420.0   # tasks started and two trials running with a checkpoint (~30 s when idle)
STOP_S = 300.0    # a cancelled task gone / requeued tasks pending (seconds when idle; Slurm's KillWait is 30 s)
JOB_S = 540.0     # a job (or the rest of one) to finish (~20-60 s when idle)
# The cluster has one node: its tests run one after another on one pytest-xdist worker (scripts/test.sh uses
# --dist loadgroup), so no two job arrays compete for the node.
on_the_cluster = pytest.mark.xdist_group("slurm-cluster")


def _load(pg_url: str, name: str):
    import optuna

    from sweeps.queue.storage import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(resolve_storage(pg_url, ".", name)))


def _squeue(job: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%i %T"], capture_output=True, text=True)
    return [ln.strip() for ln in out.stdout.splitlines() if ln.strip()] if out.returncode == 0 else []


def _logs(study_dir: Path, tail: int | None = 1500) -> str:
    """The Slurm task logs; each cut to its last `tail` characters (for a failure message), or whole (tail None)."""
    return "\n".join(f"--- {p.name}\n{p.read_text()[-tail if tail else 0:]}"
                     for p in sorted((study_dir / "slurm").glob("*_log.*")))


def _wait(predicate, timeout: float, what: str, study_dir: Path, every: float = 0.5):
    t_end = time.time() + timeout
    while time.time() < t_end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{_logs(study_dir)}")


def _launch(grid: Path, root: Path, pg_url: str, capsys, *args: str) -> tuple[str, str]:
    code = main(["sweep", str(grid), "--root", str(root), "--storage", pg_url, "--launcher", "slurm",
                 "--time", "10", *args])
    out = capsys.readouterr().out
    assert code == 0, out
    m = re.search(r"^submitted \d+ workers? as Slurm job (?:array )?(\d+) ", out, re.M)
    assert m is not None, out
    return m.group(1), out


def _running_with_checkpoint(pg_url: str, name: str, study_dir: Path, n: int = 1):
    """[(trial, step of its last.pt)] once ``n`` trials run with a checkpoint past step 0 (each on its own worker),
    else None."""
    from optuna.trial import TrialState

    from sweeps.run.worker import checkpoint_step

    found = []
    for t in _load(pg_url, name).get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        step = checkpoint_step(study_dir / t.user_attrs["run_dir"]) if "worker" in t.user_attrs else 0
        if step > 0:
            found.append((t, step))
    return found if len(found) >= n else None


SHRUNK = ["--set", "data.synthetic.n_train=256", "--set", "data.synthetic.n_test=128", "--set", "eval_batch_size=128"]


@on_the_cluster
def test_slurm_four_worker_array_runs_the_quickstart_exactly_once(slurm, pg_url, pg_study_name, tmp_path, capsys):
    from test_sweeps import assert_exactly_once

    grid = _write_quickstart(tmp_path / "q.yaml", pg_study_name)
    root = tmp_path / "runs"
    job, out = _launch(grid, root, pg_url, capsys, "--workers", "4", "--sbatch", "comment=resnet-ablate-test",
                       *SHRUNK, "--set", "schedule.total=2", "--set", "schedule.milestones=[1]")
    study_dir = root / pg_study_name
    # the URL shell-quoted: its masked password holds '*'
    assert f"follow it: squeue -j {job}" in out and "resnet-ablate studies --storage 'postgresql://" in out
    assert pg_url.split("@")[0].split(":")[-1] not in out          # the password is never printed
    script = (study_dir / "slurm" / f"{job}_submission.sh").read_text()
    for line in ("#SBATCH --array=0-3%4", "#SBATCH --cpus-per-task=1", "#SBATCH --time=10",
                 "#SBATCH --signal=USR2@90", "#SBATCH --comment=resnet-ablate-test"):
        assert line in script
    assert oct((study_dir / "slurm").stat().st_mode & 0o777) == "0o700"
    _wait(lambda: not _squeue(job), JOB_S, f"job array {job} to finish", study_dir, every=1)
    complete = assert_exactly_once(_load(pg_url, pg_study_name), 8)
    assert len(_load(pg_url, pg_study_name).get_trials(deepcopy=False)) == 8   # no retries, no duplicates
    # every trial ran in a worker of an array task, none in this process. (How the 8 two-step trials spread over
    # the tasks is the scheduler's: a task that starts first may take them all, so the spread is not asserted;
    # that all 4 tasks ran is, from their logs below.)
    workers = [t.user_attrs["worker"] for t in complete]
    assert {w["index"] for w in workers} <= set(range(4)) and os.getpid() not in {w["pid"] for w in workers}, workers
    logs = _logs(study_dir, tail=None)
    assert sum(f"array task {i} (restart 0)" in logs for i in range(4)) == 4, _logs(study_dir)
    main(["studies", "--storage", pg_url])
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(pg_study_name))
    assert "8/8 complete, 0 running, 0 failed, 0 waiting" in line


def _one_cell_grid(tmp_path: Path, name: str, seeds: list[int]) -> Path:
    """The quickstart's ResNet-20 cell alone."""
    return _write_quickstart(tmp_path / "one.yaml", name, grid={"model.depth": [20], "model.shortcut": ["identity"]},
                             seeds=seeds)


# The kill tests need trials that are still running seconds after their first checkpoint, whatever the machine's
# speed: 2,048 images at batch 64 (32 steps an epoch) for 4 epochs, with an evaluation (and so a last.pt) every
# quarter epoch. 128 steps of ResNet-20 on 16x16 images take about 10-20 s per task on a 2-core machine; the first
# checkpoint comes after 8 of them.
EPOCHS, SPE, EVAL = 4, 32, 8
LONGER = ["--set", f"data.synthetic.n_train={SPE * 64}", "--set", "data.synthetic.n_test=128",
          "--set", "eval_batch_size=128", "--set", f"eval_every={EVAL / SPE}",
          "--set", f"schedule.total={EPOCHS}", "--set", "schedule.milestones=[3]"]


def _two_tasks_mid_trial(tmp_path: Path, pg_url: str, name: str, capsys) -> tuple[Path, Path, str, list]:
    """A 2-task array of the one-cell grid (seeds 0 and 1, LONGER), once both tasks run a trial with a checkpoint past
    step 0: (the grid, the study's directory, the job, [(trial, step of its last.pt)])."""
    grid = _one_cell_grid(tmp_path, name, [0, 1])
    study_dir = tmp_path / "runs" / name
    job, _ = _launch(grid, study_dir.parent, pg_url, capsys, "--workers", "2", *LONGER)
    running = _wait(lambda: _running_with_checkpoint(pg_url, name, study_dir, n=2), REACH_S,
                    "two running trials with a checkpoint", study_dir)
    return grid, study_dir, job, running


@on_the_cluster
def test_slurm_scancel_mid_trial_then_a_new_launch_completes_it(slurm, pg_url, pg_study_name, tmp_path, capsys,
                                                                 monkeypatch):
    """A 2-task array, both tasks mid-trial: one is suspended (so that it cannot take the other's trial over when it
    goes idle), the other is cancelled. A new launch resumes the cancelled trial; the suspended task, resumed, finishes
    its own. Each unit completes exactly once.

    The suspension lasts as long as the new launch takes (20-60 s idle, minutes on a loaded machine), so the grace
    period is made longer than every wait here: past the 60 s default, Optuna's stale-heartbeat rule failed the
    suspended task's trial (a 4th trial, its resumed copy; seen in CI on a loaded machine)."""
    import sweeps.queue.liveness as liveness
    import sweeps.queue.storage as storage_mod
    from optuna.trial import TrialState
    from test_sweeps import assert_exactly_once

    grace = int(STOP_S + 2 * JOB_S)
    monkeypatch.setenv("RESNET_ABLATE_GRACE_S", str(grace))   # the array's workers (sbatch exports the environment)
    monkeypatch.setattr(storage_mod, "GRACE_PERIOD", grace)    # this process's launches
    monkeypatch.setattr(liveness, "GRACE_PERIOD", grace)

    grid, study_dir, job, running = _two_tasks_mid_trial(tmp_path, pg_url, pg_study_name, capsys)
    root = study_dir.parent
    (victim, _), (other, _) = running
    task, other_task = (f"{job}_{t.user_attrs['worker']['index']}" for t in (victim, other))  # CPU: index = task
    subprocess.run(["scontrol", "suspend", other_task], check=True)
    try:
        subprocess.run(["scancel", task], check=True)
        _wait(lambda: not _squeue(task), STOP_S, f"the cancelled task {task} to end", study_dir)
        t = _load(pg_url, pg_study_name).trials[victim.number]
        # SIGTERM reached the worker: the trial is recorded as interrupted at once, not left RUNNING
        assert t.state == TrialState.FAIL and t.user_attrs["status"] == "interrupted", (t.state, t.user_attrs)

        job2, out = _launch(grid, root, pg_url, capsys, "--workers", "1", *LONGER)
        assert "resuming: 0 done, 1 running elsewhere, 0 waiting, 0 failed, 1 interrupted, 0 missing" in out, out
        _wait(lambda: not _squeue(job2), JOB_S, f"job {job2} to finish", study_dir, every=1)
    finally:
        subprocess.run(["scontrol", "resume", other_task], check=False)
    _wait(lambda: not _squeue(job), JOB_S, f"the suspended task {other_task} to finish", study_dir, every=1)
    study = _load(pg_url, pg_study_name)
    complete = assert_exactly_once(study, 2)
    assert len(study.trials) == 3                                   # the interrupted one and its resumed copy
    (resumed,) = [c for c in complete if c.user_attrs.get("replaces") == victim.number]
    assert resumed.user_attrs["resume"] is True and resumed.user_attrs["resumed_from_step"] > 0
    new_log = (study_dir / "slurm" / f"{job2}_0_log.out").read_text()
    assert f"ran trials [{resumed.number}]" in new_log, new_log      # the new launch's worker completed it
    assert study.trials[other.number].state == TrialState.COMPLETE   # the suspended task's trial was left to it
    print(f"\n[slurm scancel] trial {victim.number} cancelled mid-trial, trial {resumed.number} (new launch) resumed "
          f"it at step {resumed.user_attrs['resumed_from_step']}; trials: "
          f"{[(x.number, x.state.name, x.user_attrs.get('status')) for x in study.trials]}")


@on_the_cluster
def test_slurm_requeue_resumes_running_trials_from_their_checkpoints(slurm, pg_url, pg_study_name, tmp_path, capsys):
    """Two array tasks, each mid-trial: one gets the time-limit warning (SIGUSR2, as ``--signal`` sends it: submitit
    calls ``SlurmWorker.checkpoint`` and requeues the task itself), the other ``scontrol requeue`` (SIGTERM, Slurm
    requeues it). Both trials resume from their last.pt; each unit completes once."""
    from optuna.trial import TrialState
    from test_sweeps import assert_exactly_once

    _, study_dir, job, victims = _two_tasks_mid_trial(tmp_path, pg_url, pg_study_name, capsys)
    tasks = {t.number: f"{job}_{t.user_attrs['worker']['index']}" for t, _ in victims}
    (usr2, _), (requeue, _) = sorted(victims, key=lambda v: v[0].number)
    subprocess.run(["scancel", "--signal=USR2", tasks[usr2.number]], check=True)
    subprocess.run(["scontrol", "requeue", tasks[requeue.number]], check=True)

    released: set[str] = set()

    def requeued_and_released() -> bool:   # Slurm holds a requeued job ~2 min (BeginTime); release it at once
        for task in tasks.values():
            if task not in released and any("PENDING" in x for x in _squeue(task)):
                subprocess.run(["scontrol", "update", f"jobid={task}", "StartTime=now"], capture_output=True)
                released.add(task)
        return len(released) == 2

    _wait(requeued_and_released, STOP_S, "both tasks to be requeued", study_dir, every=0.3)
    _wait(lambda: not _squeue(job), JOB_S, f"the requeued tasks of {job} to finish", study_dir, every=1)
    study = _load(pg_url, pg_study_name)
    complete = assert_exactly_once(study, 2)
    assert len(study.trials) == 4                                   # 2 interrupted + 2 resumed, nothing else
    logs = _logs(study_dir, tail=None)  # whole: a restart's first line can be more than 1,500 characters back
    for victim, seen in victims:
        first = study.trials[victim.number]
        assert first.state == TrialState.FAIL and first.user_attrs["status"] == "interrupted", first.user_attrs
        (done,) = [c for c in complete if c.user_attrs.get("replaces") == victim.number]
        assert done.user_attrs["resume"] is True and done.user_attrs["run_dir"] == first.user_attrs["run_dir"]
        # it resumed from its checkpoint (at or after the one seen before the signal), not from step 0
        assert done.user_attrs["resumed_from_step"] >= seen > 0, (done.user_attrs["resumed_from_step"], seen)
        # one contiguous run of steps in the record: every evaluation once, train steps strictly increasing
        rows = [json.loads(x) for x in
                (study_dir / done.user_attrs["run_dir"] / "metrics.jsonl").read_text().splitlines()]
        evals = [r["step"] for r in rows if r["split"] == "test" and r["name"] == "error"]
        assert evals == list(range(EVAL, SPE * EPOCHS + 1, EVAL)), evals
        train = [r["step"] for r in rows if r["split"] == "train" and r["name"] == "loss"]
        assert train == sorted(set(train)) and train[-1] == SPE * EPOCHS, train
    # the task requeued by scontrol restarts with SLURM_RESTART_COUNT 1; the USR2 task's requeue is submitit's own
    # (checked below: "Requeued job"), whose restart logs did not always show a restart count of 1 in CI
    assert f"array task {tasks[requeue.number].split('_')[1]} (restart 1)" in logs, _logs(study_dir)
    usr2_log = (study_dir / "slurm" / f"{tasks[usr2.number]}_0_log.out").read_text()
    assert "Calling checkpoint method" in usr2_log and "Requeued job" in usr2_log   # submitit's hook and requeue
    for victim, seen in victims:
        how = "USR2 warning" if victim.number == usr2.number else "scontrol requeue"
        done = next(c for c in complete if c.user_attrs.get("replaces") == victim.number)
        print(f"\n[slurm requeue] trial {victim.number} ({how}): checkpoint at step {seen} before the signal, "
              f"trial {done.number} resumed at step {done.user_attrs['resumed_from_step']}")
    print(f"[slurm requeue] trials: {[(x.number, x.state.name, x.user_attrs.get('status')) for x in study.trials]}")


def test_docs_launcher_section_parses():
    text = (ROOT / "docs" / "sweeps.md").read_text()
    block = text[text.index("launcher:\n  slurm:"):].split("```")[0]
    cfg = parse_launcher(yaml.safe_load(block)["launcher"], {"sbatch": {}})
    assert (cfg.partition, cfg.time_min, cfg.cpus_per_worker, cfg.gpus_per_worker, cfg.mem) == ("gpu", 240, 8, 1, "32G")
    assert cfg.sbatch == {"account": "abc", "qos": "high"} and cfg.setup == ["module load cuda"]
    flags = parse_launcher(None, {"partition": "gpu", "gpus_per_worker": 1, "cpus_per_worker": 8, "mem": "32G",
                                  "time": "04:00:00", "sbatch": {"account": "abc"}})   # the docs' command line
    assert f"(each: {flags.describe()})" in text


def test_both_launchers_have_the_one_interface_and_validate_before_anything_is_written(tmp_path):
    """``sweeps.launch.launchers``: the local and the Slurm launcher answer the same members; what they refuse is
    refused by ``validate`` (before a study or folder exists), and an unknown name by ``make_launcher``."""
    members = [m for m in vars(Launcher) if not m.startswith("_")] + list(Launcher.__annotations__)
    for cls in LAUNCHER_TYPES.values():
        assert all(hasattr(cls, m) for m in members), cls
    assert isinstance(make_launcher("local"), LocalLauncher) and isinstance(make_launcher("slurm"), SlurmLauncher)
    assert make_launcher("local").waits and not make_launcher("slurm").waits
    with pytest.raises(ConfigError, match="unknown launcher 'pbs'"):
        make_launcher("pbs")
    spec = parse_grid({"study": "l", "base": {"model": {"depth": 8}}}, check_cells=False)
    ref = resolve_storage(None, tmp_path, "l")
    with pytest.raises(ConfigError, match="--shared-fs only applies to --launcher slurm"):
        make_launcher("local", shared_fs=True).validate(spec, ref, devices=None, dry=True)
    with pytest.raises(ConfigError, match="local journal file"):
        make_launcher("slurm").validate(spec, ref, devices=None, dry=True)
    assert make_launcher("local").device_flag("cuda:1") == "cuda:1" and make_launcher("local").dry_note(2) is None
    assert not list(tmp_path.iterdir())
