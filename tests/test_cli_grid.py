"""Grid axes from the command line (Hydra's multirun comma syntax: `sweep GRID -m model.depth=8,14`): part of the
grid like a file's axis (checked, recorded in the study, compared on a relaunch); a relaunch that widens an axis
adds its cells and reruns nothing; bad axes are one-line errors (exit 2)."""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
import yaml

from test_sweeps import TINY_BASE

from resnet_core.errors import ConfigError
from resnet_core.cli import _all_parsers, main
from sweeps import open_study
from sweeps.spec.grid import load_grid, parse_axis

STUDY = "cli-grid"


def grid_without_axes(path: Path) -> Path:
    """A grid file with no `grid:` at all: every axis comes from the command line."""
    path.write_text(yaml.safe_dump({"study": STUDY, "base": TINY_BASE, "seeds": [0], "wandb": {"mode": "disabled"}},
                                   sort_keys=False))
    return path


def write_grid_text(path: Path, **kw) -> Path:
    path.write_text(yaml.safe_dump({"study": STUDY, "base": TINY_BASE, "seeds": [0], "wandb": {"mode": "disabled"},
                                    **kw}, sort_keys=False))
    return path


def sweep(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["sweep", *argv])
    return code, out.getvalue()


def test_parse_axis_follows_hydras_comma_syntax():
    assert parse_axis("model.depth=20,56") == ("model.depth", [20, 56])
    assert parse_axis("optim.lr=1e-3,0.1") == ("optim.lr", [0.001, 0.1])          # YAML 1.2 numbers, as --set
    assert parse_axis("model.shortcut=none") == ("model.shortcut", ["none"])
    assert parse_axis("model.widths=[8,16,32],[16,32,64]") == ("model.widths", [[8, 16, 32], [16, 32, 64]])
    assert parse_axis("name='a,b',c") == ("name", ["a,b", "c"])
    for bad in ("model.depth", "=1,2", "model.depth=8,,14", "model.depth="):
        with pytest.raises(ConfigError) as e:
            parse_axis(bad)
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("given, write", [
    ("+model.depth=14", "model.depth=14"), ("++model.depth=14", "model.depth=14"),
    ("~optim.momentum", "optim.momentum=VALUE"), ("~optim.momentum=0.9", "optim.momentum=VALUE"),
])
def test_hydras_override_prefixes_are_one_line_naming_what_to_write(given, write, tmp_path, capsys):
    """Hydra's +KEY / ++KEY / ~KEY: every config key exists, none is deleted; train, sweep (--set and -m) and models
    refuse the prefix in one line naming what to write, not a key '+model' the user never wrote."""
    grid, runs = write_grid_text(tmp_path / "g.yaml", grid={"model.depth": [8, 14]}), tmp_path / "runs"
    axis = given.split("=")[0] + "=8,14"
    for argv, shown in ((["train", "--set", given, "--out", str(tmp_path / "run")], given),
                        (["sweep", str(grid), "--root", str(runs), "--set", given], given),
                        (["sweep", str(grid), "--root", str(runs), "-m", axis], axis),
                        (["models", "--set", given], given)):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and shown in err and write.split("=")[0] in err and "Hydra" in err, err
    assert not runs.exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("given, axis", [
    ("model.depth=14,20", "-m model.depth=14,20"), ("model.shortcut=none,identity", "-m model.shortcut=none,identity"),
    ("model.widths=[8,16,32],[16,32,64]", "-m model.widths=[8,16,32],[16,32,64]"),
])
def test_a_comma_list_given_to_set_points_at_the_grid_axis_it_meant(given, axis, tmp_path, capsys):
    """``--set model.depth=14,20`` reads as the string '14,20' and was refused as a type error alone; the one line
    now says --set takes one value and names the ``-m`` axis (sweep) or the sweep (train, models) that runs each."""
    grid, runs = write_grid_text(tmp_path / "g.yaml", grid={"model.depth": [8]}), tmp_path / "runs"
    swept = f"sweep them (resnet-ablate sweep GRID.yaml {axis})"
    for argv, write in ((["sweep", str(grid), "--root", str(runs), "--set", given, "--dry-run"],
                         f"grid axis with {axis}"),
                        (["train", "--set", given, "--out", str(tmp_path / "run")], swept),
                        (["models", "--set", given], swept)):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--set takes one value" in err and err.rstrip().endswith(write), err
    assert not runs.exists() and not (tmp_path / "run").exists()
    # a string value with a comma is no list: no hint where the value is fine, or refused for another reason
    assert main(["sweep", str(grid), "--root", str(runs), "--set", "optim.lr=oops", "--dry-run"]) == 2
    assert "--set takes one value" not in capsys.readouterr().err


def test_an_axis_from_the_command_line_replaces_or_adds_a_file_axis(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({"study": "x", "base": TINY_BASE, "grid": {"model.shortcut": ["none", "identity"]},
                                    "seeds": [0]}))
    spec = load_grid(path, axes=["model.depth=8,14"])
    assert spec.grid == {"model.shortcut": ["none", "identity"], "model.depth": [8, 14]} and len(spec.cells) == 4
    spec = load_grid(path, axes=["model.shortcut=identity"])
    assert spec.grid == {"model.shortcut": ["identity"]}
    assert spec.study_attrs()["grid"] == spec.grid                  # recorded in the study like a file's axis


@pytest.mark.slow
def test_a_two_axis_grid_from_the_command_line_then_widened_on_a_relaunch(tmp_path):
    grid, root = grid_without_axes(tmp_path / "g.yaml"), tmp_path / "runs"
    code, out = sweep(str(grid), "--root", str(root), "--workers", "1", "-m", "model.depth=8,14",
                      "optim.lr=0.02,0.1")
    assert code == 0, out
    study = open_study(root / STUDY)
    assert study.user_attrs["grid"] == {"model.depth": [8, 14], "optim.lr": [0.02, 0.1]}
    first = {t.number: (t.params["model.depth"], t.params["optim.lr"], t.datetime_complete) for t in study.trials}
    assert sorted(p[:2] for p in first.values()) == [(8, 0.02), (8, 0.1), (14, 0.02), (14, 0.1)]
    assert "4/4 trials done" in out
    # the closing line gives the real wall time beside the launch's estimate
    closing = next(line for line in out.splitlines() if line.startswith("4/4 trials done"))
    assert re.search(r"; wall time \d+(m\d\ds|s) for 4 trials \(estimated ~\d+(m\d\ds|s)\)$", closing), closing
    # widened by one value (the other spelling): its 2 cells run, the 4 finished trials are not run again
    code, out = sweep(str(grid), "--root", str(root), "--workers", "1", "--grid", "model.depth=8,14,20",
                      "--grid", "optim.lr=0.02,0.1")
    assert code == 0, out
    study = open_study(root / STUDY)
    assert study.user_attrs["grid"] == {"model.depth": [8, 14, 20], "optim.lr": [0.02, 0.1]}
    trials = study.trials
    assert len(trials) == 6 and all(t.state.name == "COMPLETE" for t in trials)
    assert {t.number: (t.params["model.depth"], t.params["optim.lr"], t.datetime_complete)
            for t in trials if t.number in first} == first
    assert sorted(t.params["optim.lr"] for t in trials if t.params["model.depth"] == 20) == [0.02, 0.1]
    assert "6/6 trials done" in out and "model.depth=20,optim.lr=0.1" in out
    # the report reads it like a file's grid
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["report", STUDY, "--root", str(root), "--no-figures", "--format", "md"]) == 0
    table = (root / STUDY / "report" / "table.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ResNet-")]
    assert sorted(r.split("|")[1].strip() for r in rows) == sorted(
        f"ResNet-{d} (lr={lr})" for d in (8, 14, 20) for lr in (0.02, 0.1)), table


@pytest.mark.parametrize("argv, says", [
    (["-m", "model.depth"], "KEY=VALUE1,VALUE2"),
    (["-m", "model.depth=8,,14"], "empty value"),
    (["-m", "model.depth=8,14", "--set", "model.depth=8"], "both as a grid axis"),
    (["-m", "model.nope=1,2"], "model.nope"),
])
def test_bad_axes_are_one_line_errors(tmp_path, capsys, argv, says):
    code, _ = sweep(str(grid_without_axes(tmp_path / "g.yaml")), "--root", str(tmp_path / "runs"), "--dry-run", *argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and says in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("argv, says", [
    (["--grid", "model.depth=8,20", "--grid", "model.depth=8,32"],
     "model.depth given twice (--grid model.depth=8,20 and --grid model.depth=8,32)"),
    (["-m", "model.depth=8,20", "optim.lr=0.1", "model.depth=32"], "model.depth given twice (-m model.depth=8,20"),
])
def test_an_axis_given_twice_is_refused_not_replaced(tmp_path, capsys, argv, says):
    """A second -m/--grid axis of one key replaced the first without a word."""
    with pytest.raises(SystemExit) as e:
        sweep(str(grid_without_axes(tmp_path / "g.yaml")), "--root", str(tmp_path / "runs"), "--dry-run", *argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and says in err, err
    assert not (tmp_path / "runs").exists()


def test_a_set_key_given_again_wins_as_its_help_says(tmp_path):
    """--set is last-wins (a shared list of --set, then one changed: tests and scripts compose them so)."""
    from resnet_core.cli import build_parser

    code, out = sweep(str(grid_without_axes(tmp_path / "g.yaml")), "--root", str(tmp_path / "runs"), "--dry-run",
                      "--set", "optim.lr=0.02", "--set", "optim.lr=0.07", "--print-config")
    assert code == 0 and "lr: 0.07" in out and "lr: 0.02" not in out, out
    # on a key some cell sets too: the pin and the extra cells it keeps follow the last value alone
    for extra, sets, cells in (
            ([{"model.depth": 14, "model.shortcut": "none"}, {"model.depth": 20, "model.shortcut": "none"}],
             ["model.depth=8", "model.depth=14"], ["model.depth=14", "model.depth=14,model.shortcut=none"]),
            ([{"model.depth": 20, "model.shortcut": "none"}, {"model.depth": 20, "model.shortcut": "identity"}],
             ["model.shortcut=none", "model.shortcut=identity"],
             ["model.depth=8", "model.depth=14", "model.depth=20,model.shortcut=identity"])):
        path = write_grid_text(tmp_path / "x.yaml", grid={"model.depth": [8, 14]}, extra_cells=extra)
        assert [c.id for c in load_grid(path, sets).cells] == cells, sets
    helps = [a.help for p in _all_parsers(build_parser()) for a in p._actions if "--set" in a.option_strings]
    assert len(helps) >= 4 and all("the last value wins" in h for h in helps), helps


def test_the_closing_table_counts_a_renamed_cells_trials_as_the_report_does(tmp_path):
    """A grid widened on the command line renames a cell (a new axis at the base's value: `model.depth=8` becomes
    `model.depth=8,model.pooling=avg`). The closing table's "did not learn" counts, the until-decided verdicts and
    the W&B summary (all from `trial_frame`) count the old id's trials for the cell they now belong to, as the report
    does (one rule: `trial_cell` under the study's aliases). Before: the old id's trial was left out ("1 of 1" where
    the report said "2 of 2")."""
    from optuna.trial import TrialState, create_trial

    from sweeps.launch.monitor import result_lines
    from sweeps.spec.identity import cell_aliases
    from sweeps.spec.study_format import trial_cell_params
    from sweeps.verdicts.results import trial_frame

    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({"study": STUDY, "base": TINY_BASE, "grid": {"model.depth": [8]}, "seeds": [0, 1]}))
    before, spec = load_grid(path), load_grid(path, axes=["model.depth=8,14", "model.pooling=avg"])
    renamed = next(c for c in spec.cells if c.params["model.depth"] == 8)
    assert renamed.id != before.cells[0].id

    def dead_trial(cell, seed):  # chance-level test error for 10 classes: a run that did not learn
        return create_trial(state=TrialState.COMPLETE, value=90.0, user_attrs={
            "cell": cell.id, "cell_params": dict(cell.params), "seed": seed, "unit": f"{cell.id}|s{seed}",
            "status": "complete",
            "final_test_error": 90.0, "final_train_loss": 2.31})

    trials = [dead_trial(before.cells[0], 0), dead_trial(renamed, 1)]
    line = next(x for x in result_lines(spec, trials) if x.strip().startswith(renamed.id))
    assert "did not learn in 2 of 2 seeds" in line and "not finished" not in line, line
    aliases = cell_aliases(spec, trials)   # what a launch stores as the study's ALIASES_ATTR, which the report reads
    assert list(trial_frame(spec, trials)["cell"]) == [trial_cell_params(t, aliases)[0] for t in trials]


def test_a_search_cell_that_did_not_learn_counts_trials_not_seeds(tmp_path):
    """A search cell's runs are its search trials (n_trials 2 of one seed), not seeds: the closing table and the
    report say 'did not learn in 2 of 2 trials' (they said '2 of 2 seeds'); a grid's runs stay seeds."""
    from types import SimpleNamespace

    import pandas as pd
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from reports.comparisons import dead_cells
    from sweeps.launch.monitor import result_lines

    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({"study": "dead-search", "base": TINY_BASE, "seeds": [0], "n_trials": 2,
                                    "search": {"optim.lr": {"log_uniform": [0.001, 0.1]}}}))
    spec = load_grid(path)
    cell = spec.cells[0]
    trials = [create_trial(state=TrialState.COMPLETE, value=90.0, params={"optim.lr": 0.01},
                           distributions={"optim.lr": FloatDistribution(0.001, 0.1, log=True)}, user_attrs={
                               "cell": cell.id, "cell_params": dict(cell.params), "seed": 0, "slot": slot,
                               "unit": f"{cell.id}|t{slot}", "status": "complete", "final_test_error": 90.0,
                               "final_train_loss": 2.31}) for slot in (0, 1)]
    line = next(x for x in result_lines(spec, trials) if x.strip().startswith(cell.id or "base"))
    assert "did not learn in 2 of 2 trials" in line, line

    runs = pd.DataFrame({"cell": ["c", "c"], "status": ["complete", "complete"]})
    dead = pd.Series(["test error 90 % is at chance", None])
    for search, word in ((True, "trials"), (False, "seeds")):
        data = SimpleNamespace(runs=runs, spec=SimpleNamespace(search=search))
        assert dead_cells(data, dead) == {"c": f"did not learn in 1 of 2 {word} (test error 90 % is at chance)"}
