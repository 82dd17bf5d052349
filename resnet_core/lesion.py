"""Lesion study (Veit et al. 2016): replace each block in turn by its shortcut at test time and measure the test error.

Plain and residual nets are lesioned on equal footing: a block whose output has its input's shape becomes the
identity in both; a residual stage-entry block becomes its (option A/B) shortcut, and a plain stage-entry block, with
no shortcut, is not lesionable (its row has `lesionable` false and no error). A block whose deletion makes some
images' outputs NaN or inf is a lesion result like any other: those images have no prediction and count as errors,
and the row says how many (`nonfinite_images`). A net whose outputs are not finite intact has no baseline to
lesion and gives no table (`NonFiniteOutputs`)."""
from __future__ import annotations

from typing import Any, Callable

import pandas as pd
import torch

from .errors import NonFiniteOutputs
from .fast_path import evaluate_outputs
from .model import ResNet


COLUMNS = ["block", "block_index", "lesionable", "test_error", "baseline_error", "nonfinite_images"]


def _baseline_error(model: ResNet, loader: Any, device: torch.device, amp: torch.dtype | None) -> float:
    """Test error (%) of the intact ``model``; NonFiniteOutputs when any image's outputs are NaN or inf."""
    ev = evaluate_outputs(model, loader, 1, device, amp)
    bad = ev.nonfinite_part("test")
    if bad:
        raise NonFiniteOutputs(f"the model's outputs are not finite (NaN or inf) with no block deleted, on {bad}: "
                               f"no lesion table is written")
    return ev.error[0]


def lesion_table(model: ResNet, loader: Any, device: torch.device, amp: torch.dtype | None = None,
                 progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """One row per block in forward order: test error (%) with that block lesioned (NaN if not lesionable; an image
    whose outputs are NaN or inf counts as an error, and ``nonfinite_images`` counts them) and the intact network's;
    evaluated under autocast to ``amp`` (the run's precision) when given. ``progress`` is told each evaluation as it
    starts (``intact``, then each lesionable block's name). NonFiniteOutputs when the intact net's outputs are NaN or
    inf."""
    tell = progress or (lambda what: None)
    tell("intact")
    baseline = _baseline_error(model, loader, device, amp)
    rows = []
    try:
        for i, (name, block) in enumerate(list(model.blocks())):
            error, bad = float("nan"), 0
            if block.lesionable:
                tell(name)
                model.set_lesion(name)
                ev = evaluate_outputs(model, loader, 1, device, amp)
                error, bad = ev.error[0], ev.nonfinite[0]
            rows.append({"block": name, "block_index": i, "lesionable": block.lesionable, "test_error": error,
                         "baseline_error": baseline, "nonfinite_images": bad})
    finally:
        model.set_lesion(None)
    return pd.DataFrame(rows, columns=COLUMNS)
