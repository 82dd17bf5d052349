"""The JPEG archive format of the shared CIFAR-10 copy (`cifar10_jpeg.npz`): per split the concatenated JPEG bytes,
their offsets and the labels, plus the class names. Read (decoded in batches) and write (for tests and exports)."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from .images import LabeledImages

SPLITS = ("train", "test")
_DECODE_BATCH = 4096  # images per decode_jpeg call: big enough to amortize the call, small enough for memory


def decode_split(jpeg: np.ndarray, offsets: np.ndarray, labels: np.ndarray) -> LabeledImages:
    """Decode one split's concatenated JPEG files into uint8 RGB [N, 3, H, W]."""
    from torchvision.io import ImageReadMode, decode_jpeg

    data = torch.from_numpy(np.ascontiguousarray(jpeg, dtype=np.uint8))
    bounds = offsets.astype(np.int64).tolist()
    images: list[torch.Tensor] = []
    for start in range(0, len(bounds) - 1, _DECODE_BATCH):
        stop = min(start + _DECODE_BATCH, len(bounds) - 1)
        files = [data[bounds[i]:bounds[i + 1]] for i in range(start, stop)]
        images.extend(decode_jpeg(files, mode=ImageReadMode.RGB))
    if not images:
        raise ValueError("empty split")
    return LabeledImages(torch.stack(images), torch.from_numpy(labels.astype(np.int64)))


def read_jpeg_archive(path: str | Path) -> tuple[LabeledImages, LabeledImages, list[str]]:
    """(train, test, classes) from a JPEG archive; a ConfigError naming the file when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"data.path: no JPEG archive at {path}; copy cifar10_jpeg.npz there or set data.path to it")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        splits = [decode_split(arrays[f"{s}_jpeg"], arrays[f"{s}_offsets"], arrays[f"{s}_labels"]) for s in SPLITS]
        classes = [str(c) for c in arrays["classes"]]
    except KeyError as e:
        raise ConfigError(f"data.path {path}: not a JPEG archive (missing array {e.args[0]!r}; need classes and "
                          f"train_/test_ jpeg, offsets, labels)") from None
    except (OSError, ValueError, RuntimeError, zipfile.BadZipFile) as e:
        raise ConfigError(f"data.path {path}: cannot read it as a JPEG archive ({str(e).splitlines()[0][:120]})") from None
    return splits[0], splits[1], classes


def encode_split(images: torch.Tensor, quality: int = 75) -> tuple[np.ndarray, np.ndarray]:
    """JPEG-encode uint8 [N, C, H, W] images: (concatenated bytes, offsets [N+1])."""
    from torchvision.io import encode_jpeg

    files = [encode_jpeg(img.contiguous(), quality=quality) for img in images]
    offsets = np.zeros(len(files) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([f.numel() for f in files])
    jpeg = torch.cat(files).numpy() if files else np.zeros(0, dtype=np.uint8)
    return jpeg, offsets


def write_jpeg_archive(path: str | Path, train: LabeledImages, test: LabeledImages, classes: list[str],
                       quality: int = 75) -> Path:
    """Write an archive in the shared format (zlib-compressed .npz)."""
    arrays: dict[str, np.ndarray] = {"classes": np.array(classes, dtype=str)}
    for name, split in zip(SPLITS, (train, test)):
        jpeg, offsets = encode_split(split.images, quality)
        arrays.update({f"{name}_jpeg": jpeg, f"{name}_offsets": offsets,
                       f"{name}_labels": split.labels.numpy().astype(np.int64)})
    path = Path(path)
    np.savez_compressed(path, **arrays)
    return path
