"""Learning-rate schedules as pure functions of the iteration, so the engine can fill a device tensor each step
(which a captured CUDA graph reads) and resume at any step without replaying a scheduler."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .errors import choices_error, ConfigError
from .values import check_fields, check_range

SCHEDULES = ("constant", "multistep", "step", "cosine", "onecycle")
UNITS = ("iter", "epoch")


@dataclass
class ScheduleConfig:
    name: str = "multistep"          # constant | multistep | step | cosine | onecycle
    unit: str = "epoch"              # iter | epoch: the unit of total, milestones, step_size and warmup
    total: float = 10                # length of training
    milestones: list[float] = field(default_factory=list)  # multistep: lr ×gamma at each
    gamma: float = 0.1               # multistep / step factor
    step_size: float = 0             # step: lr ×gamma every step_size
    warmup: float = 0                # linear warm-up length (or constant warm-up with warmup_lr, He et al.'s 110)
    warmup_lr: float | None = None   # None: linear ramp from 0; a value: hold this lr during warm-up
    min_lr: float = 0.0              # cosine floor
    pct_start: float = 0.3           # onecycle: fraction of the run spent rising
    div_factor: float = 25.0         # onecycle: initial lr = lr / div_factor
    final_div_factor: float = 1e4    # onecycle: final lr = initial / final_div_factor

    def validate(self) -> None:
        check_fields(self, "schedule.")
        if self.name not in SCHEDULES:
            raise choices_error("schedule.name", self.name, SCHEDULES)
        if self.unit not in UNITS:
            raise choices_error("schedule.unit", self.unit, UNITS)
        if not self.total or self.total <= 0:
            raise ConfigError(f"schedule.total must be positive, got {self.total!r}")
        if self.name == "step" and self.step_size <= 0:
            raise ConfigError("schedule.step_size must be positive for the step schedule")
        check_range("schedule.gamma", self.gamma, low=0, low_open=True)
        check_range("schedule.step_size", self.step_size, low=0)
        check_range("schedule.warmup", self.warmup, low=0)
        check_range("schedule.warmup_lr", self.warmup_lr, low=0, low_open=True)
        check_range("schedule.min_lr", self.min_lr, low=0)
        check_range("schedule.pct_start", self.pct_start, low=0, high=1, low_open=True, high_open=True)
        check_range("schedule.div_factor", self.div_factor, low=0, low_open=True)
        check_range("schedule.final_div_factor", self.final_div_factor, low=0, low_open=True)
        for m in self.milestones:
            check_range("schedule.milestones", m, low=0, low_open=True)


def total_steps(cfg: ScheduleConfig, steps_per_epoch: int) -> int:
    return max(1, round(cfg.total * (steps_per_epoch if cfg.unit == "epoch" else 1)))


def lr_at(cfg: ScheduleConfig, base_lr: float, step: int, steps_per_epoch: int) -> float:
    """The learning rate for iteration ``step`` (0-based)."""
    scale = steps_per_epoch if cfg.unit == "epoch" else 1
    t = step / scale  # position in the schedule's own unit
    total = cfg.total
    if cfg.warmup and t < cfg.warmup:
        if cfg.warmup_lr is not None:
            return cfg.warmup_lr
        return base_lr * (step + 1) / (cfg.warmup * scale)
    if cfg.name == "constant":
        return base_lr
    if cfg.name == "multistep":
        return base_lr * cfg.gamma ** sum(t >= m for m in cfg.milestones)
    if cfg.name == "step":
        return base_lr * cfg.gamma ** math.floor(t / cfg.step_size)
    if cfg.name == "cosine":
        start = cfg.warmup
        frac = min(1.0, (t - start) / max(total - start, 1e-12))
        return cfg.min_lr + (base_lr - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * frac))
    # onecycle, as torch.optim.lr_scheduler.OneCycleLR (cosine annealing, two phases)
    steps = total * scale
    initial = base_lr / cfg.div_factor
    final = initial / cfg.final_div_factor
    peak = cfg.pct_start * steps - 1
    if step <= peak:
        return _cos(initial, base_lr, step / max(peak, 1e-12))
    return _cos(base_lr, final, (step - peak) / max(steps - 1 - peak, 1e-12))


def _cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * min(pct, 1.0)) + 1)
