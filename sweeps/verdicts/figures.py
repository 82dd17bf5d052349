"""Figures a study's W&B summary run shows (``sweeps.launch.summary``): ``reports`` adds its report's figures when
its CLI commands register (``reports.cli.register``), so data flows sweeps → reports and sweeps never imports
reports."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

# What draws the summary's figures: (study, root, storage URL or None for the journal, out folder) → PNG files.
SummaryFigures = Callable[[str, "str | Path", "str | None", Path], list[Path]]
SUMMARY_FIGURES: list[SummaryFigures] = []
