"""`sweep --until-decided`, end to end on the tiny synthetic grid of tests/test_sweeps.py (the real engine, well
under a second per trial; the kill test's trials run 1,200 iterations so that one can be caught mid-run): rounds
recorded in the study, seeds added only to the cells of undecided comparisons, each (cell, seed) exactly once, a
SIGKILL mid-round followed by a relaunch that finishes the same round, and one-line errors for bad input."""
from __future__ import annotations

import re

import pytest

from killed_launcher import running_with_checkpoint, sigkill_launcher_when
from test_sweeps import (TINY_BASE, assert_exactly_once, journal_study, write_grid)  # noqa: F401

optuna = pytest.importorskip("optuna")
from optuna.trial import TrialState  # noqa: E402

from resnet_core.cli import main  # noqa: E402
from sweeps.spec.study_format import DECIDE_ATTR  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def _units(study) -> set[tuple[str, int]]:
    return {(t.user_attrs["cell"], t.user_attrs["seed"]) for t in study.get_trials(deepcopy=False)
            if t.state == TrialState.COMPLETE}


@pytest.mark.parametrize("args, needle", [
    (["--until-decided", "--max-seeds", "0"], "--max-seeds must be an integer of at least 2"),
    (["--until-decided", "--max-seeds", "1"], "got 1"),
    (["--max-seeds", "4"], "--max-seeds 4 caps --until-decided"),
    (["--until-decided", "--futility", "1"], "--futility is a power from 0 (off) up to but not including 1"),
    (["--until-decided", "--futility", "-0.1"], "got -0.1"),
    (["--until-decided", "--futility", "nan"], "got nan"),
    (["--futility", "0.1"], "--futility 0.1 stops --until-decided's rounds early"),
])
def test_bad_until_decided_arguments_exit_2(args, needle, tmp_path, capsys):
    grid = write_grid(tmp_path / "g.yaml", "bad-decide")
    root = tmp_path / "runs"
    assert main(["sweep", str(grid), "--root", str(root), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and needle in err, err
    assert not root.exists()


def test_until_decided_refuses_a_search_grid_and_a_cap_below_the_seeds(tmp_path, capsys):
    grid = write_grid(tmp_path / "s.yaml", "searchy", search={"optim.lr": {"log_uniform": [0.01, 0.1]}}, n_trials=2)
    assert main(["sweep", str(grid), "--root", str(tmp_path / "runs"), "--until-decided"]) == 2
    err = capsys.readouterr().err.strip()
    assert "has a search space (optim.lr)" in err and "\n" not in err
    grid = write_grid(tmp_path / "g.yaml", "few", seeds=[0, 1, 2])
    assert main(["sweep", str(grid), "--root", str(tmp_path / "runs"), "--until-decided", "--max-seeds", "2"]) == 2
    assert "--max-seeds 2 is below the grid's 3 seeds" in capsys.readouterr().err


def test_a_dry_run_says_what_until_decided_would_add(tmp_path, capsys):
    """`--until-decided --dry-run` said nothing of the rounds: it states the plan and the most trials it can add,
    and, once the study's trials are done, the next round as the results stand; it writes nothing."""
    root = tmp_path / "runs"
    grid = write_grid(tmp_path / "g.yaml", "plan")
    dry = ["sweep", str(grid), "--root", str(root), "--until-decided", "--max-seeds", "4", "--dry-run"]
    assert main(dry) == 0
    out = capsys.readouterr().out
    assert ("until-decided: 97.5 % intervals: α = 0.05 shared over 2 planned looks (Bonferroni), at 2, 4 seeds "
            "per cell") in out, out
    assert "adds at most 4 trials (every cell to 4 seeds" in out and not root.exists()
    assert main(["sweep", str(grid), "--root", str(root), "--workers", "1"]) == 0
    capsys.readouterr()
    before = (root / "plan" / "optuna.journal").read_bytes()
    assert main(dry) == 0
    out = capsys.readouterr().out
    assert re.search(r"next round: \d+ undecided now; 2 cells to 4 seeds, 4 trials", out), out
    assert (root / "plan" / "optuna.journal").read_bytes() == before


def test_futility_gives_no_seeds_to_a_comparison_the_cap_would_not_decide(tmp_path, capsys):
    """--futility 0.5: the tiny grid's comparison, undecided at 2 seeds, has about 10 % power at the cap of 4 (its
    observed difference and spread), so no round runs; the study records the rule and why it stopped, the report
    states the rule; a relaunch asking another bound changes it (recorded with the look it applies from), and one
    without --futility keeps the stored one."""
    root = tmp_path / "runs"
    grid = write_grid(tmp_path / "g.yaml", "futile")
    assert main(["sweep", str(grid), "--root", str(root), "--workers", "1"]) == 0
    capsys.readouterr()
    args = ["sweep", str(grid), "--root", str(root), "--until-decided", "--max-seeds", "4"]
    assert main([*args, "--futility", "0.5", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "futility: a comparison with under 50% power at 4 seeds gets no more seeds" in out, out
    assert re.search(r"next round: none \(2 undecided after 0 rounds; 2 left undecided for futility \(power at 4 "
                     r"seeds under 50%: .*shortcut identity − none \d+%\)\)", out), out
    assert DECIDE_ATTR not in journal_study(root, "futile").user_attrs     # a dry run writes nothing

    assert main([*args, "--futility", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "until-decided: stopped after 0 rounds (2 left undecided for futility" in out, out
    assert "round 1" not in out and "futility bound" not in out           # the first plan is no change
    study = journal_study(root, "futile")
    assert len(study.get_trials(deepcopy=False)) == 4
    rec = study.user_attrs[DECIDE_ATTR]
    assert rec["plan"]["futility"] == 0.5 and rec["rounds"] == [] and "futility" in rec["stopped"]
    assert "futility_changes" not in rec

    assert main([*args, "--futility", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "until-decided: futility bound 20% from look 1 on (was 50%), recorded in the study's plan" in out, out
    assert "stopped after 0 rounds (2 left undecided for futility (power at 4 seeds under 20%" in out, out
    rec = journal_study(root, "futile").user_attrs[DECIDE_ATTR]
    assert rec["plan"]["futility"] == 0.2 and rec["futility_changes"] == [{"look": 1, "from": 0.5, "to": 0.2}]
    assert main(args) == 0                               # no --futility: the stored plan's, no new change
    out = capsys.readouterr().out
    assert "under 20%" in out and "futility bound" not in out, out
    assert journal_study(root, "futile").user_attrs[DECIDE_ATTR]["futility_changes"] == rec["futility_changes"]
    assert len(journal_study(root, "futile").get_trials(deepcopy=False)) == 4

    from reports.cli import build_report

    report = build_report("futile", root=root, out=tmp_path / "report", formats="md", figures=False)
    summary = (report / "summary.md").read_text()
    assert "futility: a comparison with under 20% power at 4 seeds" in summary, summary
    assert "futility bound 20% from look 1 on (was 50%)" in summary, summary


def test_a_study_planned_without_futility_takes_one_later_recorded(tmp_path, capsys):
    """A study whose rounds were planned without --futility (or before it existed) refused one later, so a
    comparison its cap could not decide kept costing trials to the cap. A non-binding bound cannot raise the
    chance of a false decision whenever it is set: a relaunch with --futility applies it from the next look and
    records the change; a dry run says so and writes nothing; another --max-seeds is still refused."""
    root = tmp_path / "runs"
    grid = write_grid(tmp_path / "g.yaml", "nofutile")
    assert main(["sweep", str(grid), "--root", str(root), "--workers", "1"]) == 0
    study = journal_study(root, "nofutile")
    plan = {"alpha": 0.05, "start": 2, "step": 2, "max_seeds": 4, "looks": 2, "level": 0.975}   # as stored before
    study.set_user_attr(DECIDE_ATTR, {"plan": plan, "rounds": [], "stopped": None})
    capsys.readouterr()
    args = ["sweep", str(grid), "--root", str(root), "--until-decided", "--max-seeds", "4"]
    before = (root / "nofutile" / "optuna.journal").read_bytes()
    assert main([*args, "--dry-run"]) == 0
    assert "futility" not in capsys.readouterr().out
    assert main([*args, "--futility", "0.5", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "(futility bound 50% from look 1 on (was off): a launch records the change)" in out, out
    assert (root / "nofutile" / "optuna.journal").read_bytes() == before
    assert main([*args, "--max-seeds", "6", "--futility", "0.5"]) == 2
    assert "planned its rounds with --max-seeds 4" in capsys.readouterr().err
    assert (root / "nofutile" / "optuna.journal").read_bytes() == before

    assert main([*args, "--futility", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "futility bound 50% from look 1 on (was off)" in out and "left undecided for futility" in out, out
    rec = journal_study(root, "nofutile").user_attrs[DECIDE_ATTR]
    assert rec["futility_changes"] == [{"look": 1, "from": 0.0, "to": 0.5}] and rec["rounds"] == []
    assert len(journal_study(root, "nofutile").get_trials(deepcopy=False)) == 4


def test_a_futility_change_applies_from_the_look_after_the_recorded_rounds():
    from sweeps.verdicts.inference import SequentialPlan
    from sweeps.verdicts.rounds import futility_change, futility_change_text

    stored = SequentialPlan(0.05, 3, 2, 8).to_dict()
    rec = {"plan": stored, "rounds": [{"round": 1}], "stopped": None}
    change = futility_change(rec, SequentialPlan(0.05, 3, 2, 8, 0.1))
    assert change == {"look": 2, "from": 0.0, "to": 0.1}
    assert futility_change_text(change) == "futility bound 10% from look 2 on (was off)"
    assert futility_change(rec, SequentialPlan(0.05, 3, 2, 8)) is None
    assert futility_change({}, SequentialPlan(0.05, 3, 2, 8, 0.1)) is None


@pytest.mark.slow
def test_until_decided_adds_seeds_in_recorded_rounds_exactly_once(tmp_path, capsys):
    """2 cells × 2 seeds, --max-seeds 4: looks at 2 and 4 seeds (97.5 % intervals). At 2 seeds the comparison of
    the two cells is undecided (a t interval on 1 degree of freedom), so round 1 gives both cells seeds 2 and 3;
    then the looks are used up and the sweep stops. A relaunch finds everything done and runs nothing."""
    root = tmp_path / "runs"
    grid = write_grid(tmp_path / "g.yaml", "decide")
    args = ["sweep", str(grid), "--root", str(root), "--workers", "2", "--until-decided", "--max-seeds", "4"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "until-decided: round 1:" in out and "2 cells to 4 seeds (seeds 2, 3)" in out
    assert "until-decided: stopped after 1 round" in out
    assert "comparisons (97.5 % intervals: α = 0.05 shared over 2 planned looks (Bonferroni)" in out
    assert "shortcut identity − none" in out and "paired t, n=4 vs 4" in out
    study = journal_study(root, "decide")
    assert_exactly_once(study, 8)
    rec = study.user_attrs[DECIDE_ATTR]
    assert rec["plan"]["looks"] == 2 and rec["plan"]["level"] == pytest.approx(0.975)
    assert [r["round"] for r in rec["rounds"]] == [1]
    assert rec["rounds"][0]["seeds"] == [2, 3] and len(rec["rounds"][0]["cells"]) == 2
    assert rec["stopped"]
    assert study.user_attrs["extra_seeds"] == {c: [2, 3] for c in rec["rounds"][0]["cells"]}
    assert study.user_attrs["n_units"] == 8

    n_trials = len(study.get_trials(deepcopy=False))
    assert main(args) == 0                          # relaunch: nothing to run, the same record
    out = capsys.readouterr().out
    assert "8 trials (2 cells × 2 seeds + 4 added by --until-decided rounds)" in out
    assert "resuming: 8 done" in out and not re.search(r"^running \d+ trials", out, re.M)
    again = journal_study(root, "decide")
    assert len(again.get_trials(deepcopy=False)) == n_trials
    assert [r["round"] for r in again.user_attrs[DECIDE_ATTR]["rounds"]] == [1]
    # a plain relaunch keeps the added seeds as part of the study (they are not strays)
    assert main(["sweep", str(grid), "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "resuming: 8 done" in out and "no longer in the grid" not in out
    # another cap than the study planned is refused in one line, by a dry run too
    assert main([*args[:-1], "6"]) == 2
    assert "planned its rounds with --max-seeds 4" in capsys.readouterr().err
    assert main([*args[:-1], "6", "--dry-run"]) == 2
    assert "planned its rounds with --max-seeds 4" in capsys.readouterr().err

    from reports.cli import build_report

    report = build_report("decide", root=root, out=tmp_path / "report", formats="md", figures=False)
    summary = (report / "summary.md").read_text()
    assert "97.5 % intervals" in summary and "1 round of added seeds" in summary
    assert "4/4" in (report / "table.md").read_text()          # 4 seeds per cell expected and complete


@pytest.mark.slow
def test_until_decided_killed_mid_round_then_relaunched_runs_each_cell_seed_once(tmp_path, capsys):
    """SIGKILL the launcher once round 1 is recorded and one of its trials is running with a checkpoint; the same
    command again finishes round 1 (the killed trial resumes from its checkpoint) and stops: every (cell, seed) of
    seeds 0-3 completed exactly once, round 1 recorded once."""
    root = tmp_path / "runs"
    base = {**TINY_BASE, "schedule": {"name": "constant", "unit": "iter", "total": 400}, "log_every": 25,
            "eval_every": 50}   # 2 seeds never decide (t with 1 df): round 1 always comes; its trials run long enough
    study = "decide-kill"
    grid = write_grid(tmp_path / "g.yaml", study, base=base)
    args = ["sweep", str(grid), "--root", str(root), "--workers", "2", "--until-decided", "--max-seeds", "4"]
    study_dir = root / study

    def far_enough(s) -> bool:  # round 1 is recorded, and one of its trials (seed 2 or 3) has written a checkpoint
        return bool((s.user_attrs.get(DECIDE_ATTR) or {}).get("rounds")) and \
            any(t.user_attrs.get("seed", 0) >= 2 for t in running_with_checkpoint(s, study_dir))

    victims = sigkill_launcher_when(args, tmp_path / "launcher.log",
                                    lambda: journal_study(root, study) if (study_dir / "optuna.journal").exists()
                                    else None, far_enough)
    before = journal_study(root, study)
    assert [r["round"] for r in before.user_attrs[DECIDE_ATTR]["rounds"]] == [1]
    assert not before.user_attrs[DECIDE_ATTR].get("stopped")

    assert main(args) == 0
    out = capsys.readouterr().out
    assert "resume (interrupted" in out and "until-decided: stopped after 1 round" in out
    assert "until-decided: round 2" not in out
    after = journal_study(root, study)
    assert_exactly_once(after, 8)
    assert _units(after) == {(c, s) for c in ("model.shortcut=none", "model.shortcut=identity") for s in range(4)}
    assert [r["round"] for r in after.user_attrs[DECIDE_ATTR]["rounds"]] == [1]
    trials = after.get_trials(deepcopy=False)
    for v in victims:
        copies = [c for c in trials if c.user_attrs.get("replaces") == v.number]
        assert len(copies) == 1 and copies[0].state == TrialState.COMPLETE and copies[0].user_attrs["resume"]
    print(out)


def test_until_decided_gives_no_seeds_to_a_cell_that_failed_in_every_seed(tmp_path, capsys):
    """A cell that diverged in both its seeds would diverge in the seeds a round adds: the rounds spent them and then
    stopped at the cap, 'not enough data' as before. They now stop at once and say which cell, and why; the
    comparison stays 'not enough data' with the cell named."""
    root = tmp_path / "runs"
    grid = write_grid(tmp_path / "g.yaml", "diverging", grid={"optim.lr": [0.05, 1.0e20]})
    args = ["sweep", str(grid), "--root", str(root), "--workers", "1", "--until-decided", "--max-seeds", "4"]
    assert main(args) == 1                          # its trials diverged
    out = capsys.readouterr().out
    assert "until-decided: round 1" not in out, out
    assert re.search(r"until-decided: stopped after 0 rounds \(1 cannot be decided by more seeds: optim\.lr=1e\+20 "
                     r"failed in every seed \(2 of 2: 2 diverged\)\)", out), out
    assert re.search(r"not enough data .*\[rests on a cell that did not learn: optim\.lr=1e\+20 failed in every seed",
                     out), out
    study = journal_study(root, "diverging")
    assert len(study.get_trials(deepcopy=False)) == 4
    rec = study.user_attrs[DECIDE_ATTR]
    assert rec["rounds"] == [] and "failed in every seed" in rec["stopped"]
    assert main([*args, "--dry-run"]) == 0
    assert "next round: none (1 undecided after 0 rounds; 1 cannot be decided by more seeds" in \
        capsys.readouterr().out


def test_a_cell_is_stuck_only_when_every_seed_failed_and_it_had_two_or_more():
    from sweeps.verdicts.rounds import stuck_cells

    states = [("a", "diverged"), ("a", "failed"), ("b", "diverged"), ("c", "diverged"), ("c", "complete"),
              ("d", "diverged"), ("d", "diverged"), ("d", "diverged")]
    assert stuck_cells(states) == {"a": "failed in every seed (2 of 2: 1 failed, 1 diverged)",
                                   "d": "failed in every seed (3 of 3: 3 diverged)"}


def test_the_closing_comparisons_name_seeds_that_failed_or_diverged():
    """--until-decided's closing lines (and the W&B summary) counted a cell's completed seeds without a word on the
    ones that failed or diverged: 'n=2 vs 4' alone. They now name them, as the report does; a cell that failed in
    every seed stays a stuck cell (no seeds left to count)."""
    import pandas as pd

    from sweeps.launch.decide import comparison_lines
    from sweeps.verdicts.comparisons import Planned, evaluate
    from sweeps.verdicts.rounds import lost_seeds

    states = [("A", "complete"), ("A", "diverged"), ("A", "complete"), ("A", "failed")] + [("B", "complete")] * 4
    lost = lost_seeds(states)
    assert lost == {"A": "2 of 4 seeds left out (1 failed, 1 diverged)"}
    runs = pd.DataFrame({"cell": ["A", "A", "B", "B", "B", "B"], "seed": [0, 2, 0, 1, 2, 3],
                         "final_test_error": [10.0, 10.4, 12.0, 12.3, 11.8, 12.1]})
    plan = Planned("a-b", "A − B", {"A": 1.0, "B": -1.0})
    [result] = evaluate([plan], runs, configs={}, lost=lost)
    [line] = comparison_lines([result])
    assert "n=2 vs 4" in line and "[completed seeds only: A 2 of 4 seeds left out (1 failed, 1 diverged)]" in line
    [other] = evaluate([Planned("b", "B − A", {"B": 1.0, "A": -1.0})], runs, configs={}, lost={"C": "x"})
    assert other.lost == {} and "completed seeds only" not in comparison_lines([other])[0]


def test_a_renamed_cell_keeps_the_seeds_its_rounds_added(tmp_path):
    """The rounds record cell ids. A grid that renames its cells (here a one-value axis added: same run configs,
    new ids) lost the seeds the recorded rounds had added: the launch counted 4 cells × 3 seeds, not 20 trials, and
    planned to add 16 trials to reach 7 seeds where 8 would. The rounds' cells now count for the cells they are."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from report_fixtures import make_fake_study

    from sweeps.queue.study import check_existing
    from sweeps.spec.grid import load_grid

    fake = make_fake_study(tmp_path, "renamed", seeds=(0, 1, 2), failed=(), missing=(), probe=False, lesion=False)
    study = optuna.load_study(study_name="renamed",
                              storage=JournalStorage(JournalFileBackend(str(fake.study_dir / "optuna.journal"))))
    old = sorted({t.user_attrs["cell"] for t in study.trials})
    study.set_user_attr(DECIDE_ATTR, {"plan": {"alpha": 0.05, "start": 3, "step": 2, "max_seeds": 7},
                                      "rounds": [{"round": 1, "target": 5, "cells": old, "seeds": [3, 4]}]})
    grid = tmp_path / "renamed.yaml"
    grid.write_text("study: renamed\nbase:\n  data: {name: cifar10}\n"
                    "  model: {family: cifar, block: basic, activation: post, pooling: avg}\n"
                    "grid:\n  model.depth: [20, 56]\n  model.block: [basic]\n  model.shortcut: [none, identity]\n"
                    "seeds: [0, 1, 2]\n")
    spec = load_grid(grid)
    _, aliases = check_existing(study, spec)
    assert set(aliases) == set(old) and not set(old) & {c.id for c in spec.cells}
    assert all(spec.cell_seeds(c) == [0, 1, 2, 3, 4] for c in spec.cells), spec.extra_seeds


def _planned_study(tmp_path, name: str):
    """The report fixture's study (2 × 2 cells, seeds 0-2) with an --until-decided plan to 7 seeds and one round
    (seeds 3, 4) recorded."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from report_fixtures import make_fake_study

    fake = make_fake_study(tmp_path, name, seeds=(0, 1, 2), failed=(), missing=(), probe=False, lesion=False)
    study = optuna.load_study(study_name=name,
                              storage=JournalStorage(JournalFileBackend(str(fake.study_dir / "optuna.journal"))))
    cells = sorted({t.user_attrs["cell"] for t in study.trials})
    study.set_user_attr(DECIDE_ATTR, {"plan": {"alpha": 0.05, "start": 3, "step": 2, "max_seeds": 7},
                                      "rounds": [{"round": 1, "target": 5, "cells": cells, "seeds": [3, 4]}]})
    return fake, study


@pytest.mark.parametrize("seeds", ["[0, 1, 5]", "[0, 1, 2, 3]"])
def test_the_grids_seeds_cannot_change_once_the_rounds_are_planned(seeds, tmp_path, capsys):
    """A grid whose seeds were edited after the first look ([0, 1, 2] → [0, 1, 5]) was accepted: seed 2, judged at
    look 1, was left out of the study and seed 5 run in its place (a seed whose result was seen, swapped out), the
    rounds' seeds following the new list. A fourth seed was refused naming --max-seeds ('relaunch with --max-seeds
    7', the value given), and only after the launch had written the new grid's attrs into the study. Now both are
    refused in one line naming the seeds, before anything is written."""
    fake, study = _planned_study(tmp_path, "reseeded")
    grid = tmp_path / "reseeded.yaml"
    grid.write_text("study: reseeded\nbase:\n  data: {name: cifar10}\n"
                    "  model: {family: cifar, block: basic, activation: post, pooling: avg}\n"
                    f"grid:\n  model.depth: [20, 56]\n  model.shortcut: [none, identity]\nseeds: {seeds}\n")
    before = dict(study.user_attrs)
    assert main(["sweep", str(grid), "--root", str(fake.root), "--until-decided", "--max-seeds", "7"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: seeds: the grid has {seeds}, but study 'reseeded' planned its --until-decided rounds "
                   "from the grid's seeds [0, 1, 2]; the seeds cannot change once the rounds are planned: restore "
                   "them, or use another study (--study NAME)"), err
    import optuna
    assert optuna.load_study(study_name="reseeded", storage=study._storage).user_attrs == before
    grid.write_text(grid.read_text().replace(seeds, "[0, 1, 2]"))
    assert main(["sweep", str(grid), "--root", str(fake.root), "--until-decided", "--max-seeds", "9",
                 "--dry-run"]) == 2
    assert "planned its rounds with --max-seeds 7; relaunch with --max-seeds 7" in capsys.readouterr().err
