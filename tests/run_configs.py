"""Run configs the tests share: the smallest run a test trains, and the assignments every way in must refuse."""
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


# (assignment, what its one-line error names): each is refused by RunConfig, and so by `train --set`
BAD_ASSIGNMENTS = [
    ("optim.name=rmsprop", "optim.name"),
    ("schedule.name=exponential", "schedule.name"),
    ("precision=fp8", "precision"),
    ("fast=turbo", "fast"),
    ("batch_size=0", "batch_size"),
    ("batch_size=many", "batch_size"),
    ("data.name=imagenet21k", "data.name"),
    ("model.depth=21", "model.depth"),
    ("epochs=10", "config key 'epochs'"),
    ("optim.lrate=0.1", "optim key 'lrate'"),
    ("data.synthetic.size=16", "data.synthetic key 'size'"),
    ("model.dept=20", "model key 'dept'"),
    ("optim.lr=-1", "optim.lr"),
    ("eval_every=0", "eval_every"),
]
