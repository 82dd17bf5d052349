"""The JPEG archive format of the shared CIFAR-10 copy (`cifar10_jpeg.npz`): per split the concatenated JPEG bytes,
their offsets and the labels, plus the class names. Read (decoded in batches) and write (for tests and exports)."""
from __future__ import annotations

import io
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..devices import available_cores
from ..errors import ConfigError
from .images import LabeledImages

SPLITS = ("train", "test")
_CHUNK = 2048  # images per decode task: enough to amortize the task, small enough to spread over the threads


def _decode_chunk(files: list[bytes]) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(f)).convert("RGB")) for f in files])


def decode_split(jpeg: np.ndarray, offsets: np.ndarray, labels: np.ndarray) -> LabeledImages:
    """Decode one split's concatenated JPEG files into uint8 RGB [N, 3, H, W] (Pillow, in threads: it releases
    the GIL while decoding)."""
    raw = np.ascontiguousarray(jpeg, dtype=np.uint8).tobytes()
    bounds = offsets.astype(np.int64).tolist()
    files = [raw[bounds[i]:bounds[i + 1]] for i in range(len(bounds) - 1)]
    if not files:
        raise ValueError("empty split")
    chunks = [files[i:i + _CHUNK] for i in range(0, len(files), _CHUNK)]
    with ThreadPoolExecutor(max_workers=min(len(chunks), available_cores(), 16)) as pool:
        pixels = np.concatenate(list(pool.map(_decode_chunk, chunks)))
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    return LabeledImages(images, torch.from_numpy(labels.astype(np.int64)))


def check_archive(path: str | Path) -> Path:
    """``path`` if a file is there, else a one-line ``ConfigError`` saying where to put the archive."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"data.path: no JPEG archive at {path}; copy cifar10_jpeg.npz there or point data.path at "
                          f"it (`--set data.path=FILE`; `eval`/`lesion` of a checkpoint: `--data-path FILE`)")
    return path


def read_jpeg_archive(path: str | Path) -> tuple[LabeledImages, LabeledImages, list[str]]:
    """(train, test, classes) from a JPEG archive; a ConfigError naming the file when it is missing or malformed."""
    path = check_archive(path)
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
    """JPEG-encode uint8 [N, C, H, W] images (Pillow, 4:2:0 as the shared archive): (concatenated bytes, offsets)."""
    from PIL import Image

    files = []
    for img in images:
        pixels = img.permute(1, 2, 0).numpy()
        buffer = io.BytesIO()
        Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buffer, "JPEG", quality=quality)
        files.append(np.frombuffer(buffer.getvalue(), dtype=np.uint8))
    offsets = np.zeros(len(files) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(f) for f in files])
    jpeg = np.concatenate(files) if files else np.zeros(0, dtype=np.uint8)
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
