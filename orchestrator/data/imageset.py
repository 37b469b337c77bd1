"""``ImageSet``: images in [-1, 1] with a label and a source per image, and what is done with one.

Every draw of a target spec (:mod:`.spec`) is an ImageSet with its own float copy of the
images (``x = u8 / 127.5 - 1``, which :func:`~.images.to_uint8` inverts exactly, so PNG round
trips are bit for bit). It can be written as a Parquet table that works as a target spec itself.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Iterable, Sequence

import numpy as np
import torch

from .. import storage
from ..errors import UserError
from .images import png_bytes, to_uint8
from .readers import PARQUET_COLUMNS


@dataclasses.dataclass(frozen=True, eq=False)
class ImageSet:
    """Images in [-1, 1] (float32, N x C x H x W) with a class label and a source per image."""

    images: torch.Tensor
    labels: list[str]
    sources: list[str]
    spec: str
    seed: int = 0
    split: str = "train"

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise ValueError(f"ImageSet images must be N x C x H x W, got shape {tuple(self.images.shape)}")
        n = self.images.shape[0]
        if len(self.labels) != n or len(self.sources) != n:
            raise ValueError(f"ImageSet has {n} images but {len(self.labels)} labels and {len(self.sources)} sources")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def resolution(self) -> int:
        h, w = self.images.shape[-2:]
        if h != w:
            raise ValueError(f"ImageSet images are {h}x{w}, not square")
        return int(h)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    def counts(self) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for key in zip(self.sources, self.labels):
            out[key] = out.get(key, 0) + 1
        return out

    def provenance(self) -> dict:
        nested: dict[str, dict[str, int]] = {}
        for (source, label), c in self.counts().items():
            nested.setdefault(source, {})[label] = c
        return {
            "spec": self.spec,
            "seed": self.seed,
            "split": self.split,
            "n": len(self),
            "resolution": int(self.images.shape[-1]),
            "channels": self.channels,
            "counts": nested,
        }


def write_parquet(imageset: ImageSet | Sequence[ImageSet], path: str) -> None:
    """Write one ImageSet (or several, e.g. a target and its eval reference) as a Parquet table.

    Columns: image (PNG bytes), height, width, channels, label, source, split; the provenance of
    each set is kept in the schema metadata under ``ganlode``. The write is atomic.
    """
    import pyarrow as pa

    sets = [imageset] if isinstance(imageset, ImageSet) else list(imageset)
    if not sets:
        raise ValueError("write_parquet needs at least one ImageSet")
    shapes = {tuple(s.images.shape[1:]) for s in sets if len(s)}
    if len(shapes) > 1:
        raise UserError(f"cannot write image sets of different sizes {sorted(shapes)} into one table {path}: write them separately")
    cols: dict[str, list] = {k: [] for k in (*PARQUET_COLUMNS, "split")}
    for s in sets:
        arr = to_uint8(s.images) if len(s) else np.zeros((0, 1, 1, 1), np.uint8)
        for i in range(len(s)):
            cols["image"].append(png_bytes(arr[i]))
            cols["height"].append(arr.shape[1])
            cols["width"].append(arr.shape[2])
            cols["channels"].append(arr.shape[3])
        cols["label"].extend(s.labels)
        cols["source"].extend(s.sources)
        cols["split"].extend([s.split] * len(s))
    schema = pa.schema([("image", pa.binary()), ("height", pa.int32()), ("width", pa.int32()), ("channels", pa.int32()),
                        ("label", pa.string()), ("source", pa.string()), ("split", pa.string())],
                       metadata={"ganlode": json.dumps([s.provenance() for s in sets])})
    storage.write_table(path, pa.Table.from_pydict(cols, schema=schema))


def grid_pick(imageset: ImageSet, limit: int = 64) -> torch.Tensor:
    """Up to ``limit`` images taken round-robin over the set's (source, class) groups."""
    by_group: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(zip(imageset.sources, imageset.labels)):
        by_group.setdefault(key, []).append(i)
    queues = list(by_group.values())
    order: list[int] = []
    depth = 0
    while len(order) < min(limit, len(imageset)):
        for q in queues:
            if depth < len(q) and len(order) < limit:
                order.append(q[depth])
        depth += 1
    order.sort()  # keep the set's own order (classes stay together)
    return imageset.images[order]


def iter_counts(imageset: ImageSet) -> Iterable[tuple[str, str, int]]:
    for (source, label), c in imageset.counts().items():
        yield source, label, c
