"""The training engine: `train(config)` for one run, `train_members(configs)` for G fused runs (DESIGN §4).

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
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from . import checkpoint as ckpt
from .config import ModelConfig
from .data import build_loaders, load_dataset
from .devices import autocast, autocast_dtype, param_dtype, resolve_device
from .errors import ConfigError
from .fusion import MASKED_KEYS, MEMBER_KEYS, fusable_view
from .model import ResNet, build_model, count_params
from .probes import GradProbe
from .record import RunRecord, read_metrics
from .run_config import RunConfig
from .schedules import lr_at, total_steps



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
    best_test: float = math.inf
    last: dict[str, float] = field(default_factory=dict)
    resolved: dict[str, Any] = field(default_factory=dict)  # the config as written to config.yaml
    train_errors: list[tuple[int, float]] = field(default_factory=list)  # (step, logged train error), in order
    final: dict[str, Any] | None = None  # the summary written when the member finished


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
    return _Trainer(cfgs, [Path(d) for d in run_dirs], callbacks).run(resume)


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


class _Trainer:
    def __init__(self, cfgs: list[RunConfig], run_dirs: list[Path], callbacks: Sequence[Any]) -> None:
        self.cfgs, self.callbacks = cfgs, list(callbacks)
        ref = self.ref = cfgs[0]
        self.G = len(cfgs)
        self.device = resolve_device(ref.device)
        self.amp = autocast_dtype(ref.precision, self.device)
        self.dtype = param_dtype(ref.precision)
        self.acc = torch.promote_types(self.dtype, torch.float32)  # logits, losses: fp32 (fp64 in an fp64 run)
        self.data = load_dataset(ref.data)
        self.member_models = [dataclasses.replace(c.model, in_channels=self.data.in_channels,
                                                  num_classes=self.data.num_classes) for c in cfgs]
        model_cfg = self.model_cfg = self.member_models[0]
        self.members = [_Member(c, RunRecord(d)) for c, d in zip(cfgs, run_dirs)]
        for m, c, mc in zip(self.members, cfgs, self.member_models):
            m.resolved = c.to_dict()
            m.resolved["model"] = mc.resolved().to_dict()
            m.record.write_config(m.resolved)

        fast = ref.fast if ref.fast != "auto" else ("graph" if self.device.type == "cuda" else "eager")
        if fast in ("graph", "compile") and self.device.type != "cuda":
            warnings.warn(f"fast={fast} needs CUDA; running eagerly on {self.device.type}")
            fast = "eager"
        self.fast = fast
        self.channels_last = ref.channels_last and self.device.type == "cuda"
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format

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

        self.lr = torch.tensor(lr_at(ref.schedule, ref.optim.lr, 0, self.spe), device=self.device)
        self.opt = self._optimizer()
        self.probe = GradProbe(self.model) if ref.probes else None
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
        self._graph: torch.cuda.CUDAGraph | None = None
        self._step_fn: Callable[[torch.Tensor, torch.Tensor], None] = self._step

    # -- setup ------------------------------------------------------------------------------------------------
    def _optimizer(self) -> torch.optim.Optimizer:
        o = self.ref.optim
        params = list(self.model.parameters())
        on_cuda = self.device.type == "cuda"
        lr: Any = self.lr if on_cuda else float(self.lr)
        if o.name == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=o.momentum, nesterov=o.nesterov,
                                   weight_decay=o.weight_decay, fused=on_cuda or None)
        cls = torch.optim.Adam if o.name == "adam" else torch.optim.AdamW
        return cls(params, lr=lr, betas=tuple(o.betas), weight_decay=o.weight_decay, capturable=on_cuda)

    def _set_lr(self, step: int) -> None:
        value = lr_at(self.ref.schedule, self.ref.optim.lr, step, self.spe)
        if self.device.type == "cuda":
            self.lr.fill_(value)
        else:
            self.lr = torch.tensor(value)
            for group in self.opt.param_groups:
                group["lr"] = value

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
        """Capture the whole step in a CUDA graph (after warm-up iterations whose effects are undone)."""
        if self.fast == "compile":
            self.model = torch.compile(self.model, mode="max-autotune-no-cudagraphs")
        self.static_x, self.static_y = x.clone(), y.clone()
        saved = {k: v.clone() for k, v in self.model.state_dict().items()}
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                self._step(self.static_x, self.static_y)
        torch.cuda.current_stream().wait_stream(stream)
        self._reset_after_warmup(saved)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._step(self.static_x, self.static_y)
        self._reset_after_warmup(saved)  # capture records the step but also ran nothing; keep state exact
        self._graph = graph

    def _reset_after_warmup(self, saved: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for k, v in self.model.state_dict().items():
                v.copy_(saved[k])
            for state in self.opt.state.values():
                for v in state.values():
                    if torch.is_tensor(v):
                        v.zero_()
            for t in (self.win_loss, self.win_err, self.step_t):
                t.zero_()
            self.first_bad.fill_(-1)
            self.alive.fill_(True)
            if self.probe is not None:
                self.probe.sum.zero_()
                self.probe.max.zero_()

    def _run_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if self.fast in ("graph", "compile") and self._graph is None:
            try:
                self._capture(x, y)
            except Exception as e:  # noqa: BLE001 - any capture failure falls back to the eager path
                warnings.warn(f"CUDA graph capture failed ({type(e).__name__}: {e}); running eagerly")
                self.fast = "eager"
        if self._graph is not None:
            self.static_x.copy_(x)
            self.static_y.copy_(y)
            self._graph.replay()
        else:
            self._step(x, y)

    # -- evaluation -------------------------------------------------------------------------------------------
    def evaluate(self, split: str) -> tuple[list[float], list[float]]:
        return evaluate_model(self.model, self.eval_loaders[split], self.G, self.device, self.amp)

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
            improved = False
            if "val" in results:
                improved = results["val"][1][g] < m.best_val
                m.best_val = min(m.best_val, results["val"][1][g])
            m.best_test = min(m.best_test, results["test"][1][g])
            if "val" not in results:
                improved = m.best_test == results["test"][1][g]
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

    def _member_ckpt(self, g: int, step: int) -> dict[str, Any]:
        m = self.members[g]
        return ckpt.member_checkpoint(self.model_for_state(), self.opt, g, step=step, best_val=m.best_val,
                                      best_test=m.best_test, model_config=self.member_models[g].to_dict())

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
            "final_test_error": fin(m.last.get("test_error")), "best_test_error": fin(m.best_test),
            "final_val_error": fin(m.last.get("val_error")), "best_val_error": fin(m.best_val),
            "final_train_error": fin(self._final_train_error(g)), "final_train_loss": fin(m.last.get("train_loss")),
            "wall_time_s": self.wall_time, "img_per_s": self.img_per_s, "diverged_at": m.diverged_at,
            "device": str(self.device), "fused_members": self.G, "fast_path": self.fast,
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
        states = [ckpt.load(p) for p in paths]
        steps = {s["step"] for s in states}
        if len(steps) != 1:
            raise ConfigError(f"cannot resume fused members from different steps {sorted(steps)}")
        step = steps.pop()
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
        return step

    # -- the loop ---------------------------------------------------------------------------------------------
    def run(self, resume: bool) -> list[RunResult]:
        self.wall_time, self.img_per_s = 0.0, 0.0
        start = self._resume() if resume else 0
        for g, m in enumerate(self.members):
            m.record.write_summary(self._summary(g, start))
            _emit(self.callbacks, "on_start", g, m.resolved, m.record.dir)
        t0 = time.perf_counter()
        t_win, images_win, images_all = t0, 0, 0
        step = start
        try:
            while step < self.total and self._active():
                epoch, first = divmod(step, self.spe)
                for x, y in self.train_loader.epoch(epoch, start=first):
                    self._set_lr(step)
                    self._run_step(x, y)
                    step += 1
                    self.win_count += 1
                    images_win += x.shape[0]
                    if step % self.log_interval == 0 or step % self.eval_interval == 0 or step == self.total:
                        now = time.perf_counter()
                        if self.device.type == "cuda":
                            torch.cuda.synchronize(self.device)
                            now = time.perf_counter()
                        self._log(step, step / self.spe, now - t_win, images_win)
                        images_all += images_win
                        self.wall_time = now - t0
                        self.img_per_s = images_all / max(self.wall_time, 1e-9)
                        t_win, images_win = now, 0
                        if step % self.eval_interval == 0 or step == self.total:
                            self._eval(step, step / self.spe)
                    if step >= self.total or not self._active():
                        break
        except BaseException as e:
            status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
            for g in self._active():
                self.members[g].status, self.members[g].reason = status, f"{type(e).__name__}: {e}"
                self.members[g].record.write_summary(self._summary(g, step))
                _emit(self.callbacks, "on_end", g, self._summary(g, step))
            raise
        for g in self._active():
            self.members[g].status = "complete"
            self._finish(g, step)
        return [RunResult(m.status, m.reason, m.final or self._summary(g, step), m.record.dir)
                for g, m in enumerate(self.members)]
