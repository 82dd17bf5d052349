"""Figures from a study (matplotlib, no pyplot: each figure is a `matplotlib.figure.Figure` saved as PNG and SVG).

Only the figures the data supports are made:
- ``curves``: training and test error vs iteration, plain (left) vs residual (right), colour per depth, a thin
  line per seed and a thick mean (the layout of He et al. 2016, Fig. 6);
- ``gradnorm_layers_*``: per-layer gradient norm vs layer index, plain vs residual at the same depth, early, in the
  middle and at the end of training (log scale);
- ``probe_depth``: gradient norm at initialisation vs depth (probe.csv);
- ``ablation_bars``: mean ± std of the final error the study's objective names (test error by default) and the
  training error, when the cells differ in one axis (besides plain/residual);
- ``lesion``: test error after deleting each residual block (lesion.csv);
- ``error_edf``: per grid axis, the error EDF of each of its values — the fraction of completed runs with an
  objective error (test error by default) below each x (Radosavovic et al. 2019, pycls's design-space comparison).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from resnet_core.values import freeze

from .comparisons import grid_levels
from .study_reader import Cell, StudyData, part_label, same_except, shortcut_option, varying_keys
from .tables import metric_title

STYLE = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9, "xtick.labelsize": 9,
    "ytick.labelsize": 9, "figure.titlesize": 12, "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.6,
    "axes.spines.top": False, "axes.spines.right": False, "svg.fonttype": "path", "savefig.dpi": 150,
    "svg.hashsalt": "resnet-ablate",  # fixed clip-path ids: the same records give the same SVG bytes
}
PLAIN_COLOR, RESIDUAL_COLOR = "#d62728", "#1f77b4"
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]


@dataclass
class FigureOut:
    name: str         # file stem
    title: str
    caption: str
    png: Path
    svg: Path


def _log_y(ax) -> None:
    """Log y axis with plain-number labels ('0.01', '0.5', '2'); the 2s and 5s are labelled when the axis spans
    less than two decades, so a narrow range still has numbers on it."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    plain = FuncFormatter(lambda y, _pos: f"{y:.3g}")
    ax.yaxis.set_major_locator(LogLocator(base=10))
    ax.yaxis.set_major_formatter(plain)
    if lo > 0 and math.log10(hi / lo) < 2:
        ax.yaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
        ax.yaxis.set_minor_formatter(plain)
    else:
        ax.yaxis.set_minor_formatter(NullFormatter())


def _new_figure(figsize: tuple[float, float]):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _save(fig, out: Path, name: str, title: str, caption: str) -> FigureOut:
    png, svg = out / f"{name}.png", out / f"{name}.svg"
    fig.savefig(png, dpi=150)
    fig.set_layout_engine("none")  # keep the layout the PNG computed: the SVG is the same figure
    fig.savefig(svg, metadata={"Date": None})  # no timestamp: a rebuilt report differs only where the data does
    fig.clf()
    return FigureOut(name, title, caption, png, svg)


def _iter_formatter():
    from matplotlib.ticker import FuncFormatter

    def fmt(x: float, _pos: Any) -> str:
        if abs(x) >= 1000:
            return f"{x / 1000:g}k"
        return f"{x:g}"

    return FuncFormatter(fmt)


def _suptitle(fig, text: str) -> None:
    """A figure title wrapped to the figure's width (about 11 characters per inch at 12 pt)."""
    import textwrap

    width = int(fig.get_figwidth() * 11)
    fig.suptitle("\n".join(textwrap.wrap(text, width)) if len(text) > width else text)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", str(text)).strip("-").lower() or "x"


def _colors(keys: Iterable[str], cells: Sequence[Cell]) -> dict[str, str]:
    """A colour per colour key, assigned in order of depth then label."""
    depth_of: dict[str, tuple[float, int]] = {}
    for c in cells:
        depth_of.setdefault(c.color_key, (c.depth if isinstance(c.depth, (int, float)) else math.inf, c.order))
    ordered = sorted(set(keys), key=lambda k: depth_of.get(k, (math.inf, 0)))
    return {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(ordered)}


# ---------------------------------------------------------------------------------------------------------------
def make_figures(data: StudyData, table: pd.DataFrame, out: Path) -> list[FigureOut]:
    import matplotlib

    out.mkdir(parents=True, exist_ok=True)
    figures: list[FigureOut] = []
    with matplotlib.rc_context(STYLE):
        for maker in (fig_curves, fig_gradnorm_layers, fig_probe, fig_ablation_bars, fig_lesion, fig_error_edf):
            try:
                figures += maker(data, table, out)
            except OSError:   # a full disk, a folder not writable: not the figure's data; the report fails whole
                raise
            except Exception as e:  # one figure's bad data must not cost the whole report
                data.notes.append(f"figure {maker.__name__[4:]} skipped: {type(e).__name__}: {e}")
    return figures


# ---------------------------------------------------------------------------------------------------------------
# (a) error curves
def _series(df: pd.DataFrame, split: str, name: str) -> pd.Series:
    sel = df[(df["split"] == split) & (df["name"] == name)]
    return sel.groupby("step")["value"].mean().sort_index()


def _run_curves(data: StudyData, cell: Cell) -> list[dict[str, Any]]:
    runs = data.runs[(data.runs["cell"] == cell.id) & data.runs["run_dir"].notna()]
    curves = []
    for _, r in runs.iterrows():
        df = data.metrics(r["run_dir"])
        if df.empty:
            continue
        train = _series(df, "train", "error")
        test = _series(df, "test", "error")
        if test.empty:
            test = _series(df, "val", "error")
        if train.empty and test.empty:
            continue
        curves.append({"seed": r["seed"], "status": r["status"], "train": train, "test": test})
    return curves


def _mean_curve(series: list[pd.Series]) -> pd.Series:
    series = [s for s in series if not s.empty]
    if not series:
        return pd.Series(dtype=float)
    return pd.concat(series, axis=1).sort_index().mean(axis=1, skipna=True)


def fig_curves(data: StudyData, table: pd.DataFrame, out: Path) -> list[FigureOut]:
    cells = list(data.cells.values())
    curves = {c.id: _run_curves(data, c) for c in cells}
    cells = [c for c in cells if curves[c.id]]
    if not cells:
        return []
    kinds = [k for k in ("plain", "residual") if any((c.is_plain if k == "plain" else not c.is_plain) for c in cells)]
    colors = _colors([c.color_key for c in cells], cells)
    fig = _new_figure((5.6 * len(kinds) + 0.8 + (1.6 if len(kinds) == 1 else 0), 7.4))
    axes = fig.subplots(2, len(kinds), sharex=True, sharey="row", squeeze=False)
    rows = (("train", "training error"), ("test", "test error"))
    tops = {0: [], 1: []}
    max_step = 0
    for j, kind in enumerate(kinds):
        panel_cells = [c for c in cells if c.is_plain == (kind == "plain")]
        for i, (key, what) in enumerate(rows):
            ax = axes[i][j]
            for c in panel_cells:
                color = colors[c.color_key]
                runs = curves[c.id]
                for r in runs:
                    s = r[key]
                    if s.empty:
                        continue
                    ax.plot(s.index, s.values, color=color, lw=0.7, alpha=0.35,
                            ls="-" if r["status"] == "complete" else ":")
                    max_step = max(max_step, int(s.index.max()))
                done = [r[key] for r in runs if r["status"] == "complete"] or [r[key] for r in runs]
                mean = _mean_curve(done)
                if mean.empty:
                    continue
                n = len([s for s in done if not s.empty])
                ax.plot(mean.index, mean.values, color=color, lw=2.2, label=f"{c.label} (n={n})")
                late = mean[mean.index >= 0.1 * mean.index.max()]
                if not late.empty:
                    tops[i].append(float(np.nanmax(late.values)))
            head = "plain networks" if kind == "plain" else "residual networks"
            ax.set_title(f"{head}: {what}")
            if j == 0:
                ax.set_ylabel(f"{what} (%)")
            if i == 1:
                ax.set_xlabel("iteration")
                ax.xaxis.set_major_formatter(_iter_formatter())
            if i == 0 and ax.get_legend_handles_labels()[0]:
                ax.legend(loc="best", frameon=False, title="mean over seeds")
    for i in (0, 1):
        if tops[i]:
            top = min(100.0, max(tops[i]) * 1.15 + 1.0)
            axes[i][0].set_ylim(0, top)
    axes[0][0].set_xlim(0, max_step or None)
    _suptitle(fig, f"{data.name}: error vs iteration (thin: one seed, dotted if it did not complete; thick: mean)")
    caption = ("Training (top) and test (bottom) error against iterations, plain networks on the left and residual "
               "networks on the right, one colour per depth, as in He et al. 2016, Fig. 6. Thin lines are single "
               "seeds, thick lines their mean; the y axis is cut at 1.15× the highest mean after the first 10% of "
               "training.")
    return [_save(fig, out, "curves", "Training and test error vs iteration", caption)]


# ---------------------------------------------------------------------------------------------------------------
# (b) per-layer gradient norms
def residual_twin(plain: Cell, cells: Sequence[Cell]) -> Cell | None:
    """The residual cell that differs from ``plain`` only in its shortcut (option A first), or None."""
    twins = [c for c in cells if not c.is_plain and same_except(plain, c, {"model.shortcut", "model.project_all"})]
    order = {"A": 0, "B": 1, "C": 2, "B3": 3, "C3": 4}
    return min(twins, key=lambda c: order.get(c.option, 9)) if twins else None


def grad_runs(data: StudyData, cell: Cell, split: str = "grad_norm") -> list[pd.DataFrame]:
    """The per-layer records (``split``) of each run of ``cell`` that has some."""
    runs = data.runs[(data.runs["cell"] == cell.id) & data.runs["run_dir"].notna()]
    out = []
    for _, r in runs.iterrows():
        df = data.metrics(r["run_dir"])
        g = df[df["split"] == split]
        if not g.empty:
            out.append(g)
    return out


def layer_order(frames: Sequence[pd.DataFrame]) -> list[str]:
    """Layers in the order of first appearance (the model logs them in forward order), shortcut projections left
    out so that a plain net and its residual twin share the index."""
    names: list[str] = []
    for g in frames:
        for name in pd.unique(g["name"]):
            if name not in names and ".shortcut" not in name:
                names.append(name)
    return names


def phase_steps(frames: Sequence[pd.DataFrame]) -> list[tuple[str, int]]:
    """(phase name, step) of the logged steps a profile figure shows: the first, the middle and the last."""
    steps = sorted(set().union(*(set(g["step"].unique()) for g in frames)))
    if not steps:
        return []
    first, last = steps[0], steps[-1]
    middle = min(steps, key=lambda s: abs(s - (first + last) / 2))
    picked = [("early", first), ("middle", middle), ("end", last)]
    seen, out = set(), []
    for phase, step in picked:
        if step not in seen:
            seen.add(step)
            out.append((phase, int(step)))
    return out


def profile(g: pd.DataFrame, step: int, layers: Sequence[str], tolerance: float | None = None) -> np.ndarray:
    """The run's per-layer values at its logged step nearest ``step`` (all NaN if none is within ``tolerance``)."""
    steps = g["step"].unique()
    nearest = min(steps, key=lambda s: abs(s - step))
    if tolerance is not None and abs(nearest - step) > tolerance:
        return np.full(len(layers), np.nan)
    at = g[g["step"] == nearest].groupby("name", observed=True)["value"].mean()
    return np.array([at.get(name, np.nan) for name in layers], dtype=float)


def geometric_mean(profiles: np.ndarray) -> np.ndarray | None:
    """Per layer (column), the geometric mean of the runs' positive values; NaN for a layer no run has one of (a cell
    whose runs all diverged); None when there is no finite positive value at all."""
    positive = profiles > 0   # NaN is not
    if not (positive & np.isfinite(profiles)).any():
        return None
    n = positive.sum(axis=0)
    logs = np.log(np.where(positive, profiles, 1.0)).sum(axis=0, where=positive)
    return np.exp(np.divide(logs, n, out=np.full(logs.shape, np.nan), where=n > 0))


def _stage_boundaries(layers: Sequence[str]) -> list[tuple[int, str]]:
    out, last = [], None
    for i, name in enumerate(layers):
        m = re.match(r"(stage\d+|layer\d+)", name)
        stage = m.group(1) if m else None
        if stage and stage != last:
            out.append((i, stage))
        last = stage or last
    return out


def fig_gradnorm_layers(data: StudyData, table: pd.DataFrame, out: Path) -> list[FigureOut]:
    cells = list(data.cells.values())
    groups: list[tuple[str, str, list[Cell]]] = []  # (title, file slug, cells)
    for plain in (c for c in cells if c.is_plain):
        twin = residual_twin(plain, cells)
        if twin is not None:
            title = f"{plain.label} vs {twin.label}"
            groups.append((title, _slug(title), [plain, twin]))
    if not groups:  # no plain/residual pairs: compare the cells at each depth (at most 6)
        by_depth: dict[Any, list[Cell]] = {}
        for c in cells:
            by_depth.setdefault(freeze(c.depth), []).append(c)
        groups = [(", ".join(c.label for c in cs[:6]), f"depth-{_slug(cs[0].depth)}", cs[:6])
                  for cs in by_depth.values() if len(cs) > 1]
    figures = []
    for title, slug, group in groups:
        frames = {c.id: grad_runs(data, c) for c in group}
        group = [c for c in group if frames[c.id]]
        if len(group) < 2:
            continue
        all_frames = [g for c in group for g in frames[c.id]]
        layers = layer_order(all_frames)
        phases = phase_steps(all_frames)
        if not layers or not phases:
            continue
        colors = ({group[0].id: PLAIN_COLOR, group[1].id: RESIDUAL_COLOR} if group[0].is_plain and len(group) == 2
                  else {c.id: PALETTE[i % len(PALETTE)] for i, c in enumerate(group)})
        fig = _new_figure((4.6 * len(phases) + 0.6, 4.8))
        axes = fig.subplots(1, len(phases), sharey=True, squeeze=False)[0]
        handles: dict[str, Any] = {}
        x = np.arange(len(layers))
        tolerance = 0.05 * (phases[-1][1] - phases[0][1]) + 1  # a run that stopped early sits out the later phases
        for ax, (phase, step) in zip(axes, phases):
            counts = []
            for c in group:
                profiles = np.array([profile(g, step, layers, tolerance) for g in frames[c.id]])
                profiles = profiles[np.isfinite(profiles).any(axis=1)] if len(profiles) else profiles
                counts.append(str(len(profiles)))
                if not len(profiles):
                    continue
                for p in profiles:
                    ax.plot(x, p, color=colors[c.id], lw=0.7, alpha=0.35)
                geo = geometric_mean(profiles)
                if geo is not None:
                    (line,) = ax.plot(x, geo, color=colors[c.id], lw=2.0, marker="o", ms=2.5)
                    handles.setdefault(c.label, line)
            ax.set_yscale("log")
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            for i, stage in _stage_boundaries(layers):
                ax.axvline(i - 0.5, color="0.6", lw=0.8, ls=":")
                ax.text(i, 1.0, stage, transform=ax.get_xaxis_transform(), fontsize=8, color="0.4", va="bottom")
            when = {"early": "early in training", "middle": "middle of training", "end": "end of training"}[phase]
            ax.set_title(f"{when} (iteration {step:,}; n = {' / '.join(counts)})", pad=14)
            ax.set_xlabel(f"layer index (0 = {layers[0]}, {len(layers) - 1} = {layers[-1]})")
        for ax in axes:
            _log_y(ax)
        axes[0].set_ylabel("gradient L2 norm per layer (log scale)")
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=min(len(handles), 3),
                   frameon=False, title="thick: geometric mean over seeds; thin: one seed (n per panel in legend "
                                        "order)")
        _suptitle(fig, f"Per-layer gradient norm: {title}")
        name = "gradnorm_layers_" + slug[:80]
        caption = (f"Gradient L2 norm of each conv/linear layer in forward order, {title}, at the first, middle and "
                   "last logged iteration (each value is the mean over the logging window). Thin lines are seeds, "
                   "thick lines their geometric mean; shortcut projections are left out so both nets share the "
                   "layer index.")
        figures.append(_save(fig, out, name, f"Per-layer gradient norm: {title}", caption))
    return figures


# ---------------------------------------------------------------------------------------------------------------
# (c) gradient norm at initialisation vs depth (probe.csv)
def _probe_label(shortcut: str, activation: str, multi_act: bool, multi_family: bool, family: str) -> str:
    head = "plain" if shortcut == "none" else f"ResNet {shortcut_option(shortcut, False)} ({shortcut})"
    extra = []
    if multi_act:
        extra.append(part_label("model.activation", activation))
    if multi_family:
        extra.append(part_label("model.family", family))
    return head + (f", {', '.join(extra)}" if extra else "")


def fig_probe(data: StudyData, table: pd.DataFrame, out: Path) -> list[FigureOut]:
    df = data.probe
    if df is None or df.empty:
        return []
    df = df.copy()
    df = df[~df["layer"].astype(str).str.contains(".shortcut", regex=False)]
    df["grad_norm"] = pd.to_numeric(df["grad_norm"], errors="coerce")
    df = df.dropna(subset=["grad_norm"])
    if df.empty:
        return []
    multi_act = df["activation"].nunique() > 1
    multi_family = df["family"].nunique() > 1
    keys = df[["family", "shortcut", "activation"]].drop_duplicates().sort_values(
        ["family", "activation", "shortcut"], key=lambda s: s.map(lambda v: (v != "none", str(v))))
    depths = sorted(df["depth"].unique())
    cmap_colors = _depth_colors(depths)
    fig = _new_figure((14.5, 4.8))
    ax1, ax2 = fig.subplots(1, 2, width_ratios=(1, 1.25))
    markers = "osD^vP*X"
    for k, (_, key) in enumerate(keys.iterrows()):
        sub = df[(df["family"] == key["family"]) & (df["shortcut"] == key["shortcut"]) &
                 (df["activation"] == key["activation"])]
        label = _probe_label(key["shortcut"], key["activation"], multi_act, multi_family, key["family"])
        first = sub.loc[sub.groupby("depth")["layer_index"].transform("min") == sub["layer_index"]]
        first = first.groupby("depth")["grad_norm"].mean().sort_index()
        color = PLAIN_COLOR if key["shortcut"] == "none" else (RESIDUAL_COLOR if k < 2 else PALETTE[k % 10])
        ax1.plot(first.index, first.values, marker=markers[k % len(markers)], color=color, lw=1.8, label=label)
        ls = "--" if key["shortcut"] == "none" else "-"
        for depth in depths:
            prof = sub[sub["depth"] == depth].groupby("layer_index")["grad_norm"].mean().sort_index()
            if prof.empty:
                continue
            ax2.plot(prof.index, prof.values, ls=ls, color=cmap_colors[depth], lw=1.3,
                     label=f"{label}, depth {depth}")
    ax1.set_xscale("log")
    ax1.set_xticks(depths)
    ax1.set_xticklabels([str(d) for d in depths])
    ax1.minorticks_off()
    _log_y(ax1)
    ax1.set_xlabel("depth (layers)")
    ax1.set_ylabel("gradient L2 norm of the first layer (log scale)")
    ax1.set_title("first layer (farthest from the loss) at initialisation")
    ax1.legend(frameon=False)
    _log_y(ax2)
    ax2.set_xlabel("layer index (0 = first layer)")
    ax2.set_ylabel("gradient L2 norm (log scale)")
    ax2.set_title("every layer at initialisation (dashed: plain, solid: residual)")
    from matplotlib.ticker import MaxNLocator

    ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
               ncol=2 if len(ax2.lines) > 14 else 1)
    _suptitle(fig, "Gradient norm at initialisation vs depth (probe.csv)")
    caption = ("Gradient L2 norm at initialisation: left, the first layer's norm against depth for plain and "
               "residual networks; right, every layer's norm against its index, one colour per depth. Shortcut "
               "projections are left out.")
    return [_save(fig, out, "probe_depth", "Gradient norm at initialisation vs depth", caption)]


def _depth_colors(depths: Sequence[Any]) -> dict[Any, str]:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["viridis"]
    n = max(len(depths) - 1, 1)
    return {d: to_hex(cmap(0.85 * i / n)) for i, d in enumerate(depths)}


# ---------------------------------------------------------------------------------------------------------------
# (d) single-axis ablation bars
def ablation_layout(cells: Sequence[Cell], axes: Sequence[str] | None = None) -> tuple[str | None, bool] | None:
    """(x axis key or None, whether plain/residual is the hue) when the cells differ in one axis besides
    plain/residual; None otherwise. A block type that follows from the depth (block: auto) is not an axis."""
    keys = varying_keys(cells)
    if axes is not None and "model.block" not in axes:
        keys = [k for k in keys if k != "model.block"]
    shortcut_keys = {"model.shortcut", "model.project_all"}
    residual_opts = {c.option for c in cells if not c.is_plain}
    has_plain = any(c.is_plain for c in cells)
    hue = has_plain and len(residual_opts) == 1 and bool(set(keys) & shortcut_keys)
    rest = [k for k in keys if k not in shortcut_keys]
    if not hue and set(keys) & shortcut_keys:
        rest.append("option")
    if len(rest) == 1:
        return rest[0], hue
    if not rest and hue:
        return None, True
    return None


def _axis_value(c: Cell, key: str) -> Any:
    return c.option if key == "option" else c.attrs.get(key)


def _tick(key: str | None, value: Any) -> str:
    if key in ("model.activation", "model.pooling"):
        return part_label(key, value)
    if key == "option":
        return {"A": "A\nidentity+pad", "B": "B\n1×1 proj.", "C": "C\n1×1 proj. all", "B3": "B\n3×3 proj.",
                "C3": "C\n3×3 proj. all", "plain": "plain\n(none)"}.get(value, str(value))
    return str(value)


def _wrapped_tick(key: str | None, value: Any) -> str:
    import textwrap

    text = _tick(key, value)
    return "\n".join(textwrap.fill(line, 11) for line in text.split("\n"))


def _error_label(key: str) -> str:
    """An axis label for a summary key: "final test error (%)"."""
    return "final training error (%)" if key == "final_train_error" else f"final {metric_title(key)} (%)"


def _axis_title(key: str | None) -> str:
    if key is None:
        return "network"
    if key == "option":
        return "shortcut option (He et al. 2016)"
    return key.split(".")[-1].replace("_", " ")


def fig_ablation_bars(data: StudyData, table: pd.DataFrame, out: Path) -> list[FigureOut]:
    stats = table.set_index("cell")
    goal = data.objective_key   # the left panel: the study's objective; the right: the training (else test) error
    cells = [c for c in data.cells.values() if stats.loc[c.id, "n"] > 0
             and not math.isnan(stats.loc[c.id, f"{goal}_mean"])]
    if len(cells) < 2:
        return []
    layout = ablation_layout(cells, data.axes)
    if layout is None:
        return []
    key, hue = layout
    xs: list[Any] = []
    for c in cells:
        v = freeze(_axis_value(c, key)) if key else "all"
        if v not in xs:
            xs.append(v)
    hues = ["plain", "residual"] if hue else ["all"]
    hues = [h for h in hues if any(_hue(c, hue) == h for c in cells)]
    width = 0.8 / len(hues)
    fig = _new_figure((max(6.0, 1.3 * len(xs) * len(hues)) * 2 * 0.62 + 1, 4.6))
    axes = fig.subplots(1, 2, sharey=False)
    other = "final_test_error" if goal == "final_train_error" else "final_train_error"
    metrics = ((goal, _error_label(goal)), (other, _error_label(other)))
    paper_drawn = False
    for ax, (m, ylabel) in zip(axes, metrics):
        for h_i, h in enumerate(hues):
            for x_i, xv in enumerate(xs):
                match = [c for c in cells if _hue(c, hue) == h and (freeze(_axis_value(c, key)) if key else "all") == xv]
                if not match:
                    continue
                c = match[0]
                mean, std, n = stats.loc[c.id, f"{m}_mean"], stats.loc[c.id, f"{m}_std"], int(stats.loc[c.id, "n"])
                pos = x_i - 0.4 + width * (h_i + 0.5)
                color = PLAIN_COLOR if h == "plain" else (RESIDUAL_COLOR if h == "residual" else PALETTE[x_i % 10])
                ax.bar(pos, mean, width * 0.92, color=color, alpha=0.85,
                       yerr=std if n >= 2 and not math.isnan(std) else None, capsize=4, ecolor="0.2",
                       label=("plain" if h == "plain" else "residual") if hue else None)
                ax.annotate(f"n={n}", (pos, 0), xytext=(0, 2), textcoords="offset points", ha="center",
                            va="bottom", fontsize=8, color="white" if mean > 0 else "0.3")
                if m == "final_test_error" and c.paper is not None and c.paper.metric == "test_error":
                    from matplotlib import patheffects

                    ax.plot([pos - width * 0.45, pos + width * 0.45], [c.paper.value] * 2, color="black", lw=2.2,
                            label="paper's value" if not paper_drawn else None, zorder=1.8,
                            path_effects=[patheffects.withStroke(linewidth=4.5, foreground="white")])
                    paper_drawn = True
        ax.set_xticks(range(len(xs)))
        if key:
            ax.set_xticklabels([_wrapped_tick(key, _unfreeze(xv)) for xv in xs])
        else:
            ax.set_xticklabels([""] * len(xs))
        ax.set_xlabel(_axis_title(key))
        ax.set_ylabel(ylabel)
        ax.set_title(ylabel.replace(" (%)", ""))
        ax.set_ylim(0, ax.get_ylim()[1] * 1.05)
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=len(handles),
                   frameon=False)
    what = _axis_title(key) if key else "plain vs residual"
    _suptitle(fig, f"{data.name}: effect of {what} (mean ± std over completed {data.replicates})")
    caption = (f"Final test (left) and training (right) error for each value of {what}"
               + (", plain and residual side by side" if hue else "")
               + "; bars are means, error bars one sample standard deviation over seeds (none when n < 2), "
                 "black ticks the paper's value where one exists.")
    return [_save(fig, out, "ablation_bars", f"Effect of {what}", caption)]


def _hue(c: Cell, hue: bool) -> str:
    if not hue:
        return "all"
    return "plain" if c.is_plain else "residual"


def _unfreeze(v: str) -> Any:
    import json

    try:
        return json.loads(v)
    except Exception:
        return v


# ---------------------------------------------------------------------------------------------------------------
# (e) lesion
def fig_lesion(data: StudyData, table: pd.DataFrame, out: Path) -> list[FigureOut]:
    df = data.lesion
    if df is None or df.empty:
        return []
    df = df.copy()
    for col in ("block_index", "test_error", "baseline_error"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df = df.dropna(subset=["block_index", "test_error"])
    if df.empty:
        return []
    group_col = next((c for c in ("model", "label", "cell", "run") if c in df.columns), None)
    groups = list(df.groupby(group_col, sort=False)) if group_col else [("", df)]
    fig = _new_figure((max(9.0, 0.32 * df.groupby(group_col or (lambda _: 0)).size().max() + 5), 3.8 * len(groups)))
    axes = fig.subplots(len(groups), 1, squeeze=False)[:, 0]
    for ax, (name, g) in zip(axes, groups):
        g = g.sort_values("block_index")
        stages = [(re.match(r"(stage\d+|layer\d+)", str(b)) or re.match(r"(.*)", str(b))).group(1) for b in g["block"]]
        stage_list = list(dict.fromkeys(stages))
        colors = [PALETTE[stage_list.index(s) % 10] for s in stages]
        down = [bool(re.search(r"block0$", str(b))) and stage_list.index(s) > 0 for b, s in zip(g["block"], stages)]
        bars = ax.bar(g["block_index"], g["test_error"], color=colors, alpha=0.85, edgecolor="0.2", linewidth=0.5)
        for bar, d in zip(bars, down):
            if d:
                bar.set_hatch("//")
        base = g["baseline_error"].dropna()
        if not base.empty:
            ax.axhline(float(base.iloc[0]), color="black", ls="--", lw=1.2,
                       label=f"no block deleted: {float(base.iloc[0]):.2f} %")
        ax.set_xticks(list(g["block_index"]))
        ax.set_xticklabels([str(b).replace("stage", "s").replace(".block", ".b") for b in g["block"]],
                           rotation=90 if len(g) > 12 else 0, fontsize=8)
        ax.set_xlabel("deleted block (s = stage, b = block; hatched: downsampling block)")
        ax.set_ylabel("test error (%)")
        if len(groups) > 1:
            ax.set_title(str(name))
        from matplotlib.patches import Patch

        handles, labels = ax.get_legend_handles_labels()
        handles += [Patch(facecolor=PALETTE[i % 10], alpha=0.85, label=s) for i, s in enumerate(stage_list)]
        ax.legend(handles=handles, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        top = float(max(g["test_error"].max(), base.max() if not base.empty else 0))
        ax.set_ylim(0, min(100.0, top * 1.25 + 1))
    _suptitle(fig, "Lesion study: test error after deleting each residual block (Veit et al. 2016)")
    caption = ("Test error of the trained network with one residual block's branch deleted (the shortcut kept), "
               "for each block in forward order; the dashed line is the intact network. Hatched bars are the "
               "downsampling blocks that start a stage.")
    return [_save(fig, out, "lesion", "Lesion: test error after deleting each block", caption)]


# ---------------------------------------------------------------------------------------------------------------
# (f) per-axis error EDFs
def fig_error_edf(data: StudyData, table: pd.DataFrame, out: Path) -> list[FigureOut]:
    """One panel per grid axis with several values: for each value, the empirical distribution function of the
    final test error over its completed runs (pycls: F(e) = fraction of runs with error < e)."""
    runs = data.complete_runs()
    levels = {a: v for a, v in grid_levels(data).items() if len(v) > 1}
    if runs.empty or not levels:
        return []
    errors = pd.to_numeric(runs[data.objective_key], errors="coerce")
    fig = _new_figure((4.2 * len(levels), 3.4))
    axes = fig.subplots(1, len(levels), squeeze=False)[0]
    for ax, (axis, values) in zip(axes, levels.items()):
        for i, value in enumerate(values):
            cells = {cid for cid, c in data.cells.items() if axis in c.params and freeze(c.params[axis]) == freeze(value)}
            e = np.sort(errors[runs["cell"].isin(cells)].dropna().to_numpy())
            if len(e) == 0:
                continue
            ax.step(np.concatenate([[e[0]], e]), np.arange(len(e) + 1) / len(e), where="post",
                    color=PALETTE[i % len(PALETTE)], lw=1.8, label=f"{_tick(axis, value)} (n={len(e)})")
        ax.set_xlabel(_error_label(data.objective_key))
        ax.set_ylabel("fraction of runs with lower error")
        ax.set_ylim(0, 1.02)
        ax.set_title(_axis_title(axis))
        ax.legend(loc="lower right")
    _suptitle(fig, "Error EDF per axis value")
    better = "right" if data.maximize else "left and up"
    caption = ("For each grid axis, the fraction of completed runs (all cells and seeds with that axis value) whose "
               f"final {metric_title(data.objective_key)} (the study's objective) is below x; a curve to the {better} "
               "is better (Radosavovic et al. 2019).")
    return [_save(fig, out, "error_edf", "Error EDF per axis", caption)]
