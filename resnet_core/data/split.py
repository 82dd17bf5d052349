"""A deterministic validation split held out of the training set."""
from __future__ import annotations

import torch

from ..errors import ConfigError
from .images import LabeledImages


def val_count(n: int, val_size: int | float) -> int:
    """How many of n training images `val_size` (a count, or a fraction of n) holds out."""
    count = round(val_size * n) if isinstance(val_size, float) else int(val_size)
    if not 0 <= count < n:
        raise ConfigError(f"data.val_size {val_size!r} leaves no training images (the train split has {n})")
    return count


def holdout(train: LabeledImages, val_size: int | float, split_seed: int) -> tuple[LabeledImages, LabeledImages | None]:
    """(train, val): val is the first `val_size` of a fixed permutation drawn from `split_seed`.

    Both keep the original order of their images, so the split decides membership only.
    """
    count = val_count(len(train), val_size)
    if count == 0:
        return train, None
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(split_seed))
    val_idx, train_idx = perm[:count].sort().values, perm[count:].sort().values
    return train.subset(train_idx), train.subset(val_idx)
