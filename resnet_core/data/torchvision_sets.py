"""CIFAR-10/100, MNIST and Fashion-MNIST through torchvision, into `root`; offline, a one-line error saying what to
put where."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from .images import LabeledImages


@dataclass(frozen=True)
class TorchvisionSet:
    title: str        # torchvision's class name
    files: str        # what a user must place, relative to root (data.download true: torchvision extracts it)
    url: str          # where it comes from
    extracted: str    # what must be there with data.download false (torchvision then extracts nothing)
    marker: str       # a path under root that the extracted set has


TORCHVISION_SETS = {
    "cifar10": TorchvisionSet("CIFAR10", "cifar-10-python.tar.gz (or its extracted cifar-10-batches-py/)",
                              "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                              "cifar-10-batches-py/ (cifar-10-python.tar.gz extracted)", "cifar-10-batches-py"),
    "cifar100": TorchvisionSet("CIFAR100", "cifar-100-python.tar.gz (or its extracted cifar-100-python/)",
                               "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                               "cifar-100-python/ (cifar-100-python.tar.gz extracted)", "cifar-100-python"),
    "mnist": TorchvisionSet("MNIST", "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz",
                            "https://ossci-datasets.s3.amazonaws.com/mnist/",
                            "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte (the .gz files gunzipped)",
                            "MNIST/raw/train-images-idx3-ubyte"),
    "fashion_mnist": TorchvisionSet("FashionMNIST", "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz",
                                    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                                    "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte (the .gz files "
                                    "gunzipped)", "FashionMNIST/raw/train-images-idx3-ubyte"),
}


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:160]


def _to_uint8_nchw(data: object) -> torch.Tensor:
    x = torch.from_numpy(data) if isinstance(data, np.ndarray) else torch.as_tensor(data)
    x = x.to(torch.uint8)
    return x.unsqueeze(1).contiguous() if x.dim() == 3 else x.permute(0, 3, 1, 2).contiguous()  # NHW / NHWC → NCHW


def _not_found(name: str, root: Path) -> ConfigError:
    spec = TORCHVISION_SETS[name]
    return ConfigError(f"cannot load {name} from {root} (not found, and data.download is false); put "
                       f"{spec.extracted} there (from {spec.url}), or set data.root to where it is")


def is_extracted(name: str, root: Path) -> bool:
    """Whether ``root`` holds ``name`` extracted, as torchvision reads it without downloading."""
    return (root / TORCHVISION_SETS[name].marker).exists()


def check_extracted(name: str, root: Path, download: bool) -> None:
    """With ``download`` false, a one-line ``ConfigError`` where ``name`` is not extracted under ``root`` (what
    loading it would raise), so a sweep refuses it before its study exists; reads only."""
    if not download and not is_extracted(name, root):
        raise _not_found(name, root)


def load_torchvision(name: str, root: Path, download: bool) -> tuple[LabeledImages, LabeledImages, list[str]]:
    """(train, test, classes) of a torchvision dataset; a ConfigError when it is neither there nor downloadable."""
    import torchvision.datasets as tvd

    spec = TORCHVISION_SETS[name]
    cls = getattr(tvd, spec.title)
    try:
        root.mkdir(parents=True, exist_ok=True)
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    except Exception as e:  # URLError offline, RuntimeError when missing or corrupt, OSError on a read-only root
        if not download:
            raise _not_found(name, root) from None
        raise ConfigError(f"cannot load {name} from {root} ({_first_line(e)}); put {spec.files} there (from "
                          f"{spec.url}), or set data.root to where it is") from None
    splits = [LabeledImages(_to_uint8_nchw(ds.data), torch.as_tensor(ds.targets, dtype=torch.long))
              for ds in (train, test)]
    return splits[0], splits[1], [str(c) for c in train.classes]
