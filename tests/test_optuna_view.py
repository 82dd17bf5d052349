"""The study as Optuna's own tools see it: grid axes are params with distributions (from enqueue to completion, on
journal, SQLite and PostgreSQL), `best_params`, `trials_dataframe()`, `get_param_importances`, metric names and
intermediate values, `sweeps.open_study`, and the real optuna-dashboard server's JSON API on a real sweep."""
from __future__ import annotations

import contextlib
import io
import json
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
import warnings
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")
from optuna.trial import TrialState  # noqa: E402

from test_sweeps import TINY_BASE, write_grid  # noqa: E402

import sweeps  # noqa: E402
from resnet_core.cli import main  # noqa: E402
from resnet_core.errors import ConfigError  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

GRID = {"model.shortcut": ["none", "identity"], "optim.lr": [0.02, 0.1]}
EXTRA = [{"model.shortcut": "identity", "model.widths": [4, 4, 8]}]   # a non-scalar value: JSON text as the param
N_TRIALS = 5   # 4 grid cells + 1 extra cell, one seed


def run_sweep(tmp_path: Path, study: str, *extra: str) -> Path:
    root = tmp_path / "runs"
    grid = write_grid(tmp_path / f"{study}.yaml", study, grid=GRID, extra_cells=EXTRA, seeds=[0])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["sweep", str(grid), "--root", str(root), "--workers", "1", *extra]) == 0
    return root


def expected_params(trial) -> dict:
    cell = trial.user_attrs["cell_params"]
    widths = cell.get("model.widths", TINY_BASE["model"]["widths"])
    return {"model.shortcut": cell["model.shortcut"], "optim.lr": cell.get("optim.lr", TINY_BASE["optim"]["lr"]),
            "model.widths": json.dumps(widths, separators=(",", ":"))}


def check_study(study) -> None:
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == N_TRIALS and all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:
        assert t.params == expected_params(t)
        assert set(t.distributions) == {"model.shortcut", "optim.lr", "model.widths"}
        assert t.intermediate_values, f"trial {t.number}: no learning curve"
        assert t.intermediate_values[max(t.intermediate_values)] == pytest.approx(t.value)
    assert study.metric_names == ["test_error"]
    best = min(trials, key=lambda t: t.value)
    assert study.best_params == expected_params(best)
    df = study.trials_dataframe()
    for col in ("params_model.shortcut", "params_optim.lr", "params_model.widths"):
        assert col in df.columns and df[col].notna().all()
    assert set(df["params_optim.lr"]) == {0.02, 0.1, 0.05}
    assert set(df["params_model.widths"]) == {"[4,8,8]", "[4,4,8]"}
    importances = optuna.importance.get_param_importances(study)
    assert set(importances) == {"model.shortcut", "optim.lr", "model.widths"}
    assert sum(importances.values()) == pytest.approx(1.0)
    assert all(v >= 0 for v in importances.values())


@pytest.fixture(scope="module")
def quick_root(tmp_path_factory) -> Path:
    return run_sweep(tmp_path_factory.mktemp("optuna-view"), "view")


def test_journal_study_is_readable_by_optunas_own_tools(quick_root):
    study = sweeps.open_study(quick_root / "view")
    assert study.study_name == "view"
    check_study(study)
    assert sweeps.open_study(quick_root / "view" / "optuna.journal", "view").study_name == "view"
    with pytest.raises(ConfigError, match="no study 'nope'.*studies there: view"):
        sweeps.open_study(quick_root / "view", "nope")


PLOTLY_PLOTS = ("plot_contour", "plot_edf", "plot_intermediate_values", "plot_optimization_history",
                "plot_parallel_coordinate", "plot_param_importances", "plot_rank", "plot_slice", "plot_timeline")


def _plotly_points(fig) -> int:
    """How many finite data points a plotly figure's traces hold (x, y, z, a parallel-coordinates axis's values)."""
    def count(values) -> int:
        if values is None:
            return 0
        if isinstance(values, (list, tuple)) or getattr(values, "ndim", 0):
            return sum(count(v) for v in values)
        return values is not None and values == values    # NaN != NaN

    return sum(count(getattr(t, a, None)) for t in fig.data for a in ("x", "y", "z")) + \
        sum(count(d.values) for t in fig.data for d in (getattr(t, "dimensions", None) or ()))


def test_optuna_visualization_plots_hold_data_on_the_journal_opened_as_optunas_docs_say(quick_root):
    """Optuna's documented way to open a journal (as the README shows it), then every optuna.visualization plot of a
    single-objective study and the matplotlib contour (plotly and scipy are dependencies)."""
    import matplotlib

    matplotlib.use("Agg")
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(quick_root / "view" / "optuna.journal")))
    study = optuna.load_study(study_name="view", storage=storage)
    assert len(study.trials) == N_TRIALS
    for name in PLOTLY_PLOTS:
        fig = getattr(optuna.visualization, name)(study)
        assert fig.data, f"{name}: no traces"
        assert _plotly_points(fig) >= 2, f"{name}: the traces hold no data"
    axes = optuna.visualization.matplotlib.plot_contour(study, params=["model.shortcut", "optim.lr"])
    assert axes.collections, "matplotlib plot_contour: nothing drawn"
    points = [c for c in axes.collections if len(c.get_offsets())]
    assert sum(len(c.get_offsets()) for c in points) >= N_TRIALS - 1, "matplotlib plot_contour: no trial points"


def test_sqlite_study_is_readable_by_optunas_own_tools(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    run_sweep(tmp_path, "view-sqlite", "--storage", url)
    check_study(sweeps.open_study(url, "view-sqlite"))


@pytest.mark.postgres
def test_postgres_study_is_readable_by_optunas_own_tools(tmp_path, pg_url):
    pytest.importorskip("psycopg2")
    name = f"pytest-view-{uuid.uuid4().hex[:8]}"
    try:
        run_sweep(tmp_path, name, "--storage", pg_url)
        check_study(sweeps.open_study(pg_url, name))
    finally:
        from sweeps.queue.storage import open_storage, resolve_storage

        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=open_storage(resolve_storage(pg_url, ".", name)))


def test_waiting_trials_carry_their_params_and_a_grid_cannot_give_a_categorical_axis_new_values(tmp_path):
    from sweeps.spec.grid import load_grid
    from sweeps.queue.storage import open_storage, resolve_storage, study_lock
    from sweeps.queue.study import create_or_load, reconcile

    grid = write_grid(tmp_path / "g.yaml", "waiting", grid=GRID, extra_cells=EXTRA, seeds=[0, 1])
    spec = load_grid(grid)
    ref = resolve_storage(f"sqlite:///{tmp_path / 's.db'}", tmp_path, spec.study)
    storage = open_storage(ref)
    with study_lock(ref, spec.study, storage):
        study, created = create_or_load(storage, spec, tmp_path / "waiting")
        plan = reconcile(study, storage, spec, tmp_path / "waiting", ref)
    assert created and plan.enqueued == 10
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    assert len(waiting) == 10
    for t in waiting:
        assert t.params == expected_params(t)
    assert all(t.distributions == waiting[0].distributions for t in waiting)
    assert set(waiting[0].distributions) == {"model.shortcut", "optim.lr", "model.widths"}
    # a numeric axis may gain values (its range widens); a categorical one cannot (Optuna keeps one distribution)
    wider = load_grid(write_grid(tmp_path / "g2.yaml", "waiting", grid={**GRID, "optim.lr": [0.02, 0.1, 0.3]},
                                 extra_cells=EXTRA, seeds=[0, 1]))
    with study_lock(ref, spec.study, storage):
        create_or_load(storage, wider, tmp_path / "waiting")
    other = load_grid(write_grid(tmp_path / "g3.yaml", "waiting", grid={**GRID, "model.shortcut": ["conv1x1"]},
                                 extra_cells=EXTRA, seeds=[0, 1]))
    with pytest.raises(ConfigError, match="model.shortcut.*another study name"):
        create_or_load(storage, other, tmp_path / "waiting")


def test_a_float_key_is_a_float_param_whose_axis_widens_with_any_number():
    """A float key (optim.lr, schedule.warmup) is a FloatDistribution even when its values are whole, so a relaunch
    with 0.5 widens it as for any numeric axis (it was an IntDistribution, and 0.5, inside 0…1, was refused as
    'outside those'); an int key stays an IntDistribution; a study stored before keeps its integer axis."""
    from optuna.distributions import FloatDistribution, IntDistribution, distribution_to_json
    from sweeps.spec.grid import parse_grid
    from sweeps.spec.params import axis_distributions, merged_space, space_attr

    def spec(**grid):
        return parse_grid({"study": "floats", "base": TINY_BASE, "grid": grid}, check_cells=False)

    first = spec(**{"schedule.warmup": [0, 1], "optim.lr": [1, 2], "model.depth": [8, 14]})
    space = axis_distributions(first)
    assert space == {"schedule.warmup": FloatDistribution(0.0, 1.0), "optim.lr": FloatDistribution(1.0, 2.0),
                     "model.depth": IntDistribution(8, 14)}
    wider = merged_space(space_attr(space), spec(**{"schedule.warmup": [0.5], "optim.lr": [0.1, 2],
                                                    "model.depth": [20]}))
    assert wider == {"schedule.warmup": FloatDistribution(0.0, 1.0), "optim.lr": FloatDistribution(0.1, 2.0),
                     "model.depth": IntDistribution(8, 20)}
    stored = {"schedule.warmup": distribution_to_json(IntDistribution(0, 1))}   # as an older version stored it
    assert merged_space(stored, spec(**{"schedule.warmup": [0, 2]})) == {"schedule.warmup": IntDistribution(0, 2)}
    with pytest.raises(ConfigError, match=r"integers 0…1; this grid gives it \[0.5\]"):
        merged_space(stored, spec(**{"schedule.warmup": [0.5]}))


def test_a_log_spaced_axis_is_a_log_scale_param_and_a_stored_scale_stays(tmp_path):
    """An lr axis 0.001, 0.01, 0.1 was a FloatDistribution with log=False, so Optuna's plots (plot_slice,
    plot_contour, the dashboard) crushed two of its three values against the left edge. Log-spaced values (ratios
    more even than differences, or two a decade apart) are log=True, on the enqueued trials too; evenly spaced ones
    and any with 0 stay linear. A study stored before keeps its scale (Optuna allows one per param name), and a log
    axis refuses 0."""
    from optuna.distributions import FloatDistribution, distribution_to_json
    from sweeps.queue.storage import open_storage, resolve_storage, study_lock
    from sweeps.queue.study import create_or_load, reconcile
    from sweeps.spec.grid import load_grid, parse_grid
    from sweeps.spec.params import axis_distributions, log_spaced, merged_space

    for values, log in (([0.001, 0.01, 0.1], True), ([0.05, 0.1, 0.2], True), ([0.01, 0.1], True),
                        ([1e-4, 5e-4], False), ([0.1, 0.2, 0.3], False), ([0.0, 0.01, 0.1], False),
                        ([0.5, 0.9, 0.99], False), ([0.1], False)):
        assert log_spaced(values) is log, values

    def spec(**grid):
        return parse_grid({"study": "logs", "base": TINY_BASE, "grid": grid}, check_cells=False)

    assert axis_distributions(spec(**{"optim.lr": [0.001, 0.01, 0.1], "optim.momentum": [0.5, 0.9]})) == {
        "optim.lr": FloatDistribution(0.001, 0.1, log=True), "optim.momentum": FloatDistribution(0.5, 0.9)}
    stored = {"optim.lr": distribution_to_json(FloatDistribution(0.01, 0.1))}   # as an older version stored it
    assert merged_space(stored, spec(**{"optim.lr": [0.001, 0.01]})) == {"optim.lr": FloatDistribution(0.001, 0.1)}
    assert merged_space(stored, spec(**{"optim.lr": [0.02, 0.05]})) == {"optim.lr": FloatDistribution(0.01, 0.1)}
    stored = {"optim.lr": distribution_to_json(FloatDistribution(0.001, 0.1, log=True))}
    assert merged_space(stored, spec(**{"optim.lr": [0.1, 0.3]})) == {
        "optim.lr": FloatDistribution(0.001, 0.3, log=True)}
    with pytest.raises(ConfigError, match=r"numbers 0.001…0.1 on a log scale; this grid gives it \[0.0, 0.1\]"):
        merged_space(stored, spec(**{"optim.lr": [0.0, 0.1]}))

    grid = load_grid(write_grid(tmp_path / "g.yaml", "logs", grid={"optim.lr": [0.001, 0.01, 0.1]}, seeds=[0]))
    ref = resolve_storage(f"sqlite:///{tmp_path / 's.db'}", tmp_path, grid.study)
    storage = open_storage(ref)
    with study_lock(ref, grid.study, storage):
        study, _ = create_or_load(storage, grid, tmp_path / "logs")
        reconcile(study, storage, grid, tmp_path / "logs", ref)
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    assert sorted(t.params["optim.lr"] for t in waiting) == [0.001, 0.01, 0.1]
    assert all(t.distributions["optim.lr"] == FloatDistribution(0.001, 0.1, log=True) for t in waiting)


# -- the real optuna-dashboard ------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 30.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        assert r.status == 200
        return json.loads(r.read())


DASHBOARD_START_S = 300.0   # import and first answer: a few seconds when idle, ten times that on a loaded machine
DASHBOARD_ANSWER_S = 120.0  # one API call (the importances fit a model): about a second when idle


def _start_dashboard(journal: Path) -> tuple[subprocess.Popen, str, list]:
    """optuna-dashboard on a free port, once it answers: (process, base URL, the study summaries). The port is
    free when picked but may be taken by another process before the dashboard binds it (tests run in parallel):
    a dashboard that exits before answering is started again on another port, three times at most."""
    for attempt in range(3):
        port = _free_port()
        proc = subprocess.Popen([sys.executable, "-m", "optuna_dashboard._cli", str(journal), "--host", "127.0.0.1",
                                 "--port", str(port), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + DASHBOARD_START_S
        try:
            while proc.poll() is None:
                try:
                    return proc, base, _get(f"{base}/api/studies", timeout=DASHBOARD_ANSWER_S)["study_summaries"]
                except OSError:
                    assert time.monotonic() < deadline, \
                        f"optuna-dashboard did not answer within {DASHBOARD_START_S:.0f} s"
                    time.sleep(0.5)
        except BaseException:
            _stop(proc)
            raise
        output = proc.stdout.read().decode()[-2000:]
        if attempt == 2 or "in use" not in output.lower():
            pytest.fail(f"optuna-dashboard exited with {proc.returncode}:\n{output}")
    raise AssertionError("unreachable")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_optuna_dashboard_api_shows_params_importances_and_curves(quick_root):
    pytest.importorskip("optuna_dashboard")
    journal = quick_root / "view" / "optuna.journal"
    proc, base, studies = _start_dashboard(journal)
    try:
        assert [s["study_name"] for s in studies] == ["view"]
        sid = studies[0]["study_id"]
        detail = _get(f"{base}/api/studies/{sid}?after=0", timeout=DASHBOARD_ANSWER_S)
        assert detail["name"] == "view" and detail["objective_names"] == ["test_error"]
        assert len(detail["trials"]) == N_TRIALS
        names = {p["name"] for p in detail["intersection_search_space"]}
        assert names == {"model.shortcut", "optim.lr", "model.widths"}
        assert detail["has_intermediate_values"] is True
        for t in detail["trials"]:
            assert {p["name"] for p in t["params"]} == names and t["intermediate_values"]
        assert {p["name"] for p in detail["best_trials"][0]["params"]} == names
        imp = _get(f"{base}/api/studies/{sid}/param_importances", timeout=DASHBOARD_ANSWER_S)["param_importances"][0]
        assert {p["name"] for p in imp} == names
        assert sum(p["importance"] for p in imp) == pytest.approx(1.0, abs=1e-6)
    finally:
        _stop(proc)


def test_open_study_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="no Optuna storage"):
        sweeps.open_study(tmp_path / "missing")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["studies", "--root", str(tmp_path)]) == 0
