"""Progress of a launch (read from the storage, so it also counts other machines' workers) and the closing table.

On a terminal: a tqdm bar (done / to run, running, failed, ETA). Elsewhere (CI logs, pipes): one line per finished
trial. The ETA is the remaining trials × the mean wall time of the trials finished in this launch ÷ the workers
(before the first finishes: the dry-run estimate).
"""
from __future__ import annotations

import math
import os
import statistics
import sys
import threading
import time
from typing import Any, Callable, TextIO

from .grid import GridSpec
from .identity import cell_aliases
from .study import objective_values, statuses, trial_status
from .study_format import DONE, FAILED, trial_cell


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = max(0, int(round(seconds)))
    if seconds >= 48 * 3600:
        d, rem = divmod(seconds, 86400)
        return f"{d}d{rem // 3600:02d}h"
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def _is_terminal(stream: Any) -> bool:
    """A terminal with a size (a pty without one, e.g. under `script`, makes tqdm print nothing: use lines)."""
    try:
        if not stream.isatty():
            return False
        cols, rows = os.get_terminal_size(stream.fileno())
        return cols > 20 and rows > 2
    except (AttributeError, OSError, ValueError):
        return False


class Monitor:
    """Polls the study every ``interval`` seconds in a thread and shows progress of this launch's units."""

    def __init__(self, spec: GridSpec, read_trials: Callable[[], list[Any]], *, units: set[str], workers: int,
                 estimate_s: float | None = None, interval: float = 1.0, stream: TextIO | None = None) -> None:
        """``units``: the keys of the units this launch runs; only they are counted (``Plan.units_to_run``)."""
        self.spec, self.read_trials, self.workers = spec, read_trials, max(1, workers)
        self.units, self.to_run = set(units), len(units)
        self.estimate_s, self.interval = estimate_s, interval
        self.stream = stream or sys.stderr
        self.tty = _is_terminal(self.stream)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sweep-progress", daemon=True)
        self._seen: dict[int, str] = {}
        self._start = time.time()
        self._base_done: int | None = None
        self._durations: list[float] = []
        self._bar = None
        self._new: list[tuple[Any, str]] = []
        self.last_line = ""

    def __enter__(self) -> "Monitor":
        self._base_done, _ = self._snapshot(initial=True)
        if self.tty:
            from tqdm import tqdm

            self._bar = tqdm(total=self.to_run, unit="trial", file=self.stream, dynamic_ncols=True,
                             bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} trials "
                                        "[{elapsed}{postfix}]")
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            self.poll()
        except Exception:  # noqa: BLE001
            pass
        if self._bar is not None:
            self._bar.close()

    def _snapshot(self, initial: bool = False) -> tuple[int, dict[str, int]]:
        trials = self.read_trials()
        counts = {"running": 0, "failed": 0, "waiting": 0, "done": 0}
        for st in statuses(self.spec, trials):
            if st.unit.key not in self.units:   # another launch's (or already settled before this one)
                continue
            if st.state in DONE:
                counts["done"] += 1
            elif st.state == "running":
                counts["running"] += 1
            elif st.state == "waiting":
                counts["waiting"] += 1
            elif st.state in FAILED:
                counts["failed"] += 1
        self._new = []
        for t in trials:
            s = trial_status(t)
            if s in ("running", "waiting") or t.number in self._seen or t.user_attrs.get("unit") not in self.units:
                continue
            self._seen[t.number] = s
            if initial:
                continue
            if t.datetime_start and t.datetime_complete:
                self._durations.append((t.datetime_complete - t.datetime_start).total_seconds())
            self._new.append((t, s))
        return counts["done"] + counts["failed"], counts

    def _event(self, t: Any, s: str, progress: str) -> None:
        # named by cell and seed, which stay; the Optuna number (#) changes when an interrupted trial resumes
        who = f"trial {t.user_attrs.get('cell') or 'base'} seed {t.user_attrs.get('seed')} (#{t.number})"
        if s == "complete":
            msg = f"{who}: {self.spec.objective['metric']} {t.value:.2f}"
        else:
            msg = f"{who}: {t.user_attrs.get('reason') or s}"
        if self._bar is not None:
            if s != "complete":
                self._bar.write(msg, file=self.stream)
        else:
            print(f"[sweep] {msg}   [{progress}]", file=self.stream, flush=True)

    def eta(self, remaining: int) -> float | None:
        if remaining <= 0:
            return 0.0
        if self._durations:
            per = statistics.mean(self._durations)
        elif self.estimate_s is not None and self.to_run:
            per = self.estimate_s * self.workers / self.to_run
        else:
            return None
        return remaining * per / self.workers

    def poll(self) -> None:
        settled, counts = self._snapshot()
        done_now = max(0, settled - (self._base_done or 0))
        remaining = max(0, self.to_run - done_now)
        eta = self.eta(remaining)
        self.last_line = (f"{done_now}/{self.to_run} done, {counts['running']} running, {counts['failed']} failed, "
                          f"ETA {fmt_duration(eta)}")
        for t, s in self._new:
            self._event(t, s, self.last_line)
        if self._bar is not None:
            self._bar.n = min(done_now, self.to_run)
            self._bar.set_description_str(self.spec.study, refresh=False)
            self._bar.set_postfix_str(f"{counts['running']} running, {counts['failed']} failed, "
                                      f"ETA {fmt_duration(eta)}", refresh=False)
            self._bar.refresh()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - progress must never kill a launch
                pass


def mean_std(values: list[float]) -> tuple[float, float]:
    m = statistics.mean(values)
    return m, (statistics.stdev(values) if len(values) > 1 else 0.0)


def result_lines(spec: GridSpec, trials: list[Any]) -> list[str]:
    """One line per cell: mean ± std of the objective over seeds (search: the best trial and its values); failed
    and unfinished trials named by their seed (search: their slot), not by Optuna's number, which a resume changes;
    a cell that did not learn marked DEAD."""
    from .results import dead_cells, trial_frame

    metric = spec.objective["metric"]
    values = objective_values(spec, trials)
    sts = statuses(spec, trials)
    dead = dead_cells(trial_frame(spec, trials))
    width = max([len(c.id or "base") for c in spec.cells] + [4])
    lines = []
    for cell in spec.cells:
        mine = [s for s in sts if s.unit.cell.id == cell.id]
        n_fail = sum(1 for s in mine if s.state in FAILED)
        n_div = sum(1 for s in mine if s.state == "diverged")
        n_pruned = sum(1 for s in mine if s.state == "pruned")
        n_left = sum(1 for s in mine if s.state not in DONE + FAILED)
        vals = values.get(cell.id, [])
        label = (cell.id or "base").ljust(width)
        if spec.search:
            best = _best_trial(spec, trials, cell.id)
            core = (f"best {metric} {best.value:.2f} with " +
                    ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())) if best else f"{metric} —"
        elif vals:
            m, s = mean_std(vals)
            core = f"{metric} {m:6.2f} ± {s:4.2f}  (n={len(vals)})"
        else:
            core = f"{metric}    —"
        notes = []
        if n_pruned:
            notes.append(f"{n_pruned} pruned")
        if n_fail:
            notes.append(f"{n_fail} failed" + (f" ({n_div} diverged)" if n_div else "") +
                         f": {_units(s for s in mine if s.state in FAILED)}")
        if n_left:
            notes.append(f"{n_left} not finished: {_units(s for s in mine if s.state not in DONE + FAILED)}")
        if cell.id in dead:
            notes.append(f"DEAD: {dead[cell.id]}")
        notes += _fast_path_notes([s.latest for s in mine if s.latest is not None])
        lines.append(f"  {label}  {core}" + (f"   [{', '.join(notes)}]" if notes else ""))
    return lines


def _fast_path_notes(trials: list[Any]) -> list[str]:
    """What the fast-path guard did to a cell's trials: fell back to a slower path (and why, the first reason), or
    replayed a bf16 run in fp32 after it went non-finite."""
    notes = []
    fell = [t.user_attrs["fast_fallback"] for t in trials if t.user_attrs.get("fast_fallback")]
    if fell:
        notes.append(f"{len(fell)} fell back from the fast path: {fell[0][:160]}")
    replayed = [t for t in trials if t.user_attrs.get("precision_changed")]
    if replayed:
        change = replayed[0].user_attrs["precision_changed"]
        notes.append(f"{len(replayed)} replayed in {change.get('to')} after going non-finite in {change.get('from')}")
    return notes
def _units(sts: Any) -> str:
    """The units of a cell by seed (search: by slot), as the closing table names them: ``seed 0, seed 2``."""
    return ", ".join(f"trial {s.unit.slot}" if s.unit.slot is not None else f"seed {s.unit.seed}" for s in sts)


def _best_trial(spec: GridSpec, trials: list[Any], cell_id: str) -> Any:
    from optuna.trial import TrialState

    aliases = cell_aliases(spec, trials)
    done = [t for t in trials if t.state == TrialState.COMPLETE and trial_cell(t.user_attrs, aliases) == cell_id]
    if not done:
        return None
    pick = min if spec.objective["direction"] == "minimize" else max
    return pick(done, key=lambda t: t.value)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
