"""Differentiable augmentation (DiffAugment; Zhao et al., "Differentiable Augmentation for
Data-Efficient GAN Training", NeurIPS 2020).

The critic sees every image, real or generated, through the same random transform, and the
generator's loss is taken through it too, so the transform must pass gradients. That keeps a
critic trained on a few hundred images from memorising them, without the augmentation leaking
into the generated images (both sides are augmented alike).

A policy is a comma-separated list of the transforms below, applied in that order:

- ``color``: brightness +U(-0.5, 0.5), saturation x U(0, 2), contrast x U(0.5, 1.5), per image;
- ``translation``: a shift of up to 1/8 of the side in each direction, zeros shifted in;
- ``cutout``: one square of half the side set to zero, its centre anywhere in the image.

The ranges are the reference implementation's; images are in [-1, 1], so zero is mid-grey.
Every draw comes from the ``torch.Generator`` given, on the CPU, so a seed fixes the transform
on every device.
"""

from __future__ import annotations

import torch

TRANSFORMS = ("color", "translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    """The transforms of ``policy`` ('' or 'none': no augmentation); raises ValueError on unknown names."""
    if policy.strip() in ("", "none"):
        return ()
    names = tuple(p.strip() for p in policy.split(","))
    unknown = [n for n in names if n not in TRANSFORMS]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"augmentation policy {policy!r}: use a comma-separated subset of {', '.join(TRANSFORMS)} "
                         f"(each once), or 'none'")
    return names


def _uniform(n: int, lo: float, hi: float, rng: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return (lo + (hi - lo) * torch.rand(n, 1, 1, 1, generator=rng)).to(device=like.device, dtype=like.dtype)


def color(x: torch.Tensor, brightness: torch.Tensor, saturation: torch.Tensor, contrast: torch.Tensor) -> torch.Tensor:
    """Per-image brightness offset, then saturation and contrast factors (each N x 1 x 1 x 1)."""
    x = x + brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * saturation + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * contrast + mean


def translate(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Shift image i by (dy[i], dx[i]) pixels (down and right positive); zeros come in at the edges."""
    n, _, h, w = x.shape
    rows = torch.arange(h, device=x.device).view(1, h, 1) - dy.to(x.device).view(n, 1, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w) - dx.to(x.device).view(n, 1, 1)
    inside = ((rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)).unsqueeze(1)
    src = (rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)).view(n, 1, h * w).expand(n, x.shape[1], h * w)
    out = x.flatten(2).gather(2, src).view_as(x)
    return out * inside.to(x.dtype)


def cutout(x: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, size: int) -> torch.Tensor:
    """Zero a ``size`` x ``size`` square centred at (cy[i], cx[i]) in image i (clipped at the edges)."""
    n, _, h, w = x.shape
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    top = cy.to(x.device).view(n, 1, 1) - size // 2
    left = cx.to(x.device).view(n, 1, 1) - size // 2
    hole = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    return x * (~hole).unsqueeze(1).to(x.dtype)


def diff_augment(x: torch.Tensor, policy: tuple[str, ...], rng: torch.Generator) -> torch.Tensor:
    """``x`` through the transforms of ``policy`` (from :func:`parse_policy`), drawn from ``rng``."""
    n, _, h, w = x.shape
    for name in policy:
        if name == "color":
            x = color(x, _uniform(n, -0.5, 0.5, rng, x), _uniform(n, 0.0, 2.0, rng, x), _uniform(n, 0.5, 1.5, rng, x))
        elif name == "translation":
            sy, sx = int(h * 0.125 + 0.5), int(w * 0.125 + 0.5)
            x = translate(x, torch.randint(-sy, sy + 1, (n,), generator=rng), torch.randint(-sx, sx + 1, (n,), generator=rng))
        elif name == "cutout":
            x = cutout(x, torch.randint(0, h, (n,), generator=rng), torch.randint(0, w, (n,), generator=rng),
                       int(min(h, w) * 0.5 + 0.5))
    return x
