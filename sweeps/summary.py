"""The study's W&B summary run (job_type "summary", one per study): the per-trial results, the per-cell mean ± std
and figures, logged after a sweep that ran trials with W&B on.

The figures come from whatever ``SUMMARY_FIGURES`` holds: ``reports`` adds its report's figures when its CLI
commands register (``reports.cli.register``), so data flows sweeps → reports and sweeps never imports reports.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Callable, TextIO

from .grid import GridSpec
from .storage import StorageRef
from .identity import cell_aliases
from .study import objective_values
from .study_format import trial_cell

SUMMARY_COLUMNS = ("status", "n_parameters", "final_test_error", "best_val_error", "final_train_error", "wall_time_s")
# What draws the summary's figures: (study, root, storage URL or None for the journal, out folder) → PNG files.
SummaryFigures = Callable[[str, "str | Path", "str | None", Path], list[Path]]
SUMMARY_FIGURES: list[SummaryFigures] = []


def log_summary_run(spec: GridSpec, trials: list[Any], ref: StorageRef, root: str | Path, study_dir: Path,
                    out: TextIO) -> None:
    """One W&B run (job_type "summary") in the study's group: the results table and the report's figures."""
    from resnet_core.tracking import log_study_summary

    aliases = cell_aliases(spec, trials)
    rows = [{"cell": trial_cell(t.user_attrs, aliases), "seed": t.user_attrs.get("seed"),
             **{k: t.user_attrs.get(k) for k in SUMMARY_COLUMNS}}
            for t in trials if t.user_attrs.get("cell") is not None and t.user_attrs.get("status")]
    figures: list[Path] = []
    for draw in SUMMARY_FIGURES:  # the report's figures (SUMMARY_FIGURES); a problem there must not fail the sweep
        try:
            figures += draw(spec.study, root, None if ref.kind == "journal" else ref.url, study_dir / "report")
        except Exception as e:  # noqa: BLE001
            print(f"W&B summary: report figures skipped ({type(e).__name__}: {e})", file=out)
    cells = []
    for cell_key, values in objective_values(spec, trials).items():
        mean = statistics.fmean(values) if values else None
        std = statistics.stdev(values) if len(values) > 1 else (0.0 if values else None)
        cells.append({"cell": cell_key or "base", "n": len(values), "mean": mean, "std": std,
                      "mean ± std": f"{mean:.2f} ± {std:.2f}" if mean is not None else "n/a"})
    tags = list(dict.fromkeys(t for c in spec.cells for t in c.id.split(",") if t))
    log_study_summary(study=spec.study, project=spec.wandb.get("project"), entity=spec.wandb.get("entity"),
                      mode=spec.wandb.get("mode"), rows=rows, figures=figures, run_dir=study_dir / "summary",
                      config=spec.to_dict(), tags=tags, cells=cells)
