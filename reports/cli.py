"""`resnet-ablate report STUDY`: tables, figures, claims and an HTML page from a study and its run records."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterable

from resnet_core.errors import ConfigError, choices_error
from resnet_core.record import atomic_write_json
from resnet_core.values import nonblank
from sweeps.spec.study_format import DEFAULT_ROOT, JOURNAL_NAME, STUDY_ID_ATTR, find_journals, journal_path

FORMATS = ("md", "csv", "tex", "html")
MANIFEST = "report.json"   # in a report folder: whose report it is and the files the report wrote there
STAGE_PREFIX = ".report-"  # a report is written into <out>/.report-<pid>@<host>@….tmp/, then moved into place
HOST = socket.gethostname()


def parse_formats(formats: str | Iterable[str] | None) -> list[str]:
    """'md,csv' or ['md', 'csv'] -> ['md', 'csv']; an unknown format is a ConfigError listing the allowed ones."""
    if formats is None:
        return list(FORMATS)
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    out = []
    for item in items:
        item = str(item).strip().lower()
        if not item:
            continue
        if item not in FORMATS:
            raise choices_error("report format", item, FORMATS)
        if item not in out:
            out.append(item)
    if not out:
        raise ConfigError(f"no report format given; choose from: {', '.join(FORMATS)}")
    return out


def build_report(study: str, root: str | Path | None = None, storage: str | None = None,
                 out: str | Path | None = None, formats: str | Iterable[str] | None = FORMATS,
                 probe: str | Path | None = None, lesion: str | Path | None = None,
                 figures: bool = True) -> Path:
    """Write the report of ``study`` into ``out`` (default: ``report/`` in the study folder, ``_study_folder``) and
    return that folder.

    Always written: the figures (PNG + SVG; ``figures=False`` skips them) and summary.md. By format: md -> table.md; csv -> table.csv and
    trials.csv (one column per axis) and effects.csv (main effects, interactions,
    importance); tex -> table.tex; html -> index.html. They are written into a stage in ``out`` and moved into
    place once all are whole: a report that fails (an ``OSError`` naming ``out``) leaves the last one as it was.
    """
    # lazy: pandas, matplotlib and the readers load when a report is built, not for every `resnet-ablate` start-up
    from .claims import check_claims, write_summary
    from .effects import effect_rows
    from .figures import make_figures
    from .html import write_html
    from .study_reader import load_study
    from .tables import cell_table, write_csv, write_latex, write_markdown, write_trials_csv

    wanted = parse_formats(formats)
    data = load_study(study, root=root, storage=storage, probe=probe, lesion=lesion)
    out = Path(out) if out else _study_folder(data, root, storage) / "report"
    _check_out_of_records(out, data.study_dirs)
    identity = {"study": data.name, "study_id": data.user_attrs.get(STUDY_ID_ATTR)}
    before = _previous_files(out, identity)   # refuses another study's report folder before anything is written
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_stages(out)
    # written whole into a stage first, then moved into place: a report that fails part-way (a full disk, a kill)
    # leaves the last one as it was, never a file cut short or half of each
    stage = _new_stage(out)
    try:
        table = cell_table(data)
        figures = make_figures(data, table, stage) if figures else []
        claims = check_claims(data, table)
        written = []
        if "md" in wanted:
            write_markdown(data, table, stage / "table.md")
            written.append("table.md")
        if "csv" in wanted:
            write_csv(data, table, stage / "table.csv")
            write_trials_csv(data, stage / "trials.csv")
            effect_rows(data).to_csv(stage / "effects.csv", index=False)
            written += ["table.csv", "trials.csv", "effects.csv"]
        if "tex" in wanted:
            write_latex(data, table, stage / "table.tex")
            written.append("table.tex")
        write_summary(data, table, stage / "summary.md", claims)
        written.append("summary.md")
        if "html" in wanted:
            write_html(data, table, claims, figures, stage, files=written)
            written.append("index.html")
        written += [p.name for f in figures for p in (f.png, f.svg)]
        for name in written:
            os.replace(stage / name, out / name)
    except OSError as e:   # name the folder where the file being written does not say
        if e.filename:
            raise
        raise OSError(e.errno, e.strerror, str(out)) from e
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    for stale in sorted(set(before) - set(written)):   # the last report's files this one did not rewrite
        (out / stale).unlink(missing_ok=True)
    atomic_write_json(out / MANIFEST, {**identity, "files": written})
    return out


def _check_out_of_records(out: Path, study_dirs: Iterable[Path]) -> None:
    """A report folder inside a study's run records (``<study>/trials/…``, where each trial's folder is) is a
    one-line ``ConfigError`` naming the folder: the report would sit among the runs it reads."""
    where = out.resolve()
    for trials in (Path(d).resolve() / "trials" for d in study_dirs):
        if where == trials or trials in where.parents:
            raise ConfigError(f"--out {out} is inside the study's run records ({trials}); give a folder outside "
                              f"trials/ (the default is the study folder's report/)")


def _new_stage(out: Path) -> Path:
    """A new stage in ``out`` (``STAGE_PREFIX<pid>@<host>@….tmp``); an ``OSError`` there names ``out``, the folder
    given, not the stage's made-up name."""
    try:
        return Path(tempfile.mkdtemp(dir=out, prefix=f"{STAGE_PREFIX}{os.getpid()}@{HOST}@", suffix=".tmp"))
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(out)) from e


def remove_stale_stages(out: Path) -> None:
    """Remove the stages (``STAGE_PREFIX<pid>@<host>@….tmp``) that reports killed on this host left in ``out``; a
    stage of a report still being written (its process alive) or of another host is left alone."""
    from sweeps.queue.liveness import pid_alive

    for stage in out.glob(f"{STAGE_PREFIX}*@*@*.tmp"):
        pid, host, _ = stage.name[len(STAGE_PREFIX):].split("@", 2)
        if host == HOST and pid.isdigit() and stage.is_dir() and not pid_alive(int(pid)):
            shutil.rmtree(stage, ignore_errors=True)


def _study_folder(data: Any, root: str | Path | None, storage: str | None) -> Path:
    """The folder a report goes into by default: the study folder named (``<root>/<study>``, the one holding its
    journal), even where its run records were read from the folder the sweep recorded (a copy of the journal alone:
    the report of a copy never lands in the folder it was copied from); with ``--storage``, the study folder its run
    records were read from, else ``<root>/<study>``."""
    if storage is None and data.study_dirs:
        return data.study_dirs[0]
    return next((d for d in data.study_dirs if (d / "trials").is_dir()), Path(root or DEFAULT_ROOT) / data.name)


def _manifest(out: Path) -> dict[str, Any]:
    """The manifest of the last report written into ``out``; {} without a readable one (no report there yet, or a
    manifest cut short: then nothing is removed)."""
    try:
        record = json.loads((Path(out) / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def report_files(out: Path) -> list[str]:
    """The files the last report wrote into ``out`` (its manifest), in the order written."""
    return [name for name in _manifest(out).get("files") or [] if isinstance(name, str) and Path(name).name == name]


def _previous_files(out: Path, identity: dict[str, Any]) -> list[str]:
    """The files the last report wrote into ``out``, which this one replaces (a report left beside a newer one
    would show an older state of the study). A one-line ``ConfigError`` if ``out`` holds another study's report."""
    record = _manifest(out)
    if not record:
        return []
    same_id = record.get("study_id") == identity["study_id"] or None in (record.get("study_id"), identity["study_id"])
    if record.get("study") != identity["study"] or not same_id:
        other = f"study {record.get('study')!r}" + ("" if record.get("study") != identity["study"] else
                                                   " (another study of that name)")
        raise ConfigError(f"{out} holds the report of {other}: give the report of {identity['study']!r} another "
                          f"--out")
    return report_files(out)


def study_and_root(study: str, root: str | None, storage: str | None) -> tuple[str, str | None]:
    """(study name, root) of the ``report`` argument: a study folder (``report runs/quickstart``, as ``sweep`` prints
    it: a folder holding ``optuna.journal``) or its journal, given without ``--root``/``--storage``, is its name and
    the folder above it; another folder is refused, naming the study folders in it (``report results/cifar10-parts``
    for ``results/cifar10-parts/parts-cpu``); anything else is a study name under ``root``."""
    folder = Path(study)
    if folder.name == JOURNAL_NAME and folder.is_file():   # its journal (as `sweep` prints it for the dashboard)
        folder = folder.parent
    if root is None and storage is None and (folder / JOURNAL_NAME).is_file():
        return folder.resolve().name, str(folder.resolve().parent)
    if root is None and storage is None and folder.is_dir() and not journal_path(DEFAULT_ROOT, study).is_file():
        inside = [str(j.parent) for j in find_journals(folder)]
        raise ConfigError(f"{folder} is no study folder (no {JOURNAL_NAME} in it); the study folders in it: "
                          f"{', '.join(inside) or '(none)'}")
    return study, root


def _cmd_report(args: argparse.Namespace) -> int:
    args.study, args.root = study_and_root(args.study, args.root, args.storage)
    out = build_report(args.study, root=args.root, storage=args.storage, out=args.out, formats=args.format,
                       probe=args.probe, lesion=args.lesion, figures=not args.no_figures)
    summary = (out / "summary.md").read_text().splitlines()
    status = summary[2] if len(summary) > 2 else ""
    print(f"report for {args.study} written to {out}/")
    if status:
        print(status)
    written = report_files(out)
    for name in ("index.html", "table.md", "summary.md"):
        if name in written:
            print(f"  {out / name}")
    return 0


def summary_figures(study: str, root: str | Path, storage: str | None, out: Path) -> list[Path]:
    """The W&B study summary's figures (``sweeps.verdicts.figures.SUMMARY_FIGURES``): the study's report (md, csv and
    figures) written to ``out``, and its PNG files."""
    report = build_report(study, root=root, storage=storage, out=out, formats="md,csv")
    return sorted(report.glob("*.png"))


def register(sub: argparse._SubParsersAction) -> None:
    """Add `report`; add the report's figures to the W&B summary of every `sweep`, and its claims to the
    comparisons of `sweep --until-decided`."""
    # lazy: registering the commands at start-up must not load the readers and the sweep's comparisons
    from sweeps.verdicts.comparisons import CLAIM_SOURCES
    from sweeps.verdicts.figures import SUMMARY_FIGURES

    from .claims import claim_plans

    if summary_figures not in SUMMARY_FIGURES:
        SUMMARY_FIGURES.append(summary_figures)
    if claim_plans not in CLAIM_SOURCES:  # the claims `sweep --until-decided` decides
        CLAIM_SOURCES.append(claim_plans)
    p = sub.add_parser("report", help="tables, figures and checked claims from a study",
                       description="Write Markdown/CSV/LaTeX tables, PNG+SVG figures, summary.md (the papers' claims "
                                   "with verdicts) and index.html for a study, with the papers' numbers beside ours. "
                                   "Works offline and on a study that is still running.")
    p.add_argument("study", help="study name (as in `resnet-ablate studies`), or its folder (runs/<study>, the one "
                                 "holding optuna.journal) or that journal")
    p.add_argument("--root", default=None, type=nonblank,
                   help="folder holding <study>/optuna.journal and the run directories (default: runs); with "
                        "--storage it only locates the run directories")
    p.add_argument("--storage", default=None, type=nonblank,
                   help="an Optuna storage URL (sqlite:///…, postgresql://…) or a journal file, instead of "
                        "<root>/<study>/optuna.journal")
    p.add_argument("--out", default=None, type=nonblank,
                   help="output folder (default: report/ in the study folder, e.g. "
                        "runs/<study>/report/; with --storage, in the study folder holding its runs)")
    p.add_argument("--format", default=",".join(FORMATS),
                   help=f"comma-separated, from {', '.join(FORMATS)} (default: all); figures and summary.md are "
                        f"always written")
    p.add_argument("--probe", default=None, help="probe.csv (gradient norm at init per layer and depth); default: "
                                                 "<study folder>/probe.csv if present")
    p.add_argument("--lesion", default=None, help="lesion.csv (test error after deleting each block) of this "
                                                  "study's runs: another run's rows, or a value that is not a "
                                                  "finite number, are refused; default: <study folder>/lesion.csv if "
                                                  "present (such rows or files left out with a note)")
    p.add_argument("--no-figures", action="store_true", help="tables and summary only (faster)")
    p.set_defaults(func=_cmd_report)
