"""Augmentations for the device loader: per-image random parameters drawn up front from a CPU generator (so a
stream is the same on every device and can be resumed), applied to a batch on the device with tensor ops.

Each one also names its torchvision equivalent, for the seed-style PIL loader.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..registry import Registry

Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Geometry:
    """Sizes an augmentation works with."""

    size: tuple[int, int]                # (H, W) of the stored images
    out_size: tuple[int, int]            # (H, W) of the served images (the stored size unless resized)
    pad: int = 4                         # crop_flip: zero padding on each side
    scale_size: int | None = None        # scale_crop: shorter side before the crop; None: shorter side + 2·pad


class Augment:
    """No augmentation: convert to float (0…255) and resize to `out_size` when it differs."""

    def __init__(self, geo: Geometry) -> None:
        self.geo = geo

    def draw(self, n: int, gen: torch.Generator) -> Params:
        """Random parameters for n images, drawn on the CPU from `gen`; each tensor's first dim is n."""
        return {}

    def apply(self, x: torch.Tensor, p: Params) -> torch.Tensor:
        """uint8 [B, C, H, W] and parameters [B, …] on one device → float32 [B, C, *out_size], values 0…255."""
        return resize(x.float(), self.geo.out_size)

    def pil_transforms(self) -> list:
        """The torchvision transforms (on PIL images, before ToTensor) that do the same."""
        return _pil_resize(self.geo)


AUGMENTS: Registry[type[Augment]] = Registry("data.augment")
AUGMENTS.register("none")(Augment)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a float batch (antialiased when shrinking); a no-op at the same size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def _pil_resize(geo: Geometry) -> list:
    from torchvision import transforms as T

    return [T.Resize(geo.out_size)] if geo.out_size != geo.size else []


def shift_flip(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, pad: int) -> torch.Tensor:
    """Zero-pad by `pad`, take the H×W window at (dy, dx) of the padded image, mirror where `flip`: one gather
    (on flat pixel indices, several times faster than four-tensor advanced indexing on a CPU)."""
    b, c, h, w = x.shape
    if pad:
        x = F.pad(x, (pad, pad, pad, pad))
    rows = dy[:, None] + torch.arange(h, device=x.device)                       # [B, H]
    cols = torch.arange(w, device=x.device).expand(b, w)
    cols = torch.where(flip[:, None], w - 1 - cols, cols) + dx[:, None]         # [B, W]
    index = (rows[:, :, None] * (w + 2 * pad) + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return x.reshape(b, c, -1).gather(2, index).view(b, c, h, w)


def resample_boxes(x: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor, out: tuple[int, int],
                   clamp: bool = False) -> torch.Tensor:
    """Bilinear crop-and-resize of a float batch: box (x0, y0, w, h) of each image, in pixels, to `out`, mirrored
    where `flip`, in one grid_sample.

    clamp=False samples as resizing the whole image (align_corners=False) and cropping would; clamp=True as
    cropping and then resizing (torchvision's resized_crop without antialias): samples stay inside the box.
    """
    b, _, h, w = x.shape
    x0, y0, bw, bh = boxes.to(x.dtype).unbind(1)
    jx = (torch.arange(out[1], device=x.device, dtype=x.dtype) + 0.5) / out[1]
    jy = (torch.arange(out[0], device=x.device, dtype=x.dtype) + 0.5) / out[0]
    sx = x0[:, None] + jx * bw[:, None] - 0.5  # [B, Wo] source coordinates, in pixels
    sy = y0[:, None] + jy * bh[:, None] - 0.5  # [B, Ho]
    if clamp:
        sx = torch.minimum(torch.maximum(sx, x0[:, None]), (x0 + bw - 1)[:, None])
        sy = torch.minimum(torch.maximum(sy, y0[:, None]), (y0 + bh - 1)[:, None])
    sx = torch.where(flip[:, None], sx.flip(1), sx)
    gx = ((2 * sx + 1) / w - 1)[:, None, :].expand(b, out[0], out[1])
    gy = ((2 * sy + 1) / h - 1)[:, :, None].expand(b, out[0], out[1])
    grid = torch.stack([gx, gy], -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@AUGMENTS.register("flip")
class Flip(Augment):
    """Horizontal flip with probability 1/2."""

    def draw(self, n: int, gen: torch.Generator) -> Params:
        return {"flip": torch.rand(n, generator=gen) < 0.5}

    def apply(self, x: torch.Tensor, p: Params) -> torch.Tensor:
        x = torch.where(p["flip"][:, None, None, None], x.flip(-1), x)
        return resize(x.float(), self.geo.out_size)

    def pil_transforms(self) -> list:
        from torchvision import transforms as T

        return [T.RandomHorizontalFlip()] + _pil_resize(self.geo)


@AUGMENTS.register("crop_flip")
class CropFlip(Augment):
    """He et al.'s CIFAR augmentation: pad `pad` zeros, take a random H×W crop, flip with probability 1/2."""

    def draw(self, n: int, gen: torch.Generator) -> Params:
        span = 2 * self.geo.pad + 1
        return {"dy": torch.randint(0, span, (n,), generator=gen), "dx": torch.randint(0, span, (n,), generator=gen),
                "flip": torch.rand(n, generator=gen) < 0.5}

    def apply(self, x: torch.Tensor, p: Params) -> torch.Tensor:
        x = shift_flip(x, p["dy"], p["dx"], p["flip"], self.geo.pad)
        return resize(x.float(), self.geo.out_size)

    def pil_transforms(self) -> list:
        from torchvision import transforms as T

        return [T.RandomCrop(self.geo.size, padding=self.geo.pad), T.RandomHorizontalFlip()] + _pil_resize(self.geo)


@AUGMENTS.register("random_resized_crop")
class RandomResizedCrop(Augment):
    """torchvision's RandomResizedCrop (scale 0.08–1, ratio 3/4–4/3, 10 tries, centre-crop fallback) to
    `out_size`, then a flip: seed 001's augmentation."""

    scale = (0.08, 1.0)
    ratio = (3 / 4, 4 / 3)
    tries = 10

    def draw(self, n: int, gen: torch.Generator) -> Params:
        h, w = self.geo.size
        area = h * w * torch.empty(n, self.tries).uniform_(*self.scale, generator=gen)
        log_r = torch.empty(n, self.tries).uniform_(math.log(self.ratio[0]), math.log(self.ratio[1]), generator=gen)
        ar = log_r.exp()
        cw = (area * ar).sqrt().round()
        ch = (area / ar).sqrt().round()
        ok = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
        first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((n,), -1))
        pick = first.clamp(min=0)[:, None]
        cw, ch = cw.gather(1, pick)[:, 0], ch.gather(1, pick)[:, 0]
        # the fallback: the whole image, or its centre at the nearest allowed aspect ratio
        in_ratio = w / h
        fw, fh = (w, round(w / self.ratio[0])) if in_ratio < self.ratio[0] else (
            (round(h * self.ratio[1]), h) if in_ratio > self.ratio[1] else (w, h))
        failed = first < 0
        cw = torch.where(failed, torch.tensor(float(fw)), cw)
        ch = torch.where(failed, torch.tensor(float(fh)), ch)
        u = torch.rand(n, 2, generator=gen)
        y0 = torch.where(failed, ((h - ch) / 2).floor(), (u[:, 0] * (h - ch + 1)).floor())
        x0 = torch.where(failed, ((w - cw) / 2).floor(), (u[:, 1] * (w - cw + 1)).floor())
        flip = torch.rand(n, generator=gen) < 0.5
        return {"box": torch.stack([x0, y0, cw, ch], 1), "flip": flip}

    def apply(self, x: torch.Tensor, p: Params) -> torch.Tensor:
        return resample_boxes(x.float(), p["box"], p["flip"], self.geo.out_size, clamp=True)

    def pil_transforms(self) -> list:
        from torchvision import transforms as T

        return [T.RandomResizedCrop(self.geo.out_size), T.RandomHorizontalFlip()]


@AUGMENTS.register("scale_crop")
class ScaleCrop(Augment):
    """Seed 004's augmentation: scale the shorter side to `scale_size` (40 for CIFAR), take a random crop of the
    stored size, flip with probability 1/2; then resize to `out_size` if that differs."""

    def short_side(self) -> int:
        return self.geo.scale_size or min(self.geo.size) + 2 * self.geo.pad

    def scaled(self) -> tuple[int, int]:
        """(H, W) after scaling the shorter side to `short_side()`, as torchvision's Resize(int)."""
        (h, w), s = self.geo.size, self.short_side()
        return (s, int(s * w / h)) if h <= w else (int(s * h / w), s)

    def draw(self, n: int, gen: torch.Generator) -> Params:
        (h, w), (sh, sw) = self.geo.size, self.scaled()
        dy = torch.randint(0, max(sh - h, 0) + 1, (n,), generator=gen)
        dx = torch.randint(0, max(sw - w, 0) + 1, (n,), generator=gen)
        return {"dy": dy, "dx": dx, "flip": torch.rand(n, generator=gen) < 0.5}

    def apply(self, x: torch.Tensor, p: Params) -> torch.Tensor:
        (h, w), (sh, sw) = self.geo.size, self.scaled()
        fy, fx = h / sh, w / sw  # one scaled pixel, in stored pixels
        x0, y0 = p["dx"].float() * fx, p["dy"].float() * fy
        boxes = torch.stack([x0, y0, torch.full_like(x0, w * fx), torch.full_like(y0, h * fy)], 1)
        return resample_boxes(x.float(), boxes, p["flip"], self.geo.out_size)

    def pil_transforms(self) -> list:
        from torchvision import transforms as T

        return [T.Resize(self.short_side()), T.RandomHorizontalFlip(), T.RandomCrop(self.geo.size)] + _pil_resize(self.geo)
