"""Batched, seeded contrastive augmentations."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from rocl_bench.data.augment import AugmentSpec, _gray, _hsv_to_rgb, _rgb_to_hsv, augment

IDENTITY = AugmentSpec("natural", crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=False, jitter_p=0.0,
                       gray_p=0.0, rotate_deg=0.0)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int = 16, c: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, size, size, generator=_gen(seed))


@pytest.mark.parametrize("kind,channels", [("natural", 3), ("digit", 1), ("digit", 3)])
def test_shape_range_and_seeding(kind, channels):
    x = _images(c=channels)
    spec = AugmentSpec.for_kind(kind)
    a, b = augment(x, spec, _gen(1)), augment(x, spec, _gen(1))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b)                                          # same seed, same views
    assert not torch.equal(a, augment(x, spec, _gen(2)))              # another seed, other views
    assert not torch.allclose(a, x)                                   # it did something


def test_one_generator_gives_two_different_views():
    x, g, spec = _images(), _gen(0), AugmentSpec.for_kind("natural")
    assert not torch.equal(augment(x, spec, g), augment(x, spec, g))


def _corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(1) - a.flatten(1).mean(1, keepdim=True), b.flatten(1) - b.flatten(1).mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp(min=1e-12)


def test_digit_spec_never_flips():
    x = torch.zeros(1, 1, 28, 28)
    x[..., 4:24, 3:12] = 1.0                                          # a bar on the left: mirror is a bar on the right
    x = x.expand(256, -1, -1, -1).contiguous()
    mirror = x.flip(-1)
    out = augment(x, AugmentSpec.for_kind("digit"), _gen(0))
    margin = _corr(out, x) - _corr(out, mirror)
    assert float(margin.mean()) > 0.5 and float((margin > 0).float().mean()) > 0.95
    # the same measure does see flips: the natural spec's flip alone mirrors about half the images
    flip_only = dataclasses.replace(IDENTITY, flip=True)
    out = augment(x, flip_only, _gen(0))
    mirrored = torch.isclose(out, mirror, atol=1e-5).flatten(1).all(1)
    kept = torch.isclose(out, x, atol=1e-5).flatten(1).all(1)
    assert bool((mirrored ^ kept).all()) and 0.35 < float(mirrored.float().mean()) < 0.65


def test_hsv_round_trip():
    x = _images(8, 3, 16)
    x[0] = 0.5                                                        # grey: zero saturation, hue undefined
    x[1, :, :2] = 0.0                                                 # black
    x[1, :, 2:4] = 1.0                                                # white
    assert torch.allclose(_hsv_to_rgb(_rgb_to_hsv(x)), x, atol=1e-5)


@pytest.mark.parametrize("factor", [-0.5, -0.3, -0.02, 0.0, 0.1, 0.25, 0.5])
def test_hue_shift_matches_torchvision(factor):
    x = _images(8, 3, 16)
    hsv = _rgb_to_hsv(x)                                              # as _colour shifts hue
    ours = _hsv_to_rgb(torch.stack([(hsv[:, 0] + factor) % 1.0, hsv[:, 1], hsv[:, 2]], 1)).clamp(0, 1)
    assert torch.allclose(ours, TF.adjust_hue(x, factor), atol=1e-5)


def test_identity_spec_is_identity():
    for c in (1, 3):
        x = _images(c=c)
        assert torch.allclose(augment(x, IDENTITY, _gen(0)), x, atol=1e-5)
    x = _images()   # no-op jitter factors, always applied
    assert torch.allclose(augment(x, dataclasses.replace(IDENTITY, jitter=(0, 0, 0, 0), jitter_p=1.0), _gen(0)), x,
                      atol=1e-5)


def test_grayscale_only():
    x = _images()
    out = augment(x, dataclasses.replace(IDENTITY, gray_p=1.0), _gen(0))
    assert torch.allclose(out, _gray(x).expand_as(x), atol=1e-5)


def test_hue_jitter_keeps_saturation_and_value():
    x = _images()
    out = augment(x, dataclasses.replace(IDENTITY, jitter=(0, 0, 0, 0.5), jitter_p=1.0), _gen(0))
    assert not torch.allclose(out, x, atol=1e-3)
    assert torch.allclose(_rgb_to_hsv(out)[:, 1:], _rgb_to_hsv(x)[:, 1:], atol=1e-4)
