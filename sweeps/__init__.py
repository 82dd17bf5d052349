"""sweeps: ablation grids (YAML) → Optuna studies → one `resnet_core.engine.train` per (cell, seed).

Four layers whose imports run one way, launch → run → queue → spec → ``resnet_core`` (``verdicts`` reads ``spec``;
``reports`` reads ``spec``, ``queue`` and ``verdicts``):

- ``spec``: what to run — the grid file checked and expanded into cells and units, the grid axes as Optuna params,
  and the study format (what a sweep writes into its study and every reader reads back);
- ``queue``: the study as a queue — storage and locks, the journal, Optuna's private API, liveness, reconcile,
  claiming and packing trials, ``open_study``;
- ``run``: worker processes and one trial's objective;
- ``launch``: the `sweep` and `studies` commands, Slurm, the monitor, the estimate, the W&B summary,
  ``--until-decided``;
- ``verdicts``: intervals, comparisons, dead runs, the results table, the recorded rounds.
"""
from .queue.access import open_study
from .spec.grid import GridSpec, load_grid

__all__ = ["GridSpec", "load_grid", "open_study"]
