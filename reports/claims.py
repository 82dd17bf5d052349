"""The papers' claims checked against a study, written as summary.md.

A claim is listed only when the study has the cells it compares (cells that differ in exactly the attribute the
claim is about). Each is a comparison (``sweeps.verdicts.comparisons.Planned``: better − worse on a run-summary error) judged
by the one rule of ``sweeps.verdicts.inference`` (``VERDICT_RULE``, also printed in summary.md): the difference of means
with its confidence interval, paired by seed where the two cells share seeds and data order, Welch otherwise, and
a verdict of *reproduced*, *contradicted*, *undecided* (with the seeds that would decide it), *non-inferior* within
the margin the claim states, or *not enough data*. A verdict resting on a cell that did not learn (``sweeps.verdicts.dead``)
says so.

``claim_plans`` lists the claims of a grid before any result exists (``sweeps.verdicts.comparisons.CLAIM_SOURCES``: what
``sweep --until-decided`` decides).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from sweeps.verdicts.comparisons import CLAIM, Planned, Result
from sweeps.verdicts.dead import SIGMAS
from sweeps.verdicts.inference import (CONTRADICTED, NON_INFERIOR, NOT_ENOUGH, REPRODUCED, SEEDS_NEEDED_METHOD,
                                       UNDECIDED, seeds_needed_text)

from .comparisons import judge, level_text
from .compute import compute_lines
from .effects import effects_markdown
from .figures import grad_runs, layer_order, phase_steps, profile, residual_twin
from .paper import normalize_dataset, paper_number, source_short, training_recipe
from .study_reader import Cell, StudyData, make_cells, part_label, same_except
from .tables import cell_table

VERDICTS = (REPRODUCED, CONTRADICTED, NON_INFERIOR, UNDECIDED, NOT_ENOUGH)
NO_DEGRADATION_MARGIN = 1.0   # points: a deeper residual net training within this of the shallower one "does not degrade"
VERDICT_RULE = (
    "Each claim compares two cells: the difference of their mean errors (the claimed-better cell minus the other) "
    "with a confidence interval — paired by seed (Student's t on the per-seed differences) where both cells ran the "
    "same seeds with the same data order, Welch's t otherwise — with the test and n on each side. A claim is "
    "*reproduced* when the interval excludes zero on the claimed side, *non-inferior* when the claim states a "
    "margin and the interval's end on the other side lies within it (no degradation with depth: the deeper net's "
    f"training error is not higher by {NO_DEGRADATION_MARGIN:g} point or more, which supports the claim), "
    "*contradicted* when the interval excludes zero on the other side, and *undecided* otherwise; then the seeds "
    "per cell that would decide it are given ("
    + SEEDS_NEEDED_METHOD + "). Fewer than 2 completed seeds on a side is *not enough data*. A verdict resting on "
    f"a cell with a run that did not learn (test error within {SIGMAS:g} binomial standard errors of chance, or a "
    "training loss never below a uniform guess's) says so, as does one counting the completed seeds of a cell whose "
    "other seeds failed or diverged. Claims whose cells are not in the study are not listed.")

HE2016 = source_short("he2016")
HE2016B = source_short("he2016b")
# The numbers a claim's source quotes, read from paper.yaml (their one home).
_C10_110 = dict(dataset="cifar10", family="cifar", depth=110, block="basic", activation="post")
_IN_34 = dict(dataset="imagenet", family="imagenet", depth=34, block="basic", activation="post")
RESNET_1202 = paper_number(**{**_C10_110, "depth": 1202}, shortcut="identity")
RESNET_110_BEST = paper_number("best", **_C10_110, shortcut="identity")
RESNET_110_A = paper_number(**_C10_110, shortcut="identity")
RESNET_110_C = paper_number(**_C10_110, shortcut="conv1x1", project_all=True)
_C10_PRE = {depth: {act: paper_number(dataset="cifar10", family="cifar", depth=depth, shortcut="identity",
                                      activation=act) for act in ("post", "pre")} for depth in (110, 164, 1001)}
PRE_ACTIVATION_GAIN_DEPTH = 110   # He et al. 2016b test pre-activation at 110 layers and deeper, where it helps most
RESNET_34_A = paper_number(**_IN_34, shortcut="identity")
RESNET_34_B = paper_number(**_IN_34, shortcut="conv1x1", project_all=False)
RESNET_34_C = paper_number(**_IN_34, shortcut="conv1x1", project_all=True)
METRIC_TEXT = {"final_test_error": "test error", "final_train_error": "training error"}


@dataclass
class Stat:
    cell: Cell
    mean: float
    std: float
    n: int

    @property
    def label(self) -> str:
        return self.cell.label

    def text(self) -> str:
        if self.n == 0 or math.isnan(self.mean):
            return "no completed run"
        if self.n < 2 or math.isnan(self.std):
            return f"{self.mean:.2f} % (n={self.n})"
        return f"{self.mean:.2f} ± {self.std:.2f} % (n={self.n})"


@dataclass
class Claim:
    id: str
    statement: str     # the claim, for these cells
    evidence: str      # the numbers behind it
    verdict: str
    why: str           # the interval, the test and n, and which part of the rule decided
    source: str        # where the paper makes the claim
    result: Result | None = None
    dead: dict[str, str] = field(default_factory=dict)   # label → why it did not learn, for the cells it rests on
    lost: dict[str, str] = field(default_factory=dict)   # label → its seeds that failed or diverged (not counted)

    @property
    def warning(self) -> str:
        parts = []
        if self.dead:
            parts.append("Rests on a cell that did not learn: " + "; ".join(f"{k} {v}" for k, v in self.dead.items())
                         + ".")
        if self.lost:
            parts.append("Counts the completed seeds only: " + "; ".join(f"{k} {v}" for k, v in self.lost.items())
                         + ".")
        return " ".join(parts)

    def markdown(self) -> str:
        warn = f" **⚠ {self.warning}**" if self.warning else ""
        return (f"- **{self.verdict}**: {self.statement}. {self.evidence} *{self.why}.*{warn} "
                f"Source: {self.source}.")


# ---------------------------------------------------------------------------------------------------------------
def why_text(result: Result, metric: str) -> str:
    """'difference −18.70 points, 95 % CI [−35.2, −2.2] (Welch t, n = 3 vs 3): the interval excludes zero on the
    claimed side'."""
    est = result.est
    if est is None:
        return "needs ≥2 completed seeds on each side"
    base = est.describe()
    tail = {REPRODUCED: "the interval excludes zero on the claimed side",
            CONTRADICTED: "the interval excludes zero on the other side",
            NON_INFERIOR: f"the interval rules out {_points(result.plan.margin)} or more against the claim (its "
                          f"margin)" if result.plan.margin is not None else "",
            UNDECIDED: "the interval contains zero; seeds per cell to decide it ≈ "
                       f"{seeds_needed_text(result.seeds_needed)}"}.get(result.verdict, result.verdict)
    return f"{base}: {tail}"


def _points(x: float) -> str:
    """'1 point', '0.5 points'."""
    return f"{x:g} point{'' if x == 1 else 's'}"


class _Checker:
    """Lists the claims a set of cells supports, as planned comparisons (no numbers needed)."""

    def __init__(self, cells: Iterable[Cell]) -> None:
        self.cells = list(cells)
        self.plans: list[Planned] = []

    def pairs(self, vary: Iterable[str], first: Callable[[Cell], bool], second: Callable[[Cell], bool]):
        vary = set(vary)
        for a in self.cells:
            if not first(a):
                continue
            for b in self.cells:
                if b is not a and second(b) and same_except(a, b, vary):
                    yield a, b

    def add(self, id: str, statement: str, better: Cell, worse: Cell, metric: str, source: str,
            kind: str = "lower", paper_note: str | None = None) -> None:
        """Claim: ``better`` has a lower ``metric`` than ``worse`` (kind "lower"), or is not higher ("not_higher":
        an interval ruling out ``NO_DEGRADATION_MARGIN`` or more the other way supports it too: *non-inferior*)."""
        margin = NO_DEGRADATION_MARGIN if kind == "not_higher" else None
        self.plans.append(Planned(f"claim:{id}:{better.id}|{worse.id}", statement, {better.id: 1.0, worse.id: -1.0},
                                  CLAIM, metric, expect=-1, margin=margin,
                                  extra={"claim": id, "better": better.id, "worse": worse.id, "source": source,
                                         "paper_note": paper_note}))

    # -- the claims ---------------------------------------------------------------------------------------------
    def depth_claims(self) -> None:
        for plain in (True, False):
            groups: list[list[Cell]] = []
            for c in self.cells:
                if c.is_plain != plain or not isinstance(c.depth, (int, float)):
                    continue
                for g in groups:
                    if same_except(g[0], c, {"model.depth", "model.block"}):
                        g.append(c)
                        break
                else:
                    groups.append([c])
            for g in groups:
                depths = sorted({c.depth for c in g})
                if len(depths) < 2:
                    continue
                shallow = next(c for c in g if c.depth == depths[0])
                deep = next(c for c in g if c.depth == depths[-1])
                pair = f"{deep.label} vs {shallow.label}"  # as every claim names it: the difference is first − second
                if plain:
                    pair = f"{shallow.label} vs {deep.label}"  # the shallow net is the better one here
                    fig = f"{HE2016}, §4.2 and Fig. 6 left (plain-56 above plain-20; plotted, not tabulated)"
                    self.add("plain-degradation-train",
                             f"Deeper plain nets have higher training error ({pair})",
                             shallow, deep, "final_train_error", fig,
                             paper_note="curves only, no tabulated plain-net numbers")
                    self.add("plain-degradation-test",
                             f"Deeper plain nets have higher test error ({pair})",
                             shallow, deep, "final_test_error", fig)
                else:
                    self.add("residual-no-degradation",
                             f"Residual nets do not degrade with depth: {deep.label} trains at least as well as "
                             f"{shallow.label}",
                             deep, shallow, "final_train_error", f"{HE2016}, §4.2 and Fig. 6 middle", kind="not_higher",
                             paper_note="curves only")
                    if deep.paper and shallow.paper and deep.paper.value > shallow.paper.value:
                        # the paper's own exception: ResNet-1202 overfits and tests worse than ResNet-110
                        self.add("residual-depth-overfit",
                                 f"Very deep residual nets overfit: {deep.label} has higher test error than "
                                 f"{shallow.label}",
                                 shallow, deep, "final_test_error", f"{HE2016}, §4.2 and Table 6 (1202 layers: "
                                 f"{RESNET_1202:.2f} vs {RESNET_110_BEST:.2f})")
                    else:
                        self.add("residual-depth-gain",
                                 f"Deeper residual nets reach lower test error ({pair})",
                                 deep, shallow, "final_test_error", f"{HE2016}, Table 6")

    def residual_vs_plain(self) -> None:
        for plain, res in self.pairs({"model.shortcut", "model.project_all"}, lambda c: c.is_plain,
                                     lambda c: not c.is_plain):
            depth = f" {plain.depth} layers" if plain.depth is not None else ""
            source = (f"{HE2016}, Table 2 (ImageNet)" if plain.model.get("family") == "imagenet"
                      else f"{HE2016}, Fig. 6 and Table 6 (CIFAR-10)")
            self.add("residual-beats-plain", f"Residual beats plain at equal depth ({res.label} vs {plain.label},"
                                             f"{depth})",
                     res, plain, "final_test_error", source)

    def activation_claims(self) -> None:
        # (better, worse, statement, source)
        rules = (
            ("pre", "post", "Full pre-activation beats post-activation", f"{HE2016B}, Tables 2-3"),
            ("post", "bn_after_add", "The original (post-activation) unit beats BN after addition",
             f"{HE2016B}, Table 2"),
            ("post", "relu_before_add", "The original (post-activation) unit beats ReLU before addition",
             f"{HE2016B}, Table 2"),
            ("pre", "relu_only_pre", "Full pre-activation beats ReLU-only pre-activation", f"{HE2016B}, Table 2"),
        )
        for good, bad, text, source in rules:
            for a, b in self.pairs({"model.activation"}, lambda c: c.model.get("activation") == good,
                                   lambda c: c.model.get("activation") == bad):
                at = f" at {a.depth} layers" if a.depth is not None else ""
                self.add(f"activation-{good}-vs-{bad}", f"{text}{at} ({a.label} vs {b.label})", a, b,
                         "final_test_error", source, paper_note=self.shallow_pre_activation_note(a, good, bad))

    @staticmethod
    def shallow_pre_activation_note(cell: Cell, good: str, bad: str) -> str | None:
        """What the paper leads one to expect of full pre- vs post-activation below the depths it tested."""
        if (good, bad) != ("pre", "post") or not isinstance(cell.depth, (int, float)) or \
                cell.depth >= PRE_ACTIVATION_GAIN_DEPTH:
            return None
        gains = ", ".join(f"ResNet-{d} {v['post']:.2f} → {v['pre']:.2f} %" for d, v in _C10_PRE.items())
        return (f"the gain grows with depth (CIFAR-10, post → pre: {gains}) and was not measured below "
                f"{PRE_ACTIVATION_GAIN_DEPTH} layers; at {cell.depth:g} layers a small difference, likely undecided, "
                f"is expected")

    def pooling_claims(self) -> None:
        for a, b in self.pairs({"model.pooling"}, lambda c: c.model.get("pooling") == "avg",
                               lambda c: c.model.get("pooling") == "max"):
            self.add("gap-vs-gmp", f"Global average pooling (GAP) beats global max pooling (GMP) "
                                   f"({a.label} vs {b.label})", a, b, "final_test_error",
                     "He et al. 2016 use GAP (no GMP number in the papers); seed 001 discusses GAP vs GMP",
                     paper_note="no tabulated GMP result")

    def shortcut_claims(self) -> None:
        """Options A, B and C as He et al. 2016 rank them on ImageNet (Table 3: C < B < A in top-1 error, by half a
        point each), with that source's setting said for a CIFAR net; and A against projections on every block on
        CIFAR-10 (He et al. 2016b, Table 1), the one setting where that was measured. B and C are compared at one
        projection kernel (B3 against C3, never against C): otherwise two things change at once."""
        vary = {"model.shortcut", "model.project_all"}
        table3 = (f"{HE2016}, Table 3 (ImageNet ResNet-34: A {RESNET_34_A:.2f}, B {RESNET_34_B:.2f}, "
                  f"C {RESNET_34_C:.2f})")
        imagenet_note = (f"measured on ImageNet at 34 layers, where the options differ by half a point; on CIFAR-10 "
                         f"He et al. 2016b find projections on every block of ResNet-110 worse than identity "
                         f"shortcuts ({RESNET_110_C:.2f} vs {RESNET_110_A:.2f} %)")
        # (better, worse, claim, source, the family the source measured, its note for a net of another family,
        # whether the letters stand for their 3×3 variants too: B3, C3)
        rules = [("B", "A", "Projection shortcuts where the shape changes (option B) beat zero-padded identity "
                            "shortcuts (option A)", table3, "imagenet", imagenet_note, True),
                 ("C", "B", "Projections on every shortcut (option C) beat option B", table3, "imagenet",
                  imagenet_note, True),
                 ("A", "C", "Identity shortcuts (option A) beat 1×1 projections on every block (option C)",
                  f"{HE2016B}, Table 1 (CIFAR-10 ResNet-110: {RESNET_110_A:.2f} vs {RESNET_110_C:.2f})", "cifar",
                  None, False)]
        for good, bad, text, source, measured_on, elsewhere_note, any_kernel in rules:
            for a, b in self.pairs(vary, _option_is(good, any_kernel), _option_is(bad, any_kernel)):
                if a.option[1:] != b.option[1:] and "A" not in (good, bad):
                    continue   # C against B3 (or C3 against B) changes the kernel too: no claim
                same_family = a.model.get("family") == measured_on
                if not same_family and elsewhere_note is None:
                    continue
                self.add(f"shortcut-{good}-vs-{bad}", f"{text} ({a.label} vs {b.label})", a, b, "final_test_error",
                         source, paper_note=None if same_family else elsewhere_note)

    def run(self) -> list[Planned]:
        self.depth_claims()
        self.residual_vs_plain()
        self.activation_claims()
        self.pooling_claims()
        self.shortcut_claims()
        return self.plans


def _option_is(letter: str, any_kernel: bool) -> Callable[[Cell], bool]:
    """Whether a residual cell is option ``letter`` (A, B, C), or (``any_kernel``) its 3×3 variant (B3, C3)."""
    return lambda c: not c.is_plain and (c.option.rstrip("3") if any_kernel else c.option) == letter


def claim_plans(spec: Any) -> list[Planned]:
    """The claims a grid (``sweeps.spec.grid.GridSpec``) will be checked on, before it has results: the
    ``sweeps.verdicts.comparisons.CLAIM_SOURCES`` entry ``reports`` registers for ``sweep --until-decided``."""
    cells = make_cells(spec)
    return _Checker(cells.values()).run()


def check_claims(data: StudyData, table: pd.DataFrame | None = None) -> list[Claim]:
    """Every claim the study has the cells for, with its verdict."""
    if table is None:
        table = cell_table(data)
    stats = table.set_index("cell")

    def stat(cell: Cell, metric: str) -> Stat:
        row = stats.loc[cell.id]
        return Stat(cell, float(row[f"{metric}_mean"]), float(row[f"{metric}_std"]), int(row["n"]))

    plans = _Checker(data.cells.values()).run()
    claims = []
    for result in judge(data, plans):
        p = result.plan
        better, worse = data.cells[p.extra["better"]], data.cells[p.extra["worse"]]
        a, b = stat(better, p.metric), stat(worse, p.metric)
        what = METRIC_TEXT.get(p.metric, p.metric)
        evidence = f"Final {what}: {a.label} {a.text()} vs {b.label} {b.text()}"
        note = p.extra.get("paper_note")
        if note:
            evidence += f"; paper: {note}"
        elif p.metric == "final_test_error" and better.paper and worse.paper:
            evidence += (f"; paper: {better.paper.display()} vs {worse.paper.display()}"
                         + ("" if better.paper.metric == "test_error" else f" ({better.paper.metric})"))
        dead = {data.cells[c].label: why for c, why in result.dead.items()}
        lost = {data.cells[c].label: why for c, why in result.lost.items()}
        claims.append(Claim(p.extra["claim"], p.label, evidence + ".", result.verdict, why_text(result, p.metric),
                            p.extra["source"], result, dead, lost))
    return claims


# ---------------------------------------------------------------------------------------------------------------
# observations: numbers without a verdict
def paper_comparison(data: StudyData, table: pd.DataFrame) -> list[str]:
    stats = table.set_index("cell")
    lines = []
    for c in data.cells.values():
        if c.paper is None:
            continue
        s = Stat(c, float(stats.loc[c.id, "final_test_error_mean"]), float(stats.loc[c.id, "final_test_error_std"]),
                 int(stats.loc[c.id, "n"]))
        if s.n == 0:
            lines.append(f"- {c.label}: no completed run; paper {c.paper.display()} % ({c.paper.source}).")
            continue
        delta = s.mean - c.paper.value
        lines.append(f"- {c.label}: ours {s.text()} vs paper {c.paper.display()} % ({delta:+.2f} points; "
                     f"{c.paper.source}){_budget_note(data, c)}.")
    return lines


PAPER_ITERATIONS = training_recipe("cifar10")["iterations"]  # He et al. 2016, §4.2 (paper.yaml: training)


def _budget_note(data: StudyData, cell: Cell) -> str:
    """'; this study trained 1,404 iterations, 2.2 % of the paper's 64k' where the runs were shorter."""
    runs = data.runs[(data.runs["cell"] == cell.id) & (data.runs["status"] == "complete")]
    steps = pd.to_numeric(runs.get("total_steps"), errors="coerce").dropna() if "total_steps" in runs else []
    if len(steps) == 0 or normalize_dataset(cell.dataset) not in ("cifar10", "cifar10jpeg") or steps.max() >= PAPER_ITERATIONS:
        return ""
    n = int(steps.max())
    return (f"; this study trained {n:,} iterations, {100 * n / PAPER_ITERATIONS:.1f} % of the paper's "
            f"{PAPER_ITERATIONS // 1000}k")


def probe_observations(data: StudyData) -> list[str]:
    df = data.probe
    if df is None or df.empty:
        return []
    df = df[~df["layer"].astype(str).str.contains(".shortcut", regex=False)].copy()
    df["grad_norm"] = pd.to_numeric(df["grad_norm"], errors="coerce")
    lines = []
    for (family, shortcut, activation), g in df.groupby(["family", "shortcut", "activation"], sort=False):
        first = g[g.groupby("depth")["layer_index"].transform("min") == g["layer_index"]]
        first = first.groupby("depth")["grad_norm"].mean().sort_index()
        if len(first) < 2:
            continue
        kind = "plain" if shortcut == "none" else f"residual ({shortcut})"
        d0, d1 = first.index[0], first.index[-1]
        ratio = first.iloc[-1] / first.iloc[0] if first.iloc[0] else float("nan")
        where = f"{part_label('model.family', family)}, {part_label('model.activation', activation)}, {kind}"
        lines.append(f"- At initialisation ({where}), the "
                     f"first layer's gradient norm is {first.iloc[0]:.3g} at depth {d0} and {first.iloc[-1]:.3g} at "
                     f"depth {d1} (×{ratio:.3g}).")
    return lines


def lesion_observations(data: StudyData) -> list[str]:
    """One line per lesioned model (lesion.csv's `model` column; a file without it is one model): its intact test
    error, the mean / median / worst error with one block deleted, and downsampling blocks against the others."""
    df = data.lesion
    if df is None or df.empty:
        return []
    df = df.copy()
    df["test_error"] = pd.to_numeric(df["test_error"], errors="coerce")
    df["baseline_error"] = pd.to_numeric(df["baseline_error"], errors="coerce")
    models = df.groupby("model", sort=False) if "model" in df.columns else [("the network", df)]
    lines = []
    for model, g in models:
        g = g[g["test_error"].notna()]
        if g.empty:
            continue
        base = g["baseline_error"].dropna()
        worst = g.loc[g["test_error"].idxmax()]
        blocks = g["block"].astype(str)
        down = blocks.str.contains(r"block0$") & ~blocks.str.startswith("stage1")
        intact = f"intact {base.iloc[0]:.2f} % test error" if len(base) else "intact error not recorded"
        text = (f"- Lesion of {model} ({intact}): deleting one block gives {g['test_error'].mean():.2f} % on "
                f"average (median {g['test_error'].median():.2f} %, {len(g)} blocks), the worst being "
                f"{worst['block']} at {worst['test_error']:.2f} %.")
        if down.any() and (~down).any():
            text += (f" Downsampling blocks: {g.loc[down, 'test_error'].mean():.2f} % on average; the others "
                     f"{g.loc[~down, 'test_error'].mean():.2f} %.")
        broke = g[pd.to_numeric(g.get("nonfinite_images", pd.Series(0, index=g.index)), errors="coerce") > 0]
        if len(broke):
            text += (f" Deleting {', '.join(broke['block'].astype(str))} gave NaN or inf outputs on some test images "
                     f"(counted as errors).")
        lines.append(text)
    return lines


def gradient_observations(data: StudyData) -> list[str]:
    """First-layer gradient norm early in training, plain vs residual twin (from the run records)."""
    lines = []
    cells = list(data.cells.values())
    for plain in (c for c in cells if c.is_plain):
        twin = residual_twin(plain, cells)
        if twin is None:
            continue
        fp, fr = grad_runs(data, plain), grad_runs(data, twin)
        if not fp or not fr:
            continue
        layers = layer_order(fp + fr)
        phases = phase_steps(fp + fr)
        if not layers or not phases:
            continue
        step = phases[0][1]

        def first_layer(frames: Sequence[pd.DataFrame]) -> float:
            vals = [profile(g, step, layers[:1])[0] for g in frames]
            vals = [v for v in vals if v > 0]
            return float(np.exp(np.mean(np.log(vals)))) if vals else float("nan")

        p, r = first_layer(fp), first_layer(fr)
        lines.append(f"- Early in training (iteration {step:,}), the first layer ({layers[0]}) gets a gradient norm "
                     f"of {p:.3g} in {plain.label} and {r:.3g} in {twin.label} (geometric mean over seeds).")
    return lines


def verdict_counts(claims: Sequence[Claim]) -> str:
    """'1 reproduced, 2 undecided (1 resting on a cell that did not learn).'"""
    counts = {v: sum(c.verdict == v for c in claims) for v in VERDICTS}
    text = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    dead = sum(bool(c.dead) for c in claims)
    if dead:
        text += f" ({dead} resting on a cell that did not learn)"
    return text + "."


def summary_markdown(data: StudyData, table: pd.DataFrame, claims: Sequence[Claim] | None = None) -> str:
    claims = list(claims if claims is not None else check_claims(data, table))
    lines = [f"# Study `{data.name}`: claims checked", "", data.status_line(), ""]
    level = level_text(data)
    lines += ["## Claims", ""]
    if claims:
        lines += [verdict_counts(claims) + f" Intervals: {level}.", ""]
        lines += [c.markdown() for c in claims]
    else:
        lines.append("The study has no pair of cells that a claim from the papers compares.")
    lines += ["", f"*Rule.* {VERDICT_RULE}", ""]

    lines += effects_markdown(data, level)
    paper = paper_comparison(data, table)
    if paper:
        lines += ["## Against the paper's numbers", "", *paper, ""]
    obs = gradient_observations(data) + probe_observations(data) + lesion_observations(data)
    if obs:
        lines += ["## Observations (no verdict)", "", *obs, ""]
    compute = compute_lines(data)
    if compute:
        lines += ["## Compute", "", *compute, ""]
    if data.notes:
        lines += ["## Notes", "", *(f"- {n}" for n in data.notes), ""]
    return "\n".join(lines).rstrip() + "\n"


def write_summary(data: StudyData, table: pd.DataFrame, path: Path, claims: Sequence[Claim] | None = None) -> None:
    path.write_text(summary_markdown(data, table, claims))
