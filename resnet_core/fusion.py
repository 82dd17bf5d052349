"""Which runs can train fused, and how many members to fuse (why and how: docs/fused_trials.md).

Runs can share one fused model when their resolved configs are equal in everything but the member keys below
(name, seed) and the masked keys (model.shortcut none vs identity): same architecture, data, optimizer, schedule
and batch size. Learning rate and weight decay are not fusable: one optimizer updates the fused tensors. How many to fuse comes from `resnet-ablate bench
--members …` (a JSON table written with --out), else from the H100 measurements below (docs/fused_trials.md).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

# The keys fused members may differ in freely. Everything else must match (one module, one loader, one schedule)…
MEMBER_KEYS = ("name", "seed")
# …except these, which members may mix among the values listed: a plain member (`none`) and an option-A residual
# member (`identity`) have the same tensors, and the fused block adds each member's shortcut times 1 or 0.
MASKED_KEYS = {"model.shortcut": ("none", "identity")}

# Measured on an H100 at batch 128 per member (CUDA graph): G=2 gained little, G>=4 paid, G=8 was best for
# ResNet-20/56/110 (aggregate 51.5k→138k, 22.6k→73.9k, 9.6k→30.8k img/s).
MEASURED_BEST_MEMBERS = {"cuda": 8}
MIN_GAIN = 1.10  # a larger group must beat the smaller one by 10 % aggregate img/s to be worth it


def fusable_view(config: dict[str, Any]) -> dict[str, Any]:
    """The config as fusion sees it: without the member keys, and with a masked key's mixable values made equal."""
    view = copy.deepcopy({k: v for k, v in config.items() if k not in MEMBER_KEYS})
    for dotted, values in MASKED_KEYS.items():
        section, _, key = dotted.partition(".")
        part = view.get(section)
        if isinstance(part, dict) and part.get(key) in values:
            part[key] = "|".join(values)
    return view


def fusion_key(config: dict[str, Any]) -> str:
    """A canonical string: equal keys ⇔ the runs can be fused."""
    return json.dumps(fusable_view(config), sort_keys=True, default=str)


def bench_row(path: Path | None, model: str | None) -> dict[str, Any] | None:
    """The row for `model` (e.g. "resnet56") of a `resnet-ablate bench --out` JSON table, or None."""
    if path is None or model is None or not path.exists():
        return None
    rows = json.loads(path.read_text()).get("rows", [])
    return next((r for r in rows if r.get("model") == model), None)


def members_from_bench(path: Path, model: str) -> int | None:
    """The best G for `model` (e.g. "resnet56") in a bench JSON table, or None if it has no row for it."""
    row = bench_row(path, model)
    if row is None:
        return None
    sizes = sorted(int(k[len("engine_G"):]) for k in row if k.startswith("engine_G"))
    best = sizes[0] if sizes else 1
    for g in sizes[1:]:
        if row[f"engine_G{g}"] >= MIN_GAIN * row[f"engine_G{best}"]:
            best = g
    return best


# Aggregate-throughput gain of G fused members over one run on CUDA, where no bench table says otherwise: the H100
# measurements above give G=8 (×2.7 ResNet-20, ×3.3 ResNet-56, ×3.2 ResNet-110) and "G=2 gains little"; G=4 is
# interpolated.
# On the CPU a fused run does the same arithmetic as G separate runs: no gain is assumed.
ASSUMED_CUDA_GAIN = {1: 1.0, 2: 1.1, 4: 2.0, 8: 3.0}


def fused_gain(device_type: str, members: int, model: str | None = None, bench: Path | None = None) -> float:
    """How many times the aggregate img/s of one run G fused members reach (for time estimates)."""
    if members <= 1 or device_type != "cuda":
        return 1.0
    row = bench_row(bench, model)
    if row and row.get("engine_G1") and row.get(f"engine_G{members}"):
        return float(row[f"engine_G{members}"]) / float(row["engine_G1"])
    sizes = sorted(ASSUMED_CUDA_GAIN)
    lower = max(g for g in sizes if g <= members)
    upper = min((g for g in sizes if g >= members), default=lower)
    if upper == lower:
        return ASSUMED_CUDA_GAIN[lower]
    frac = (members - lower) / (upper - lower)
    return ASSUMED_CUDA_GAIN[lower] + frac * (ASSUMED_CUDA_GAIN[upper] - ASSUMED_CUDA_GAIN[lower])


def bench_model_name(model: dict[str, Any]) -> str | None:
    """The bench table's row name for a model config ("resnet56" for a CIFAR basic-block net), else None."""
    if model.get("family", "cifar") == "cifar" and model.get("block", "basic") in ("basic", "auto") \
            and isinstance(model.get("depth"), int):
        return f"resnet{model['depth']}"
    return None


def auto_members(device_type: str, model: str | None = None, bench: Path | None = None) -> int:
    """`--fuse auto`: 1 (off) on CPU/MPS/NPU; on CUDA the bench table's choice, else the measured default."""
    if device_type != "cuda":
        return 1
    chosen = members_from_bench(bench, model) if bench is not None and model is not None else None
    return chosen if chosen is not None else MEASURED_BEST_MEMBERS["cuda"]
