"""The training step on its fast path: how it is built, checked and, when it must be, given up.

`FastPath` holds the model, the optimizer and the device-side counters of one (fused) run, and runs its step
(forward, backward, probes, optimizer update, divergence bookkeeping, written without host syncs) on the configured
path: eager, torch.compile, or one CUDA graph over either (`graphs`). It builds the path at the first step and the
first evaluation; a build that fails falls back to eager under `fast: auto` and stops an explicit choice with one
line. The first step and the first evaluation of each split run under the guard (`fast_guard`, docs/fast_paths.md):
a path that disagrees with the eager reference is put back to the saved state and tried one path slower.
"""
from __future__ import annotations

import time
import warnings
from typing import Any, Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F

from . import fast_guard
from .config import ModelConfig
from .devices import (autocast, compile_draws_as_eager, configure_cpu_compiler, cpu_compiler, precision_name,
                      rng_state, set_rng_state)
from .errors import ConfigError, FastPathMismatch, GraphCaptureError, first_line
from .grad_probes import GradProbe
from .graphs import CudaGraphs, EmulatedGraphs, Replayable
from .layers import member_rows
from .model import ResNet, build_model, member_state_dict
from .optimizers import build_optimizer, reset_state, set_momentum
from .run_config import RunConfig
from .schedules import lr_at, momentum_at

GUARD_EVAL_IMAGES = 128  # the first evaluation of a split is checked on this many images of its first batch

GraphBackend = CudaGraphs | EmulatedGraphs  # graphs.graph_backend's answer where there is one
State = list[tuple[torch.Tensor, torch.Tensor]]  # (tensor, its saved value) for every tensor a step changes


def resolve_fast(asked: str, graphs: GraphBackend | None, device: torch.device) -> str:
    """The fast path to run: auto = graph where there is a graph backend, else eager (on a CPU, auto becomes compile
    once the run's length is known, if `devices.cpu_compile_pays`). compile without a graph backend (a CPU) is
    torch.compile alone; graph asked for on a device without one, and compile on a CPU without a C++ compiler for
    inductor's kernels, are ConfigErrors (never a silent eager run, nor a failure after the run's record exists)."""
    if asked == "auto":
        return "graph" if graphs is not None else "eager"
    if asked == "graph" and graphs is None:
        raise ConfigError(f"fast={asked} needs CUDA but the device is {device}; use fast: auto, eager or compile")
    if asked == "compile" and graphs is None and device.type == "cpu" and cpu_compiler() is None:
        raise ConfigError(f"fast={asked} needs a C++ compiler for torch.compile's CPU kernels and none was found "
                          f"($CXX, else g++ on PATH); install one or set CXX, or use fast: auto or eager")
    return asked


class Evaluation(NamedTuple):
    """Per member: mean loss, error (%) and the number of images whose outputs are not all finite, over ``images``."""
    loss: list[float]
    error: list[float]
    nonfinite: list[int]
    images: int

    def nonfinite_part(self, split: str, member: int = 0) -> str | None:
        """'the test split (200 of 200 images)' when ``member`` has images with NaN or inf outputs, else None."""
        bad = self.nonfinite[member]
        return f"the {split} split ({bad:,} of {self.images:,} images)" if bad else None


@torch.no_grad()
def evaluate_outputs(model: torch.nn.Module, loader: Any, members: int, device: torch.device,
                     amp: torch.dtype | None = None) -> Evaluation:
    """Loss, error and non-finite outputs per member over a loader that yields single-member batches. An image whose
    logits hold a NaN or inf has no prediction and counts as an error (argmax over NaN could hit its label);
    ``nonfinite`` says how many there were."""
    was_training = model.training
    model.eval()
    dtype = next(model.parameters()).dtype
    acc = torch.promote_types(dtype, torch.float32)  # losses in fp32, or fp64 for an fp64 model
    loss = torch.zeros(members, device=device, dtype=acc)
    wrong = torch.zeros(members, device=device, dtype=acc)
    bad = torch.zeros(members, device=device, dtype=torch.long)
    n = 0
    for x, y in loader:
        with autocast(device, amp):
            out = model(x.to(dtype).repeat(1, members, 1, 1))
        logits = out.to(acc).view(x.shape[0], members, -1)
        B, G, C = logits.shape
        yy = y.view(B, 1).expand(B, G)
        loss += F.cross_entropy(logits.reshape(B * G, C), yy.reshape(-1), reduction="none").view(B, G).sum(0)
        nonfinite = (~torch.isfinite(logits)).any(-1)
        wrong += ((logits.argmax(-1) != yy) | nonfinite).float().sum(0)
        bad += nonfinite.sum(0)
        n += B
    model.train(was_training)
    return Evaluation((loss / n).tolist(), (100.0 * wrong / n).tolist(), bad.tolist(), n)


def evaluate_model(model: torch.nn.Module, loader: Any, members: int, device: torch.device,
                   amp: torch.dtype | None = None) -> tuple[list[float], list[float]]:
    """Per member: (mean loss, error %) over a loader that yields single-member batches (`evaluate_outputs`)."""
    ev = evaluate_outputs(model, loader, members, device, amp)
    return ev.loss, ev.error


class FastPath:
    """The step and the evaluation of G fused members on the configured path, with the guard and the fallbacks.

    ``model`` is built and on the device (in its memory format); ``fast`` is what `resolve_fast` chose (and
    ``fast_fallback`` why it is already slower than asked, if it is). ``say`` shows a phase the user would otherwise
    wait through in silence."""

    def __init__(self, ref: RunConfig, member_models: list[ModelConfig], model: ResNet, *, device: torch.device,
                 graphs: GraphBackend | None, fast: str, fast_fallback: str | None, amp: torch.dtype | None,
                 dtype: torch.dtype, channels_last: bool, eval_loaders: dict[str, Any], steps_per_epoch: int,
                 reset_steps: set[int], say: Callable[[str], None]) -> None:
        self.ref, self.member_models, self.G = ref, member_models, len(member_models)
        self.device, self.graphs, self.cuda_like = device, graphs, graphs is not None
        self.fast, self.fast_fallback = fast, fast_fallback
        self.amp, self.dtype, self.channels_last = amp, dtype, channels_last
        self.acc = torch.promote_types(dtype, torch.float32)  # logits, losses: fp32 (fp64 in an fp64 run)
        self.eval_loaders, self.spe, self.reset_steps, self._say = eval_loaders, steps_per_epoch, reset_steps, say
        self.model = model
        if self.fast == "compile" and graphs is None:  # with a graph backend, compiled under the graph (_capture)
            configure_cpu_compiler()
            compile_draws_as_eager()
            self.model = torch.compile(self.model)
        self.compile_s = 0.0  # seconds the first compiled calls took (the inductor build, and the calls themselves)
        self._compiled_ok = False  # torch.compile builds at the first step (and first evaluation): see train_step
        self._compiled_evals: set[str] = set()  # splits whose first compiled evaluation ran
        self._guarded = False  # the first step ran under the fast-path guard (fast_guard)
        self._guarded_evals: set[str] = set()  # splits whose first evaluation the guard checked
        self.guard_s = 0.0  # seconds the guard's reference steps took
        self.precision_change: dict[str, Any] | None = None   # the guard left autocast (`_slower`): from, to, why
        self.paths: list[dict[str, Any]] = []  # the path each part of the run ran on (`note_path`), in its record

        self.lr = torch.tensor(lr_at(ref.schedule, ref.optim.lr, 0, self.spe), device=device)
        cycled = momentum_at(ref.schedule, 0, self.spe) is not None
        self.beta1 = (torch.zeros((), device=device)
                      if cycled and ref.optim.name != "sgd" and device.type == "cuda" else None)
        self.opt = self._optimizer()
        self.probe = GradProbe(self.model_for_state()) if ref.probes else None  # its names, not _orig_mod.*
        G = self.G
        self.alive = torch.ones(G, dtype=torch.bool, device=device)
        self.first_bad = torch.full((G,), -1, dtype=torch.long, device=device)
        self.step_t = torch.zeros((), dtype=torch.long, device=device)
        self.win_loss = torch.zeros(G, device=device, dtype=self.acc)
        self.win_err = torch.zeros(G, device=device, dtype=self.acc)
        self.win_count = 0
        self._freeze_index: dict[int, torch.Tensor] = {}
        self._state = [t for t in self.model.state_dict().values() if t.dim() > 0]
        self._snapshot = [t.clone() for t in self._state] if G > 1 else []
        self._graph: Replayable | None = None

    # -- what runs ----------------------------------------------------------------------------------------------
    def model_for_state(self) -> ResNet:
        """The model itself (under torch.compile, the module it wraps): its names, weights and checkpoints."""
        return getattr(self.model, "_orig_mod", self.model)

    def path_name(self) -> str:
        """The path a step runs on, as a user reads it: e.g. `compile, bf16, channels_last, 4 fused members`."""
        parts = [self.fast, precision_name(self.amp, self.dtype)] + (["channels_last"] if self.channels_last else [])
        return ", ".join(parts + ([f"{self.G} fused members"] if self.G > 1 else []))

    def ran_compiled(self) -> bool:
        """Whether the steps ran compiled: fast is compile and the compiled step (or the graph over it) ran."""
        return self.fast == "compile" and (self._compiled_ok or self._graph is not None)

    def checked(self) -> bool:
        """Whether the guard checked this run's path (it does not check the eager reference against itself)."""
        return self._guarded and not self._is_reference()

    def synchronize(self) -> None:
        """Wait for the device's queued work (a graph backend's device; nothing to wait for elsewhere)."""
        if self.graphs is not None:
            self.graphs.synchronize()

    # -- the optimizer and its schedule -------------------------------------------------------------------------
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

    def set_lr(self, step: int) -> None:
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

    def train_in_eval_mode(self) -> None:
        """`bn_mode: eval_after_first_eval`: the steps from now on run with the model in eval mode (BatchNorm uses its
        running statistics and stops updating them). A captured graph or a compiled step holds train-mode BatchNorm,
        so the path is built again, and its next step is checked by the guard against an eager eval-mode step."""
        self.model.eval()
        self._build_again()
        self._say("bn_mode eval_after_first_eval: training goes on with BatchNorm in eval mode (running statistics "
                  "used, not updated)")

    # -- the step -----------------------------------------------------------------------------------------------
    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One training step on the configured path, counted in the log window; the first one runs under the
        fast-path guard."""
        if not self._guarded:
            first = int(self.step_t) + 1
            self._guarded_step(x, y)
            self._guarded = True
            self.note_path(first)
        else:
            self._fast_step(x, y)
        self.win_count += 1

    def note_path(self, first: int) -> None:
        """Record in ``paths`` that the steps from ``first`` (1-based) on run on the current path, as
        ``{"from_step", "path"}``; what it held from ``first`` on is replaced (steps trained again: a replay, a
        resume)."""
        kept = [p for p in self.paths if p["from_step"] < first]
        if not kept or kept[-1]["path"] != self.path_name():
            kept.append({"from_step": first, "path": self.path_name()})
        self.paths = kept

    def read_window(self) -> tuple[list[float], list[float], list[dict] | None, list[dict] | None]:
        """Per member, over the steps since the last read: (mean loss, mean error %, probe norms, weight norms);
        the window starts again."""
        count = max(self.win_count, 1)
        loss = (self.win_loss / count).tolist()
        err = (100.0 * self.win_err / count).tolist()
        self.win_loss.zero_()
        self.win_err.zero_()
        probes = self.probe.read_and_reset(self.win_count) if self.probe is not None else None
        weights = self.probe.weight_norms() if self.probe is not None else None
        self.win_count = 0
        return loss, err, probes, weights

    def window_of(self, g: int) -> dict[str, Any]:
        """Member g's log window so far (sums since the last read, and their count), for a checkpoint taken between
        two logs: a run resumed from it logs what the uninterrupted run logs."""
        window: dict[str, Any] = {"count": self.win_count, "loss": self.win_loss[g].cpu().clone(),
                                  "err": self.win_err[g].cpu().clone()}
        if self.probe is not None:
            window.update(probe_sum=self.probe.sum[:, g].cpu().clone(), probe_max=self.probe.max[:, g].cpu().clone())
        return window

    def restore_window(self, g: int, window: dict[str, Any]) -> None:
        """Put member g's log window back (in place: a captured graph adds to these very tensors)."""
        self.win_count = int(window["count"])
        self.win_loss[g].copy_(window["loss"])
        self.win_err[g].copy_(window["err"])
        if self.probe is not None and "probe_sum" in window:
            self.probe.sum[:, g].copy_(window["probe_sum"])
            self.probe.max[:, g].copy_(window["probe_max"])

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
            self._first_compiled(lambda: self._step(x, y), self.save_state())
            self._compiled_ok = True
        else:
            self._step(x, y)

    # -- building the path: a CUDA graph, torch.compile ---------------------------------------------------------
    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Capture the whole step in a graph, after warm-up iterations; leaves every piece of training state (weights,
        BN statistics, optimizer state and step counters, divergence and window counters, probe sums, the torch
        generators) exactly as it found it, whether the capture succeeds or fails (so a resumed run goes on from its
        loaded state, and the first replay draws what an eager step would)."""
        graphs = self.graphs
        assert graphs is not None
        saved, drawn = self.save_state(), rng_state(self.device)
        try:
            if self.fast == "compile":
                compile_draws_as_eager()
                self.model = graphs.compile(self.model)
            self.static_x, self.static_y = x.clone(), y.clone()
            step = self._static_step
            graphs.warmup(step, 3)
            self.restore_state(saved)
            self._graph = graphs.capture(step, self._host_inputs)
        except BaseException:
            self._graph = None
            self.model = self.model_for_state()
            raise
        finally:
            self.restore_state(saved)  # a capture records the step (the stand-in also runs it): keep state exact
            set_rng_state(self.device, drawn)

    def _static_step(self) -> None:
        self._step(self.static_x, self.static_y)

    def _eager_after(self, e: Exception, failure: str, warning: str, without: str) -> None:
        """After a fast path failed to build (`e`): `fast: auto` warns and goes on eagerly (recorded as
        `fast_fallback`); an explicit `fast: graph | compile` stops with a one-line GraphCaptureError naming the
        cause."""
        reason = first_line(e)
        if self.ref.fast != "auto":
            raise GraphCaptureError(f"fast={self.fast}: {failure} ({reason}); set fast: eager (or auto) to run "
                                    f"without {without}") from e
        warnings.warn(f"{warning} ({reason}); fast: auto goes on eagerly from the same state")
        self.fast, self.fast_fallback = "eager", reason

    def _first_compiled(self, run: Any, saved: State | None) -> Any:
        """Run the first call of the torch.compile'd model (the step, or an evaluation), where inductor builds its
        kernels. If the build fails, `fast: auto` puts back the state `saved` before the call (none for an
        evaluation) and the torch generators, and runs it eagerly; see `_eager_after`. Says that it builds, and how
        long the build took."""
        what = "the training step" if saved is not None else "an evaluation"
        drawn = rng_state(self.device)
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
                self.restore_state(saved)
            set_rng_state(self.device, drawn)
            self.model = self.model_for_state()
            return run()

    # -- the training state, saved and put back -----------------------------------------------------------------
    def _mutable_state(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Every tensor a training step changes in place: (the model's and the step's counters, the optimizer's)."""
        fixed = list(self.model_for_state().state_dict(keep_vars=True).values())  # the tensors themselves
        fixed += [self.alive, self.first_bad, self.step_t, self.win_loss, self.win_err]
        if self.probe is not None:
            fixed += [self.probe.sum, self.probe.max]
        return fixed, [v for state in self.opt.state.values() for v in state.values() if torch.is_tensor(v)]

    def save_state(self) -> State:
        """A copy of every tensor a training step changes, for `restore_state`."""
        fixed, opt_state = self._mutable_state()
        return [(t, t.detach().clone()) for t in fixed + opt_state]

    def restore_state(self, saved: State) -> None:
        """Put back every saved tensor in place; zero the optimizer-state tensors created since (slots made by the
        warm-up: zero momentum / moments / step are what a fresh slot's first update starts from)."""
        known = {id(t) for t, _ in saved}
        with torch.no_grad():
            for t, value in saved:
                t.copy_(value)
            for t in self._mutable_state()[1]:
                if id(t) not in known:
                    t.zero_()

    def to_full_precision(self) -> None:
        """Leave autocast: the next step and evaluations run in the weights' dtype, built and checked by the guard
        anew (a captured graph and a compiled model hold the old dtype)."""
        self.amp, self.win_count = None, 0
        self._build_again()
        self._guarded_evals.clear()
        self._compiled_evals.clear()

    def _build_again(self) -> None:
        """Drop what the path built for the old BatchNorm mode or autocast dtype: the next step captures (and
        compiles) again, or builds its compiled kernels again under `_first_compiled` (which falls back under
        `fast: auto`), and the guard checks it."""
        if self.graphs is not None:
            self._graph, self.model = None, self.model_for_state()  # recaptured (and recompiled) at the next step
        self._compiled_ok, self._guarded = False, False

    # -- the fast-path guard ------------------------------------------------------------------------------------
    def _is_reference(self) -> bool:
        """Whether this run's step is the eager reference itself: one member, eager, full precision, NCHW."""
        return self.G == 1 and self.fast == "eager" and self.amp is None and not self.channels_last

    def _solo(self, g: int) -> ResNet:
        """Member g as an eager solo model (NCHW, the run's weights dtype) holding the member's current state."""
        with torch.random.fork_rng(devices=[]):  # its throwaway init must not move the run's RNG
            model = build_model(self.member_models[g])
        model = model.to(device=self.device, dtype=self.dtype)
        model.load_state_dict(member_state_dict(self.model_for_state(), g))
        return model.train(self.model_for_state().training)

    def _alive(self) -> list[int]:
        """The members still training: a stopped or diverged one takes no step (its loss is masked out)."""
        return [g for g, alive in enumerate(self.alive.tolist()) if alive]

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
        state, batch and random draws (`fast_guard.compare`), for the members still training (the step is checked
        again after a BatchNorm mode switch or a precision change); on disagreement the state and the torch
        generators are put back and the step runs again one path slower (`_slower`), until a path agrees."""
        if self._is_reference():
            return self._fast_step(x, y)
        drawn = rng_state(self.device)  # the reference and every try draw what the step draws (a random part's)
        ref = self._reference(x, y, evaluate=False)
        while True:
            set_rng_state(self.device, drawn)
            if self._is_reference():
                return self._fast_step(x, y)
            saved = self.save_state()
            before = self.win_loss.clone()
            self._fast_step(x, y)
            problem = fast_guard.compare(self._member_grads(self.win_loss - before), ref, members=self._alive(),
                                         autocast=self.amp is not None)
            if problem is None:
                return
            self.restore_state(saved)
            step = int(self.step_t) + 1
            self._slower(problem, "its first step" if step == 1 else f"its step {step}", at_step=step)

    def _fast_eval_outputs(self, x: torch.Tensor, y: torch.Tensor) -> list[fast_guard.Outputs]:
        was = self.model.training
        self.model.eval()
        with torch.no_grad(), autocast(self.device, self.amp):
            out = self.model(x.to(self.dtype).repeat(1, self.G, 1, 1))
        self.model.train(was)
        logits = out.to(self.acc).view(x.shape[0], self.G, -1)
        return [fast_guard.Outputs(float(F.cross_entropy(logits[:, g], y)), {"logits": logits[:, g]})
                for g in range(self.G)]

    def _guard_eval(self, split: str, active: Sequence[int]) -> None:
        """The first evaluation of a split: its first batch's logits checked against the eager reference, for the
        members in ``active``. The run's RNG is left as it was (a DataLoader's iterator draws its seed from it)."""
        if self._is_reference() or not active:
            return
        with torch.random.fork_rng(devices=[]):
            self._guard_eval_batch(split, active)

    def _guard_eval_batch(self, split: str, active: Sequence[int]) -> None:
        x, y = next(iter(self.eval_loaders[split]))
        x, y = x[:GUARD_EVAL_IMAGES], y[:GUARD_EVAL_IMAGES]
        B = x.shape[0]
        ref = self._reference(x.repeat(1, self.G, 1, 1), y.view(B, 1).expand(B, self.G), evaluate=True)
        while not self._is_reference():
            compiled_first = self.fast == "compile" and self.graphs is None and split not in self._compiled_evals
            run = lambda: self._fast_eval_outputs(x, y)  # noqa: E731
            outputs = self._first_compiled(run, None) if compiled_first else run()
            self._compiled_evals.add(split)
            problem = fast_guard.compare(outputs, ref, what="logits", members=list(active),
                                         autocast=self.amp is not None)
            if problem is None:
                return
            self._slower(problem, f"its first {split} evaluation", at_step=int(self.step_t))

    def _slower(self, problem: str, when: str, *, at_step: int) -> None:
        """After the guard found ``problem`` at step ``at_step``: go one path slower (compile/graph → eager,
        channels_last → NCHW, autocast → full precision), where the user left the choice to auto; an explicit
        choice stops with a one-line FastPathMismatch. Recorded as `fast_fallback`; leaving autocast also as
        ``precision_change`` (the run's config still resolved to the autocast precision, as after a replay)."""
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
            was = precision_name(self.amp, self.dtype)
            self.amp = None
            now = precision_name(self.amp, self.dtype)
            self.precision_change = {"at_step": at_step, "from": was, "to": now,
                                     "reason": f"the fast-path guard: {why}; went on in {now} (precision: auto)"}
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

    # -- evaluation ---------------------------------------------------------------------------------------------
    def evaluate(self, split: str, active: Sequence[int]) -> tuple[list[float], list[float]]:
        """Per member: (mean loss, error %) on ``split``. Its first evaluation is checked by the guard for the
        members in ``active`` (and built, if compiled)."""
        if split not in self._guarded_evals:
            self._guard_eval(split, active)
            self._guarded_evals.add(split)
            self.note_path(int(self.step_t) + 1)   # the guard may have left the path: the next steps run slower

        def run() -> tuple[list[float], list[float]]:
            return evaluate_model(self.model, self.eval_loaders[split], self.G, self.device, self.amp)

        if self.fast == "compile" and self.graphs is None and split not in self._compiled_evals:
            out = self._first_compiled(run, None)  # evaluation changes no state: nothing to put back
            self._compiled_evals.add(split)
            return out
        return run()

    def close(self) -> None:
        """Drop the graph, model and optimizer now (the graph's step refers back to this object, a cycle the
        collector would free only later). Unusable afterwards."""
        self.__dict__.clear()
