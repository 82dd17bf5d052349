"""The loader the seed programs use, kept for benchmarks and comparison: a torch DataLoader over PIL images with
torchvision transforms (e.g. RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize)."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from .augment import AUGMENTS, Geometry
from .images import LabeledImages, channel_stats
from .streams import stream_seed


class PILImages(Dataset):
    """LabeledImages as (transform(PIL image), label) pairs, as torchvision's CIFAR10 dataset gives them."""

    def __init__(self, data: LabeledImages, transform: Callable) -> None:
        self.pixels = data.images.permute(0, 2, 3, 1).contiguous().numpy()  # NHWC, as PIL wants
        self.labels = data.labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        pixels = self.pixels[i]
        img = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
        return self.transform(img), self.labels[i]


def seed_style_transform(augment: str, size: tuple[int, int], *, pad: int = 4, out_size: int | None = None,
                         scale_size: int | None = None, normalize: bool = True,
                         mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> Callable:
    from torchvision import transforms as T

    out = (out_size, out_size) if out_size else size
    steps = AUGMENTS.get(augment)(Geometry(size, out, pad, scale_size)).pil_transforms() + [T.ToTensor()]
    if normalize:
        steps.append(T.Normalize(mean, std))
    return T.Compose(steps)


def seed_style_loader(data: LabeledImages, batch_size: int, num_workers: int = 0, augment: str = "crop_flip",
                      mean: Sequence[float] | None = None, std: Sequence[float] | None = None, *,
                      shuffle: bool = True, drop_last: bool = False, pad: int = 4, out_size: int | None = None,
                      scale_size: int | None = None, normalize: bool = True, seed: int | None = None) -> DataLoader:
    """A DataLoader as the tutorials build one; mean/std None: the data's own. For evaluation: augment="none",
    shuffle=False."""
    if normalize and (mean is None or std is None):
        own_mean, own_std = channel_stats(data.images)
        mean, std = mean or own_mean, std or own_std
    size = tuple(data.images.shape[-2:])
    transform = seed_style_transform(augment, size, pad=pad, out_size=out_size, scale_size=scale_size,
                                     normalize=normalize, mean=mean, std=std)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    return DataLoader(PILImages(data, transform), batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                      num_workers=num_workers, generator=gen, pin_memory=torch.cuda.is_available())


class TorchTrainLoader:
    """`seed_style_loader` behind the `TrainLoader` interface (one member, y [B, 1], drop_last), so the engine can
    run the seeds' data path for comparison. The order of (seed, epoch) is fixed; with num_workers > 0 so are the
    augmentation draws (the workers' seeds come from the same generator)."""

    def __init__(self, data: LabeledImages, *, seed: int, batch_size: int, num_workers: int = 0,
                 augment: str = "crop_flip", mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, normalize: bool = True, pad: int = 4,
                 out_size: int | None = None, scale_size: int | None = None,
                 device: str | torch.device = "cpu", channels_last: bool = False, shuffle: bool = True) -> None:
        self.seed, self.batch_size, self.num_samples = seed, batch_size, len(data)
        self.device, self.channels_last = torch.device(device), channels_last
        # a fresh worker pool each epoch draws its workers' seeds from the re-seeded generator
        self.loader = seed_style_loader(data, batch_size, num_workers, augment, mean, std, drop_last=True, pad=pad,
                                        out_size=out_size, scale_size=scale_size, normalize=normalize, seed=seed,
                                        shuffle=shuffle)
        # with num_workers 0 the augmentation draws from the global torch RNG: the engine sets this on resume to
        # restore that RNG once the skipped batches of the first epoch have been drawn
        self.after_skip: Callable[[], None] | None = None

    @property
    def members(self) -> int:
        return 1

    @property
    def steps_per_epoch(self) -> int:
        return self.num_samples // self.batch_size

    def __len__(self) -> int:
        return self.steps_per_epoch

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.loader.generator.manual_seed(stream_seed(self.seed, epoch))
        batches = iter(self.loader)
        hook, self.after_skip = self.after_skip, None
        try:
            for _ in range(start):  # skipping draws the skipped batches' augmentation from the global RNG…
                next(batches)
        finally:  # …so a resumed run restores it here, as it was at the checkpoint (also when stopped mid-skip)
            if hook is not None:
                hook()
        while True:
            with _rng_kept_if_stopped():  # a stop mid-draw leaves the RNG as at the step before, for its checkpoint
                batch = next(batches, None)
            if batch is None:
                return
            x, y = batch
            x = x.to(self.device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y.to(self.device, non_blocking=True)[:, None]


@contextlib.contextmanager
def _rng_kept_if_stopped() -> Iterator[None]:
    """The global torch RNG as it was before the block if the block raises (Ctrl-C, SIGTERM, a failed read) part-way
    through its draws: the checkpoint written at a stop then holds the RNG as at a step's end, and the resumed run
    draws that batch again as the uninterrupted run did."""
    state = torch.get_rng_state()
    try:
        yield
    except BaseException:
        torch.set_rng_state(state)
        raise


class _OwnStream:
    """Draws from the global torch RNG made inside ``drawing()`` come from a stream of their own, seeded by ``seed``
    and carried from one block to the next; outside the blocks the global RNG is as it was (whatever a block raises),
    so those draws neither take from nor advance the run's stream."""

    def __init__(self, seed: int) -> None:
        self.state = torch.Generator().manual_seed(seed).get_state()

    @contextlib.contextmanager
    def drawing(self) -> Iterator[None]:
        outer = torch.get_rng_state()
        torch.set_rng_state(self.state)
        try:
            yield
        finally:
            self.state = torch.get_rng_state()
            torch.set_rng_state(outer)


class TorchEvalLoader:
    """`seed_style_loader` without shuffling, behind the `EvalLoader` interface; without augmentation unless
    ``augment`` names one (test-time augmentation, as seed 001's test loader reused its training transform): then
    its draws come from a stream of its own, seeded by ``seed`` at every pass (in the process, or in workers seeded
    from it with num_workers > 0), so every evaluation sees the same crops, as the device loader's, and never draws
    from the global RNG: a run stopped in an evaluation and resumed matches the uninterrupted run (the program drew
    new crops from the global RNG each epoch)."""

    def __init__(self, data: LabeledImages, *, batch_size: int, num_workers: int = 0,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None, normalize: bool = True,
                 out_size: int | None = None, device: str | torch.device = "cpu", channels_last: bool = False,
                 augment: str = "none", pad: int = 4, scale_size: int | None = None, seed: int | None = None) -> None:
        self.device, self.channels_last, self.num_samples = torch.device(device), channels_last, len(data)
        self.seed = stream_seed(seed or 0, 0)  # every pass: the workers' seeds and the in-process draws
        self.loader = seed_style_loader(data, batch_size, num_workers, augment, mean, std, shuffle=False,
                                        out_size=out_size, normalize=normalize, pad=pad, scale_size=scale_size,
                                        seed=self.seed)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.loader.generator.manual_seed(self.seed)  # the same workers' seeds at every pass
        stream, batches = _OwnStream(self.seed), iter(self.loader)
        while True:
            with stream.drawing():  # the same in-process draws at every pass
                batch = next(batches, None)
            if batch is None:
                return
            x, y = batch
            x = x.to(self.device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y.to(self.device, non_blocking=True)
