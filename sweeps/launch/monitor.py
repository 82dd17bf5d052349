"""Progress of a launch (read from the storage and the run folders, so it also counts other machines' workers) and
the closing table.

Progress counts training steps: the steps done over the total steps of the trials this launch runs. A running trial's
steps are read from its run folder (the last rows of ``metrics.jsonl``, appended at every log, and ``summary.json``,
rewritten at every evaluation, with ``total_steps``); a finished or failed trial counts whole. The ETA is the steps
left ÷ the steps per second trained over the last ``window`` seconds, across workers (until two polls have measured
steps: the estimate less the time spent; the start-up before the first measured step is not counted). On a terminal:
a tqdm bar; elsewhere (CI logs, pipes): a line every ``line_every`` seconds or 10 % of the steps, and one per
finished trial.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, TextIO

from ..queue.liveness import launched_here
from ..queue.ran_as import mixed_note
from ..queue.study import objective_values, statuses, trial_status
from ..spec.grid import GridSpec
from ..spec.identity import cell_aliases
from ..spec.study_format import DONE, FAILED, trial_cell
from ..verdicts.results import dead_cells, trial_frame
from .estimate import trial_steps

TAIL_BYTES = 4096   # the end of metrics.jsonl read for its last step: many rows of one log
Steps = tuple[int | None, int | None]   # (steps done, total steps) of a run folder


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


class RunSteps:
    """Reads the steps a run folder has trained cheaply: a file is read again only when its size or time changes,
    and of ``metrics.jsonl`` only its last ``TAIL_BYTES``."""

    def __init__(self) -> None:
        self._seen: dict[Path, tuple[tuple[int, int], Steps]] = {}

    def _cached(self, path: Path, read: Callable[[Path], Steps]) -> Steps:
        try:
            st = path.stat()
        except OSError:
            return None, None
        key = (st.st_size, st.st_mtime_ns)
        hit = self._seen.get(path)
        if hit is None or hit[0] != key:
            try:
                hit = (key, read(path))
            except (OSError, ValueError):
                return hit[1] if hit else (None, None)
            self._seen[path] = hit
        return hit[1]

    @staticmethod
    def _summary(path: Path) -> Steps:
        s = json.loads(path.read_text())
        return s.get("step"), s.get("total_steps")

    @staticmethod
    def _tail(path: Path) -> Steps:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - TAIL_BYTES))
            lines = f.read().split(b"\n")
        if size > TAIL_BYTES:
            lines = lines[1:]     # the first is cut
        for line in reversed(lines):
            try:
                row = json.loads(line)
            except ValueError:    # the empty last line, or a torn one of a killed writer
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int):
                return row["step"], None
        return None, None

    def read(self, run_dir: Path) -> Steps:
        """(steps done, total steps) of ``run_dir``; None where it does not say (yet)."""
        step, total = self._cached(run_dir / "summary.json", self._summary)
        logged, _ = self._cached(run_dir / "metrics.jsonl", self._tail)
        steps = [s for s in (step, logged) if s is not None]
        return (max(steps) if steps else None), total


class Monitor:
    """Polls the study every ``interval`` seconds in a thread and shows progress of this launch's units."""

    def __init__(self, spec: GridSpec, read_trials: Callable[[], list[Any]], *, units: set[str], workers: int,
                 estimate_s: float | None = None, interval: float = 1.0, stream: TextIO | None = None,
                 study_dir: str | Path | None = None, clock: Callable[[], float] = time.monotonic,
                 window: float = 120.0, line_every: float = 30.0) -> None:
        """``units``: the keys of the units this launch runs; only they are counted (``Plan.units_to_run``).
        ``study_dir``: where the trials' run folders are (None: whole trials only). ``clock``: seconds, for the rate."""
        self.spec, self.read_trials, self.workers = spec, read_trials, max(1, workers)
        self.units, self.to_run = set(units), len(units)
        self.adopted = 0   # units another launch left waiting that this launch's workers took (see ``_adopt``)
        self.estimate_s, self.interval = estimate_s, interval
        self.stream = stream or sys.stderr
        self.tty = _is_terminal(self.stream)
        self.study_dir = Path(study_dir) if study_dir is not None else None
        self.clock, self.window, self.line_every = clock, window, line_every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sweep-progress", daemon=True)
        self._seen: dict[int, str] = {}
        self._start = clock()
        self._base_done: int | None = None
        self._durations: list[float] = []
        self._bar = None
        self._new: list[tuple[Any, str]] = []
        self.last_line = ""
        self._reader = RunSteps()
        self._totals: dict[str, int | None] = {}   # unit key → its total steps (planned, then its summary's)
        self._planned: dict[str | None, int | None] = {}   # cell id → the total steps its run config plans
        self._steps: dict[str, int] = {}           # unit key → steps done, as last read
        self._settled: set[str] = set()
        self._trained = 0                          # steps trained in this launch, across workers
        self._samples: deque[tuple[float, int]] = deque()   # (time, steps trained) since the first measured step
        self._printed: tuple[float, int] = (self._start, 0)   # (when, tenth of the steps) of the last printed line
        self.steps_done: int | None = None
        self.steps_total: int | None = None
        self.rate: float | None = None             # steps per second
        self._first: tuple[float, int] | None = None

    def __enter__(self) -> "Monitor":
        self.start()
        if self.tty:
            from tqdm import tqdm

            self._bar = tqdm(total=self.steps_total or self.to_run, unit="step", file=self.stream,
                             dynamic_ncols=True, bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                                                            "{unit}s [{elapsed}{postfix}]")
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

    def start(self) -> None:
        """Take the first snapshot: what is settled already is not this launch's progress."""
        self._start = self.clock()
        self._printed = (self._start, 0)
        self._base_done, _ = self._snapshot(initial=True)

    def _planned_total(self, unit: Any) -> int | None:
        """A unit's total steps from its cell's run config (the seed does not change them)."""
        if unit.cell.id not in self._planned:
            try:
                self._planned[unit.cell.id] = trial_steps(self.spec.run_config(unit.cell, unit.seed))
            except Exception:  # noqa: BLE001 - progress must never kill a launch
                self._planned[unit.cell.id] = None
        return self._planned[unit.cell.id]

    def _read(self, trial: Any) -> tuple[int | None, int | None]:
        run_dir = trial.user_attrs.get("run_dir") if trial is not None else None
        if self.study_dir is None or not run_dir:
            return None, None
        return self._reader.read(self.study_dir / run_dir)

    def _count_steps(self, st: Any, initial: bool) -> None:
        """Update the steps of one of this launch's units from its run folder."""
        key = st.unit.key
        if key not in self._totals:
            self._totals[key] = self._planned_total(st.unit)
        if st.state not in DONE + FAILED:
            self._settled.discard(key)     # e.g. a stale trial requeued
        elif key in self._settled:
            return
        if st.state in DONE + FAILED:
            trial = st.latest
        elif st.state == "running":
            trial = _running_trial(st)
        else:
            return
        step, total = self._read(trial)
        if total:
            self._totals[key] = total
        if step is not None:
            # a resumed trial starts at its checkpoint's step: only what it trains from there is this launch's
            before = self._steps.get(key, int(trial.user_attrs.get("resumed_from_step") or 0))
            if not initial:
                self._trained += max(0, step - before)
            self._steps[key] = step
        if st.state in DONE + FAILED:
            self._settled.add(key)

    def _snapshot(self, initial: bool = False) -> tuple[int, dict[str, int]]:
        trials = self.read_trials()
        counts = {"running": 0, "failed": 0, "waiting": 0, "done": 0}
        for st in statuses(self.spec, trials):
            if st.unit.key not in self.units and (initial or not self._adopt(st)):
                continue   # another launch's (or already settled before this one)
            self._count_steps(st, initial)
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
        self._step_totals()
        return counts["done"] + counts["failed"], counts

    def _adopt(self, st: Any) -> bool:
        """Count a unit outside this launch's plan as its own once one of its workers runs it (a trial another
        launch's stop put back in the queue): its earlier trials are the other launch's news, not this one's."""
        if st.state != "running":
            return False
        running = _running_trial(st)
        if running is None or not launched_here(running):
            return False
        self.units.add(st.unit.key)
        self.to_run += 1
        self.adopted += 1
        for t in st.trials:
            if t is not running:
                self._seen.setdefault(t.number, trial_status(t))
        return True

    def _step_totals(self) -> None:
        """The steps done and in all of this launch's units (a settled unit counts whole; an unknown total is the
        mean of the known ones); None without any known total."""
        known = [v for v in self._totals.values() if v]
        if not known:
            self.steps_done = self.steps_total = None
            return
        mean = round(statistics.mean(known))
        totals = {k: v or mean for k, v in self._totals.items()}
        self.steps_total = sum(totals.values())
        self.steps_done = sum(totals[k] if k in self._settled else min(self._steps.get(k, 0), totals[k])
                              for k in totals)

    def _rate(self, now: float) -> float | None:
        """Steps per second trained over the last ``window`` seconds (since the first measured step where none were
        trained in it). The launch's start-up before its first measured step is not counted: workers start once."""
        if not self._trained:
            return None
        self._samples.append((now, self._trained))
        self._first = self._first or self._samples[0]
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()     # keep one sample at or before the window's start
        for t0, n0 in (self._samples[0], self._first):
            if self._trained > n0 and now > t0:
                return (self._trained - n0) / (now - t0)
        return None

    def eta(self, remaining: int) -> float | None:
        """Seconds left for ``remaining`` trials from the mean trial time (without step counts)."""
        if remaining <= 0:
            return 0.0
        if self._durations:
            per = statistics.mean(self._durations)
        elif self.estimate_s is not None and self.to_run:
            per = self.estimate_s * self.workers / self.to_run
        else:
            return None
        return remaining * per / self.workers

    def step_eta(self, now: float) -> tuple[float | None, str]:
        """(seconds left, how it was found): the steps left ÷ the measured rate, else the estimate less the time
        spent."""
        left = (self.steps_total or 0) - (self.steps_done or 0)
        if left <= 0:
            return 0.0, ""
        if self.rate:
            return left / self.rate, ""
        if self.estimate_s is not None and self.estimate_s > now - self._start:
            return self.estimate_s - (now - self._start), " (estimated)"
        return None, ""

    def poll(self) -> None:
        if self._base_done is None:
            self.start()
        now = self.clock()
        settled, counts = self._snapshot()
        self.rate = self._rate(now)
        done_now = max(0, settled - (self._base_done or 0))
        adopted = f" ({self.adopted} left by another launch)" if self.adopted else ""
        trials = (f"{done_now}/{self.to_run} done{adopted}, {counts['running']} running, "
                  f"{counts['failed']} failed")
        if self.steps_total:
            eta, how = self.step_eta(now)
            pct = 100 * self.steps_done / self.steps_total
            speed = f"{self.rate:.3g} steps/s" if self.rate else "steps/s not measured yet"
            progress = (f"steps {self.steps_done}/{self.steps_total} ({pct:.0f}%), {speed}, "
                        f"ETA {fmt_duration(eta)}{how}")
        else:
            eta, pct = self.eta(max(0, self.to_run - done_now)), 100 * done_now / max(1, self.to_run)
            progress = f"ETA {fmt_duration(eta)}"
        self.last_line = f"{trials}; {progress}"
        for t, s in self._new:
            self._event(t, s, self.last_line)
        tenth = int(pct // 10)
        if self._bar is not None:
            self._bar.total = self.steps_total or self.to_run
            self._bar.unit = "step" if self.steps_total else "trial"
            self._bar.n = min(self.steps_done if self.steps_total else done_now, self._bar.total)
            self._bar.set_description_str(self.spec.study, refresh=False)
            self._bar.set_postfix_str(f"{trials}, {progress.split(', ', 1)[-1]}", refresh=False)
            self._bar.refresh()
        elif self._new or now - self._printed[0] >= self.line_every or tenth > self._printed[1]:
            if not self._new:   # a finished trial's line carries the progress already
                print(f"[sweep] {self.last_line}", file=self.stream, flush=True)
            self._printed = (now, tenth)

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
    a cell that did not learn marked DEAD, one whose trials ran as several precisions MIXED."""
    metric = spec.objective["metric"]
    values = objective_values(spec, trials)
    sts = statuses(spec, trials)
    dead = dead_cells(trial_frame(spec, trials), bool(spec.search))
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
            spread = f" ± {s:4.2f}" if len(vals) > 1 else " " * 7   # one seed has no spread to show
            core = f"{metric} {m:6.2f}{spread}  (n={len(vals)})"
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
        mixed = mixed_note(s.latest for s in mine if s.latest is not None and s.state in DONE)
        if mixed:
            notes.append(mixed)
        lines.append(f"  {label}  {core}" + (f"   [{', '.join(notes)}]" if notes else ""))
    return lines


def _fast_path_notes(trials: list[Any]) -> list[str]:
    """What the fast-path guard did to a cell's trials: fell back to a slower path (and why, the first reason),
    replayed a bf16 run in fp32 after it went non-finite, or left bf16 where it disagreed with the reference."""
    notes = []
    fell = [t.user_attrs["fast_fallback"] for t in trials if t.user_attrs.get("fast_fallback")]
    if fell:
        notes.append(f"{len(fell)} fell back from the fast path: {fell[0][:160]}")
    changed = [t.user_attrs["precision_changed"] for t in trials if isinstance(t.user_attrs.get("precision_changed"),
                                                                                dict)]
    replayed = [c for c in changed if "replayed_from_step" in c]
    if replayed:
        notes.append(f"{len(replayed)} replayed in {replayed[0].get('to')} after going non-finite in "
                     f"{replayed[0].get('from')}")
    left = [c for c in changed if "replayed_from_step" not in c]
    if left:
        notes.append(f"{len(left)} went on in {left[0].get('to')} where the guard found {left[0].get('from')} "
                     f"disagreeing with the reference")
    return notes
def _running_trial(st: Any) -> Any:
    """The latest RUNNING trial of a unit status, or None."""
    return next((t for t in reversed(st.trials) if trial_status(t) == "running"), None)


def _units(sts: Any) -> str:
    """The units of a cell by seed (search: by slot, the k-th search trial of the cell, as its run folder's
    ``-t<k>`` names it), as the closing table names them: ``seed 0, seed 2``; ``slot t0, slot t2``. Not Optuna's
    trial numbers, which a resume changes."""
    return ", ".join(f"slot t{s.unit.slot}" if s.unit.slot is not None else f"seed {s.unit.seed}" for s in sts)


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
