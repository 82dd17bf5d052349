"""The README's results section quotes the committed reports number for number: every decimal figure in a block of
that section appears in the report of the results folder the block names (``results/<name>/``, or the last one
named above it), in its ``summary.md`` or ``table.md``, or in a grid the block names (``ablations/<grid>.yaml``, for
the recipe's own figures). A README that rounds, mistypes or outlives a report fails."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DECIMAL = re.compile(r"[+-]?\d+\.\d+")
FOLDER = re.compile(r"results/([\w.-]+)/")
GRID = re.compile(r"ablations/[\w./-]+\.yaml")


def _normalise(text: str) -> str:
    return text.replace("−", "-").replace("\u2009", " ")


def results_section(readme: str) -> str:
    start = readme.index("\n## Results")
    end = readme.find("\n## ", start + 1)
    return readme[start:end if end > 0 else None]


def quoted_figures(section: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """(results folder, figure, grids the block names) for each decimal figure in the section, blocks separated by
    blank lines."""
    out, folder = [], None
    for block in re.split(r"\n\s*\n", _normalise(section)):
        named = FOLDER.findall(block)
        if named:
            folder = named[0]
        grids = tuple(GRID.findall(block))
        for figure in DECIMAL.findall(block):
            out.append((folder, figure, grids))
    return out


def _found(figure: str, text: str) -> bool:
    return re.search(rf"(?<![\d.]){re.escape(figure.lstrip('+'))}(?![\d])", text) is not None


def test_readme_results_match_the_committed_reports():
    section = results_section((REPO / "README.md").read_text())
    figures = quoted_figures(section)
    assert figures, "the README's results section quotes no figure"
    reports: dict[str, str] = {}
    missing = []
    for folder, figure, grids in figures:
        assert folder, f"{figure} is quoted before the section names a results/<name>/ folder"
        if folder not in reports:
            report = REPO / "results" / folder / "report"
            reports[folder] = _normalise("".join((report / f).read_text() for f in ("summary.md", "table.md")))
        sources = reports[folder] + "".join((REPO / g).read_text() for g in grids)
        if not _found(figure, sources):
            missing.append(f"{figure} (results/{folder}/)")
    assert not missing, f"README figures not in the committed report: {', '.join(missing)}"


def test_the_check_catches_a_rounded_figure():
    section = "## Results\n\n`results/cifar10-cpu/` ResNet-56 vs ResNet-20: +18.7 points, CI [+2.05, +35.35]\n"
    figures = quoted_figures(section)
    assert ("cifar10-cpu", "+18.7", ()) in figures
    report = _normalise((REPO / "results/cifar10-cpu/report/summary.md").read_text())
    assert _found("+18.70", report) and not _found("+18.7", report)   # 18.70 is there, 18.7 alone is not
