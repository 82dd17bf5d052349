"""The grid's ``launcher:`` section: the Slurm settings every array task asks for, and their parsing.

A grid file names how its workers run (``launcher: {slurm: {...}}``); ``grid.parse_grid`` checks the section when
the file is loaded, and ``sweeps.launch.slurm`` submits with it (flags override the file: ``parse_launcher``).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from resnet_core.errors import ConfigError
from resnet_core.values import unless_null

LAUNCHERS = ("local", "slurm")
KEYS = ("partition", "time", "cpus_per_worker", "gpus_per_worker", "mem", "sbatch", "setup", "array_parallelism",
        "max_requeues", "signal_delay_s")
MEM = re.compile(r"^\d+[KMGT]?$")
SBATCH_KEY = re.compile(r"^[a-z][a-z0-9_-]*$")
# sbatch options the launcher sets itself (an extra option may not set them twice)
OWN_OPTIONS = ("array", "partition", "time", "cpus-per-task", "gpus-per-node", "mem", "signal", "output", "error",
               "job-name", "nodes", "ntasks-per-node", "open-mode", "wckey")


@dataclass
class SlurmConfig:
    """What every array task asks for. ``time_min``: minutes; ``mem``: sbatch syntax (``16G``)."""
    partition: str | None = None
    time_min: int = 60
    cpus_per_worker: int = 1
    gpus_per_worker: int = 0
    mem: str | None = None
    sbatch: dict[str, str | bool] = field(default_factory=dict)
    setup: list[str] = field(default_factory=list)
    array_parallelism: int | None = None
    max_requeues: int = 3
    signal_delay_s: int = 90

    def executor_parameters(self, job_name: str) -> dict[str, Any]:
        """``submitit.SlurmExecutor.update_parameters`` keywords."""
        p: dict[str, Any] = {"job_name": job_name, "time": self.time_min, "cpus_per_task": self.cpus_per_worker,
                             "ntasks_per_node": 1, "nodes": 1, "signal_delay_s": self.signal_delay_s}
        if self.partition:
            p["partition"] = self.partition
        if self.gpus_per_worker:
            p["gpus_per_node"] = self.gpus_per_worker
        if self.mem:
            p["mem"] = self.mem
        if self.setup:
            p["setup"] = list(self.setup)
        if self.sbatch:
            p["additional_parameters"] = dict(self.sbatch)
        if self.array_parallelism:
            p["array_parallelism"] = self.array_parallelism
        return p

    def describe(self) -> str:
        parts = [f"partition {self.partition}" if self.partition else "default partition",
                 f"{self.cpus_per_worker} CPU{'s' * (self.cpus_per_worker != 1)}",
                 f"{self.gpus_per_worker} GPU{'s' * (self.gpus_per_worker != 1)}",
                 f"mem {self.mem}" if self.mem else "default mem", f"time {fmt_time(self.time_min)}"]
        parts += [f"--{k}" if v is True else f"--{k}={v}" for k, v in self.sbatch.items()]
        return ", ".join(parts)


# -- parsing ----------------------------------------------------------------------------------------------------
def parse_time(value: Any, what: str = "launcher.slurm.time") -> int:
    """Minutes from an int (minutes) or Slurm's ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH:MM:SS``, ``D-HH``; at least
    1. ConfigError naming ``what`` otherwise."""
    if isinstance(value, bool) or value is None:
        raise ConfigError(f"{what}: {value!r} is not a time; give minutes (e.g. 90) or HH:MM:SS (e.g. 04:00:00)")
    if isinstance(value, int):
        minutes = value
    else:
        text, days = str(value).strip(), 0
        if "-" in text:
            d, text = text.split("-", 1)
            days = int(d) if d.isdigit() else -1
        parts = text.split(":")
        if days < 0 or len(parts) > 3 or not all(x.isdigit() for x in parts):
            raise ConfigError(f"{what}: {value!r} is not a time; give minutes (e.g. 90), HH:MM:SS or D-HH:MM:SS")
        nums = [int(x) for x in parts]
        if days or "-" in str(value):          # D-HH, D-HH:MM, D-HH:MM:SS
            h, m, s = (nums + [0, 0])[:3]
        elif len(nums) == 3:                   # HH:MM:SS
            h, m, s = nums
        elif len(nums) == 2:                   # MM:SS
            h, m, s = 0, nums[0], nums[1]
        else:                                  # MM
            h, m, s = 0, nums[0], 0
        minutes = days * 1440 + h * 60 + m + math.ceil(s / 60)
    if minutes < 1:
        raise ConfigError(f"{what}: must be at least 1 minute, got {value!r}")
    return minutes


def fmt_time(minutes: int) -> str:
    d, rest = divmod(minutes, 1440)
    return (f"{d}-" if d else "") + f"{rest // 60:02d}:{rest % 60:02d}:00"


def _int(value: Any, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            if isinstance(value, str) and value.strip().isdigit():
                value = int(value)
            else:
                raise ValueError
        except ValueError:
            raise ConfigError(f"{what}: expected an integer ≥ {low}, got {value!r}") from None
    if value < low:
        raise ConfigError(f"{what}: expected an integer ≥ {low}, got {value}")
    return value


def parse_sbatch_option(text: str) -> tuple[str, str | bool]:
    """``--sbatch KEY=VALUE`` (or a bare ``KEY`` for a flag such as ``exclusive``)."""
    key, eq, value = text.partition("=")
    return key.strip().lstrip("-"), (value.strip() if eq else True)


def _check_sbatch(options: Any, what: str) -> dict[str, str | bool]:
    if not isinstance(options, dict):
        raise ConfigError(f"{what}: expected a mapping of sbatch options (e.g. {{account: abc, qos: high}}), "
                          f"got {options!r}")
    out: dict[str, str | bool] = {}
    for key, value in options.items():
        k = str(key).replace("_", "-")
        if not SBATCH_KEY.match(str(key)):
            raise ConfigError(f"{what}: {key!r} is not an sbatch option name (e.g. account, qos, constraint)")
        if k in OWN_OPTIONS:
            raise ConfigError(f"{what}: {key!r} is set by the launcher; use the launcher keys "
                              f"({', '.join(KEYS[:5])}) instead")
        if value is True:
            out[k] = True
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value).strip():
            if "\n" in str(value):
                raise ConfigError(f"{what}.{key}: a value must be one line")
            out[k] = str(value)
        else:
            raise ConfigError(f"{what}.{key}: expected a string, a number or true, got {value!r}")
    return out


def parse_launcher(section: Any, flags: Mapping[str, Any] | None = None) -> SlurmConfig:
    """The Slurm settings from a grid's ``launcher:`` section (``{slurm: {...}}``) and the flags (``slurm_flags``;
    a flag wins). Unknown or bad keys are a ConfigError naming the key and the allowed ones."""
    section = unless_null(section, {})
    if not isinstance(section, dict):
        raise ConfigError(f"launcher must be a mapping like {{slurm: {{partition: gpu, time: 60}}}}, got {section!r}")
    for key in section:
        if key not in ("slurm",):
            raise ConfigError(f"launcher: unknown launcher {key!r}; allowed: slurm (the local launcher has no "
                              f"settings)")
    raw = unless_null(section.get("slurm"), {})
    if not isinstance(raw, dict):
        raise ConfigError(f"launcher.slurm must be a mapping with keys {', '.join(KEYS)}, got {raw!r}")
    for key in raw:
        if key not in KEYS:
            raise ConfigError(f"launcher.slurm: unknown key {key!r}; allowed: {', '.join(KEYS)}")
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    merged = {**raw, **{k: v for k, v in flags.items() if k != "sbatch"}}

    def name(key: str) -> str:  # where a value came from, for the error message
        return f"--{key.replace('_', '-')}" if key in flags else f"launcher.slurm.{key}"

    cfg = SlurmConfig()
    cfg.sbatch = {**_check_sbatch(unless_null(raw.get("sbatch"), {}), "launcher.slurm.sbatch"),
                  **_check_sbatch(flags.get("sbatch") or {}, "--sbatch")}
    if "partition" in merged:
        p = merged["partition"]
        if not isinstance(p, str) or not re.match(r"^[\w.,-]+$", p):
            raise ConfigError(f"{name('partition')}: expected a partition name, got {p!r}")
        cfg.partition = p
    if "time" in merged:
        cfg.time_min = parse_time(merged["time"], name("time"))
    if "cpus_per_worker" in merged:
        cfg.cpus_per_worker = _int(merged["cpus_per_worker"], name("cpus_per_worker"), 1)
    if "gpus_per_worker" in merged:
        cfg.gpus_per_worker = _int(merged["gpus_per_worker"], name("gpus_per_worker"), 0)
    if "mem" in merged:
        m = merged["mem"]
        text = str(m).strip().upper() if isinstance(m, (str, int)) and not isinstance(m, bool) else ""
        if not MEM.match(text):
            raise ConfigError(f"{name('mem')}: expected megabytes or a size like 16G or 500M, got {m!r}")
        cfg.mem = text
    if "setup" in merged:
        s = merged["setup"]
        lines = [s] if isinstance(s, str) else s
        if not isinstance(lines, list) or not all(isinstance(x, str) and "\n" not in x for x in lines):
            raise ConfigError(f"launcher.slurm.setup: expected a list of shell lines, got {s!r}")
        cfg.setup = list(lines)
    if "array_parallelism" in merged:
        cfg.array_parallelism = _int(merged["array_parallelism"], name("array_parallelism"), 1)
    if "max_requeues" in merged:
        cfg.max_requeues = _int(merged["max_requeues"], name("max_requeues"), 0)
    if "signal_delay_s" in merged:
        cfg.signal_delay_s = _int(merged["signal_delay_s"], name("signal_delay_s"), 1)
    if cfg.signal_delay_s >= cfg.time_min * 60:
        raise ConfigError(f"{name('time')}: {fmt_time(cfg.time_min)} leaves no time before the warning signal, sent "
                          f"{cfg.signal_delay_s} s before the limit (launcher.slurm.signal_delay_s)")
    return cfg
