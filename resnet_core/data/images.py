"""The containers every source returns: labelled uint8 images on the CPU, and a dataset's splits with its stats."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(eq=False)
class LabeledImages:
    """uint8 images [N, C, H, W] and int64 labels [N], on the CPU."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {self.images.dtype} {tuple(self.images.shape)}")
        self.labels = self.labels.long()
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must be [N={self.images.shape[0]}], got {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, index: torch.Tensor) -> "LabeledImages":
        return LabeledImages(self.images[index], self.labels[index])


@dataclass(eq=False)
class ImageData:
    """A dataset's splits (val may be None) and what a model and a loader need to know about it."""

    train: LabeledImages
    val: LabeledImages | None
    test: LabeledImages
    classes: list[str]
    mean: tuple[float, ...]          # per channel, of the train split, on a [0, 1] scale
    std: tuple[float, ...]
    name: str = ""
    image_size: tuple[int, int] = field(init=False)  # (H, W) as stored
    in_channels: int = field(init=False)

    def __post_init__(self) -> None:
        _, c, h, w = self.train.images.shape
        self.in_channels, self.image_size = c, (h, w)
        for split in (self.val, self.test):
            if split is not None and split.images.shape[1:] != self.train.images.shape[1:]:
                raise ValueError(f"{self.name}: splits differ in shape: {tuple(split.images.shape[1:])} "
                                 f"vs train {tuple(self.train.images.shape[1:])}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def splits(self) -> dict[str, LabeledImages]:
        """The non-empty splits by name: train, (val,) test."""
        out = {"train": self.train, "val": self.val, "test": self.test}
        return {k: v for k, v in out.items() if v is not None}


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images [N, C, H, W] on a [0, 1] scale, exact (from a 256-bin histogram)."""
    levels = torch.arange(256, dtype=torch.float64) / 255
    means, stds = [], []
    for c in range(images.shape[1]):
        counts = torch.bincount(images[:, c].reshape(-1).cpu(), minlength=256).to(torch.float64)
        p = counts / counts.sum()
        mean = (p * levels).sum()
        means.append(float(mean))
        stds.append(float((p * (levels - mean).square()).sum().sqrt()))
    return tuple(means), tuple(stds)
