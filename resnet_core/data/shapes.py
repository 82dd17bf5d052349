"""What a dataset holds, known without loading it: the synthetic set from its config, the torchvision sets (and the
CIFAR-10 JPEG archive) from a table. The sweep's time estimate and its checks before a study read it."""
from __future__ import annotations

from typing import NamedTuple

from .config import DataConfig


class DatasetShape(NamedTuple):
    n_train: int
    n_test: int
    image_size: int
    channels: int
    classes: int


KNOWN_SHAPES = {
    "cifar10": DatasetShape(50_000, 10_000, 32, 3, 10),
    "cifar10_jpeg": DatasetShape(50_000, 10_000, 32, 3, 10),
    "cifar100": DatasetShape(50_000, 10_000, 32, 3, 100),
    "fashion_mnist": DatasetShape(60_000, 10_000, 28, 1, 10),
    "mnist": DatasetShape(60_000, 10_000, 28, 1, 10),
}


def dataset_shape(cfg: DataConfig) -> DatasetShape | None:
    """(train images, test images, image size, channels, classes) of the dataset ``cfg`` names; None if it is not
    known without loading it (an ImageFolder tree, a dataset a plugin registers)."""
    if cfg.name == "synthetic":
        s = cfg.synthetic
        return DatasetShape(s.n_train, s.n_test, s.image_size, s.channels, s.num_classes)
    return KNOWN_SHAPES.get(cfg.name)
