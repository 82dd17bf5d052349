"""The repository stands alone: no document, model table, recipe or test points outside it, and every relative link
in the README and docs/ leads to a file in the repository."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OUTSIDE = ("../" + "shared", "/work/" + "shared")   # spelled in two parts so this file does not match itself
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _files() -> list[Path]:
    out = list(DOCS)
    for folder, pattern in (("resnet_core", "**/*.py"), ("sweeps", "*.py"), ("reports", "*.py"), ("tests", "*.py"),
                            ("ablations", "**/*.yaml"), ("examples", "*")):
        out += [p for p in (REPO / folder).glob(pattern) if p.is_file()]
    return out


def test_nothing_points_outside_the_repository():
    found = [f"{p.relative_to(REPO)}:{i}" for p in _files()
             for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if any(o in line for o in OUTSIDE)]
    assert not found, f"references to files outside the repository: {found}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_lead_to_files(doc):
    text = doc.read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    relative = [link for link in links if "://" not in link]
    assert relative or doc.name not in ("README.md",), "the README links to its docs"
    missing = [link for link in relative if not (doc.parent / link).exists()]
    assert not missing, f"{doc.name}: links to missing files {missing}"


def test_readme_links_every_page_in_docs():
    readme = (REPO / "README.md").read_text()
    pages = [p.name for p in (REPO / "docs").glob("*.md")]
    assert [p for p in pages if f"(docs/{p})" not in readme] == []


def test_seed_docs_cover_the_four_programs_and_both_seed001_recipes():
    text = (REPO / "docs" / "seeds.md").read_text()
    for name in ("seed001_resnet34_cifar224.yaml", "seed001_resnet34_cifar224_as_ran.yaml",
                 "seed002_d2l_fashion_mnist.yaml", "seed003_resnet50_onecycle_npu.yaml", "seed004_resnet20_adam.yaml"):
        assert name in text and (REPO / "ablations" / "recipes" / name).is_file(), name
    for count in ("21,294,026", "11,178,378", "23,520,842", "292,954"):
        assert count in text
