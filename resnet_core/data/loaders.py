"""The fast path (as airbench's CifarLoader): the dataset goes to the device once as uint8, and cropping, flipping,
resizing and normalizing happen there, per batch, with tensor ops.

`TrainLoader` serves G fused members at once (docs/fused_trials.md): each member has its own data order and
augmentation, drawn for a whole epoch up front from a CPU generator seeded by (member seed, epoch). So the stream
is the same on every device, member g of a fused run sees exactly what a solo run with its seed sees, and a run
resumed at (epoch, batch) sees exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Sequence

import torch
from einops import rearrange

from ..errors import ConfigError
from .augment import AUGMENTS, Augment, Geometry, Params
from .images import ImageData, channel_stats
from .seed_style import TorchEvalLoader, TorchTrainLoader
from .streams import stream_seed

if TYPE_CHECKING:
    from .config import DataConfig


def _size2(size: int | Sequence[int] | None, default: tuple[int, int]) -> tuple[int, int]:
    if size is None:
        return default
    if isinstance(size, int):
        return (size, size)
    return (int(size[0]), int(size[1]))


def _affine(mean: Sequence[float] | None, std: Sequence[float] | None, normalize: bool, images: torch.Tensor,
            members: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) [1, G·C, 1, 1] so that x·scale + shift maps 0…255 pixels to normalized inputs."""
    c = images.shape[1]
    if normalize:
        if mean is None or std is None:
            own_mean, own_std = channel_stats(images)
            mean, std = mean or own_mean, std or own_std
        if len(mean) != c or len(std) != c:
            raise ConfigError(f"data.mean/std need {c} values (one per channel), got {list(mean)} and {list(std)}")
        m = torch.tensor(mean, dtype=torch.float64)
        s = torch.tensor(std, dtype=torch.float64)
        scale, shift = 1 / (255 * s), -m / s
    else:
        scale, shift = torch.full((c,), 1 / 255, dtype=torch.float64), torch.zeros(c, dtype=torch.float64)
    scale, shift = scale.repeat(members), shift.repeat(members)
    return (scale.float().view(1, -1, 1, 1).to(device), shift.float().view(1, -1, 1, 1).to(device))


class TrainLoader:
    """Shuffled (unless shuffle=False), augmented batches for G members: x float32 [B, G·C, H, W] (member g in channels C·g…C·g+C−1),
    y int64 [B, G]. drop_last: every epoch has `steps_per_epoch` full batches."""

    def __init__(self, images_u8: torch.Tensor, labels: torch.Tensor, *, seeds: Sequence[int], batch_size: int,
                 augment: str | type[Augment] = "crop_flip", pad: int = 4, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, normalize: bool = True,
                 out_size: int | Sequence[int] | None = None, scale_size: int | None = None,
                 device: str | torch.device = "cpu", channels_last: bool = False, shuffle: bool = True) -> None:
        if images_u8.dtype != torch.uint8 or images_u8.dim() != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {images_u8.dtype} {tuple(images_u8.shape)}")
        if not seeds:
            raise ConfigError("TrainLoader needs at least one member seed")
        if not isinstance(batch_size, int) or batch_size < 1 or batch_size > images_u8.shape[0]:
            raise ConfigError(f"batch_size must be 1..{images_u8.shape[0]} (the train split's size), got {batch_size!r}")
        self.device = torch.device(device)
        self.images = images_u8.to(self.device)
        self.labels = labels.long().to(self.device)
        self.seeds = [int(s) for s in seeds]
        self.batch_size = batch_size
        self.channels_last = channels_last
        self.shuffle = shuffle
        size = tuple(images_u8.shape[-2:])
        self.geometry = Geometry(size, _size2(out_size, size), pad, scale_size)
        self.augment = AUGMENTS.get(augment)(self.geometry)
        self.scale, self.shift = _affine(mean, std, normalize, images_u8, len(self.seeds), self.device)

    @property
    def members(self) -> int:
        return len(self.seeds)

    @property
    def num_samples(self) -> int:
        return self.images.shape[0]

    @property
    def steps_per_epoch(self) -> int:
        return self.num_samples // self.batch_size

    def __len__(self) -> int:
        return self.steps_per_epoch

    def plan(self, epoch: int) -> tuple[torch.Tensor, Params]:
        """The whole epoch, drawn on the CPU and moved once: order [G, N] (the stored order when not shuffling)
        and augmentation parameters [G, N, …]."""
        orders, params = [], []
        for seed in self.seeds:
            gen = torch.Generator().manual_seed(stream_seed(seed, epoch))
            orders.append(torch.randperm(self.num_samples, generator=gen) if self.shuffle
                          else torch.arange(self.num_samples))
            params.append(self.augment.draw(self.num_samples, gen))
        stacked = {k: torch.stack([p[k] for p in params]).to(self.device) for k in params[0]}
        return torch.stack(orders).to(self.device), stacked

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches `start`… of `epoch` (0-based)."""
        order, params = self.plan(epoch)
        g, b = self.members, self.batch_size
        for step in range(start, self.steps_per_epoch):
            window = slice(step * b, (step + 1) * b)
            index = order[:, window].reshape(g * b)
            p = {k: v[:, window].flatten(0, 1) for k, v in params.items()}
            x = self.augment.apply(self.images[index], p)                  # [G·B, C, H, W], 0…255
            x = rearrange(x, "(g b) c h w -> b (g c) h w", g=g)
            x = torch.addcmul(self.shift, x, self.scale)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = rearrange(self.labels[index], "(g b) -> b g", g=g)
            yield x, y


class EvalLoader:
    """Every image once, in order, the last partial batch kept: x float32 [B, C, H, W], y [B]. No augmentation,
    unless ``augment`` names one (test-time augmentation, seed 001): its parameters are drawn once, from ``seed``,
    so every pass, every fused member and a resumed run see the same crops."""

    def __init__(self, images_u8: torch.Tensor, labels: torch.Tensor, *, batch_size: int,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None, normalize: bool = True,
                 out_size: int | Sequence[int] | None = None, device: str | torch.device = "cpu",
                 channels_last: bool = False, augment: str = "none", pad: int = 4, scale_size: int | None = None,
                 seed: int = 0) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"eval batch_size must be a positive integer, got {batch_size!r}")
        self.device = torch.device(device)
        self.images = images_u8.to(self.device)
        self.labels = labels.long().to(self.device)
        self.batch_size = batch_size
        self.channels_last = channels_last
        size = tuple(images_u8.shape[-2:])
        self.augment = AUGMENTS.get(augment)(Geometry(size, _size2(out_size, size), pad, scale_size))
        gen = torch.Generator().manual_seed(stream_seed(seed, 0))
        self.params = {k: v.to(self.device) for k, v in self.augment.draw(self.num_samples, gen).items()}
        self.scale, self.shift = _affine(mean, std, normalize, images_u8, 1, self.device)

    @property
    def num_samples(self) -> int:
        return self.images.shape[0]

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, self.num_samples, self.batch_size):
            window = slice(start, start + self.batch_size)
            x = self.augment.apply(self.images[window], {k: v[window] for k, v in self.params.items()})
            x = torch.addcmul(self.shift, x, self.scale)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[start:start + self.batch_size]


@dataclass
class Loaders:
    """A run's loaders. Every train loader has `epoch(epoch, start)`, `steps_per_epoch` and `members`."""

    train: TrainLoader
    val: EvalLoader | None
    test: EvalLoader

    def evals(self) -> dict[str, EvalLoader]:
        return {k: v for k, v in (("val", self.val), ("test", self.test)) if v is not None}


def normalization(cfg: "DataConfig", data: ImageData) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std to normalize with: the config's, else the train split's own."""
    mean = tuple(cfg.mean) if cfg.mean is not None else data.mean
    std = tuple(cfg.std) if cfg.std is not None else data.std
    return mean, std


def served_size(cfg: "DataConfig", data: ImageData) -> tuple[int, int]:
    """(H, W) of the images the train loader serves: `data.resize` where set, else the stored size."""
    return _size2(cfg.resize, tuple(data.image_size))


def build_loaders(data: ImageData, cfg: "DataConfig", *, seeds: Sequence[int], batch_size: int,
                  eval_batch_size: int = 500, device: str | torch.device = "cpu",
                  channels_last: bool = False) -> Loaders:
    """A dataset's loaders as its config asks: train (G = len(seeds) members), val (or None) and test.

    data.loader "device" gives the fast loaders; "torch" the seeds' PIL DataLoader behind the same interface
    (one member only).
    """
    mean, std = normalization(cfg, data)
    common = dict(mean=mean, std=std, normalize=cfg.normalize, out_size=cfg.resize, device=device,
                  channels_last=channels_last)
    splits = {name: split for name, split in (("val", data.val), ("test", data.test)) if split is not None}
    tta = dict(augment=cfg.augment, pad=cfg.pad, scale_size=cfg.scale_size, seed=cfg.split_seed)
    per_split = {name: (tta if name == "test" and cfg.test_augment else {}) for name in splits}
    if cfg.loader == "torch":
        if len(seeds) != 1:
            raise ConfigError(f"data.loader torch serves one member, got {len(seeds)} seeds; "
                              "use data.loader device for fused trials")
        train = TorchTrainLoader(data.train, seed=seeds[0], batch_size=batch_size, num_workers=cfg.num_workers,
                                 augment=cfg.augment, pad=cfg.pad, scale_size=cfg.scale_size, shuffle=cfg.shuffle,
                                 **common)
        evals = {name: TorchEvalLoader(split, batch_size=eval_batch_size, num_workers=cfg.num_workers, **common,
                                       **per_split[name]) for name, split in splits.items()}
    else:
        train = TrainLoader(data.train.images, data.train.labels, seeds=seeds, batch_size=batch_size,
                            augment=cfg.augment, pad=cfg.pad, scale_size=cfg.scale_size, shuffle=cfg.shuffle,
                            **common)
        evals = {name: EvalLoader(split.images, split.labels, batch_size=eval_batch_size, **common, **per_split[name])
                 for name, split in splits.items()}
    return Loaders(train, evals.get("val"), evals["test"])
