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
from .images import from_uint8, png_bytes, to_uint8
from .readers import HF_METADATA_KEY, IMAGE_STRUCT, PARQUET_COLUMNS, path_dataset


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


def hf_features(class_names: Sequence[str]) -> dict:
    """The Hugging Face ``datasets`` features of a table :func:`write_parquet` writes, as the JSON that
    ``datasets`` reads from the schema metadata key ``huggingface`` (``Features.from_arrow_schema``):
    ``image`` an ``Image`` (storage struct {bytes, path}), ``label`` a ``ClassLabel`` with the class
    names (storage int64), the rest plain ``Value`` columns."""
    value = {"_type": "Value"}
    return {
        "image": {"_type": "Image"},
        "height": {**value, "dtype": "int32"},
        "width": {**value, "dtype": "int32"},
        "channels": {**value, "dtype": "int32"},
        "label": {"names": list(class_names), "_type": "ClassLabel"},
        "source": {**value, "dtype": "string"},
        "split": {**value, "dtype": "string"},
    }


def parquet_schema(class_names: Sequence[str], provenance: list[dict]):
    """The Arrow schema of :func:`write_parquet`'s tables, with both metadata keys."""
    import pyarrow as pa

    return pa.schema(
        [("image", IMAGE_STRUCT()), ("height", pa.int32()), ("width", pa.int32()), ("channels", pa.int32()),
         ("label", pa.int64()), ("source", pa.string()), ("split", pa.string())],
        metadata={HF_METADATA_KEY: json.dumps({"info": {"features": hf_features(class_names)}}),
                  "ganlode": json.dumps(provenance)})


def write_parquet(imageset: ImageSet | Sequence[ImageSet], path: str) -> None:
    """Write one ImageSet (or several, e.g. a target and its eval reference) as a Parquet table.

    Columns: image (a struct {bytes: PNG bytes, path: a row name}, the storage of Hugging Face's
    ``Image`` feature), height, width, channels, label (int64 index into the class names, a
    ``ClassLabel``), source, split. The schema metadata holds the ``huggingface`` features JSON
    (so ``datasets.load_dataset("parquet", data_files=...)`` gives an Image column and the class
    names) and each set's provenance under ``ganlode``. ``ray.data.read_parquet`` reads it as any
    table. The write is atomic. The readers take these tables and the first format (plain PNG
    bytes, string labels) alike.
    """
    import pyarrow as pa

    sets = [imageset] if isinstance(imageset, ImageSet) else list(imageset)
    if not sets:
        raise ValueError("write_parquet needs at least one ImageSet")
    shapes = {tuple(s.images.shape[1:]) for s in sets if len(s)}
    if len(shapes) > 1:
        raise UserError(f"cannot write image sets of different sizes {sorted(shapes)} into one table {path}: write them separately")
    names = list(dict.fromkeys(label for s in sets for label in s.labels))
    index = {name: i for i, name in enumerate(names)}
    cols: dict[str, list] = {k: [] for k in (*PARQUET_COLUMNS, "split")}
    row = 0
    for s in sets:
        arr = to_uint8(s.images) if len(s) else np.zeros((0, 1, 1, 1), np.uint8)
        for i in range(len(s)):
            cols["image"].append({"bytes": png_bytes(arr[i]), "path": f"{row:06d}.png"})
            cols["height"].append(arr.shape[1])
            cols["width"].append(arr.shape[2])
            cols["channels"].append(arr.shape[3])
            row += 1
        cols["label"].extend(index[label] for label in s.labels)
        cols["source"].extend(s.sources)
        cols["split"].extend([s.split] * len(s))
    schema = parquet_schema(names, [s.provenance() for s in sets])
    storage.write_table(path, pa.Table.from_pydict(cols, schema=schema))


def import_table(path: str, out: str) -> list[ImageSet]:
    """Read the table (or folder) at ``path``, in any layout the readers take (a Hugging Face
    ``datasets`` Parquet export included), and write it to ``out`` as a ganlode table: every row
    with its pool as the ``split`` column (the table's own, else the held-out rule), images
    embedded as PNG. Returns the written sets (train, val, test; empty ones left out)."""
    ds = path_dataset(path)
    sets = []
    for split in ("train", "val", "test"):
        pools = [p for p in ds.pool(split) if len(p)]
        if not pools:
            continue
        idx = np.sort(np.concatenate(pools))
        groups = [ds.groups[g] for g in ds.group_of[idx]]
        sets.append(ImageSet(from_uint8(ds.images[idx]), [label for _, label in groups], [src for src, _ in groups],
                             spec=path, seed=0, split=split))
    if not sets:
        raise UserError(f"{path} holds no images to import")
    write_parquet(sets, out)
    return sets


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
