"""The registry of dataset sources by `data.name`, and what a source gives: the config checks a name against it
(`config.py`), `sources.py` registers the built-in sources and loads them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..registry import Registry
from .images import LabeledImages


@dataclass
class RawSplits:
    """What a source gives: train and test, val only where the source has its own, and the class names."""

    train: LabeledImages
    test: LabeledImages
    classes: list[str]
    val: LabeledImages | None = None


Source = Callable[[Any], RawSplits]  # called with the run's `DataConfig`
SOURCES: Registry[Source] = Registry("data.name")
