"""Bad input and damaged state, by kind (issue 18): every mistake is a one-line error (exit 2) before anything is
written, and no state one crash can leave behind makes a study unreadable.

1. values parsed and typed in one place · 2. a study never mixes two experiments · 3. storage and files survive
crashes, full disks and concurrent starts · 4. exit codes and signals tell the truth.
"""
from __future__ import annotations

import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

optuna = pytest.importorskip("optuna")
from optuna.trial import TrialState  # noqa: E402

from resnet_core.cli import main  # noqa: E402
from resnet_core.engine import train  # noqa: E402
from resnet_core.errors import ConfigError  # noqa: E402
from resnet_core.overrides import apply_overrides, get_dotted, parse_assignment  # noqa: E402
from resnet_core.record import read_summary  # noqa: E402
from resnet_core.run_config import RunConfig, load_run_config  # noqa: E402

from run_configs import tiny_run  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
TINY = tiny_run()


# -- helpers ----------------------------------------------------------------------------------------------------
def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """``python -m resnet_core ARGS`` from the repository root, as a user runs it."""
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "resnet_core", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=env)


def main_code(argv: list[str]) -> int:
    """``main(argv)`` in this process, with argparse's refusal (a SystemExit) as its exit code."""
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code)


def assert_one_line_error(code: int, err: str, *words: str) -> str:
    """Exit code 2, exactly one line on stderr, starting 'error:', no traceback, naming every word."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every path under ``folder`` with its inode, modification time and (files) bytes: a write shows even within
    one tick of the file system's clock (mtimes alone missed a rewrite in the same tick: a coarse clock, a fast
    machine)."""
    def state(p: Path) -> tuple:
        st = p.stat()
        return st.st_ino, st.st_mtime_ns, p.read_bytes() if p.is_file() else None

    return {str(p): state(p) for p in folder.rglob("*")} if folder.exists() else {}


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def grid_file(path: Path, study: str, **kw: Any) -> Path:
    d = {"study": study, "base": kw.pop("base", TINY), "seeds": kw.pop("seeds", [0]), **kw}
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


def _sweep(tmp_path: Path, study: str, grid: dict, *extra: str, **kw: Any) -> int:
    path = grid_file(tmp_path / f"{study}.yaml", study, grid=grid, **kw)
    return main(["sweep", str(path), "--root", str(tmp_path / "runs"), "--workers", "1", "--wandb", "off", *extra])


def _trials(tmp_path: Path, study: str) -> list[Any]:
    from sweeps.queue.storage import StorageRef, open_storage

    path = str(tmp_path / "runs" / study / "optuna.journal")
    return optuna.load_study(study_name=study, storage=open_storage(StorageRef("journal", path, path),
                                                                      read_only=True)).trials


@pytest.fixture(scope="module")
def two_cell_study(tmp_path_factory) -> Path:
    """A finished study of the cells model.depth=8 and model.depth=14 (one seed), copied by each test."""
    tmp = tmp_path_factory.mktemp("twocell")
    assert _sweep(tmp, "ren", {"model.depth": [8, 14]}) == 0
    return tmp / "runs"


# == 1. values are parsed and typed in one place =================================================================
def test_yaml_1_2_floats_read_the_same_from_a_file_and_from_set(tmp_path):
    cfg = write_yaml(tmp_path / "run.yaml", "optim: {weight_decay: 5e-4, lr: 1E-1}\n"
                                            "schedule: {name: cosine, min_lr: 1e-5}\n")
    from_file = load_run_config(cfg)
    from_set = load_run_config(None, ["optim.weight_decay=5e-4", "optim.lr=1E-1", "schedule.name=cosine",
                                      "schedule.min_lr=1e-5"])
    assert from_file.optim.weight_decay == from_set.optim.weight_decay == pytest.approx(5e-4)
    assert isinstance(from_file.schedule.min_lr, float) and from_file.schedule.min_lr == pytest.approx(1e-5)
    assert from_file.to_dict() == from_set.to_dict()
    steps = write_yaml(tmp_path / "steps.yaml", "schedule: {name: multistep, total: 3e2, milestones: [1e2, 2e2]}\n")
    from_file = load_run_config(steps)
    from_set = load_run_config(None, ["schedule.total=3e2", "schedule.milestones=[1e2, 2e2]"])
    assert from_file.schedule.milestones == from_set.schedule.milestones == [100.0, 200.0]
    assert parse_assignment("model.depth=20") == ("model.depth", 20)  # ints stay ints
    assert parse_assignment("name=1e5x") == ("name", "1e5x")          # not a number: a string


def test_grid_with_yaml_1_2_floats_validates_and_keeps_numbers(tmp_path):
    from sweeps.spec.grid import load_grid

    base = apply_overrides(json.loads(json.dumps(TINY)), [])
    base["optim"]["weight_decay"] = "WD"
    text = yaml.safe_dump({"study": "wd", "base": base, "grid": {"model.depth": [8, 14]}}).replace("WD", "5e-4")
    spec = load_grid(write_yaml(tmp_path / "g.yaml", text))
    assert spec.base["optim"]["weight_decay"] == pytest.approx(5e-4)
    for cell in spec.cells:
        assert RunConfig.from_dict(spec.run_config(cell, 0)).optim.weight_decay == pytest.approx(5e-4)


@pytest.mark.parametrize("assignment, key", [
    ("optim.weight_decay=abc", "optim.weight_decay"),
    ("schedule.min_lr=fast", "schedule.min_lr"),
    ("schedule.min_lr=-1e-5", "schedule.min_lr"),
    ("schedule.milestones=[10, x]", "schedule.milestones"),
    ("schedule.gamma=0", "schedule.gamma"),
    ("optim.momentum=yes", "optim.momentum"),
    ("optim.betas=[0.9]", "optim.betas"),
    ("model.depth=20.5", "model.depth"),
    ("model.width=.nan", "model.width"),
    ("data.synthetic.noise=lots", "data.synthetic.noise"),
    ("channels_last=1", "channels_last"),
    ("label_smoothing=1.5", "label_smoothing"),
    ("name=[1, 2]", "name"),
    ("seed=18446744073709551616", "seed"),   # past torch's seeds (and 2**63 would reuse seed 0's data order)
])
def test_every_typed_field_is_checked_at_load_time(assignment, key):
    with pytest.raises(ConfigError) as e:
        load_run_config(None, [assignment])
    assert key in str(e.value) and "\n" not in str(e.value)


def test_every_seed_of_a_grid_is_checked_not_only_the_first():
    from sweeps.spec.grid import parse_grid

    with pytest.raises(ConfigError, match=r"seeds must be .* to 9223372036854775807"):
        parse_grid({"study": "big", "base": TINY, "seeds": [0, 2**63]})


@pytest.mark.parametrize("assignment, words", [
    ("data.test_augment=yes", ("data.test_augment", "true or false", "'yes'")),   # YAML 1.2: `yes` is a string
    ("data.shuffle=off", ("data.shuffle", "true or false", "'off'")),
    ("probes=on", ("probes", "true or false")),
    ("bn_mode=null", ("bn_mode", "train", "eval_after_first_eval")),                # the allowed values, not a type
    ("best_on=1", ("best_on", "val", "test")),
    ("precision=null", ("precision", "auto", "fp32", "bf16", "fp64")),
    ("optim.name=[sgd]", ("optim.name", "sgd", "adam")),
    ("schedule.unit=1", ("schedule.unit", "iter", "epoch")),
    ("data.loader=false", ("data.loader", "device", "torch")),
    ("model.init=null", ("model.init", "kaiming", "xavier")),
])
def test_a_bad_value_of_a_bool_or_a_choice_names_what_is_allowed(assignment, words, capsys):
    """Values are YAML 1.2 (booleans are true/false only) from `--set` and from a file alike; a value of the wrong
    type for a key with named choices lists the choices, as an unknown name does."""
    key, value = parse_assignment(assignment)
    for load in (lambda: load_run_config(None, [assignment]),
                 lambda: RunConfig.from_dict(apply_overrides(TINY, [assignment]))):
        with pytest.raises(ConfigError) as e:
            load()
        assert all(w in str(e.value) for w in words) and "\n" not in str(e.value), str(e.value)
    assert_one_line_error(main(["train", "--set", assignment, "--print-config"]), capsys.readouterr().err, *words)


def test_yaml_1_2_booleans_from_a_file_and_from_set(tmp_path):
    assert parse_assignment("name=yes") == ("name", "yes") and parse_assignment("name=off") == ("name", "off")
    assert parse_assignment("data.shuffle=false") == ("data.shuffle", False)
    assert parse_assignment("data.shuffle=True") == ("data.shuffle", True)
    with pytest.raises(ConfigError, match="data.test_augment must be true or false, got 'yes'"):
        load_run_config(write_yaml(tmp_path / "run.yaml", "data: {test_augment: yes}\n"))
    assert load_run_config(write_yaml(tmp_path / "ok.yaml", "name: no\ndata: {test_augment: true}\n")).name == "no"


@pytest.mark.parametrize("text, value", [
    ("seed=010", 10),                     # YAML 1.1 (PyYAML): octal 8
    ("seed=0o10", 8), ("seed=0x10", 16), ("seed=1_000", 1000),
    ("data.synthetic.n_train=1:30", "1:30"),   # YAML 1.1: sexagesimal 90 (a string here: refused by its type)
    ("name=2024-01-05", "2024-01-05"),    # YAML 1.1: a date
    ("name=0b101", "0b101"),              # YAML 1.1: binary 5
    ("optim.lr=.5", 0.5), ("optim.lr=1e-3", 0.001),
])
def test_yaml_1_2_integers_and_strings_from_a_file_and_from_set(text, value, tmp_path):
    """A ``--set`` value and a file's value are YAML 1.2 scalars: ``010`` is ten, not YAML 1.1's octal 8."""
    key, got = parse_assignment(text)
    assert got == value and type(got) is type(value)
    if isinstance(value, str) and key != "name":
        return
    section, _, field = key.rpartition(".")
    written = f"{section}: {{{field}: {text.split('=', 1)[1]}}}\n" if section else f"{key}: {text.split('=', 1)[1]}\n"
    from_file = load_run_config(write_yaml(tmp_path / "run.yaml", written)).to_dict()
    from_set = load_run_config(None, [text]).to_dict()
    assert from_file == from_set and get_dotted(from_set, key) == value


def test_a_written_config_reads_back_as_the_same_values():
    """A run's config.yaml (and every printed config) is written by ``dump_yaml``: a string YAML 1.2 reads as a number
    (``'1e5'``, ``'0o17'``, plain strings to PyYAML's own dumper) is quoted, so the file reads back as it was."""
    from resnet_core.values import dump_yaml, load_yaml_text

    config = {"name": "1e5", "data": {"root": "0o17", "path": "010"}, "device": "yes", "seed": 10, "lr": 1e-05,
              "inf": float("inf"), "none": None, "on": True, "list": ["2e3", 0x10, "1:30"]}
    assert load_yaml_text(dump_yaml(config)) == config == yaml.safe_load(dump_yaml(config))   # YAML 1.2 and 1.1


def test_train_resume_with_nothing_to_resume_says_so_and_trains(tmp_path, capsys):
    cfg = write_yaml(tmp_path / "run.yaml", yaml.safe_dump(TINY))
    out = tmp_path / "never-ran"
    assert main(["train", "--config", str(cfg), "--out", str(out), "--resume"]) == 0
    printed = capsys.readouterr().out
    notes = [line for line in printed.splitlines() if "nothing to resume" in line]
    assert len(notes) == 1 and str(out) in notes[0] and "from scratch" in notes[0], printed
    assert read_summary(out)["status"] == "complete"
    assert main(["train", "--config", str(cfg), "--out", str(out), "--resume"]) == 0   # a finished run: no note
    assert "nothing to resume" not in capsys.readouterr().out


def test_cli_bad_typed_value_in_a_file_is_one_line_and_creates_nothing(tmp_path):
    grid = grid_file(tmp_path / "g.yaml", "typed", base={**TINY, "schedule": {**TINY["schedule"], "min_lr": "x"}})
    root = tmp_path / "runs"
    p = cli("sweep", str(grid), "--root", str(root))
    assert_one_line_error(p.returncode, p.stderr, "schedule.min_lr")
    assert not root.exists()


@pytest.mark.parametrize("section, value, words", [
    ("wandb", False, ("wandb must be a mapping", "False", "mode: disabled")),   # was W&B in its default mode: online
    ("grid", False, ("grid must be a mapping", "False")),                       # was a grid of no axes
    ("grid", [], ("grid must be a mapping", "[]")),
    ("extra_cells", False, ("extra_cells must be a list", "False")),
    ("search", [], ("search must be a mapping", "[]")),
    ("objective", 0, ("objective must be a mapping", "0")),
    ("launcher", False, ("launcher must be a mapping", "False")),
    ("launcher", {"slurm": {"sbatch": False}}, ("launcher.slurm.sbatch", "False")),
    ("timeout", float("nan"), ("timeout must be a positive number", "nan")),   # was no timeout
    ("description", ["a"], ("description must be text", "['a']")),             # was stored as the text "['a']"
    ("description", {"a": 1}, ("description must be text", "{'a': 1}")),
])
def test_a_grid_section_of_a_wrong_false_or_empty_value_is_refused_not_read_as_absent(section, value, words, tmp_path,
                                                                                     capsys):
    """Only an absent or null section takes its default: ``wandb: false`` (meant as 'no W&B') or ``grid: []`` is a
    one-line error naming the value, before anything is written."""
    grid = grid_file(tmp_path / "g.yaml", "falsy", **{section: value})
    root = tmp_path / "runs"
    code = main(["sweep", str(grid), "--root", str(root)])
    assert_one_line_error(code, capsys.readouterr().err, *words)
    assert not root.exists()


def test_a_config_no_trial_can_train_is_refused_before_the_study_exists(tmp_path):
    # the ImageNet stem on 16-pixel images leaves 1×1 maps: BatchNorm at batch_size 1 has one value per channel
    base = {**TINY, "data": {"name": "synthetic", "synthetic": {"image_size": 16, "n_train": 64, "n_test": 32}},
            "model": {"depth": 8, "stem": "imagenet"}, "batch_size": 1}
    grid = grid_file(tmp_path / "g.yaml", "stem", base=base)
    root = tmp_path / "runs"
    p = cli("sweep", str(grid), "--root", str(root))
    assert_one_line_error(p.returncode, p.stderr, "cannot train", "batch_size 1", "imagenet")
    assert not root.exists()
    # the same through `train`: nothing written either
    out = tmp_path / "run"
    cfg = write_yaml(tmp_path / "run.yaml", yaml.safe_dump(base))
    assert main(["train", "--config", str(cfg), "--out", str(out)]) == 2
    assert not out.exists()
    # a batch larger than the training set: no full batch, ever
    with pytest.raises(ConfigError, match="batch_size 100"):
        from sweeps.spec.grid import parse_grid
        parse_grid({"study": "b", "base": {**TINY, "batch_size": 100,
                                           "data": {**TINY["data"], "val_size": 64}}})


def test_every_search_value_is_validated_not_only_the_first_combinations():
    from sweeps.spec.grid import parse_grid

    search = {"optim.nesterov": {"choice": [False, True]}, "model.pooling": {"choice": ["avg", "max"]},
              "model.init": {"choice": ["kaiming", "xavier"]}, "model.conv_bias": {"choice": [False, True]},
              "model.zero_init_residual": {"choice": [False, True]}, "probes": {"choice": [True, False]},
              "model.activation": {"choice": ["post", "posst"]}}
    with pytest.raises(ConfigError, match="posst"):
        parse_grid({"study": "s7", "base": TINY, "search": search, "n_trials": 2})
    search["model.activation"] = {"choice": ["post", "pre"]}
    assert len(parse_grid({"study": "s7", "base": TINY, "search": search, "n_trials": 2}).search) == 7


def test_a_huge_grid_is_refused_within_seconds_and_names_the_limit(tmp_path, monkeypatch):
    """Refused from the axes' lengths, before any of its million cells is built or checked (which is what takes
    more than seconds): asserted by making the cell expansion and the cell checks fail, not by a wall-clock limit,
    which a loaded machine can exceed on the first grid parse alone."""
    import sweeps.spec.grid as grid_module
    from sweeps.spec.grid import MAX_CELLS, load_grid

    def no_cells(*a, **k):
        raise AssertionError("cells were built for a grid over the limit")

    monkeypatch.setattr(grid_module, "_expand", no_cells)
    monkeypatch.setattr(grid_module, "_check_cells", no_cells)
    axes = {"optim.lr": [0.01 * (i + 1) for i in range(10)], "optim.momentum": [0.05 * i for i in range(10)],
            "optim.weight_decay": [1e-5 * i for i in range(10)], "label_smoothing": [0.05 * i for i in range(10)],
            "batch_size": list(range(1, 11)), "eval_every": list(range(1, 11))}
    grid = grid_file(tmp_path / "g.yaml", "huge", grid=axes)
    with pytest.raises(ConfigError) as e:
        load_grid(grid)
    assert "1,000,000 cells" in str(e.value) and f"{MAX_CELLS:,}" in str(e.value)


def test_dry_run_of_a_large_grid_summarises_instead_of_listing_every_cell(tmp_path, capsys):
    grid = grid_file(tmp_path / "g.yaml", "wide", grid={"optim.lr": [0.01 * (i + 1) for i in range(40)],
                                                        "model.shortcut": ["none", "identity"]})
    assert main(["sweep", str(grid), "--root", str(tmp_path / "runs"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "axes: 80 cells = optim.lr (40) × model.shortcut (2)" in out
    assert "70 more cells" in out and "optim.lr=0.01,model.shortcut=none" in out
    assert "optim.lr=0.4,model.shortcut=identity" in out and "optim.lr=0.2,model.shortcut=none" not in out
    assert not (tmp_path / "runs").exists()


# == 2. a study never silently mixes two experiments =============================================================
def _create(tmp_path: Path, spec) -> tuple[Any, Any]:
    from sweeps.queue.storage import open_storage, resolve_storage
    from sweeps.queue.study import create_or_load

    ref = resolve_storage(None, tmp_path / "runs", spec.study)
    st = open_storage(ref)
    return create_or_load(st, spec, tmp_path / "runs" / spec.study)


def test_changed_base_is_refused_when_the_base_is_only_valid_with_the_cell_values(tmp_path):
    from sweeps.spec.grid import parse_grid

    base = apply_overrides(json.loads(json.dumps(TINY)), ["model.project_all=true"])  # option C: needs a conv
    grid = {"model.shortcut": ["conv1x1", "conv3x3"]}
    _, created = _create(tmp_path, parse_grid({"study": "optc", "base": base, "grid": grid, "seeds": [0]}))
    assert created
    changed = apply_overrides(json.loads(json.dumps(base)), ["optim.lr=0.2"])
    with pytest.raises(ConfigError, match="different base config .*optim.lr"):
        _create(tmp_path, parse_grid({"study": "optc", "base": changed, "grid": grid, "seeds": [0, 1]}))
    # a new seed with the same base is fine: the cells stay one experiment
    _, created = _create(tmp_path, parse_grid({"study": "optc", "base": base, "grid": grid, "seeds": [0, 1]}))
    assert not created


def test_changed_objective_metric_is_refused(tmp_path):
    from sweeps.spec.grid import parse_grid

    base = {**TINY, "data": {**TINY["data"], "val_size": 32}}
    _create(tmp_path, parse_grid({"study": "obj", "base": base}))
    with pytest.raises(ConfigError, match="objective.metric test_error.*val_error"):
        _create(tmp_path, parse_grid({"study": "obj", "base": base, "objective": {"metric": "val_error"}}))


@pytest.mark.parametrize("search, says", [
    ({"optim.lr": {"log_uniform": [0.001, 0.1]}}, "optim.lr: log_uniform [0.01, 0.1] → log_uniform [0.001, 0.1]"),
    ({"optim.lr": {"uniform": [0.01, 0.1]}}, "optim.lr: log_uniform [0.01, 0.1] → uniform [0.01, 0.1]"),
    ({}, "optim.lr: log_uniform [0.01, 0.1] → none"),
])
def test_a_changed_search_space_is_refused(search, says, tmp_path):
    from sweeps.spec.grid import parse_grid

    old = {"study": "srch", "base": TINY, "search": {"optim.lr": {"log_uniform": [0.01, 0.1]}}, "n_trials": 2}
    _create(tmp_path, parse_grid(old))
    with pytest.raises(ConfigError, match="another search space") as e:
        _create(tmp_path, parse_grid({**old, "search": search, "n_trials": 2 if search else None}))
    assert says in str(e.value)
    _, created = _create(tmp_path, parse_grid({**old, "n_trials": 3}))   # more trials of the same space: fine
    assert not created


def test_an_axis_naming_a_whole_section_merges_into_the_base_section():
    from sweeps.spec.grid import parse_grid

    base = apply_overrides(json.loads(json.dumps(TINY)), ["model.shortcut=none", "model.activation=pre"])
    spec = parse_grid({"study": "sec", "base": base, "grid": {"model": [{"depth": 8}, {"depth": 14}]}})
    for cell, depth in zip(spec.cells, (8, 14)):
        model = RunConfig.from_dict(spec.run_config(cell, 0)).model
        assert (model.depth, model.shortcut, model.activation, model.widths) == (depth, "none", "pre", [4, 8, 8])
    # --set of a mapping merges the same way (one rule)
    assert load_run_config(None, ["model={depth: 14}", "model.shortcut=none"]).model.shortcut == "none"
    assert load_run_config(None, ["model.shortcut=none", "model={depth: 14}"]).model.shortcut == "none"


@pytest.mark.parametrize("grid, extra, words", [
    ({"model.depth": [8, 14]}, [{"model.depth": 8, "model.shortcut": "identity"}], ("model.shortcut",)),  # the default
    ({"optim.lr": [0.05, 0.1]}, [{"optim": {"lr": 0.1}}], ("optim.lr=0.1", 'optim={"lr":0.1}')),
    ({"model": [{"depth": 8}, {"depth": 14}], "model.depth": [8, 14]}, [], ("model",)),     # one axis hides another
])
def test_two_cells_that_run_the_same_config_are_refused(grid, extra, words):
    from sweeps.spec.grid import parse_grid

    with pytest.raises(ConfigError, match="run the same config") as e:
        parse_grid({"study": "twice", "base": TINY, "grid": grid, "extra_cells": extra})
    assert all(w in str(e.value) for w in words), e.value


@pytest.mark.parametrize("grid, extra", [({"optim": [{"lr": 0.1}, {"lr": 0.2}]}, []),
                                         ({"model.depth": [8, 14]}, [{"optim.lr": 0.2}])])
def test_a_searched_key_that_a_cell_also_sets_is_refused(grid, extra):
    from sweeps.spec.grid import parse_grid

    with pytest.raises(ConfigError, match="search key 'optim.lr' is also set by the grid"):
        parse_grid({"study": "both", "base": TINY, "grid": grid, "extra_cells": extra, "n_trials": 1,
                    "search": {"optim.lr": {"uniform": [0.01, 0.1]}}})


def test_train_resume_with_a_changed_config_is_refused_naming_the_keys(tmp_path, capsys):
    cfg = write_yaml(tmp_path / "run.yaml", yaml.safe_dump({**TINY, "name": "r"}))
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(out)]) == 0
    written = (out / "config.yaml").read_text()
    before = snapshot(out)
    capsys.readouterr()
    code = main(["train", "--config", str(cfg), "--out", str(out), "--resume", "--set", "model.depth=14",
                 "--set", "optim.lr=0.1"])
    err = capsys.readouterr().err
    assert_one_line_error(code, err, "model.depth", "optim.lr", "cannot resume")
    assert (out / "config.yaml").read_text() == written and snapshot(out) == before
    # how a run is executed may change: a different eval batch size resumes
    assert main(["train", "--config", str(cfg), "--out", str(out), "--resume", "--set", "eval_batch_size=32"]) == 0


def test_train_into_a_folder_holding_a_run_is_refused_without_resume(tmp_path, capsys):
    """A second run into a finished run's --out replaced its config and summary and appended to its metrics."""
    cfg = write_yaml(tmp_path / "run.yaml", yaml.safe_dump({**TINY, "name": "first"}))
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(out)]) == 0
    before = snapshot(out)
    capsys.readouterr()
    code = main(["train", "--config", str(cfg), "--out", str(out), "--set", "model.depth=14"])
    assert_one_line_error(code, capsys.readouterr().err, f"{out} holds a run (config.yaml, metrics.jsonl",
                          "pass --resume to continue it, or choose another --out")
    assert snapshot(out) == before
    partial = tmp_path / "partial"   # any record file counts, e.g. a run killed before its first checkpoint
    partial.mkdir()
    (partial / "metrics.jsonl").write_text("")
    assert_one_line_error(main(["train", "--config", str(cfg), "--out", str(partial)]), capsys.readouterr().err,
                          "holds a run (metrics.jsonl)")
    assert main(["train", "--config", str(cfg), "--out", str(out), "--resume"]) == 0   # --resume still continues


@pytest.mark.parametrize("name", ["../../x", "", "a/b", ".hidden", "-x"])
def test_a_run_name_is_a_folder_name_as_a_study_name_is(name, tmp_path, monkeypatch, capsys):
    """The name is part of the default run folder (runs/<name>-<time>/): '../../x' wrote outside runs/."""
    monkeypatch.chdir(tmp_path)
    code = main(["train", "--set", f"name={name}", "--set", "device=cpu"])
    assert_one_line_error(code, capsys.readouterr().err, "name must be a name of letters, digits", repr(name))
    assert not list(tmp_path.iterdir()) and not list(tmp_path.parent.glob("x-*"))


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory) -> Path:
    """A finished run on a dataset that is not the default one (12-pixel, 4-class glyphs)."""
    out = tmp_path_factory.mktemp("odd") / "run"
    cfg = apply_overrides(json.loads(json.dumps(TINY)), ["data.synthetic.image_size=12",
                                                         "data.synthetic.num_classes=4", "name=odd"])
    assert train(cfg, out).status == "complete"
    return out


def test_eval_of_a_copied_checkpoint_uses_its_own_dataset(odd_run, tmp_path, capsys):
    assert main(["eval", str(odd_run / "last.pt"), "--device", "cpu"]) == 0
    here = capsys.readouterr().out
    copied = tmp_path / "elsewhere" / "model.pt"
    copied.parent.mkdir()
    shutil.copy(odd_run / "last.pt", copied)
    assert main(["eval", str(copied), "--device", "cpu"]) == 0
    assert capsys.readouterr().out == here and "test: error" in here


def test_eval_of_a_copied_checkpoint_without_a_run_config_refuses(odd_run, tmp_path, capsys):
    state = torch.load(odd_run / "last.pt", weights_only=True)
    del state["run_config"]  # as written before checkpoints carried it
    torch.save(state, tmp_path / "old.pt")
    code = main(["eval", str(tmp_path / "old.pt"), "--device", "cpu"])
    assert_one_line_error(code, capsys.readouterr().err, "no run config", "old.pt")


def test_eval_of_a_random_file_or_a_foreign_state_dict_is_one_line(tmp_path, capsys):
    (tmp_path / "random.pt").write_bytes(os.urandom(512))
    assert_one_line_error(main(["eval", str(tmp_path / "random.pt")]), capsys.readouterr().err, "random.pt",
                          "not a readable")
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "foreign.pt")
    assert_one_line_error(main(["lesion", str(tmp_path / "foreign.pt")]), capsys.readouterr().err, "foreign.pt",
                          "not a resnet-ablate checkpoint")



@pytest.mark.parametrize("command", ["lesion", "probe", "bench"])
@pytest.mark.parametrize("where", ["folder", "under-a-file"])
def test_an_out_file_that_cannot_be_written_is_refused_before_the_work(command, where, odd_run, tmp_path, capsys,
                                                                       monkeypatch):
    """--out a folder, or under a file: one line naming --out, before a table is computed (it failed at the end,
    naming a temporary file)."""
    import resnet_core.bench
    import resnet_core.init_probe
    import resnet_core.lesion

    def never(*args, **kwargs):
        raise AssertionError("the work ran before --out was checked")

    for module, name in ((resnet_core.lesion, "lesion_table"), (resnet_core.init_probe, "probe_depths"),
                         (resnet_core.bench, "run_cpu_bench")):
        monkeypatch.setattr(module, name, never)
    (tmp_path / "a-file").write_text("x")
    out = tmp_path if where == "folder" else tmp_path / "a-file" / "t.csv"
    argv = {"lesion": ["lesion", str(odd_run / "last.pt"), "--device", "cpu"], "probe": ["probe", "--depths", "8"],
            "bench": ["bench", "--device", "cpu"]}[command]
    words = ("is a folder, not a file",) if where == "folder" else ("a-file is a file, not a folder",)
    assert_one_line_error(main(argv + ["--out", str(out)]), capsys.readouterr().err, "--out", str(out), *words)


# == 3. storage and files survive crashes, full disks and concurrent starts ======================================
def _journal_with_study(path: Path, name: str, n: int = 3) -> None:
    from sweeps.queue.storage import StorageRef, open_storage

    study = optuna.create_study(study_name=name, storage=open_storage(StorageRef("journal", str(path), str(path))))
    for i in range(n):
        study.enqueue_trial({}, user_attrs={"unit": f"u{i}"})


def test_a_torn_journal_tail_is_cut_off_under_the_lock_with_a_backup(tmp_path, capsys):
    from sweeps.queue.storage import StorageRef, open_storage

    path = tmp_path / "s" / "optuna.journal"
    path.parent.mkdir()
    _journal_with_study(path, "s")
    good = path.read_bytes()
    with open(path, "ab") as f:
        f.write(b'{"op_code": 5, "worker_id": "x", "trial_id"')  # a crash / full disk mid-append
    st = open_storage(StorageRef("journal", str(path), str(path)))
    err = capsys.readouterr().err
    assert "torn last line" in err and path.read_bytes() == good
    backups = list(path.parent.glob("optuna.journal.torn-*.bak"))
    assert len(backups) == 1 and backups[0].read_bytes().startswith(good) and len(backups[0].read_bytes()) > len(good)
    study = optuna.load_study(study_name="s", storage=st)
    study.enqueue_trial({}, user_attrs={"unit": "u3"})  # appending after the repair keeps the file readable
    assert len(optuna.load_study(study_name="s", storage=open_storage(
        StorageRef("journal", str(path), str(path)), read_only=True)).trials) == 4


@pytest.mark.parametrize("content", [
    b"study: mine\nbase: {}\n",                          # a grid file given as --storage by mistake
    b"hello",                                             # notes without a newline: read as a torn line, cut to 0
    b'{"x": 1}\n',                                        # JSON, but no journal record: Optuna's reader KeyError'd
    b"SQLite format 3\x00" + bytes(range(256)) * 4,      # a database given by its path
], ids=["yaml", "no-newline", "json", "binary"])
def test_a_file_that_is_no_journal_is_refused_and_left_as_it_was(content, tmp_path, capsys):
    """`--storage FILE` naming a file that holds no journal record was "repaired" by a launch: the file was replaced
    by a new journal (the original kept as a .bak) and a study started in it; the dry run said nothing, and a read
    of a JSON line that is no record died in Optuna's reader with a traceback. Every command refuses it in one
    line, before anything is read or written."""
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    grid = grid_file(tmp_path / "g.yaml", "nojournal")
    for argv in (["sweep", str(grid), "--storage", str(path), "--dry-run"],
                 ["sweep", str(grid), "--storage", str(path), "--root", str(tmp_path / "runs"), "--workers", "1",
                  "--wandb", "off"],
                 ["studies", "--storage", str(path)],
                 ["report", "nojournal", "--storage", str(path)]):
        assert_one_line_error(main(argv), capsys.readouterr().err, str(path), "not an Optuna journal")
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.yaml", "notes.txt"]   # no backup, no lock, no runs


def test_a_study_folder_given_as_a_journal_names_its_journal(tmp_path, capsys):
    folder = tmp_path / "runs" / "s"
    folder.mkdir(parents=True)
    _journal_with_study(folder / "optuna.journal", "s")
    assert_one_line_error(main(["studies", "--storage", str(folder)]), capsys.readouterr().err, "is a folder",
                          str(folder / "optuna.journal"))


def test_a_journal_line_of_json_that_is_no_record_is_salvaged(tmp_path, capsys):
    from sweeps.queue.storage import StorageRef, open_storage

    path = tmp_path / "optuna.journal"
    lines = _completed_journal(path, "s", 2)
    path.write_bytes(b"\n".join(lines[:2] + [b'{"x": 1}'] + lines[2:]))
    study = optuna.load_study(study_name="s", storage=open_storage(StorageRef("journal", str(path), str(path)),
                                                                    read_only=True))
    assert [t.value for t in study.trials] == [0.0, 1.0]
    assert "line 3 is damaged" in capsys.readouterr().err


def _completed_journal(path: Path, name: str, n: int = 4) -> list[bytes]:
    """A journal whose study has ``n`` COMPLETE trials (values 0…n-1, each with a ``unit`` attr); its lines."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    study = optuna.create_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(path))))
    study.optimize(lambda t: (t.set_user_attr("unit", f"u{t.number}"), float(t.number))[1], n_trials=n)
    return path.read_bytes().split(b"\n")


def _line_of(lines: list[bytes], op: int, trial: int | None = None) -> int:
    """The index of the first line with ``op_code`` ``op`` (about trial id ``trial``; a create: the trial-th)."""
    hits = [i for i, line in enumerate(lines) if line.startswith(b'{"op_code":%d,' % op)
            and (trial is None or op == 4 or b'"trial_id":%d,' % trial in line)]
    return hits[trial] if op == 4 and trial is not None else hits[0]


def _torn_then_appended(lines: list[bytes]) -> list[bytes]:
    i = _line_of(lines, 8, 2)        # trial 2's unit attr: a crash tore it, the next append joined its line
    return lines[:i] + [lines[i][:25] + lines[i + 1]] + lines[i + 2:]


@pytest.mark.parametrize("damage, lost, unproven, no_unit", [
    (lambda ls: ls[:_line_of(ls, 4, 1)] + [ls[_line_of(ls, 4, 1)][:30] + b"\x00\xff"] + ls[_line_of(ls, 4, 1) + 1:],
     [1], [], []),                                                      # trial 1's create record, its kind readable
    (lambda ls: ls[:_line_of(ls, 4, 1)] + [b"#\x00 unreadable"] + ls[_line_of(ls, 4, 1) + 1:], [1], [], []),
    (lambda ls: ls[:_line_of(ls, 6, 2)] + [b'{"op_code": 6, "broken'] + ls[_line_of(ls, 6, 2) + 1:], [], [2], []),
    (lambda ls: ls[:_line_of(ls, 8, 3)] + [b"\x00" * 40] + ls[_line_of(ls, 8, 3) + 1:], [], [], [3]),
    (_torn_then_appended, [], [], [2]),
], ids=["create-trial", "create-trial-unreadable", "trial-state", "trial-attr", "torn-then-appended"])
def test_a_corrupt_journal_line_keeps_every_trial_the_journal_still_proves(damage, lost, unproven, no_unit, tmp_path,
                                                                            capsys):
    """A lost create record takes its trial (a FAIL placeholder keeps the numbers); a lost state record leaves its
    trial as it was before (RUNNING: its worker is gone, so a sweep resumes it); any other record only itself."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    from sweeps.queue.journal import check_journal

    path = tmp_path / "optuna.journal"
    lines = damage(_completed_journal(path, "s"))
    damaged = b"\n".join(lines)
    path.write_bytes(damaged)
    read = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(check_journal(path)))))
    assert path.read_bytes() == damaged and "reading the" in capsys.readouterr().err   # read-only: nothing written
    check_journal(path, repair=True)
    err = capsys.readouterr().err
    backups = list(tmp_path.glob("optuna.journal.corrupt-*.bak"))
    assert len(backups) == 1 and backups[0].read_bytes() == damaged and str(backups[0]) in err
    for n in lost:
        assert f"trial {n} of study 's' dropped" in err, err
    study = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path))))  # plain Optuna
    for trials in (study.trials, read.trials):
        assert [t.number for t in trials] == [0, 1, 2, 3]          # every later trial keeps its number
        done = {t.number: t.value for t in trials if t.state == TrialState.COMPLETE}
        assert done == {n: float(n) for n in range(4) if n not in lost + unproven}
        assert [t.state for t in trials if t.number in unproven] == [TrialState.RUNNING] * len(unproven)
        assert {t.number: t.user_attrs.get("unit") for t in trials if t.number not in lost} == {
            n: None if n in no_unit else f"u{n}" for n in range(4) if n not in lost}
        assert [t.user_attrs.get("status") for t in trials if t.number in lost] == ["lost"] * len(lost)
    study.enqueue_trial({})            # the rebuilt journal takes appends
    assert len(optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path)))).trials) == 5


def test_a_sweep_salvages_a_corrupt_journal_reports_what_was_dropped_and_carries_on(two_cell_study, tmp_path,
                                                                                      capsys):
    shutil.copytree(two_cell_study, tmp_path / "runs")
    (tmp_path / "runs" / "other").mkdir()
    _journal_with_study(tmp_path / "runs" / "other" / "optuna.journal", "other")
    journal = tmp_path / "runs" / "ren" / "optuna.journal"
    lines = journal.read_bytes().split(b"\n")
    i = _line_of(lines, 4, 1)
    lines[i] = lines[i][:40] + b"\x00"                       # trial 1's create record: the depth-14 cell's trial
    lines[_line_of(lines, 8, 0)] = b'{"op_code": 8, "broken'  # and one attr record of trial 0
    journal.write_bytes(b"\n".join(lines))
    damaged = journal.read_bytes()
    capsys.readouterr()
    assert main(["studies", "--root", str(tmp_path / "runs")]) == 0   # both studies list; the damage is a warning
    cap = capsys.readouterr()
    assert "other: 0/3 complete" in cap.out and "ren: 1/2 complete" in cap.out, cap.out
    assert "lost: trial 1 of 'ren'" in cap.err and journal.read_bytes() == damaged
    assert main(["report", "ren", "--root", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]) == 0
    assert "1 of 2 runs complete" in capsys.readouterr().out
    assert _sweep(tmp_path, "ren", {"model.depth": [8, 14]}) == 0
    cap = capsys.readouterr()
    assert "trial 1 of study 'ren' dropped" in cap.err and "corrupt-" in cap.err, cap.err
    assert "resuming: 1 done" in cap.out and "model.depth=14 seed 0" in cap.out and "2/2 trials done" in cap.out
    assert [b.read_bytes() for b in journal.parent.glob("optuna.journal.corrupt-*.bak")] == [damaged]
    trials = _trials(tmp_path, "ren")
    assert [(t.state.name, t.user_attrs.get("status")) for t in trials] == [
        ("COMPLETE", "complete"), ("FAIL", "lost"), ("COMPLETE", "complete")]
    assert main(["report", "ren", "--root", str(tmp_path / "runs"), "--out", str(tmp_path / "rep2")]) == 0
    assert "2 of 2 runs complete" in capsys.readouterr().out


def _first_launch(url: str, root: str, name: str, ready, go, queue) -> None:
    from sweeps.spec.grid import parse_grid
    from sweeps.queue.storage import open_storage, resolve_storage, study_lock
    from sweeps.queue.study import create_or_load, reconcile

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    spec = parse_grid({"study": name, "base": TINY, "seeds": [0, 1, 2]}, check_cells=False)
    ref = resolve_storage(url, root, name)
    ready.put(os.getpid())
    go.wait()
    try:
        st = open_storage(ref)
        with study_lock(ref, name, st):
            create_or_load(st, spec, Path(root) / name)
            reconcile(optuna.load_study(study_name=name, storage=st), st, spec, Path(root) / name, ref)
        queue.put(["ok"])
    except BaseException as e:  # noqa: BLE001 - report what killed the launcher
        queue.put([f"{type(e).__name__}: {e}"])


@pytest.mark.slow
def test_launchers_started_together_on_a_new_sqlite_database_never_kill_each_other(tmp_path):
    from tests.test_sweeps import release_together

    for attempt in range(2):
        url = f"sqlite:///{tmp_path}/new{attempt}.db"
        results = release_together(_first_launch, (url, str(tmp_path / "runs"), "together"), 3)
        assert all(r == ["ok"] for r in results), results
        study = optuna.load_study(study_name="together", storage=url)
        assert sorted(t.user_attrs["unit"] for t in study.trials) == ["|s0", "|s1", "|s2"]


@pytest.mark.slow
def test_root_under_a_regular_file_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("x")
    grid = grid_file(tmp_path / "g.yaml", "rootfile")
    p = cli("sweep", str(grid), "--root", str(tmp_path / "afile" / "runs"))
    assert_one_line_error(p.returncode, p.stderr, "--root", "afile")


@pytest.mark.parametrize("error, words", [
    (OSError(errno.ENOSPC, "No space left on device", "optuna.journal"), ("no space left", "optuna.journal")),
    (PermissionError(errno.EACCES, "Permission denied", "optuna.journal"), ("cannot write", "optuna.journal")),
    (OSError(errno.EROFS, "Read-only file system", "optuna.journal"), ("cannot write", "read-only")),
])
def test_disk_and_permission_errors_are_one_line(error, words, tmp_path, monkeypatch, capsys):
    import sweeps.launch.sweep

    def fail(*a, **k):
        raise error

    monkeypatch.setattr(sweeps.launch.sweep, "open_storage", fail)
    grid = grid_file(tmp_path / "g.yaml", "disk")
    assert_one_line_error(main(["sweep", str(grid), "--root", str(tmp_path / "runs")]), capsys.readouterr().err,
                          *words)


def test_a_read_only_study_folder_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "runs" / "ro").mkdir(parents=True)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if str(p).endswith("ro") else real(p, mode, **k))
    grid = grid_file(tmp_path / "g.yaml", "ro")
    assert_one_line_error(main(["sweep", str(grid), "--root", str(tmp_path / "runs")]), capsys.readouterr().err,
                          "not writable", "ro")
    assert list((tmp_path / "runs" / "ro").iterdir()) == []


def test_report_leaves_out_a_run_with_a_damaged_summary_and_counts_bad_metric_lines(tmp_path, capsys):
    from reports.study_reader import load_study
    from tests.report_fixtures import make_fake_study

    make_fake_study(tmp_path / "runs", "dmg", lesion=False, probe=False)
    dirs = sorted((tmp_path / "runs" / "dmg" / "trials").iterdir())
    (dirs[0] / "summary.json").write_text("")                        # zero bytes (a full disk)
    text = (dirs[1] / "summary.json").read_text()
    (dirs[1] / "summary.json").write_text(text[: len(text) // 2])     # truncated
    lines = (dirs[2] / "metrics.jsonl").read_text().splitlines(keepends=True)
    lines[3] = '{"step": 1, "spl\n'
    (dirs[2] / "metrics.jsonl").write_text("".join(lines))
    (dirs[3] / "summary.json").unlink()
    (dirs[3] / "summary.json").mkdir()                               # a folder of that name: it stopped the report
    data = load_study("dmg", root=tmp_path / "runs")
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if line.startswith("warning:") and "summary.json" in line]
    assert len(warned) == 3 and "Traceback" not in err
    for d, words in zip(dirs, ("empty summary.json", "truncated", None, "cannot read summary.json (Is a directory)")):
        assert words is None or any(f"{d.name}/summary.json: {words}" in w for w in warned), (words, warned)
    # issue 30: the trials are COMPLETE in the study, so the report counts them with the study's numbers
    assert all("COMPLETE in the study" in w for w in warned)
    assert data.counts()["unreadable"] == 0 and "left out" not in data.status_line()
    for d in (*dirs[:2], dirs[3]):
        row = data.runs[data.runs["run_dir"] == str(d)].iloc[0]
        assert row["status"] == "complete" and row["final_test_error"] == row["value"] > 0
    run = data.runs[data.runs["run_dir"] == str(dirs[2])]
    data.metrics(run["run_dir"].iloc[0] if len(run) else str(dirs[2]))
    assert any("metrics.jsonl: 1 unreadable line skipped (line 4)" in n for n in data.notes)
    (dirs[3] / "metrics.jsonl").unlink()
    (dirs[3] / "metrics.jsonl").mkdir()                              # read around too, not an OSError
    assert data.metrics(str(dirs[3])).empty and any(f"{dirs[3].name}/metrics.jsonl: not a file" in n
                                                    for n in data.notes)


def test_an_unreadable_image_in_an_imagefolder_is_named(tmp_path):
    from PIL import Image

    from resnet_core.data.imagefolder import load_imagefolder

    for split in ("train", "val"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / split / cls / f"{i}.png")
    (tmp_path / "train" / "b" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(ConfigError, match="cannot read image .*broken.png"):
        load_imagefolder(tmp_path, None)


@pytest.mark.parametrize("url, masked", [
    ("postgresql://alice:p@ss@w0rd@db-host:5432/resnet", "postgresql://alice:***@db-host:5432/resnet"),
    ("postgresql+psycopg2://alice:s3cr@t@db-host/resnet?sslmode=require",
     "postgresql+psycopg2://alice:***@db-host/resnet?sslmode=require"),
    ("mysql://alice:a:b@Zq@db/x", "mysql://alice:***@db/x"),
])
def test_a_password_with_a_raw_at_sign_never_leaks(url, masked):
    from sweeps.queue.access import mask_url as _redact  # the reader masks with the study format's rule
    from sweeps.queue.storage import mask_url, resolve_storage

    assert mask_url(url) == _redact(url) == masked
    if url.startswith("mysql"):
        assert resolve_storage(url, "runs", "s").display == masked


# == 4. exit codes and signals tell the truth ====================================================================
def test_sweep_exit_codes():
    from sweeps.launch.sweep import sweep_exit_code

    assert sweep_exit_code(0, 0, 0) == 0      # all complete
    assert sweep_exit_code(0, 2, 0) == 1      # some failed or diverged
    assert sweep_exit_code(1, 0, 0) == 1      # a worker crashed
    assert sweep_exit_code(0, 0, 3) == 3      # not finished (timeout)
    readme = (REPO / "README.md").read_text()
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 3 |", "| 130 |", "| 143 |"):
        assert code in readme, code


def test_a_sweep_where_every_trial_diverges_exits_1(tmp_path, capsys):
    grid = grid_file(tmp_path / "g.yaml", "div", base=apply_overrides(json.loads(json.dumps(TINY)),
                                                                       ["optim.lr=1e20"]))
    assert main(["sweep", str(grid), "--root", str(tmp_path / "runs"), "--workers", "1", "--wandb", "off"]) == 1
    assert "0/1 trials done, 1 failed" in capsys.readouterr().out


@pytest.mark.slow
def test_sigterm_is_handled_like_ctrl_c(tmp_path):
    base = apply_overrides(json.loads(json.dumps(TINY)), ["schedule.total=100000", "eval_every=5"])
    grid = grid_file(tmp_path / "g.yaml", "term", base=base)
    root = tmp_path / "runs"
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "resnet_core", "sweep", str(grid), "--root", str(root),
                             "--workers", "1", "--wandb", "off"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    summary = root / "term" / "trials" / "base-s0" / "summary.json"
    deadline = time.monotonic() + 600   # seconds when idle (start-up, torch, the first evaluation); minutes loaded
    while not (summary.exists() and (summary.parent / "last.pt").exists()) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    if not summary.exists():
        proc.kill()
        pytest.fail(f"no checkpoint within 600 s: {proc.communicate()}")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "interrupted (SIGTERM)" in err
    # it says what the stop left and how to go on (it ended with a bare "interrupted (SIGTERM)")
    assert ("sweep stopped: 1 trial interrupted (checkpointed where it stopped), 0 complete; the same command "
            "resumes the study") in err, err
    assert read_summary(summary.parent)["status"] == "interrupted"
    assert read_summary(summary.parent)["reason"] == "interrupted (SIGTERM)"   # not "Terminated: signal SIGTERM"
    from sweeps.queue.storage import StorageRef, open_storage

    path = str(root / "term" / "optuna.journal")
    trials = optuna.load_study(study_name="term", storage=open_storage(StorageRef("journal", path, path),
                                                                       read_only=True)).trials
    assert [(t.state, t.user_attrs["status"]) for t in trials] == [(TrialState.FAIL, "interrupted")]


from train_callbacks import InterruptAt  # noqa: E402  (one interrupting callback for the suite)


def _interrupt_and_resume(cfg: dict, run_dir: Path, at: int):
    with pytest.raises(KeyboardInterrupt):
        train(cfg, run_dir, callbacks=[InterruptAt(at)])
    first = read_summary(run_dir)
    return first, train(cfg, run_dir, resume=True)


def test_a_resumed_run_reports_wall_time_and_throughput_of_the_whole_run(tmp_path):
    cfg = apply_overrides(json.loads(json.dumps(TINY)), ["schedule.total=12"])
    first, resumed = _interrupt_and_resume(cfg, tmp_path / "r", 6)
    s = resumed.summary
    assert first["status"] == "interrupted" and s["step"] == 12
    assert s["wall_time_s"] > first["wall_time_s"] > 0
    images = 12 * cfg["batch_size"]  # every image of the whole run, not of the last segment
    assert s["img_per_s"] * s["wall_time_s"] == pytest.approx(images, rel=1e-6)


def test_torch_loader_resume_restores_the_global_rng(tmp_path):
    from resnet_core.record import read_metrics

    cfg = apply_overrides(json.loads(json.dumps(TINY)), [
        "data.loader=torch", "data.num_workers=0", "data.augment=crop_flip", "data.synthetic.n_train=96",
        "schedule.total=9", "batch_size=16", "log_every=1", "eval_every=4"])
    whole = train(cfg, tmp_path / "whole")
    _, resumed = _interrupt_and_resume(cfg, tmp_path / "broken", 4)   # mid-epoch (6 steps an epoch)

    def losses(run_dir: Path) -> list[tuple[int, float]]:
        return [(r["step"], r["value"]) for r in read_metrics(run_dir) if (r["split"], r["name"]) == ("train", "loss")]

    a, b = losses(resumed.run_dir), losses(whole.run_dir)
    assert [s for s, _ in a] == [s for s, _ in b] == list(range(1, 10))
    scale = max(abs(v) for _, v in b)
    for (_, x), (_, y) in zip(a, b):
        assert abs(x - y) <= 1e-6 * scale + 1e-12, (a, b)


def test_main_restores_the_previous_sigterm_handler(tmp_path, capsys):
    before = signal.getsignal(signal.SIGTERM)
    assert main(["sweep", str(grid_file(tmp_path / "g.yaml", "h")), "--dry-run", "--root", str(tmp_path)]) == 0
    assert signal.getsignal(signal.SIGTERM) is before


def test_overrides_leave_the_given_config_unchanged():
    """`apply_overrides` returns a changed copy: a caller's base config (a grid's `base`, a test's template) keeps
    its values, nested sections included (it was changed in place before)."""
    base = {"optim": {"lr": 0.1, "momentum": 0.9}, "model": {"depth": 20}}
    changed = apply_overrides(base, ["optim.lr=0.2", "model={depth: 8}", "seed=3"])
    assert changed == {"optim": {"lr": 0.2, "momentum": 0.9}, "model": {"depth": 8}, "seed": 3}
    assert base == {"optim": {"lr": 0.1, "momentum": 0.9}, "model": {"depth": 20}}


# == 5. issue 30: nothing leaked, nothing silently ignored, nothing lost to one damaged file =====================
# -- kind 1: no credential of a storage URL reaches output, a record, a report or W&B ---------------------------
AT_PASSWORD = "Wx9@Tail7q2LeakMe"      # a raw '@' inside a password


def _url_shapes(pg_url: str, tmp_path: Path) -> dict[str, tuple[str, list[str]]]:
    """Every shape a secret can take in a storage URL → (url, the secrets that must appear nowhere)."""
    from sqlalchemy.engine import make_url

    u = make_url(pg_url)
    host = f"{u.host}:{u.port}/{u.database}"
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"{u.host}:{u.port}:{u.database}:{u.username}:{u.password}\n")
    passfile.chmod(0o600)
    return {
        "userinfo": (pg_url, [u.password]),
        "query": (f"postgresql://{u.username}@{host}?password={u.password}", [u.password]),
        "sslpassword": (f"postgresql://{u.username}@{host}?password={u.password}&sslpassword=SslSecret42x",
                        [u.password, "SslSecret42x"]),
        "passfile": (f"postgresql://{u.username}@{host}?passfile={passfile}", [u.password]),
        "raw-at": (f"postgresql://atuser:{AT_PASSWORD}@{host}", [AT_PASSWORD, "Tail7q2LeakMe"]),
    }


def _grep_tree(root: Path, secrets: list[str]) -> list[str]:
    return [f"{p}: {s}" for p in root.rglob("*") if p.is_file() for s in secrets if s.encode() in p.read_bytes()]


@pytest.mark.postgres
@pytest.mark.xdist_group("pg-role-atuser")   # one pytest-xdist worker: the shapes share the role they create
@pytest.mark.parametrize("shape", ["userinfo", "query", "sslpassword", "passfile", "raw-at"])
def test_no_storage_secret_reaches_any_output_line_or_file(shape, pg_url, tmp_path, capsys):
    import sqlalchemy

    engine = sqlalchemy.create_engine(pg_url)
    with engine.connect() as conn:   # a role whose password holds a raw '@' (the server is a throwaway one)
        exists = conn.execute(sqlalchemy.text("SELECT 1 FROM pg_roles WHERE rolname = 'atuser'")).first()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(sqlalchemy.text(f"{verb} ROLE atuser LOGIN SUPERUSER PASSWORD '{AT_PASSWORD}'"))
        conn.commit()
    engine.dispose()
    url, secrets = _url_shapes(pg_url, tmp_path / "..")[shape]
    study = f"leak-{shape}-{os.getpid()}"
    root = tmp_path / "runs"
    grid = grid_file(tmp_path / "g.yaml", study)
    outputs = [cli("sweep", str(grid), "--root", str(root), "--storage", url, "--workers", "1", "--wandb", "offline",
                   timeout=600)]
    assert outputs[0].returncode == 0, outputs[0].stderr
    capsys.readouterr()
    for args in (["report", study, "--root", str(root), "--storage", url], ["studies", "--storage", url]):
        code = main(args)   # in this process: the sweep above is the subprocess a user runs; these only read
        done = capsys.readouterr()
        outputs.append(subprocess.CompletedProcess(args, code, done.out, done.err))
        assert code == 0, done.err
    assert study in outputs[2].stdout and "***" in outputs[0].stdout + outputs[2].stdout
    assert (root / study / "report" / "table.md").is_file() and list(root.glob(f"{study}/trials/*/wandb/offline-*"))
    printed = "".join(p.stdout + p.stderr for p in outputs)
    assert [s for s in secrets if s in printed] == [], printed
    assert _grep_tree(root, secrets) == []


@pytest.mark.slow
def test_a_failing_connection_with_a_raw_at_password_prints_no_tail_and_leaves_no_folder(tmp_path):
    root = tmp_path / "runs"
    grid = grid_file(tmp_path / "g.yaml", "unreachable")
    url = f"postgresql://alice:{AT_PASSWORD}@127.0.0.1:1/db?sslpassword=SslSecret42x"
    p = cli("sweep", str(grid), "--root", str(root), "--storage", url)
    line = assert_one_line_error(p.returncode, p.stderr, "cannot open storage", "alice:***@127.0.0.1:1")
    for secret in ("Wx9", "Tail7q2LeakMe", "SslSecret42x"):
        assert secret not in p.stdout + line
    assert not (root / "unreachable").exists()


@pytest.mark.parametrize("url, masked", [
    ("postgresql://u@h/db?password=s3cret&sslmode=require", "postgresql://u@h/db?password=***&sslmode=require"),
    ("postgresql://u:pw@h/db?sslpassword=k3y&passfile=/home/u/.pgpass",
     "postgresql://u:***@h/db?sslpassword=***&passfile=***"),
    ("postgresql://u:Wx9@Tail@h:5/db", "postgresql://u:***@h:5/db"),
])
def test_every_secret_of_a_url_is_masked_wherever_text_is_scrubbed(url, masked, monkeypatch):
    from resnet_core.redact import connect_url, scrub
    from resnet_core.tracking import scrub as wandb_scrub
    from sweeps.queue.storage import mask_url, resolve_storage

    assert mask_url(url) == masked == resolve_storage(url, "runs", "s").display
    assert wandb_scrub(f"resnet-ablate sweep g.yaml --storage {url}") == f"resnet-ablate sweep g.yaml --storage {masked}"
    for secret in ("s3cret", "k3y", "Wx9@Tail"):   # a driver's message that echoes a secret
        if secret in url:
            assert scrub(f"failed to resolve host '{secret}@h'", [url]) == "failed to resolve host '***@h'"
    from sqlalchemy.engine import make_url

    if "Wx9@Tail" in url:   # the database gets the whole password, and the host is the host
        assert (make_url(connect_url(url)).password, make_url(connect_url(url)).host) == ("Wx9@Tail", "h")


# -- kind 2: every input takes effect or is refused with one line naming it -------------------------------------
@pytest.mark.parametrize("assignment, words", [
    ("seed=5", ("--set seed=5", "seeds: [5]")),
    ("name=x", ("--set name=x", "--study NAME")),
])
def test_sweep_set_of_a_per_trial_key_is_refused_naming_it(assignment, words, tmp_path, capsys):
    grid = grid_file(tmp_path / "g.yaml", "pertrial")
    code = main(["sweep", str(grid), "--root", str(tmp_path / "runs"), "--set", assignment])
    assert_one_line_error(code, capsys.readouterr().err, *words)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("key", ["seed", "name"])
def test_a_per_trial_key_in_a_grid_base_is_refused(key, tmp_path, capsys):
    grid = grid_file(tmp_path / "g.yaml", "pertrial", base={**TINY, key: 5})
    assert_one_line_error(main(["sweep", str(grid), "--root", str(tmp_path / "runs"), "--dry-run"]),
                          capsys.readouterr().err, f"base.{key}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
@pytest.mark.parametrize("how", ["set", "base"])
def test_device_cuda_without_cuda_is_refused_not_run_on_the_cpu(how, tmp_path, capsys):
    base = {**TINY, "device": "cuda"} if how == "base" else TINY
    grid = grid_file(tmp_path / "g.yaml", "nocuda", base=base)
    extra = ["--set", "device=cuda"] if how == "set" else []
    code = main(["sweep", str(grid), "--root", str(tmp_path / "runs"), *extra])
    assert_one_line_error(code, capsys.readouterr().err, "base.device cuda", "CUDA is not available", "--devices")
    assert not (tmp_path / "runs").exists()


def test_device_in_the_grid_base_takes_effect(monkeypatch):
    import sweeps.run.worker
    from sweeps.spec.grid import parse_grid
    from sweeps.launch.sweep import worker_devices

    monkeypatch.setattr(sweeps.run.worker, "default_devices", lambda: ["cuda:0", "cuda:1"])   # a GPU machine
    assert worker_devices(parse_grid({"study": "d", "base": {**TINY, "device": "cpu"}}), None) == ["cpu"]
    assert worker_devices(parse_grid({"study": "d", "base": {**TINY, "device": "auto"}}), None) == ["cuda:0", "cuda:1"]
    assert worker_devices(parse_grid({"study": "d", "base": {**TINY, "device": "cuda"}}), "cpu") == ["cpu"]


@pytest.mark.parametrize("text, key, line", [
    ("study: d\nbase: {}\ngrid:\n  model.depth: [8, 14]\ngrid:\n  model.shortcut: [none]\n", "grid", 5),
    ("study: d\nbase:\n  optim: {lr: 0.1}\n  model: {depth: 8}\n  optim: {momentum: 0.5}\n", "optim", 5),
    ("study: d\nbase:\n  optim:\n    lr: 0.1\n    momentum: 0.9\n    lr: 0.2\n", "lr", 6),
])
def test_a_key_given_twice_in_any_yaml_mapping_is_refused_with_its_line(text, key, line, tmp_path, capsys):
    grid = write_yaml(tmp_path / "g.yaml", text)
    for argv in (["sweep", str(grid), "--root", str(tmp_path / "runs"), "--dry-run"],
                 ["train", "--config", str(grid), "--out", str(tmp_path / "run")]):
        assert_one_line_error(main(argv), capsys.readouterr().err, f"line {line}", repr(key), "twice")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="given twice"):
        load_run_config(None, ["model={depth: 8, depth: 14}"])
    assert load_run_config(None, ["model={depth: 8}"]).model.depth == 8


def test_yaml_merge_keys_may_still_override():
    from resnet_core.values import load_yaml_text

    assert load_yaml_text("a: &x {lr: 1, m: 2}\nb:\n  <<: *x\n  lr: 3\n")["b"] == {"lr": 3, "m": 2}


def test_a_yaml_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    grid = tmp_path / "g.yaml"
    grid.write_bytes("study: caf\xe9\nbase: {}\n".encode("latin-1"))
    for argv in (["sweep", str(grid), "--root", str(tmp_path / "runs")], ["train", "--config", str(grid)],
                 ["models", "--config", str(grid)]):
        assert_one_line_error(main(argv), capsys.readouterr().err, "g.yaml", "not UTF-8", "line 1")


# -- kind 5: checked early, and said right -----------------------------------------------------------------------
def test_val_size_larger_than_n_train_names_both(tmp_path, capsys):
    base = {**TINY, "data": {**TINY["data"], "val_size": 172}}   # n_train 128
    code = main(["sweep", str(grid_file(tmp_path / "g.yaml", "val", base=base)), "--root", str(tmp_path / "r")])
    line = assert_one_line_error(code, capsys.readouterr().err, "data.val_size 172", "n_train 128")
    # the images left (128 - 172) are never printed as a negative count; the grid's path may hold "pytest-44"
    assert "-44" not in line.replace(str(tmp_path), "") and not (tmp_path / "r").exists()


# -- kind 3: one damaged file costs no more than itself ---------------------------------------------------------
@pytest.mark.parametrize("damage, periodic, resumed_at", [
    ("truncate", True, 8), ("empty", True, 8), ("empty", False, 0)])
def test_a_damaged_last_pt_resumes_from_an_earlier_checkpoint_or_from_scratch(damage, periodic, resumed_at,
                                                                                 tmp_path):
    cfg = apply_overrides(json.loads(json.dumps(TINY)), ["schedule.total=12", "eval_every=3"]
                          + (["checkpoint_every=4"] if periodic else []))
    run = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt):
        train(cfg, run, callbacks=[InterruptAt(9)])
    last = run / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2] if damage == "truncate" else b"")
    with pytest.warns(UserWarning, match="last.pt"):
        result = train(cfg, run, resume=True)
    assert result.status == "complete" and result.summary["step"] == 12
    note = result.summary["resume_note"]
    assert "last.pt" in note and (f"step {resumed_at}" in note if resumed_at else "from scratch" in note)
    steps = [r["step"] for r in read_metrics_rows(run) if (r["split"], r["name"]) == ("train", "loss")]
    assert steps == sorted(set(steps)) and steps[-1] == 12   # no step twice: the record was cut back to the resume


class _StopAtStart:
    """Raise KeyboardInterrupt as the run starts (after its resume), before any step or evaluation."""

    def on_start(self, member: int, config: Any, run_dir: Any) -> None:
        raise KeyboardInterrupt


def test_a_start_over_keeps_no_best_pt_or_lesion_table_of_the_abandoned_attempt(tmp_path):
    """A damaged last.pt and no earlier checkpoint: the run starts over, but the abandoned attempt's best.pt stayed,
    so `eval best.pt` scored weights the run no longer had until (if ever) the new attempt evaluated, and a
    lesion.csv of the replaced weights stayed beside them. The start over removes the one and moves the other aside."""
    cfg = apply_overrides(json.loads(json.dumps(TINY)), ["schedule.total=12", "eval_every=3", "data.val_size=32"])
    run = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt):
        train(cfg, run, callbacks=[InterruptAt(9)])
    assert (run / "best.pt").exists()   # picked on the validation split
    (run / "lesion.csv").write_text("block,test_error\nstage1.0,50.0\n")
    (run / "last.pt").write_bytes(b"")
    with pytest.warns(UserWarning) as said, pytest.raises(KeyboardInterrupt):
        train(cfg, run, callbacks=[_StopAtStart()], resume=True)
    assert not (run / "best.pt").exists() and not (run / "lesion.csv").exists()
    assert (run / "lesion.before-resume.csv").read_text().startswith("block,test_error")
    text = " ".join(str(w.message) for w in said)
    assert "best.pt" in text and "removed" in text and "moved to lesion.before-resume.csv" in text


def read_metrics_rows(run: Path) -> list[dict]:
    from resnet_core.record import read_metrics

    return list(read_metrics(run))


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.slow
@pytest.mark.parametrize("inherited", ["default", "ignored"])
def test_a_graceful_interrupt_checkpoints_the_current_step(tmp_path, inherited):
    """SIGINT between evaluations (eval_every 10,000): last.pt holds the step it stopped at, and a resume goes on
    from there; the reason reads as an interrupt. A command started as a background job of a script (``cmd &``)
    inherits SIGINT ignored; ``kill -INT`` must still stop it as Ctrl-C does."""
    cfg = write_yaml(tmp_path / "run.yaml", yaml.safe_dump(apply_overrides(json.loads(json.dumps(TINY)), [
        "schedule.total=100000", "eval_every=10000", "log_every=2"])))
    run = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "resnet_core", "train", "--config", str(cfg), "--out", str(run)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ignore_sigint if inherited == "ignored" else None)
    deadline = time.time() + 300
    while time.time() < deadline and not ((run / "metrics.jsonl").exists()
                                          and '"step": 6,' in (run / "metrics.jsonl").read_text()):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    summary = read_summary(run)
    state = torch.load(run / "last.pt", weights_only=True)
    assert summary["status"] == "interrupted" and summary["reason"] == "interrupted (Ctrl-C)"
    assert state["step"] == summary["step"] >= 6     # not the last evaluation's (there was none)


def test_stale_checkpoint_temporaries_are_removed_on_the_next_start(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / ".last.pt.abc123.tmp").write_bytes(b"x" * 1000)   # kill -9 during a checkpoint write
    (run / ".summary.json.zz.tmp").write_text("{")
    assert train(TINY, run).status == "complete"
    assert not list(run.glob(".*.tmp"))


@pytest.mark.parametrize("error", [
    RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file data/0: file "
                 "write failed"),
    OSError(errno.ENOSPC, "No space left on device"),
], ids=["torch-enforce", "enospc"])
def test_a_full_disk_is_one_line_and_its_trial_resumes_without_retry_failed(error, tmp_path, monkeypatch, capsys):
    import resnet_core.checkpoint

    def full(*a, **k):
        raise error

    grid = grid_file(tmp_path / "g.yaml", "full")
    argv = ["sweep", str(grid), "--root", str(tmp_path / "runs"), "--workers", "1", "--wandb", "off"]
    with monkeypatch.context() as m:
        m.setattr(resnet_core.checkpoint, "atomic_save", full)
        code = main(argv)
    err = "\n".join(line for line in capsys.readouterr().err.splitlines() if not line.startswith("[sweep]"))
    assert_one_line_error(code, err, "no space left", "run the same command again")   # progress lines aside
    from sweeps.queue.storage import StorageRef, open_storage

    path = str(tmp_path / "runs" / "full" / "optuna.journal")
    trials = optuna.load_study(study_name="full", storage=open_storage(StorageRef("journal", path, path),
                                                                       read_only=True)).trials
    assert [t.user_attrs["status"] for t in trials] == ["interrupted"]
    assert main(argv) == 0   # space freed: the same command finishes it, no --retry-failed
    assert "1/1 trials done" in capsys.readouterr().out


class _FullDiskFile(io.RawIOBase):
    """A file on a disk with ``room`` bytes left: a write past them raises ENOSPC, as the OS does."""

    def __init__(self, fd: int, room: int) -> None:
        self.fd, self.room = fd, room

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        if len(b) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(b)
        return os.write(self.fd, b)

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if not self.closed:
            os.close(self.fd)
        super().close()


def _fill_the_disk(monkeypatch: pytest.MonkeyPatch, room: int = 4096) -> None:
    """Every binary file opened from a descriptor (a checkpoint's temporary file) gets ``room`` bytes: torch.save
    itself meets the full disk, and reacts as the installed torch does."""
    real = os.fdopen

    def fdopen(fd: int, mode: str = "r", *a: Any, **k: Any) -> Any:
        return io.BufferedWriter(_FullDiskFile(fd, room)) if "b" in mode and "w" in mode else real(fd, mode, *a, **k)

    monkeypatch.setattr(os, "fdopen", fdopen)


def test_a_checkpoint_that_fills_the_disk_raises_the_os_error_naming_the_file(tmp_path, monkeypatch):
    from resnet_core.checkpoint import atomic_save
    from resnet_core.signals import disk_full

    _fill_the_disk(monkeypatch)
    with pytest.raises(OSError) as e:
        atomic_save({"x": torch.zeros(100_000)}, tmp_path / "last.pt")   # torch wraps the write's OSError
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "last.pt")
    assert disk_full(e.value) and disk_full(e.value.__cause__)
    assert list(tmp_path.iterdir()) == []   # no checkpoint, no temporary file


def test_a_full_disk_during_training_is_one_line_for_train_and_sweep(tmp_path, monkeypatch, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(TINY))
    with monkeypatch.context() as m:
        _fill_the_disk(m)
        code = main(["train", "--config", str(config), "--out", str(tmp_path / "run")])
    err = "\n".join(line for line in capsys.readouterr().err.replace("\r", "\n").splitlines()
                    if not line.startswith("run: "))   # the progress bar aside
    assert_one_line_error(code, err, "no space left", str(tmp_path / "run" / "last.pt"))
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--resume"]) == 0
    capsys.readouterr()

    grid = grid_file(tmp_path / "g.yaml", "fills", seeds=[0, 1])
    argv = ["sweep", str(grid), "--root", str(tmp_path / "runs"), "--workers", "1", "--wandb", "off"]
    with monkeypatch.context() as m:
        _fill_the_disk(m)
        code = main(argv)
    err = "\n".join(line for line in capsys.readouterr().err.splitlines() if not line.startswith("[sweep]"))
    assert_one_line_error(code, err, "no space left", "last.pt")   # the sweep stops: every trial would fail
    path = str(tmp_path / "runs" / "fills" / "optuna.journal")
    from sweeps.queue.storage import StorageRef, open_storage

    trials = optuna.load_study(study_name="fills", storage=open_storage(StorageRef("journal", path, path),
                                                                        read_only=True)).trials
    assert [t.user_attrs["status"] for t in trials] == ["interrupted", "waiting"]   # not failed: no --retry-failed
    assert main(argv) == 0
    assert "2/2 trials done" in capsys.readouterr().out


@pytest.mark.parametrize("layout, words", [
    ("missing", ("no such folder",)),
    ("empty", ("no train/ folder",)),
    ("no-images", ("train/ has no class folder with an image",)),
    ("empty-class", ("class folder train/z has no image",)),
    ("mixed-sizes", ("images differ in size", "8x8 at train/a/0.png and 9x8 at train/a/1.png", "data.resize")),
    ("split-sizes", ("images differ in size", "8x8 at train/a/0.png and 10x10 at val/a/0.png", "data.resize")),
    # found when a trial loaded the tree: the study existed, every trial failed (or a one-class tree scored 0 %)
    ("one-class", ("train/ has one class folder (a)", "at least 2")),
    ("not-an-image", ("cannot read image", "train/b/notes.png", "UnidentifiedImageError")),
    ("not-an-image-resized", ("cannot read image", "val/a/empty.jpg")),
    ("truncated-jpeg", ("cannot read image", "train/b/cut.jpg", "truncated")),   # a copy that stopped part-way
    ("truncated-png", ("cannot read image", "val/a/cut.png")),
    ("dangling-link", ("train/b/gone.png", "symbolic link", "does not exist")),
    ("fewer-than-a-batch", ("batch_size 32 is larger than the 4 training images",)),
])
def test_a_missing_or_empty_imagefolder_is_refused_before_the_study_exists(layout, words, tmp_path, capsys):
    path = tmp_path / "images"
    if layout != "missing":
        path.mkdir()
    if layout in ("one-class", "not-an-image", "not-an-image-resized", "dangling-link", "fewer-than-a-batch",
                  "truncated-jpeg", "truncated-png"):
        from PIL import Image

        for split in ("train", "val"):
            for cls in ("a",) if layout == "one-class" else ("a", "b"):
                (path / split / cls).mkdir(parents=True)
                Image.new("RGB", (8, 8), (90, 20, 0)).save(path / split / cls / "0.png")
        if layout == "not-an-image":   # a text file with an image's extension
            (path / "train" / "b" / "notes.png").write_text("not a png\n")
        if layout == "not-an-image-resized":   # data.resize set: the header scan ran only to compare sizes
            (path / "val" / "a" / "empty.jpg").write_bytes(b"")
        if layout.startswith("truncated"):   # the header reads, the pixels do not: found only by a trial's load
            noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
            cut = path / ("train/b/cut.jpg" if layout == "truncated-jpeg" else "val/a/cut.png")
            noise.resize((8, 8)).save(cut.with_name("whole" + cut.suffix))   # whole ones of each format pass
            noise.save(cut)
            cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
        if layout == "dangling-link":   # a link into a dataset on a drive no longer mounted: the image was skipped
            (path / "train" / "b" / "gone.png").symlink_to(tmp_path / "unmounted" / "0.png")
        if layout == "fewer-than-a-batch":   # 4 train images, batch_size 32: no full batch in any trial
            for cls in ("a", "b"):
                Image.new("RGB", (8, 8)).save(path / "train" / cls / "1.png")
    if layout == "no-images":
        for split in ("train", "val"):
            (path / split / "a").mkdir(parents=True)
    if layout == "empty-class":  # ImageFolder refuses a class folder without an image: every trial would fail
        from PIL import Image

        for split in ("train", "val"):
            (path / split / "a").mkdir(parents=True)
            (path / split / "z").mkdir()
            Image.new("RGB", (8, 8)).save(path / split / "a" / "0.png")
    if layout in ("mixed-sizes", "split-sizes"):   # loading would fail in every trial; GAP would hide a split's size
        from PIL import Image

        for split, sizes in (("train", [(8, 8), (9, 8) if layout == "mixed-sizes" else (8, 8)]),
                             ("val", [(8, 8) if layout == "mixed-sizes" else (10, 10)])):
            for cls in ("a", "b"):   # classes sorted: a's images are met first
                (path / split / cls).mkdir(parents=True)
                for i, size in enumerate(sizes):
                    Image.new("RGB", size).save(path / split / cls / f"{i}.png")
    base = {**TINY, "data": {"name": "imagefolder", "path": str(path), "augment": "none",
                             **({"resize": 8} if layout in ("not-an-image-resized", "truncated-jpeg", "truncated-png")
                                else {})}}
    grid = grid_file(tmp_path / "g.yaml", "imf", base=base)
    code = main(["sweep", str(grid), "--root", str(tmp_path / "runs")])
    assert_one_line_error(code, capsys.readouterr().err, "data.path", str(path), *words)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("data, words", [
    ({"name": "mnist", "download": False}, ("cannot load mnist from", "data.download is false",
                                            "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte")),
    ({"name": "cifar100", "download": False}, ("cannot load cifar100 from", "cifar-100-python/")),
    ({"name": "cifar10_jpeg", "path": "MISSING"}, ("no JPEG archive at", "cifar10_jpeg.npz")),
], ids=["mnist-no-download", "cifar100-no-download", "jpeg-archive-missing"])
def test_a_dataset_that_is_not_there_is_refused_before_the_study_exists(data, words, tmp_path, capsys):
    """A torchvision set not extracted under data.root with data.download false, or a JPEG archive that is not
    there: the study was created and every trial failed loading it (exit 1). The launch checks that the files are
    there (reading only) and refuses in one line, dry run or not, with nothing written."""
    data = {**data, "root": str(tmp_path / "empty-root")}
    if data.get("path") == "MISSING":
        data["path"] = str(tmp_path / "nowhere" / "cifar10_jpeg.npz")
    base = {**TINY, "data": {**data, "augment": "none"}}
    grid = grid_file(tmp_path / "g.yaml", "absent", base=base)
    for extra in (["--dry-run"], []):
        code = main(["sweep", str(grid), "--root", str(tmp_path / "runs"), *extra])
        assert_one_line_error(code, capsys.readouterr().err, *words)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "empty-root").exists()


def test_a_torchvision_set_to_download_is_fetched_once_before_the_study_and_its_workers(tmp_path, monkeypatch,
                                                                                      capsys):
    """Every worker's first trial downloaded a missing torchvision set into the same data.root at once (torchvision
    writes the archive in place: one worker could read another's half-written file). The launch fetches it once,
    before the study exists; the trials then find it. torchvision's MNIST is a stand-in here (no network)."""
    import torch
    import torchvision.datasets as tvd

    root, study_dir = tmp_path / "data", tmp_path / "runs" / "fetch"
    marker = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    calls = []

    class StandInMNIST:
        def __init__(self, where: str, train: bool, download: bool) -> None:
            calls.append((download, marker.exists(), study_dir.exists()))
            if not marker.exists():
                if not download:
                    raise RuntimeError("Dataset not found")
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.write_bytes(b"")                     # the download
            n = 64 if train else 32
            self.data = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8,
                                      generator=torch.Generator().manual_seed(int(train)))
            self.targets = [i % 10 for i in range(n)]
            self.classes = [str(i) for i in range(10)]

    monkeypatch.setattr(tvd, "MNIST", StandInMNIST)
    base = {**TINY, "data": {"name": "mnist", "root": str(root), "augment": "none"}}
    grid = grid_file(tmp_path / "g.yaml", "fetch", base=base, seeds=[0, 1])
    assert main(["sweep", str(grid), "--root", str(tmp_path / "runs"), "--workers", "1"]) == 0
    assert f"data: downloading mnist into {root} (once, before the workers start)" in capsys.readouterr().out
    downloads = [c for c in calls if not c[1]]
    assert downloads == [(True, False, False)], calls            # one download, before the study folder existed
    assert len(calls) > 2                                        # the trials loaded it after


# -- kind 4: a grid edit that changes who a cell is ---------------------------------------------------------------
@pytest.mark.parametrize("grid, done, to_run", [
    ({"model.depth": [8, 14], "model.pooling": ["avg", "max"]}, 2, 2),    # a new axis with the default's value
    ({"model.depth": [8, 14], "optim.momentum": [0.9, 0.5]}, 2, 2),       # …with the base's value as written
    ({"model": [{"depth": 8}, {"depth": 14}]}, 2, 0),                     # the same cells as a section axis
    ({"model.depth": [8, 14], "model.pooling": ["max"]}, 0, 2),           # new cells: the old ones are left alone
], ids=["default-value", "base-value", "section-axis", "other-value"])
def test_a_grid_edit_that_renames_cells_maps_them_onto_their_trials(grid, done, to_run, two_cell_study, tmp_path,
                                                                     capsys):
    shutil.copytree(two_cell_study, tmp_path / "runs")
    capsys.readouterr()
    assert _sweep(tmp_path, "ren", grid, "--dry-run") == 0
    out = capsys.readouterr().out
    assert f"{done} done, 0 running, 0 failed, {to_run} to run" in out, out


def test_an_axis_added_to_a_finished_study_runs_only_the_new_cells_and_the_report_reads_all(two_cell_study,
                                                                                           tmp_path, capsys):
    from reports.study_reader import load_study

    shutil.copytree(two_cell_study, tmp_path / "runs")
    before = {t.user_attrs["cell"]: t.value for t in _trials(tmp_path, "ren")}
    grid = {"model.depth": [8, 14], "model.pooling": ["avg", "max"]}
    capsys.readouterr()
    assert _sweep(tmp_path, "ren", grid) == 0
    out = capsys.readouterr().out
    assert "model.depth=8 → model.depth=8,model.pooling=avg" in out and "4/4 trials done" in out, out
    trials = _trials(tmp_path, "ren")
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)  # not 6: nothing ran twice
    assert {t.user_attrs["cell"] for t in trials[2:]} == {"model.depth=8,model.pooling=max",
                                                          "model.depth=14,model.pooling=max"}
    assert {t.user_attrs["cell"]: t.value for t in trials[:2]} == before
    assert all(t.params.get("model.pooling") == "max" for t in trials[2:])  # Optuna's params for the new axis
    data = load_study("ren", root=tmp_path / "runs")
    assert len(data.cells) == 4 and list(data.runs["status"]) == ["complete"] * 4
    old = data.runs[data.runs["cell"] == "model.depth=8,model.pooling=avg"].iloc[0]
    assert old["trial"] == 0 and old["value"] == before["model.depth=8"]
    # the same command again runs nothing; dropping the axis again maps the avg cells back
    assert _sweep(tmp_path, "ren", grid) == 0
    assert "resuming: 4 done" in capsys.readouterr().out
    assert _sweep(tmp_path, "ren", {"model.depth": [8, 14]}) == 0
    out = capsys.readouterr().out
    assert "resuming: 2 done" in out and "2 trial(s) of the study belong to cells" in out, out
    assert len(_trials(tmp_path, "ren")) == 4


def test_a_renamed_cell_is_compared_with_what_it_ran_when_the_base_changes(two_cell_study, tmp_path, capsys):
    shutil.copytree(two_cell_study, tmp_path / "runs")
    # the base's depth changes, but the axis sets it in every cell: every cell runs what it ran, under a new id
    base = {**TINY, "model": {**TINY["model"], "depth": 14}}
    assert _sweep(tmp_path, "ren", {"model.depth": [8, 14], "model.pooling": ["avg"]}, base=base) == 0
    assert "resuming: 2 done" in capsys.readouterr().out and len(_trials(tmp_path, "ren")) == 2
    # an extra cell renamed while the base's lr changes: its old trial ran lr 0.05, the renamed cell runs 0.2
    assert _sweep(tmp_path, "mix", {"optim.lr": [0.05]}, extra_cells=[{"model.shortcut": "none"}]) == 0
    base = {**TINY, "optim": {**TINY["optim"], "lr": 0.2}}   # the grid cell sets its lr: it runs what it ran
    capsys.readouterr()
    for flags in (("--dry-run",), ()):
        code = _sweep(tmp_path, "mix", {"optim.lr": [0.05]}, *flags, base=base,
                      extra_cells=[{"model.shortcut": "none", "model.pooling": "avg"}])
        assert_one_line_error(code, capsys.readouterr().err, "different base config", "optim.lr")
    assert len(_trials(tmp_path, "mix")) == 2


def test_a_dry_run_lists_renamed_cells_and_left_alone_trials_as_the_launch_does(two_cell_study, tmp_path, capsys):
    shutil.copytree(two_cell_study, tmp_path / "runs")
    grid = {"model.depth": [8], "model.pooling": ["avg", "max"]}   # depth 14 dropped, pooling added
    capsys.readouterr()
    assert _sweep(tmp_path, "ren", grid, "--dry-run") == 0
    dry = capsys.readouterr().out
    assert _sweep(tmp_path, "ren", grid) == 0
    launch = capsys.readouterr().out
    for line in ("model.depth=8 → model.depth=8,model.pooling=avg",
                 "1 trial(s) of the study belong to cells or seeds no longer in the grid"):
        assert line in dry and line in launch, (line, dry)


def test_a_renamed_cell_that_two_grid_cells_match_is_refused_naming_the_axis(two_cell_study, tmp_path, capsys):
    shutil.copytree(two_cell_study, tmp_path / "runs")
    def state() -> tuple:
        from sweeps.queue.storage import StorageRef, open_storage

        path = str(tmp_path / "runs" / "ren" / "optuna.journal")
        study = optuna.load_study(study_name="ren", storage=open_storage(StorageRef("journal", path, path),
                                                                           read_only=True))
        return len(study.trials), study.user_attrs

    before = state()
    grid = {"model.depth": [8, 14], "model.pooling": ["avg"]}
    extra = [{"model.depth": 8, "model.pooling": "avg", "optim.lr": TINY["optim"]["lr"]}]   # restates the base
    capsys.readouterr()
    for flags in (("--dry-run",), ()):
        code = _sweep(tmp_path, "ren", grid, *flags, extra_cells=extra)
        assert_one_line_error(code, capsys.readouterr().err, "model.depth=8", "optim.lr=0.05", "same config")
    assert state() == before   # refused before the study's cells or trials change


# -- kind 5: two launchers on one study ---------------------------------------------------------------------------
def test_a_launcher_that_finishes_first_names_the_other_launcher_holding_a_trial_and_exits_0(tmp_path, capsys):
    from sweeps.queue.liveness import HOST

    grid = grid_file(tmp_path / "two.yaml", "two", grid={"schedule.total": [100000, 6]})   # trial 0 runs long
    argv = ["sweep", str(grid), "--root", str(tmp_path / "runs"), "--workers", "1", "--wandb", "off"]
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-m", "resnet_core", *argv], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            held = [t for t in (_trials(tmp_path, "two") if (tmp_path / "runs/two/optuna.journal").exists() else [])
                    if t.state == TrialState.RUNNING and "worker" in t.user_attrs]
            if held:
                break
            assert first.poll() is None, "the first launcher stopped early"
            time.sleep(0.3)
        assert held and held[0].number == 0 and held[0].user_attrs["worker"]["pid"] == first.pid
        capsys.readouterr()
        code = main(argv)                 # the second launcher runs trial 1 and finishes while trial 0 still runs
        out = capsys.readouterr().out
        assert first.poll() is None, "the first launcher must still be training"
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=120)
    assert code == 0, out
    assert f"schedule.total=100000 seed 0: held by launcher pid {first.pid} on {HOST}" in out, out
    assert "1/2 trials done, 0 failed, 0 not finished, 1 running in another launcher" in out, out
    assert "run the same command again" not in out


def test_an_int_search_range_is_checked_at_every_value_not_only_its_ends():
    """`model.depth: {int: [8, 20]}` passed (8 and 20 are CIFAR depths) and then failed trial by trial at 9, 13,
    15, …: the range is refused up front, naming the values that cannot run and the ones that can (11 is a
    bottleneck net's 9n+2)."""
    from sweeps.spec.grid import parse_grid

    with pytest.raises(ConfigError) as e:
        parse_grid({"study": "int-range", "base": TINY, "search": {"model.depth": {"int": [8, 20]}}, "n_trials": 3})
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("search model.depth int [8, 20]: 9 of its values cannot run "
                                              "(9, 10, 12, 13, 15, 16, 17, 18, …)"), msg
    assert "depth must be 6n+2" in msg and msg.endswith("`model.depth: {choice: [8, 11, 14, 20]}`"), msg
    spec = parse_grid({"study": "int-ok", "base": TINY, "search": {"optim.lr": {"uniform": [0.01, 0.1]},
                                                                     "batch_size": {"int": [16, 32]}}, "n_trials": 2})
    assert [k.key for k in spec.search] == ["optim.lr", "batch_size"]


# -- kind 6: what `studies` counts ----------------------------------------------------------------------------------
def test_studies_counts_an_interrupted_trial_as_interrupted_like_the_sweep(tmp_path, capsys):
    from sweeps.queue.storage import open_storage, resolve_storage, study_lock
    from sweeps.queue.study import create_or_load, mark_interrupted, reconcile
    from sweeps.spec.grid import load_grid

    spec = load_grid(grid_file(tmp_path / "intr.yaml", "intr"))
    ref = resolve_storage(None, tmp_path / "runs", "intr")
    storage = open_storage(ref)
    with study_lock(ref, "intr", storage):
        study, _ = create_or_load(storage, spec, tmp_path / "runs" / "intr")
        reconcile(study, storage, spec, tmp_path / "runs" / "intr", ref)
    storage.set_trial_state_values(study.trials[0]._trial_id, TrialState.RUNNING)   # a worker took it …
    assert mark_interrupted(storage, study.trials[0], "interrupted: stopped")        # … and was stopped
    capsys.readouterr()
    assert main(["studies", "--root", str(tmp_path / "runs")]) == 0
    line = capsys.readouterr().out
    assert "intr: 0/1 complete, 0 running, 0 failed, 1 interrupted, 0 waiting" in line, line


def test_studies_tells_a_unit_never_enqueued_from_a_waiting_one(tmp_path, capsys):
    """A launch stopped after creating the study but before enqueueing its trials: `studies` counted the units with
    no trial as "waiting", as if a worker could take them; the next launch enqueues them, and `studies` now says so."""
    from sweeps.queue.storage import open_storage, resolve_storage, study_lock
    from sweeps.queue.study import create_or_load, reconcile
    from sweeps.spec.grid import load_grid

    spec = load_grid(grid_file(tmp_path / "unq.yaml", "unq", grid={"model.depth": [8, 14]}))
    ref = resolve_storage(None, tmp_path / "runs", "unq")
    storage = open_storage(ref)
    with study_lock(ref, "unq", storage):
        create_or_load(storage, spec, tmp_path / "runs" / "unq")       # … and stopped here
    capsys.readouterr()
    assert main(["studies", "--root", str(tmp_path / "runs")]) == 0
    line = capsys.readouterr().out
    assert "unq: 0/2 complete, 0 running, 0 failed, 0 waiting, 2 not enqueued (the next launch adds them)" in line, line
    with study_lock(ref, "unq", storage):
        study, _ = create_or_load(storage, spec, tmp_path / "runs" / "unq")
        reconcile(study, storage, spec, tmp_path / "runs" / "unq", ref)
    assert main(["studies", "--root", str(tmp_path / "runs")]) == 0
    line = capsys.readouterr().out
    assert "unq: 0/2 complete, 0 running, 0 failed, 2 waiting   [" in line, line


@pytest.mark.parametrize("flags, words", [
    (("--root", "{tmp}/nowhere"), ("--root", "nowhere: no such folder")),
    (("--storage", "{tmp}/nowhere.journal"), ("journal file not found", "nowhere.journal")),
    (("--storage", "sqlite:///{tmp}/nowhere.db"), ("database file not found", "nowhere.db")),
])
def test_studies_refuses_a_root_or_storage_that_is_not_there(flags, words, tmp_path, capsys):
    """`studies` on a mistyped --root or storage file said "no studies in …" and exit 0 (report refused them)."""
    code = main(["studies", *(f.format(tmp=tmp_path) for f in flags)])
    assert_one_line_error(code, capsys.readouterr().err, *words)
    assert list(tmp_path.iterdir()) == []   # nothing created
    (tmp_path / "empty").mkdir()
    assert main(["studies", "--root", str(tmp_path / "empty")]) == 0   # a folder without studies is an answer
    assert "no studies in" in capsys.readouterr().out


@pytest.mark.parametrize("command, flags, words", [
    ("sweep", ("--root", ""), ("--root", "empty value")),            # was the current folder
    ("sweep", ("--storage", ""), ("--storage", "empty value")),      # was <root>/<study>/optuna.journal
    ("sweep", ("--devices", " "), ("--devices", "empty value")),     # was every GPU, else cpu
    ("sweep", ("--fuse-table", ""), ("--fuse-table", "empty value")),
    ("studies", ("--root", ""), ("--root", "empty value")),
    ("studies", ("--storage", ""), ("--storage", "empty value")),
    ("sweep", ("--storage", "sqlite://"), ("sqlite://", "in-memory", "sqlite:///runs/emptyopt.db")),   # was a
    ("sweep", ("--storage", "sqlite:///:memory:"), (":memory:", "in-memory")),                 # traceback, exit 1
    ("studies", ("--storage", "sqlite://"), ("sqlite://", "in-memory")),
])
def test_an_empty_option_value_or_an_in_memory_database_is_refused_before_anything_is_written(command, flags, words,
                                                                                           tmp_path, capsys):
    """``--root "$RUNS"`` with RUNS unset is no --root; an in-memory SQLite database is gone when its process ends (a
    launch failed in its first worker with 'Record does not exist', after writing owner.json)."""
    grid = grid_file(tmp_path / "g.yaml", "emptyopt")
    args = [str(grid), "--root", str(tmp_path / "runs")] if command == "sweep" else []
    code = main_code([command, *args, *flags, *(["--dry-run"] if command == "sweep" else [])])
    assert_one_line_error(code, capsys.readouterr().err, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.yaml"]
    if command == "sweep" and "sqlite" in flags[1]:   # a launch is refused alike
        assert_one_line_error(main(["sweep", *args, *flags]), capsys.readouterr().err, "in-memory")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["g.yaml"]


def test_studies_counts_every_unit_run_after_a_relaunch_with_a_narrower_grid(tmp_path, capsys):
    """Seeds 0–1, then 0–2, then the first grid again: `studies` said "3/2 complete" (the last launch's grid size)
    where the report says 3 of 3."""
    for seeds in ([0, 1], [0, 1, 2], [0, 1]):
        grid = grid_file(tmp_path / "g.yaml", "narrow", grid={"model.depth": [8]}, seeds=seeds)
        assert main(["sweep", str(grid), "--root", str(tmp_path / "runs"), "--workers", "1", "--wandb", "off"]) == 0
    capsys.readouterr()
    assert main(["studies", "--root", str(tmp_path / "runs")]) == 0
    assert "narrow: 3/3 complete, 0 running, 0 failed, 0 waiting" in capsys.readouterr().out


# -- kind 7: a storage that cannot be opened says why, the same in every command ---------------------------------------
@pytest.mark.parametrize("command", ["studies", "report", "dry-run", "sweep"])
def test_an_unreachable_database_is_the_same_one_line_in_every_command(command, tmp_path, capsys):
    pytest.importorskip("sqlalchemy")
    url = "postgresql://user:Pw7Secret@127.0.0.1:1/db"
    grid = str(grid_file(tmp_path / "g.yaml", "down"))
    argv = {"studies": ["studies", "--storage", url],
            "report": ["report", "down", "--storage", url, "--out", str(tmp_path / "rep")],
            "dry-run": ["sweep", grid, "--storage", url, "--dry-run", "--root", str(tmp_path / "runs")],
            "sweep": ["sweep", grid, "--storage", url, "--root", str(tmp_path / "runs")]}[command]
    code = main(argv)
    out, err = capsys.readouterr()
    line = assert_one_line_error(code, err, "cannot open storage postgresql://user:***@127.0.0.1:1/db")
    assert "connection refused" in line.lower(), line
    assert "Pw7Secret" not in out + err
    assert not (tmp_path / "runs").exists()


# -- kind 8: a study folder holds one study's runs; a dry run refuses as the launch; a refusal writes nothing ----------
def _launch(tmp_path: Path, study: str, *extra: str, root: str = "runs", grid: dict | None = None) -> int:
    grid = grid_file(tmp_path / f"{study}.yaml", study, grid=grid or {"model.depth": [8]})
    return main(["sweep", str(grid), "--root", str(tmp_path / root), "--workers", "1", "--wandb", "off", *extra])


def test_a_second_study_in_another_storage_is_refused_the_first_ones_runs(tmp_path, capsys):
    a, b = tmp_path / "A.journal", tmp_path / "B.journal"
    assert _launch(tmp_path, "own", "--storage", str(a)) == 0
    folder = tmp_path / "runs" / "own"
    record = json.loads((folder / "owner.json").read_text())
    assert record["study"] == "own" and record["storage"] == str(a)
    before = snapshot(folder)
    capsys.readouterr()
    for flags in (("--dry-run",), ()):   # the dry run refuses as the launch does
        code = _launch(tmp_path, "own", "--storage", str(b), "--set", "optim.lr=0.02", *flags)
        assert_one_line_error(code, capsys.readouterr().err, f"{folder} holds the runs of study 'own' in {a}",
                              "another storage", "--storage", "--root")
    assert snapshot(folder) == before and not b.exists()   # refused before anything was written
    # the first study resumes and reports its own runs; another study of that name runs under another root
    assert _launch(tmp_path, "own", "--storage", str(a)) == 0
    assert "resuming: 1 done" in capsys.readouterr().out
    assert _launch(tmp_path, "own", "--storage", str(b), "--set", "optim.lr=0.02", root="runs2") == 0
    capsys.readouterr()
    code = main(["report", "own", "--storage", str(b), "--root", str(tmp_path / "runs"),
                 "--out", str(tmp_path / "rep"), "--no-figures"])
    assert_one_line_error(code, capsys.readouterr().err, f"{folder} holds the runs of study 'own' in {a}",
                          "not this study's runs", "--root")
    assert main(["report", "own", "--storage", str(a), "--root", str(tmp_path / "runs"),
                 "--out", str(tmp_path / "rep"), "--no-figures"]) == 0


def test_a_launch_that_loses_a_fresh_folder_to_another_study_leaves_no_study_behind(tmp_path, capsys, monkeypatch):
    """Two studies' launches start on one new folder at once: the one whose owner record lands second is refused,
    and the study it had just created in its own storage is deleted, so its next launch starts clean."""
    import sweeps.queue.study as study_module

    a, b = tmp_path / "A.journal", tmp_path / "B.journal"
    real_check = study_module.check_owner

    def the_other_launch_wins(study_dir, ref, name, study=None):
        real_check(study_dir, ref, name, study)
        Path(study_dir).mkdir(parents=True, exist_ok=True)   # its owner record lands between the check and ours
        (Path(study_dir) / "owner.json").write_text(json.dumps(
            {"study": name, "study_id": "0" * 32, "storage": str(a), "storage_key": str(a.resolve())}))

    monkeypatch.setattr(study_module, "check_owner", the_other_launch_wins)
    code = _launch(tmp_path, "race", "--storage", str(b))
    assert_one_line_error(code, capsys.readouterr().err, f"holds the runs of study 'race' in {a}",
                          "another storage")
    from sweeps.queue.storage import StorageRef, open_storage

    assert optuna.get_all_study_names(open_storage(StorageRef("journal", str(b), str(b)))) == []
    monkeypatch.undo()
    assert _launch(tmp_path, "race", "--storage", str(b), root="runs2") == 0
    assert "created the study" in capsys.readouterr().out


@pytest.mark.parametrize("target", ["relative", "absolute"])
def test_a_journal_lock_left_by_a_killed_launcher_does_not_block_the_next_launch(target, tmp_path):
    """A launcher SIGKILLed mid-append leaves Optuna's lock, a symlink <journal>.lock → the journal. The journal was
    opened by a relative path (the default --root runs), so the link dangled, Optuna's grace period (which stats
    the journal through it) never ran out, and every later launch waited forever. A dangling lock is removed; a lock
    pointing at the journal is released once the journal has not changed for the grace period (2 s here)."""
    grid = grid_file(tmp_path / "g.yaml", "stale", grid={"model.depth": [8]}, seeds=[0, 1])
    env = {**os.environ, "RESNET_ABLATE_JOURNAL_LOCK_GRACE_S": "2", "WANDB_MODE": "disabled"}
    argv = [sys.executable, "-m", "resnet_core", "sweep", str(grid), "--root", "runs", "--workers", "1",
            "--wandb", "off"]
    first = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    journal = tmp_path / "runs" / "stale" / "optuna.journal"
    os.symlink("runs/stale/optuna.journal" if target == "relative" else str(journal), f"{journal}.lock")
    old = time.time() - 60
    os.utime(f"{journal}.lock", (old, old), follow_symlinks=False)   # left a minute ago
    os.utime(journal, (old, old))
    grown = grid_file(tmp_path / "g.yaml", "stale", grid={"model.depth": [8]}, seeds=[0, 1, 2])  # one more trial
    again = subprocess.run([*argv[:4], str(grown), *argv[5:]], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert not os.path.lexists(f"{journal}.lock")
    import optuna

    trials = optuna.load_study(study_name="stale", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal)))).get_trials(deepcopy=False)
    assert sorted(t.user_attrs["seed"] for t in trials if t.state.name == "COMPLETE") == [0, 1, 2]


def test_a_folder_without_an_owner_record_is_adopted_only_by_the_study_whose_runs_it_holds(tmp_path, capsys):
    a, b = tmp_path / "A.journal", tmp_path / "B.journal"
    assert _launch(tmp_path, "old", "--storage", str(a)) == 0
    folder = tmp_path / "runs" / "old"
    (folder / "owner.json").unlink()   # a folder from before owner records
    before = snapshot(folder)
    capsys.readouterr()
    assert_one_line_error(_launch(tmp_path, "old", "--storage", str(b)), capsys.readouterr().err,
                          f"{folder} holds runs of another study", "owner.json", str(b))
    assert snapshot(folder) == before and not b.exists()
    assert _launch(tmp_path, "old", "--storage", str(a)) == 0   # the study with runs there adopts it
    assert json.loads((folder / "owner.json").read_text())["storage"] == str(a)


def test_a_study_deleted_from_its_own_journal_leaves_its_folder_to_the_next_study_of_that_name(tmp_path, capsys):
    assert _launch(tmp_path, "again") == 0
    folder = tmp_path / "runs" / "again"
    first = json.loads((folder / "owner.json").read_text())["study_id"]
    (folder / "optuna.journal").unlink()
    assert _launch(tmp_path, "again") == 0
    assert "created the study" in capsys.readouterr().out
    assert json.loads((folder / "owner.json").read_text())["study_id"] != first
    assert list((folder / "trials").glob("*.stale-*")), "the old runs are moved aside, not lost"


@pytest.mark.parametrize("flags, words", [
    (("--set", "optim.lr=0.02"), ("different base config (optim.lr)",)),
    (("-m", "model.shortcut=none,conv1x1"), ("grid axis 'model.shortcut'", "outside those")),
])
def test_a_refused_launch_or_dry_run_writes_nothing(flags, words, tmp_path, capsys):
    assert _launch(tmp_path, "same", grid={"model.shortcut": ["none"]}) == 0
    folder = tmp_path / "runs" / "same"
    journal = (folder / "optuna.journal").read_bytes()
    before = snapshot(folder)
    capsys.readouterr()
    for dry in ((), ("--dry-run",)):
        code = _launch(tmp_path, "same", *flags, *dry, grid={"model.shortcut": ["none"]})
        assert_one_line_error(code, capsys.readouterr().err, *words)
        assert (folder / "optuna.journal").read_bytes() == journal, "a refused launch appended to the journal"
        assert snapshot(folder) == before


@pytest.mark.parametrize("assignments, words", [
    (["optim.name=adam", "optim.momentum=0.5"], ("optim.momentum (0.5) needs optim.name sgd", "no effect")),
    (["optim.name=adamw", "optim.nesterov=true"], ("optim.nesterov (True) needs optim.name sgd", "no effect")),
    (["optim.betas=[0.5, 0.9]"], ("optim.betas ([0.5, 0.9]) needs optim.name adam or adamw", "no effect")),
    (["optim.momentum=0", "optim.nesterov=true"], ("optim.nesterov needs a momentum", "optim.momentum is 0")),
])
def test_an_optimizer_key_the_optimizer_does_not_use_is_refused(assignments, words, tmp_path, capsys):
    """Momentum and nesterov of an Adam run, betas of an SGD run: silently unused before; nesterov without a
    momentum: torch's ValueError as a traceback before. One line naming the key, as for a schedule's keys. (The
    config writes no momentum: TINY's would be the first key an Adam run refuses.)"""
    optim = {k: v for k, v in TINY["optim"].items() if k != "momentum"}
    config = write_yaml(tmp_path / "run.yaml", yaml.safe_dump({**TINY, "optim": optim}))
    argv = ["train", "--config", str(config), "--out", str(tmp_path / "run"), "--print-config"]
    code = main(argv + [a for assignment in assignments for a in ("--set", assignment)])
    assert_one_line_error(code, capsys.readouterr().err, *words)
    assert not (tmp_path / "run").exists()
    cycled = ["optim.momentum=0", "optim.nesterov=true", "schedule.name=onecycle", "schedule.cycle_momentum=true"]
    assert RunConfig.from_dict(apply_overrides(TINY, cycled)).optim.nesterov  # the cycle gives SGD its momentum
    with pytest.raises(ConfigError, match=r"optim.momentum \(0\) needs schedule.cycle_momentum false"):
        load_run_config(str(config), cycled)   # which the cycle overwrites: written, it would have no effect


@pytest.mark.parametrize("command", [["train", "--set", "precision={}", "--out", "{out}"],
                                     ["eval", "{ckpt}", "--precision", "{}"],
                                     ["lesion", "{ckpt}", "--precision", "{}"]])
def test_a_refused_precision_is_the_same_one_line_in_every_command(command, tmp_path, capsys):
    """fp16 says why it is refused, and an unknown precision lists the choices, in `train`, `eval` and `lesion`
    alike (argparse's "did you mean 'fp64'?" answered fp16 in eval)."""
    key = "precision" if command[0] == "train" else "--precision"
    for value, words in (("fp16", (f"{key} fp16 is not supported", "no loss scaling", "use bf16")),
                         ("fp8", (f"unknown {key} 'fp8'", "choose one of: auto, fp32, bf16, fp64"))):
        args = [a.format(value, out=tmp_path / "run", ckpt=tmp_path / "last.pt") for a in command]
        assert_one_line_error(main_code(args), capsys.readouterr().err, *words)
    assert not (tmp_path / "run").exists()
