"""Lesion study (Veit et al. 2016): replace each block in turn by its shortcut at test time and measure the test error.

Plain and residual nets are lesioned on equal footing: a block whose output has its input's shape becomes the
identity in both; a residual stage-entry block becomes its (option A/B) shortcut, and a plain stage-entry block, with
no shortcut, is not lesionable (its row has `lesionable` false and no error)."""
from __future__ import annotations

from typing import Any, Callable

import pandas as pd
import torch

from .engine import evaluate_model
from .model import ResNet


COLUMNS = ["block", "block_index", "lesionable", "test_error", "baseline_error"]


def lesion_table(model: ResNet, loader: Any, device: torch.device, amp: torch.dtype | None = None,
                 progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """One row per block in forward order: test error (%) with that block lesioned (NaN if not lesionable) and the
    intact network's; evaluated under autocast to ``amp`` (the run's precision) when given. ``progress`` is told
    each evaluation as it starts (``intact``, then each lesionable block's name)."""
    tell = progress or (lambda what: None)
    tell("intact")
    baseline = evaluate_model(model, loader, 1, device, amp)[1][0]
    rows = []
    for i, (name, block) in enumerate(list(model.blocks())):
        error = float("nan")
        if block.lesionable:
            tell(name)
            model.set_lesion(name)
            error = evaluate_model(model, loader, 1, device, amp)[1][0]
        rows.append({"block": name, "block_index": i, "lesionable": block.lesionable, "test_error": error,
                     "baseline_error": baseline})
    model.set_lesion(None)
    return pd.DataFrame(rows, columns=COLUMNS)
