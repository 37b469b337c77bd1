"""Datasets from a path: a folder of images (one subfolder per class) or a Parquet table.

Both are read through :mod:`ganlode.orchestrator.storage` (local or ``s3://``) and cached per
content: the cache key is the path's signature (physical location, sizes, modification times),
so an edited folder or re-exported table is read again. A Parquet table written by
``ganlode data export`` carries a ``split`` column, which replaces the held-out rule.
"""

from __future__ import annotations

import functools
import io
import os
from typing import Callable, Sequence

import numpy as np

from .. import storage
from ..errors import UserError
from .datasets import SPLIT_TAGS, Dataset, builtin_dataset, make_dataset

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
PARQUET_COLUMNS = ("image", "height", "width", "channels", "label", "source")


def is_parquet(path: str) -> bool:
    return path.lower().rstrip("/").endswith(".parquet")


def path_dataset(path: str) -> Dataset:
    """The dataset at ``path``: a ``.parquet`` file (or folder of parts), else a folder of images."""
    sig = _signature(path)
    if is_parquet(path):
        return parquet_dataset(path, sig)
    if sig[0] == "dir":
        return folder_dataset(path, sig)
    raise UserError(f"{path} is neither a folder of images nor a .parquet file: point at one of those")


def clear_caches() -> None:
    """Forget every dataset loaded in this process (built-in, folder and Parquet)."""
    builtin_dataset.cache_clear()
    folder_dataset.cache_clear()
    parquet_dataset.cache_clear()


def _signature(path: str) -> tuple:
    """What identifies the current content of ``path`` (physical location, sizes, times), for the cache."""
    if not storage.exists(path):
        raise UserError(f"{path} does not exist: check the path (a folder of images or a .parquet file)")
    physical = storage.resolve(path)  # follows the pointer of an atomically published folder
    fs, p = storage.filesystem(physical)
    with storage.translate_errors(path, "listing"):
        if fs.isdir(p):
            found = fs.find(p, detail=True)
            return ("dir", physical, tuple(sorted(
                (k, v.get("size"), str(v.get("mtime") or v.get("LastModified") or v.get("ETag"))) for k, v in found.items())))
        info = fs.info(p)
    return ("file", physical, info.get("size"), str(info.get("mtime") or info.get("LastModified") or info.get("ETag")))


# ---------------------------------------------------------------- decoding


def _decode_image(data: bytes, what: str):
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"{what} is not a readable image ({e.__class__.__name__}): remove or replace it") from None
    return img


def _to_array(img) -> tuple[np.ndarray, bool]:
    """(H x W x 3 uint8, grayscale-like?) for any Pillow image."""
    if img.mode in ("1", "L", "LA", "I", "I;16", "F"):
        gray = np.asarray(img.convert("L"))
        return np.repeat(gray[..., None], 3, -1), True
    rgb = np.asarray(img.convert("RGB"))
    return rgb, bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def _decode_all(blobs: Sequence[bytes], name_of: Callable[[int], str], mismatch: Callable[[int, tuple, tuple], str],
                may_be_gray: Sequence[bool], what: str) -> np.ndarray:
    """Decode images of one size into N x C x H x W uint8: one channel when every image is gray-like
    (and ``may_be_gray``), else three. ``mismatch(i, size_i, size_0)`` words a size error."""
    arrays, first, gray = [], None, True
    for i, blob in enumerate(blobs):
        img = _decode_image(blob, name_of(i))
        if first is None:
            first = img.size
        elif img.size != first:
            raise UserError(mismatch(i, img.size, first))
        arr, is_gray = _to_array(img)
        arrays.append(arr)
        gray &= is_gray and may_be_gray[i]
    h, w = arrays[0].shape[:2]
    if h != w:
        raise UserError(f"{what} holds {w}x{h} images, but targets must be square: crop or pad them to a square size first")
    stacked = np.stack(arrays).transpose(0, 3, 1, 2)  # N x 3 x H x W
    return np.ascontiguousarray(stacked[:, :1] if gray else stacked)


# ---------------------------------------------------------------- folders


@functools.lru_cache(maxsize=16)
def folder_dataset(path: str, signature: tuple) -> Dataset:
    """A folder of images: one class per subfolder, or one class named after the folder."""
    fs, root = storage.filesystem(signature[1])
    root = root.rstrip("/")
    files = sorted(k for k, *_ in signature[2] if k.lower().endswith(IMAGE_EXTENSIONS)
                   and not any(part.startswith(".") for part in k[len(root):].split("/")))
    if not files:
        raise UserError(f"folder {path} holds no images ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}): "
                        "put images in it, or in one subfolder per class")
    name = path.rstrip("/") or path
    folder_label = os.path.basename(name if storage.is_remote(name) else os.path.abspath(os.path.expanduser(name)))
    rels = [f[len(root):].lstrip("/") for f in files]
    blobs = []
    for f in files:
        with storage.translate_errors(path, "reading"):
            blobs.append(fs.cat_file(f))

    def mismatch(i: int, size: tuple, first: tuple) -> str:
        return (f"{rels[i]} in {path} is {size[0]}x{size[1]} but {rels[0]} is {first[0]}x{first[1]}: "
                "every image in a folder must have the same size; resize them first")

    images = _decode_all(blobs, lambda i: files[i], mismatch, [True] * len(files), f"folder {path}")
    labels = [rel.split("/")[0] if "/" in rel else folder_label for rel in rels]
    classes = list(dict.fromkeys(sorted(labels)))
    index = {c: i for i, c in enumerate(classes)}
    group_of = np.array([index[label] for label in labels], np.int64)
    groups = [(name, c) for c in classes]
    return make_dataset(name, images, groups, group_of, [f"folder/{c}" for c in classes])


# ---------------------------------------------------------------- Parquet tables


@functools.lru_cache(maxsize=16)
def parquet_dataset(path: str, signature: tuple) -> Dataset:
    """A table of PNG/JPEG bytes with labels (``ganlode data export``), or a folder of such part files."""
    import pyarrow as pa

    if signature[0] == "dir":  # a dataset folder of Parquet part files (as Ray Data or Spark write)
        fs, root = storage.filesystem(signature[1])
        files = [k for k, *_ in signature[2] if k.endswith(".parquet") and not os.path.basename(k).startswith((".", "_"))]
        if not files:
            raise UserError(f"folder {path} holds no .parquet files: point at a .parquet file or a folder of them")
        urls = [storage.join(signature[1], k[len(root.rstrip("/")):].lstrip("/")) for k in files]
    else:
        urls = [signature[1]]
    fix = "check the path or re-export it with ganlode data export"
    table = pa.concat_tables([storage.read_table(u, fix=fix) for u in urls])
    missing = [c for c in ("image", "label") if c not in table.column_names]
    if missing:
        raise UserError(f"{path} lacks the column(s) {', '.join(missing)}: a target table needs "
                        f"{', '.join(PARQUET_COLUMNS)} (as ganlode data export writes)")
    if table.num_rows == 0:
        raise UserError(f"{path} has no rows: export a target into it with ganlode data export SPEC --out {path}")
    labels = [str(label) for label in table.column("label").to_pylist()]
    sources = [str(s) if s else path for s in table.column("source").to_pylist()] if "source" in table.column_names else [path] * len(labels)
    channels = table.column("channels").to_pylist() if "channels" in table.column_names else [None] * len(labels)

    def mismatch(i: int, size: tuple, first: tuple) -> str:
        return (f"row {i} of {path} is {size[0]}x{size[1]} but row 0 is {first[0]}x{first[1]}: "
                "a target table must hold images of one size")

    images = _decode_all(table.column("image").to_pylist(), lambda i: f"row {i} of {path}", mismatch,
                         [c in (None, 1) for c in channels], path)
    tags = None
    if "split" in table.column_names:
        raw_tags = table.column("split").to_pylist()
        bad = sorted({str(t) for t in raw_tags if t not in SPLIT_TAGS})
        if bad:
            raise UserError(f"{path} has split values {', '.join(bad)}; only {', '.join(SPLIT_TAGS)} are allowed: "
                            "fix or drop the split column")
        tags = np.array([SPLIT_TAGS[t] for t in raw_tags], np.int8)
    groups = list(dict.fromkeys(zip(sources, labels)))
    index = {g: i for i, g in enumerate(groups)}
    group_of = np.array([index[g] for g in zip(sources, labels)], np.int64)
    return make_dataset(path, images, groups, group_of, [f"{s}/{label}" for s, label in groups], tags)
