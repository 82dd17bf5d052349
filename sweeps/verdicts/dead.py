"""Did a run learn? The one rule for a *dead* run, used by the sweep's closing table, the W&B summary and the report.

A completed run is dead when either holds:

- its test error is at chance: within noise of 100 · (1 − 1/classes) %, i.e. at or above chance − 3 binomial
  standard errors of a test set of ``n_test`` images (sd = sqrt(p (1 − p) / n_test); without a known test-set size,
  ``DEFAULT_N_TEST``);
- its training loss never fell below that of a uniform guess, ln(classes) (a network starts near it: the loss
  never fell), less ``LOSS_TOLERANCE`` of it: the lowest logged training loss (a log window's mean;
  ``lowest_train_loss`` in the run summary). A record from before that key was kept gives its final training loss
  only; then the rule reads it, and the reason says so.

A cell with a dead run is named wherever it is shown, and a verdict resting on it says so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from resnet_core.data import dataset_shape
from resnet_core.run_config import RunConfig

SIGMAS = 3.0
DEFAULT_N_TEST = 1000
LOSS_TOLERANCE = 0.02


@dataclass(frozen=True)
class DataShape:
    classes: int
    n_test: int | None = None


def chance_error(classes: int) -> float:
    """Test error (%) of guessing: 100 · (1 − 1/classes)."""
    return 100.0 * (1.0 - 1.0 / classes)


def chance_sd(shape: DataShape) -> float:
    """The binomial standard deviation (points) of a guess's test error over the test set."""
    p = 1.0 - 1.0 / shape.classes
    return 100.0 * math.sqrt(p * (1 - p) / (shape.n_test or DEFAULT_N_TEST))


def at_chance(test_error: Any, shape: DataShape) -> bool:
    if not _finite(test_error) or shape.classes < 2:
        return False
    return float(test_error) >= chance_error(shape.classes) - SIGMAS * chance_sd(shape)


def loss_never_fell(train_loss: Any, shape: DataShape) -> bool:
    if not _finite(train_loss) or shape.classes < 2:
        return False
    return float(train_loss) >= (1.0 - LOSS_TOLERANCE) * math.log(shape.classes)


def dead_reason(test_error: Any, shape: DataShape | None, *, lowest_train_loss: Any = None,
                final_train_loss: Any = None) -> str | None:
    """Why the run did not learn ('test error 90.00 % is no better than chance for 10 classes (90.00 %)', or 77.34 %
    for 4 classes: at chance or above it; below chance: 'test error 71.88 % is within 3 binomial sd of chance for 4
    classes (75.00 %, sd 3.83 over 128 test images)'), or None if it learned (or the classes are unknown). The loss
    rule reads ``lowest_train_loss``; ``final_train_loss`` only where the record has no lowest."""
    if shape is None:
        return None
    if at_chance(test_error, shape):
        chance = chance_error(shape.classes)
        if float(test_error) >= chance:
            return (f"test error {float(test_error):.2f} % is no better than chance for {shape.classes} classes "
                    f"({chance:.2f} %)")
        n = shape.n_test or DEFAULT_N_TEST
        return (f"test error {float(test_error):.2f} % is within {SIGMAS:g} binomial sd of chance for "
                f"{shape.classes} classes ({chance:.2f} %, sd {chance_sd(shape):.2f} over {n:,} test images)")
    uniform = f"a uniform guess's ln {shape.classes} = {math.log(shape.classes):.3f} (less {LOSS_TOLERANCE:.0%})"
    if _finite(lowest_train_loss):
        if loss_never_fell(lowest_train_loss, shape):
            return f"training loss never fell below {uniform}: its lowest was {float(lowest_train_loss):.3f}"
    elif loss_never_fell(final_train_loss, shape):
        return (f"final training loss {float(final_train_loss):.3f} is not below {uniform}; the record keeps no "
                f"lowest training loss")
    return None


def shape_of(config: dict[str, Any]) -> DataShape | None:
    """Classes and test-set size of a run config (dict): the dataset's known shape (``resnet_core.data.dataset_shape``),
    else the ``model.num_classes`` the config states (a run record's config is resolved); None if neither."""
    try:
        shape = dataset_shape(RunConfig.from_dict({k: v for k, v in config.items() if k != "device"}).data)
        if shape is not None:
            return DataShape(int(shape[4]), int(shape[1]))
    except Exception:  # noqa: BLE001 - an unreadable config: fall back to what it states
        pass
    model = config.get("model") if isinstance(config, dict) else None
    classes = model.get("num_classes") if isinstance(model, dict) else None
    return DataShape(int(classes)) if isinstance(classes, int) and classes >= 2 else None


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def dead_cell_text(reasons: list[str], n: int, search: bool) -> str | None:
    """'did not learn in k of n seeds (the first reason)' for a cell of ``n`` completed runs, ``reasons`` those of
    its dead ones; ``search``: its runs are search trials, not seeds ('k of n trials'). None when none is dead."""
    if not reasons:
        return None
    return f"did not learn in {len(reasons)} of {n} {'trials' if search else 'seeds'} ({reasons[0]})"
