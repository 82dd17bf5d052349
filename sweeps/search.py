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


class _CellView:
    """A Study look-alike whose trial lists are restricted to one cell; everything else is the study's."""

    def __init__(self, study: optuna.Study, cell: Any) -> None:
        self._study, self._cell = study, cell

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _keep(self, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        return [t for t in trials if t.user_attrs.get("cell") == self._cell]

    def get_trials(self, deepcopy: bool = True, states: Sequence[TrialState] | None = None) -> list[FrozenTrial]:
        return self._keep(self._study.get_trials(deepcopy=deepcopy, states=states))

    def _get_trials(self, deepcopy: bool = True, states: Sequence[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        return self._keep(self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache))

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()


def _view(study: optuna.Study, trial: FrozenTrial) -> Any:
    return _CellView(study, trial.user_attrs.get("cell"))


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
