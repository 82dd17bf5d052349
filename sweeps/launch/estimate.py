"""A rough time estimate for a sweep (``--dry-run`` and the first ETA): FLOPs × images ÷ an assumed throughput.

Per trial: training ≈ 3 × forward FLOPs × batch × iterations, evaluation ≈ forward FLOPs × (test + val images) × the
number of evaluations, plus a fixed start-up cost; the trials are shared out to the launch's workers as they free up,
each worker with its share of the device (CPU workers split the cores). Throughputs are effective, measured on this
project's engine: ResNet-20 on an H100 at 61.6k img/s with the whole-step CUDA graph (≈ 15 TFLOP/s), and small nets
on 2 CPU cores (35–44 GFLOP/s a core for the quickstart's ResNet-8/20 on 16×16 images; 30 assumed). Small nets on a
GPU are launch-bound and slow convs on old CPUs are slower, and other jobs on the machine are not known: it is an
estimate, good to a factor of about two on an idle machine. The live ETA (``monitor``) comes from the measured steps
per second.
"""
from __future__ import annotations

import os
from typing import Any

from resnet_core.devices import autocast_dtype, available_cores
from resnet_core.fusion import bench_model_name, fused_gain
from resnet_core.run_config import RunConfig

from ..queue.packing import claim_order, device_type, plan_runs
from ..run.worker import assign_devices
from ..spec.grid import GridSpec

# effective training FLOP/s (a CPU core: measured on AVX512-BF16 cores with `resnet-ablate bench`, ResNet-20/56 at
# batch 128: ~40 GFLOP/s in fp32 channels_last, ~65 in bf16 autocast)
FLOPS = {"cpu_core": 35e9, "cpu_core_bf16": 65e9, "cuda": 15e12, "mps": 2e12, "npu": 5e12}
STARTUP_S = {"cpu": 2.0, "cuda": 20.0, "mps": 10.0, "npu": 20.0}      # imports, data, graph capture
# a CPU process's second and further intra-op threads add this much of a core each on small nets (one
# single-threaded worker a core runs the quickstart in about half the time of one worker with every core)
THREAD_GAIN = 0.5


def _cores() -> int:
    return available_cores()


def trial_steps(cfg: dict[str, Any]) -> int | None:
    """Training steps of one run config, None if its dataset is unknown (the run's summary.json says it exactly)."""
    planned = RunConfig.from_dict(cfg).planned_steps()
    return planned[1] if planned else None


def trial_cost(cfg: dict[str, Any], device: str) -> tuple[float, float] | None:
    """(start-up seconds, compute seconds with the whole ``device``: every core of a CPU) of one run config, or None
    if unknown."""
    rc = RunConfig.from_dict(cfg)
    flops = rc.planned_flops()
    if flops is None:
        return None
    kind = device.split(":")[0]
    if kind == "cpu":
        import torch
        bf16 = autocast_dtype(rc.precision, torch.device("cpu")) == torch.bfloat16
        rate = FLOPS["cpu_core_bf16" if bf16 else "cpu_core"] * _cores()
    else:
        rate = FLOPS.get(kind, FLOPS["cuda"])
    return STARTUP_S.get(kind, 10.0), flops / rate


def trial_seconds(cfg: dict[str, Any], device: str) -> float | None:
    """Estimated seconds for one run config alone on ``device`` (cpu, cuda:…, mps, npu), or None if unknown."""
    cost = trial_cost(cfg, device)
    return sum(cost) if cost else None


def worker_share(device: str, assigned: list[str]) -> float:
    """The fraction of ``device``'s compute one of the ``assigned`` workers gets. CPU workers share the cores out
    (``worker.cpu_threads``); a process's extra intra-op threads add only ``THREAD_GAIN`` of a core each on small
    nets, and more workers than cores time-share them. Workers on one GPU share it."""
    same = max(1, assigned.count(device))
    if not device.startswith("cpu"):
        return 1.0 / same
    cores = _cores()
    threads = max(1, cores // same)
    busy = min(threads, cores / same)
    return busy * (1 + THREAD_GAIN * (threads - 1)) / threads / cores


def schedule_seconds(jobs: list[tuple[float, float]], assigned: list[str]) -> float:
    """Wall seconds for ``jobs`` (start-up seconds, compute seconds with the whole device) taken in order by
    the first free of the ``assigned`` workers (their devices), as the workers claim waiting trials."""
    if not jobs:
        return 0.0
    assigned = assigned or ["cpu"]
    free = [0.0] * len(assigned)
    for startup, compute in jobs:
        w = min(range(len(free)), key=free.__getitem__)
        free[w] += startup + compute / worker_share(assigned[w], assigned)
    return max(free)


def sweep_seconds(spec: GridSpec, units: list[Any], devices: list[str], packing: Any = None,
                  workers: int | None = None, trained: dict[str, int] | None = None
                  ) -> tuple[float | None, dict[str, float]]:
    """(wall seconds for ``units`` with ``workers`` workers on these devices (default: one a device), per-cell
    seconds of one whole trial on one of them). The trials are shared out to the workers as they free up, in the
    order the workers claim them (``packing.claim_order``; ``schedule_seconds``). ``trained``: unit key → the steps
    its checkpoint holds already (an interrupted trial resumes there and trains only the rest). With a
    ``packing.Packing``, trials packed into one fused run take one start-up plus ``members × one trial's training ÷
    the fused gain`` (no gain on the CPU), for as long as its member with the most steps left."""
    costs: dict[str, tuple[float, float]] = {}
    steps: dict[str, int | None] = {}
    device = devices[0] if devices else "cpu"
    for u in units:
        if u.cell.id not in costs:
            try:
                cfg = spec.run_config(u.cell, u.seed)
                cost, steps[u.cell.id] = trial_cost(cfg, device), trial_steps(cfg)
            except Exception:  # noqa: BLE001 - an estimate must never stop a dry run
                cost = None
            if cost is None:
                return None, {}
            costs[u.cell.id] = cost

    def left(u: Any) -> float:
        """The fraction of ``u``'s training still to do."""
        done, total = (trained or {}).get(u.key, 0), steps[u.cell.id]
        return max(0.0, 1.0 - done / total) if done and total else 1.0

    if packing is None:
        firsts = units
        jobs = [(costs[u.cell.id][0], costs[u.cell.id][1] * left(u)) for u in units]
    else:
        runs = plan_runs(spec, units, packing)
        firsts, jobs = [run.units[0] for run in runs], []
        for run in runs:   # a fused run pays one start-up, not one per member
            startup, train = costs[run.units[0].cell.id]
            gain = fused_gain(device_type(packing.device), run.members,
                              bench_model_name(run.cfg.get("model") or {}), packing.table)
            jobs.append((startup, train * max(left(u) for u in run.units) * run.members / gain))
    jobs = [jobs[i] for i in claim_order([u.seed for u in firsts], [costs[u.cell.id][1] for u in firsts])]
    n = workers or len(set(devices)) or 1
    assigned = assign_devices(max(1, min(n, len(jobs))), devices or ["cpu"])
    share = worker_share(assigned[0], assigned)
    per_cell = {cell: startup + compute / share for cell, (startup, compute) in costs.items()}
    return schedule_seconds(jobs, assigned), per_cell


def busy_note(devices: list[str]) -> str:
    """``"; the machine is busy …"`` when CPU workers will share cores that other jobs already load (the 1-minute
    load average above half the cores), else ``""``: the estimate assumes idle cores."""
    if not any(d.startswith("cpu") for d in devices):
        return ""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return ""
    cores = _cores()
    if load <= cores / 2:
        return ""
    return f"; the machine is busy (load {load:.1f} on {cores} cores): expect longer"
