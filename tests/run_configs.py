"""Run configs the tests share: the smallest run a test trains."""
from __future__ import annotations

import copy
from typing import Any

_TINY_RUN: dict[str, Any] = {
    "data": {"name": "synthetic", "synthetic": {"image_size": 8, "n_train": 128, "n_test": 64}, "augment": "none"},
    "model": {"family": "cifar", "depth": 8, "widths": [4, 8, 8]},
    "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0},
    "schedule": {"name": "constant", "unit": "iter", "total": 6},
    "batch_size": 32, "eval_batch_size": 64, "log_every": 3, "eval_every": 3, "probes": False, "device": "cpu",
}


def tiny_run(*, log_every: bool = True) -> dict[str, Any]:
    """A fresh copy of a CPU run of six iterations: ResNet-8 of widths 4/8/8 on 8×8 synthetic images, batches of 32.

    ``log_every=False`` leaves the key unwritten, so that a ``log_per_epoch`` the test sets is the user's only
    logging key (a written ``log_every`` beside it takes no effect, and is refused)."""
    run = copy.deepcopy(_TINY_RUN)
    if not log_every:
        del run["log_every"]
    return run

