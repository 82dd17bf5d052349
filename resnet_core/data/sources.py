"""`load_dataset(cfg) -> ImageData`: a registry of dataset sources, the val split and the train split's stats."""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .config import TORCHVISION_SETS, DataConfig
from .imagefolder import load_imagefolder
from .images import ImageData, LabeledImages, channel_stats
from .jpeg_archive import check_archive, read_jpeg_archive
from .source_registry import SOURCES, RawSplits, Source
from .split import holdout
from .synthetic import SHAPES, make_glyphs
from .torchvision_sets import check_extracted, load_torchvision

__all__ = ["DEFAULT_JPEG_ARCHIVE", "SOURCES", "RawSplits", "Source", "load_dataset"]

DEFAULT_JPEG_ARCHIVE = Path("data") / "cifar10_jpeg.npz"


@SOURCES.register("synthetic")
def _synthetic(cfg: DataConfig) -> RawSplits:
    s = cfg.synthetic
    kw = dict(image_size=s.image_size, channels=s.channels, num_classes=s.num_classes, noise=s.noise,
              clutter=s.clutter)
    # train and test come from two streams of the one seed (2·seed and 2·seed+1), so they never share images
    train = LabeledImages(*make_glyphs(s.n_train, seed=2 * s.seed, **kw))
    test = LabeledImages(*make_glyphs(s.n_test, seed=2 * s.seed + 1, **kw))
    return RawSplits(train, test, list(SHAPES[: s.num_classes]))


def _torchvision(name: str) -> Source:
    def load(cfg: DataConfig) -> RawSplits:
        train, test, classes = load_torchvision(name, cfg.data_root(), cfg.download)
        return RawSplits(train, test, classes)

    return load


for _name in TORCHVISION_SETS:
    SOURCES.register(_name)(_torchvision(_name))


@SOURCES.register("imagefolder")
def _imagefolder(cfg: DataConfig) -> RawSplits:
    train, val, test, classes = load_imagefolder(cfg.path, cfg.resize)
    return RawSplits(train, test, classes, val)


def jpeg_archive_path(cfg: DataConfig) -> Path:
    """The shared archive: data.path, else ./data/cifar10_jpeg.npz, else <root>/cifar10_jpeg.npz."""
    if cfg.path is not None:
        return Path(cfg.path).expanduser()
    candidates = [DEFAULT_JPEG_ARCHIVE, cfg.data_root() / "cifar10_jpeg.npz"]
    return next((p for p in candidates if p.is_file()), candidates[0])


@SOURCES.register("cifar10_jpeg")
def _cifar10_jpeg(cfg: DataConfig) -> RawSplits:
    train, test, classes = read_jpeg_archive(jpeg_archive_path(cfg))
    return RawSplits(train, test, classes)


def check_present(cfg: DataConfig) -> None:
    """A one-line ``ConfigError`` where every trial would fail to find ``cfg``'s files: a torchvision set not
    extracted under data.root with data.download false, a JPEG archive that is not there. Reads only (an
    ImageFolder tree: ``imagefolder.check_imagefolder``)."""
    if cfg.name in TORCHVISION_SETS:
        check_extracted(cfg.name, cfg.data_root(), cfg.download)
    elif cfg.name == "cifar10_jpeg":
        check_archive(jpeg_archive_path(cfg))


def load_dataset(cfg: DataConfig) -> ImageData:
    """Load `cfg.name`, hold out the val split, and measure the train split's per-channel mean and std (a channel
    with one value throughout, std 0, is refused where it would normalize)."""
    raw = SOURCES.get(cfg.name)(cfg)
    train, val = raw.train, raw.val
    if cfg.val_size:
        if val is not None:
            raise ConfigError(f"data.val_size {cfg.val_size!r}: {cfg.name} already has its own val split; "
                              "set data.val_size to 0")
        train, val = holdout(train, cfg.val_size, cfg.split_seed)
    mean, std = channel_stats(train.images)
    data = ImageData(train, val, raw.test, raw.classes, mean, std, name=cfg.name)
    for key in ("mean", "std"):
        value = getattr(cfg, key)
        if value is not None and len(value) != data.in_channels:
            raise ConfigError(f"data.{key} has {len(value)} values but {cfg.name} has {data.in_channels} channels")
    flat = [c for c, s in enumerate(std) if s == 0]
    if cfg.normalize and cfg.std is None and flat:   # dividing by 0 makes every input inf: a "diverged" run
        raise ConfigError(f"data.std: channel {flat[0]} of {cfg.name}'s train split holds one value "
                          f"({round(mean[flat[0]] * 255)} in every pixel), so its std is 0 and cannot normalize; set "
                          f"data.std (and data.mean) to fixed values, or data.normalize false")
    return data
