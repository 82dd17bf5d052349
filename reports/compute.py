"""What a study cost, measured: each run's training time, cores and throughput (``summary.json``: ``wall_time_s``,
``threads``, ``img_per_s``), summed into hours, CPU core-hours and accelerator device-hours, the work trained again
after hard stops (``lost_wall_time_s``), and the span of its trials (Optuna's start and end times, pauses between
launches included). The G members of a fused run share one clock (``fused_members``): it counts once, not G times."""
from __future__ import annotations

import math

import pandas as pd

from .study_reader import StudyData


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


def _processes(records: pd.DataFrame) -> pd.DataFrame:
    """One row per training process: the records of a fused run's members (trial attr ``fused_with``) share its
    clock, so the run counts once, for as long as its longest member trained (``wall_time_s``, ``lost_wall_time_s``
    as the maximum over its members)."""
    key = records["fused_with"].map(lambda group: f"fused {group}" if isinstance(group, tuple) else None)
    grouped = records.assign(run=key.fillna(records["folder"]))
    lost = grouped["lost_wall_time_s"] if "lost_wall_time_s" in grouped else pd.Series(0.0, index=grouped.index)
    device = grouped["device"].astype("string").str.split(":").str[0]   # cuda:0 → cuda; a record without: <NA>
    on_cpu = grouped["threads"].notna() | device.isna() | (device == "cpu")   # an unnamed device counts as the CPU
    grouped = grouped.assign(lost=lost.fillna(0.0), on_cpu=on_cpu,
                             threads=grouped["threads"].where(on_cpu).fillna(1.0),  # a CPU record without: one
                             accelerator=device)
    return grouped.groupby("run", sort=False).agg(
        wall=("wall_time_s", "max"), lost=("lost", "max"), threads=("threads", "max"), on_cpu=("on_cpu", "all"),
        accelerator=("accelerator", "first"), members=("folder", "size"))


def _cost(seconds: pd.Series, runs: pd.DataFrame, why: bool) -> str:
    """'3.10 core-hours' over the CPU processes, '1.20 device-hours on cuda' over each accelerator's; with ``why``,
    each says where it comes from."""
    parts = []
    cpu = runs[runs["on_cpu"]]
    if not cpu.empty:
        per_run = sorted({int(t) for t in cpu["threads"]})
        cores = "/".join(str(t) for t in per_run) + (" thread per run" if per_run == [1] else " threads per run")
        source = f" ({cores}; `summary.json`'s wall_time_s × threads)" if why else ""
        parts.append(f"{float((seconds * runs['threads'])[runs['on_cpu']].sum()) / 3600:.2f} core-hours{source}")
    for name, g in runs[~runs["on_cpu"]].groupby("accelerator"):
        source = " (one device per run; `summary.json`'s wall_time_s)" if why else ""
        parts.append(f"{float(seconds[g.index].sum()) / 3600:.2f} device-hours on {name}{source}")
    return "; ".join(parts)


def compute_lines(data: StudyData) -> list[str]:
    """Markdown bullets: hours of training and its CPU core-hours or accelerator device-hours over the runs that
    trained (a fused run's clock once), img/s per cell (mean over its completed runs), the work trained again after
    hard stops, and the study's span. [] before any run trained."""
    trained = data.trials[data.trials["wall_time_s"].notna() & (data.trials["wall_time_s"] > 0)]
    # one row per run record: the attempts that resumed a run share its folder, whose clock covers them all
    folder = trained["run_dir_attr"].fillna(trained["trial"].map(lambda n: f"trial {n}"))  # the trial's own folder
    records = trained.assign(folder=folder).sort_values("wall_time_s").drop_duplicates("folder", keep="last")
    if records.empty:
        return []
    runs = _processes(records)
    fused = runs[runs["members"] > 1]
    done = data.runs[(data.runs["status"] == "complete") & data.runs["wall_time_s"].notna()]
    # a diverged or pruned run ended as a result: neither another attempt nor a run in progress
    ended = {status: int((records["status"] == status).sum()) for status in ("diverged", "pruned")}
    others = len(records) - len(done) - sum(ended.values())
    lines = [f"- Training time: {_hours(float(runs['wall'].sum()))} over {_count(len(records), 'run record')} "
             f"({_count(len(done), 'complete run')}"
             + "".join(f", {n} {status}" for status, n in ended.items() if n)
             + (f", {_count(others, 'other attempt or run in progress', 'other attempts or runs in progress')}"
                if others > 0 else "")
             + (f"; {int(fused['members'].sum())} of the records trained as {_count(len(fused), 'fused run')} of "
                f"{'/'.join(str(g) for g in sorted(set(fused['members'])))} members, each fused run's clock counted "
                f"once" if len(fused) else "") + ")"
             + f", {_cost(runs['wall'], runs, why=True)}."]
    lost = runs["lost"]
    if (lost > 0).any():
        lines.append(f"- Work trained again after hard stops (each attempt's clock past the checkpoint its resume "
                     f"started from; `summary.json`'s lost_wall_time_s): {_hours(float(lost.sum()))} in "
                     f"{_count(int((lost > 0).sum()), 'run')}, {_cost(lost, runs, why=False)}, "
                     f"not in the training time above.")
    speeds = []
    for cid, g in done.groupby("cell", sort=False):
        if g["img_per_s"].notna().any():
            label = data.cells[cid].label if cid in data.cells else str(cid)
            speeds.append(f"{label} {g['img_per_s'].mean():.0f}")
    if speeds:
        lines.append("- Throughput, training images per second of a run's wall time (evaluations and checkpoints "
                     "included), mean over each cell's completed runs: " + ", ".join(speeds)
                     + ("; a fused run's members each count their own images, so the run trains as many times "
                        "that as it has members" if len(fused) else "") + ".")
    started, ended = pd.to_datetime(data.trials["started"]).min(), pd.to_datetime(data.trials["ended"]).max()
    if not (pd.isna(started) or pd.isna(ended)):
        span = (ended - started).total_seconds()
        if span > 0 and not math.isnan(span):
            lines.append(f"- Span: first trial started {started:%Y-%m-%d %H:%M}, last ended {ended:%Y-%m-%d %H:%M} "
                         f"({_hours(span)}, pauses between launches included).")
    return lines
