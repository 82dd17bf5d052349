"""What a study cost, measured: each run's training time, cores and throughput (``summary.json``: ``wall_time_s``,
``threads``, ``img_per_s``), summed into hours and core-hours, the work trained again after hard stops
(``lost_wall_time_s``), and the span of its trials (Optuna's start and end times, pauses between launches included)."""
from __future__ import annotations

import math

import pandas as pd

from .study_reader import StudyData


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


def compute_lines(data: StudyData) -> list[str]:
    """Markdown bullets: hours and core-hours of training over the runs that trained, img/s per cell (mean over its
    completed runs, with the device, precision and fast path), and the study's span. [] before any run trained."""
    trained = data.trials[data.trials["wall_time_s"].notna() & (data.trials["wall_time_s"] > 0)]
    # one row per run record: the attempts that resumed a run share its folder, whose clock covers them all
    folder = trained["run_dir_attr"].fillna(trained["trial"].map(lambda n: f"trial {n}"))  # the trial's own folder
    records = trained.assign(folder=folder).sort_values("wall_time_s").drop_duplicates("folder", keep="last")
    if records.empty:
        return []
    threads = records["threads"].fillna(1.0)
    seconds = float(records["wall_time_s"].sum())
    core_seconds = float((records["wall_time_s"] * threads).sum())
    per_run = sorted({int(t) for t in threads})
    cores = "/".join(str(t) for t in per_run) + (" thread per run" if per_run == [1] else " threads per run")
    done = data.runs[(data.runs["status"] == "complete") & data.runs["wall_time_s"].notna()]
    # a diverged or pruned run ended as a result: neither another attempt nor a run in progress
    ended = {status: int((records["status"] == status).sum()) for status in ("diverged", "pruned")}
    others = len(records) - len(done) - sum(ended.values())
    lines = [f"- Training time: {_hours(seconds)} over {_count(len(records), 'run record')} "
             f"({_count(len(done), 'complete run')}"
             + "".join(f", {n} {status}" for status, n in ended.items() if n)
             + (f", {_count(others, 'other attempt or run in progress', 'other attempts or runs in progress')}"
                if others > 0 else "") + "), "
             f"{core_seconds / 3600:.2f} core-hours ({cores}; `summary.json`'s wall_time_s × threads)."]
    lost = records["lost_wall_time_s"].fillna(0.0) if "lost_wall_time_s" in records else pd.Series(dtype=float)
    if (lost > 0).any():
        lines.append(f"- Work trained again after hard stops (each attempt's clock past the checkpoint its resume "
                     f"started from; `summary.json`'s lost_wall_time_s): {_hours(float(lost.sum()))} in "
                     f"{_count(int((lost > 0).sum()), 'run')}, {float((lost * threads).sum()) / 3600:.2f} core-hours, "
                     f"not in the training time above.")
    speeds = []
    for cid, g in done.groupby("cell", sort=False):
        if g["img_per_s"].notna().any():
            label = data.cells[cid].label if cid in data.cells else str(cid)
            speeds.append(f"{label} {g['img_per_s'].mean():.0f}")
    if speeds:
        lines.append("- Throughput, training images per second of a run's wall time (evaluations and checkpoints "
                     "included), mean over each cell's completed runs: " + ", ".join(speeds) + ".")
    started, ended = pd.to_datetime(data.trials["started"]).min(), pd.to_datetime(data.trials["ended"]).max()
    if not (pd.isna(started) or pd.isna(ended)):
        span = (ended - started).total_seconds()
        if span > 0 and not math.isnan(span):
            lines.append(f"- Span: first trial started {started:%Y-%m-%d %H:%M}, last ended {ended:%Y-%m-%d %H:%M} "
                         f"({_hours(span)}, pauses between launches included).")
    return lines
