"""Inference for comparisons of cells: a difference of means with a confidence interval, a verdict, and the seeds
that would decide it. The one home of these rules: ``sweeps`` (``--until-decided``, the closing table, the W&B
summary) and ``reports`` (claims, main effects) both call them.

A comparison is a *contrast* of cell means, sum_i w_i * mean_i (a difference A − B is w = {A: +1, B: −1}; a main
effect averages such differences over the other axes). Its interval:

- *paired by seed* when every cell has the same seeds (at least 2) and the caller says their data order is shared
  (same seed, same data and batch size: the engine draws the data order from the seed): the per-seed contrast values
  get a one-sample t interval (Student 1908), for two cells ``scipy.stats.ttest_rel``;
- otherwise *Welch*: the cells' variances stay separate, degrees of freedom by Welch–Satterthwaite (Welch 1947;
  Satterthwaite 1946), for two cells ``scipy.stats.ttest_ind(equal_var=False)``.

A bootstrap is not offered: at 2 to 10 seeds a percentile bootstrap interval under-covers badly (it cannot be wider
than the observed spread); the t intervals cover at their nominal rate (tests/test_inference.py simulates it).

Verdicts (``verdict``): with a claimed direction, *reproduced* when the interval excludes zero on the claimed side,
*non-inferior* when the claim states a margin and the interval's end on the other side lies within it (the contrast
is not worse than the claim by the margin or more: a one-sided claim such as "trains at least as well" needs no
bound on how much better), *contradicted* when the interval excludes zero on the other side, else *undecided*;
without a claimed direction *decided* replaces reproduced and contradicted, and a margin asks the interval to lie
inside ±margin (*equivalent*). Fewer than 2 completed seeds on a side is *not enough data*.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

LEVEL = 0.95
REPRODUCED, CONTRADICTED, UNDECIDED, EQUIVALENT = "reproduced", "contradicted", "undecided", "equivalent"
NON_INFERIOR, DECIDED, NOT_ENOUGH = "non-inferior", "decided", "not enough data"
VERDICTS = (REPRODUCED, CONTRADICTED, NON_INFERIOR, EQUIVALENT, DECIDED, UNDECIDED, NOT_ENOUGH)
SETTLED = (REPRODUCED, CONTRADICTED, NON_INFERIOR, EQUIVALENT, DECIDED)   # what --until-decided stops on
PAIRED, WELCH = "paired t", "Welch t"
NO_INTERVAL = "no interval (every seed gave the same value: no spread to estimate one from)"
POWER = 0.8                 # seeds needed: the power of the test at the observed difference
SEEDS_NEEDED_CAP = 10_000   # beyond this, "more than 10,000"


@dataclass(frozen=True)
class Estimate:
    """A contrast of cell means with its interval at ``level``."""
    diff: float                  # sum_i w_i * mean_i (for A − B: mean(A) − mean(B))
    lo: float
    hi: float
    level: float
    test: str                    # PAIRED or WELCH
    n_a: int                     # completed seeds on the positive-weight side (summed over its cells)
    n_b: int                     # … and on the negative-weight side
    df: float
    p: float                     # two-sided p-value of diff = 0
    parts: tuple[float, ...]     # per-cell variance terms w_i² s_i² (paired: the variance of the per-seed contrast)

    @property
    def excludes_zero(self) -> bool:
        return self.lo > 0 or self.hi < 0

    @property
    def has_interval(self) -> bool:
        """False when the seeds showed no spread at all to estimate one from (``_no_spread``)."""
        return math.isfinite(self.lo) and math.isfinite(self.hi)

    def bounds_text(self, digits: int = 2) -> str:
        """'[−35.20, −2.20]', or what stands in for an interval that cannot be estimated."""
        if not self.has_interval:
            return NO_INTERVAL
        return f"[{self.lo:+.{digits}f}, {self.hi:+.{digits}f}]"

    def interval_text(self, digits: int = 2) -> str:
        return f"{self.diff:+.{digits}f} {self.bounds_text(digits)}"

    @property
    def n_text(self) -> str:
        """'3 vs 3': the completed seeds on each side. A paired contrast of more than two cells (a main effect
        averaged over another axis, an interaction) rests on one value per seed, so its n is the seeds, with the
        runs beside it: '3 seeds (6 vs 6 runs)' (its t has 2 degrees of freedom, not 10)."""
        seeds = int(round(self.df)) + 1
        if self.test == PAIRED and (self.n_a, self.n_b) != (seeds, seeds):
            return f"{seeds} seeds ({self.n_a} vs {self.n_b} runs)"
        return f"{self.n_a} vs {self.n_b}"

    def describe(self, unit: str = " points") -> str:
        """'−18.70 points, 95 % CI [−35.2, −2.2], Welch t, n = 3 vs 3'."""
        pct = f"{100 * self.level:.3g}"
        ci = f"{pct} % CI {self.bounds_text()}" if self.has_interval else self.bounds_text()
        return f"difference {self.diff:+.2f}{unit}, {ci} ({self.test}, n = {self.n_text})"


def _clean(values: pd.Series) -> pd.Series:
    s = pd.Series(values, dtype=float)
    return s[np.isfinite(s.to_numpy())]


def pairable(samples: Sequence[pd.Series]) -> bool:
    """True when every sample has the same seeds (index), at least 2, each once."""
    first = samples[0].index
    return len(first) >= 2 and first.is_unique and all(
        s.index.is_unique and set(s.index) == set(first) for s in samples[1:])


def compare(a: pd.Series, b: pd.Series, *, paired: bool = False, level: float = LEVEL) -> Estimate | None:
    """mean(a) − mean(b) with its interval. ``a``/``b``: values indexed by seed. ``paired``: the two cells share
    their data order, so seeds pair when both have the same seeds (``scipy.stats.ttest_rel``); else Welch
    (``scipy.stats.ttest_ind(equal_var=False)``). None with fewer than 2 values on a side."""
    return contrast({"a": a, "b": b}, {"a": 1.0, "b": -1.0}, paired=paired, level=level)


def contrast(samples: Mapping[str, pd.Series], weights: Mapping[str, float], *, paired: bool = False,
             level: float = LEVEL) -> Estimate | None:
    """sum_i w_i * mean_i over the cells in ``weights`` with its interval (see the module docstring). None when a
    cell has fewer than 2 values."""
    from scipy import stats

    keys = [k for k, w in weights.items() if w != 0]
    data = {k: _clean(samples[k]) if k in samples else pd.Series(dtype=float) for k in keys}
    if any(len(v) < 2 for v in data.values()):
        return None
    w = {k: float(weights[k]) for k in keys}
    n_a = sum(len(data[k]) for k in keys if w[k] > 0)
    n_b = sum(len(data[k]) for k in keys if w[k] < 0)
    diff = float(sum(w[k] * data[k].mean() for k in keys))
    alpha = 1 - level
    if paired and pairable(list(data.values())):
        seeds = list(data[keys[0]].index)
        per_seed = sum(w[k] * data[k].reindex(seeds).to_numpy() for k in keys)
        n = len(per_seed)
        var = spread(per_seed, scale=max(float(np.max(np.abs(data[k].to_numpy()))) for k in keys))
        df = n - 1.0
        if var > 0:
            if len(keys) == 2 and sorted(w.values()) == [-1.0, 1.0]:
                pos = next(k for k in keys if w[k] > 0)
                neg = next(k for k in keys if w[k] < 0)
                res = stats.ttest_rel(data[pos].reindex(seeds), data[neg].reindex(seeds))
            else:
                res = stats.ttest_1samp(per_seed, 0.0)
            ci = res.confidence_interval(level)
            return Estimate(diff, float(ci.low), float(ci.high), level, PAIRED, n_a, n_b, df, float(res.pvalue),
                            (var,))
        # Every seed gave the same contrast: at a few seeds that is chance (an error rate moves in steps of
        # 100 / test images), not certainty, and a zero-width paired interval would decide the claim. The cells'
        # own spreads still give an interval: Welch's, which does not rely on the pairing.
    parts = tuple(w[k] ** 2 * spread(data[k].to_numpy()) for k in keys)
    se2 = sum(p / len(data[k]) for p, k in zip(parts, keys))
    if se2 <= 0:
        return _no_spread(diff, level, n_a, n_b, float(sum(len(v) - 1 for v in data.values())), parts)
    if len(keys) == 2 and sorted(w.values()) == [-1.0, 1.0] and all(parts):
        # (a cell without spread, all its seeds alike, takes the formula below: scipy would warn of catastrophic
        # cancellation on its constant sample, and the result is the same)
        pos = next(k for k in keys if w[k] > 0)
        neg = next(k for k in keys if w[k] < 0)
        res = stats.ttest_ind(data[pos], data[neg], equal_var=False)
        ci = res.confidence_interval(level)
        return Estimate(diff, float(ci.low), float(ci.high), level, WELCH, n_a, n_b, float(res.df),
                        float(res.pvalue), parts)
    df = se2 ** 2 / sum((p / len(data[k])) ** 2 / (len(data[k]) - 1) for p, k in zip(parts, keys) if p > 0)
    half = float(stats.t.ppf(1 - alpha / 2, df)) * math.sqrt(se2)
    p = float(2 * stats.t.sf(abs(diff) / math.sqrt(se2), df))
    return Estimate(diff, diff - half, diff + half, level, WELCH, n_a, n_b, float(df), p, parts)


ROUND_OFF = 1e-6   # a spread below this fraction of the values' scale is round-off (float32 holds ~7 digits)


def spread(values: np.ndarray, scale: float | None = None) -> float:
    """The sample variance (ddof 1) of ``values``, or 0 where their standard deviation is round-off: at most
    ``ROUND_OFF`` times ``scale`` (default: their largest magnitude; for per-seed differences, the cells' values').
    Error rates move in steps of 100 / test images, far above it; a round-off spread would make a zero-width
    interval that decides any difference (or, around 0, any equivalence)."""
    values = np.asarray(values, dtype=float)
    var = float(np.var(values, ddof=1))
    if scale is None:
        scale = float(np.max(np.abs(values))) if len(values) else 0.0
    return var if math.sqrt(var) > ROUND_OFF * scale else 0.0


def _no_spread(diff: float, level: float, n_a: int, n_b: int, df: float, parts: tuple[float, ...]) -> Estimate:
    """Every seed of every cell gave the same value: no variance to build an interval from, so none (−∞, +∞), which
    decides nothing (*undecided*), rather than the point, which would decide any nonzero difference from 2 seeds."""
    return Estimate(diff, -math.inf, math.inf, level, WELCH, n_a, n_b, df, 1.0, parts)


# -- verdicts ----------------------------------------------------------------------------------------------------
def verdict(est: Estimate | None, expect: int = 0, margin: float | None = None) -> str:
    """The verdict of ``est`` for a claim that the contrast is negative (``expect`` −1: A lower than B), positive
    (+1), or no claimed direction (0); ``margin``: the difference the claim calls negligible (``within_margin``)."""
    if est is None:
        return NOT_ENOUGH
    if expect and est.excludes_zero and (est.hi < 0) == (expect < 0):
        return REPRODUCED
    if margin is not None and within_margin(est, expect, margin):
        return NON_INFERIOR if expect else EQUIVALENT
    if est.excludes_zero:
        return CONTRADICTED if expect else DECIDED
    return UNDECIDED


def within_margin(est: Estimate, expect: int, margin: float) -> bool:
    """Whether the interval rules out a difference of ``margin`` or more against the claim: for a claimed
    direction, its end on the other side (``expect`` −1: the upper end below +margin); without one, both ends
    (inside ±margin)."""
    if expect < 0:
        return est.hi < margin
    if expect > 0:
        return est.lo > -margin
    return -margin < est.lo and est.hi < margin


def power_at(est: Estimate | None, n: int, *, level: float = LEVEL, margin: float | None = None,
             expect: int = 0) -> float | None:
    """The power of the same two-sided t-test at ``level`` with ``n`` seeds per cell against a true contrast equal
    to the observed one, with the observed variances (noncentral t, ``scipy.stats.nct``; Welch–Satterthwaite degrees
    of freedom with equal seeds per cell; a paired contrast has one variance term and n − 1 degrees of freedom).
    With a ``margin`` (a claim that can also end *non-inferior*, or *equivalent* without a claimed direction
    ``expect``), the chance of deciding it either way: the larger of that power and the chance that the interval
    ends within the margin (``within_margin``).
    None when nothing can be said (no estimate, a non-finite difference, or no observed spread)."""
    from scipy import stats

    if est is None or not math.isfinite(est.diff):
        return None
    total = sum(est.parts)
    if not total > 0:
        return None
    df = max(1.0, total ** 2 * (n - 1) / sum(p * p for p in est.parts))
    nc = abs(est.diff) / math.sqrt(total / n)
    crit = stats.t.ppf(1 - (1 - level) / 2, df)
    # the lower tail as the upper tail of −T (scipy's nct.cdf far below a large nc is NaN: nc 8 at 1 df)
    rejects_zero = float(stats.nct.sf(crit, df, nc) + stats.nct.sf(crit, df, -nc))
    if margin is None:
        return rejects_zero
    return max(rejects_zero, _within_margin_chance(est.diff, math.sqrt(total / n), df, crit, margin, expect))


def _within_margin_chance(diff: float, se: float, df: float, crit: float, margin: float, expect: int) -> float:
    """The chance that the interval mean ± crit·(estimated se) ends within the margin (``within_margin``) when the
    mean is normal about ``diff`` with sd ``se`` and the estimated se is se·sqrt(chi²(df)/df): integrated over the
    chi² (exact for a paired t interval, where the noncentral t bounds undercount at few seeds). With a claimed
    direction only the end on the other side counts (``against``: the difference measured against the claim)."""
    from scipy import integrate, stats

    against = -expect * diff if expect else diff

    def given(v: float) -> float:
        half = crit * se * math.sqrt(v / df)
        below = stats.norm.cdf((margin - half - against) / se)
        if expect:
            return stats.chi2.pdf(v, df) * below
        return stats.chi2.pdf(v, df) * max(0.0, below - stats.norm.cdf((half - margin - diff) / se))

    # beyond it the half-width alone puts the end past the margin (one-sided: by 8 sd of the mean)
    reach = margin - against + 8 * se if expect else margin
    if reach <= 0:
        return 0.0
    top = df * (reach / (crit * se)) ** 2
    return float(min(1.0, integrate.quad(given, 0.0, top, limit=200)[0]))


def seeds_needed(est: Estimate | None, *, level: float = LEVEL, power: float = POWER,
                 margin: float | None = None, expect: int = 0) -> int | None:
    """Seeds per cell at which the test has ``power`` (0.8) against the observed contrast (``power_at``; with the
    claim's ``margin`` and direction ``expect``, the power to decide it either way). None when nothing can be said (no estimate,
    a zero observed difference and no margin, or no observed spread); ``SEEDS_NEEDED_CAP + 1`` for more than the cap."""
    if est is None or (est.diff == 0 and margin is None) or power_at(est, 2, level=level) is None:
        return None

    def power_of(n: int) -> float:
        return power_at(est, n, level=level, margin=margin, expect=expect)

    lo, hi = 2, 2
    while power_of(hi) < power:
        lo, hi = hi, hi * 2
        if hi > SEEDS_NEEDED_CAP:
            return SEEDS_NEEDED_CAP + 1 if power_of(SEEDS_NEEDED_CAP) < power else _bisect(power_of, lo,
                                                                                             SEEDS_NEEDED_CAP, power)
    return _bisect(power_of, lo, hi, power)


def _bisect(power_at, lo: int, hi: int, power: float) -> int:
    """The smallest n in [lo, hi] with power_at(n) >= power (power_at(hi) >= power; power rises with n)."""
    if power_at(lo) >= power:
        return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if power_at(mid) >= power:
            hi = mid
        else:
            lo = mid
    return hi


def seeds_needed_text(n: int | None) -> str:
    if n is None:
        return "no finite number (the observed difference is zero, or the seeds showed no spread)"
    if n > SEEDS_NEEDED_CAP:
        return f"more than {SEEDS_NEEDED_CAP:,}"
    return f"{n}"


SEEDS_NEEDED_METHOD = (f"seeds per cell for {POWER:.0%} power of the same two-sided t-test at the observed "
                       "difference and the observed seed-to-seed variances (noncentral t); for a claim with a margin, "
                       "to end either excluding zero or within the margin")


# -- optional stopping --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SequentialPlan:
    """A pre-planned sequence of looks at the same comparisons: seeds per cell n0, n0 + step, …, up to max_seeds.
    Every look tests at the Bonferroni-adjusted level 1 − alpha / looks, so the chance that any look of a
    comparison with no true difference declares it decided is at most alpha (the union bound over the planned
    looks; a constant boundary like Pocock 1977's, with the conservative Bonferroni constant instead of Pocock's
    exact one, which would need the joint distribution of the looks). Peeking at every round at the unadjusted
    95 % would not: simulated, 5 looks from 3 to 10 seeds decide a null comparison in about 14 % of studies, the guard in about
    3 % (tests/test_inference.py).

    ``futility`` (0: off) is a non-binding futility rule: at a look before the last, a comparison whose power at
    ``max_seeds`` seeds per cell (``power_at``: the observed difference and spread, this plan's level) is below it
    gets no more seeds. Leaving a comparison undecided can only lower the chance of a false decision, so the
    guard's α holds; a comparison with little chance of being decided by the cap stops costing trials."""
    alpha: float
    start: int          # seeds per cell at the first look (the grid's seeds)
    step: int           # seeds added per round
    max_seeds: int
    futility: float = 0.0   # power at the cap below which a comparison gets no more seeds (0: off)

    @property
    def targets(self) -> list[int]:
        """Seeds per cell at each look: start, start + step, …, max_seeds."""
        out = [self.start]
        while out[-1] < self.max_seeds:
            out.append(min(self.max_seeds, out[-1] + self.step))
        return out

    @property
    def testing_targets(self) -> list[int]:
        """The targets at which a comparison can be decided: 2 seeds per cell or more (a grid of one seed per cell
        gives its first look nothing to test, so it spends no α)."""
        return [n for n in self.targets if n >= 2]

    @property
    def looks(self) -> int:
        """The looks that share α: those at ``testing_targets``."""
        return max(1, len(self.testing_targets))

    @property
    def level(self) -> float:
        return 1 - self.alpha / self.looks

    def to_dict(self) -> dict[str, float | int]:
        return {"alpha": self.alpha, "start": self.start, "step": self.step, "max_seeds": self.max_seeds,
                "looks": self.looks, "level": self.level, "futility": self.futility}

    @classmethod
    def from_dict(cls, d: Mapping[str, float | int]) -> "SequentialPlan":
        """The plan ``to_dict`` stored (a plan stored before futility existed has none: 0)."""
        return cls(float(d["alpha"]), int(d["start"]), int(d["step"]), int(d["max_seeds"]),
                   float(d.get("futility") or 0.0))

    def describe(self) -> str:
        text = (f"{100 * self.level:.3g} % intervals: α = {self.alpha:g} shared over {self.looks} planned looks "
                f"(Bonferroni), at {', '.join(map(str, self.testing_targets))} seeds per cell")
        if self.start < 2:
            text += f" (the grid's {self.start} seed per cell is no look: it decides nothing)"
        if self.futility:
            text += (f"; futility: a comparison with under {self.futility:.0%} power at {self.max_seeds} seeds "
                     f"gets no more seeds")
        return text

    def power_at_cap(self, est: Estimate | None, margin: float | None = None, expect: int = 0) -> float | None:
        """The power of the last look's test (``max_seeds`` seeds per cell, this plan's level) at the observed
        contrast (``power_at``; with a claim's ``margin`` and direction ``expect``, to decide it either way)."""
        return power_at(est, self.max_seeds, level=self.level, margin=margin, expect=expect)
