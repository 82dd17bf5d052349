"""`DataConfig`: which dataset, how it is split, augmented and normalized."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..effect import Unread
from ..errors import ConfigError, choices_error
from ..registry import Registry
from ..values import check_fields, is_int, is_number
from .augment import AUGMENTS
from .source_registry import SOURCES
from .synthetic import SHAPES

PART_KEYS: dict[str, Registry] = {"name": SOURCES, "augment": AUGMENTS}  # data key → the registry of its names
LOADERS = ("device", "torch")
# what the built-in sources and augmentations read (a plugin's may read any key: none is refused for it)
TORCHVISION_SETS = ("cifar10", "cifar100", "fashion_mnist", "mnist")   # downloaded into data.root
BUILT_IN_SOURCES = ("synthetic", *TORCHVISION_SETS, "imagefolder", "cifar10_jpeg")
READS_NO_PATH = ("synthetic", *TORCHVISION_SETS)                       # data.path unread
AUGMENTS_NO_PAD = ("none", "flip", "random_resized_crop")            # data.pad (and data.scale_size) unread
ROOT_ENV = "RESNET_ABLATE_DATA"


def _check_int(key: str, value: object, minimum: int) -> None:
    if not is_int(value) or value < minimum:
        raise ConfigError(f"{key} must be an integer >= {minimum}, got {value!r}")


def _check_bool(key: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")


def _check_keys(kind: str, cls: type, d: dict[str, Any]) -> None:
    valid = [f.name for f in dataclasses.fields(cls)]
    for key in d:
        if key not in valid:
            raise choices_error(kind, key, valid)


@dataclass
class SyntheticConfig:
    image_size: int = 16        # square images, pixels (≥ 8)
    channels: int = 3           # 3 (RGB) or 1 (grey)
    num_classes: int = 10       # 2…10: the first k shapes of the glyph set
    n_train: int = 5000         # training images (the val split, if any, is held out of these)
    n_test: int = 1000          # test images, drawn from a separate random stream
    seed: int = 0               # the dataset itself; the same seed always gives the same images
    noise: float = 0.06         # std of the Gaussian pixel noise, on a [0, 1] scale
    clutter: int = 3            # at most this many distractor dots and strokes per image

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_fields(self, "data.synthetic.")
        _check_int("data.synthetic.image_size", self.image_size, 8)
        if self.channels not in (1, 3) or isinstance(self.channels, bool):
            raise choices_error("data.synthetic.channels", self.channels, (1, 3))
        if not is_int(self.num_classes) or not 2 <= self.num_classes <= len(SHAPES):
            raise ConfigError(f"data.synthetic.num_classes must be an integer in 2..{len(SHAPES)}, "
                              f"got {self.num_classes!r}")
        _check_int("data.synthetic.n_train", self.n_train, 1)
        _check_int("data.synthetic.n_test", self.n_test, 1)
        _check_int("data.synthetic.seed", self.seed, 0)
        if not is_number(self.noise, finite=False) or self.noise < 0:
            raise ConfigError(f"data.synthetic.noise must be a number >= 0, got {self.noise!r}")
        _check_int("data.synthetic.clutter", self.clutter, 0)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "SyntheticConfig":
        d = dict(d or {})
        _check_keys("data.synthetic key", cls, d)
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class DataConfig:
    name: str = "synthetic"          # synthetic | cifar10 | cifar100 | fashion_mnist | mnist | imagefolder | cifar10_jpeg
    root: str | None = None          # download/cache dir for torchvision sets; None: $RESNET_ABLATE_DATA or ~/.cache/resnet-ablate/data
    path: str | None = None          # imagefolder: a dir with train/ and val/ or test/; cifar10_jpeg: the .npz file
    download: bool = True            # let torchvision download a missing dataset into root
    val_size: int | float = 0        # held out of train: a count, or a fraction in (0, 1); 0: no val split (He et al.: 5000)
    split_seed: int = 0              # the fixed permutation that picks the val split
    resize: int | None = None        # serve square images of this size, resized on the device per batch (seed 001: 224)
    shuffle: bool = True             # a fresh random order every epoch; false: the stored order (seed 004)
    augment: str = "crop_flip"       # crop_flip | flip | none | random_resized_crop (seed 001) | scale_crop (seed 004)
    pad: int = 4                     # crop_flip: zero padding before the random crop (the paper's 4 pixels)
    scale_size: int | None = None    # scale_crop: shorter side before the random crop; None: image size + 2·pad (40 for CIFAR)
    test_augment: bool = False       # serve the test split with `augment` too, crops drawn once from split_seed (seed 001)
    normalize: bool = True           # subtract the mean, divide by the std (seeds 002, 004: false, pixels in [0, 1])
    mean: list[float] | None = None  # fixed per-channel mean on a [0, 1] scale (seed 003); None: the train split's own
    std: list[float] | None = None   # fixed per-channel std (seed 003: 0.2023, 0.1994, 0.2010); None: the train split's
    loader: str = "device"           # device: data on the device, augmented there (fast); torch: a PIL DataLoader as the seeds
    num_workers: int = 0             # torch loader only: DataLoader worker processes
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)  # options of the synthetic dataset

    def __post_init__(self) -> None:
        for key in ("root", "path"):
            if isinstance(getattr(self, key), os.PathLike):
                setattr(self, key, os.fspath(getattr(self, key)))
        for key in ("mean", "std"):
            if isinstance(getattr(self, key), tuple):
                setattr(self, key, list(getattr(self, key)))
        if isinstance(self.synthetic, dict):
            self.synthetic = SyntheticConfig.from_dict(self.synthetic)
        self.validate()

    def validate(self) -> None:
        check_fields(self, "data.", choices={**{key: registry.names() for key, registry in PART_KEYS.items()},
                                             "loader": LOADERS}, parts=PART_KEYS)
        for key in ("root", "path"):
            if getattr(self, key) is not None and not isinstance(getattr(self, key), str):
                raise ConfigError(f"data.{key} must be a path string or null, got {getattr(self, key)!r}")
        for key in ("download", "normalize", "shuffle", "test_augment"):
            _check_bool(f"data.{key}", getattr(self, key))
        v = self.val_size
        if not (is_int(v) and v >= 0) and not (isinstance(v, float) and 0 <= v < 1):
            raise ConfigError(f"data.val_size must be a count >= 0 or a fraction in [0, 1), got {v!r}")
        _check_int("data.split_seed", self.split_seed, 0)
        _check_int("data.pad", self.pad, 0)
        _check_int("data.num_workers", self.num_workers, 0)
        for key in ("resize", "scale_size"):
            if getattr(self, key) is not None:
                _check_int(f"data.{key}", getattr(self, key), 1)
        for key in ("mean", "std"):
            value = getattr(self, key)
            if value is None:
                continue
            if not isinstance(value, list) or not value or not all(is_number(m, finite=False) for m in value):
                raise ConfigError(f"data.{key} must be a list of numbers (one per channel) or null, got {value!r}")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ConfigError(f"data.std must be positive, got {self.std!r}")
        if self.mean is not None and self.std is not None and len(self.mean) != len(self.std):
            raise ConfigError(f"data.mean and data.std must have the same length, got {self.mean!r} and {self.std!r}")
        if not isinstance(self.synthetic, SyntheticConfig):
            raise ConfigError(f"data.synthetic must be a mapping, got {self.synthetic!r}")
        self.synthetic.validate()

    def unread(self) -> dict[str, Unread]:
        """The keys this config's choices do not read (key → why): a run on another copy of the data than the one
        named, unnormalized where the constants were meant, another augmentation's sizes or loader's workers, the
        synthetic set's options on real data, a test-time augmentation without an augmentation. Only built-in sources
        and augmentations are known not to read a key."""
        name, augment = self.name, self.augment
        out: dict[str, Unread] = {}
        if name in READS_NO_PATH:
            out["path"] = Unread(f"data.name imagefolder or cifar10_jpeg, got {name!r}",
                                 "" if name == "synthetic" else f"{name} is read from data.root")
        if name in ("synthetic", "imagefolder") or (name == "cifar10_jpeg" and self.path is not None):
            out["root"] = Unread(f"data.name {', '.join(TORCHVISION_SETS)} or cifar10_jpeg without data.path, got "
                                 f"{name!r}" + (" with data.path" if self.path is not None else ""))
        if name in BUILT_IN_SOURCES and name not in TORCHVISION_SETS:
            out["download"] = Unread(f"data.name {' or '.join(TORCHVISION_SETS)}, got {name!r}")
        if name in BUILT_IN_SOURCES and name != "synthetic":
            out["synthetic"] = Unread(f"data.name synthetic, got {name!r}", "drop data.synthetic (--set "
                                                                              "data.synthetic=null)")
        if not self.normalize:
            out.update({key: Unread("data.normalize true, got false") for key in ("mean", "std")})
        if augment in AUGMENTS_NO_PAD or (augment == "scale_crop" and self.scale_size is not None):
            out["pad"] = Unread(f"data.augment crop_flip, or scale_crop without data.scale_size, got {augment!r}"
                                + (" with data.scale_size" if augment == "scale_crop" else ""))
        if augment in (*AUGMENTS_NO_PAD, "crop_flip"):
            out["scale_size"] = Unread(f"data.augment scale_crop, got {augment!r}")
        if self.loader != "torch":
            out["num_workers"] = Unread(f"data.loader torch, got {self.loader!r}")
        if augment == "none":
            out["test_augment"] = Unread("data.augment other than none, got 'none'",
                                         "the test split would be served as it is")
        if not self.val_size and not (self.test_augment and augment != "none"):
            out["split_seed"] = Unread("data.val_size above 0 or data.test_augment true with an augmentation, got "
                                       "neither", "it draws the val split and the test split's crops")
        return out

    def data_root(self) -> Path:
        """The download/cache directory: `root`, else $RESNET_ABLATE_DATA, else ~/.cache/resnet-ablate/data."""
        if self.root is not None:
            return Path(self.root).expanduser()
        env = os.environ.get(ROOT_ENV)
        return Path(env).expanduser() if env else Path.home() / ".cache" / "resnet-ablate" / "data"

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "DataConfig":
        d = dict(d or {})
        _check_keys("data key", cls, d)
        synthetic = d.get("synthetic")
        if synthetic is not None and not isinstance(synthetic, (dict, SyntheticConfig)):
            raise ConfigError(f"data.synthetic must be a mapping, got {synthetic!r}")
        if isinstance(synthetic, dict):
            d["synthetic"] = SyntheticConfig.from_dict(synthetic)
        elif synthetic is None:
            d.pop("synthetic", None)
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
