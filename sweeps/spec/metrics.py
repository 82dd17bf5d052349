"""Metric names and run-summary keys: the one list the grid, the trials, the W&B summary and the report read.

A run's ``summary.json`` (written by ``resnet_core.engine``) names its numbers; a sweep's objective names one of
them (``METRICS``), a trial copies some into its user attrs (``TRIAL_SUMMARY_KEYS``, renamed by
``SUMMARY_ATTR_NAMES``), and readers keep the numeric ones (``SUMMARY_NUMBERS``). Errors are in percent.
"""
from __future__ import annotations

# objective metric (the grid's ``objective.metric``) → (run summary key, the on_eval / on_log metric reported for
# pruning)
METRICS = {
    "test_error": ("final_test_error", "test/error"),
    "val_error": ("final_val_error", "val/error"),
    "train_error": ("final_train_error", "train/error"),
}
DIRECTIONS = ("minimize", "maximize")
DEFAULT_OBJECTIVE = {"metric": "test_error", "direction": "minimize"}

# run summary key → trial user attr (the parameter count is ``n_parameters``: ``params`` are Optuna's axis values)
SUMMARY_ATTR_NAMES = {"params": "n_parameters"}

# what a trial copies from its run's summary into its user attrs (renamed by SUMMARY_ATTR_NAMES)
TRIAL_SUMMARY_KEYS = ("params", "final_test_error", "test_error_at_best_val", "final_val_error", "best_val_error",
                      "final_train_error", "final_train_loss", "lowest_train_loss", "wall_time_s", "img_per_s", "step",
                      "lost_wall_time_s", "total_steps", "diverged_at", "device", "threads", "fused_members", "fast_path",
                      "precision", "compiled", "fast_fallback", "precision_changed", "paths")

# the numbers of a run summary that readers keep (a report's rows)
SUMMARY_NUMBERS = ("final_test_error", "test_error_at_best_val", "best_val_error", "final_val_error",
                   "final_train_error", "final_train_loss", "lowest_train_loss", "params", "wall_time_s", "img_per_s",
                   "lost_wall_time_s", "threads", "fused_members", "diverged_at", "step", "total_steps", "epoch")

# the error and loss columns of the completed-trials table (``verdicts.results``)
ERROR_KEYS = ("final_test_error", "final_val_error", "best_val_error", "final_train_error", "final_train_loss",
              "lowest_train_loss")

# the per-trial columns of the study's W&B summary table (trial user attrs)
SUMMARY_COLUMNS = ("status", "n_parameters", "final_test_error", "best_val_error", "final_train_error", "wall_time_s")


def summary_key(metric: str) -> str:
    """The run summary key of an objective metric (``test_error`` → ``final_test_error``)."""
    return METRICS[metric][0]
