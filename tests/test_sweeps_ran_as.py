"""A study never mixes precisions: `precision: auto` resolves per machine, and a launch or worker on a machine where
it resolves otherwise than the study's trials ran is refused in one line, unless the grid pins it."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from test_sweeps import journal_study, write_grid

from resnet_core import devices
from resnet_core.cli import main
from resnet_core.errors import ConfigError
from sweeps.queue.storage import resolve_storage
from sweeps.run.worker import WorkerSpec, run_worker

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def test_auto_precision_resolving_otherwise_on_another_machine_is_refused_unless_pinned(tmp_path, monkeypatch,
                                                                                       capsys):
    root = tmp_path / "runs"
    args = ["--root", str(root), "--workers", "1", "--set", "precision=auto"]
    one = write_grid(tmp_path / "g.yaml", "mix", grid={"model.shortcut": ["identity"]}, seeds=[0])
    with monkeypatch.context() as m:   # machine A: a CPU with native bf16, where auto is bf16
        m.setattr(devices, "cpu_has_native_bf16", lambda: True)
        assert main(["sweep", str(one), *args]) == 0
    study = journal_study(root, "mix")
    assert [t.user_attrs["precision"] for t in study.get_trials()] == ["bf16"]
    capsys.readouterr()

    # machine B (this one, no native bf16: auto is fp32) extends the study by a seed: refused before anything runs
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    two = write_grid(tmp_path / "g.yaml", "mix", grid={"model.shortcut": ["identity"]}, seeds=[0, 1])
    for extra in ([], ["--dry-run"]):
        assert main(["sweep", str(two), *args, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert "precision: auto resolves to fp32 on cpu here" in err and "cell model.shortcut=identity" in err, err
        assert "ran as bf16;" in err, err
        assert "--set precision=bf16" in err and len(err.splitlines()) == 1, err
    assert len(study.get_trials()) == 1

    # a worker started on machine B (a Slurm node, another launch's --storage) checks on its own machine
    ref = resolve_storage(None, root, "mix")
    with pytest.raises(ConfigError, match="resolves to fp32 on cpu here"):
        run_worker(WorkerSpec("mix", ref, str(root / "mix"), "cpu"))

    # pinned to what the study ran as, it is the same experiment: it runs, in bf16
    assert main(["sweep", str(two), "--root", str(root), "--workers", "1", "--set", "precision=bf16"]) == 0
    assert [t.user_attrs["precision"] for t in study.get_trials()] == ["bf16", "bf16"]
    capsys.readouterr()
    # pinned to another precision, it is another experiment
    assert main(["sweep", str(two), "--root", str(root), "--set", "precision=fp32"]) == 2
    assert "precision: fp32 resolves to fp32 on cpu here" in capsys.readouterr().err


def test_a_cell_already_mixed_is_noted_in_its_result_line():
    from types import SimpleNamespace

    from sweeps.queue.ran_as import mixed_note

    def trial(**attrs):
        return SimpleNamespace(user_attrs=attrs)

    assert mixed_note([trial(precision="bf16"), trial(precision="bf16")]) is None
    # a bf16 run the fast-path guard replayed in fp32 ran as bf16
    replayed = trial(precision="fp32", precision_changed={"from": "bf16", "to": "fp32"})
    assert mixed_note([trial(precision="bf16"), replayed]) is None
    assert mixed_note([trial(precision="bf16"), trial(precision="fp32"), trial(precision="bf16")]) == \
        "MIXED precision: 2 in bf16, 1 in fp32"


def test_a_cell_runs_as_its_first_completed_trial_ran_not_as_a_stray_attempt():
    """The Fig. 6 study's case: its cells ran bf16 on a machine with native bf16; on one without, an fp32 attempt
    was interrupted (plain-20 seed 3) and one resumed run finished in fp32 (ResNet-56 seed 2). Neither may license
    fp32 for the cell's next trials."""
    from types import SimpleNamespace

    from sweeps.queue.ran_as import cell_precision

    def trial(number, state, **attrs):
        return SimpleNamespace(number=number, state=SimpleNamespace(name=state), user_attrs=attrs)

    interrupted_fp32 = trial(5, "FAIL", precision="fp32")
    assert cell_precision([interrupted_fp32, trial(1, "COMPLETE", precision="bf16")]) == "bf16"
    mixed = [trial(9, "COMPLETE", precision="fp32"), trial(0, "COMPLETE", precision="bf16"),
             trial(3, "COMPLETE", precision="bf16")]
    assert cell_precision(mixed) == "bf16"
    assert cell_precision([interrupted_fp32]) is None       # nothing completed: nothing to keep
    assert cell_precision([trial(2, "COMPLETE")]) is None   # a study from before precisions were recorded


def _enqueued(tmp_path, monkeypatch, study: str, precision: str):
    """A fresh study of one cell, seeds 0 and 1, enqueued by a launch whose worker is held back: its WorkerSpec."""
    import io

    from sweeps.launch import launchers, sweep

    grid = write_grid(tmp_path / "g.yaml", study, grid={"model.shortcut": ["identity"]}, seeds=[0, 1])
    held: list = []
    with monkeypatch.context() as m:
        m.setattr(launchers, "run_worker", lambda ws, **kw: held.append(ws) or SimpleNamespace(ran=0))
        sweep.run_sweep(grid, workers=1, devices="cpu", root=tmp_path / "runs", fuse="off",
                        overrides=[f"precision={precision}"], out=io.StringIO(), err=io.StringIO())
    assert len(held) == 1
    return held[0]


def _train_as(monkeypatch, native_bf16: bool):
    """``engine.train`` on a machine whose CPU has (or lacks) native bf16, where auto is bf16 (or fp32)."""
    from resnet_core import engine

    def train(cfg, run_dir, **kw):
        monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native_bf16)
        return engine.train(cfg, run_dir, **kw)
    return train


@pytest.mark.parametrize("precision", ["auto", "bf16"])
def test_two_machines_that_start_a_fresh_cell_at_once_never_mix_precisions(tmp_path, monkeypatch, precision):
    """Machine A (native bf16) takes seed 0 of a fresh cell; while it trains, none of the cell's trials has completed
    and machine B (no native bf16: auto is fp32) starts a worker on the same storage. B is refused in one line and A
    runs the cell in bf16. Pinned to bf16, B runs its seed as bf16 beside A."""
    from dataclasses import replace

    ws = _enqueued(tmp_path, monkeypatch, "race", precision)
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    refused: list[str] = []

    def machine_a(cfg, run_dir, **kw):
        if not refused and cfg["seed"] == 0:   # A holds seed 0, running: machine B's worker starts now
            monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)   # machine B: auto is fp32
            try:
                run_worker(replace(ws, index=1), train=_train_as(monkeypatch, False))
                refused.append("")
            except ConfigError as e:
                refused.append(str(e))
        return _train_as(monkeypatch, True)(cfg, run_dir, **kw)

    run_worker(ws, train=machine_a)
    study = journal_study(tmp_path / "runs", "race")
    ran = sorted((t.user_attrs["seed"], t.user_attrs["precision"]) for t in study.get_trials())
    assert ran == [(0, "bf16"), (1, "bf16")], ran
    if precision == "auto":
        assert len(refused) == 1 and len(refused[0].splitlines()) == 1, refused
        assert "precision: auto resolves to fp32 on cpu here" in refused[0], refused
        assert "run as bf16 (trial 0 started as bf16 and is running)" in refused[0], refused
        assert "--set precision=bf16" in refused[0], refused
    else:
        assert refused == [""]
        assert [t.user_attrs["worker"]["index"] for t in study.get_trials()] == [0, 1]   # B ran seed 1


@pytest.mark.parametrize("kind", ["journal", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_of_two_workers_that_both_started_the_first_to_take_a_trial_decides_until_it_ends(tmp_path, monkeypatch,
                                                                                          request, kind):
    """Both workers passed their start check (nothing ran yet); the first to take a trial claims the cell's
    precision under the claim lock, and the second is refused as it goes to take one. A claim ends with its trial:
    once it failed without completing, the other machine may claim the cell. On each storage."""
    from optuna.trial import TrialState
    from test_sweeps import new_study

    from sweeps.queue.liveness import worker_record
    from sweeps.queue.packing import Packing, claim_group
    from sweeps.queue.ran_as import check_ran_as

    name, url = "race2", None
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'race.db'}"
    elif kind == "postgresql":
        url, name = request.getfixturevalue("pg_url"), request.getfixturevalue("pg_study_name")
    spec, ref, storage, study, study_dir = new_study(tmp_path, name, url, grid={"model.shortcut": ["identity"]},
                                                     seeds=[0, 1])

    def take(native_bf16: bool):
        monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native_bf16)
        return claim_group(study, storage, ref, spec, study_dir, Packing(1, "cpu"), worker=worker_record(0, "cpu"))

    for native in (True, False):   # both machines start: neither sees a trial of the cell
        monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native)
        check_ran_as(spec, study.get_trials(deepcopy=False), ["cpu"], lambda t: False)
    first = take(True)
    with pytest.raises(ConfigError, match=r"resolves to fp32 on cpu here, .* run as bf16 \(trial 0 started as bf16"):
        take(False)
    trials = {t.number: t for t in study.get_trials()}
    assert trials[0].user_attrs["worker"]["precision"] == "bf16" and trials[1].state == TrialState.WAITING
    storage.set_trial_state_values(first[0], TrialState.FAIL)   # A's attempt crashed before completing
    second = take(False)
    assert len(second) == 1 and storage.get_trial(second[0]).user_attrs["worker"]["precision"] == "fp32"


def test_a_running_claim_holds_a_cell_while_its_worker_lives_and_a_completed_trial_beyond():
    from sweeps.queue.ran_as import running_claim

    def trial(number, state, **attrs):
        return SimpleNamespace(number=number, state=SimpleNamespace(name=state), user_attrs=attrs)

    alive = lambda t: False   # noqa: E731
    running_bf16 = trial(3, "RUNNING", worker={"pid": 1, "precision": "bf16"})
    running_fp32 = trial(5, "RUNNING", worker={"pid": 2, "precision": "fp32"})
    assert running_claim([running_fp32, running_bf16], alive) == ("bf16", 3)       # the earliest still running
    assert running_claim([running_bf16, running_fp32], lambda t: t.number == 3) == ("fp32", 5)   # 3's worker died
    failed = trial(1, "FAIL", worker={"pid": 3, "precision": "bf16"})
    assert running_claim([failed], alive) is None                                   # ended without completing
    assert running_claim([trial(0, "RUNNING", worker={"pid": 4})], alive) is None   # taken before claims existed


def test_a_launch_whose_devices_resolve_auto_to_two_precisions_is_refused(tmp_path, monkeypatch):
    """A GPU and a CPU without native bf16 in one launch (--devices cpu,cuda:0): its workers would start the cells
    in bf16 and fp32 at once; the launch is refused before anything runs, and pinned it runs on both as one."""
    from sweeps.queue.ran_as import check_ran_as
    from sweeps.spec.grid import load_grid

    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    grid = write_grid(tmp_path / "g.yaml", "two", grid={"model.shortcut": ["identity"]}, seeds=[0])
    with pytest.raises(ConfigError, match=r"^precision: auto resolves to fp32 on cpu, bf16 on cuda:0 here: .* "
                                          r"cell model.shortcut=identity; pin it"):
        check_ran_as(load_grid(grid), [], ["cpu", "cuda:0"])
    check_ran_as(load_grid(grid, ["precision=bf16"]), [], ["cpu", "cuda:0"])
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    check_ran_as(load_grid(grid), [], ["cpu", "cuda:0"])


def test_a_trial_the_guard_moved_from_bf16_to_fp32_keeps_its_cell_in_bf16(tmp_path, monkeypatch, capsys):
    """Where the fast-path guard found a cell's bf16 step disagreeing with the reference it went on in fp32, and the
    record said only `precision: fp32`: the cell then ran as fp32, so the next seed, resolving to bf16, was refused
    and the sweep stopped with exit 2 part-way. The run records the change (``precision_changed``, as a replay
    does), so it counts as the bf16 it resolved to, and every seed runs (each guarded the same way)."""
    from resnet_core.fast_path import FastPath
    from sweeps.queue.ran_as import trial_precision

    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)     # auto: bf16 on this CPU
    original = FastPath._step

    def bf16_wrong(self, x, y):                       # the autocast step's gradients are off (a bf16 kernel fault)
        original(self, x, y)
        if self.amp is not None:
            for p in self.model_for_state().parameters():
                p.grad.mul_(3.0)

    monkeypatch.setattr(FastPath, "_step", bf16_wrong)
    grid = write_grid(tmp_path / "g.yaml", "guarded", grid={"model.shortcut": ["identity"]}, seeds=[0, 1])
    root = tmp_path / "runs"
    with pytest.warns(UserWarning, match="disagreed with the eager reference"):
        code = main(["sweep", str(grid), "--root", str(root), "--workers", "1", "--set", "precision=auto",
                     "--set", "fast=eager", "--set", "channels_last=false"])
    assert code == 0, capsys.readouterr().err
    trials = journal_study(root, "guarded").get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for t in trials:
        change = t.user_attrs["precision_changed"]
        assert (t.user_attrs["precision"], change["from"], change["to"]) == ("fp32", "bf16", "fp32"), change
        assert change["at_step"] == 1 and change["reason"].startswith("the fast-path guard: eager, bf16 disagreed")
        assert trial_precision(t.user_attrs) == "bf16"
