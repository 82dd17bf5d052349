"""`resnet-ablate models`: a table of named models, or a description of one config."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from .config import ModelConfig
from .effect import check_effect, chosen, note
from .errors import ConfigError
from .feasibility import check_forward
from .flops import forward_flops
from .model import build_model, count_params
from .overrides import apply_overrides, check_key
from .values import dump_yaml, read_yaml
from .zoo import NAMED_MODELS, input_size, named_model

TABLE_SKIP = {"resnet1202", "preresnet1001"}  # their FLOP count takes seconds; describe them with --config


def load_model_config(source: str | None, overrides: Sequence[str] = ()) -> ModelConfig:
    """A named model, a YAML model dict, or the `model:` section of a run-config YAML; then `--set` overrides."""
    written: dict = {}   # the keys the user chose: a model file's (``effect.chosen``) and the --set ones
    if source is None:
        d = {}
    elif source in NAMED_MODELS:
        d = dict(NAMED_MODELS[source])
    else:
        path = Path(source)
        if not path.exists():
            raise ConfigError(f"--config {source!r} is neither a named model nor a file; "
                              f"named models: {', '.join(NAMED_MODELS)}")
        loaded = read_yaml(path) or {}
        d = dict(loaded.get("model", loaded)) if isinstance(loaded, dict) else {}
        written = chosen(d, ModelConfig().to_dict())
    sets = [model_key(o) for o in overrides]
    cfg = ModelConfig.from_dict(apply_overrides(d, sets))
    for text in check_effect(cfg, written, "model.", sets=apply_overrides({}, sets),
                             before=lambda: ModelConfig.from_dict(d), source=str(source)):
        note(text)   # a file's key a --set left unread (effect.py)
    return cfg


def model_key(assignment: str) -> str:
    """``model.depth=56`` (the spelling `train` and `sweep` use) → ``depth=56``; a bare ``depth=56`` is kept (the
    older spelling); a key of another section is a one-line ConfigError."""
    check_key(assignment)
    key = assignment.split("=", 1)[0].strip()
    if key.startswith("model."):
        return assignment.strip()[len("model."):]
    if "." in key and key.split(".")[0] not in ModelConfig.__dataclass_fields__:
        raise ConfigError(f"--set {key}: `models` takes model keys only, e.g. --set model.depth=56; "
                          f"{key} is a run-config key (see `resnet-ablate train --set {key}=… --print-config`)")
    return assignment


def _row(name: str, cfg: ModelConfig) -> str:
    r = cfg.resolved()
    size = input_size(cfg)
    with torch.device("meta"):  # counting needs shapes only
        params = count_params(build_model(cfg))
    flops = forward_flops(cfg, size)
    return (f"{name:<26} {r.family:<9} {r.depth:>5} {r.block:<10} {r.shortcut:<9} {r.activation:<8} "
            f"{params / 1e6:>8.3f}M {flops / 1e9:>9.3f}G  {size}x{size}")


def models_table() -> str:
    header = (f"{'name':<26} {'family':<9} {'depth':>5} {'block':<10} {'shortcut':<9} {'act.':<8} "
              f"{'params':>9} {'FLOPs':>10}  input")
    lines = [header, "-" * len(header)]
    for name in NAMED_MODELS:
        if name not in TABLE_SKIP:
            lines.append(_row(name, named_model(name)))
    lines.append(f"(left out to stay fast: {', '.join(sorted(TABLE_SKIP))}; describe one with --config NAME)")
    return "\n".join(lines)


def describe_model(source: str | None, overrides: Sequence[str]) -> str:
    cfg = load_model_config(source, overrides)
    r = cfg.resolved()
    size = input_size(cfg)
    check_forward(cfg, channels=cfg.in_channels, size=size)  # a broken user part: one line, not a traceback
    model = build_model(cfg)
    lines = [cfg.describe(),
             f"parameters: {count_params(model):,}",
             f"forward FLOPs at {size}x{size}: {forward_flops(cfg, size):,}",
             f"residual blocks: {sum(1 for _ in model.blocks())}; conv/linear layers: {len(model.probe_layers())}",
             "config:", dump_yaml(r.to_dict()).rstrip()]
    return "\n".join(lines)
