"""Lesion study (Veit et al. 2016): replace each block in turn by its shortcut at test time and measure the test error.

Plain and residual nets are lesioned on equal footing: a block whose output has its input's shape becomes the
identity in both; a residual stage-entry block becomes its (option A/B) shortcut, and a plain stage-entry block, with
no shortcut, is not lesionable (its row has `lesionable` false and no error). A net whose outputs are not finite,
intact or with a block deleted, gives no table (`NonFiniteOutputs`): no row holds an error rate taken from NaN."""
from __future__ import annotations

from typing import Any, Callable

import pandas as pd
import torch

from .errors import NonFiniteOutputs
from .fast_path import evaluate_outputs
from .model import ResNet


COLUMNS = ["block", "block_index", "lesionable", "test_error", "baseline_error"]


def _test_error(model: ResNet, loader: Any, device: torch.device, amp: torch.dtype | None, what: str) -> float:
    """Test error (%) of ``model``; NonFiniteOutputs naming ``what`` (intact, or the deleted block) when any image's
    outputs are NaN or inf."""
    ev = evaluate_outputs(model, loader, 1, device, amp)
    bad = ev.nonfinite_part("test")
    if bad:
        raise NonFiniteOutputs(f"the model's outputs are not finite (NaN or inf) {what}, on {bad}: no lesion table "
                               f"is written")
    return ev.error[0]


def lesion_table(model: ResNet, loader: Any, device: torch.device, amp: torch.dtype | None = None,
                 progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """One row per block in forward order: test error (%) with that block lesioned (NaN if not lesionable) and the
    intact network's; evaluated under autocast to ``amp`` (the run's precision) when given. ``progress`` is told
    each evaluation as it starts (``intact``, then each lesionable block's name). NonFiniteOutputs when the net's
    outputs are NaN or inf, intact or with a block deleted."""
    tell = progress or (lambda what: None)
    tell("intact")
    baseline = _test_error(model, loader, device, amp, "with no block deleted")
    rows = []
    try:
        for i, (name, block) in enumerate(list(model.blocks())):
            error = float("nan")
            if block.lesionable:
                tell(name)
                model.set_lesion(name)
                error = _test_error(model, loader, device, amp, f"with {name} deleted")
            rows.append({"block": name, "block_index": i, "lesionable": block.lesionable, "test_error": error,
                         "baseline_error": baseline})
    finally:
        model.set_lesion(None)
    return pd.DataFrame(rows, columns=COLUMNS)
