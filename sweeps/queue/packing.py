"""Packing trials into fused runs (docs/fused_trials.md).

``--fuse auto|N|off`` sets how many trials a worker may train as one horizontally fused model. Trials can share a
fused run when their run configs are equal in everything but ``resnet_core.fusion.MEMBER_KEYS`` (name and seed: in
a grid, the seeds of one cell) and ``MASKED_KEYS`` (``model.shortcut`` none vs identity: the plain and residual
twins of one depth), and they start from the same point (fresh, or resuming from checkpoints at the same
step). ``auto`` is off on the CPU, MPS and NPU, and on CUDA takes the group size from a ``resnet-ablate bench
--members 1,2,4,8 --out FILE`` table (``--fuse-table``, default ``<root>/bench.json``) or the measured default.

Claiming a group keeps exactly-once: each member is taken by its own compare-and-set WAITING → RUNNING (see
``claim_group``), so two workers can split a cell's seeds between them, but no trial is ever taken twice.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from resnet_core.errors import ConfigError
from resnet_core.feasibility import any_user_parts, check_fusable
from resnet_core.fusion import auto_members, bench_model_name, fusion_key
from resnet_core.run_config import RunConfig

from ..spec.grid import GridSpec, Unit
from .liveness import dead_judge
from .optuna_adapter import trial_id
from .ran_as import CLAIM_KEY, claim_precisions
from .storage import StorageRef, claim_lock

def parse_fuse(text: str | int | None) -> str | int:
    """``auto`` | ``off`` (→ 1) | a member count ≥ 1."""
    if text is None or text == "auto":
        return "auto"
    if text == "off":
        return 1
    try:
        n = int(text)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(text).strip() != str(n):
        raise ConfigError(f"--fuse: expected auto, off or a number of members >= 1, got {text!r}")
    return n


def device_type(device: str) -> str:
    return device.split(":")[0]


@dataclass(frozen=True)
class Packing:
    """How many members a worker on ``device`` fuses for a run config."""
    fuse: str | int
    device: str
    table: Path | None = None
    search: bool = False

    def cap(self, cfg: dict[str, Any]) -> int:
        if self.search:  # search trials get their values from the sampler as they start: nothing to match
            return 1
        if self.fuse == "auto":
            return auto_members(device_type(self.device), bench_model_name(cfg.get("model") or {}), self.table)
        return int(self.fuse)

    @property
    def fuses(self) -> bool:
        """Whether any run config could get more than one member: not with ``--fuse 1``, ``auto`` off the GPU, or
        a search."""
        if self.search:
            return False
        return device_type(self.device) == "cuda" if self.fuse == "auto" else int(self.fuse) > 1

    def describe(self) -> str:
        if self.search:
            return "off (search trials are suggested as they start)"
        if self.fuse == "auto":
            if device_type(self.device) != "cuda":
                return f"auto: off on {device_type(self.device)}"
            src = f"from {self.table}" if self.table is not None and self.table.exists() else "measured default"
            return f"auto on cuda ({src})"
        return "off" if self.fuse == 1 else f"up to {self.fuse} members"


def default_table(root: str | Path, table: str | Path | None) -> Path | None:
    if table is not None:
        path = Path(table)
        if not path.exists():
            raise ConfigError(f"--fuse-table: no such file {path} (write one with resnet-ablate bench --members "
                              f"1,2,4,8 --out {path})")
        return path
    path = Path(root) / "bench.json"
    return path if path.exists() else None


# -- keys -------------------------------------------------------------------------------------------------------
def resume_step(run_dir: Path) -> int | None:
    """The step of ``run_dir/last.pt``, or None without one."""
    path = Path(run_dir) / "last.pt"
    if not path.exists():
        return None
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["step"])
    except Exception:  # noqa: BLE001 - a damaged checkpoint: let the run itself report it, alone
        return -1


def trial_key(spec: GridSpec, attrs: dict[str, Any], study_dir: Path,
              device: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(fusion key, run config, the run config with every default filled in) of a waiting trial: equal keys ⇔ the
    trials can train as one fused run."""
    cfg = spec.trial_config(attrs, device)
    full = resolved(cfg)
    key = fusion_key(full)
    if attrs.get("resume"):
        key += f"|resume@{resume_step(Path(study_dir) / attrs['run_dir'])}"
    return key, cfg, full


def claim_order(seeds: Sequence[Any], flops: Sequence[float | None]) -> list[int]:
    """The order (indices) in which workers take new trials, given in enqueue order with their seeds and planned
    FLOPs (``RunConfig.planned_flops``; None where unknown): seed by seed, as they are enqueued, so that a study
    stopped part-way holds every cell at the same number of seeds; within a seed the longest first, so that a
    round does not end waiting on its longest trial started last (the longest-processing-time rule). Ties, and
    trials of unknown length, keep their enqueue order."""
    rank: dict[Any, int] = {}
    for seed in seeds:
        rank.setdefault(seed, len(rank))
    return sorted(range(len(seeds)), key=lambda i: (rank[seeds[i]], -(flops[i] or 0.0)))


def _planned_flops(full: dict[str, Any]) -> float | None:
    """The planned FLOPs of a resolved run config (``RunConfig.planned_flops``), None where not known: they only
    order the claims."""
    try:
        return RunConfig.from_dict(full).planned_flops()
    except Exception:  # noqa: BLE001 - an unknown length never stops a claim
        return None


def resolved(cfg: dict[str, Any]) -> dict[str, Any]:
    """The run config with every default filled in, so that equal runs have equal keys however they were written."""
    return RunConfig.from_dict(cfg).to_dict()


def check_fusable_runs(spec: GridSpec, packing: Packing) -> None:
    """Refuse (one line, before anything is written) a ``--fuse N`` that cannot take effect (a `search` grid), and a
    grid whose trials this packing would fuse into a model that cannot be fused: a plugin part that is not
    member-aware in its tensors or its forward (`feasibility.check_fusable`)."""
    if packing.search and packing.fuse != "auto" and int(packing.fuse) > 1:
        raise ConfigError(f"--fuse {packing.fuse}: a grid with `search` runs unfused (each trial's values are "
                          f"suggested as it starts, so no two share a run config); drop --fuse, or give --fuse off")
    if not packing.fuses or not any_user_parts():
        return
    for run in plan_runs(spec, spec.units(), packing):
        if run.members > 1:
            model, size = RunConfig.from_dict(run.cfg).model_on_dataset()
            try:
                check_fusable(model, run.members, size=size)
            except ConfigError as e:
                raise ConfigError(f"{e}; {' + '.join(dict.fromkeys(u.cell.slug for u in run.units))} would train "
                                  f"fused ({packing.describe()})") from None


# -- claiming a group -------------------------------------------------------------------------------------------
def claim_group(study: Any, storage: Any, ref: StorageRef, spec: GridSpec, study_dir: Path, packing: Packing, *,
                keys: dict[int, tuple[str, int, Any, float | None]] | None = None,
                worker: dict[str, Any] | None = None) -> list[int]:
    """Take up to ``packing.cap`` waiting trials that can fuse (WAITING → RUNNING, each by compare-and-set); their
    ids, first the one the group was chosen by; resuming trials before new ones. Empty when nothing is waiting.
    Claims run one at a time (``storage.claim_lock``): a claimer that read the waiting trials while others took
    some would end with a part of a group (4 waiting, 3 claimers: 1 + 2 + 1), so a run fewer members than it could.
    New trials go in ``claim_order``: seed by seed, the longest first within a seed. ``keys`` caches (fusion key,
    cap, run config, planned FLOPs) by trial id across calls (a waiting trial's key never changes; the worker trains
    with that config).

    ``worker`` (`liveness.worker_record`) is written on each trial in the storage call right after its successful
    compare-and-set (by the claimer only: written before, it could overwrite the record of a worker that took the
    trial first). A trial left RUNNING without a record lost its worker between the two calls: a launch, which reads
    the RUNNING trials under the same lock (``study.fail_dead_trials``), finds it dead. The record carries the
    precision each trial's config resolves to on ``packing.device``, its cell's claim (``ran_as.claim_precisions``): a
    group of a cell that runs as another precision (its first completed trial's, or a trial of it that another worker
    runs) is refused in one line (``ConfigError``) before any of it is taken, so two machines that start a fresh cell
    at once never mix."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    def take(t: Any, precision: str) -> bool:
        try:
            if not storage.set_trial_state_values(trial_id(t), state=TrialState.RUNNING):
                return False
        except UpdateFinishedTrialError:
            return False
        if worker is not None:
            storage.set_trial_user_attr(trial_id(t), "worker", {**worker, CLAIM_KEY: precision})
        return True

    with claim_lock(ref, study.study_name, storage):
        study_id = storage.get_study_id_from_name(study.study_name)
        trials = storage.get_all_trials(study_id, deepcopy=False)
        waiting = [t for t in trials if t.state == TrialState.WAITING and t.user_attrs.get("unit") is not None]
        if not waiting:
            return []
        keys = {} if keys is None else keys
        caps: dict[str, int] = {}   # fusion key → cap, found once a key
        for t in waiting:
            tid = trial_id(t)
            if tid not in keys:
                try:
                    key, cfg, full = trial_key(spec, t.user_attrs, study_dir, packing.device)
                    keys[tid] = (key, caps[key] if key in caps else packing.cap(full), cfg, _planned_flops(full))
                except Exception:  # noqa: BLE001 - a trial whose config cannot be built runs alone and fails there
                    keys[tid] = (f"alone:{tid}", 1, None, None)
            caps[keys[tid][0]] = keys[tid][1]
        # a resuming copy of an interrupted trial first: its run goes on from last.pt before a new one starts, so a
        # study stopped again holds as few half-run trials as it can; then the new ones in `claim_order`
        resuming = [t for t in waiting if t.user_attrs.get("resume")]
        new = [t for t in waiting if not t.user_attrs.get("resume")]
        waiting = resuming + [new[i] for i in claim_order([t.user_attrs.get("seed") for t in new],
                                                          [keys[trial_id(t)][3] for t in new])]
        groups: OrderedDict[str, list[Any]] = OrderedDict()
        for t in waiting:
            groups.setdefault(keys[trial_id(t)][0], []).append(t)
        dead = dead_judge(study, storage, Path(study_dir))
        for key in groups:
            taken: list[int] = []
            precisions = claim_precisions(spec, trials, groups[key], packing.device, dead)
            for t in groups[key]:
                if len(taken) >= caps[key]:
                    break
                if take(t, precisions[t.number]):
                    taken.append(trial_id(t))
            if taken:
                return taken
    return []


# -- planning (dry run, estimates) ------------------------------------------------------------------------------
@dataclass
class FusedRun:
    units: list[Unit]
    cfg: dict[str, Any]
    key: str = ""

    @property
    def members(self) -> int:
        return len(self.units)


def plan_runs(spec: GridSpec, units: Sequence[Unit], packing: Packing) -> list[FusedRun]:
    """The fused runs ``units`` would be packed into (fresh starts; grid order)."""
    if not packing.fuses:   # one run per trial: no run config to resolve into a fusion key
        return [FusedRun([u], spec.run_config(u.cell, u.seed, device=packing.device), f"alone:{u.key}")
                for u in units]
    groups: OrderedDict[str, list[tuple[Unit, dict[str, Any]]]] = OrderedDict()
    for u in units:
        cfg = spec.run_config(u.cell, u.seed, device=packing.device)
        try:
            key = fusion_key(resolved(cfg)) if u.slot is None else f"search:{u.key}"
        except ConfigError:
            key = f"alone:{u.key}"
        groups.setdefault(key, []).append((u, cfg))
    runs: list[FusedRun] = []
    for key, members in groups.items():
        cap = max(1, packing.cap(members[0][1]))
        for i in range(0, len(members), cap):
            chunk = members[i:i + cap]
            runs.append(FusedRun([u for u, _ in chunk], chunk[0][1], key))
    return runs
