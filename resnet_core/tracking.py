"""Weights & Biases tracking as a training callback: one W&B run per trial (per fused member), also across a resume.

W&B is a view, never the source of truth: the local run record is written first, and any W&B failure (no
network, a bad setting, a crash inside the SDK) turns tracking off for that run with one warning, without failing
or slowing the trial. Mode `auto` is online when an API key is configured, offline otherwise; offline run files go
inside the run directory (`<run_dir>/wandb/`), to be uploaded later with `wandb sync`.

One run per trial: the W&B run id lives in the run folder (``wandb_run.json``) beside the checkpoint, so a resumed
trial continues the same run (``resume="allow"``). Offline, W&B cannot continue a run: the resumed segment first
replays the run record's history up to the checkpoint, and the earlier segment (which may hold steps past the
checkpoint) moves to ``<run_dir>/wandb/superseded/`` — out of the ``wandb sync …/wandb/offline-run-*`` glob. A
replay in full precision (``on_rewind``) goes back the same way within the process, and a run that W&B first sees
at a resume (no ``wandb_run.json`` yet: trained so far without W&B), or resumed offline without its earlier segment
(``wandb/`` removed), gets the record's steps up to the checkpoint first.

Panels: every series is plotted against ``iteration`` (the optimiser step; ``epoch`` is logged beside it); errors
keep their min and last value in the summary. Per-layer norms (``grad_norm/<stage>/<layer>`` …) are logged but
hidden from the automatic panels; what shows is one series per stage (``grad_norm_stage/<stage>``: the root sum of
squares of the stage's layer norms), so a ResNet-110 opens a few dozen panels, not 400+.

No secrets: W&B records the command line; secrets in URLs there (``postgresql://user:PASSWORD@…``,
``?password=…``: ``redact.scrub``) and the values of secret-looking environment variables are masked in what
``wandb.init`` sees, its arguments (config, name, group, tags) included.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

from . import redact
from .errors import choices_error
from .redact import mask_url

MODES = ("auto", "online", "offline", "disabled")
ENV_MODES = {"online": "online", "offline": "offline", "disabled": "disabled",   # WANDB_MODE's values, with
             "dryrun": "offline", "run": "online"}                                 # wandb's own aliases
SUMMARY_KEYS = ("status", "reason", "step", "n_parameters", "final_test_error", "test_error_at_best_val", "final_val_error",
                "best_val_error", "best_selected_on", "best_test_error", "final_train_error", "final_train_loss", "wall_time_s", "img_per_s",
                "diverged_at", "fast_path", "precision", "compiled", "fast_fallback", "precision_changed",
                "guard_s", "compile_s")


def own_wandb_service() -> None:
    """Make this process start its own W&B service rather than attach to one it inherited (``WANDB_SERVICE``, set by
    wandb in a parent process that used it). Called at a process's entry, before wandb is imported here. A killed
    process's open runs then die with its own service; attached to a parent's, they stayed open there, and the
    resumed trial's ``wandb.init`` was refused ("run ID … is in use")."""
    if "wandb" not in sys.modules:   # imported already: the service in the environment is this process's own
        os.environ.pop("WANDB_SERVICE", None)


def resolve_mode(mode: str) -> str:
    if mode not in MODES:
        raise choices_error("wandb mode", mode, MODES)
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_MODE") in ENV_MODES:
        return ENV_MODES[os.environ["WANDB_MODE"]]
    return "online" if _logged_in() else "offline"


def _logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import netrc

        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):  # type: ignore[name-defined]
        return False


RUN_ID_FILE = "wandb_run.json"
STEP_METRIC = "iteration"
PER_LAYER = ("grad_norm", "grad_norm_max", "grad_norm_block", "grad_norm_block_max", "weight_norm")
STAGE_SERIES = {"grad_norm": "grad_norm_stage", "weight_norm": "weight_norm_stage"}
ERRORS = ("train/error", "val/error", "test/error")
_SECRET_ENV = re.compile(r"PASS|SECRET|TOKEN|API_?KEY|_KEY$|PRIVATE|_PW$|_URL$|CREDENTIAL", re.I)   # not PWD: a path


# -- secrets ----------------------------------------------------------------------------------------------------
def scrub(text: str) -> str:
    """``text`` with URL secrets masked (``redact.scrub``: passwords, secret query parameters) and the values of
    secret-looking environment variables."""
    for name, value in os.environ.items():
        if len(value) >= 6 and _SECRET_ENV.search(name) and value in text:
            text = text.replace(value, mask_url(value) if "://" in value else "***")
    return redact.scrub(text)


def scrubbed(value: Any) -> Any:
    """``value`` with every string in it (at any depth of dicts, lists and tuples) ``scrub``-bed."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrubbed(k): scrubbed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrubbed(v) for v in value)
    return value


@contextlib.contextmanager
def scrubbed_argv() -> Iterator[None]:
    """``sys.argv`` with secrets masked (W&B records the process arguments in every run's files)."""
    saved = sys.argv
    sys.argv = [scrub(a) for a in saved]
    try:
        yield
    finally:
        sys.argv = saved


# -- keys and panels --------------------------------------------------------------------------------------------
def layer_group(name: str) -> tuple[str, str]:
    """``stage1.block0.conv1`` → (``stage1``, ``block0.conv1``); ``stem.conv`` → (``stem``, ``conv``); a top-level
    layer (``fc``) → (``head``, ``fc``)."""
    group, _, rest = name.partition(".")
    return (group, rest) if rest else ("head", name)


def wandb_payload(step: int, metrics: dict[str, float]) -> dict[str, float]:
    """The engine's flat metrics at ``step`` → what W&B gets: ``iteration``, ``epoch``, train/val/test series as
    they are, per-layer norms under ``<kind>/<stage>/<layer>`` and the per-stage norms ``<kind>_stage/<stage>``."""
    out: dict[str, float] = {STEP_METRIC: step}
    stage_sq: dict[str, float] = {}
    for key, value in metrics.items():
        kind, _, name = key.partition("/")
        if kind in PER_LAYER and name:
            group, rest = layer_group(name)
            out[f"{kind}/{group}/{rest}"] = value
            if kind in STAGE_SERIES and value is not None and math.isfinite(value):
                series = f"{STAGE_SERIES[kind]}/{group}"
                stage_sq[series] = stage_sq.get(series, 0.0) + value * value
        else:
            out[key] = value
    out.update({k: math.sqrt(v) for k, v in stage_sq.items()})
    return out


def define_panels(run: Any) -> None:
    """Step metric, summaries and hidden per-layer series for ``run`` (see the module docstring)."""
    run.define_metric(STEP_METRIC, hidden=True)
    run.define_metric("epoch", step_metric=STEP_METRIC)
    for prefix in ("train", "val", "test", *STAGE_SERIES.values()):
        run.define_metric(f"{prefix}/*", step_metric=STEP_METRIC)
    for kind in PER_LAYER:
        run.define_metric(f"{kind}/*", step_metric=STEP_METRIC, hidden=True)
    for key in ERRORS:
        run.define_metric(key, step_metric=STEP_METRIC, summary="min,last")


def visible_keys(keys: Sequence[str]) -> list[str]:
    """The logged keys that get an automatic panel (not hidden by ``define_panels``)."""
    hidden = (STEP_METRIC,)
    return [k for k in keys if k not in hidden and k.partition("/")[0] not in PER_LAYER]


# -- the run id kept with the run's checkpoint ------------------------------------------------------------------
def run_id_for(run_dir: Path) -> tuple[str, bool]:
    """(the W&B run id of the run in ``run_dir``, whether it existed before): read from ``wandb_run.json``, or a
    new id written there atomically."""
    from .record import atomic_write_text

    path = Path(run_dir) / RUN_ID_FILE
    try:
        rid = json.loads(path.read_text())["id"]
        if isinstance(rid, str) and rid:
            return rid, True
    except (OSError, ValueError, KeyError, TypeError):
        pass
    from wandb.sdk.lib.runid import generate_id

    rid = generate_id()
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"id": rid}) + "\n")
    return rid, False


def supersede_offline(run_dir: Path) -> list[Path]:
    """Move earlier offline segments ``<run_dir>/wandb/offline-run-*`` to ``<run_dir>/wandb/superseded/``."""
    wdir = Path(run_dir) / "wandb"
    moved = []
    for seg in sorted(wdir.glob("offline-run-*")):
        dest = wdir / "superseded" / seg.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(seg), str(dest))
        moved.append(dest)
    latest = wdir / "latest-run"
    if moved and latest.is_symlink():
        latest.unlink()
    return moved


def replay_history(run: Any, run_dir: Path, upto: int | None = None) -> int:
    """Log the run record's metrics (``metrics.jsonl``) up to step ``upto`` (default: the checkpoint a resume starts
    from) into ``run``, one call per step, as they were logged live. Returns the number of steps."""
    from .record import read_metrics, read_summary

    start = upto if upto is not None else (read_summary(run_dir) or {}).get("step") or 0  # the engine writes it
    rows: dict[int, dict[str, float]] = {}
    epochs: dict[int, float] = {}
    for r in read_metrics(run_dir):
        step = int(r["step"])
        if step > start:
            continue
        rows.setdefault(step, {})[f"{r['split']}/{r['name']}"] = r["value"]
        if r.get("epoch") is not None:
            epochs[step] = r["epoch"]
    for step in sorted(rows):
        metrics = {**rows[step], **({"epoch": epochs[step]} if step in epochs else {})}
        run.log(wandb_payload(step, metrics), step=step)
    return len(rows)


# -- what ran ----------------------------------------------------------------------------------------------------
CODE_KEYS = ("version", "git_commit", "git_dirty", "torch", "optuna", "wandb", "plugins")


def what_ran(summary: dict[str, Any]) -> dict[str, Any]:
    """The run config's ``ran`` and ``code`` sections, from the run record's summary: what the engine resolved the
    config's ``auto``s to (device, precision, memory format, fast path, threads, fused members; ``compiled``, the
    fallback and the path of each part of the run once the run has ended) and the code version that ran (package version, git commit and dirtiness, library versions,
    plugins)."""
    from .provenance import provenance

    ran = {"device": summary.get("device"), "precision": summary.get("precision"),
           "memory_format": None if summary.get("channels_last") is None else
           ("channels_last" if summary["channels_last"] else "contiguous"),
           "fast_path": summary.get("fast_path"), "threads": summary.get("threads"),
           "fused_members": summary.get("fused_members")}
    if summary.get("status") not in (None, "running"):
        ran.update(compiled=summary.get("compiled"), fast_fallback=summary.get("fast_fallback"),
                   paths=summary.get("paths"))   # the path of each part of the run: [{from_step, path}]
    code = summary.get("provenance") or provenance()
    return {"ran": ran, "code": {k: code.get(k) for k in CODE_KEYS}}


def init_run(*, project: str, entity: str | None, mode: str, run_dir: Path, run_id: str | None = None,
             **kwargs: Any) -> Any:
    """``wandb.init`` as every run here makes it: in ``run_dir``, resumable by ``run_id``, with the command line and
    every string it is given (config, name, group, tags) scrubbed of secrets, no console capture, no system stats."""
    import wandb

    settings = wandb.Settings(init_timeout=kwargs.pop("init_timeout", 30.0), silent=True, x_disable_stats=True,
                              console="off", save_code=False, disable_git=True)
    with scrubbed_argv():
        return wandb.init(project=project, entity=entity, dir=str(run_dir), mode=mode, reinit="create_new",
                          id=run_id, resume="allow" if run_id else None, settings=settings, **scrubbed(kwargs))


class WandbTracker:
    """Callback: `on_start` opens (or continues) member g's run, `on_log`/`on_eval` log one batched dict per step,
    `on_end` writes the summary and finishes the run."""

    def __init__(self, *, project: str, entity: str | None = None, mode: str = "auto", group: str | None = None,
                 job_type: str = "trial", names: Sequence[str] | None = None,
                 tags: Sequence[Sequence[str]] | None = None, extra_config: Sequence[dict] | None = None,
                 init_timeout: float = 30.0) -> None:
        self.project, self.entity, self.group, self.job_type = project, entity, group, job_type
        self.mode = resolve_mode(mode)
        self.names, self.tags, self.extra = names, tags, extra_config
        self.init_timeout = init_timeout
        self.runs: dict[int, Any] = {}
        self.started: dict[int, tuple[dict[str, Any], Path]] = {}   # member → (config, run_dir) of its on_start
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
        self.started[member] = (config, Path(run_dir))
        self._open(member, config, run_dir)

    def _open(self, member: int, config: dict[str, Any], run_dir: Path, upto: int | None = None) -> None:
        """Start member ``member``'s W&B run (or segment, offline) and replay the record up to ``upto`` (default: the
        checkpoint) into it where W&B lacks those steps."""
        try:
            from .record import read_summary

            full = {**config, **(self.extra[member] if self.extra else {}),  # the engine passes the resolved config
                    **what_ran(read_summary(run_dir) or {})}                 # and has written what it resolved to
            run_id, known = run_id_for(run_dir)
            if self.mode == "offline":
                supersede_offline(run_dir)
            replay = self.mode == "offline" or not known   # offline or new to W&B: its run holds every step so far
            run = init_run(project=self.project, entity=self.entity, mode=self.mode, run_dir=run_dir,
                           run_id=run_id, group=self.group, job_type=self.job_type,
                           name=self.names[member] if self.names else config.get("name"),
                           tags=list(self.tags[member]) if self.tags else None, config=full,
                           init_timeout=self.init_timeout)
            define_panels(run)
            self.runs[member] = run
            if replay:
                replay_history(run, run_dir, upto)
            if self.mode == "offline":
                self.offline_dirs.append(Path(run.dir).parent)
        except Exception as e:  # noqa: BLE001 - W&B must never fail a trial
            self._skip(member, "init", e)

    def on_rewind(self, member: int, step: int) -> None:
        """The run went back to ``step`` (a replay in full precision) and trains its later steps again. A W&B run's
        steps only grow (a step logged again is dropped), so offline the segment is finished and superseded, and a
        new one replays the record up to ``step``; online, a warning names the steps W&B keeps from before."""
        run = self.runs.get(member)
        if run is None:
            return
        if self.mode != "offline":
            warnings.warn(f"W&B run {run.id}: steps {step + 1} on keep the values logged before the replay from step "
                          f"{step} until the replay logs past them (an online run cannot go back); the local run "
                          f"record holds the replay")
            return
        try:
            segment = Path(run.dir).parent
            run.finish(exit_code=1)
        except Exception as e:  # noqa: BLE001 - W&B must never fail a trial
            self._skip(member, "rewind", e)
            return
        del self.runs[member]
        self.offline_dirs = [d for d in self.offline_dirs if d != segment]
        self._open(member, *self.started[member], upto=step)

    def _log(self, member: int, step: int, metrics: dict[str, float]) -> None:
        run = self.runs.get(member)
        if run is None:
            return
        try:
            run.log(wandb_payload(step, metrics), step=step)
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
            values = {**summary, "n_parameters": summary.get("params")}
            run.summary.update({k: values.get(k) for k in SUMMARY_KEYS if values.get(k) is not None})
            run.config.update(what_ran(summary), allow_val_change=True)   # now with `compiled`
            run.finish(exit_code=0 if summary.get("status") == "complete" else 1)
        except Exception as e:  # noqa: BLE001
            self.runs[member] = run
            self._skip(member, "finish", e)

    def sync_command(self) -> str | None:
        """The command that uploads the offline runs, or None."""
        if not self.offline_dirs:
            return None
        from .shell import command

        return command("wandb", "sync", *self.offline_dirs)


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


SUMMARY_STAMP = "logged.json"   # in a summary run's folder: the trials it summarised, written once it is finished


def log_study_summary(*, study: str, project: str | None, entity: str | None = None, mode: str | None = None,
                      rows: list[dict[str, Any]], figures: Sequence[Path] = (), run_dir: Path,
                      config: dict[str, Any] | None = None, tags: Sequence[str] = (),
                      cells: list[dict[str, Any]] | None = None,
                      tables: dict[str, list[dict[str, Any]]] | None = None,
                      stamp: dict[str, Any] | None = None) -> str | None:
    """The study's summary run (job_type "summary", in the study's group, one per study: its id is kept in
    ``run_dir``, a later launch continues it — offline, replaces it): ``config`` (the grid) as config, ``tags``,
    the per-trial results (``rows``), the per-cell mean ± std (``cells``) and any further ``tables`` (name → rows,
    e.g. the comparisons) as `wandb.Table`s, the report figures as images; once the run is finished, ``stamp`` (what
    it summarises) goes to ``run_dir/SUMMARY_STAMP``. Returns the offline run folder (for `wandb sync`), or None.
    Never raises."""
    mode = resolve_mode(mode or "auto")
    if mode == "disabled":
        return None
    try:
        import wandb

        Path(run_dir).mkdir(parents=True, exist_ok=True)
        run_id, _ = run_id_for(run_dir)
        if mode == "offline":
            supersede_offline(run_dir)  # recomputed from the whole study: the new run holds everything
        run = init_run(project=project or "resnet-ablate", entity=entity, mode=mode, run_dir=Path(run_dir),
                       run_id=run_id, group=study, job_type="summary", name=f"{study}-summary",
                       config={**(config or {}), "code": what_ran({})["code"]}, tags=[t[:64] for t in tags] or None)
        first = [c for c in ("cell", "seed") if any(c in r for r in rows)]
        columns = first + [k for k in dict.fromkeys(k for r in rows for k in r) if k not in first]
        table = wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in rows])
        payload: dict[str, Any] = {"results": table}
        if cells:
            cols = list(cells[0])
            payload["cells"] = wandb.Table(columns=cols, data=[[c.get(k) for k in cols] for c in cells])
        for name, trows in (tables or {}).items():
            if trows:
                tcols = list(trows[0])
                payload[name] = wandb.Table(columns=tcols, data=[[r.get(k) for k in tcols] for r in trows])
        for fig in figures:
            payload[f"figures/{Path(fig).stem}"] = wandb.Image(str(fig))
        run.log(payload)
        offline = Path(run.dir).parent if mode == "offline" else None
        run.finish()
        if stamp is not None:
            from .record import atomic_write_json

            atomic_write_json(Path(run_dir) / SUMMARY_STAMP, stamp)
        return str(offline) if offline else None
    except Exception as e:  # noqa: BLE001 - W&B must never fail a sweep
        warnings.warn(f"W&B study summary skipped ({type(e).__name__}: {e}); the local records are complete")
        return None
