"""The committed results regenerate: every results/<name>/ holds a study's small run records (journal, config.yaml,
metrics.jsonl, summary.json, probe.csv, lesion.csv) and the report made from them. Rebuilding the tables and the
verdicts from the records — no dataset, no training — must give the committed files back."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = sorted(p for p in (REPO / "results").glob("*") if (p / "report").is_dir())
COMPARED = ("table.md", "table.csv", "table.tex", "summary.md", "effects.csv", "trials.csv")


@pytest.mark.parametrize("result", RESULTS, ids=[p.name for p in RESULTS])
def test_committed_report_regenerates_from_the_committed_records(result, tmp_path, monkeypatch):
    from reports.cli import build_report

    study = next(p.parent.name for p in result.glob("*/optuna.journal"))
    committed = _index_copy(result, tmp_path / "committed")
    work = tmp_path / "results" / result.name
    shutil.copytree(committed, work, ignore=shutil.ignore_patterns("report"))
    monkeypatch.chdir(tmp_path)  # the same relative paths as when the committed report was made from the repo root
    out = build_report(study, root=f"results/{result.name}", out=f"results/{result.name}/report",
                       formats="md,csv,tex", figures=False)
    for name in COMPARED:
        assert (out / name).read_text() == (committed / "report" / name).read_text(), name


def _index_copy(result: Path, dest: Path) -> Path:
    """``result`` as git's index holds it (what is committed or about to be), copied under ``dest``: a study still
    running in the working copy moves its journal on; outside a git checkout, the folder itself."""
    listed = subprocess.run(["git", "ls-files", "-z", "--", str(result)], cwd=REPO, capture_output=True, text=True)
    if listed.returncode != 0 or not listed.stdout:
        return result
    subprocess.run(["git", "checkout-index", "-z", "--stdin", f"--prefix={dest}/"], cwd=REPO, check=True,
                   input=listed.stdout, capture_output=True, text=True)
    return dest / result.relative_to(REPO)


@pytest.mark.parametrize("result", RESULTS, ids=[p.name for p in RESULTS])
def test_committed_records_are_small_and_complete(result, tmp_path):
    result = _index_copy(result, tmp_path)   # what git holds: a working copy may hold a study still running
    files = [f for f in result.rglob("*") if f.is_file()]
    checkpoints = [f for f in files if f.suffix == ".pt"]
    assert not [f for f in files if "wandb" in f.relative_to(result).parts]   # no W&B files
    trials = sorted({f.parent for f in files if f.parent.parent.name == "trials"})
    assert trials
    # small per run (a 56-layer run's per-layer curves: 2.3 MiB, 4 in the pilot, which logged more often) and for
    # the rest (journal, report, tables), so a study that adds seeds on demand stays within bounds as it grows
    for trial in trials:
        size = sum(f.stat().st_size for f in trial.rglob("*") if f.is_file() and f.suffix != ".pt")
        assert size < 5 * 2**20, f"{trial} holds {size / 2**20:.1f} MiB of records"
    rest = sum(f.stat().st_size for f in files if f.suffix != ".pt" and not any(f.is_relative_to(t) for t in trials))
    assert rest < 10 * 2**20, f"{result} holds {rest / 2**20:.1f} MiB besides its run records"
    for trial in trials:
        summary = json.loads((trial / "summary.json").read_text())
        assert (trial / "config.yaml").is_file()
        if summary["status"] == "complete":   # a trial stopped before its first log has no metrics.jsonl yet
            assert summary["step"] == summary["total_steps"] and (trial / "metrics.jsonl").is_file()
    for ckpt in checkpoints:  # only the last checkpoint of a trial in progress, which a later session resumes
        assert ckpt.name == "last.pt", ckpt
        assert json.loads((ckpt.parent / "summary.json").read_text())["status"] != "complete", ckpt


def test_cpu_results_exist():
    """The CPU-budget degradation study on real CIFAR-10 is committed (issue: the claim on real data)."""
    assert (REPO / "results" / "cifar10-cpu" / "report" / "summary.md").is_file()


def test_the_compute_section_sums_the_committed_run_records():
    """summary.md's training time and core-hours are the sums over every run record's summary.json (wall_time_s,
    × threads), abandoned attempts included: what the study cost, not only what it kept."""
    import re

    from reports.compute import compute_lines
    from reports.study_reader import load_study

    result = REPO / "results" / "cifar10-cpu"
    summaries = [json.loads(p.read_text()) for p in result.glob("*/trials/*/summary.json")]
    hours = sum(s["wall_time_s"] for s in summaries) / 3600
    core_hours = sum(s["wall_time_s"] * s.get("threads", 1) for s in summaries) / 3600
    data = load_study("degradation-cpu", root=str(result))
    first = compute_lines(data)[0]
    found = re.match(r"- Training time: ([\d.]+) h over (\d+) run records .*?, ([\d.]+) core-hours", first)
    assert found, first
    assert float(found[1]) == pytest.approx(hours, abs=0.006) and int(found[2]) == len(summaries)
    assert float(found[3]) == pytest.approx(core_hours, abs=0.006)


def test_a_cell_without_an_axis_shows_its_config_value_as_written():
    """The parts study's base cell (option A, post-act, GAP) sets none of the one-factor axes: its row showed blank
    axis columns, and an axis a grid edit added showed 8.0 for 8. The row reads the cell's run config instead."""
    from reports.study_reader import load_study
    from reports.tables import cell_table

    table = cell_table(load_study("parts-cpu", root=str(REPO / "results" / "cifar10-parts"))).set_index("label")
    base = table.loc["ResNet-20 A (post-act, GAP)"]
    assert (base["project_all"], base["activation"], base["pooling"]) == (False, "post", "avg")
    assert table.loc["ResNet-20 A (post-act, GMP)", "pooling"] == "max"
    fig6 = cell_table(load_study("fig6-cpu", root=str(REPO / "results" / "cifar10-fig6")))
    assert [repr(v) for v in fig6["depth"]] == ["20", "20", "56", "56"]
