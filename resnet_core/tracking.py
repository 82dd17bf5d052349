"""Weights & Biases tracking as a training callback: one W&B run per trial (per fused member).

W&B is a view, never the source of truth: the local run record is written first, and any W&B failure (no
network, a bad setting, a crash inside the SDK) turns tracking off for that run with one warning, without failing
or slowing the trial. Mode `auto` is online when an API key is configured, offline otherwise; offline run files go
inside the run directory (`<run_dir>/wandb/`), to be uploaded later with `wandb sync`.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Sequence

from .errors import choices_error

MODES = ("auto", "online", "offline", "disabled")
SUMMARY_KEYS = ("status", "reason", "step", "params", "final_test_error", "test_error_at_best_val", "final_val_error",
                "best_val_error", "final_train_error", "final_train_loss", "wall_time_s", "img_per_s",
                "diverged_at")


def resolve_mode(mode: str) -> str:
    if mode not in MODES:
        raise choices_error("wandb mode", mode, MODES)
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_MODE") in ("online", "offline", "disabled"):
        return os.environ["WANDB_MODE"]
    return "online" if _logged_in() else "offline"


def _logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import netrc

        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):  # type: ignore[name-defined]
        return False


class WandbTracker:
    """Callback: `on_start` opens member g's run, `on_log`/`on_eval` log one batched dict per step, `on_end`
    writes the summary and finishes the run."""

    def __init__(self, *, project: str, entity: str | None = None, mode: str = "auto", group: str | None = None,
                 job_type: str = "trial", names: Sequence[str] | None = None,
                 tags: Sequence[Sequence[str]] | None = None, extra_config: Sequence[dict] | None = None,
                 init_timeout: float = 30.0) -> None:
        self.project, self.entity, self.group, self.job_type = project, entity, group, job_type
        self.mode = resolve_mode(mode)
        self.names, self.tags, self.extra = names, tags, extra_config
        self.init_timeout = init_timeout
        self.runs: dict[int, Any] = {}
        self.offline_dirs: list[Path] = []
        self.skipped: dict[int, str] = {}

    def _skip(self, member: int, what: str, error: BaseException) -> None:
        run = self.runs.pop(member, None)
        self.skipped[member] = f"{what}: {type(error).__name__}: {error}"
        warnings.warn(f"W&B skipped for member {member} ({self.skipped[member]}); the local run record is complete")
        if run is not None:
            try:
                run.finish(exit_code=1)
            except Exception:  # noqa: BLE001 - already failing; nothing more to do
                pass

    def on_start(self, member: int, config: dict[str, Any], run_dir: Path) -> None:
        if self.mode == "disabled":
            return
        try:
            import wandb

            full = {**config, **(self.extra[member] if self.extra else {})}  # the engine passes the resolved config
            run = wandb.init(project=self.project, entity=self.entity, group=self.group, job_type=self.job_type,
                             name=self.names[member] if self.names else config.get("name"),
                             tags=list(self.tags[member]) if self.tags else None, config=full,
                             dir=str(run_dir), mode=self.mode, reinit="create_new",
                             settings=wandb.Settings(init_timeout=self.init_timeout, silent=True,
                                                     x_disable_stats=True, console="off"))
            run.define_metric("train/*")
            run.define_metric("grad_norm/*")
            run.define_metric("grad_norm_block/*")
            run.define_metric("weight_norm/*")
            run.define_metric("val/error", summary="min,last")
            run.define_metric("test/error", summary="min,last")
            self.runs[member] = run
            if self.mode == "offline":
                self.offline_dirs.append(Path(run.dir).parent)
        except Exception as e:  # noqa: BLE001 - W&B must never fail a trial
            self._skip(member, "init", e)

    def _log(self, member: int, step: int, metrics: dict[str, float]) -> None:
        run = self.runs.get(member)
        if run is None:
            return
        try:
            run.log(metrics, step=step)
        except Exception as e:  # noqa: BLE001
            self._skip(member, "log", e)

    def on_log(self, member: int, step: int, metrics: dict[str, float]) -> None:
        self._log(member, step, metrics)

    def on_eval(self, member: int, step: int, metrics: dict[str, float]) -> bool:
        self._log(member, step, metrics)
        return False

    def on_end(self, member: int, summary: dict[str, Any]) -> None:
        run = self.runs.pop(member, None)
        if run is None:
            return
        try:
            run.summary.update({k: summary.get(k) for k in SUMMARY_KEYS if summary.get(k) is not None})
            run.finish(exit_code=0 if summary.get("status") == "complete" else 1)
        except Exception as e:  # noqa: BLE001
            self.runs[member] = run
            self._skip(member, "finish", e)

    def sync_command(self) -> str | None:
        """The command that uploads the offline runs, or None."""
        if not self.offline_dirs:
            return None
        return "wandb sync " + " ".join(str(d) for d in self.offline_dirs)


def wandb_callback(*, project: str | None, entity: str | None = None, mode: str | None = None,
                   group: str | None = None, name: str, job_type: str = "trial", config: dict[str, Any],
                   tags: Sequence[str] | None = None) -> WandbTracker | None:
    """The tracker for one trial (the sweeps' objective calls this). Tags default to the trial's grid values,
    read from ``config["trial"]["cell"]`` ("model.depth=20,model.shortcut=none")."""
    mode = mode or "auto"
    if mode == "disabled":
        return None
    if tags is None:
        cell = (config.get("trial") or {}).get("cell") or ""
        tags = [t for t in cell.split(",") if t]
    extra = {k: v for k, v in config.items() if k == "trial"}
    return WandbTracker(project=project or "resnet-ablate", entity=entity, mode=mode, group=group,
                        job_type=job_type, names=[name], tags=[list(tags)], extra_config=[extra])


def log_study_summary(*, study: str, project: str | None, entity: str | None = None, mode: str | None = None,
                      rows: list[dict[str, Any]], figures: Sequence[Path] = (), run_dir: Path) -> str | None:
    """One extra run in the study's group (job_type "summary") with the results table as a `wandb.Table` and the
    report figures as images. Returns the offline run folder (for `wandb sync`), or None. Never raises."""
    mode = resolve_mode(mode or "auto")
    if mode == "disabled":
        return None
    try:
        import wandb

        Path(run_dir).mkdir(parents=True, exist_ok=True)
        run = wandb.init(project=project or "resnet-ablate", entity=entity, group=study, job_type="summary",
                         name=f"{study}-summary", dir=str(run_dir), mode=mode, reinit="create_new",
                         settings=wandb.Settings(silent=True, x_disable_stats=True, console="off"))
        columns = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("cell", "seed"), k))
        table = wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in rows])
        payload: dict[str, Any] = {"results": table}
        for fig in figures:
            payload[f"figures/{Path(fig).stem}"] = wandb.Image(str(fig))
        run.log(payload)
        offline = Path(run.dir).parent if mode == "offline" else None
        run.finish()
        return str(offline) if offline else None
    except Exception as e:  # noqa: BLE001 - W&B must never fail a sweep
        warnings.warn(f"W&B study summary skipped ({type(e).__name__}: {e}); the local records are complete")
        return None
