"""The training engine: `train(config)` for one run, `train_members(configs)` for G fused runs (docs/fused_trials.md).

One code path serves both: a run is a fused run of one member. `Trainer` sets a run up and `Trainer.run` is its
loop, read top to bottom. The step itself, on its fast path (on CUDA the whole step is captured in one CUDA graph,
optionally over torch.compile; CPU, MPS and NPU run it eagerly or compiled) with the guard that checks it, is
`fast_path.FastPath`; what each member's record says is `members.Members`.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from . import checkpoint as ckpt
from .data import build_loaders, load_dataset, served_size
from .devices import (apply_cuda_math, autocast_dtype, cpu_compile_pays, make_current, param_dtype, precision_name,
                      resolve_device, set_cpu_threads, tf32_policy, uses_channels_last)
from .errors import ConfigError
from .fast_path import FastPath, evaluate_model, resolve_fast
from .feasibility import check_trainable
from .flops import train_flops
from .fusion import MASKED_KEYS, MEMBER_KEYS, fusable_view
from .graphs import graph_backend
from .members import Members, RunFacts, check_same_run, emit, open_members, run_dir_precision
from .model import build_model, count_params
from .optimizers import needs_eager
from .record import read_summary
from .run_config import RunConfig
from .schedules import lr_at, milestone_steps, total_steps
from .signals import DeferredSignals, interrupt_reason

__all__ = ["RunResult", "Trainer", "check_fusable", "check_same_run", "evaluate_model", "train", "train_members"]


@dataclass
class RunResult:
    status: str
    reason: str | None
    summary: dict[str, Any]
    run_dir: Path


def check_fusable(cfgs: Sequence[RunConfig]) -> None:
    ref = fusable_view(cfgs[0].to_dict())
    for cfg in cfgs[1:]:
        d = fusable_view(cfg.to_dict())
        diff = sorted(k for k in ref if ref[k] != d[k])
        if diff:
            masked = ", ".join(f"{k} ({'/'.join(v)})" for k, v in MASKED_KEYS.items())
            raise ConfigError(f"fused members must share every key but {', '.join(MEMBER_KEYS)} and {masked}; "
                              f"they differ in {', '.join(diff)}")


def train(config: RunConfig | dict, run_dir: str | Path, *, callbacks: Sequence[Any] = (),
          resume: bool = False) -> RunResult:
    """Train one run; its record goes to ``run_dir``."""
    return train_members([config], [run_dir], callbacks=callbacks, resume=resume)[0]


def train_members(configs: Sequence[RunConfig | dict], run_dirs: Sequence[str | Path], *,
                  callbacks: Sequence[Any] = (), resume: bool = False) -> list[RunResult]:
    """Train G runs that share their architecture as one horizontally fused model; each keeps its own record."""
    cfgs = [c if isinstance(c, RunConfig) else RunConfig.from_dict(c) for c in configs]
    if len(cfgs) != len(run_dirs) or not cfgs:
        raise ConfigError("train_members needs one run directory per config")
    check_fusable(cfgs)
    trainer = Trainer(cfgs, [Path(d) for d in run_dirs], callbacks, resume=resume)
    try:
        return trainer.run(resume)
    finally:
        trainer.close()


def _log_points(per_epoch: int | None, spe: int) -> set[int] | None:
    """log_per_epoch n: the in-epoch positions (1…spe) after which to log, ceil(k·spe/n) for k = 1…n: evenly spaced,
    the last at the epoch's end. With spe = 235 and n = 5 these are d2l's (i + 1) % (235 // 5) == 0 prints."""
    if per_epoch is None:
        return None
    return {min(spe, -(-k * spe // per_epoch)) for k in range(1, per_epoch + 1)}


class _ReplayInFullPrecision(Exception):
    """A run whose autocast dtype `precision: auto` chose went non-finite at step `first_bad`: replay it."""

    def __init__(self, first_bad: int) -> None:
        super().__init__(f"non-finite training loss at step {first_bad}")
        self.first_bad = first_bad


class Trainer:
    """G fused members set up to train: data, records, model, loaders and schedule, and the step's fast path.

    Everything that can refuse a config does so before anything is written. ``path`` runs the steps and
    evaluations; ``members`` keeps each member's record; ``train_loader`` serves the fused batches."""

    def __init__(self, cfgs: list[RunConfig], run_dirs: list[Path], callbacks: Sequence[Any],
                 resume: bool = False) -> None:
        ref = self.ref = cfgs[0]
        G = len(cfgs)
        self.device = device = resolve_device(ref.device)
        make_current(device)  # before any stream, graph or allocation: a worker given cuda:1 works on cuda:1
        graphs = graph_backend(device)  # None: no graph path here (CPU without the CI stand-in, MPS, NPU)
        fast = resolve_fast(ref.fast, graphs, device)  # before anything is written: fast: graph on a CPU is an error
        fast_fallback = None  # why fast: auto fell back to eager, if it did
        amp, dtype = autocast_dtype(ref.precision, device), param_dtype(ref.precision)
        data = load_dataset(ref.data)
        n_train = len(data.train.labels) + (len(data.val.labels) if data.val is not None and
                                            ref.data.val_size else 0)
        for c in cfgs:  # before anything is written: a config no step can train is a config error
            check_trainable(c, image_size=data.image_size[0], channels=data.in_channels,
                            classes=data.num_classes, n_train=n_train)
        member_models = [c.model.on_images(data.in_channels, data.num_classes) for c in cfgs]
        records = open_members(cfgs, member_models, run_dirs, resume)  # each member's config.yaml

        if fast in ("graph", "compile") and graphs is not None and needs_eager(ref.optim, ref.schedule):
            warnings.warn("schedule.cycle_momentum with SGD runs eagerly: torch's SGD takes momentum as a float, "
                          "which a CUDA graph would freeze")
            fast, fast_fallback = "eager", "SGD with a cycled momentum (a float the graph would freeze)"
        channels_last = uses_channels_last(ref.channels_last, device, dtype)
        tf32 = tf32_policy(ref.precision, device)
        if device.type == "cuda":
            apply_cuda_math(tf32, static_shapes=fast in ("graph", "compile"))

        torch.manual_seed(ref.seed)
        model = build_model(member_models[0], members=G, seeds=[c.seed for c in cfgs],
                            shortcuts=[mc.shortcut for mc in member_models])
        model = model.to(device=device, dtype=dtype,
                         memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        if G == 1:
            params = [count_params(model)]
        else:
            with torch.device("meta"):
                params = [count_params(build_model(mc)) for mc in member_models]

        loaders = build_loaders(data, ref.data, seeds=[c.seed for c in cfgs], batch_size=ref.batch_size,
                                eval_batch_size=ref.eval_batch_size, device=device, channels_last=channels_last)
        self.train_loader = loaders.train
        spe = self.spe = self.train_loader.steps_per_epoch
        self.total = total_steps(ref.schedule, spe)
        unit = spe if ref.schedule.unit == "epoch" else 1
        self.eval_interval = max(1, round(ref.eval_every * unit))
        self.log_interval = min(ref.log_every, self.eval_interval)
        self.log_points = _log_points(ref.log_per_epoch, spe)
        self.ckpt_interval = max(1, round(ref.checkpoint_every * unit)) if ref.checkpoint_every else 0
        reset_steps = set(milestone_steps(ref.schedule, spe)) if ref.schedule.reset_optimizer else set()
        if ref.fast == "auto" and device.type == "cpu" and graphs is None and cpu_compile_pays(
                train_flops(member_models[0], served_size(ref.data, data)[0], self.total * ref.batch_size * G)):
            fast = "compile"

        listeners = list(callbacks)
        self.path = FastPath(ref, member_models, model, device=device, graphs=graphs, fast=fast,
                             fast_fallback=fast_fallback, amp=amp, dtype=dtype, channels_last=channels_last,
                             eval_loaders=loaders.evals(), steps_per_epoch=spe, reset_steps=reset_steps,
                             say=lambda text: emit(listeners, "on_message", text))
        self.facts = RunFacts()
        self.members = Members(records, member_models, self.path, listeners, self.facts, total=self.total,
                               steps_per_epoch=spe, params=params, tf32=tf32, classes=data.classes)
        self._last_good: dict[str, Any] | None = None  # the state to replay from in full precision (see run)
        self._signals = DeferredSignals()  # run's: a stop during a step or an evaluation's record waits for its end

    # -- the loop -----------------------------------------------------------------------------------------------
    def run(self, resume: bool) -> list[RunResult]:
        """Train every member to the end of the schedule (or its own end: diverged, pruned); each step's batch,
        the logged windows, evaluations and checkpoints; a failure or an interrupt is recorded before it is raised."""
        path, members, facts = self.path, self.members, self.facts
        step = self._resume() if resume else 0
        if step >= self.total and members.all_complete():  # a finished run: its record stays as it is
            return [RunResult("complete", None, read_summary(m.record.dir), m.record.dir) for m in members]
        self._set_bn_mode(step)
        members.start(step)
        wall0, t0 = facts.wall_time_s, time.perf_counter()
        t_win, images_win = t0, 0
        self._keep_last_good(step)
        signals = self._signals
        with signals:
            try:
                if step:
                    self._catch_up(step)
                while step < self.total and members.active():
                    epoch, first = divmod(step, self.spe)
                    batches = self.train_loader.epoch(epoch, start=first)
                    try:
                        while True:
                            t_data = time.perf_counter()
                            batch = next(batches, None)
                            facts.data_time_s += time.perf_counter() - t_data  # host time preparing batches
                            if batch is None:
                                break
                            x, y = batch
                            with signals.step():  # a stopping signal waits for the step, and its log, to end
                                path.set_lr(step)
                                path.train_step(x, y)
                                step += 1
                                images_win += x.shape[0]
                                evaluate = self._eval_due(step)
                                if self._log_due(step) or evaluate:
                                    path.synchronize()
                                    now = time.perf_counter()
                                    facts.images += images_win  # before _log: a member it finishes has its img/s
                                    facts.wall_time_s = wall0 + now - t0
                                    facts.img_per_s = facts.images / max(facts.wall_time_s, 1e-9)
                                    self._log(step, step / self.spe, now - t_win, images_win)
                                    t_win, images_win = now, 0
                            if evaluate:  # a stop from here on is made good on resume (_catch_up)
                                self._evaluate(step, step / self.spe)
                                self._keep_last_good(step)
                            if self.ckpt_interval and step % self.ckpt_interval == 0:
                                members.save_periodic(step)
                            if step >= self.total or not members.active():
                                break
                    except _ReplayInFullPrecision as replay:
                        step = self._replay_in_full_precision(replay.first_bad)
                        t_win, images_win = time.perf_counter(), 0
            except BaseException as e:
                interrupted = isinstance(e, KeyboardInterrupt)
                if interrupted:
                    facts.images += images_win
                    facts.wall_time_s = wall0 + time.perf_counter() - t0
                    facts.img_per_s = facts.images / max(facts.wall_time_s, 1e-9)
                    if self.ref.checkpoint and not signals.inside:  # a stop inside a step keeps the last checkpoint
                        members.save_at_interrupt(step)
                members.stop("interrupted" if interrupted else "failed",
                             interrupt_reason(e) if interrupted else f"{type(e).__name__}: {e}", step)
                raise
        members.complete(step)
        return [RunResult(m.status, m.reason, m.final or members.summary(g, step), m.record.dir)
                for g, m in enumerate(members)]

    def _eval_due(self, step: int) -> bool:
        """Whether the members are evaluated after ``step`` (1-based count of steps done)."""
        return step % self.eval_interval == 0 or step == self.total

    def _catch_up(self, step: int) -> None:
        """On resume at ``step``: what a stop between the step and the rest of its bookkeeping left undone — its
        evaluation (unless recorded) and its periodic checkpoint — so the record is the uninterrupted run's."""
        if self._eval_due(step) and not self.members.evaluated_at(step, list(self.path.eval_loaders)):
            self._evaluate(step, step / self.spe)
        if self.ckpt_interval and step % self.ckpt_interval == 0:
            self.members.save_periodic(step)

    def _log_due(self, step: int) -> bool:
        """Whether training metrics are logged after ``step`` (1-based count of steps done)."""
        if self.log_points is None:
            return step % self.log_interval == 0
        return (step - 1) % self.spe + 1 in self.log_points

    def _log(self, step: int, epoch: float, elapsed: float, images: int) -> None:
        """The window since the last log, to every running member's record; a member whose loss went non-finite
        ends as diverged (or, in the autocast dtype `precision: auto` chose, the run is replayed in full precision)."""
        window = self.path.read_window()
        lr = lr_at(self.ref.schedule, self.ref.optim.lr, step - 1, self.spe)
        first_bad = self.path.first_bad.tolist()
        bad = [first_bad[g] + 1 for g in self.members.active() if first_bad[g] >= 0]
        if bad and self._last_good is not None:
            raise _ReplayInFullPrecision(min(bad))
        self.members.diverge(first_bad, step)
        self.members.log_train(step, epoch, window, lr, images / max(elapsed, 1e-9))

    def _evaluate(self, step: int, epoch: float) -> None:
        active = self.members.active()
        results = {split: self.path.evaluate(split, active) for split in self.path.eval_loaders}
        with self._signals.step():  # a stop waits for the rows and checkpoints: best.pt never lags the record
            self.members.record_eval(step, epoch, results)
        self._set_bn_mode(step)

    def _set_bn_mode(self, step: int) -> None:
        """`bn_mode: eval_after_first_eval`: once the first evaluation is behind ``step``, train in eval mode."""
        if self.ref.bn_mode == "eval_after_first_eval" and step >= self.eval_interval and self.path.model.training:
            self.path.train_in_eval_mode()

    # -- resume -------------------------------------------------------------------------------------------------
    def _resume(self) -> int:
        """Load every member's last.pt; return the step to continue from (0 if none)."""
        step, state = self.members.resume()
        if state is None:
            return 0
        # the whole trial's clock and images (a checkpoint from before they were saved: this segment only)
        self.facts.wall_time_s = float(state.get("wall_time_s", 0.0))
        self.facts.images = int(state.get("images", 0))
        self.facts.img_per_s = self.facts.images / max(self.facts.wall_time_s, 1e-9)
        self.facts.data_time_s = float(state.get("data_time_s", 0.0))
        if state.get("rng") is not None:  # global RNG (e.g. the torch loader's augmentation) as at `step`
            ckpt.set_global_rng_state(state["rng"])
            if hasattr(self.train_loader, "after_skip"):  # re-set once the loader has skipped to `step`
                self.train_loader.after_skip = lambda: ckpt.set_global_rng_state(state["rng"])
        self.path.step_t.fill_(step)
        self.path.paths = [dict(p) for p in state.get("paths") or []]  # the earlier attempts' (older checkpoints: none)
        self._keep_threads(state.get("threads"))
        self._check_resolves_as_it_ran()
        change = state.get("precision_changed")
        if change and self.path.amp is not None:  # replayed in full precision before the interruption: stay there
            self.path.amp, self.facts.precision_change = None, change
        return step

    def _check_resolves_as_it_ran(self) -> None:
        """`precision: auto` resolves per machine: refuse to go on with a run in another precision than it ran in."""
        run_dir = self.members.members[0].record.dir
        ran, here = run_dir_precision(run_dir), precision_name(self.path.amp, self.path.dtype)
        if self.ref.precision == "auto" and ran is not None and ran != here:
            raise ConfigError(f"cannot resume {run_dir}: it ran as {ran} (precision: auto where it ran), and auto "
                              f"resolves to {here} here; pin it (--set precision={ran}) to go on as it ran")

    def _keep_threads(self, threads: int | None) -> None:
        """Go on with the CPU thread count the run trained with before (its checkpoint's), so a run resumed by a
        worker with another count (``sweep --workers`` changed) has the round-off of an uninterrupted run; ``close``
        gives the process its own count back. A checkpoint from before the count was saved: as it is."""
        now = torch.get_num_threads()
        if self.device.type != "cpu" or not threads or threads == now:
            return
        self._process_threads = now
        set_cpu_threads(int(threads))
        emit(self.members.callbacks, "on_message", f"resumed with {threads} CPU thread{'s' * (threads != 1)}, as the "
             f"run trained before (this process has {now}): the same round-off as an uninterrupted run")

    # -- bf16 that diverges, told apart from a net that diverges ------------------------------------------------
    def _keep_last_good(self, step: int) -> None:
        """Remember the state at ``step`` (a point where every running member is finite: the run's start and each
        evaluation) for `_replay_in_full_precision`; kept only while an autocast dtype that `precision: auto` chose
        runs (an explicit bf16 or a full-precision run diverges as it is)."""
        if self.ref.precision != "auto" or self.path.amp is None:
            self._last_good = None
            return
        self._last_good = {"step": step, "state": self.path.save_state(), "rng": ckpt.global_rng_state(),
                           "members": self.members.snapshot()}

    def _replay_in_full_precision(self, first_bad: int) -> int:
        """The run went non-finite at step ``first_bad`` in the autocast dtype `precision: auto` chose: go back to
        the last good state, switch to full precision, and return the step to go on from. If full precision diverges
        too, that is the net's own divergence (recorded as usual). The record says where and why precision changed."""
        snap, path = self._last_good, self.path
        assert snap is not None
        start = snap["step"]
        path.restore_state(snap["state"])
        ckpt.set_global_rng_state(snap["rng"])
        if hasattr(self.train_loader, "after_skip"):  # as on resume: the RNG as at `start`, once the loader skipped
            self.train_loader.after_skip = lambda: ckpt.set_global_rng_state(snap["rng"])
        self.members.restore(snap["members"], start)
        was = precision_name(path.amp, path.dtype)
        path.to_full_precision()
        self._last_good = None
        now = precision_name(path.amp, path.dtype)
        change = self.facts.precision_change = {
            "at_step": first_bad, "from": was, "to": now, "replayed_from_step": start,
            "reason": f"non-finite training loss at step {first_bad} in {was} (chosen by precision: auto); "
                      f"replayed from step {start} in {now}"}
        warnings.warn(change["reason"])
        emit(self.members.callbacks, "on_message", f"precision: {change['reason']}")
        return start

    def close(self) -> None:
        """Release this trainer's graph, model, optimizer and data now, not at some later cyclic garbage collection
        (the graph's step refers back to the step's owner), and return the freed blocks to the CUDA driver, so that
        the next trial of a worker starts with the device memory this one held. The trainer is unusable afterwards."""
        on_cuda = getattr(self, "device", torch.device("cpu")).type == "cuda"
        if "path" in self.__dict__:
            self.path.close()
        threads = self.__dict__.get("_process_threads")
        self.__dict__.clear()
        if threads:   # the run went on with its own thread count (_keep_threads): the process gets its own back
            set_cpu_threads(threads)
        if on_cuda:
            torch.cuda.empty_cache()
