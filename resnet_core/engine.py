"""The training engine: `train(config)` for one run, `train_members(configs)` for G fused runs (docs/fused_trials.md).

One code path serves both: a run is a fused run of one member. On CUDA the whole step (forward, backward, probes,
optimizer update with the learning rate in a device tensor, divergence bookkeeping) is captured in one CUDA graph,
optionally over torch.compile; CPU, MPS and NPU run the same step eagerly.
"""
from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from . import checkpoint as ckpt
from .config import ModelConfig
from .data import build_loaders, load_dataset, served_size
from .devices import (apply_cuda_math, autocast, autocast_dtype, configure_cpu_compiler, cpu_compile_pays,
                      make_current, param_dtype,
                      precision_name, resolve_device, tf32_policy, uses_channels_last)
from . import fast_guard
from .errors import ConfigError, FastPathMismatch
from .feasibility import check_trainable
from .flops import train_flops
from .fusion import MASKED_KEYS, MEMBER_KEYS, fusable_view
from .layers import member_rows
from .graphs import GraphCaptureError, Replayable, graph_backend
from .model import ResNet, build_model, count_params, member_state_dict
from .optimizers import build_optimizer, needs_eager, reset_state, set_momentum
from .grad_probes import GradProbe
from .overrides import diff_keys, get_dotted
from .provenance import provenance
from .record import RunRecord, read_config, read_metrics
from .signals import DeferredSignals, interrupt_reason
from .run_config import RunConfig, resolved_dict
from .schedules import lr_at, milestone_steps, momentum_at, total_steps



@dataclass
class RunResult:
    status: str
    reason: str | None
    summary: dict[str, Any]
    run_dir: Path


@dataclass
class _Member:
    """Host-side state of one member."""
    cfg: RunConfig
    record: RunRecord
    status: str = "running"
    reason: str | None = None
    diverged_at: int | None = None
    best_val: float = math.inf
    best_test: float = math.inf  # the test error at the best validation error (never a test-selected minimum)
    last: dict[str, float] = field(default_factory=dict)
    resolved: dict[str, Any] = field(default_factory=dict)  # the config as written to config.yaml
    train_errors: list[tuple[int, float]] = field(default_factory=list)  # (step, logged train error), in order
    final: dict[str, Any] | None = None  # the summary written when the member finished


RESUME_MAY_CHANGE = ("device", "fast", "channels_last", "eval_batch_size", "data.root", "data.download",
                     "data.num_workers")  # how a run is executed, not what it computes


def check_same_run(old: dict[str, Any], new: dict[str, Any], run_dir: Path) -> None:
    """Refuse to resume ``run_dir`` (whose ``config.yaml`` is ``old``; {} if none) with a config that computes
    something else: a one-line ``ConfigError`` naming the keys that differ."""
    if not old:
        return
    old = _with_added_defaults(old)
    diff = [k for k in diff_keys(old, new) if not k.startswith(RESUME_MAY_CHANGE)]
    if diff:
        shown = ", ".join(f"{k} ({get_dotted(old, k)!r} → {get_dotted(new, k)!r})" for k in diff[:4])
        raise ConfigError(f"cannot resume {run_dir}: its config.yaml differs in {shown}"
                          f"{', …' if len(diff) > 4 else ''}; resume with the same config or train into a new --out")


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


def _emit(callbacks: Sequence[Any], hook: str, *args: Any) -> list[Any]:
    return [getattr(cb, hook)(*args) for cb in callbacks if hasattr(cb, hook)]


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
    trainer = _Trainer(cfgs, [Path(d) for d in run_dirs], callbacks, resume=resume)
    try:
        return trainer.run(resume)
    finally:
        trainer.close()


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, loader: Any, members: int, device: torch.device,
                   amp: torch.dtype | None = None) -> tuple[list[float], list[float]]:
    """Per member: (mean loss, error %) over a loader that yields single-member batches."""
    was_training = model.training
    model.eval()
    dtype = next(model.parameters()).dtype
    acc = torch.promote_types(dtype, torch.float32)  # losses in fp32, or fp64 for an fp64 model
    loss = torch.zeros(members, device=device, dtype=acc)
    wrong = torch.zeros(members, device=device, dtype=acc)
    n = 0
    for x, y in loader:
        with autocast(device, amp):
            out = model(x.to(dtype).repeat(1, members, 1, 1))
        logits = out.to(acc).view(x.shape[0], members, -1)
        B, G, C = logits.shape
        yy = y.view(B, 1).expand(B, G)
        loss += F.cross_entropy(logits.reshape(B * G, C), yy.reshape(-1), reduction="none").view(B, G).sum(0)
        wrong += (logits.argmax(-1) != yy).float().sum(0)
        n += B
    model.train(was_training)
    return (loss / n).tolist(), (100.0 * wrong / n).tolist()


def _first_line(e: BaseException) -> str:
    """`Type: message` of an exception, its first non-empty line only (torch's errors append pages of advice)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"[:300]


GUARD_EVAL_IMAGES = 128  # the first evaluation of a split is checked on this many images of its first batch


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


class _Trainer:
    def __init__(self, cfgs: list[RunConfig], run_dirs: list[Path], callbacks: Sequence[Any],
                 resume: bool = False) -> None:
        self.cfgs, self.callbacks = cfgs, list(callbacks)
        ref = self.ref = cfgs[0]
        self.G = len(cfgs)
        self.device = resolve_device(ref.device)
        make_current(self.device)  # before any stream, graph or allocation: a worker given cuda:1 works on cuda:1
        self.graphs = graph_backend(self.device)  # None: no graph path here (CPU without the CI stand-in, MPS, NPU)
        self.cuda_like = self.graphs is not None  # CUDA, or the CPU stand-in that exercises the CUDA path in CI
        self.fast = self._fast_path(ref.fast)  # before anything is written: fast: graph on a CPU is a ConfigError
        self.fast_fallback: str | None = None  # why fast: auto fell back to eager, if it did
        self.amp = autocast_dtype(ref.precision, self.device)
        self.dtype = param_dtype(ref.precision)
        self.acc = torch.promote_types(self.dtype, torch.float32)  # logits, losses: fp32 (fp64 in an fp64 run)
        self.data = load_dataset(ref.data)
        n_train = len(self.data.train.labels) + (len(self.data.val.labels) if self.data.val is not None and
                                                 ref.data.val_size else 0)
        for c in cfgs:  # before anything is written: a config no step can train is a config error
            check_trainable(c, image_size=self.data.image_size[0], channels=self.data.in_channels,
                            classes=self.data.num_classes, n_train=n_train)
        self.member_models = [dataclasses.replace(c.model, in_channels=self.data.in_channels,
                                                  num_classes=self.data.num_classes) for c in cfgs]
        model_cfg = self.model_cfg = self.member_models[0]
        resolved = []
        for c, mc, d in zip(cfgs, self.member_models, run_dirs):
            r = resolved_dict(c, mc)
            if resume:
                check_same_run(read_config(d), r, d)
            resolved.append(r)
        self.members = [_Member(c, RunRecord(d)) for c, d in zip(cfgs, run_dirs)]
        for m, r in zip(self.members, resolved):
            m.resolved = r
            m.record.write_config(m.resolved)

        if self.fast in ("graph", "compile") and self.graphs is not None and needs_eager(ref.optim, ref.schedule):
            warnings.warn("schedule.cycle_momentum with SGD runs eagerly: torch's SGD takes momentum as a float, "
                          "which a CUDA graph would freeze")
            self.fast, self.fast_fallback = "eager", "SGD with a cycled momentum (a float the graph would freeze)"
        self.channels_last = uses_channels_last(ref.channels_last, self.device, self.dtype)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.tf32 = tf32_policy(ref.precision, self.device)
        if self.device.type == "cuda":
            apply_cuda_math(self.tf32, static_shapes=self.fast in ("graph", "compile"))

        torch.manual_seed(ref.seed)
        self.model: ResNet = build_model(model_cfg, members=self.G, seeds=[c.seed for c in cfgs],
                                         shortcuts=[mc.shortcut for mc in self.member_models])
        self.model = self.model.to(device=self.device, dtype=self.dtype, memory_format=fmt)
        if self.G == 1:
            self.params_count = [count_params(self.model)]
        else:
            with torch.device("meta"):
                self.params_count = [count_params(build_model(mc)) for mc in self.member_models]

        loaders = build_loaders(self.data, ref.data, seeds=[c.seed for c in cfgs], batch_size=ref.batch_size,
                                eval_batch_size=ref.eval_batch_size, device=self.device,
                                channels_last=self.channels_last)
        self.train_loader, self.eval_loaders = loaders.train, loaders.evals()
        self.spe = self.train_loader.steps_per_epoch
        self.total = total_steps(ref.schedule, self.spe)
        unit = self.spe if ref.schedule.unit == "epoch" else 1
        self.eval_interval = max(1, round(ref.eval_every * unit))
        self.log_interval = min(ref.log_every, self.eval_interval)
        self.log_points = _log_points(ref.log_per_epoch, self.spe)
        self.ckpt_interval = max(1, round(ref.checkpoint_every * unit)) if ref.checkpoint_every else 0
        self.reset_steps = set(milestone_steps(ref.schedule, self.spe)) if ref.schedule.reset_optimizer else set()
        if ref.fast == "auto" and self.device.type == "cpu" and self.graphs is None and cpu_compile_pays(
                train_flops(model_cfg, served_size(ref.data, self.data)[0], self.total * ref.batch_size * self.G)):
            self.fast = "compile"
        if self.fast == "compile" and self.graphs is None:  # with a graph backend, compiled under the graph (_capture)
            configure_cpu_compiler()
            self.model = torch.compile(self.model)
        self.compile_s = 0.0  # seconds the first compiled calls took (the inductor build, and the calls themselves)
        self._compiled_ok = False  # torch.compile builds at the first step (and first evaluation): see _run_step
        self._compiled_evals: set[str] = set()  # splits whose first compiled evaluation ran
        self._guarded = False  # the first step ran under the fast-path guard (fast_guard)
        self._guarded_evals: set[str] = set()  # splits whose first evaluation the guard checked
        self.guard_s = 0.0  # seconds the guard's reference steps took
        self.precision_change: dict[str, Any] | None = None  # a bf16 run replayed in fp32 after going non-finite
        self._last_good: dict[str, Any] | None = None  # the state to replay from in full precision (see run)

        self.lr = torch.tensor(lr_at(ref.schedule, ref.optim.lr, 0, self.spe), device=self.device)
        cycled = momentum_at(ref.schedule, 0, self.spe) is not None
        self.beta1 = (torch.zeros((), device=self.device)
                      if cycled and ref.optim.name != "sgd" and self.device.type == "cuda" else None)
        self.opt = self._optimizer()
        self.probe = GradProbe(self.model_for_state()) if ref.probes else None  # its names, not _orig_mod.*
        G, dev = self.G, self.device
        self.alive = torch.ones(G, dtype=torch.bool, device=dev)
        self.first_bad = torch.full((G,), -1, dtype=torch.long, device=dev)
        self.step_t = torch.zeros((), dtype=torch.long, device=dev)
        self.win_loss = torch.zeros(G, device=dev, dtype=self.acc)
        self.win_err = torch.zeros(G, device=dev, dtype=self.acc)
        self.win_count = 0
        self._freeze_index: dict[int, torch.Tensor] = {}
        self._state = [t for t in self.model.state_dict().values() if t.dim() > 0]
        self._snapshot = [t.clone() for t in self._state] if G > 1 else []
        self._graph: Replayable | None = None

    # -- setup ------------------------------------------------------------------------------------------------
    def _fast_path(self, asked: str) -> str:
        """The fast path to run: auto = graph where there is a graph backend, else eager (on a CPU, auto becomes
        compile once the run's length is known, if `devices.cpu_compile_pays`). compile without a graph backend (a
        CPU) is torch.compile alone; graph asked for on a device without one is a ConfigError (never a silent eager
        run)."""
        if asked == "auto":
            return "graph" if self.graphs is not None else "eager"
        if asked == "graph" and self.graphs is None:
            raise ConfigError(f"fast={asked} needs CUDA but the device is {self.device}; use fast: auto, eager or "
                              "compile")
        return asked

    def _optimizer(self) -> torch.optim.Optimizer:
        """SGD (fused) or Adam/AdamW (capturable on CUDA) via `optimizers.build_optimizer`; on the graph path the
        learning rate is a device tensor (a captured graph replays host floats as they were at capture)."""
        lr: Any = self.lr if self.cuda_like else float(self.lr)
        # the CPU stand-in of the graph path runs the fused SGD kernel, as CUDA does
        return build_optimizer(self.ref.optim, self.ref.schedule, self.model.parameters(), lr=lr, beta1=self.beta1,
                               on_cuda=self.device.type == "cuda", fused=self.cuda_like)

    def _host_inputs(self) -> tuple:
        """The optimizer's host-side hyper-parameters, which a captured graph freezes (the stand-in checks them)."""
        return tuple((k, v) for group in self.opt.param_groups for k, v in sorted(group.items())
                     if k != "params" and not torch.is_tensor(v))

    def _set_lr(self, step: int) -> None:
        """The schedule's lr (and one-cycle momentum) for ``step``; at a milestone with schedule.reset_optimizer,
        the optimizer's state is zeroed first, as rebuilding the optimizer there would."""
        value = lr_at(self.ref.schedule, self.ref.optim.lr, step, self.spe)
        if self.cuda_like:
            self.lr.fill_(value)
        else:
            self.lr = torch.tensor(value)
            for group in self.opt.param_groups:
                group["lr"] = value
        momentum = momentum_at(self.ref.schedule, step, self.spe)
        if momentum is not None:
            set_momentum(self.opt, momentum, self.beta1)
        if step in self.reset_steps:
            reset_state(self.opt)

    # -- the step ---------------------------------------------------------------------------------------------
    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.amp):
            out = self.model(x.to(self.dtype))
        return out.to(self.acc).view(x.shape[0], self.G, -1)

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One iteration; written without host syncs so it can be captured in a CUDA graph."""
        if self.G > 1:
            torch._foreach_copy_(self._snapshot, self._state)
        logits = self._logits(x)
        B, G, C = logits.shape
        losses = F.cross_entropy(logits.reshape(B * G, C), y.reshape(B * G), reduction="none",
                                 label_smoothing=self.ref.label_smoothing).view(B, G).mean(0)
        loss = torch.where(self.alive, losses, torch.zeros_like(losses)).sum()
        self.opt.zero_grad(set_to_none=False)
        loss.backward()
        if self.probe is not None:
            self.probe.accumulate()
        self.opt.step()
        with torch.no_grad():
            errors = (logits.argmax(-1) != y).float().mean(0)
            self.win_loss.add_(losses.detach())
            self.win_err.add_(errors)
            bad = ~torch.isfinite(losses.detach()) & self.alive
            self.first_bad.copy_(torch.where(bad, self.step_t, self.first_bad))
            self.alive.logical_and_(~bad)
            self.step_t.add_(1)
            if self.G > 1:
                self._freeze_dead()

    def _freeze_dead(self) -> None:
        """Members that diverged or were stopped keep the weights they had before this step."""
        for t, s in zip(self._state, self._snapshot):
            rows = t.shape[0]
            if rows not in self._freeze_index:
                self._freeze_index[rows] = torch.arange(rows, device=t.device) // (rows // self.G)
            keep = self.alive[self._freeze_index[rows]].view(-1, *([1] * (t.dim() - 1)))
            t.copy_(torch.where(keep, t, s))

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Capture the whole step in a graph, after warm-up iterations; leaves every piece of training state (weights,
        BN statistics, optimizer state and step counters, divergence and window counters, probe sums) exactly as it
        found it, whether the capture succeeds or fails (so a resumed run goes on from its loaded state)."""
        graphs = self.graphs
        assert graphs is not None
        saved = self._save_state()
        try:
            if self.fast == "compile":
                self.model = graphs.compile(self.model)
            self.static_x, self.static_y = x.clone(), y.clone()
            step = self._static_step
            graphs.warmup(step, 3)
            self._restore_state(saved)
            self._graph = graphs.capture(step, self._host_inputs)
        except BaseException:
            self._graph = None
            self.model = self.model_for_state()
            raise
        finally:
            self._restore_state(saved)  # a capture records the step (the stand-in also runs it): keep state exact

    def _static_step(self) -> None:
        self._step(self.static_x, self.static_y)

    def _mutable_state(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Every tensor a training step changes in place: (the model's and the trainer's, the optimizer's)."""
        fixed = list(self.model_for_state().state_dict(keep_vars=True).values())  # the tensors themselves
        fixed += [self.alive, self.first_bad, self.step_t, self.win_loss, self.win_err]
        if self.probe is not None:
            fixed += [self.probe.sum, self.probe.max]
        return fixed, [v for state in self.opt.state.values() for v in state.values() if torch.is_tensor(v)]

    def _save_state(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        fixed, opt_state = self._mutable_state()
        return [(t, t.detach().clone()) for t in fixed + opt_state]

    def _restore_state(self, saved: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Put back every saved tensor in place; zero the optimizer-state tensors created since (slots made by the
        warm-up: zero momentum / moments / step are what a fresh slot's first update starts from)."""
        known = {id(t) for t, _ in saved}
        with torch.no_grad():
            for t, value in saved:
                t.copy_(value)
            for t in self._mutable_state()[1]:
                if id(t) not in known:
                    t.zero_()

    def _run_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One training step on the configured path; the first one runs under the fast-path guard."""
        if not self._guarded:
            self._guarded_step(x, y)
            self._guarded = True
        else:
            self._fast_step(x, y)

    # -- the fast-path guard ----------------------------------------------------------------------------------
    def _is_reference(self) -> bool:
        """Whether this run's step is the eager reference itself: one member, eager, full precision, NCHW."""
        return self.G == 1 and self.fast == "eager" and self.amp is None and not self.channels_last

    def path_name(self) -> str:
        """The path a step runs on, as a user reads it: e.g. `compile, bf16, channels_last, 4 fused members`."""
        parts = [self.fast, precision_name(self.amp, self.dtype)] + (["channels_last"] if self.channels_last else [])
        return ", ".join(parts + ([f"{self.G} fused members"] if self.G > 1 else []))

    def _solo(self, g: int) -> ResNet:
        """Member g as an eager solo model (NCHW, the run's weights dtype) holding the member's current state."""
        with torch.random.fork_rng(devices=[]):  # its throwaway init must not move the run's RNG
            model = build_model(self.member_models[g])
        model = model.to(device=self.device, dtype=self.dtype)
        model.load_state_dict(member_state_dict(self.model_for_state(), g))
        return model.train(self.model_for_state().training)

    def _reference(self, x: torch.Tensor, y: torch.Tensor, evaluate: bool) -> fast_guard.Reference:
        t0 = time.perf_counter()
        ref = fast_guard.reference(self._solo, x.to(self.dtype), y, members=self.G, amp=self.amp,
                                   device=self.device, evaluate=evaluate, label_smoothing=self.ref.label_smoothing)
        self.guard_s += time.perf_counter() - t0
        return ref

    def _member_grads(self, losses: torch.Tensor) -> list[fast_guard.Outputs]:
        """What the step just computed, per member: its loss and its slice of every parameter's gradient."""
        named = [(n, p) for n, p in self.model_for_state().named_parameters() if p.requires_grad]
        values = losses.tolist()
        return [fast_guard.Outputs(values[g], {n: (member_rows(p.grad, g, self.G) if p.grad is not None
                                                   else torch.zeros_like(member_rows(p, g, self.G)))
                                               for n, p in named}) for g in range(self.G)]

    def _guarded_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """The first step: on any path but the reference, checked against the eager reference step from the same
        state and batch (`fast_guard.compare`); on disagreement the state is put back and the step runs again one
        path slower (`_slower`), until a path agrees."""
        if self._is_reference():
            return self._fast_step(x, y)
        ref = self._reference(x, y, evaluate=False)
        while True:
            saved = self._save_state()
            before = self.win_loss.clone()
            self._fast_step(x, y)
            problem = fast_guard.compare(self._member_grads(self.win_loss - before), ref, autocast=self.amp is not None)
            if problem is None:
                return
            self._restore_state(saved)
            self._slower(problem, "its first step")
            if self._is_reference():
                return self._fast_step(x, y)

    def _fast_eval_outputs(self, x: torch.Tensor, y: torch.Tensor) -> list[fast_guard.Outputs]:
        was = self.model.training
        self.model.eval()
        with torch.no_grad(), autocast(self.device, self.amp):
            out = self.model(x.to(self.dtype).repeat(1, self.G, 1, 1))
        self.model.train(was)
        logits = out.to(self.acc).view(x.shape[0], self.G, -1)
        return [fast_guard.Outputs(float(F.cross_entropy(logits[:, g], y)), {"logits": logits[:, g]})
                for g in range(self.G)]

    def _guard_eval(self, split: str) -> None:
        """The first evaluation of a split: its first batch's logits checked against the eager reference. The
        run's RNG is left as it was (a DataLoader's iterator draws its seed from it)."""
        if self._is_reference() or not self._active():
            return
        with torch.random.fork_rng(devices=[]):
            self._guard_eval_batch(split)

    def _guard_eval_batch(self, split: str) -> None:
        x, y = next(iter(self.eval_loaders[split]))
        x, y = x[:GUARD_EVAL_IMAGES], y[:GUARD_EVAL_IMAGES]
        B = x.shape[0]
        ref = self._reference(x.repeat(1, self.G, 1, 1), y.view(B, 1).expand(B, self.G), evaluate=True)
        while not self._is_reference():
            compiled_first = self.fast == "compile" and self.graphs is None and split not in self._compiled_evals
            run = lambda: self._fast_eval_outputs(x, y)  # noqa: E731
            outputs = self._first_compiled(run, None) if compiled_first else run()
            self._compiled_evals.add(split)
            problem = fast_guard.compare(outputs, ref, what="logits", members=self._active(),
                                         autocast=self.amp is not None)
            if problem is None:
                return
            self._slower(problem, f"its first {split} evaluation")

    def _slower(self, problem: str, when: str) -> None:
        """After the guard found ``problem``: go one path slower (compile/graph → eager, channels_last → NCHW,
        autocast → full precision), where the user left the choice to auto; an explicit choice stops with a one-line
        FastPathMismatch. Recorded as `fast_fallback`."""
        why = f"{self.path_name()} disagreed with the eager reference at {when}: {problem}"
        if self.fast in ("compile", "graph"):
            if self.ref.fast != "auto":
                raise FastPathMismatch(f"fast={self.fast}: {why}; set fast: eager (or auto)")
            self.fast, self._graph, self._compiled_ok = "eager", None, False
            self.model = self.model_for_state()
        elif self.channels_last:
            self._to_nchw()
        elif self.amp is not None:
            if self.ref.precision != "auto":
                raise FastPathMismatch(f"precision={self.ref.precision}: {why}; set precision: fp32 (or auto)")
            self.amp = None
        else:  # fused members disagreeing with their solo twins: no slower path inside this process
            raise FastPathMismatch(f"{why}; train these members separately (sweep --fuse off)")
        warnings.warn(f"{why}; going on as {self.path_name()} from the same state")
        self.fast_fallback = f"{self.fast_fallback}; {why}" if self.fast_fallback else why

    def _to_nchw(self) -> None:
        """Weights, optimizer state and the fused-member snapshot in NCHW (contiguous) memory format."""
        self.model_for_state().to(memory_format=torch.contiguous_format)
        for state in self.opt.state.values():
            for k, v in state.items():
                if torch.is_tensor(v) and v.dim() == 4:
                    state[k] = v.contiguous()
        self.channels_last = False
        self._state = [t for t in self.model.state_dict().values() if t.dim() > 0]
        self._snapshot = [t.clone() for t in self._state] if self.G > 1 else []
        self._freeze_index.clear()

    def _fast_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if not self.channels_last and x.dim() == 4:
            x = x.contiguous()
        if self.fast in ("graph", "compile") and self._graph is None and self.graphs is not None:
            try:
                self._capture(x, y)
            except Exception as e:  # noqa: BLE001 - reported, or (fast: auto) fallen back from
                self._eager_after(e, "capturing the training step failed", "graph capture failed", "a graph")
        if self._graph is not None:
            self.static_x.copy_(x)
            self.static_y.copy_(y)
            self._graph.replay()
        elif self.fast == "compile" and not self._compiled_ok:
            self._first_compiled(lambda: self._step(x, y), self._save_state())
            self._compiled_ok = True
        else:
            self._step(x, y)

    def _eager_after(self, e: Exception, failure: str, warning: str, without: str) -> None:
        """After a fast path failed to build (`e`): `fast: auto` warns and goes on eagerly (recorded as
        `fast_fallback`); an explicit `fast: graph | compile` stops with a one-line GraphCaptureError naming the
        cause."""
        reason = _first_line(e)
        if self.ref.fast != "auto":
            raise GraphCaptureError(f"fast={self.fast}: {failure} ({reason}); set fast: eager (or auto) to run "
                                    f"without {without}") from e
        warnings.warn(f"{warning} ({reason}); fast: auto goes on eagerly from the same state")
        self.fast, self.fast_fallback = "eager", reason

    def _first_compiled(self, run: Any, saved: list[tuple[torch.Tensor, torch.Tensor]] | None) -> Any:
        """Run the first call of the torch.compile'd model (the step, or an evaluation), where inductor builds its
        kernels. If the build fails, `fast: auto` puts back the state `saved` before the call (none for an
        evaluation) and runs it eagerly; see `_eager_after`. Says that it builds, and how long the build took."""
        what = "the training step" if saved is not None else "an evaluation"
        self._say(f"torch.compile: building the kernels of {what} (one-off; a minute or more on a busy CPU)…")
        t0 = time.perf_counter()
        try:
            out = run()
            self.compile_s += time.perf_counter() - t0
            self._say(f"torch.compile: {what} built and ran in {time.perf_counter() - t0:.1f} s")
            return out
        except Exception as e:  # noqa: BLE001 - reported, or (fast: auto) fallen back from
            self._eager_after(e, "torch.compile failed", "torch.compile failed", "it")
            if saved is not None:
                self._restore_state(saved)
            self.model = self.model_for_state()
            return run()

    def _say(self, text: str) -> None:
        """A phase the user would otherwise wait through in silence, to the callbacks that show text."""
        _emit(self.callbacks, "on_message", text)

    def close(self) -> None:
        """Release this trainer's graph, model, optimizer and data now, not at some later cyclic garbage collection
        (the graph's step refers back to the trainer), and return the freed blocks to the CUDA driver, so that the
        next trial of a worker starts with the device memory this one held. The trainer is unusable afterwards."""
        on_cuda = getattr(self, "device", torch.device("cpu")).type == "cuda"
        self.__dict__.clear()
        if on_cuda:
            torch.cuda.empty_cache()

    # -- evaluation -------------------------------------------------------------------------------------------
    def evaluate(self, split: str) -> tuple[list[float], list[float]]:
        if split not in self._guarded_evals:  # its first batch checked (and built, if compiled) by the guard
            self._guard_eval(split)
            self._guarded_evals.add(split)

        def run() -> tuple[list[float], list[float]]:
            return evaluate_model(self.model, self.eval_loaders[split], self.G, self.device, self.amp)

        if self.fast == "compile" and self.graphs is None and split not in self._compiled_evals:
            out = self._first_compiled(run, None)  # evaluation changes no state: nothing to put back
            self._compiled_evals.add(split)
            return out
        return run()

    # -- bookkeeping ------------------------------------------------------------------------------------------
    def _active(self) -> list[int]:
        return [g for g, m in enumerate(self.members) if m.status == "running"]

    def _log(self, step: int, epoch: float, elapsed: float, images: int) -> None:
        count = max(self.win_count, 1)
        loss = (self.win_loss / count).tolist()
        err = (100.0 * self.win_err / count).tolist()
        self.win_loss.zero_()
        self.win_err.zero_()
        probes = self.probe.read_and_reset(self.win_count) if self.probe is not None else None
        weights = self.probe.weight_norms() if self.probe is not None else None
        self.win_count = 0
        lr = lr_at(self.ref.schedule, self.ref.optim.lr, step - 1, self.spe)
        throughput = images / max(elapsed, 1e-9)
        self._check_divergence(step)
        for g in self._active():
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
            m.train_errors.append((step, err[g]))
            _emit(self.callbacks, "on_log", g, step, flat)

    def _check_divergence(self, step: int) -> None:
        first_bad = self.first_bad.tolist()
        bad = [first_bad[g] + 1 for g in self._active() if first_bad[g] >= 0]
        if bad and self._last_good is not None:  # an autocast dtype precision: auto chose: replay in full precision
            raise _ReplayInFullPrecision(min(bad))
        for g in self._active():
            if first_bad[g] >= 0:
                m = self.members[g]
                m.status, m.diverged_at = "diverged", first_bad[g] + 1
                m.reason = f"non-finite training loss at step {m.diverged_at}"
                self._finish(g, step)

    def _eval(self, step: int, epoch: float) -> None:
        results = {split: self.evaluate(split) for split in self.eval_loaders}
        for g in self._active():
            m = self.members[g]
            metrics = {"epoch": epoch}
            for split, (loss, err) in results.items():
                m.record.log(step, epoch, split, {"loss": loss[g], "error": err[g]})
                metrics.update({f"{split}/loss": loss[g], f"{split}/error": err[g]})
                m.last[f"{split}_error"] = err[g]
            # "best" is chosen on the validation split only; without one there is no best.pt, only last.pt
            improved = "val" in results and results["val"][1][g] < m.best_val
            if improved:
                m.best_val, m.best_test = results["val"][1][g], results["test"][1][g]
            if self.ref.checkpoint:
                state = self._member_ckpt(g, step)
                ckpt.atomic_save(state, m.record.dir / "last.pt")
                if improved:
                    ckpt.atomic_save(state, m.record.dir / "best.pt")
            stop = any(_emit(self.callbacks, "on_eval", g, step, metrics))
            m.record.write_summary(self._summary(g, step))
            if stop:
                m.status, m.reason = "pruned", f"stopped by a callback at step {step}"
                self._finish(g, step)

    def _log_due(self, step: int) -> bool:
        """Whether training metrics are logged after ``step`` (1-based count of steps done)."""
        if self.log_points is None:
            return step % self.log_interval == 0
        return (step - 1) % self.spe + 1 in self.log_points

    def _save_periodic(self, step: int) -> None:
        """checkpoint_every: each running member's checkpoint as epoch_NNN.pt (or step_NNNNNNN.pt), atomically."""
        name = (f"epoch_{step // self.spe:03d}.pt" if self.ref.schedule.unit == "epoch" and step % self.spe == 0
                else f"step_{step:07d}.pt")
        for g in self._active():
            ckpt.atomic_save(self._member_ckpt(g, step), self.members[g].record.dir / name)

    def _member_ckpt(self, g: int, step: int) -> dict[str, Any]:
        m = self.members[g]
        return ckpt.member_checkpoint(self.model_for_state(), self.opt, g, step=step, best_val=m.best_val,
                                      best_test=m.best_test, model_config=self.member_models[g].to_dict(),
                                      run_config=m.resolved, wall_time_s=self.wall_time, images=self.images_seen,
                                      rng=ckpt.global_rng_state(), precision_changed=self.precision_change)

    def _ran_compiled(self) -> bool:
        """Whether the steps ran compiled: fast is compile and the compiled step (or the graph over it) ran."""
        return self.fast == "compile" and (getattr(self, "_compiled_ok", False)
                                           or getattr(self, "_graph", None) is not None)

    def model_for_state(self) -> ResNet:
        return getattr(self.model, "_orig_mod", self.model)

    def _finish(self, g: int, step: int) -> None:
        """Freeze member g (masked out of the update) and write its final summary."""
        self.alive[g] = False
        m = self.members[g]
        m.final = self._summary(g, step)
        m.record.write_summary(m.final)
        _emit(self.callbacks, "on_end", g, m.final)

    def _final_train_error(self, g: int) -> float | None:
        """Mean logged training error over the last epoch (as the running curves of He et al. Fig. 6)."""
        rows = self.members[g].train_errors
        if not rows:
            return None
        last = rows[-1][0]
        window = [value for step, value in rows if step > last - self.spe]
        return float(sum(window) / len(window))

    def _summary(self, g: int, step: int) -> dict[str, Any]:
        m = self.members[g]
        fin = lambda v: None if v is None or not math.isfinite(v) else v  # noqa: E731
        return {
            "name": m.cfg.name, "seed": m.cfg.seed, "status": m.status, "reason": m.reason,
            "step": step, "total_steps": self.total, "epoch": step / self.spe, "params": self.params_count[g],
            "final_test_error": fin(m.last.get("test_error")), "test_error_at_best_val": fin(m.best_test),
            "final_val_error": fin(m.last.get("val_error")), "best_val_error": fin(m.best_val),
            "final_train_error": fin(self._final_train_error(g)), "final_train_loss": fin(m.last.get("train_loss")),
            "wall_time_s": self.wall_time, "img_per_s": self.img_per_s, "diverged_at": m.diverged_at,
            "device": str(self.device), "fused_members": self.G, "fast_path": self.fast,
            "precision": precision_name(self.amp, self.dtype), "channels_last": self.channels_last,
            "compiled": self._ran_compiled(),
            "threads": torch.get_num_threads() if self.device.type == "cpu" else None,
            "data_time_s": self.data_time, "fast_fallback": self.fast_fallback, "tf32": self.tf32,
            "fast_path_checked": self._guarded and not self._is_reference(), "guard_s": self.guard_s,
            "compile_s": self.compile_s, "precision_changed": self.precision_change,
            "provenance": provenance(),  # the code and library versions that produced this record
            "resume_note": getattr(self, "resume_note", None),   # a damaged checkpoint this run resumed around
        }

    # -- resume -----------------------------------------------------------------------------------------------
    def _resume(self) -> int:
        """Load every member's last.pt; return the step to continue from (0 if none)."""
        paths = [m.record.dir / "last.pt" for m in self.members]
        if not any(p.exists() for p in paths):  # killed before its first checkpoint: start over, cleanly
            for m in self.members:
                m.record.truncate_after(0)
            return 0
        if not all(p.exists() for p in paths):
            missing = ", ".join(str(p.parent) for p in paths if not p.exists())
            raise ConfigError(f"cannot resume fused members: no last.pt in {missing} (resume them separately)")
        states = self._readable_checkpoints(paths)
        if states is None:  # no readable checkpoint at all: start over, cleanly (resume_note says why)
            for m in self.members:
                m.record.truncate_after(0)
            return 0
        steps = {s["step"] for s in states}
        if len(steps) != 1:
            raise ConfigError(f"cannot resume fused members from different steps {sorted(steps)}")
        step = steps.pop()
        # the whole trial's clock and images (a checkpoint from before they were saved: this segment only)
        self.wall_time = float(states[0].get("wall_time_s", 0.0))
        self.images_seen = int(states[0].get("images", 0))
        if states[0].get("rng") is not None:  # global RNG (e.g. the torch loader's augmentation) as at `step`
            ckpt.set_global_rng_state(states[0]["rng"])
            if hasattr(self.train_loader, "after_skip"):  # re-set once the loader has skipped to `step`
                self.train_loader.after_skip = lambda: ckpt.set_global_rng_state(states[0]["rng"])
        model = self.model_for_state()
        for g, (m, s) in enumerate(zip(self.members, states)):
            ckpt.restore_member(model, self.opt, g, s)
            m.best_val, m.best_test = s["best_val"], s["best_test"]
            m.record.truncate_after(step)
            for r in read_metrics(m.record.dir):  # the latest train loss/error and eval errors, as at `step`
                if (r["split"], r["name"]) in (("train", "loss"), ("train", "error"), ("val", "error"),
                                               ("test", "error")):
                    m.last[f"{r['split']}_{r['name']}"] = r["value"]
                if (r["split"], r["name"]) == ("train", "error"):
                    m.train_errors.append((r["step"], r["value"]))
        self.step_t.fill_(step)
        change = states[0].get("precision_changed")
        if change and self.amp is not None:  # replayed in full precision before the interruption: stay there
            self.amp, self.precision_change = None, change
        return step

    # -- bf16 that diverges, told apart from a net that diverges ------------------------------------------------
    def _keep_last_good(self, step: int) -> None:
        """Remember the state at ``step`` (a point where every running member is finite: the run's start and each
        evaluation) for `_replay_in_full_precision`; kept only while an autocast dtype that `precision: auto` chose
        runs (an explicit bf16 or a full-precision run diverges as it is)."""
        if self.ref.precision != "auto" or self.amp is None:
            self._last_good = None
            return
        self._last_good = {"step": step, "state": self._save_state(), "rng": ckpt.global_rng_state(),
                           "members": [(m.best_val, m.best_test, dict(m.last), list(m.train_errors))
                                       for m in self.members]}

    def _replay_in_full_precision(self, first_bad: int) -> int:
        """The run went non-finite at step ``first_bad`` in the autocast dtype `precision: auto` chose: go back to
        the last good state, switch to full precision, and return the step to go on from. If full precision diverges
        too, that is the net's own divergence (recorded as usual). The record says where and why precision changed."""
        snap = self._last_good
        assert snap is not None
        start = snap["step"]
        self._restore_state(snap["state"])
        ckpt.set_global_rng_state(snap["rng"])
        if hasattr(self.train_loader, "after_skip"):  # as on resume: the RNG as at `start`, once the loader skipped
            self.train_loader.after_skip = lambda: ckpt.set_global_rng_state(snap["rng"])
        for m, (best_val, best_test, last, errors) in zip(self.members, snap["members"]):
            m.best_val, m.best_test, m.last, m.train_errors = best_val, best_test, dict(last), list(errors)
            m.record.truncate_after(start)
        was = precision_name(self.amp, self.dtype)
        self.amp, self.win_count, self._last_good = None, 0, None
        self._graph, self._guarded = None, False  # a captured graph holds the old dtype; the new path is checked
        self._guarded_evals.clear()
        now = precision_name(self.amp, self.dtype)
        self.precision_change = {"at_step": first_bad, "from": was, "to": now, "replayed_from_step": start,
                                 "reason": f"non-finite training loss at step {first_bad} in {was} (chosen by "
                                           f"precision: auto); replayed from step {start} in {now}"}
        warnings.warn(self.precision_change["reason"])
        self._say(f"precision: {self.precision_change['reason']}")
        return start

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
        self.resume_note = (f"{damaged}; resumed from the checkpoint of step {step}" if step is not None else
                            f"{damaged}; no earlier readable checkpoint: restarted from scratch")
        warnings.warn(self.resume_note, stacklevel=2)
        return None if step is None else [f[step] for f in found]

    def _checkpoint_interrupt(self, step: int) -> None:
        """A graceful stop (a signal between steps, or raised at an evaluation) checkpoints every running member
        at ``step`` in last.pt, so the resumed run loses nothing; a stop inside a step keeps the last one."""
        if not self.ref.checkpoint or self.signals.inside:
            return
        for g in self._active():
            try:
                ckpt.atomic_save(self._member_ckpt(g, step), self.members[g].record.dir / "last.pt")
            except Exception as e:  # noqa: BLE001 - the interrupt goes on; the last evaluation's checkpoint stays
                warnings.warn(f"no checkpoint at the interrupt (step {step}): {_first_line(e)}", stacklevel=2)

    # -- the loop ---------------------------------------------------------------------------------------------
    def run(self, resume: bool) -> list[RunResult]:
        self.wall_time, self.img_per_s, self.images_seen, self.data_time = 0.0, 0.0, 0, 0.0
        self.resume_note: str | None = None
        start = self._resume() if resume else 0
        wall0 = self.wall_time
        for g, m in enumerate(self.members):
            m.record.write_summary(self._summary(g, start))
            _emit(self.callbacks, "on_start", g, m.resolved, m.record.dir)
        t0 = time.perf_counter()
        t_win, images_win = t0, 0
        step = start
        self._keep_last_good(step)
        self.signals = DeferredSignals().__enter__()
        try:
            while step < self.total and self._active():
                epoch, first = divmod(step, self.spe)
                batches = self.train_loader.epoch(epoch, start=first)
                try:
                    while True:
                        t_data = time.perf_counter()
                        batch = next(batches, None)
                        self.data_time += time.perf_counter() - t_data  # host time preparing batches (exact on a CPU)
                        if batch is None:
                            break
                        x, y = batch
                        with self.signals.step():   # a stopping signal waits for the step to end
                            self._set_lr(step)
                            self._run_step(x, y)
                            step += 1
                            self.win_count += 1
                            images_win += x.shape[0]
                        if self._log_due(step) or step % self.eval_interval == 0 or step == self.total:
                            now = time.perf_counter()
                            if self.graphs is not None:
                                self.graphs.synchronize()
                                now = time.perf_counter()
                            self.images_seen += images_win  # before _log: a member it finishes has its img/s
                            self.wall_time = wall0 + now - t0
                            self.img_per_s = self.images_seen / max(self.wall_time, 1e-9)
                            self._log(step, step / self.spe, now - t_win, images_win)
                            t_win, images_win = now, 0
                            if step % self.eval_interval == 0 or step == self.total:
                                self._eval(step, step / self.spe)
                                self._keep_last_good(step)
                        if self.ckpt_interval and step % self.ckpt_interval == 0:
                            self._save_periodic(step)
                        if step >= self.total or not self._active():
                            break
                except _ReplayInFullPrecision as replay:
                    step = self._replay_in_full_precision(replay.first_bad)
                    t_win, images_win = time.perf_counter(), 0
        except BaseException as e:
            status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
            if status == "interrupted":
                self.images_seen += images_win
                self.wall_time = wall0 + time.perf_counter() - t0
                self.img_per_s = self.images_seen / max(self.wall_time, 1e-9)
                self._checkpoint_interrupt(step)
            reason = interrupt_reason(e) if status == "interrupted" else f"{type(e).__name__}: {e}"
            for g in self._active():
                self.members[g].status, self.members[g].reason = status, reason
                self.members[g].record.write_summary(self._summary(g, step))
                _emit(self.callbacks, "on_end", g, self._summary(g, step))
            raise
        finally:
            self.signals.__exit__()
        for g in self._active():
            self.members[g].status = "complete"
            self._finish(g, step)
        return [RunResult(m.status, m.reason, m.final or self._summary(g, step), m.record.dir)
                for g, m in enumerate(self.members)]
