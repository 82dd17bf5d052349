"""Lesion study (Veit et al. 2016): delete each residual block in turn at test time and measure the test error."""
from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from .engine import evaluate_model
from .model import ResNet


def lesion_table(model: ResNet, loader: Any, device: torch.device) -> pd.DataFrame:
    baseline = evaluate_model(model, loader, 1, device)[1][0]
    rows = []
    for i, (name, _) in enumerate(list(model.blocks())):
        model.set_lesion(name)
        rows.append({"block": name, "block_index": i, "test_error": evaluate_model(model, loader, 1, device)[1][0],
                     "baseline_error": baseline})
    model.set_lesion(None)
    return pd.DataFrame(rows, columns=["block", "block_index", "test_error", "baseline_error"])
