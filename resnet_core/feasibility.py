"""Can a run config train at all? Checked before anything is created (a study, a run folder), so a combination no
trial can train is one config error, not N failed trials.

``check_trainable`` runs the model forward once on the ``meta`` device (shapes only, no memory, no compute) in train
mode with the run's image size and batch size: a feature map that shrinks below the kernel, or BatchNorm with one
value per channel (e.g. the ImageNet stem on 16-pixel images at ``batch_size: 1``), raises there exactly as it
would in the first training step. It also needs at least one full batch per epoch (the train loader drops the last
partial batch).
"""
from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any

from .errors import ConfigError


def train_count(n_train: int, val_size: int | float) -> int:
    """Training images left after the val split is held out (``data.val_size``: a count or a fraction)."""
    n_val = int(val_size * n_train) if isinstance(val_size, float) else int(val_size)
    return n_train - n_val


@functools.lru_cache(maxsize=4096)
def _forward_error(model_json: str, channels: int, size: int, batch: int) -> str | None:
    import torch

    from .config import ModelConfig
    from .model import build_model

    cfg = ModelConfig.from_dict(json.loads(model_json))
    try:
        with torch.device("meta"):
            model = build_model(cfg)
            model.train()
            model(torch.empty(batch, channels, size, size))
    except (RuntimeError, ValueError) as e:
        text = str(e).strip().splitlines()
        return text[0][:200] if text else type(e).__name__
    return None


def check_trainable(rc: Any, *, image_size: int, channels: int, classes: int, n_train: int | None = None) -> None:
    """Raise a one-line ``ConfigError`` if run config ``rc`` cannot take one training step on images of
    ``channels`` × ``image_size`` × ``image_size`` (before ``data.resize``) with ``classes`` classes, or if the
    ``n_train`` training images (before the val split) give no full batch."""
    size = rc.data.resize or image_size
    if n_train is not None:
        n = train_count(n_train, rc.data.val_size)
        if n <= 0:
            raise ConfigError(f"data.val_size {rc.data.val_size!r} holds out {n_train - n} images but the train split "
                              f"has only n_train {n_train}: no training images would be left; give data.val_size "
                              f"below {n_train} (or a fraction in [0, 1))")
        if n < rc.batch_size:
            raise ConfigError(f"batch_size {rc.batch_size} is larger than the {n} training images left after "
                              f"data.val_size {rc.data.val_size!r}: an epoch would have no full batch")
    model = dataclasses.replace(rc.model, in_channels=channels, num_classes=classes)
    # BatchNorm needs > 1 value per channel; a batch of 2 is as good as any larger one for every shape check
    error = _forward_error(json.dumps(model.to_dict(), sort_keys=True), channels, size, min(rc.batch_size, 2))
    if error is not None:
        r = model.resolved()
        raise ConfigError(f"this config cannot train: model.stem {r.stem}, {len(r.stages)} stages on "
                          f"{size}x{size} images at batch_size {rc.batch_size}: {error}")
