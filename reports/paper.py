"""The papers' numbers (reports/paper.yaml) and a lookup from a run's dataset and model config to one of them."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping

from resnet_core.config import ModelConfig
from resnet_core.families import FAMILIES, default_block
from resnet_core.values import read_yaml

PAPER_FILE = Path(__file__).with_name("paper.yaml")

# Model keys an entry may name, and the paper default of each when the entry leaves it out.
MATCH_DEFAULTS = {"project_all": False, "pooling": "avg"}
MATCH_KEYS = ("family", "depth", "block", "shortcut", "project_all", "activation", "pooling")
# A config that departs from these defaults is not the papers' network: no paper value.
PAPER_DEFAULTS = {"width": 1.0, "init": "kaiming", "conv_bias": False, "shortcut_norm": True,
                  "project_stage_entry": False, "zero_init_residual": False}


class PaperValue(tuple):
    """``(value, source)``, unpackable as a pair, with the entry's details as attributes."""

    def __new__(cls, value: float, source: str, entry: Mapping[str, Any]):
        self = super().__new__(cls, (value, source))
        self.entry = dict(entry)
        return self

    value = property(lambda self: self[0])
    source = property(lambda self: self[1])
    std = property(lambda self: self.entry.get("std"))
    best = property(lambda self: self.entry.get("best"))
    metric = property(lambda self: self.entry.get("metric", "test_error"))

    def display(self) -> str:
        """'6.61 ± 0.16' or '8.75'."""
        text = f"{self.value:.2f}"
        if self.std is not None:
            text += f" ± {self.std:.2f}"
        return text


@functools.lru_cache(maxsize=1)
def load_paper() -> dict[str, Any]:
    return read_yaml(PAPER_FILE)


def paper_entries() -> list[dict[str, Any]]:
    return [dict(e) for e in load_paper()["entries"]]


def paper_number(field: str = "value", **keys: Any) -> Any:
    """A number paper.yaml records, for text that quotes it (reports/claims.py): ``field`` of the one entry whose
    keys equal ``keys`` (an entry's list accepts any of its values; a key it leaves out takes MATCH_DEFAULTS).
    Raises LookupError unless exactly one entry matches, so a claim cannot quote a number the file lacks."""
    def matches(entry: Mapping[str, Any]) -> bool:
        for key, want in keys.items():
            have = entry.get(key, MATCH_DEFAULTS.get(key))
            if not (want in have if isinstance(have, list) else have == want):
                return False
        return True

    found = [e for e in load_paper()["entries"] if matches(e)]
    if len(found) != 1 or field not in found[0]:
        raise LookupError(f"paper.yaml: {len(found)} entries match {keys} (want one with {field!r})")
    return found[0][field]


def source_short(source: str) -> str:
    """A source's short name ('He et al. 2016') from paper.yaml."""
    return load_paper()["sources"][source]["short"]


def training_recipe(dataset: str) -> dict[str, Any]:
    """The papers' training recipe for a dataset, as paper.yaml records it (``iterations``, ``batch_size``,
    ``source``)."""
    return dict(load_paper()["training"][dataset])


def normalize_dataset(name: Any) -> str:
    """'CIFAR-10', 'cifar_10', 'cifar10' -> 'cifar10'."""
    return "".join(ch for ch in str(name or "").lower() if ch.isalnum())


def source_text(entry: Mapping[str, Any]) -> str:
    src = load_paper()["sources"].get(entry["source"], {})
    text = f"{src.get('short', entry['source'])}, {entry.get('table', '')}".rstrip(", ")
    if entry.get("stat"):
        text += f", {entry['stat']}"
    if entry.get("note"):
        text += f" ({entry['note']})"
    if entry.get("metric", "test_error") != "test_error":
        text += f", metric {entry['metric']}"
    return text


def citations() -> dict[str, str]:
    return {k: v["cite"] for k, v in load_paper()["sources"].items()}


def resolve_model(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The config with `auto` values and depth/stages resolved as the model builder does (falls back to the raw
    values plus ModelConfig's defaults if the config does not validate)."""
    cfg = dict(model_cfg or {})
    try:
        return ModelConfig.from_dict(cfg).resolved().to_dict()
    except Exception:  # an older or partial config: best effort
        import dataclasses

        out = {f.name: (f.default if f.default is not dataclasses.MISSING else None)
               for f in dataclasses.fields(ModelConfig)}
        out.update(cfg)
        if out.get("block") == "auto" and out.get("depth"):
            try:
                out["block"] = default_block(out.get("family", "cifar"), int(out["depth"]))
            except Exception:
                pass
        if out.get("stem") == "auto":
            out["stem"] = _family_stem(out.get("family"))
        return out


def _family_stem(name: Any) -> Any:
    """The stem ``stem: auto`` picks for a family (the name itself for a family this process lacks)."""
    return FAMILIES.get(name).stem if name in FAMILIES else name


def _matches(entry: Mapping[str, Any], model: Mapping[str, Any]) -> bool:
    for key in MATCH_KEYS:
        want = entry.get(key, MATCH_DEFAULTS.get(key))
        if want is None:
            continue
        have = model.get(key)
        if isinstance(want, list):
            if have not in want:
                return False
        elif have != want:
            return False
    return True


def paper_value(dataset: str, model_cfg_dict: Mapping[str, Any]) -> PaperValue | None:
    """The paper's error for this dataset and model, as ``(value, source)``, or None where no paper reports one."""
    raw = dict(model_cfg_dict or {})
    if raw.get("width", 1.0) != 1.0:  # resolve() folds the multiplier into the widths
        return None
    model = resolve_model(raw)
    if raw.get("widths") is not None:
        family = FAMILIES.get(model["family"]) if model.get("family") in FAMILIES else None
        if list(raw["widths"]) != list(family.widths if family else ())[: len(raw["widths"])]:
            return None
    for key, default in PAPER_DEFAULTS.items():
        if model.get(key, default) != default:
            return None
    if model.get("stem") not in (None, _family_stem(model.get("family"))):
        return None
    ds, note = normalize_dataset(dataset), None
    for name, alias in (load_paper().get("aliases") or {}).items():
        if normalize_dataset(name) == ds:
            ds, note = normalize_dataset(alias["dataset"]), alias.get("note")
    for entry in load_paper()["entries"]:
        if normalize_dataset(entry["dataset"]) == ds and _matches(entry, model):
            entry = {**entry, "note": note} if note else entry
            return PaperValue(float(entry["value"]), source_text(entry), entry)
    return None
