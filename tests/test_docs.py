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


def _model_rows() -> dict[str, str]:
    """docs/models.md's table rows by their key (`| `pooling` | … |` → {"pooling": the row})."""
    rows = {}
    for line in (REPO / "docs" / "models.md").read_text().splitlines():
        m = re.match(r"\|\s*`([a-z_]+)`\s*\|", line)
        if m:
            rows.setdefault(m.group(1), line)
    return rows


def test_every_built_in_choice_of_a_registry_is_documented():
    """The docs listed the poolings without GeM and no augmentation at all: every built-in name of each registry is
    in the docs (a model part in its row of docs/models.md's table, a data source or augmentation in docs/data.md)."""
    import resnet_core.data  # noqa: F401 - registers the data sources and augmentations
    import resnet_core.model  # noqa: F401 - registers the model parts
    from resnet_core.registry import Registry

    rows = _model_rows()
    data_doc = (REPO / "docs" / "data.md").read_text()
    missing = []
    for registry in Registry.ALL:
        section, _, key = registry.kind.partition(".")
        text = rows.get(key, "") if section == "model" else data_doc
        built_in = [n for n in registry.names() if registry._source[n].startswith("resnet_core")]
        missing += [f"{registry.kind} {n}" for n in built_in if f"`{n}`" not in text]
    assert not missing, f"not in the docs: {missing}"


def _headings(page: Path) -> list[str]:
    return [line.lstrip("#").strip() for line in page.read_text().splitlines() if line.startswith("#")]


def test_command_help_points_to_sections_that_exist():
    """`--plugin`'s help sent readers to the README's 'Your own part' and `sweep --help` to its 'On a Slurm cluster',
    sections that had moved to docs/: every page the help names exists, and every section it quotes after a page
    (`docs/models.md: 'Your own part'`) is a heading of that page."""
    from resnet_core.cli import _all_parsers, build_parser

    text = " ".join(" ".join(p.format_help().split()) for p in _all_parsers(build_parser()))
    pages = {"README": REPO / "README.md", **{m: REPO / m for m in re.findall(r"docs/[a-z_]+\.md", text)}}
    assert [m for m, page in pages.items() if not page.is_file()] == []
    quoted = re.findall(r"(README|docs/[a-z_]+\.md)[:,]? '([^']+)'", text)
    assert quoted, "the help quotes the sections it points to"
    assert [(m, s) for m, s in quoted if s not in _headings(pages[m])] == []


def test_example_outputs_count_their_grids_trials():
    """docs/sweeps.md's Slurm example printed 'enqueued 24 trials' for ablations/degradation.yaml, whose 9 cells ×
    3 seeds are 27 trials: an `enqueued N trials` in a code block is the trial count of the grid its command sweeps."""
    from sweeps.spec.grid import load_grid

    found = [(doc.name, grid.group(1), int(n)) for doc in DOCS
             for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), re.S)
             for grid in [re.search(r"resnet-ablate sweep (\S+\.yaml)", block)]
             for n in re.findall(r"enqueued (\d+) trials", block)]
    assert found, "the Slurm example shows its launch's output"
    assert [(doc, grid, n) for doc, grid, n in found if len(load_grid(REPO / grid).units()) != n] == []


def test_sweeps_doc_lists_every_key_of_a_grid_file():
    """docs/sweeps.md said a grid file holds study, base, grid, seeds, search, objective and wandb, and left out
    description, extra_cells, n_trials, timeout, launcher and plugins, which the grid loader accepts: every top-level
    grid key is named where the page says what a grid file holds."""
    from sweeps.spec.grid import TOP_KEYS

    text = (REPO / "docs" / "sweeps.md").read_text()
    holds = re.search(r"A grid file \(.*?It is\s+validated", text, re.S).group(0)
    assert [k for k in TOP_KEYS if f"`{k}`" not in holds] == []


def test_training_doc_names_every_key_of_a_run_config():
    """docs/training.md's list of what a run config holds left out `name`, `channels_last` and
    `label_smoothing` (and gave `eval_batch_size` only as a key a resume may change), and most optim and schedule
    keys only in prose (`weight_decay`, `milestones`, `warmup_lr`, …): every field of RunConfig, and of its optim and
    schedule sections, is named in that paragraph."""
    import dataclasses

    from resnet_core.run_config import RunConfig

    text = (REPO / "docs" / "training.md").read_text()
    holds = re.search(r"A run config \(`resnet_core/run_config\.py`\) holds.*?\n\n", text, re.S).group(0)
    assert [f.name for f in dataclasses.fields(RunConfig) if f"`{f.name}`" not in holds] == []
    for section in ("optim", "schedule"):   # their keys were prose ("momentum/nesterov/weight decay", "warm-up")
        fields = dataclasses.fields(RunConfig.SECTIONS[section])
        assert [f"{section}.{f.name}" for f in fields if f"`{f.name}`" not in holds] == []


def test_data_doc_names_every_key_of_the_glyph_set():
    """docs/data.md described `data.synthetic` in prose ("the image size, channels, …") and left out its seed, noise
    and clutter: every field of SyntheticConfig is named as a key in the glyph set's section."""
    import dataclasses

    from resnet_core.data.config import SyntheticConfig

    text = (REPO / "docs" / "data.md").read_text()
    section = re.search(r"## The offline glyph set.*?\n## ", text, re.S).group(0)
    assert [f.name for f in dataclasses.fields(SyntheticConfig) if f"`{f.name}`" not in section] == []
