"""A study never mixes precisions: `precision: auto` resolves per machine, and a launch or worker on a machine where
it resolves otherwise than the study's trials ran is refused in one line, unless the grid pins it."""
from __future__ import annotations

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
