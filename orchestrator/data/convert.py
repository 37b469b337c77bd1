"""A target converted to the source's image shape: ``--convert-target``.

A source makes C x R x R images. A target of another size or channel count is refused, in one
line naming :data:`FLAG`, unless the run asks for it to be converted. Then every image the run
reads of the target (its training draw, and the validation and test references, so scores
compare like with like) is converted the same way:

- size: resized to R x R by bicubic interpolation with antialiasing (when shrinking, the kernel
  is widened by the reduction factor, a low-pass filter as PIL's resize applies; torch's
  ``F.interpolate(..., antialias=True)``), then clamped to [-1, 1] (bicubic can overshoot);
- channels: gray -> RGB repeats the gray channel; RGB -> gray is ITU-R BT.601 luma,
  Y = 0.299 R + 0.587 G + 0.114 B.

Each map is a weighted average whose weights sum to 1, so a constant image stays that constant,
and gray -> RGB -> gray is the identity. The run records :meth:`Conversion.to_dict`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import UserError
from .imageset import ImageSet

FLAG = "--convert-target"
RESIZE = "bicubic, antialiased, clamped to [-1, 1]"
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601
TO_RGB = "gray repeated into R, G and B"
TO_GRAY = "ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B)"


def resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """``images`` (N x C x H x W in [-1, 1]) at ``resolution`` x ``resolution``: bicubic, antialiased, clamped."""
    if tuple(images.shape[-2:]) == (resolution, resolution):
        return images
    out = F.interpolate(images, size=(resolution, resolution), mode="bicubic", antialias=True, align_corners=False)
    return out.clamp(-1.0, 1.0)


def to_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """``images`` with ``channels`` channels (1 or 3): gray repeated, or RGB as BT.601 luma."""
    have = images.shape[1]
    if have == channels:
        return images
    if (have, channels) == (1, 3):
        return images.repeat(1, 3, 1, 1)
    if (have, channels) == (3, 1):
        weights = torch.tensor(LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        return (images * weights).sum(dim=1, keepdim=True)
    raise ValueError(f"cannot convert {have}-channel images to {channels} channels (1 and 3 only)")


@dataclass(frozen=True)
class Conversion:
    """A target's images, C x R x R as given, converted to ``channels`` x ``resolution`` x ``resolution``."""

    from_channels: int
    from_resolution: int
    channels: int
    resolution: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Size first, then channels."""
        if tuple(images.shape[1:]) != (self.from_channels, self.from_resolution, self.from_resolution):
            raise ValueError(f"this conversion takes {self.from_channels}x{self.from_resolution}x{self.from_resolution} "
                             f"images, got {tuple(images.shape[1:])}")
        return to_channels(resize(images, self.resolution), self.channels)

    def convert_set(self, target: ImageSet) -> ImageSet:
        """``target`` with its images converted (labels, sources and provenance otherwise unchanged)."""
        return dataclasses.replace(target, images=self(target.images))

    def to_dict(self) -> dict[str, Any]:
        """What a run records: the shapes, and how each part was converted (None: left as it was)."""
        return {"from": [self.from_channels, self.from_resolution, self.from_resolution],
                "to": [self.channels, self.resolution, self.resolution],
                "resize": RESIZE if self.from_resolution != self.resolution else None,
                "channels": None if self.from_channels == self.channels else TO_RGB if self.channels == 3 else TO_GRAY}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Conversion":
        return cls(d["from"][0], d["from"][1], d["to"][0], d["to"][1])


def target_conversion(target: ImageSet, spec: str, channels: int, resolution: int, maker: str,
                      convert: bool) -> Conversion | None:
    """How ``target`` becomes ``channels`` x ``resolution`` x ``resolution`` images (None: it is already).

    A mismatch without ``convert`` is a one-line UserError naming :data:`FLAG`; ``maker`` says what
    makes the images (``source zoo:digits-0to4 makes``, ``the sources make``).
    """
    have = (target.channels, target.resolution)
    if have == (channels, resolution):
        return None
    if not convert:
        c, r = have
        raise UserError(f"target {spec} holds {c}x{r}x{r} images but {maker} {channels}x{resolution}x{resolution}: "
                        f"pick a target of that image size and channels, or add {FLAG} to resize it (bicubic, "
                        "antialiased) and convert its channels (gray repeated, or RGB to luma)")
    return Conversion(target.channels, target.resolution, channels, resolution)


def conform(target: ImageSet, spec: str, channels: int, resolution: int, maker: str,
            convert: bool) -> tuple[ImageSet, Conversion | None]:
    """``target`` as ``channels`` x ``resolution`` x ``resolution`` images, and the conversion that made them
    (None: none was needed); a mismatch without ``convert`` is :func:`target_conversion`'s UserError."""
    conversion = target_conversion(target, spec, channels, resolution, maker, convert)
    return (target, None) if conversion is None else (conversion.convert_set(target), conversion)
