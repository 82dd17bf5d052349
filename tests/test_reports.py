"""Reports from a small fake study: a real Optuna journal and real run records (tests/report_fixtures.py)."""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from report_fixtures import cell_id, make_fake_study

from reports import build_report, paper_value
from reports.claims import check_claims
from reports.comparisons import effects as grid_effects
from sweeps.verdicts.inference import CONTRADICTED, NOT_ENOUGH, REPRODUCED, UNDECIDED
from reports.study_reader import load_study
from reports.tables import cell_table, display_table
from resnet_core.errors import ConfigError
from resnet_core.record import read_summary
from sweeps.queue.access import open_study
from sweeps.spec.study_format import read_spec

REPO = Path(__file__).resolve().parents[1]
FIGURES = ("curves", "gradnorm_layers_plain-20-vs-resnet-20", "gradnorm_layers_plain-56-vs-resnet-56",
           "probe_depth", "ablation_bars", "lesion")


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return make_fake_study(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def report(fake, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    # probe.csv is picked up from the study folder; the lesion file is passed explicitly
    return build_report(fake.name, root=fake.root, out=out, lesion=fake.lesion_csv)


def _by_label(table: pd.DataFrame) -> pd.DataFrame:
    return table.set_index("label")


# ---------------------------------------------------------------------------------------------------------------
def test_table_numbers_equal_the_records(fake, report):
    table = pd.read_csv(report / "table.csv")
    assert list(table["cell"]) == [cell_id(d, s) for d in (20, 56) for s in ("none", "identity")]
    for _, row in table.iterrows():
        # recompute from the run records on disk, not from anything the report wrote
        summaries = [read_summary(fake.study_dir / f"trials/{row['cell'].replace('model.', '').replace('=', '-').replace(',', '-')}-s{seed}")
                     for seed in (0, 1, 2)]
        done = [s for s in summaries if s.get("status") == "complete"]
        assert row["n"] == len(done)
        assert row["n_expected"] == 3
        for key in ("final_test_error", "best_val_error", "final_train_error", "wall_time_s"):
            values = np.array([s[key] for s in done], dtype=float)
            assert row[f"{key}_mean"] == pytest.approx(values.mean(), rel=1e-5)
            assert row[f"{key}_std"] == pytest.approx(values.std(ddof=1), rel=1e-5)
        assert row["params"] == done[0]["params"]
    by = _by_label(table)
    assert by.loc["plain-56", "n"] == 2 and by.loc["plain-56", "n_failed"] == 1   # one failed seed
    assert by.loc["ResNet-56", "n"] == 2 and by.loc["ResNet-56", "n_missing"] == 1  # one seed never ran
    assert by.loc["ResNet-20", "paper_test_error"] == 8.75
    assert by.loc["ResNet-56", "paper_test_error"] == 6.97
    assert np.isnan(by.loc["plain-20", "paper_test_error"])  # the paper plots plain nets, no table

    md = (report / "table.md").read_text()
    assert re.search(r"\| plain-56 .*\| 2/3 \|", md)
    mean, std = by.loc["ResNet-20", "final_test_error_mean"], by.loc["ResNet-20", "final_test_error_std"]
    assert f"{mean:.2f} ± {std:.2f}" in md
    assert "8.75 [1]" in md and "He et al. 2016, Table 6" in md


def test_failures_and_missing_runs_are_listed(report):
    md = (report / "table.md").read_text()
    section = md.split("## Runs not in the means", 1)[1]
    assert re.search(r"\| plain-56 +\| +2 \| failed +\| RuntimeError: CUDA out of memory \(fixture\)", section)
    assert re.search(r"\| ResNet-56 +\| +2 \| missing +\| no trial in the study", section)
    status = "10 of 12 runs complete; 1 failed; 1 missing (no trial)"
    assert status in md
    assert status in (report / "summary.md").read_text()
    html = (report / "index.html").read_text()
    assert "CUDA out of memory (fixture)" in html and status in html
    trials = pd.read_csv(report / "trials.csv")
    assert sorted(trials["status"].value_counts().items()) == [("complete", 10), ("failed", 1), ("missing", 1)]


def test_figures_are_valid_png_and_svg(report):
    from matplotlib.image import imread

    for name in FIGURES:
        png, svg = report / f"{name}.png", report / f"{name}.svg"
        assert png.exists(), name
        image = imread(png)
        assert image.ndim == 3 and image.shape[0] >= 400 and image.shape[1] >= 700, (name, image.shape)
        assert image.std() > 0.05  # not blank
        text = svg.read_text()
        assert "<svg" in text[:2000]
        assert "<dc:date>" not in text  # no timestamp: a rebuilt report changes only where the records do
    html = (report / "index.html").read_text()
    for name in FIGURES:
        assert f"src='{name}.png'" in html  # relative paths: the folder can be moved as a whole


def test_latex_table_structure(report):
    tex = (report / "table.tex").read_text()
    lines = tex.splitlines()
    idx = {rule: next(i for i, l in enumerate(lines) if l.strip() == rule)
           for rule in (r"\toprule", r"\midrule", r"\bottomrule")}
    assert idx[r"\toprule"] < idx[r"\midrule"] < idx[r"\bottomrule"]
    assert r"\begin{tabular}" in tex and r"\end{tabular}" in tex and "\\hline" not in tex
    # fits a plain article: no wall-time column, the tabular scaled down to the line width when wider
    assert "wall time" not in tex and r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%" in tex
    assert tex.index(r"\resizebox") < tex.index(r"\begin{tabular}") < tex.index(r"\end{tabular}}")
    body = lines[idx[r"\midrule"] + 1: idx[r"\bottomrule"]]
    header = lines[idx[r"\toprule"] + 1]
    assert len(body) == 4
    assert all(l.count("&") == header.count("&") for l in body)
    assert tex.count("{") == tex.count("}")
    # the best (lowest) mean test error, best val and train error: ResNet-56, bold
    resnet56 = next(l for l in body if l.startswith("ResNet-56"))
    assert resnet56.count(r"\textbf{") == 3
    assert r"\textbf{6.95 $\pm$ 0.14}" in resnet56
    assert sum(l.count(r"\textbf{") for l in body) == 3
    if shutil.which("pdflatex"):  # compile only where TeX is installed
        doc = report / "doc.tex"
        doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n\\begin{document}\n"
                       "\\input{table.tex}\n\\end{document}\n")
        proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=report,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout[-2000:]
        assert "Overfull \\hbox" not in proc.stdout, "table.tex is wider than the page"


def test_summary_verdicts_on_known_data(fake, report):
    summary = (report / "summary.md").read_text()
    assert ("- **reproduced**: Deeper plain nets have higher training error (plain-20 vs plain-56)" in summary)
    assert "- **reproduced**: Residual beats plain at equal depth (ResNet-56 vs plain-56" in summary
    claims = {c.id: c for c in check_claims(load_study(fake.name, root=fake.root))}
    assert claims["plain-degradation-train"].verdict == REPRODUCED
    assert claims["residual-no-degradation"].verdict == REPRODUCED
    assert claims["residual-depth-gain"].verdict == REPRODUCED
    # claims whose cells are not in the study are not listed
    assert not any(k.startswith(("activation", "gap", "shortcut")) for k in claims)


def test_swapped_depths_are_contradicted(tmp_path):
    fake = make_fake_study(tmp_path, "swapped", finals={(20, "none"): (10.0, 13.0), (56, "none"): (6.0, 9.6)},
                           probe=False, lesion=False)
    claims = {c.id: c for c in check_claims(load_study(fake.name, root=fake.root))}
    assert claims["plain-degradation-train"].verdict == CONTRADICTED
    assert claims["plain-degradation-test"].verdict == CONTRADICTED


def test_one_seed_is_not_enough_data_and_an_interval_across_zero_is_undecided(tmp_path):
    one = make_fake_study(tmp_path / "a", "one-seed", seeds=(0,), failed=(), missing=(), probe=False, lesion=False)
    claims = check_claims(load_study(one.name, root=one.root))
    assert claims and all(c.verdict == NOT_ENOUGH for c in claims)
    # plain-56 seed 2 failed: the cells do not share seeds, so Welch (the fixture's per-seed offsets are the same
    # in every cell: paired differences would have no spread at all)
    close = make_fake_study(tmp_path / "b", "overlap", finals={(56, "none"): (6.05, 9.65)}, missing=(),
                            probe=False, lesion=False)
    claims = {c.id: c for c in check_claims(load_study(close.name, root=close.root))}
    claim = claims["plain-degradation-train"]
    assert claim.verdict == UNDECIDED and claim.result.est.lo < 0 < claim.result.est.hi
    assert "seeds per cell to decide it ≈" in claim.why


def test_a_verdict_names_the_seeds_that_failed_or_diverged_in_its_cells(tmp_path):
    """A verdict counts the completed seeds only: plain-56 with 2 of its 4 seeds failed read "(n=2)", "n = 4 vs 2"
    and nothing more, so a claim resting on the seeds that survived the recipe read as one resting on all of them
    (a recipe that diverges in half its seeds can look good on the rest). The claims and effects on such a cell
    name what they leave out; the others say nothing."""
    fake = make_fake_study(tmp_path, "lost-seeds", seeds=(0, 1, 2, 3), failed=((56, "none", 2), (56, "none", 3)),
                           missing=(), probe=False, lesion=False)
    claims = check_claims(load_study(fake.name, root=fake.root))
    on_plain56 = [c for c in claims if "plain-56" in c.statement]
    assert on_plain56 and all("plain-56 2 of 4 seeds left out (2 failed)" in c.markdown() for c in on_plain56)
    assert all(not c.lost and "left out" not in c.markdown() for c in claims if c not in on_plain56)
    out = build_report(fake.name, root=str(fake.root), out=str(tmp_path / "report"), formats="md,html",
                       figures=False)
    summary = (out / "summary.md").read_text()
    assert "count the completed seeds only, and are marked ⚠: plain-56 2 of 4 seeds left out (2 failed)." in summary
    assert "depth 56 − 20 ⚠" in summary
    assert "plain-56 2 of 4 seeds left out (2 failed)" in (out / "index.html").read_text()


def test_running_and_waiting_trials_are_counted(tmp_path):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    fake = make_fake_study(tmp_path, "live", probe=False, lesion=False)
    storage = JournalStorage(JournalFileBackend(str(fake.study_dir / "optuna.journal")))
    study = optuna.load_study(study_name=fake.name, storage=storage)
    trial = study.ask()  # a worker took ResNet-56 seed 2 and is still running (no run record yet)
    trial.set_user_attr("cell", cell_id(56, "identity"))
    trial.set_user_attr("cell_params", {"model.depth": 56, "model.shortcut": "identity"})
    trial.set_user_attr("seed", 2)
    trial.set_user_attr("run_dir", "trials/depth-56-shortcut-identity-s2")
    study.enqueue_trial({}, user_attrs={"cell": cell_id(56, "none"), "seed": 2,  # plain-56 s2 queued for a retry
                                        "cell_params": {"model.depth": 56, "model.shortcut": "none"},
                                        "run_dir": "trials/depth-56-shortcut-none-s2"})
    data = load_study(fake.name, root=fake.root)
    assert data.counts()["running"] == 1 and data.counts()["waiting"] == 1
    assert data.counts()["missing"] == 0 and data.counts()["failed"] == 0
    assert "1 running" in data.status_line() and "1 waiting" in data.status_line()


@pytest.mark.parametrize("statuses, incomplete", [(["complete", "pruned", "pruned"], False),
                                                    (["complete", "diverged"], False),
                                                    (["complete", "interrupted"], True),
                                                    (["complete", "waiting"], True),
                                                    (["complete", "missing"], True)])
def test_status_line_calls_a_study_incomplete_only_while_a_relaunch_would_run_something(fake, statuses, incomplete):
    """A search study whose other trials were pruned (or a grid with a diverged run) has ended: the report said
    "The study is incomplete", which sends a researcher to relaunch a sweep with nothing left to run."""
    data = load_study(fake.name, root=fake.root)
    data.runs = pd.DataFrame({"status": statuses})
    line = data.status_line()
    assert ("incomplete" in line) == incomplete, line
    assert "numbers use the completed runs only" in line.lower(), line


def test_report_takes_a_study_folder_as_sweep_prints_it(fake, tmp_path, capsys, monkeypatch):
    """`sweep` prints the study folder (runs/<study>); `report runs/<study>` was refused as an unknown study named
    'runs/<study>'. A folder holding optuna.journal, without --root or --storage, is the study and its root."""
    from resnet_core.cli import main

    monkeypatch.chdir(fake.root)
    assert main(["report", f"{fake.name}/", "--root", "elsewhere", "--out", str(tmp_path / "x"), "--no-figures"]) == 2
    assert "unknown study" in capsys.readouterr().err            # with --root, the argument is a study name
    assert main(["report", str(fake.study_dir), "--out", str(tmp_path / "by-folder"), "--no-figures",
                 "--lesion", str(fake.lesion_csv)]) == 0
    assert f"report for {fake.name} written to" in capsys.readouterr().out
    ours = (tmp_path / "by-folder" / "summary.md").read_text()
    direct = build_report(fake.name, root=fake.root, out=tmp_path / "direct", lesion=fake.lesion_csv, figures=False)
    assert ours == (direct / "summary.md").read_text()


def test_unknown_study_lists_the_studies(fake, tmp_path):
    with pytest.raises(ConfigError) as err:
        build_report("no-such-study", root=fake.root, out=tmp_path)
    message = str(err.value)
    assert fake.name in message and "no-such-study" in message and "\n" not in message
    with pytest.raises(ConfigError, match=re.escape(fake.name)):  # a journal given as --storage
        load_study("no-such-study", storage=str(fake.study_dir / "optuna.journal"))
    import optuna

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    optuna.create_study(study_name="in-sqlite", storage=url)
    with pytest.raises(ConfigError, match="in-sqlite"):
        load_study("no-such-study", storage=url)


def test_bad_format_and_bad_inputs(fake, tmp_path):
    with pytest.raises(ConfigError, match="md, csv, tex, html"):
        build_report(fake.name, root=fake.root, out=tmp_path, formats="md,pdf")
    with pytest.raises(ConfigError, match="not found"):
        load_study(fake.name, root=fake.root, probe=tmp_path / "absent.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="block_index"):
        load_study(fake.name, root=fake.root, lesion=bad)


LESION_HEADER = "model,study,run,block,block_index,lesionable,test_error,baseline_error"


def _lesion_rows(run: str, study: str = "", model: str = "ResNet-20, seed 0", base: float = 31.0,
                 errors: tuple[str, ...] = ("40.0", "60.0", "35.0")) -> list[str]:
    """lesion.csv rows of one run, as `resnet-ablate lesion` writes them: three blocks of a ResNet."""
    blocks = ("stage1.block0", "stage2.block0", "stage2.block1")
    return [f'"{model}",{study},{run},{b},{i},True,{e},{base}' for i, (b, e) in enumerate(zip(blocks, errors))]


def _trial(fake, depth: int, shortcut: str, seed: int) -> str:
    from report_fixtures import slug

    return f"trials/{slug(cell_id(depth, shortcut))}-s{seed}"


def test_lesion_rows_of_another_study_are_refused_or_left_out(fake, tmp_path):
    """A tester's lesion.csv of runs/tiny's and runs/part's ResNet-8 seed 0: the report of tiny said '6 blocks' for
    a 3-block net, averaging part's rows in. Given with --lesion, rows of another study's run are refused (one line
    naming the run and its study); found in the study folder, they are left out with a note."""
    from reports.claims import lesion_observations

    own, other = _trial(fake, 20, "identity", 0), f"../other/{_trial(fake, 20, 'identity', 0)}"
    given = tmp_path / "les.csv"
    given.write_text("\n".join([LESION_HEADER, *_lesion_rows(f"{fake.root.name}/{fake.name}/{own}", fake.name),
                                 *_lesion_rows(f"{fake.root.name}/other/{own}", "other", base=29.0)]) + "\n")
    shutil.copytree(fake.root, tmp_path / fake.root.name, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("report*", "*.csv"))  # the file names runs beside it
    root = tmp_path / fake.root.name
    with pytest.raises(ConfigError, match=re.escape(f"{fake.root.name}/other/{own} (study 'other') is not a run of "
                                                    f"study {fake.name!r}")):
        load_study(fake.name, root=root, lesion=given)
    # a row naming no study is checked by its run folder alone: a folder that is no run of this study is foreign
    given.write_text("\n".join([LESION_HEADER, *_lesion_rows(f"{fake.root.name}/{fake.name}/{own}"),
                                 *_lesion_rows(f"elsewhere/{own}", base=29.0)]) + "\n")
    with pytest.raises(ConfigError, match=re.escape(f"elsewhere/{own} is not a run of study")):
        load_study(fake.name, root=root, lesion=given)

    (root / fake.name / "lesion.csv").write_text(
        "\n".join([LESION_HEADER, *_lesion_rows(own, fake.name), *_lesion_rows(other, "other", base=29.0)]) + "\n")
    data = load_study(fake.name, root=root)
    assert data.lesion["run"].tolist() == [own] * 3
    assert any(f"the rows of {other} (study 'other') left out" in n for n in data.notes), data.notes
    [line] = lesion_observations(data)
    assert "(intact 31.00 % test error)" in line and "3 blocks" in line, line


def test_two_runs_under_one_model_label_are_two_lesion_lines(fake, tmp_path):
    """Two runs of one study that `lesion` labels alike (ResNet-20 A and B at seed 0 are both 'ResNet-20, seed 0'):
    each keeps its own line and intact error, its run folder after the label, where they were merged before."""
    from reports.claims import lesion_observations

    a, b = (os.path.relpath(fake.study_dir / _trial(fake, 20, s, 0), tmp_path) for s in ("identity", "none"))
    given = tmp_path / "two-runs.csv"
    given.write_text("\n".join([LESION_HEADER, *_lesion_rows(a), *_lesion_rows(b, base=25.0,
                                                                               errors=("50", "70", "45"))]) + "\n")
    lines = lesion_observations(load_study(fake.name, root=fake.root, lesion=given))
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"- Lesion of ResNet-20, seed 0 ({a}) (intact 31.00 % test error)"), lines
    assert lines[1].startswith(f"- Lesion of ResNet-20, seed 0 ({b}) (intact 25.00 % test error)"), lines


@pytest.mark.parametrize("cell", ["abc", "inf", "-inf", "nan", ""])
def test_a_lesion_value_that_is_no_finite_number_is_refused(fake, tmp_path, cell):
    """An explicit --lesion file whose test error is 'abc' (the row was dropped) or 'inf' (the report said 'gives inf
    % on average'): one line naming the file, row and column, exit 2, no report; found in the study folder, the file
    is left out with a note."""
    from resnet_core.cli import main

    rows = _lesion_rows(_trial(fake, 20, "identity", 0), errors=("40.0", cell, "35.0"))
    given = tmp_path / "les.csv"
    given.write_text("\n".join([LESION_HEADER, *rows]) + "\n")
    where = f"lesion file {given}, row 2 (line 3), column test_error: {cell!r} is not a finite number"
    with pytest.raises(ConfigError, match=re.escape(where)):
        load_study(fake.name, root=fake.root, lesion=given)
    out = tmp_path / "rep"
    code = main(["report", fake.name, "--root", str(fake.root), "--lesion", str(given), "--out", str(out),
                 "--no-figures"])
    assert code == 2 and not out.exists()

    study = tmp_path / "study"
    shutil.copytree(fake.root, study, ignore=shutil.ignore_patterns("report*", "*.csv"))
    (study / fake.name / "lesion.csv").write_text(
        "\n".join([LESION_HEADER, *_lesion_rows(_trial(fake, 20, "identity", 0), errors=("40.0", cell, "35.0"))])
        + "\n")
    data = load_study(fake.name, root=study)
    assert data.lesion is None and any("column test_error" in n and "left out" in n for n in data.notes)


def test_a_lesion_file_with_one_models_blocks_twice_is_refused(fake, tmp_path):
    """A file written before rows named their run, holding one label's blocks twice (the same checkpoint lesioned
    twice, or two studies' runs): refused, where the rows were averaged as one model."""
    given = tmp_path / "old.csv"
    old = ["model,block,block_index,lesionable,test_error,baseline_error",
           '"ResNet-8, seed 0",stage1.block0,0,True,70.0,76.0', '"ResNet-8, seed 0",stage2.block0,1,True,74.5,76.0',
           '"ResNet-8, seed 0",stage1.block0,0,True,69.5,75.0', '"ResNet-8, seed 0",stage2.block0,1,True,74.5,75.0']
    given.write_text("\n".join(old) + "\n")
    with pytest.raises(ConfigError, match=re.escape("block 'stage1.block0' of model 'ResNet-8, seed 0' is in rows 1 "
                                                    "and 3")):
        load_study(fake.name, root=fake.root, lesion=given)
    given.write_text("\n".join(old[:3]) + "\n")  # without the repeat, as before: no run column, no check
    assert load_study(fake.name, root=fake.root, lesion=given).lesion["test_error"].tolist() == [70.0, 74.5]


def test_cli_report_command(fake, tmp_path, capsys):
    from reports.cli import register

    parser = argparse.ArgumentParser(prog="resnet-ablate")
    register(parser.add_subparsers(dest="command"))
    out = tmp_path / "cli"
    args = parser.parse_args(["report", fake.name, "--root", str(fake.root), "--out", str(out), "--format", "md,csv",
                              "--no-figures"])
    assert args.func(args) == 0
    assert (out / "table.md").exists() and (out / "table.csv").exists() and (out / "summary.md").exists()
    assert not (out / "table.tex").exists() and not (out / "index.html").exists()
    printed = capsys.readouterr().out
    assert "10 of 12 runs complete" in printed


def test_a_report_replaces_the_last_one_and_lists_only_what_it_wrote(fake, tmp_path, capsys):
    """A report with fewer formats (or the sweep's W&B summary, md and csv) into a folder holding a full report left
    the old index.html, table.tex and figures beside it, showing an older state of the study, and the command
    listed the old index.html as written. The report's manifest (report.json) says what the last one wrote; what
    this one does not rewrite is removed, and a file that is not the report's is left alone."""
    from resnet_core.cli import main
    from reports.cli import MANIFEST, report_files

    out = tmp_path / "rep"
    assert main(["report", fake.name, "--root", str(fake.root), "--out", str(out)]) == 0
    full = report_files(out)
    assert {"index.html", "table.tex", "summary.md", "curves.png", "curves.svg"} <= set(full)
    assert all((out / name).is_file() for name in full)
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(["report", fake.name, "--root", str(fake.root), "--out", str(out), "--format", "md",
                 "--no-figures"]) == 0
    printed = capsys.readouterr().out
    assert report_files(out) == ["table.md", "summary.md"]
    assert sorted(p.name for p in out.iterdir()) == sorted(["table.md", "summary.md", MANIFEST, "notes.txt"])
    assert "index.html" not in printed and f"{out / 'summary.md'}" in printed


def test_a_report_that_fails_part_way_leaves_the_last_one_whole(fake, tmp_path, capsys, monkeypatch):
    """A full disk (or a kill) while a report was written left index.html cut off at 4096 bytes, the tables of the
    new report beside the figures of the old, and a one-line error naming no file; an OSError while a figure was
    saved was noted as "figure … skipped" and the report went on. The report is written whole into a stage and
    moved into place: the failure leaves the last report as it was, byte for byte, and names the folder."""
    import errno

    import reports.html
    from resnet_core.cli import main

    out = tmp_path / "rep"
    assert main(["report", fake.name, "--root", str(fake.root), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "index.html" in before and "curves.png" in before
    capsys.readouterr()

    def cut_short(data, table, claims, figures, folder, files=()):   # the disk fills part-way through index.html
        (folder / "index.html").write_text("<!DOCTYPE html>\n<html><head>")
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(reports.html, "write_html", cut_short)
        code = main(["report", fake.name, "--root", str(fake.root), "--out", str(out), "--format", "md,html"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "no space left" in err and str(out) in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before   # nothing cut short, nothing removed

    import matplotlib.figure

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(matplotlib.figure.Figure, "savefig", full)
        code = main(["report", fake.name, "--root", str(fake.root), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "no space left" in err, err   # not "figure curves skipped"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_killed_reports_stage_is_removed_by_the_next_report(fake, tmp_path):
    import sys

    from reports.cli import HOST, STAGE_PREFIX

    out = tmp_path / "rep"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / f"{STAGE_PREFIX}{int(dead.stdout)}@{HOST}@abc.tmp"    # a report killed while it wrote
    stale.mkdir()
    (stale / "table.md").write_text("| half")
    live = out / f"{STAGE_PREFIX}{os.getpid()}@{HOST}@def.tmp"          # a report still being written
    live.mkdir()
    other = out / f"{STAGE_PREFIX}{int(dead.stdout)}@{HOST}-2@ghi.tmp"  # another host's: its pid means nothing here
    other.mkdir()
    build_report(fake.name, root=fake.root, out=out, formats="md", figures=False)
    assert not stale.exists() and live.is_dir() and other.is_dir()
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["report.json", "summary.md",
                                                                                  "table.md"]


def test_a_report_into_another_studys_report_folder_is_refused(fake, tmp_path, capsys):
    from resnet_core.cli import main

    other = make_fake_study(tmp_path / "runs", "other-study", probe=False, lesion=False)
    out = tmp_path / "rep"
    assert main(["report", fake.name, "--root", str(fake.root), "--out", str(out), "--no-figures"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    code = main(["report", other.name, "--root", str(other.root), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"holds the report of study {fake.name!r}" in err and "another --out" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before   # nothing written, nothing removed


def test_a_report_from_the_storage_alone_finds_the_runs_where_the_sweep_put_them(tmp_path, capsys, monkeypatch):
    """Swept with `--storage X.journal --root r2`, reported with `--storage X.journal` alone: the report looked for
    run records under runs/, found none, said nothing, and counted "1 run record (2 complete runs, -1 other
    attempts)". It reads them from the study folder the sweep recorded and writes the report beside them."""
    import yaml

    from resnet_core.cli import main

    monkeypatch.chdir(tmp_path)
    grid = {"study": "sj", "base": {"data": {"name": "synthetic", "synthetic": {"image_size": 16, "num_classes": 4,
                                                                              "n_train": 128, "n_test": 64}},
                                    "model": {"family": "cifar", "depth": 8},
                                    "schedule": {"name": "constant", "unit": "iter", "total": 2},
                                    "batch_size": 64, "device": "cpu"},
            "grid": {"model.shortcut": ["none", "identity"]}, "seeds": [0]}
    (tmp_path / "sj.yaml").write_text(yaml.safe_dump(grid))
    assert main(["sweep", "sj.yaml", "--workers", "1", "--storage", "sj.journal", "--root", "r2",
                 "--wandb", "off"]) == 0
    capsys.readouterr()
    assert main(["report", "sj", "--storage", "sj.journal", "--no-figures"]) == 0
    assert "r2/sj/report/summary.md" in capsys.readouterr().out
    summary = (tmp_path / "r2" / "sj" / "report" / "summary.md").read_text()
    assert "over 2 run records (2 complete runs)" in summary, summary
    assert not (tmp_path / "runs").exists()


def test_the_compute_line_counts_run_folders_even_when_their_records_are_not_found(fake):
    from reports.compute import compute_lines

    data = load_study(fake.name, root=fake.root)
    lost = data.trials.assign(run_dir=None)   # records not found: no resolved folder
    line = compute_lines(type(data)(**{**data.__dict__, "trials": lost}))[0]
    assert line == compute_lines(data)[0] and "-" not in line.split("(")[1].split(")")[0], line


def test_the_compute_section_states_the_work_trained_again_after_hard_stops(fake):
    from reports.compute import compute_lines

    data = load_study(fake.name, root=fake.root)
    assert not any("trained again" in line for line in compute_lines(data))     # none lost: no line
    first = data.trials.index[0]
    lost = data.trials.assign(lost_wall_time_s=0.0, threads=2.0)
    lost.loc[first, "lost_wall_time_s"] = 900.0
    lines = compute_lines(type(data)(**{**data.__dict__, "trials": lost}))
    found = [line for line in lines if "trained again" in line]
    assert len(found) == 1 and ": 0.25 h in 1 run, 0.50 core-hours, not in the training time above." in found[0], lines


def _with_clocks(data, **columns):
    """The fake study's trials with every record's clock set to one hour and ``columns`` assigned."""
    trials = data.trials.assign(wall_time_s=3600.0, lost_wall_time_s=0.0, threads=2.0, device="cpu",
                                fused_members=1.0, fused_with=None).assign(**columns)
    return type(data)(**{**data.__dict__, "trials": trials})


def test_a_fused_runs_clock_counts_once_not_once_per_member(fake):
    """The G members of a fused run each record the run's clock: the compute line summed them, G hours of
    training and G × threads core-hours for one hour on one machine. It counts the run once, for its longest
    member (a member that diverged early stopped its own clock)."""
    from reports.compute import compute_lines

    data = load_study(fake.name, root=fake.root)
    n = len(data.trials[data.trials["wall_time_s"].notna()])
    assert compute_lines(_with_clocks(data))[0].startswith(f"- Training time: {n:.2f} h over {n} run records")
    first = data.trials.index[:4]
    group = tuple(int(t) for t in data.trials.loc[first, "trial"])
    fused = _with_clocks(data)
    fused.trials.loc[first, "fused_members"] = 4.0
    fused.trials["fused_with"] = fused.trials["fused_with"].astype(object)
    for i in first:
        fused.trials.at[i, "fused_with"] = group
    fused.trials.loc[first[1], "wall_time_s"] = 900.0        # a member that stopped early
    line = compute_lines(fused)[0]
    assert line.startswith(f"- Training time: {n - 3:.2f} h over {n} run records"), line
    assert "4 of the records trained as 1 fused run of 4 members" in line, line
    assert f"{2 * (n - 3):.2f} core-hours (2 threads per run" in line, line


def test_an_accelerator_run_costs_device_hours_not_core_hours(fake):
    """A run on a GPU records no threads: it counted as one CPU core per run. Its hours are device-hours on its
    accelerator, beside the CPU runs' core-hours."""
    from reports.compute import compute_lines

    data = load_study(fake.name, root=fake.root)
    n = len(data.trials[data.trials["wall_time_s"].notna()])
    gpu = _with_clocks(data, device="cuda:0", threads=float("nan"), lost_wall_time_s=1800.0)
    lines = compute_lines(gpu)
    assert lines[0].endswith(f", {n:.2f} device-hours on cuda (one device per run; `summary.json`'s wall_time_s)."), lines
    assert "core-hours" not in lines[0]
    assert f"{n / 2:.2f} device-hours on cuda, not in the training time above" in lines[1], lines
    mixed = _with_clocks(data)
    mixed.trials.loc[data.trials.index[0], ["device", "threads"]] = ["cuda:1", float("nan")]
    line = compute_lines(mixed)[0]
    assert f"{2 * (n - 1):.2f} core-hours (2 threads per run; " in line and "; 1.00 device-hours on cuda (" in line, line


def test_a_non_finite_value_in_a_run_record_is_named_and_the_studys_value_is_used(fake, tmp_path, capfd):
    """A run record whose final_test_error became NaN: the table showed the cell as n 2/2 with a mean over one
    value, and the claims said "not enough data", silently. The report names the record and takes the value the
    study holds (a worker copies it into the trial when the run completes)."""
    import json

    root = tmp_path / "runs"
    shutil.copytree(fake.root / fake.name, root / fake.name)
    data = load_study(fake.name, root=root)
    run = data.runs[(data.runs["status"] == "complete")].iloc[0]
    path = Path(run["run_dir"]) / "summary.json"
    record = json.loads(path.read_text())
    record["final_test_error"] = float("nan")
    path.write_text(json.dumps(record))
    capfd.readouterr()
    damaged = load_study(fake.name, root=root)
    warned = capfd.readouterr().err
    assert f"{path}: final_test_error is nan, the study holds {run['final_test_error']}" in warned, warned
    again = damaged.runs.set_index("trial").loc[run["trial"]]
    assert again["status"] == "complete" and again["final_test_error"] == run["final_test_error"]
    assert cell_table(damaged).equals(cell_table(data))   # the same table as from the undamaged records


def test_a_damaged_config_yaml_of_one_run_is_named_and_the_report_is_written(fake, tmp_path, capfd):
    """One trial's config.yaml torn (a full disk, a kill mid-copy): `report` stopped with "not valid YAML" and wrote
    nothing for the whole study, where a damaged summary.json or metrics.jsonl is named and read around. The
    report names the file and takes that run's config from the study's grid: the same table as before."""
    root = tmp_path / "runs"
    shutil.copytree(fake.root / fake.name, root / fake.name)
    data = load_study(fake.name, root=root)
    run = data.runs[(data.runs["status"] == "complete")].iloc[0]
    path = Path(run["run_dir"]) / "config.yaml"
    assert path.is_file()
    path.write_text(path.read_text()[:40] + "\n- [")
    capfd.readouterr()
    damaged = load_study(fake.name, root=root)
    warned = capfd.readouterr().err
    assert f"{path}: not valid YAML" in warned and f"trial {int(run['trial'])}'s run config" in warned, warned
    assert cell_table(damaged).equals(cell_table(data))
    build_report(fake.name, root=root, out=tmp_path / "report")
    assert (tmp_path / "report" / "summary.md").is_file()


def test_paper_values():
    value, source = paper_value("cifar10", {"family": "cifar", "depth": 20, "shortcut": "identity"})
    assert value == 8.75 and "He et al. 2016" in source and "Table 6" in source
    r110 = paper_value("CIFAR-10", {"depth": 110})  # defaults: identity (option A), post-activation
    assert r110.value == 6.61 and r110.std == 0.16 and r110.best == 6.43 and "6.43" in r110.source
    assert paper_value("cifar10", {"depth": 110, "activation": "pre"}).value == 6.37
    assert paper_value("cifar10", {"depth": 110, "activation": "bn_after_add"}).value == 8.17
    assert paper_value("cifar10", {"depth": 110, "shortcut": "conv1x1", "project_all": True}).value == 12.22
    assert paper_value("cifar10", {"depth": 1001, "activation": "pre"}).value == 4.92
    assert paper_value("cifar10", {"depth": 164, "activation": "pre", "shortcut": "conv1x1"}).value == 5.46
    assert paper_value("cifar10", {"depth": 20, "shortcut": "none"}) is None  # plain nets: a figure only
    assert paper_value("cifar10", {"depth": 20, "pooling": "max"}) is None
    assert paper_value("cifar10", {"depth": 20, "width": 2.0}) is None
    assert paper_value("cifar100", {"depth": 20}) is None
    jpeg = paper_value("cifar10_jpeg", {"depth": 56})  # the JPEG copy: the paper's CIFAR-10 value, with the caveat
    assert jpeg.value == 6.97 and "Table 6" in jpeg.source and "JPEG-compressed" in jpeg.source
    assert "64k iterations" in jpeg.source and "JPEG" not in paper_value("cifar10", {"depth": 56}).source
    assert paper_value("cifar10_jpeg", {"depth": 56, "shortcut": "none"}) is None
    imagenet = {"family": "imagenet", "depth": 34, "stem": "imagenet"}
    assert paper_value("imagenet", {**imagenet, "shortcut": "identity"}).value == 25.03
    assert paper_value("imagenet", {**imagenet, "shortcut": "conv1x1"}).value == 24.52
    assert paper_value("imagenet", {**imagenet, "shortcut": "conv1x1", "project_all": True}).value == 24.19
    assert paper_value("imagenet", {**imagenet, "shortcut": "none"}).value == 28.54


def test_other_ablations_get_their_claims(tmp_path):
    from report_fixtures import make_grid_study

    act = make_grid_study(tmp_path, "activation", {"model.activation": ["post", "pre", "bn_after_add"]},
                          {("post",): (1.0, 6.6), ("pre",): (0.8, 6.0), ("bn_after_add",): (2.0, 8.2)})
    claims = {c.id: c for c in check_claims(load_study(act.name, root=act.root))}
    assert claims["activation-pre-vs-post"].verdict == REPRODUCED
    assert claims["activation-post-vs-bn_after_add"].verdict == REPRODUCED
    assert "at 20 layers" in claims["activation-pre-vs-post"].statement
    # below the depths He et al. 2016b tested, the claim says what to expect, with the paper's own numbers
    assert ("paper: the gain grows with depth (CIFAR-10, post → pre: ResNet-110 6.61 → 6.37 %, ResNet-164 5.93 → "
            "5.46 %, ResNet-1001 7.61 → 4.92 %) and was not measured below 110 layers; at 20 layers a small "
            "difference, likely undecided, is expected") in claims["activation-pre-vs-post"].evidence
    assert "grows with depth" not in claims["activation-post-vs-bn_after_add"].evidence
    assert not any(k.startswith(("plain", "residual")) for k in claims)  # no plain net, one depth

    sc = make_grid_study(tmp_path, "shortcuts", {"model.shortcut": ["none", "identity", "conv1x1"],
                                                 "model.project_all": [False, True]},
                         {("none", False): (9.0, 12.0), ("identity", False): (3.0, 8.8),
                          ("conv1x1", False): (2.8, 7.5), ("conv1x1", True): (2.5, 9.9)})
    data = load_study(sc.name, root=sc.root)
    assert [c.label for c in data.cells.values()] == ["plain-20", "ResNet-20 A", "ResNet-20 B", "ResNet-20 C"]
    claims = check_claims(data)
    by = {c.id: c for c in claims}
    assert by["shortcut-B-vs-A"].verdict == REPRODUCED
    assert by["shortcut-A-vs-C"].verdict == REPRODUCED      # CIFAR: identity beats projections everywhere
    assert by["shortcut-C-vs-B"].verdict == CONTRADICTED   # He et al. 2016's ImageNet order, said to be ImageNet's
    assert "measured on ImageNet at 34 layers" in by["shortcut-C-vs-B"].evidence
    assert "Table 3 (ImageNet ResNet-34: A 25.03, B 24.52, C 24.19)" in by["shortcut-B-vs-A"].source
    assert sum(c.id == "residual-beats-plain" for c in claims) == 3

    from reports.figures import ablation_layout

    assert ablation_layout(list(data.cells.values())) == ("option", False)


def test_shortcut_options_are_compared_at_one_projection_kernel(tmp_path):
    """B3 and C3 (3×3 projections) stand for B and C, but "C beats B" compares C with B and C3 with B3 only: C
    against B3 changes the kernel too (the committed parts study read "C beats B: contradicted, +1.01" off C against
    B3), and "A beats 1×1 projections on every block" takes C, not C3."""
    from report_fixtures import make_grid_study

    sc = make_grid_study(tmp_path, "kernels", {"model.shortcut": ["identity", "conv1x1", "conv3x3"],
                                               "model.project_all": [False, True]},
                         {("identity", False): (3.0, 8.8), ("conv1x1", False): (2.8, 7.5),
                          ("conv1x1", True): (2.5, 9.9), ("conv3x3", False): (2.6, 7.0),
                          ("conv3x3", True): (2.4, 7.2)})
    data = load_study(sc.name, root=sc.root)
    pairs = sorted((c.id, *re.fullmatch(r".*\(ResNet-20 (\w+) vs ResNet-20 (\w+)\)", c.statement).groups())
                   for c in check_claims(data) if c.id.startswith("shortcut-"))
    assert pairs == [("shortcut-A-vs-C", "A", "C"), ("shortcut-B-vs-A", "B", "A"), ("shortcut-B-vs-A", "B3", "A"),
                     ("shortcut-C-vs-B", "C", "B"), ("shortcut-C-vs-B", "C3", "B3")], pairs


def test_trial_status_rules():
    from reports.study_reader import _effective_status

    assert _effective_status("FAIL", None, "waiting") == ("interrupted", None)   # killed before any verdict
    assert _effective_status("FAIL", None, "diverged") == ("diverged", None)
    assert _effective_status("FAIL", "failed", "running") == ("failed", None)    # the record is the truth
    assert _effective_status("FAIL", "running", "running")[0] == "interrupted"
    assert _effective_status("RUNNING", "failed", "running") == ("running", None)  # a retry in the same folder
    assert _effective_status("WAITING", "interrupted", "waiting") == ("waiting", None)
    assert _effective_status("COMPLETE", "complete", "complete") == ("complete", None)
    assert _effective_status("PRUNED", None, None) == ("pruned", None)


def test_lesion_observations_are_per_model():
    """A lesion.csv of several models (the results' has four): each model's line has its own intact error, mean and
    worst block (the summary described the first model's intact error beside the mean over all four before)."""
    import types

    from reports.claims import lesion_observations

    df = pd.DataFrame({
        "model": ["plain-20, seed 0"] * 3 + ["ResNet-20, seed 0"] * 3,
        "block": ["stage1.block0", "stage2.block0", "stage2.block1"] * 2,
        "block_index": [0, 1, 2] * 2,
        "test_error": [88.0, float("nan"), 90.0, 40.0, 60.0, 35.0],
        "baseline_error": [37.5] * 3 + [31.0] * 3,
    })
    lines = lesion_observations(types.SimpleNamespace(lesion=df))
    assert len(lines) == 2
    plain, resnet = lines
    assert "Lesion of plain-20, seed 0 (intact 37.50 % test error)" in plain
    assert "89.00 % on average" in plain and "2 blocks" in plain and "stage2.block1 at 90.00 %" in plain
    assert "Lesion of ResNet-20, seed 0 (intact 31.00 % test error)" in resnet
    assert "45.00 % on average" in resnet and "stage2.block0 at 60.00 %" in resnet
    assert "Downsampling blocks: 60.00 % on average; the others 37.50 %" in resnet
    single = lesion_observations(types.SimpleNamespace(lesion=df[df["model"] == "ResNet-20, seed 0"].drop(
        columns="model")))
    assert len(single) == 1 and single[0].startswith("- Lesion of the network (intact 31.00 %")
    assert not any("NaN" in line for line in lines)                  # a file from before nonfinite_images
    df["nonfinite_images"] = [0, 0, 0, 0, 10000, 0]
    plain, resnet = lesion_observations(types.SimpleNamespace(lesion=df))
    assert "NaN" not in plain
    assert resnet.endswith("Deleting stage2.block0 gave NaN or inf outputs on some test images (counted as errors).")


def test_a_cell_that_did_not_learn_is_named_and_its_verdicts_say_so(tmp_path):
    """The new user's 2×2 grid: post-activation + GMP sat at chance (89.99 % for 10 classes). The table, summary.md,
    index.html and trials.csv name it; every claim resting on it carries the warning; the main effects, the
    interaction and the per-axis error EDFs are there."""
    from report_fixtures import make_grid_study

    fake = make_grid_study(tmp_path, "dead-cell", {"model.activation": ["post", "pre"], "model.pooling": ["avg", "max"]},
                           {("post", "avg"): (1.0, 8.6), ("pre", "avg"): (0.8, 8.0), ("post", "max"): (89.0, 89.99),
                            ("pre", "max"): (1.5, 9.5)}, seeds=(0, 1))
    out = build_report(fake.name, root=fake.root, out=tmp_path / "report")
    summary = (out / "summary.md").read_text()
    assert "## Cells that did not learn" in summary
    assert re.search(r"\*\*ResNet-20 \(post-act, GMP\)\*\* did not learn in 2 of 2 seeds \(test error 89\.\d+ % is "
                     r"within 3 binomial sd of chance for 10 classes \(90\.00 %, sd", summary)
    claims = {(c.id, c.statement): c for c in check_claims(load_study(fake.name, root=fake.root))}
    resting = [c for c in claims.values() if "post-act, GMP" in c.statement]
    assert resting and all(c.dead and "did not learn" in c.markdown() for c in resting)
    assert all(not c.dead for c in claims.values() if "GMP" not in c.statement)
    assert "resting on a cell that did not learn" in summary.split("## Claims", 1)[1].split("\n\n")[1]
    table = (out / "table.md").read_text()
    assert "did not learn" in table and re.search(r"post-act, GMP\).*\| +2 of 2 \|", table)
    trials = pd.read_csv(out / "trials.csv")
    assert {"activation", "pooling"} <= set(trials.columns)       # one column per axis
    assert trials.loc[(trials["activation"] == "post") & (trials["pooling"] == "max"), "dead"].notna().all()
    assert trials.loc[trials["pooling"] == "avg", "dead"].isna().all()
    assert "did not learn" in (out / "index.html").read_text()
    effects = pd.read_csv(out / "effects.csv")
    assert list(effects["kind"]) == ["main effect", "main effect", "interaction"]
    assert effects["comparison"].str.contains("⚠").all()          # every effect of this 2×2 uses the dead cell
    assert (out / "error_edf.png").is_file() and (out / "error_edf.svg").is_file()


def test_the_report_reads_the_spec_the_study_stores_for_old_studies_too(tmp_path):
    """Issue 29: cells, units and fallback run configs come from ``read_spec`` — the one read path, also for the
    committed cifar10-cpu study and for a study without a stored grid (cells from its trials, no grid file read)."""
    committed = REPO / "results" / "cifar10-cpu" / "degradation-cpu"
    spec = read_spec(open_study(committed))
    data = load_study("degradation-cpu", root=committed.parent)
    assert list(data.cells) == [c.id for c in spec.cells] and len(data.runs) == len(spec.units()) == 12
    assert data.objective == spec.objective and data.objective_key == "final_test_error"

    fake = make_fake_study(tmp_path / "runs", "no-grid", lesion=False, probe=False)
    (fake.study_dir / "grid.yaml").unlink()   # the grid file is never read again
    spec = read_spec(open_study(fake.study_dir))
    assert [c.id for c in spec.cells] == [cell_id(d, s) for d in (20, 56) for s in ("none", "identity")]
    assert spec.axes == ["model.depth", "model.shortcut"] and spec.seeds == [0, 1, 2]
    data = load_study(fake.name, root=fake.root)
    assert list(data.cells) == [c.id for c in spec.cells]
    order = {c.id: i for i, c in enumerate(spec.cells)}   # the report lists runs cell by cell, seeds in order
    assert [(r.cell, r.seed) for r in data.runs.itertuples()] == sorted(
        ((u.cell.id, u.seed) for u in spec.units()), key=lambda cs: (order[cs[0]], cs[1]))
    config = spec.run_config(spec.cells[0], 0)
    shutil.rmtree(fake.study_dir / "trials")   # no run records: each cell's config is the spec's
    data = load_study(fake.name, root=fake.root)
    assert data.cells[spec.cells[0].id].config == config


def test_the_table_and_the_effects_follow_the_studys_objective(tmp_path):
    """The metric a table leads with and ranks by, and the one the effects judge, is the study's stored objective
    (test_error / minimize gives the committed reports; here val_error, then a maximized train_error)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    fake = make_fake_study(tmp_path, "obj", probe=False, lesion=False)
    storage = JournalStorage(JournalFileBackend(str(fake.study_dir / "optuna.journal")))
    study = optuna.load_study(study_name=fake.name, storage=storage)
    study.set_user_attr("objective", {"metric": "val_error", "direction": "minimize"})
    data = load_study(fake.name, root=fake.root)
    shown, _, best = display_table(data, cell_table(data))
    errors = [c for c in shown.columns if c.endswith("(%)") and c != "paper (%)"]
    assert errors[0] == "val error (%)" and errors[1:] == ["test error (%)", "best val error (%)", "train error (%)"]
    assert {r.plan.metric for r in grid_effects(data)} == {"final_val_error"}

    study.set_user_attr("objective", {"metric": "train_error", "direction": "maximize"})
    data = load_study(fake.name, root=fake.root)
    table = cell_table(data)
    shown, _, best = display_table(data, table)
    assert list(shown.columns).index("train error (%)") < list(shown.columns).index("test error (%)")
    means = table["final_train_error_mean"].round(2)
    assert best["train error (%)"] == list(table.index[means == means.max()])
    means = table["final_test_error_mean"].round(2)
    assert best["test error (%)"] == list(table.index[means == means.min()])


def test_cells_whose_best_checkpoints_were_picked_on_the_test_set_are_named(tmp_path, report):
    """A study with `best_on: test` runs (seed 001 as it ran): table.md, summary.md and index.html say that those
    cells' best checkpoints were selected on the test set (optimistic); a study without such runs says nothing."""
    import json

    import yaml

    from report_fixtures import make_grid_study, slug

    fake = make_grid_study(tmp_path, "picked", {"model.activation": ["post", "pre"]},
                           {("post",): (1.0, 8.6), ("pre",): (0.8, 8.0)}, seeds=(0, 1))
    for seed in (0, 1):
        run = fake.study_dir / f"trials/{slug('model.activation=pre')}-s{seed}"
        config = yaml.safe_load((run / "config.yaml").read_text())
        (run / "config.yaml").write_text(yaml.safe_dump({**config, "best_on": "test"}, sort_keys=False))
        summary = json.loads((run / "summary.json").read_text())
        (run / "summary.json").write_text(json.dumps({**summary, "best_selected_on": "test",
                                                      "best_test_error": summary["final_test_error"] - 0.5}))
    out = build_report(fake.name, root=fake.root, out=tmp_path / "report")
    for name in ("table.md", "summary.md", "index.html"):
        lines = [x for x in (out / name).read_text().splitlines() if "selected on the test set" in x]
        assert len(lines) == 1 and "optimistic" in lines[0] and "pre-act" in lines[0], name
        assert "post-act" not in lines[0], name
    for name in ("table.md", "summary.md", "index.html"):
        assert "selected on the test set" not in (report / name).read_text(), name


def test_a_copied_study_folder_reads_only_its_own_records(tmp_path):
    """The folder the sweep recorded (``study_dir``) is read only when the root given holds no folder of the study:
    a copy (a clone's results/) never takes a run record from the folder it was copied from, where the study may
    have gone on; a storage whose records are elsewhere still finds them there."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from report_fixtures import slug

    fake = make_fake_study(tmp_path / "orig")
    journal = JournalStorage(JournalFileBackend(str(fake.study_dir / "optuna.journal")))
    optuna.load_study(study_name=fake.name, storage=journal).set_user_attr("study_dir", str(fake.study_dir))
    copy = tmp_path / "copy"
    shutil.copytree(fake.study_dir, copy / fake.name)
    shutil.rmtree(copy / fake.name / "trials" / f"{slug(cell_id(20, 'none'))}-s0")   # not in the copy, still in orig

    runs = load_study(fake.name, root=copy).runs
    row = runs[(runs["cell"] == cell_id(20, "none")) & (runs["seed"] == 0)].iloc[0]
    assert not row["record"] and str(fake.study_dir) not in str(row["run_dir"]), row.to_dict()
    assert runs["run_dir"].dropna().map(lambda d: str(tmp_path / "orig") not in str(d)).all()

    elsewhere = load_study(fake.name, root=tmp_path / "no-such-root",
                           storage=str(fake.study_dir / "optuna.journal")).runs
    row = elsewhere[(elsewhere["cell"] == cell_id(20, "none")) & (elsewhere["seed"] == 0)].iloc[0]
    assert row["record"] and str(row["run_dir"]).startswith(str(fake.study_dir)), row.to_dict()


def test_gradient_profile_of_a_cell_whose_runs_all_diverged_draws_without_a_runtime_warning(tmp_path):
    """A layer every run of a cell lost to NaN (its runs diverged) has no geometric mean: NaN there, the other layers
    drawn, and no 'Mean of empty slice' RuntimeWarning printed into the sweep's output."""
    import warnings
    from types import SimpleNamespace

    from reports.figures import fig_gradnorm_layers

    layers = ["stage1.0.conv1", "stage1.0.conv2", "fc"]

    def metrics(run_dir: str) -> pd.DataFrame:
        diverged = run_dir.startswith("b")
        rows = [{"split": "grad_norm", "name": name, "step": step,
                 "value": float("nan") if diverged and step == 20 and name != "fc" else 1.0 + i}
                for step in (0, 10, 20) for i, name in enumerate(layers)]
        return pd.DataFrame(rows)

    cells = {c: SimpleNamespace(id=c, label=c, depth=8, is_plain=False) for c in ("a", "b")}
    runs = pd.DataFrame({"cell": ["a", "a", "b", "b"], "run_dir": ["a0", "a1", "b0", "b1"]})
    data = SimpleNamespace(cells=cells, runs=runs, metrics=metrics)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figures = fig_gradnorm_layers(data, pd.DataFrame(), tmp_path)
    assert figures
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]


def test_a_cell_whose_runs_ran_as_two_precisions_is_named_in_the_reports_notes():
    """The Fig. 6 study's ResNet-56 seed 2 was resumed on a machine where `precision: auto` is fp32; the report
    says which seeds of which cell ran as what, since the means pool them."""
    from types import SimpleNamespace

    from reports.study_reader import mixed_precision_note

    runs = pd.DataFrame({"cell": ["a", "a", "a", "b", "b"], "trial": [0, 1, 2, 3, 4], "seed": [0, 1, 2, 0, 1],
                         "status": ["complete"] * 4 + ["interrupted"]})
    precisions = ["bf16", "bf16", "fp32", "bf16", "fp32"]
    trials = [SimpleNamespace(number=i, user_attrs={"precision": p}) for i, p in enumerate(precisions)]
    cells = {"a": SimpleNamespace(label="ResNet-56"), "b": SimpleNamespace(label="plain-20")}
    note = mixed_precision_note(runs, trials, cells)
    assert note is not None and "ResNet-56: bf16 (seeds 0, 1), fp32 (seed 2)" in note, note
    assert "plain-20" not in note   # its fp32 run did not complete: not in the means
    trials[2].user_attrs["precision"] = "bf16"
    assert mixed_precision_note(runs, trials, cells) is None


def test_a_study_of_one_cell_reports_its_run_under_that_cell(tmp_path):
    """A grid file without `grid:` runs one cell, the base, whose id is "": its trials carry cell "". The reader
    took that empty id for a trial without a cell and named it `trial<number>`, so the report showed the run under
    a cell `[trial0]` and the planned cell as missing: "1 of 2 runs complete; 1 missing (no trial)" of a study that
    ran its one trial."""
    from report_fixtures import make_grid_study

    make_grid_study(tmp_path, "one", {}, {(): (5.0, 9.0)}, seeds=(0,))
    data = load_study("one", root=tmp_path)
    assert data.runs[["cell", "seed", "status"]].values.tolist() == [["", 0, "complete"]]
    assert data.status_line() == "1 of 1 runs complete."


def test_a_dead_run_whose_folder_was_deleted_is_reported_without_a_crash(tmp_path):
    """A completed run at chance-level error whose run folder is gone: its numbers come from the trial, its run_dir
    is NaN in the runs frame, and the 'what its instruments show' pass called ``metrics(nan)``: the report crashed
    with a TypeError from pathlib. Its cell is still named as not learning, from the trial's numbers."""
    from report_fixtures import make_grid_study
    from reports.collapse import dead_cell_notes

    fake = make_grid_study(tmp_path, "gone", {"model.depth": [20, 56]}, {(20,): (89.0, 90.0), (56,): (5.0, 9.0)},
                           seeds=(0, 1))
    shutil.rmtree(fake.study_dir / "trials" / "depth-20-s0")
    data = load_study("gone", root=tmp_path)
    assert data.metrics(float("nan")).empty
    notes = dead_cell_notes(data)
    assert [label for label, _ in notes] == ["ResNet-20"] and "did not learn in" in notes[0][1], notes


def test_the_dead_cell_evidence_of_a_search_study_names_each_trial_not_its_seed(tmp_path):
    """A search study's runs of a cell are its searched trials, all of one seed: what their instruments show was
    listed as 'seed 0: …; seed 0: …; seed 0: …', three runs under one name."""
    from report_fixtures import make_grid_study
    from reports.collapse import collapse_evidence

    make_grid_study(tmp_path, "srch", {"model.depth": [20, 56]}, {(20,): (89.0, 90.0), (56,): (5.0, 9.0)},
                    seeds=(0, 1))
    data = load_study("srch", root=tmp_path)
    assert collapse_evidence(data)["model.depth=20"].startswith("seed 0: ")   # a grid: by seed
    trials = data.runs["trial"].tolist()
    data.runs = data.runs.assign(slot=[0, 1, 0, 1], seed=[0, 0, 0, 0])   # as a search of 2 trials per cell lists them
    evidence = collapse_evidence(data)["model.depth=20"]
    assert evidence.startswith(f"trial #{trials[0]}: ") and f"; trial #{trials[1]}: " in evidence, evidence
    assert "seed 0" not in evidence


def test_a_search_studys_tables_count_searched_trials_not_seeds(tmp_path):
    """A search study's n per cell counts its searched trials (one seed, other settings): its table.md, table.tex
    and HTML said 'mean ± sample std over the seeds that completed'. A grid's still say seeds."""
    import dataclasses

    from report_fixtures import make_grid_study
    from reports.html import write_html
    from reports.tables import cell_table, latex_table, write_markdown

    make_grid_study(tmp_path, "srch", {"model.depth": [20, 56]}, {(20,): (9.0, 10.0), (56,): (5.0, 9.0)}, seeds=(0,))
    grid = load_study("srch", root=tmp_path)
    search = dataclasses.replace(grid, spec=dataclasses.replace(grid.spec, search=["optim.lr"], n_trials=3))
    for data, word in ((grid, "seeds"), (search, "searched trials")):
        table = cell_table(data)
        write_markdown(data, table, tmp_path / "table.md")
        text = (tmp_path / "table.md").read_text()
        assert f"over the {word} that completed (n of the {word} planned)" in text, text
        assert f"over the $n$ completed {word};" in latex_table(data, table)
        (tmp_path / "out").mkdir(exist_ok=True)
        html = write_html(data, table, [], [], tmp_path / "out").read_text()
        assert f"mean ± sample std over completed {word}." in html and f"n: completed {word} of those" in html
    assert "seeds" not in (tmp_path / "table.md").read_text()


def test_the_compute_line_counts_diverged_runs_as_diverged(tmp_path):
    """A study whose every trial diverged: its compute line said '0 complete runs, 4 other attempts or runs in
    progress' of four runs that had ended, which sends a researcher to look for workers still running."""
    from report_fixtures import make_grid_study
    from reports.compute import compute_lines

    make_grid_study(tmp_path, "div", {"model.depth": [20, 56]}, {(20,): (5.0, 9.0), (56,): (4.0, 8.0)}, seeds=(0, 1))
    data = load_study("div", root=tmp_path)
    assert "(4 complete runs)" in compute_lines(data)[0]
    data.trials = data.trials.assign(status=["diverged", "diverged", "complete", "pruned"])
    data.runs = data.runs.assign(status=data.trials["status"].tolist())
    line = compute_lines(data)[0]
    assert "over 4 run records (1 complete run, 2 diverged, 1 pruned)" in line, line
    assert "in progress" not in line


def test_the_report_of_a_copied_journal_goes_into_the_copy_not_the_folder_it_was_copied_from(fake, tmp_path, capsys):
    """A copy of the journal alone (`cp runs/s/optuna.journal elsewhere/s/`) reads the run records from the folder
    the sweep recorded, and its report went there too: `report elsewhere/s --format md,csv` replaced that folder's
    report and removed its index.html and table.tex. The report of a study named by its folder goes into that
    folder; the original is left as it was."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from resnet_core.cli import main

    orig = tmp_path / "orig"
    shutil.copytree(fake.study_dir, orig / fake.name)
    journal = JournalStorage(JournalFileBackend(str(orig / fake.name / "optuna.journal")))
    optuna.load_study(study_name=fake.name, storage=journal).set_user_attr("study_dir", str(orig / fake.name))
    copy = tmp_path / "copy" / fake.name
    copy.mkdir(parents=True)
    shutil.copy(orig / fake.name / "optuna.journal", copy / "optuna.journal")
    assert main(["report", str(copy), "--format", "md", "--no-figures"]) == 0
    said = capsys.readouterr()
    assert f"written to {copy / 'report'}/" in said.out
    assert (copy / "report" / "summary.md").is_file() and not (orig / fake.name / "report").exists()
    note = f"run records read from {orig / fake.name}, the study folder its sweep recorded (none in {copy})"
    assert f"warning: {note}" in said.err and note in (copy / "report" / "summary.md").read_text()


def test_report_takes_the_journal_that_sweep_prints_for_the_dashboard(fake, tmp_path, capsys):
    """`sweep` ends with 'dashboard: optuna-dashboard runs/<study>/optuna.journal'; `report` of that path was refused
    as an unknown study '…/optuna.journal' (no '…/optuna.journal/optuna.journal'). It is the study's folder."""
    from resnet_core.cli import main

    assert main(["report", str(fake.study_dir / "optuna.journal"), "--out", str(tmp_path / "r"), "--no-figures",
                 "--format", "md"]) == 0
    assert f"report for {fake.name} written to" in capsys.readouterr().out


def test_importance_leaves_out_a_param_with_one_value_among_the_completed_trials():
    """An extra cell (optim.lr=1e20) whose trials all diverged leaves optim.lr one value among the completed trials;
    PED-ANOVA gave it 0.90 of the importance, so the table's shortcut axis showed 0.10 of a whole 'that sums to 1'.
    Only params that vary among the completed trials are weighed."""
    from types import SimpleNamespace

    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    from reports.comparisons import importances

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    dists = {"model.shortcut": CategoricalDistribution(["none", "identity"]),
             "optim.lr": FloatDistribution(0.05, 1e20, log=True)}
    for seed, (shortcut, error) in enumerate([("none", 71.1), ("identity", 72.7), ("none", 78.9), ("identity", 77.3),
                                              ("none", 74.0), ("identity", 70.2)]):
        study.add_trial(create_trial(params={"model.shortcut": shortcut, "optim.lr": 0.05}, distributions=dists,
                                     value=error))
        study.add_trial(create_trial(params={"model.shortcut": "identity", "optim.lr": 1e20}, distributions=dists,
                                     state=TrialState.FAIL))
    done = pd.DataFrame({"trial": [t.number for t in study.trials if t.state == TrialState.COMPLETE]})
    imp, _ = importances(SimpleNamespace(optuna_study=study, complete_runs=lambda: done))
    assert set(imp) == {"model.shortcut"} and imp["model.shortcut"] == pytest.approx(1.0), imp


def test_importance_weighs_the_runs_the_report_counts_as_completed():
    """A trial COMPLETE in the study whose run record says failed (the record wins: the table leaves it out) was
    still weighed by the importance, and a study without a completed trial was said to 'carry no Optuna params'."""
    from types import SimpleNamespace

    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import create_trial

    from reports.comparisons import importances

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    dists = {"a": CategoricalDistribution(["x", "y"]), "b": CategoricalDistribution(["u", "v"])}
    for i, (a, b, error) in enumerate([("x", "u", 10.0), ("y", "u", 20.0), ("x", "u", 11.0), ("y", "u", 21.0),
                                       ("x", "v", 30.0), ("y", "v", 35.0)]):
        study.add_trial(create_trial(params={"a": a, "b": b}, distributions=dists, value=error))
    done = pd.DataFrame({"trial": [0, 1, 2, 3]})   # the two b=v runs' records say failed
    imp, _ = importances(SimpleNamespace(optuna_study=study, complete_runs=lambda: done))
    assert set(imp) == {"a"}, imp
    none = pd.DataFrame({"trial": []})
    assert importances(SimpleNamespace(optuna_study=study, complete_runs=lambda: none)) == (
        {}, "not available: no completed trials")


def test_a_read_only_report_folder_is_named_not_the_stage_inside_it(fake, tmp_path, capsys, monkeypatch):
    """`report … --out RO` on a read-only folder said 'cannot write RO/.report-29733@host@rjafyvd9.tmp': the
    stage's made-up name. The one line names the folder given."""
    import errno
    import tempfile

    from resnet_core.cli import main

    def read_only(dir=None, prefix=None, suffix=None):
        raise OSError(errno.EROFS, "Read-only file system", os.path.join(dir, f"{prefix}abc{suffix}"))

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    out = tmp_path / "ro"
    assert main(["report", str(fake.study_dir), "--out", str(out), "--no-figures", "--format", "md"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: cannot write {out}: Read-only file system (a read-only folder?)\n", err


@pytest.mark.parametrize("option, columns", [("--probe", "family, depth"), ("--lesion", "block, block_index")])
def test_a_probe_or_lesion_file_that_is_no_csv_names_the_columns_expected(fake, tmp_path, capsys, option, columns):
    """`report … --probe grid.yaml` said only pandas' 'Error tokenizing data. C error: Expected 1 fields in line 5,
    saw 4'; the one line names the file and the columns a probe (lesion) file needs, and nothing is written."""
    from resnet_core.cli import main

    wrong = tmp_path / "grid.yaml"
    wrong.write_text("study: x\nbase:\n  model: {depth: 8}\n  a: {b: 1, c: 2, d: 3, e: 4}\n")
    out = tmp_path / "out"
    assert main(["report", str(fake.study_dir), option, str(wrong), "--out", str(out), "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(wrong) in err and f"expected a CSV with columns {columns}" in err, err
    assert not out.exists()


def test_a_folder_holding_study_folders_names_them(fake, tmp_path, capsys, monkeypatch):
    """README: 'each folder under results/ holds a committed study'; `report results/cifar10-parts` (the study is
    results/cifar10-parts/parts-cpu) said 'unknown study …: no results/cifar10-parts/optuna.journal; studies under
    runs/: (none)', the studies of a folder the user never named. The one line names the study folders inside."""
    from resnet_core.cli import main

    monkeypatch.chdir(tmp_path)
    shutil.copytree(fake.study_dir, tmp_path / "results" / "x" / fake.name)
    (tmp_path / "results" / "x" / "report").mkdir()
    assert main(["report", "results/x", "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: results/x is no study folder (no optuna.journal in it); the study folders in it: "
                   f"results/x/{fake.name}\n"), err
    assert not (tmp_path / "runs").exists() and list((tmp_path / "results" / "x" / "report").iterdir()) == []
    assert main(["report", "results/x/report", "--no-figures"]) == 2
    assert "the study folders in it: (none)" in capsys.readouterr().err


def test_the_importance_column_says_what_its_evaluator_measures(tmp_path):
    """PED-ANOVA (the evaluator without scikit-learn) scores how the best 10 % of trials differ, not the spread an
    axis explains: in the committed parts study the pooling axis, a 69-point main effect, gets about 0. summary.md
    says which evaluator gave the column and what it measures (read on that study's committed records)."""
    import shutil

    from reports.comparisons import IMPORTANCE_MEANS, importance_evaluator

    parts = Path(__file__).resolve().parents[1] / "results" / "cifar10-parts"
    shutil.copytree(parts / "parts-cpu", tmp_path / "parts-cpu", ignore=shutil.ignore_patterns("*.pt", "wandb"))
    out = build_report("parts-cpu", root=tmp_path, out=tmp_path / "r", formats="md", figures=False)
    summary = (out / "summary.md").read_text()
    how = importance_evaluator()[1]
    assert f"sums to 1; {how}: {IMPORTANCE_MEANS[how]})" in summary
    if how == "PED-ANOVA":
        assert "not the share of the spread the axis explains" in summary


def test_a_report_folder_inside_the_run_records_is_refused(fake, tmp_path, capsys):
    """`--out runs/<study>/trials/r` put the report among the trial folders the report reads: refused in one line
    naming the folder, before anything is written."""
    from resnet_core.cli import main

    trials = fake.study_dir / "trials"
    for out in (trials, trials / "r", next(trials.iterdir())):
        before = sorted(p.name for p in (fake.study_dir / "trials").iterdir())
        assert main(["report", fake.name, "--root", str(fake.root), "--out", str(out), "--no-figures"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"--out {out} is inside the study's run records" in err, err
        assert sorted(p.name for p in (fake.study_dir / "trials").iterdir()) == before
    assert main(["report", fake.name, "--root", str(fake.root), "--out", str(fake.study_dir / "r2"), "--no-figures",
                 "--format", "md"]) == 0
