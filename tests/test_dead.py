"""The one rule for a run that did not learn (sweeps.verdicts.dead): the loss rule reads the lowest logged training
loss, which the run summary keeps (it read the final loss and called a run that learned dead: 54.69 % test error
on 4 classes, lowest loss 1.29, final 1.378 ≥ 98 % of ln 4)."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from resnet_core.engine import train
from resnet_core.record import read_metrics
from sweeps.verdicts.dead import DataShape, dead_reason
from test_recipe_options import tiny
from train_callbacks import InterruptAt

FOUR = DataShape(4, 64)


def test_a_run_whose_loss_fell_learned_whatever_its_final_loss():
    assert dead_reason(54.69, FOUR, lowest_train_loss=1.29, final_train_loss=1.378) is None


def test_a_loss_that_never_fell_names_its_lowest_value():
    why = dead_reason(54.69, FOUR, lowest_train_loss=1.38, final_train_loss=1.39)
    assert why == "training loss never fell below a uniform guess's ln 4 = 1.386 (less 2%): its lowest was 1.380"


def test_a_record_without_the_lowest_loss_is_judged_on_its_final_loss_and_says_so():
    why = dead_reason(54.69, FOUR, final_train_loss=1.378)
    assert why is not None and why.startswith("final training loss 1.378 is not below") and "no lowest" in why
    assert dead_reason(54.69, FOUR, lowest_train_loss=float("nan"), final_train_loss=1.0) is None


def test_chance_test_error_is_dead_whatever_the_loss():
    assert dead_reason(75.0, FOUR, lowest_train_loss=0.1).startswith("test error 75.00 % is no better than chance "
                                                                     "for 4 classes")
    # above chance (a net that learned to be wrong) is no better: not "77.34 % is chance"
    assert dead_reason(77.34, FOUR).startswith("test error 77.34 % is no better than chance for 4 classes (75.00 %)")


def test_a_test_error_just_below_chance_is_called_within_noise_of_it_not_chance():
    """71.88 % at 4 classes over 128 test images is dead (within 3 binomial sd of 75 %), but "71.88 % is chance"
    read as a contradiction; the reason gives the band."""
    shape = DataShape(4, n_test=128)
    why = dead_reason(71.88, shape, lowest_train_loss=0.1)
    assert why == ("test error 71.88 % is within 3 binomial sd of chance for 4 classes (75.00 %, sd 3.83 over 128 "
                   "test images)"), why
    assert dead_reason(60.0, shape, lowest_train_loss=0.1) is None


def _lowest_logged(run_dir) -> float:
    return min(r["value"] for r in read_metrics(run_dir) if (r["split"], r["name"]) == ("train", "loss")
               and math.isfinite(r["value"]))


def test_the_summary_keeps_the_lowest_logged_training_loss_across_a_resume(tmp_path):
    cfg = tiny("schedule.total=3", log_every=1, fast="eager")
    whole = train(cfg, tmp_path / "whole")
    assert whole.summary["lowest_train_loss"] == pytest.approx(_lowest_logged(whole.run_dir), rel=1e-6)
    assert whole.summary["lowest_train_loss"] <= whole.summary["final_train_loss"]
    broken = tmp_path / "broken"
    with pytest.raises(KeyboardInterrupt):
        train({**cfg, "checkpoint_every": 1}, broken, callbacks=[InterruptAt(8)])
    resumed = train({**cfg, "checkpoint_every": 1}, broken, resume=True)
    summary = json.loads((broken / "summary.json").read_text())
    assert summary["lowest_train_loss"] == pytest.approx(_lowest_logged(broken), rel=1e-6)
    assert resumed.summary["lowest_train_loss"] == pytest.approx(whole.summary["lowest_train_loss"], rel=1e-4)


def test_a_report_reads_the_lowest_loss_from_the_metrics_of_an_older_record(tmp_path):
    from reports.comparisons import lowest_loss

    class Data:
        def metrics(self, run_dir):
            return pd.DataFrame([{"step": 1, "epoch": 0.1, "split": "train", "name": "loss", "value": 1.4},
                                 {"step": 2, "epoch": 0.2, "split": "train", "name": "loss", "value": 1.29},
                                 {"step": 2, "epoch": 0.2, "split": "test", "name": "loss", "value": 0.5}])

    assert lowest_loss(Data(), pd.Series({"lowest_train_loss": float("nan"), "run_dir": "r"})) == 1.29
    assert lowest_loss(Data(), pd.Series({"lowest_train_loss": 1.3, "run_dir": "r"})) == 1.3
