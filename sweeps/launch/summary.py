"""The study's W&B summary run (job_type "summary", one per study): the per-trial results (one column per grid
axis, and why a run did not learn), the per-cell mean ± std, the comparisons (claims, main effects, interactions:
difference, interval, test, n, verdict, seeds needed; ``comparisons``) and figures, logged after a sweep that ran
trials with W&B on.

The figures come from whatever ``verdicts.figures.SUMMARY_FIGURES`` holds: ``reports`` adds its report's figures when its CLI
commands register (``reports.cli.register``), so data flows sweeps → reports and sweeps never imports reports.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, TextIO

from resnet_core.tracking import SUMMARY_STAMP, log_study_summary

from ..queue.storage import StorageRef, open_storage
from ..queue.study import objective_values
from ..spec.grid import GridSpec
from ..spec.identity import cell_aliases
from ..spec.metrics import SUMMARY_COLUMNS
from ..spec.study_format import trial_cell
from ..verdicts.comparisons import decision_family, evaluate, interactions
from ..verdicts.figures import SUMMARY_FIGURES
from ..verdicts.inference import LEVEL, SETTLED, seeds_needed_text
from ..verdicts.results import axis_values, cell_configs, dead_cells, trial_frame
from ..verdicts.rounds import stored_plan
from .decide import lost_cells



def log_summary_run(spec: GridSpec, trials: list[Any], ref: StorageRef, root: str | Path, study_dir: Path,
                    out: TextIO) -> None:
    """One W&B run (job_type "summary") in the study's group: the results table and the report's figures."""
    frame = trial_frame(spec, trials)
    dead_by_unit = {(r.cell, r.seed): r.dead for r in frame.itertuples()}
    params = {c.id: c.params for c in spec.cells}
    aliases = cell_aliases(spec, trials)
    rows = []
    for t in trials:
        if t.user_attrs.get("cell") is None or not t.user_attrs.get("status"):
            continue
        cell = trial_cell(t.user_attrs, aliases)
        rows.append({"cell": cell, "seed": t.user_attrs.get("seed"),
                     **axis_values(spec, params.get(cell, {})),   # one column per axis
                     **{k: t.user_attrs.get(k) for k in SUMMARY_COLUMNS},
                     "dead": dead_by_unit.get((cell, t.user_attrs.get("seed")))})
    figures: list[Path] = []
    for draw in SUMMARY_FIGURES:  # the report's figures (SUMMARY_FIGURES); a problem there must not fail the sweep
        try:
            figures += draw(spec.study, root, ref.url, study_dir / "report")
        except Exception as e:  # noqa: BLE001
            print(f"W&B summary: report figures skipped ({type(e).__name__}: {e})", file=out)
    dead = dead_cells(frame, bool(spec.search))
    cells = []
    for cell_key, values in objective_values(spec, trials).items():
        mean = statistics.fmean(values) if values else None
        std = statistics.stdev(values) if len(values) > 1 else None   # one seed has no spread
        cells.append({"cell": cell_key or "base", **axis_values(spec, params.get(cell_key, {})), "n": len(values),
                      "mean": mean, "std": std,
                      "mean ± std": "n/a" if mean is None else f"{mean:.2f}" + (f" ± {std:.2f}" if std is not None
                                                                                 else ""),
                      "did not learn": dead.get(cell_key)})
    comparisons = []
    if not spec.search:
        plan = stored_plan(_study_attrs(ref, spec))
        level = plan.level if plan else LEVEL
        plans = decision_family(spec) + interactions(spec.grid, params, spec.summary_key)
        for r in evaluate(plans, frame, configs=cell_configs(spec), dead=dead, lost=lost_cells(spec, trials),
                          level=level):
            e = r.est
            comparisons.append({"kind": r.plan.kind, "comparison": r.plan.label, "difference": e.diff if e else None,
                                "ci_low": e.lo if e and e.has_interval else None,
                                "ci_high": e.hi if e and e.has_interval else None, "level": level,
                                "test": e.test if e else None, "n_a": e.n_a if e else None,
                                "n_b": e.n_b if e else None, "verdict": r.verdict,
                                "seeds needed": seeds_needed_text(r.seeds_needed)
                                if e and r.verdict not in SETTLED else "",
                                "did not learn": "; ".join(f"{c} {w}" for c, w in r.dead.items()),
                                "seeds left out": "; ".join(f"{c} {w}" for c, w in r.lost.items())})
    tags = list(dict.fromkeys(t for c in spec.cells for t in c.id.split(",") if t))
    log_study_summary(study=spec.study, project=spec.wandb.get("project"), entity=spec.wandb.get("entity"),
                      mode=spec.wandb.get("mode"), rows=rows, figures=figures, run_dir=study_dir / "summary",
                      config=spec.study_attrs(), tags=tags, cells=cells,
                      tables={"comparisons": comparisons} if comparisons else None, stamp=summary_stamp(trials))


def summary_stamp(trials: list[Any]) -> dict[str, Any]:
    """What a summary run summarises: each trial's number and status."""
    return {"trials": sorted([t.number, t.user_attrs.get("status")] for t in trials)}


def summary_is_current(study_dir: Path, trials: list[Any]) -> bool:
    """Whether the study's summary run was finished for exactly these trials (a launch stopped before or during
    its summary leaves none, or an older one: the next launch logs it, even with nothing left to run)."""
    try:
        return json.loads((study_dir / "summary" / SUMMARY_STAMP).read_text()) == summary_stamp(trials)
    except (OSError, ValueError):
        return False


def _study_attrs(ref: StorageRef, spec: GridSpec) -> dict[str, Any]:
    """The study's user attrs (its ``--until-decided`` plan), read-only; {} if it cannot be read."""
    try:
        import optuna

        return dict(optuna.load_study(study_name=spec.study, storage=open_storage(ref, read_only=True)).user_attrs)
    except Exception:  # noqa: BLE001 - the summary must never fail a sweep
        return {}
