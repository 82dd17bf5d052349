"""Why a run did not learn, from its own instruments (reports.collapse): the loss's rise above a uniform guess's and
the iteration from which every layer below the classifier stopped getting gradient."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from reports.collapse import collapse_text, vanished_from
from resnet_core.record import metrics_frame

PARTS = Path(__file__).resolve().parents[1] / "results/cifar10-parts/parts-cpu"
GMP_SEED0 = PARTS / "trials/shortcut-identity_pooling-max-s0"


def _grads(values: dict[int, dict[str, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"step": s, "split": "grad_norm", "name": n, "value": v}
                         for s, layers in values.items() for n, v in layers.items()])


def test_vanished_from_is_the_first_step_of_the_last_run_below_the_threshold():
    g = _grads({100: {"conv1": 1.0, "conv2": 2.0, "fc": 1.0},
                200: {"conv1": 0.001, "conv2": 0.001, "fc": 0.1},
                300: {"conv1": 0.5, "conv2": 0.001, "fc": 0.1},     # conv1 came back
                400: {"conv1": 0.0, "conv2": 0.0, "fc": 0.1},
                500: {"conv1": 0.0, "conv2": 0.0, "fc": 0.1}})
    assert vanished_from(g) == 400                                  # the classifier (logged last) is not asked
    alive = _grads({100: {"conv1": 1.0, "fc": 1.0}, 200: {"conv1": 0.0, "fc": 1.0}, 300: {"conv1": 0.2, "fc": 1.0}})
    assert vanished_from(alive) is None
    assert vanished_from(pd.DataFrame(columns=["step", "split", "name", "value"])) is None
    assert collapse_text(pd.DataFrame(columns=["step", "split", "name", "value"]), 10) is None


def test_a_learning_run_shows_no_collapse():
    m = pd.concat([_grads({100: {"conv1": 1.0, "fc": 1.0}, 200: {"conv1": 0.8, "fc": 0.5}}),
                   pd.DataFrame([{"step": 100, "split": "train", "name": "loss", "value": 2.1},
                                 {"step": 200, "split": "train", "name": "loss", "value": 1.5}])])
    assert collapse_text(m, 10) is None


def test_the_committed_gmp_run_that_did_not_learn_shows_its_collapse():
    """The parts study's GMP seed 0 (real CIFAR-10, lr 0.1): the loss blew up to 4.01 in the first 100 iterations and
    every convolution's gradient vanished within the first epoch, exactly 0 at the end."""
    text = collapse_text(metrics_frame(GMP_SEED0), 10)
    assert text is not None
    assert "training loss peaked at 4.01 at iteration 100 (a uniform guess: ln 10 = 2.30)" in text
    assert "from iteration 351 on (19 of 19 at exactly 0 at iteration 3,510)" in text, text
