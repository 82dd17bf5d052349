"""The members of a (fused) run and their records: each member's numbers, its run directory and its callbacks.

A run of G fused members keeps G records (`record.RunRecord`: config.yaml, metrics.jsonl, summary.json, checkpoints),
one per member, as G separate runs would. `Members` writes them: the logged window and the evaluations, the best
validation error and the test error beside it (with `best_on: test`, the lowest test error), checkpoints, the
summary, a member's end (complete, diverged, pruned, failed, interrupted), and reads them back on resume.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from . import checkpoint as ckpt
from .config import ModelConfig
from .devices import precision_name
from .errors import ConfigError, first_line
from .fast_path import FastPath
from .overrides import diff_keys, get_dotted
from .plugins import loaded_plugin_records
from .provenance import provenance
from .record import RunRecord, read_config, read_metrics, read_summary
from .run_config import RunConfig, resolved_dict

RESUME_MAY_CHANGE = ("device", "fast", "channels_last", "eval_batch_size", "data.root", "data.download",
                     "data.num_workers")  # how a run is executed, not what it computes


def check_same_run(old: dict[str, Any], new: dict[str, Any], run_dir: Path) -> None:
    """Refuse to resume ``run_dir`` (whose ``config.yaml`` is ``old``; {} if none) with a config that computes
    something else: a one-line ``ConfigError`` naming the keys that differ."""
    if not old:
        return
    old = _with_added_defaults(old)
    diff = [k for k in diff_keys(old, new) if not k.startswith(RESUME_MAY_CHANGE)]
    if "precision" in diff and old.get("precision") == "auto" and new.get("precision") == run_dir_precision(run_dir):
        diff.remove("precision")   # `auto` pinned to what it resolved to for this run
    if diff:
        shown = ", ".join(f"{k} ({get_dotted(old, k)!r} → {get_dotted(new, k)!r})" for k in diff[:4])
        raise ConfigError(f"cannot resume {run_dir}: its config.yaml differs in {shown}"
                          f"{', …' if len(diff) > 4 else ''}; resume with the same config or train into a new --out")


def run_dir_precision(run_dir: Path) -> str | None:
    """The precision the run's config resolved to where it ran (its summary.json; before a full-precision replay)."""
    summary = read_summary(run_dir)
    change = summary.get("precision_changed")
    return (change or {}).get("from") or summary.get("precision")


def _with_added_defaults(old: dict[str, Any]) -> dict[str, Any]:
    """``old`` (a config.yaml written by an earlier version) with the keys added since filled in with their defaults,
    which reproduce what that version did; keys it has keep their values. Unparseable: ``old`` as it is."""
    try:
        current = resolved_dict(RunConfig.from_dict(old))
    except (ConfigError, TypeError, ValueError):
        return old

    def fill(o: Any, c: Any) -> Any:
        if not (isinstance(o, dict) and isinstance(c, dict)):
            return o
        return {**{k: v for k, v in c.items() if k not in o}, **{k: fill(v, c.get(k)) for k, v in o.items()}}

    return fill(old, current)


def emit(callbacks: Sequence[Any], hook: str, *args: Any) -> list[Any]:
    """Call ``hook`` on every callback that has it; their answers, in order."""
    return [getattr(cb, hook)(*args) for cb in callbacks if hasattr(cb, hook)]


@dataclass
class Member:
    """Host-side state of one member."""
    cfg: RunConfig
    record: RunRecord
    status: str = "running"
    reason: str | None = None
    diverged_at: int | None = None
    best_val: float = math.inf
    best_test: float = math.inf  # the test error at the best validation error (never a test-selected minimum)
    best_on_test: float = math.inf  # best_on test only: the lowest test error, which picked best.pt (optimistic)
    last: dict[str, float] = field(default_factory=dict)
    lowest_train_loss: float = math.inf   # the lowest logged training loss (a window's mean): did it ever fall?
    resolved: dict[str, Any] = field(default_factory=dict)  # the config as written to config.yaml
    train_errors: list[tuple[int, float]] = field(default_factory=list)  # (step, logged train error), in order
    final: dict[str, Any] | None = None  # the summary written when the member finished


def open_members(cfgs: Sequence[RunConfig], member_models: Sequence[ModelConfig], run_dirs: Sequence[Path],
                 resume: bool) -> list[Member]:
    """One member per config, its resolved config written to its run directory's config.yaml; on resume, a config
    that computes something else than the one there is a ConfigError (before anything is written)."""
    resolved = []
    for c, mc, d in zip(cfgs, member_models, run_dirs):
        r = resolved_dict(c, mc)
        if resume:
            check_same_run(read_config(d), r, d)
        resolved.append(r)
    members = [Member(c, RunRecord(d)) for c, d in zip(cfgs, run_dirs)]
    for m, r in zip(members, resolved):
        m.resolved = r
        m.record.write_config(m.resolved)
    return members


CLOCK_EVERY_S = 30.0   # a log rewrites summary.json (its clock) at most this often: a hard stop's lost work to ~30 s


@dataclass
class RunFacts:
    """What the summaries and checkpoints say about the whole run beside each member's numbers: its clock (over
    every segment of a resumed run), and where precision changed or a resume fell back."""
    wall_time_s: float = 0.0
    img_per_s: float = 0.0
    images: int = 0
    data_time_s: float = 0.0
    lost_wall_time_s: float = 0.0   # work trained again: each hard stop's clock past the checkpoint resumed from
    precision_change: dict[str, Any] | None = None  # a bf16 run replayed in fp32 (or left by the guard), resumed
    resume_note: str | None = None  # a damaged checkpoint this run resumed around


class Members:
    """The bookkeeping of G members trained together on ``path``: what each member's record says, and when."""

    def __init__(self, members: list[Member], member_models: Sequence[ModelConfig], path: FastPath,
                 callbacks: Sequence[Any], facts: RunFacts, *, total: int, steps_per_epoch: int, params: list[int],
                 tf32: bool, classes: Sequence[str] = ()) -> None:
        self.members, self.member_models, self.path, self.callbacks = members, list(member_models), path, callbacks
        self.facts, self.total, self.spe, self.params, self.tf32 = facts, total, steps_per_epoch, params, tf32
        self.classes = [str(c) for c in classes]   # the dataset's class names, by label: in every checkpoint
        self.ref = members[0].cfg  # what the members share (check_fusable): checkpointing, the schedule's unit
        self._clock_written = time.monotonic()   # when a log last rewrote the summaries (`log_train`)

    def __getitem__(self, g: int) -> Member:
        return self.members[g]

    def __iter__(self):
        return iter(self.members)

    def active(self) -> list[int]:
        """The members still training."""
        return [g for g, m in enumerate(self.members) if m.status == "running"]

    # -- what the records say -----------------------------------------------------------------------------------
    def start(self, step: int) -> None:
        """Each member's summary as at ``step``, and the callbacks' on_start."""
        for g, m in enumerate(self.members):
            m.record.write_summary(self.summary(g, step))
            emit(self.callbacks, "on_start", g, m.resolved, m.record.dir)

    def log_train(self, step: int, epoch: float, window: tuple, lr: float, throughput: float) -> None:
        """The logged window (`FastPath.read_window`) of every running member, to its record and the callbacks."""
        loss, err, probes, weights = window
        now = time.monotonic()
        clock_due = now - self._clock_written >= CLOCK_EVERY_S   # not at every log: fsyncs on the hot path
        if clock_due:
            self._clock_written = now
        for g in self.active():
            m = self.members[g]
            train = {"loss": loss[g], "error": err[g], "lr": lr, "throughput": throughput}
            m.record.log(step, epoch, "train", train)
            flat = {"epoch": epoch, **{f"train/{k}": v for k, v in train.items()}}
            if probes is not None:
                for split, values in probes[g].items():
                    m.record.log(step, epoch, split, values)
                    flat.update({f"{split}/{k}": v for k, v in values.items()})
                m.record.log(step, epoch, "weight_norm", weights[g])
                flat.update({f"weight_norm/{k}": v for k, v in weights[g].items()})
            m.last.update(train_loss=loss[g], train_error=err[g])
            if math.isfinite(loss[g]):
                m.lowest_train_loss = min(m.lowest_train_loss, loss[g])
            m.train_errors.append((step, err[g]))
            if clock_due:   # the clock as at this log: what a resume after a hard stop measures as lost
                m.record.write_summary(self.summary(g, step))
            emit(self.callbacks, "on_log", g, step, flat)

    def diverge(self, first_bad: list[int], step: int) -> None:
        """Finish, as diverged, every running member whose loss went non-finite (``first_bad``: its 0-based step,
        -1 if none)."""
        for g in self.active():
            if first_bad[g] >= 0:
                m = self.members[g]
                m.status, m.diverged_at = "diverged", first_bad[g] + 1
                m.reason = f"non-finite training loss at step {m.diverged_at}"
                self.finish(g, step)

    def record_eval(self, step: int, epoch: float, results: dict[str, tuple[list[float], list[float]]]) -> None:
        """Each running member's evaluation (split → per-member losses, errors): logged, its best kept (chosen on
        the `best_on` split), checkpointed, shown to the callbacks; a callback may stop (prune) it."""
        for g in self.active():
            m = self.members[g]
            metrics = {"epoch": epoch}
            for split, (loss, err) in results.items():
                m.record.log(step, epoch, split, {"loss": loss[g], "error": err[g]})
                metrics.update({f"{split}/loss": loss[g], f"{split}/error": err[g]})
                m.last[f"{split}_error"] = err[g]
            improved = self._improved(m, g, results)
            if self.ref.checkpoint:
                state = self.checkpoint(g, step)
                if improved:  # first: a forced stop between the two leaves last.pt behind best.pt, never ahead of it
                    ckpt.atomic_save(state, m.record.dir / "best.pt")
                ckpt.atomic_save(state, m.record.dir / "last.pt")
            stop = any(emit(self.callbacks, "on_eval", g, step, metrics))
            m.record.write_summary(self.summary(g, step))
            if stop:
                m.status, m.reason = "pruned", f"stopped by a callback at step {step}"
                self.finish(g, step)

    def _improved(self, m: Member, g: int, results: dict[str, tuple[list[float], list[float]]]) -> bool:
        """Whether member g's evaluation is its new best, kept if so: on the validation split (without one there is
        no best.pt, only last.pt), or with `best_on: test` on the test set (optimistic, as seed 001's program)."""
        if self.ref.best_on == "test":
            if results["test"][1][g] >= m.best_on_test:
                return False
            m.best_on_test = results["test"][1][g]
            return True
        if "val" not in results or results["val"][1][g] >= m.best_val:
            return False
        m.best_val, m.best_test = results["val"][1][g], results["test"][1][g]
        return True

    def finish(self, g: int, step: int) -> None:
        """Freeze member g (masked out of the update) and write its final summary."""
        self.path.alive[g] = False
        m = self.members[g]
        m.final = self.summary(g, step)
        m.record.write_summary(m.final)
        emit(self.callbacks, "on_end", g, m.final)

    def complete(self, step: int) -> None:
        """Every member still running finished the schedule."""
        for g in self.active():
            self.members[g].status = "complete"
            self.finish(g, step)

    def stop(self, status: str, reason: str, step: int) -> None:
        """Every running member ends as ``status`` (failed, interrupted) for ``reason``: summary and on_end."""
        for g in self.active():
            self.members[g].status, self.members[g].reason = status, reason
            self.members[g].record.write_summary(self.summary(g, step))
            emit(self.callbacks, "on_end", g, self.summary(g, step))

    def _final_train_error(self, g: int) -> float | None:
        """Mean logged training error over the last epoch (as the running curves of He et al. Fig. 6)."""
        rows = self.members[g].train_errors
        if not rows:
            return None
        last = rows[-1][0]
        window = [value for step, value in rows if step > last - self.spe]
        return float(sum(window) / len(window))

    def summary(self, g: int, step: int) -> dict[str, Any]:
        """Member g's summary.json as at ``step``."""
        m, path, facts = self.members[g], self.path, self.facts
        fin = lambda v: None if v is None or not math.isfinite(v) else v  # noqa: E731
        return {
            "name": m.cfg.name, "seed": m.cfg.seed, "status": m.status, "reason": m.reason,
            "step": step, "total_steps": self.total, "epoch": step / self.spe, "params": self.params[g],
            "final_test_error": fin(m.last.get("test_error")), "test_error_at_best_val": fin(m.best_test),
            "final_val_error": fin(m.last.get("val_error")), "best_val_error": fin(m.best_val),
            "best_selected_on": m.cfg.best_on,  # test: best.pt and best_test_error were picked on the test set
            "best_test_error": fin(m.best_on_test),  # best_on test only: optimistic, not a held-out estimate
            "final_train_error": fin(self._final_train_error(g)), "final_train_loss": fin(m.last.get("train_loss")),
            "lowest_train_loss": fin(m.lowest_train_loss),
            "wall_time_s": facts.wall_time_s, "img_per_s": facts.img_per_s, "diverged_at": m.diverged_at,
            "lost_wall_time_s": facts.lost_wall_time_s,
            "device": str(path.device), "fused_members": path.G, "fast_path": path.fast,
            "precision": precision_name(path.amp, path.dtype), "channels_last": path.channels_last,
            "compiled": path.ran_compiled(),
            "threads": self.cpu_threads(),
            "data_time_s": facts.data_time_s, "fast_fallback": path.fast_fallback, "tf32": self.tf32,
            "fast_path_checked": path.checked(), "guard_s": path.guard_s,
            "compile_s": path.compile_s, "precision_changed": self.precision_changed(),
            "paths": path.paths,   # the path each part of the run ran on (a fallback, a replay, a resume may change it)
            "provenance": provenance(),  # the code and library versions that produced this record
            "resume_note": facts.resume_note,   # a damaged checkpoint this run resumed around
        }

    def precision_changed(self) -> dict[str, Any] | None:
        """Where the run left the precision its config resolved to: a bf16 run replayed in fp32 after going
        non-finite (``facts``, carried over a resume), or the fast-path guard leaving autocast (``path``)."""
        return self.facts.precision_change or self.path.precision_change

    def cpu_threads(self) -> int | None:
        """The intra-op threads the run trains with on the CPU (round-off depends on it), None on an accelerator."""
        return torch.get_num_threads() if self.path.device.type == "cpu" else None

    # -- checkpoints --------------------------------------------------------------------------------------------
    def checkpoint(self, g: int, step: int) -> dict[str, Any]:
        """Member g's checkpoint as at ``step``: its weights and optimizer state, bests, configs and the run's clock."""
        m, facts = self.members[g], self.facts
        return ckpt.member_checkpoint(self.path.model_for_state(), self.path.opt, g, step=step, best_val=m.best_val,
                                      best_test=m.best_test, best_on_test=m.best_on_test,
                                      model_config=self.member_models[g].to_dict(), run_config=m.resolved,
                                      wall_time_s=facts.wall_time_s, images=facts.images,
                                      data_time_s=facts.data_time_s, lost_wall_time_s=facts.lost_wall_time_s,
                                      rng=ckpt.global_rng_state(), precision_changed=self.precision_changed(),
                                      window=self.path.window_of(g), threads=self.cpu_threads(),
                                      plugins=loaded_plugin_records(), classes=self.classes,
                                      paths=list(self.path.paths))

    def save_periodic(self, step: int) -> None:
        """checkpoint_every: each running member's checkpoint as epoch_NNN.pt (or step_NNNNNNN.pt), atomically."""
        name = (f"epoch_{step // self.spe:03d}.pt" if self.ref.schedule.unit == "epoch" and step % self.spe == 0
                else f"step_{step:07d}.pt")
        for g in self.active():
            ckpt.atomic_save(self.checkpoint(g, step), self.members[g].record.dir / name)

    def save_at_interrupt(self, step: int) -> None:
        """A graceful stop checkpoints every running member at ``step`` in last.pt, so the resumed run loses
        nothing; a failed save is warned about (the last evaluation's checkpoint stays)."""
        for g in self.active():
            try:
                ckpt.atomic_save(self.checkpoint(g, step), self.members[g].record.dir / "last.pt")
            except Exception as e:  # noqa: BLE001 - the interrupt goes on; the last evaluation's checkpoint stays
                warnings.warn(f"no checkpoint at the interrupt (step {step}): {first_line(e)}", stacklevel=2)

    # -- resume -------------------------------------------------------------------------------------------------
    def resume(self) -> tuple[int, dict[str, Any] | None]:
        """Load every member's last.pt into the model and optimizer, and each member's numbers as at its step;
        (the step to continue from, the first member's checkpoint), or (0, None) to start over, cleanly."""
        paths = [m.record.dir / "last.pt" for m in self.members]
        before = self._last_clock()
        if not any(p.exists() for p in paths):  # killed before its first checkpoint: start over, cleanly
            self._drop_lost_part(0)
            self._count_lost(before, None)
            return 0, None
        if not all(p.exists() for p in paths):
            missing = ", ".join(str(p.parent) for p in paths if not p.exists())
            raise ConfigError(f"cannot resume fused members: no last.pt in {missing} (resume them separately)")
        states = self._readable_checkpoints(paths)
        if states is None:  # no readable checkpoint at all: start over, cleanly (resume_note says why)
            self._drop_lost_part(0)
            self._count_lost(before, None)
            return 0, None
        steps = {s["step"] for s in states}
        if len(steps) != 1:
            raise ConfigError(f"cannot resume fused members from different steps {sorted(steps)}")
        step = steps.pop()
        self._drop_lost_part(step)
        self._count_lost(before, states[0])
        model = self.path.model_for_state()
        for g, (m, s) in enumerate(zip(self.members, states)):
            ckpt.restore_member(model, self.path.opt, g, s)
            m.best_val, m.best_test = s["best_val"], s["best_test"]
            m.best_on_test = s.get("best_on_test", math.inf)  # a checkpoint from before best_on: none
            if s.get("window") is not None:  # a checkpoint from before windows were kept: the window starts empty
                self.path.restore_window(g, s["window"])
            for r in read_metrics(m.record.dir):  # the latest train loss/error and eval errors, as at `step`
                if (r["split"], r["name"]) in (("train", "loss"), ("train", "error"), ("val", "error"),
                                               ("test", "error")):
                    m.last[f"{r['split']}_{r['name']}"] = r["value"]
                if (r["split"], r["name"]) == ("train", "loss") and math.isfinite(r["value"]):
                    m.lowest_train_loss = min(m.lowest_train_loss, r["value"])
                if (r["split"], r["name"]) == ("train", "error"):
                    m.train_errors.append((r["step"], r["value"]))
        return step, states[0]

    def _last_clock(self) -> tuple[int, float, float] | None:
        """(step, wall_time_s, lost_wall_time_s) of the last attempt as its summary.json last said (written at every
        evaluation and, at most every CLOCK_EVERY_S, log), or None where there is none or it is unreadable."""
        try:
            s = read_summary(self.members[0].record.dir)
            return int(s.get("step") or 0), float(s.get("wall_time_s") or 0.0), float(s.get("lost_wall_time_s") or 0.0)
        except (ConfigError, TypeError, ValueError):
            return None

    def _count_lost(self, before: tuple[int, float, float] | None, state: dict[str, Any] | None) -> None:
        """``facts.lost_wall_time_s``: the checkpoint's (``state``; None: a start over) plus the clock the last
        attempt ran past it, which this resume trains again (a graceful stop checkpoints where it stops: none)."""
        lost, wall, step = (float(state.get("lost_wall_time_s", 0.0)), float(state.get("wall_time_s", 0.0)),
                            int(state["step"])) if state is not None else (0.0, 0.0, 0)
        if before is not None and before[0] > step and before[1] > wall:
            lost = max(lost, before[2]) + before[1] - wall
        self.facts.lost_wall_time_s = lost

    def _drop_lost_part(self, step: int) -> None:
        """What each member's folder holds from after ``step``, the part of the run a resume from ``step`` trains
        again: its metric rows; on a start over (step 0: no readable checkpoint), the abandoned attempt's
        ``best.pt`` and periodic checkpoints (``eval best.pt`` would score weights the run no longer has; after a
        step > 0 a ``best.pt`` ahead of ``last.pt`` is one the replay writes again); and, where the run trains on, a
        ``lesion.csv`` of weights it replaces (moved aside to ``lesion.before-resume.csv``). Each removal or move is
        warned about."""
        for m in self.members:
            folder = m.record.dir
            m.record.truncate_after(step)
            lost = [folder / "best.pt", *folder.glob("epoch_*.pt"), *folder.glob("step_*.pt")] if step == 0 else []
            for path in (p for p in lost if p.exists()):
                path.unlink()
                warnings.warn(f"{path}: a checkpoint of the attempt the run starts over from: removed", stacklevel=3)
            lesion = folder / "lesion.csv"
            if lesion.exists() and step < self.total:
                aside = lesion.with_name("lesion.before-resume.csv")
                lesion.replace(aside)
                warnings.warn(f"{lesion} measured weights the resumed run replaces: moved to {aside.name}",
                              stacklevel=3)

    def all_complete(self) -> bool:
        """Whether every member's record says it completed (resuming such a run changes nothing)."""
        try:
            return all(read_summary(m.record.dir).get("status") == "complete" for m in self.members)
        except ConfigError:   # a damaged summary: the run goes through its end again and rewrites it
            return False

    def evaluated_at(self, step: int, splits: list[str]) -> bool:
        """Whether every running member's record holds its evaluation of ``step`` on every split; rows of a partial
        one (a stop while it was written) are dropped, so it is made again whole."""
        whole = True
        for g in self.active():
            record = self.members[g].record
            rows = [r for r in read_metrics(record.dir) if r["step"] == step and r["split"] in splits]
            if {r["split"] for r in rows if r["name"] == "error"} != set(splits):
                whole = False
                if rows:
                    record.drop_rows(lambda r: r["step"] == step and r["split"] in splits)
        return whole

    def _readable_checkpoints(self, paths: list[Path]) -> list[dict[str, Any]] | None:
        """Every member's last.pt; where one is damaged (a kill or a full disk mid-write), the newest checkpoint
        every member has readable (a periodic ``epoch_*.pt`` / ``step_*.pt``), or None (start from scratch).
        A fallback is warned about and recorded in the summary (``resume_note``)."""
        try:
            return [ckpt.load(p) for p in paths]
        except ConfigError as e:
            damaged = str(e)
        found: list[dict[int, dict[str, Any]]] = []
        for m in self.members:
            states = {}
            for p in sorted(m.record.dir.glob("epoch_*.pt")) + sorted(m.record.dir.glob("step_*.pt")) + \
                    [m.record.dir / "last.pt"]:
                try:
                    state = ckpt.load(p)
                except ConfigError:
                    continue
                states[state["step"]] = state
            found.append(states)
        common = set.intersection(*(set(f) for f in found))
        step = max(common, default=None)
        self.facts.resume_note = (f"{damaged}; resumed from the checkpoint of step {step}" if step is not None else
                                  f"{damaged}; no earlier readable checkpoint: restarted from scratch")
        warnings.warn(self.facts.resume_note, stacklevel=2)
        return None if step is None else [f[step] for f in found]

    # -- the full-precision replay ------------------------------------------------------------------------------
    def snapshot(self) -> list[tuple[float, float, float, dict[str, float], list[tuple[int, float]], float]]:
        """Each member's numbers (bests: validation, test at it, test; last values, logged train errors, lowest
        logged training loss), for `restore`."""
        return [(m.best_val, m.best_test, m.best_on_test, dict(m.last), list(m.train_errors), m.lowest_train_loss)
                for m in self.members]

    def restore(self, snapshot: list, step: int) -> None:
        """Put back the members' numbers of `snapshot`, taken at ``step``, drop what their records logged after it,
        and tell the callbacks (``on_rewind``)."""
        for m, (best_val, best_test, best_on_test, last, errors, lowest) in zip(self.members, snapshot):
            m.best_val, m.best_test, m.best_on_test = best_val, best_test, best_on_test
            m.last, m.train_errors, m.lowest_train_loss = dict(last), list(errors), lowest
            m.record.truncate_after(step)
        for g in self.active():
            emit(self.callbacks, "on_rewind", g, step)
