"""`search:` inside grid cells: TPE and the median pruner, each looking only at the trials of the same cell.

One study holds every cell, so a plain TPESampler would model ResNet-20's and plain-56's learning rates as one
landscape, and the median pruner would stop a deep plain net for being worse than shallow residual ones. These
wrappers hand the inner sampler / pruner a view of the study whose trial lists keep only the trials of the asking
trial's cell (its ``cell`` user attr).
"""
from __future__ import annotations

from typing import Any, Sequence

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from ..spec.study_format import ALIASES_ATTR, trial_cell
from .optuna_adapter import StudyView


def _view(study: optuna.Study, trial: FrozenTrial) -> Any:
    """The study as the inner sampler / pruner sees it: only the trials of ``trial``'s cell."""
    aliases = study.user_attrs.get(ALIASES_ATTR)   # a renamed cell's trials are still this cell's
    cell = trial_cell(trial.user_attrs, aliases)
    return StudyView(study, lambda t: trial_cell(t.user_attrs, aliases) == cell)


class CellSampler(optuna.samplers.BaseSampler):
    def __init__(self, inner: optuna.samplers.BaseSampler) -> None:
        self.inner = inner

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.inner.infer_relative_search_space(_view(study, trial), trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self.inner.sample_relative(_view(study, trial), trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.inner.sample_independent(_view(study, trial), trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.inner.before_trial(_view(study, trial), trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.inner.after_trial(_view(study, trial), trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()


class CellPruner(optuna.pruners.BasePruner):
    def __init__(self, inner: optuna.pruners.BasePruner) -> None:
        self.inner = inner

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        return self.inner.prune(_view(study, trial), trial)
