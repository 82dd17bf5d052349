"""A rough time estimate for a sweep (``--dry-run`` and the first ETA): FLOPs × images ÷ an assumed throughput.

Per trial: training ≈ 3 × forward FLOPs × batch × iterations, evaluation ≈ forward FLOPs × (test + val images) × the
number of evaluations, plus a fixed start-up cost. Throughputs are effective, measured on this project's engine:
ResNet-20 on an H100 at 61.6k img/s with the whole-step CUDA graph (≈ 15 TFLOP/s), and small nets on 2 CPU cores
(35–44 GFLOP/s a core for the quickstart's ResNet-8/20 on 16×16 images; 30 assumed). Small nets on a GPU are launch-bound and slow convs on old CPUs are
slower: it is an estimate, good to a factor of about two.
"""
from __future__ import annotations

import dataclasses
import math
import os
from functools import lru_cache
from typing import Any

import torch

from resnet_core.config import ModelConfig
from resnet_core.data import dataset_shape
from resnet_core.devices import autocast_dtype, available_cores
from resnet_core.flops import forward_flops
from resnet_core.fusion import bench_model_name, fused_gain
from resnet_core.run_config import RunConfig
from resnet_core.schedules import total_steps

from .grid import GridSpec

# effective training FLOP/s (a CPU core: measured on AVX512-BF16 cores with `resnet-ablate bench`, ResNet-20/56 at
# batch 128: ~40 GFLOP/s in fp32 channels_last, ~65 in bf16 autocast)
FLOPS = {"cpu_core": 35e9, "cpu_core_bf16": 65e9, "cuda": 15e12, "mps": 2e12, "npu": 5e12}
STARTUP_S = {"cpu": 2.0, "cuda": 20.0, "mps": 10.0, "npu": 20.0}      # imports, data, graph capture


def _cores() -> int:
    return available_cores()


@lru_cache(maxsize=256)
def _forward_flops(model_items: tuple, image_size: int) -> int:
    return int(forward_flops(ModelConfig(**dict(model_items)), image_size))


def _freeze(d: dict[str, Any]) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in d.items()))


def trial_seconds(cfg: dict[str, Any], device: str) -> float | None:
    """Estimated seconds for one run config on ``device`` (cpu, cuda:…, mps, npu), or None if unknown."""
    rc = RunConfig.from_dict(cfg)
    d = rc.data
    shape = dataset_shape(d)
    if shape is None:
        return None
    n_train, n_test, size, channels, classes = shape
    n_val = int(d.val_size * n_train) if isinstance(d.val_size, float) else int(d.val_size)
    n_train -= n_val
    if d.resize:
        size = d.resize
    spe = max(1, n_train // rc.batch_size)
    steps = total_steps(rc.schedule, spe)
    model = dataclasses.replace(rc.model, in_channels=channels, num_classes=classes)
    fwd = _forward_flops(_freeze(dataclasses.asdict(model)), size)
    unit = spe if rc.schedule.unit == "epoch" else 1
    n_evals = math.ceil(steps / max(1, round(rc.eval_every * unit)))
    flops = 3 * fwd * rc.batch_size * steps + fwd * (n_test + n_val) * n_evals
    kind = device.split(":")[0]
    if kind == "cpu":
        bf16 = autocast_dtype(rc.precision, torch.device("cpu")) == torch.bfloat16
        rate = FLOPS["cpu_core_bf16" if bf16 else "cpu_core"] * _cores()
    else:
        rate = FLOPS.get(kind, FLOPS["cuda"])
    return STARTUP_S.get(kind, 10.0) + flops / rate


def sweep_seconds(spec: GridSpec, units: list[Any], devices: list[str],
                  packing: Any = None) -> tuple[float | None, dict[str, float]]:
    """(total wall seconds for ``units`` on these devices, per-cell seconds of one trial). CPU workers share the
    cores, so CPU time adds up; distinct GPUs run in parallel. With a ``packing.Packing``, trials packed into one
    fused run take one start-up plus ``members × one trial's training ÷ the fused gain`` (no gain on the CPU)."""
    per_cell: dict[str, float] = {}
    device = devices[0] if devices else "cpu"
    for u in units:
        if u.cell.id not in per_cell:
            try:
                t = trial_seconds(spec.run_config(u.cell, u.seed), device)
            except Exception:  # noqa: BLE001 - an estimate must never stop a dry run
                t = None
            if t is None:
                return None, per_cell
            per_cell[u.cell.id] = t
    parallel = 1 if device.startswith("cpu") else max(1, len(set(devices)))
    if packing is None:
        return sum(per_cell[u.cell.id] for u in units) / parallel, per_cell

    from .packing import device_type, plan_runs

    total = 0.0
    startup = STARTUP_S.get(device_type(device), 10.0)  # paid once per fused run, not per member
    for run in plan_runs(spec, units, packing):
        train = max(0.0, per_cell[run.units[0].cell.id] - startup)
        gain = fused_gain(device_type(packing.device), run.members, bench_model_name(run.cfg.get("model") or {}),
                          packing.table)
        total += startup + train * run.members / gain
    return total / parallel, per_cell
