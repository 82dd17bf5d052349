"""Learning-rate (and one-cycle momentum) schedules as pure functions of the iteration, so the engine can fill a
device tensor each step (which a captured CUDA graph reads) and resume at any step without replaying a scheduler.

`total` is how long training runs; `length` is how long the schedule's shape is laid out over (default: `total`).
A program that builds its scheduler for 150 epochs and stops after 60 (seed 003) is `length: 150, total: 60`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .effect import Unread, own_keys_unread
from .errors import ConfigError
from .values import check_fields, check_range, is_number

SCHEDULES = ("constant", "multistep", "step", "cosine", "onecycle")
UNITS = ("iter", "epoch")
# keys that shape one kind of schedule only: on another, they are not read
OWN_KEYS = {"milestones": ("multistep",), "gamma": ("multistep", "step"), "step_size": ("step",),
            "reset_optimizer": ("multistep", "step"), "min_lr": ("cosine",), "length": ("cosine", "onecycle"),
            **{k: ("onecycle",) for k in ("pct_start", "div_factor", "final_div_factor", "cycle_momentum",
                                          "base_momentum", "max_momentum")}}


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
    cycle_momentum: bool = False     # onecycle: cycle momentum inversely to the lr, as OneCycleLR (whose default is true)
    base_momentum: float = 0.85      # onecycle: momentum at the lr peak (SGD momentum, or Adam's beta1)
    max_momentum: float = 0.95       # onecycle: momentum at the start and the end of the cycle
    length: float | None = None      # the schedule's own length (cosine period, one-cycle total_steps); None: total
    reset_optimizer: bool = False    # multistep/step: zero the optimizer's state at each milestone (a rebuilt optimizer)

    def validate(self) -> None:
        check_fields(self, "schedule.", choices={"name": SCHEDULES, "unit": UNITS})
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
        for key in ("cycle_momentum", "reset_optimizer"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"schedule.{key} must be true or false, got {getattr(self, key)!r}")
        for key in ("base_momentum", "max_momentum"):
            value = getattr(self, key)
            if not is_number(value, finite=False) or not 0 <= value < 1:
                raise ConfigError(f"schedule.{key} must be a number in [0, 1), got {value!r}")
        self._check_milestones()
        if self.length is not None:
            if not is_number(self.length, finite=False) or self.length <= 0:
                raise ConfigError(f"schedule.length must be a positive number or null, got {self.length!r}")
            if self.name == "onecycle" and self.length < self.total:
                raise ConfigError(f"schedule.length {self.length!r} must be >= schedule.total {self.total!r} for "
                                  "onecycle (OneCycleLR cannot step past its total_steps)")

    def unread(self) -> dict[str, Unread]:
        """The keys this schedule does not read (key → why): another kind's keys, the warm-up lr without a warm-up,
        the one-cycle momenta when the momentum does not cycle, a multistep's factor without milestones."""
        out = own_keys_unread(self, "name", OWN_KEYS, "schedule.")
        if not self.warmup:
            out["warmup_lr"] = Unread("schedule.warmup above 0, got 0", "it is held during the warm-up")
        if self.name == "multistep" and not self.milestones:
            out.update({key: Unread("schedule.milestones for multistep, got none", "the lr never steps")
                        for key in ("gamma", "reset_optimizer")})
        if self.name == "onecycle" and not self.cycle_momentum:
            out.update({key: Unread("schedule.cycle_momentum true, got false") for key in ("base_momentum",
                                                                                          "max_momentum")})
        return out

    def _check_milestones(self) -> None:
        """In order, and each before the end of training (a later one would never take effect)."""
        if list(self.milestones) != sorted(self.milestones):
            raise ConfigError(f"schedule.milestones must be in increasing order, got {self.milestones!r}")
        past = [m for m in self.milestones if m >= self.total]
        if past:
            raise ConfigError(f"schedule.milestones {past!r} are at or past the end of training (schedule.total "
                              f"{self.total!r} {self.unit}s): they would never take effect")

    @property
    def span(self) -> float:
        """The schedule's own length, in its unit: `length`, else `total`."""
        return self.total if self.length is None else self.length


def cycles_momentum(cfg: ScheduleConfig) -> bool:
    """Whether the schedule writes the momentum every step (one-cycle with ``cycle_momentum``)."""
    return cfg.name == "onecycle" and cfg.cycle_momentum


def total_steps(cfg: ScheduleConfig, steps_per_epoch: int) -> int:
    return max(1, round(cfg.total * (steps_per_epoch if cfg.unit == "epoch" else 1)))


def lr_at(cfg: ScheduleConfig, base_lr: float, step: int, steps_per_epoch: int) -> float:
    """The learning rate for iteration ``step`` (0-based); ``steps_per_epoch`` converts epoch units to iterations.

    onecycle is torch.optim.lr_scheduler.OneCycleLR (cos, two phases) with max_lr = ``base_lr`` and total_steps =
    ``cfg.span`` iterations: the lr the optimizer uses at its step ``step`` is the scheduler's after ``step`` calls.
    """
    scale = steps_per_epoch if cfg.unit == "epoch" else 1
    t = step / scale  # position in the schedule's own unit
    total = cfg.span
    if cfg.warmup and t < cfg.warmup:
        if cfg.warmup_lr is not None:
            return cfg.warmup_lr
        return base_lr * (step + 1) / (cfg.warmup * scale)
    if cfg.name == "constant":
        return base_lr
    if cfg.name in ("multistep", "step"):
        return base_lr * cfg.gamma ** _decays(cfg, t)
    if cfg.name == "cosine":
        start = cfg.warmup
        frac = min(1.0, (t - start) / max(total - start, 1e-12))
        return cfg.min_lr + (base_lr - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * frac))
    initial = base_lr / cfg.div_factor
    final = initial / cfg.final_div_factor
    rising, pct = _onecycle_phase(cfg, step, scale)
    return _cos(initial, base_lr, pct) if rising else _cos(base_lr, final, pct)


def momentum_at(cfg: ScheduleConfig, step: int, steps_per_epoch: int) -> float | None:
    """One-cycle momentum for iteration ``step``, as OneCycleLR(cycle_momentum=True) sets it: max_momentum →
    base_momentum while the lr rises, back to max_momentum while it falls; None when the schedule does not cycle
    momentum (the optimizer keeps optim.momentum / optim.betas).

    OneCycleLR writes it into SGD's ``momentum`` (even for an SGD built without momentum, which thereby gets one) or
    into Adam's ``betas[0]``; the engine does the same.
    """
    if not cycles_momentum(cfg):
        return None
    rising, pct = _onecycle_phase(cfg, step, steps_per_epoch if cfg.unit == "epoch" else 1)
    if rising:
        return _cos(cfg.max_momentum, cfg.base_momentum, pct)
    return _cos(cfg.base_momentum, cfg.max_momentum, pct)


def _onecycle_phase(cfg: ScheduleConfig, step: int, scale: int) -> tuple[bool, float]:
    """(rising?, fraction of the phase done) at iteration ``step``: OneCycleLR's two phases, which end at
    pct_start·total_steps − 1 and total_steps − 1."""
    steps = cfg.span * scale
    peak = cfg.pct_start * steps - 1
    if step <= peak:
        return True, step / max(peak, 1e-12)
    return False, (step - peak) / max(steps - 1 - peak, 1e-12)


def milestone_steps(cfg: ScheduleConfig, steps_per_epoch: int) -> list[int]:
    """The iterations (0-based, within training) at which a multistep or step schedule changes the lr: the first
    step run at the new lr. Empty for the other schedules."""
    if cfg.name not in ("multistep", "step"):
        return []
    scale = steps_per_epoch if cfg.unit == "epoch" else 1
    n = total_steps(cfg, steps_per_epoch)
    if cfg.name == "multistep":
        points = [m * scale for m in cfg.milestones]
    else:
        points = [k * cfg.step_size * scale for k in range(1, int(cfg.total / cfg.step_size) + 2)]
    out = set()
    for p in points:  # the exact first step past each point, as lr_at decides it (no float-rounding drift)
        for c in range(max(1, math.floor(p) - 1), math.floor(p) + 3):
            if c < n and _decays(cfg, c / scale) > _decays(cfg, (c - 1) / scale):
                out.add(c)
    return sorted(out)


def _decays(cfg: ScheduleConfig, t: float) -> int:
    """How many times a multistep or step schedule has multiplied the lr by gamma at position t (schedule units)."""
    if cfg.name == "multistep":
        return sum(t >= m for m in cfg.milestones)
    return math.floor(t / cfg.step_size)


def _cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * min(pct, 1.0)) + 1)
