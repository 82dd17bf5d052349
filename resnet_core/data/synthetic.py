"""A procedurally generated, learnable offline dataset ("glyphs"): one shape per image, drawn at a random place,
size and colour over a shaded, noisy background with clutter.

The class is the shape alone (filled square, frame, disk, ring, plus, x-cross, two bars, two posts, triangle
up, triangle down). Foreground and background colours come from the same distribution and swap freely, so every
class has the same mean image: a linear model on pixels stays near chance, while a small CNN, which can find
edges of either polarity anywhere, learns it. Outlines against filled shapes, plus against x-cross, bars against
posts and the two triangles differ only in local structure, so more capacity keeps paying.
"""
from __future__ import annotations

import math

import torch

SHAPES = ("square", "frame", "disk", "ring", "plus", "cross", "bars", "posts", "triangle_up", "triangle_down")


def _sdf(shape: str, u: torch.Tensor, v: torch.Tensor, r: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Signed distance (pixels, negative inside) to `shape` centred at the origin, half-size r, stroke w."""
    if shape == "square":
        return torch.maximum(u.abs(), v.abs()) - r
    if shape == "frame":
        return (torch.maximum(u.abs(), v.abs()) - r + w / 2).abs() - w / 2
    if shape == "disk":
        return torch.hypot(u, v) - r
    if shape == "ring":
        return (torch.hypot(u, v) - r + w / 2).abs() - w / 2
    if shape in ("plus", "cross"):
        if shape == "cross":
            u, v = (u + v) / math.sqrt(2), (u - v) / math.sqrt(2)
        bar_h = torch.maximum(u.abs() - r, v.abs() - w / 2)
        bar_v = torch.maximum(v.abs() - r, u.abs() - w / 2)
        return torch.minimum(bar_h, bar_v)
    if shape in ("bars", "posts"):
        if shape == "posts":
            u, v = v, u
        gap = r * 0.55
        top = torch.maximum(u.abs() - r, (v - gap).abs() - w / 2)
        bottom = torch.maximum(u.abs() - r, (v + gap).abs() - w / 2)
        return torch.minimum(top, bottom)
    if shape in ("triangle_up", "triangle_down"):
        if shape == "triangle_down":
            v = -v
        # apex at (0, -r), base on v = r; the sides have slope 2 (|u| = (v + r) / 2)
        return torch.maximum(v - r, (2 * u.abs() - (v + r)) / math.sqrt(5))
    raise KeyError(shape)


def _colours(n: int, c: int, g: torch.Generator, away_from: torch.Tensor | None = None,
             min_dist: float = 0.0) -> torch.Tensor:
    """n random colours in [0, 1]^c; with `away_from`, each at least `min_dist` (RMS over channels) from it."""
    out = torch.rand(n, c, generator=g)
    if away_from is None:
        return out
    for _ in range(32):  # rejection, vectorized; 32 rounds leave ~0 failures
        bad = (out - away_from).pow(2).mean(1).sqrt() < min_dist
        if not bad.any():
            break
        out[bad] = torch.rand(int(bad.sum()), c, generator=g)
    bad = (out - away_from).pow(2).mean(1).sqrt() < min_dist
    out[bad] = (away_from[bad] < 0.5).float()  # the farthest corner: always ≥ 0.5 away per channel
    return out


def make_glyphs(n: int, *, image_size: int = 16, channels: int = 3, num_classes: int = 10, seed: int = 0,
                noise: float = 0.06, clutter: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """n images uint8 [n, C, S, S] and labels int64 [n], balanced and shuffled, deterministic from `seed`."""
    if not 2 <= num_classes <= len(SHAPES):
        raise ValueError(f"num_classes must be 2..{len(SHAPES)}, got {num_classes}")
    g = torch.Generator().manual_seed(seed)
    s = float(image_size)
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=g)]

    ys, xs = torch.meshgrid(torch.arange(image_size) + 0.5, torch.arange(image_size) + 0.5, indexing="ij")
    # shape: half-size 16–28 % of the image, stroke 9–14 %, centre anywhere that keeps it inside
    r = (0.16 + 0.12 * torch.rand(n, generator=g)) * s
    w = (0.09 + 0.05 * torch.rand(n, generator=g)) * s
    cx = r + 0.5 + torch.rand(n, generator=g) * (s - 2 * r - 1)
    cy = r + 0.5 + torch.rand(n, generator=g) * (s - 2 * r - 1)
    u = xs - cx[:, None, None]
    v = ys - cy[:, None, None]
    rr, ww = r[:, None, None], w[:, None, None]
    dist = torch.empty(n, image_size, image_size)
    for k in range(num_classes):
        idx = labels == k
        dist[idx] = _sdf(SHAPES[k], u[idx], v[idx], rr[idx], ww[idx])
    mask = (0.5 - dist).clamp(0, 1)  # one-pixel anti-aliased edge

    # background: a random colour with a random linear shading across the image
    bg = _colours(n, channels, g)
    fg = _colours(n, channels, g, away_from=bg, min_dist=0.3)
    angle = torch.rand(n, generator=g) * 2 * math.pi
    slope = 0.25 * torch.rand(n, generator=g) / s
    shade = ((xs - s / 2) * angle.cos()[:, None, None] + (ys - s / 2) * angle.sin()[:, None, None]) * slope[:, None, None]
    img = bg[:, :, None, None] + shade[:, None]

    # clutter: up to `clutter` distractors, each a dot or a thin short stroke of random colour and direction;
    # strokes look like pieces of the bar-built shapes, so the net must judge the whole shape, not one edge
    n_items = torch.randint(0, clutter + 1, (n,), generator=g)
    for j in range(clutter):
        on = (n_items > j).float()[:, None, None]
        px = torch.rand(n, generator=g) * s
        py = torch.rand(n, generator=g) * s
        theta = torch.rand(n, generator=g) * math.pi
        half = (0.05 + 0.12 * torch.rand(n, generator=g)) * s  # 0.05 s: a dot; up to 0.17 s: a stroke
        thick = (0.03 + 0.03 * torch.rand(n, generator=g)) * s
        du, dv = xs - px[:, None, None], ys - py[:, None, None]
        c, si = theta.cos()[:, None, None], theta.sin()[:, None, None]
        along, across = du * c + dv * si, -du * si + dv * c
        d = torch.hypot((along.abs() - half[:, None, None]).clamp(min=0), across) - thick[:, None, None]
        item = (0.5 - d).clamp(0, 1) * on
        col = _colours(n, channels, g)
        img = img * (1 - item[:, None]) + col[:, :, None, None] * item[:, None]

    img = img * (1 - mask[:, None]) + fg[:, :, None, None] * mask[:, None]
    img = img + noise * torch.randn(img.shape, generator=g)
    images = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    return images, labels.long()
