"""Batched, seeded augmentations for contrastive views: one affine grid and a few tensor ops per batch.

Per-sample torchvision transforms cost a Python call per image; here every image still gets its own random
parameters, but the whole batch is transformed at once (CPU or GPU), and all randomness comes from one
generator so runs repeat exactly. Differences from torchvision, kept small on purpose: the crop's area and
aspect ratio are sampled once (clamped into the image) instead of by rejection, and the four colour-jitter
operations run in a fixed order (brightness, contrast, saturation, hue) instead of a random one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentSpec:
    """One augmentation family: 'natural' (SimCLR/RoCL for CIFAR) or 'digit' (label-preserving, no flip/colour)."""

    kind: str = "natural"
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    jitter_p: float = 0.8
    gray_p: float = 0.2
    rotate_deg: float = 0.0
    order: str = "batched"      # "batched": crop (+ flip) then colour; "official": colour, grayscale, then flip, crop

    @classmethod
    def for_kind(cls, kind: str) -> "AugmentSpec":
        if kind == "digit":
            return cls("digit", crop_scale=(0.6, 1.0), crop_ratio=(0.85, 1.15), flip=False,
                       jitter=(0.0, 0.0, 0.0, 0.0), jitter_p=0.0, gray_p=0.0, rotate_deg=12.0)
        return cls()


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g) * (hi - lo) + lo


def _geometry(x: torch.Tensor, spec: AugmentSpec, g: torch.Generator) -> torch.Tensor:
    """Random resized crop (+ flip, + small rotation) as one per-sample affine warp."""
    n = x.shape[0]
    area = _uniform(n, *spec.crop_scale, g)
    log_r = _uniform(n, math.log(spec.crop_ratio[0]), math.log(spec.crop_ratio[1]), g)
    ratio = torch.exp(log_r)
    w = torch.sqrt(area * ratio).clamp(max=1.0)
    h = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (torch.rand(n, generator=g) * 2 - 1) * (1 - w)
    cy = (torch.rand(n, generator=g) * 2 - 1) * (1 - h)
    sx = w * torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0) if spec.flip else w
    angle = _uniform(n, -spec.rotate_deg, spec.rotate_deg, g) * (math.pi / 180)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([sx * cos, -h * sin, cx], 1), torch.stack([sx * sin, h * cos, cy], 1)], 1)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g_, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp(min=1e-12), torch.zeros_like(maxc))
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / safe, (maxc - g_) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g_, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, maxc], 1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.long() % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    choices = torch.stack([torch.stack(c, 1) for c in
                           [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]], 0)
    idx = i.unsqueeze(0).unsqueeze(2).expand(1, -1, 3, *i.shape[1:])
    return choices.gather(0, idx).squeeze(0)


def _colour(x: torch.Tensor, spec: AugmentSpec, g: torch.Generator) -> torch.Tensor:
    """ColorJitter(b, c, s, h) with probability p, then RandomGrayscale(p), per sample."""
    n = x.shape[0]
    b, c, s, hue = spec.jitter
    view = (n, 1, 1, 1)
    apply = (torch.rand(n, generator=g) < spec.jitter_p).view(view).to(x.device)
    fb = _uniform(n, max(0.0, 1 - b), 1 + b, g).view(view).to(x)
    fc = _uniform(n, max(0.0, 1 - c), 1 + c, g).view(view).to(x)
    fs = _uniform(n, max(0.0, 1 - s), 1 + s, g).view(view).to(x)
    fh = _uniform(n, -hue, hue, g).view(n, 1, 1).to(x)
    y = (x * fb).clamp(0, 1)
    m = _gray(y).mean(dim=(1, 2, 3), keepdim=True)
    y = ((y - m) * fc + m).clamp(0, 1)
    gy = _gray(y)
    y = ((y - gy) * fs + gy).clamp(0, 1)
    if hue > 0:
        hsv = _rgb_to_hsv(y)
        hsv = torch.stack([(hsv[:, 0] + fh) % 1.0, hsv[:, 1], hsv[:, 2]], 1)
        y = _hsv_to_rgb(hsv).clamp(0, 1)
    x = torch.where(apply, y, x)
    gray = (torch.rand(n, generator=g) < spec.gray_p).view(view).to(x.device)
    return torch.where(gray, _gray(x).expand_as(x), x)


def augment(x: torch.Tensor, spec: AugmentSpec, g: torch.Generator) -> torch.Tensor:
    """One random view of each image in the batch; values stay in [0, 1]. The order matters on colour images only
    (interpolation does not commute with the clamped, non-linear colour operations)."""
    colour = x.shape[1] == 3 and (spec.jitter_p > 0 or spec.gray_p > 0)
    if spec.order == "official":
        y = _colour(x, spec, g) if colour else x
        return _geometry(y, spec, g).clamp(0, 1)
    y = _geometry(x, spec, g)
    if colour:
        y = _colour(y, spec, g)
    return y.clamp(0, 1)
