"""Any ImageFolder tree (`path/train/<class>/*.png`, plus `val/` and/or `test/`), loaded into memory as uint8.

A tree is read as torchvision's ImageFolder reads it (class folders sorted, image files by extension, symlinked
folders followed), except that hidden files and folders (a name starting with ``.``: macOS's ``._*`` and
``.DS_Store``, ``.ipynb_checkpoints/``) are neither classes nor images. The check before a sweep and the loading
list the tree in one place (``_class_folders``, ``_image_files``), so they agree on what it holds.

A tree whose every image is grayscale (PIL modes ``GRAY_MODES``, as MNIST-like PNGs are) loads with 1 channel;
any colour image makes the whole tree RGB (a grayscale image among colour ones is replicated to 3 channels, as PIL's
``convert("RGB")`` does). A 16-bit grayscale image is scaled to 8 bits (``_eight_bit``); a float or 32-bit integer
one is refused, its range unknown."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import ConfigError
from .images import LabeledImages

if TYPE_CHECKING:
    from PIL import Image


GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
WIDE_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")   # 16-bit grayscale (Pillow opens some 16-bit PNGs as "I")
# Formats whose mode "I" holds 16-bit samples (a 16-bit PGM, scaled by Pillow to 0…65535; an older Pillow's 16-bit
# PNG); elsewhere (a 32-bit TIFF) mode "I" is 32-bit integers, whose range is unknown.
SIXTEEN_BIT_I_FORMATS = ("PNG", "PPM")


def _eight_bit(img: Image.Image) -> Image.Image:
    """``img`` as 8-bit L (grayscale) or RGB: 16-bit grayscale scaled from 0…65535 (PIL's ``convert`` clips it at
    255, a white image); a float or 32-bit integer image, whose range is unknown, refused (``ValueError``)."""
    from PIL import Image

    if img.mode == "I" and img.format not in SIXTEEN_BIT_I_FORMATS:   # scaled as 16-bit, 0…255 would load black
        raise ValueError("32-bit integer pixels, whose range is unknown; save it as an 8- or 16-bit image")
    if img.mode in WIDE_MODES:
        return Image.fromarray(np.clip(np.rint(np.asarray(img, dtype=np.float64) / 257), 0, 255).astype(np.uint8))
    if img.mode == "F":
        raise ValueError("32-bit float pixels, whose range is unknown; save it as an 8- or 16-bit image")
    return img.convert("L" if img.mode in GRAY_MODES else "RGB")


def _load_folder(folder: Path, resize: int | None) -> tuple[list[np.ndarray], list[int], list[str]]:
    """(images as uint8 arrays, [H, W] for a grayscale image or [H, W, 3], labels, classes) of one split, each image
    at ``resize`` × ``resize`` if set (``check_imagefolder`` has checked that they share a size otherwise)."""
    from PIL import Image
    from torchvision.datasets.folder import IMG_EXTENSIONS

    classes = _class_folders(folder.parent, folder.name, IMG_EXTENSIONS)
    samples = [(file, label) for label, name in enumerate(classes)
               for file in _image_files(folder / name, IMG_EXTENSIONS)]
    images: list[np.ndarray] = []
    for file, _ in samples:
        try:
            with Image.open(file) as opened:
                img = _eight_bit(opened)
        except (OSError, ValueError, SyntaxError) as e:  # PIL: UnidentifiedImageError, truncated files, …
            raise _unreadable(folder.parent, file, e) from None
        if resize is not None and img.size != (resize, resize):
            img = img.resize((resize, resize), Image.BILINEAR)
        images.append(np.asarray(img, dtype=np.uint8).copy())
    return images, [label for _, label in samples], classes


END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82"}   # the bytes a whole JPEG (EOI) or PNG (IEND) ends with


def _check_whole(file: Path, image: "Image.Image") -> None:
    """Raise PIL's OSError ('image file is truncated') for a JPEG or PNG cut short (a copy or download that stopped).
    Reads the file's last bytes; only where they are not the format's end marker (after trailing zero or whitespace
    padding) are the pixels decoded, so an image with other bytes after its end is judged by its decoder."""
    marker = END_MARKERS.get(image.format or "")
    if marker is None:
        return
    with open(file, "rb") as f:
        f.seek(max(0, os.fstat(f.fileno()).st_size - 64))
        tail = f.read()
    if not tail.rstrip(b"\x00 \t\r\n").endswith(marker):
        image.load()


def _unreadable(root: Path, file: Path, error: BaseException) -> ConfigError:
    """The one-line error for an image PIL cannot open or decode, naming the tree and the file."""
    reason = str(error).splitlines()[0][:120] if str(error) else "unreadable"
    return ConfigError(f"data.path {root}: cannot read image {file} ({type(error).__name__}: {reason})")


def _stack(images: list[np.ndarray], labels: list[int], gray: bool) -> LabeledImages:
    """uint8 [N, 1 or 3, H, W]: 1 channel for a grayscale tree, else grayscale images replicated to 3."""
    planes = [a[None] if a.ndim == 2 else a.transpose(2, 0, 1) for a in images]
    if not gray:
        planes = [np.repeat(p, 3, axis=0) if p.shape[0] == 1 else p for p in planes]
    return LabeledImages(torch.from_numpy(np.stack(planes)), torch.tensor(labels, dtype=torch.long))


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _image_files(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    """The image files under ``folder`` (by extension, any depth, symlinked folders followed), hidden files and
    folders left out, in ImageFolder's order (folders sorted by path, files by name); a one-line ``ConfigError`` for
    a symlinked image whose target is gone (ImageFolder lists it and fails to open it; skipped, the image would be
    missing from its class without a word)."""
    walked = []
    for parent, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not _hidden(d)]
        walked.append((parent, files))
    found = [Path(parent) / f for parent, files in sorted(walked) for f in sorted(files)
             if not _hidden(f) and Path(f).suffix.lower() in extensions]
    for file in found:
        if file.is_symlink() and not file.exists():
            raise ConfigError(f"data.path: image {file} is a symbolic link to {os.readlink(file)}, which does not "
                              f"exist; restore its target or remove the link")
    return [file for file in found if file.is_file()]


def _class_folders(root: Path, split: str, extensions: tuple[str, ...]) -> list[str]:
    """The class folders of ``root/split`` (hidden ones left out), sorted; a one-line ``ConfigError`` if there is
    none or only one, or one holds no image (torchvision's ImageFolder counts every folder as a class and refuses an
    empty one)."""
    folders = sorted(d for d in (root / split).iterdir() if d.is_dir() and not _hidden(d.name))
    empty = [d.name for d in folders if not _image_files(d, extensions)]
    if len(empty) == len(folders):
        raise ConfigError(f"data.path {root}: {split}/ has no class folder with an image ({', '.join(extensions)})")
    if empty:
        raise ConfigError(f"data.path {root}: class folder {split}/{empty[0]} has no image ({', '.join(extensions)}); "
                          f"add images or remove it")
    if len(folders) == 1:   # every label 0: the net learns nothing and scores 0 % error
        raise ConfigError(f"data.path {root}: {split}/ has one class folder ({folders[0].name}); a classifier needs "
                          f"at least 2 (one folder per class)")
    return [d.name for d in folders]


def _differing_size(root: Path, splits: list[str], extensions: tuple[str, ...], sized: bool = True) -> str | None:
    """Where the first image whose size differs from the tree's first image's is (both named, with their sizes),
    or None if every image of every split has one size (or ``sized`` is false: ``data.resize`` loads every image at
    one size). Reads image headers only (PIL decodes nothing until asked); a file whose header PIL cannot read (a
    text file or an empty one named .png) or a JPEG or PNG cut short (`_check_whole`) is a one-line ``ConfigError``
    naming it, so a sweep refuses it before the study exists rather than failing every trial."""
    from PIL import Image

    first: tuple[Path, tuple[int, int]] | None = None
    differs: str | None = None
    for split in splits:
        for file in (f for name in _class_folders(root, split, extensions)
                     for f in _image_files(root / split / name, extensions)):
            try:
                with Image.open(file) as opened:
                    size = opened.size
                    _check_whole(file, opened)
            except (OSError, ValueError, SyntaxError) as e:
                raise _unreadable(root, file, e) from None
            if first is None:
                first = (file, size)
            elif sized and differs is None and size != first[1]:
                differs = (f"{first[1][0]}x{first[1][1]} at {first[0].relative_to(root)} and {size[0]}x{size[1]} "
                           f"at {file.relative_to(root)}")
    return differs


def check_imagefolder(path: str | Path | None, resize: int | None = None) -> Path:
    """The ImageFolder root ``path`` if it can be loaded: train/ and val/ or test/, each with at least two class
    folders holding an image, the same classes, every image's header readable, and (without ``resize``, the size
    every image is loaded at) one image size across the splits, no JPEG or PNG cut short; else a one-line
    ``ConfigError``. Reads the headers and last bytes of the images (pixels only of one that does not end as its
    format ends), so it can run before a sweep writes anything."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    if path is None:
        raise ConfigError("data.name imagefolder needs data.path: a folder with train/ and val/ or test/ subfolders")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ConfigError(f"data.path {root}: {'not a folder' if root.exists() else 'no such folder'} (an "
                          f"ImageFolder root needs train/ and val/ or test/)")
    if not (root / "train").is_dir():
        raise ConfigError(f"data.path {root}: no train/ folder (an ImageFolder root needs train/ and val/ or test/)")
    splits = ["train"] + [s for s in ("val", "test") if (root / s).is_dir()]
    if len(splits) == 1:
        raise ConfigError(f"data.path {root}: no val/ or test/ folder beside train/")
    classes = {split: _class_folders(root, split, IMG_EXTENSIONS) for split in splits}
    for split in splits[1:]:
        if classes[split] != classes["train"]:
            raise ConfigError(f"data.path {root}: {split}/ has classes {classes[split]}, train/ has {classes['train']}")
    differs = _differing_size(root, splits, IMG_EXTENSIONS, sized=resize is None)
    if differs is not None:
        raise ConfigError(f"data.path {root}: images differ in size ({differs}); set data.resize to load them at "
                          f"one size")
    return root


def train_images(root: Path) -> int:
    """How many images the train split of a checked tree (``check_imagefolder``) holds."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return sum(len(_image_files(root / "train" / name, IMG_EXTENSIONS))
               for name in _class_folders(root, "train", IMG_EXTENSIONS))


def load_imagefolder(path: str | Path | None, resize: int | None
                     ) -> tuple[LabeledImages, LabeledImages | None, LabeledImages, list[str]]:
    """(train, val, test, classes). test is `test/` if present, else `val/`; val is `val/` only when `test/` exists."""
    root = check_imagefolder(path, resize)
    has_val, has_test = (root / "val").is_dir(), (root / "test").is_dir()
    splits = {"train": root / "train", "test": root / ("test" if has_test else "val")}
    if has_val and has_test:
        splits["val"] = root / "val"
    loaded = {name: _load_folder(folder, resize) for name, folder in splits.items()}
    classes = loaded["train"][2]
    for name, (_, _, names) in loaded.items():
        if names != classes:
            raise ConfigError(f"data.path {root}: {splits[name].name}/ has classes {names}, train/ has {classes}")
    gray = all(a.ndim == 2 for images, _, _ in loaded.values() for a in images)
    stacked = {name: _stack(images, labels, gray) for name, (images, labels, _) in loaded.items()}
    return stacked["train"], stacked.get("val"), stacked["test"], classes
