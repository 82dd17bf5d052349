"""sweeps: ablation grids (YAML) → Optuna studies → one `resnet_core.engine.train` per (cell, seed).

Modules: ``grid`` (load and check a grid file, expand it into units), ``cells`` (cell ids and folder slugs),
``storage`` (journal / PostgreSQL / SQLite storage and the per-study locks), ``study`` (create/load, enqueue,
reconcile on every launch, progress), ``liveness`` (is a RUNNING trial's worker alive:
pid on this host, heartbeat file / Optuna RDB heartbeat elsewhere), ``worker`` (worker processes and devices),
``objective`` (trial → run config → train → verdict; fused groups), ``packing`` (which waiting trials train as one
fused run: `--fuse`), ``search`` (TPE / median pruning per cell), ``monitor`` (a launch's progress and its closing
results table),
``estimate`` (dry-run time estimate), ``sweep`` (the `sweep` and `studies` commands), ``cli`` (their arguments), ``params`` (grid axes as Optuna params),
``access`` (``open_study``: a study from Python in one line), ``study_format`` (what a study holds: the one
module ``reports`` reads it through), ``optuna_adapter`` (every use of Optuna's private API), ``summary`` (the
study's W&B summary run), ``inference`` (intervals, verdicts, seeds needed, the sequential plan), ``comparisons``
(main effects, interactions, claims: what a grid compares), ``dead`` (did a run learn), ``results`` (completed
trials as a table), ``rounds`` / ``decide`` (``--until-decided``: the recorded rounds and the launch loop).
"""
from .access import open_study
from .grid import GridSpec, load_grid

__all__ = ["GridSpec", "load_grid", "open_study"]
