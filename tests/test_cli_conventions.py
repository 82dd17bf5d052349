"""The command line follows the conventions: every option explains itself, --version, train --device /
--print-config / --wandb, the train progress bar knows its total, `sweep --print-config`, `--set` on a grid axis pins
the axis (the grid shrinks), `report` writes beside the study's runs by default, and shell completion."""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess

import pytest
import torch
import yaml

from test_bad_input import assert_one_line_error
from test_sweeps import TINY_BASE, write_grid
from train_callbacks import InterruptAt

from resnet_core.cli import build_parser, main
from resnet_core.errors import ConfigError
from sweeps.spec.grid import load_grid


def _parsers(parser: argparse.ArgumentParser, path: str = "resnet-ablate"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_option_and_command_has_help():
    parser = build_parser()
    commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)][0]
    assert {c.dest for c in commands._choices_actions} >= {"train", "sweep", "report", "studies", "models"}
    assert all(c.help for c in commands._choices_actions)
    missing = [f"{path} {a.option_strings or a.dest}" for path, p in _parsers(parser) for a in p._actions
               if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) and not a.help]
    assert not missing, f"options without help: {missing}"
    text = parser.format_help()
    assert "resnet-ablate sweep ablations/quickstart.yaml" in text and "optuna-dashboard" in text


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("resnet-ablate ") and len(out.split()) >= 2


def test_every_command_has_a_description():
    commands = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)][0]
    missing = [name for name, p in commands.choices.items() if not (p.description or "").strip()]
    assert not missing, f"commands without a description in --help: {missing}"


@pytest.mark.parametrize("argv, hint", [
    (["swep", "ablations/quickstart.yaml"], "did you mean 'sweep'?"),
    (["reprot", "quickstart"], "did you mean 'report'?"),
    (["sweep", "g.yaml", "--wrokers", "2"], "(did you mean --workers?)"),
    (["train", "--wandb", "ofline"], "did you mean 'offline'?"),
])
def test_a_mistyped_command_choice_or_option_gets_a_did_you_mean(argv, hint, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert hint in capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize("argv, words", [
    (["train", "--wandb", "bogus"], ["--wandb", "'bogus'", "'off', 'auto', 'offline', 'online'"]),
    (["sweep", "g.yaml", "--workers", "abc"], ["--workers", "'abc'", "expected an integer"]),
    (["sweep", "-m", "model.depth=8,20", "base.yaml"],
     ["required: grid", "the grid file base.yaml was read as a value of -m: put the grid file before -m"]),
    (["sweep", "--grid", "model.depth=8,20", "base.yml", "--dry-run"], ["base.yml was read as a value of --grid"]),
    (["probe", "--seeds", "x"], ["--seeds", "expected an integer"]),
    ([], ["required: COMMAND"]),
])
def test_every_argparse_error_is_one_line_naming_the_argument(argv, words, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert_one_line_error(e.value.code, capsys.readouterr().err, *words)


def test_completion_names_every_command_and_completes_in_bash(tmp_path, capsys):
    commands = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)][0].choices
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    listed = next(ln for ln in script.splitlines() if ln.startswith("_shtab_resnet_ablate_subparsers=("))
    assert set(listed.split("=(", 1)[1].rstrip(")").split()) == set(commands) >= {"sweep", "report", "completion"}
    assert main(["completion", "zsh"]) == 0
    zsh = capsys.readouterr().out
    assert zsh.startswith("#compdef resnet-ablate"), zsh[:200]
    assert all(re.search(rf"^\s+{c}:'", zsh, re.M) for c in commands), zsh[:1500]   # each in the command list
    if shutil.which("bash") is None:
        pytest.skip("no bash to run the script in")
    (tmp_path / "complete.bash").write_text(script)
    (tmp_path / "g.yaml").write_text("study: x\n")

    def complete(*words: str) -> list[str]:
        line = " ".join(words)
        run = (f"source complete.bash; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; COMP_LINE='{line}'; "
               'COMP_POINT=${#COMP_LINE}; _shtab_resnet_ablate; printf "%s\\n" "${COMPREPLY[@]}"')
        done = subprocess.run(["bash", "-c", run], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("resnet-ablate", "sw") == ["sweep"]
    assert complete("resnet-ablate", "sweep", "--wor") == ["--workers"]
    assert complete("resnet-ablate", "sweep", "g.") == ["g.yaml"]                  # the grid file by its name
    assert complete("resnet-ablate", "completion", "''") == ["bash", "zsh"]


def test_models_takes_model_keys_spelled_as_train_does(capsys):
    assert main(["models", "--config", "resnet20", "--set", "model.depth=56", "--set", "model.shortcut=none"]) == 0
    dotted = capsys.readouterr().out
    assert dotted.splitlines()[0].startswith("plain-56 (cifar, basic, shortcut=none")
    assert main(["models", "--config", "resnet20", "--set", "depth=56", "--set", "shortcut=none"]) == 0  # the old
    assert capsys.readouterr().out == dotted
    assert main(["models", "--set", "optim.lr=0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model keys only, e.g. --set model.depth=56" in err


def test_train_print_config_resolves_with_device_and_sets(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**TINY_BASE, "name": "pc"}))
    assert main(["train", "--config", str(cfg), "--device", "cpu", "--set", "model.depth=14", "--print-config",
                 "--set", "data.synthetic.num_classes=4", "--out", str(tmp_path / "never")]) == 0
    text = capsys.readouterr().out
    printed = yaml.safe_load(text)
    assert printed["device"] == "cpu" and printed["model"]["depth"] == 14 and printed["name"] == "pc"
    assert printed["model"]["stages"] == [2, 2, 2]  # resolved, not as written
    assert printed["model"]["num_classes"] == 4     # the dataset's, as the run will build it
    # what will run, as the run's summary.json will record it (precision resolved from auto)
    from resnet_core.devices import cpu_has_native_bf16

    precision = "bf16" if cpu_has_native_bf16() else "fp32"
    assert text.splitlines()[0] == (f"# will run: device cpu, precision {precision}, memory format channels_last, "
                                    f"fast path eager, {torch.get_num_threads()} thread"
                                    f"{'s' if torch.get_num_threads() != 1 else ''}")
    assert not (tmp_path / "never").exists()
    assert main(["train", "--config", str(cfg), "--device", "tpu", "--print-config"]) == 2
    assert "device" in capsys.readouterr().err


def test_train_progress_bar_has_a_total(tmp_path, capsys):
    from resnet_core.engine import train
    from resnet_core.progress_bar import ProgressBar

    totals = []

    class Spy(ProgressBar):
        def on_start(self, member, config, run_dir):
            super().on_start(member, config, run_dir)
            totals.append((self.bar.total, self.bar.n))

    cfg = {**TINY_BASE, "name": "bar", "schedule": {"name": "constant", "unit": "iter", "total": 9}}
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "r", callbacks=[Spy(), InterruptAt(6)])
    assert totals == [(9, 0)]
    totals.clear()
    train(cfg, tmp_path / "r", callbacks=[Spy()], resume=True)
    assert totals == [(9, 6)]  # resumed at the last checkpoint: the bar starts there


@pytest.mark.slow
def test_train_logs_to_wandb_offline(tmp_path, capsys, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var, sub in (("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**TINY_BASE, "name": "wb"}))
    out_dir = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(out_dir), "--wandb", "offline"]) == 0
    out = capsys.readouterr().out
    segs = sorted(out_dir.glob("wandb/offline-run-*"))
    assert len(segs) == 1 and f"wandb sync {segs[0]}" in out
    assert (out_dir / "wandb_run.json").is_file()
    # the run's config says what ran (precision resolved from auto) and which code (the git commit)
    from wandb_reader import read_finished_run

    from resnet_core.provenance import git_state
    from resnet_core.record import read_summary

    config, summary = read_finished_run(out_dir)["config"], read_summary(out_dir)
    assert config["precision"] == "auto" and config["ran"]["precision"] == summary["precision"] != "auto"
    assert config["ran"]["device"] == "cpu" and config["ran"]["fast_path"] == "eager"
    assert config["code"]["git_commit"] == git_state()[0] and (git_state()[0] is None or len(git_state()[0]) == 40)


def test_set_on_a_grid_axis_pins_it(tmp_path, capsys):
    grid = write_grid(tmp_path / "g.yaml", "pin", grid={"model.shortcut": ["none", "identity"],
                                                        "optim.lr": [0.01, 0.1]},
                      extra_cells=[{"model.shortcut": "none", "model.depth": 14},
                                   {"model.shortcut": "identity", "model.depth": 14}])
    spec = load_grid(grid, ["model.shortcut=none", "batch_size=16"])
    assert spec.grid == {"model.shortcut": ["none"], "optim.lr": [0.01, 0.1]}
    assert [c.id for c in spec.cells] == ["model.shortcut=none,optim.lr=0.01", "model.shortcut=none,optim.lr=0.1",
                                          "model.shortcut=none,model.depth=14"]
    assert spec.base["batch_size"] == 16 and "shortcut" not in spec.base["model"]
    root = tmp_path / "runs"
    assert main(["sweep", str(grid), "--root", str(root), "--dry-run", "--set", "optim.lr=0.1"]) == 0
    out = capsys.readouterr().out
    assert "optim.lr=0.01" not in out and "4 total" in out  # 2 cells, 2 seeds: the extra cells run the base's lr
    # an extra cell that does not set the pinned key runs the base's value: kept where that is the pinned one
    assert [c.id for c in load_grid(grid, ["optim.lr=0.05"]).cells] == [
        "model.shortcut=none,optim.lr=0.05", "model.shortcut=identity,optim.lr=0.05",
        "model.shortcut=none,model.depth=14", "model.shortcut=identity,model.depth=14"]
    assert main(["sweep", str(grid), "--print-config", "shortcut-identity_lr-0.1", "--set", "optim.lr=0.1"]) == 0
    text = capsys.readouterr().out
    printed = yaml.safe_load(text)
    assert printed["optim"]["lr"] == 0.1 and printed["model"]["shortcut"] == "identity"
    assert "device" not in printed and "# will run: device cpu, precision " in text   # the worker's device
    assert main(["sweep", str(grid), "--print-config", "nope"]) == 2
    assert "choose one of" in capsys.readouterr().err


@pytest.mark.parametrize("grid, extra, assignment, words", [
    ({"model.depth": [8, 14]}, [], "model={depth: 20}", ("model={depth: 20}", "model.depth=8", "--set model.depth=")),
    ({"model": [{"depth": 8}, {"depth": 14}]}, [], "model.depth=20", ("model.depth=20", "its model sets")),
    ({"model.depth": [8, 14]}, [{"optim": {"lr": 0.2}}], "optim.lr=0.1", ("optim.lr=0.1", "optim.lr=0.2")),
])
def test_a_set_that_a_cell_would_override_is_refused_not_ignored(grid, extra, assignment, words, tmp_path, capsys):
    path = write_grid(tmp_path / "g.yaml", "over", grid=grid, **({"extra_cells": extra} if extra else {}))
    assert main(["sweep", str(path), "--root", str(tmp_path / "runs"), "--dry-run", "--set", assignment]) == 2
    assert_one_line_error(2, capsys.readouterr().err, *words, "would not take effect")
    assert not (tmp_path / "runs").exists()


def test_a_set_of_a_key_only_extra_cells_set_drops_those_that_run_another_value(tmp_path, capsys):
    """The dropped cell is named on stderr (it was left out without a word: only the dry run's count showed it)."""
    path = write_grid(tmp_path / "g.yaml", "pinx", grid={"model.depth": [8, 14]},
                      extra_cells=[{"model.depth": 20, "model.shortcut": "none"},
                                   {"model.depth": 20, "model.shortcut": "identity"}])
    spec = load_grid(path, ["model.shortcut=identity"])
    assert [c.id for c in spec.cells] == ["model.depth=8", "model.depth=14",
                                          "model.depth=20,model.shortcut=identity"]
    assert spec.base["model"]["shortcut"] == "identity"   # the grid cells take it from the base
    assert capsys.readouterr().err.splitlines() == [
        "note: --set model.shortcut=identity leaves out the extra cell 'model.depth=20,model.shortcut=none' (it sets "
        "model.shortcut=none); the other cells run the overridden base"]


def test_a_set_of_the_base_keeps_the_extra_cells_it_reaches_and_refuses_a_searched_key(tmp_path, capsys):
    """``--set optim.lr=0.1``: an extra cell that does not set the lr runs the overridden base, so it stays (it was
    dropped silently, compared with the base's lr before the override); one that sets another lr itself is dropped,
    as a pin drops it. A --set of a searched key would be replaced by each trial's sample: refused."""
    path = write_grid(tmp_path / "g.yaml", "pinb", grid={"model.shortcut": ["none", "identity"]},
                      extra_cells=[{"model.shortcut": "conv1x1"}, {"model.shortcut": "conv1x1", "optim.lr": 0.2}])
    spec = load_grid(path, ["optim.lr=0.1"])
    assert [c.id for c in spec.cells] == ["model.shortcut=none", "model.shortcut=identity", "model.shortcut=conv1x1"]
    assert {spec.run_config(c, 0)["optim"]["lr"] for c in spec.cells} == {0.1}
    err = capsys.readouterr().err
    assert "leaves out the extra cell 'model.shortcut=conv1x1,optim.lr=0.2' (it sets optim.lr=0.2)" in err
    assert err.count("note:") == 1   # the kept extra cell is not named
    path = write_grid(tmp_path / "s.yaml", "pins", search={"optim.lr": {"log_uniform": [0.01, 0.1]}}, n_trials=2)
    with pytest.raises(ConfigError, match=r"--set optim\.lr=0\.07 would not take effect: optim\.lr is searched"):
        load_grid(path, ["optim.lr=0.07"])


def test_report_writes_beside_the_study_by_default(tmp_path, monkeypatch, capsys):
    from report_fixtures import make_fake_study

    fake = make_fake_study(tmp_path / "runs")
    monkeypatch.chdir(tmp_path)
    assert main(["report", fake.name, "--format", "md", "--no-figures"]) == 0
    out = tmp_path / "runs" / fake.name / "report"
    assert (out / "table.md").is_file() and (out / "summary.md").is_file()
    assert f"written to runs/{fake.name}/report/" in capsys.readouterr().out
    assert not (tmp_path / "reports").exists()
