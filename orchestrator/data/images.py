"""Image arrays and pictures: [-1, 1] tensors to uint8 and back, PNG grids."""

from __future__ import annotations

import io
import math

import numpy as np
import torch

from .. import storage
from ..errors import UserError


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] images (N x C x H x W, or C x H x W) as uint8 N x H x W x C (channels last)."""
    if images.ndim == 3:
        images = images.unsqueeze(0)
    # numpy, not torch: small elementwise ops on a busy 2-core box stall in torch's thread pool
    x = images.detach().to("cpu", torch.float32).numpy()
    x = np.round((np.clip(x, -1.0, 1.0) + np.float32(1.0)) * np.float32(127.5))
    return np.ascontiguousarray(x.astype(np.uint8).transpose(0, 2, 3, 1))


def from_uint8(array: np.ndarray) -> torch.Tensor:
    """uint8 N x C x H x W as float32 in [-1, 1]; the exact inverse of :func:`to_uint8`."""
    x = np.asarray(array, dtype=np.uint8).astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return torch.from_numpy(x)


def png_bytes(hwc: np.ndarray) -> bytes:
    from PIL import Image

    img = Image.fromarray(hwc[..., 0] if hwc.shape[-1] == 1 else hwc, "L" if hwc.shape[-1] == 1 else "RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def grid_png(images: torch.Tensor, nrow: int | None = None, *, pad: int = 2, scale: int | None = None) -> bytes:
    """``images`` ([-1, 1], N x C x H x W) as the bytes of one PNG grid.

    ``nrow`` images per row (default: a square-ish grid); ``scale`` enlarges each pixel
    (default: 2 for images of 32 px or less, so small sets stay legible).
    """
    arr = to_uint8(images)
    n, h, w, c = arr.shape
    if n == 0:
        raise UserError("no images to draw: check the image set is not empty")
    if c not in (1, 3):
        raise ValueError(f"show_grid draws 1- or 3-channel images, got {c} channels")
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 64, np.uint8)
    for i in range(n):
        r, q = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        grid[y:y + h, x:x + w] = arr[i]
    scale = scale if scale is not None else (2 if max(h, w) <= 32 else 1)
    if scale > 1:
        grid = grid.repeat(scale, 0).repeat(scale, 1)
    return png_bytes(grid)


def show_grid(images: torch.Tensor, path: str, nrow: int | None = None, *, pad: int = 2, scale: int | None = None) -> None:
    """Write :func:`grid_png` of ``images`` to ``path`` (local or s3://), atomically."""
    storage.write_bytes_atomic(path, grid_png(images, nrow, pad=pad, scale=scale))
