"""Datasets from a path: a folder of images (one subfolder per class) or a Parquet table.

Both are read through :mod:`ganlode.orchestrator.storage` (local or ``s3://``) and cached per
content: the cache key is the path's signature (physical location, sizes, modification times),
so an edited folder or re-exported table is read again. A Parquet table written by
``ganlode data export`` carries a ``split`` column, which replaces the held-out rule.

Two table layouts are read alike:

- ganlode's first format: ``image`` plain PNG/JPEG bytes, ``label`` strings;
- the Hugging Face ``datasets`` layout (what ``data export`` writes now, and what
  ``Dataset.to_parquet`` writes): the image column a struct {bytes, path} (``Image`` feature;
  a row with no bytes is read from its path, relative to the table's folder), the label column
  int64 indices whose names are the ``ClassLabel`` names in the ``huggingface`` schema metadata.
  Columns are found by name (``image``, ``label``) or else by their feature type there.
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
HF_METADATA_KEY = "huggingface"  # the schema metadata key of the Hugging Face features JSON


def IMAGE_STRUCT():
    """The Arrow type of a Hugging Face ``Image`` column: struct {bytes: binary, path: string}."""
    import pyarrow as pa

    return pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def hf_features_of(schema) -> dict:
    """The Hugging Face features recorded in a table's schema metadata ({} when there are none)."""
    import json

    meta = schema.metadata or {}
    raw = meta.get(HF_METADATA_KEY.encode())
    if not raw:
        return {}
    try:
        features = (json.loads(raw.decode("utf-8")).get("info") or {}).get("features") or {}
    except (ValueError, AttributeError):
        return {}
    return features if isinstance(features, dict) else {}


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


def _column_of(table, features: dict, name: str, feature_type: str) -> str | None:
    """The column called ``name``, else the first whose Hugging Face feature is ``feature_type``."""
    if name in table.column_names:
        return name
    for column, feature in features.items():
        if isinstance(feature, dict) and feature.get("_type") == feature_type and column in table.column_names:
            return column
    return None


def _image_blobs(column, path: str, base: str) -> list[bytes]:
    """Encoded image bytes per row: a plain binary column, or a Hugging Face Image struct {bytes, path}."""
    import pyarrow as pa

    if not pa.types.is_struct(column.type):
        return column.to_pylist()
    blobs = []
    for i, cell in enumerate(column.to_pylist()):
        cell = cell or {}
        data, where = cell.get("bytes"), cell.get("path")
        if data is None and where:
            full = where if storage.is_remote(where) or os.path.isabs(where) else storage.join(base, where)
            if not storage.exists(full):
                raise UserError(f"row {i} of {path} holds no image bytes and its path {where} does not exist: "
                                "re-save the table with the image bytes embedded")
            data = storage.read_bytes(full)
        if data is None:
            raise UserError(f"row {i} of {path} holds no image: drop the row or fill it in")
        blobs.append(data)
    return blobs


def _labels(column, features: dict, name: str) -> list[str]:
    """Class names per row: strings as they are, integers through the ``ClassLabel`` names (if recorded)."""
    import pyarrow as pa

    values = column.to_pylist()
    if not (pa.types.is_integer(column.type)):
        return [str(v) for v in values]
    names = (features.get(name) or {}).get("names") if isinstance(features.get(name), dict) else None
    if not names:
        return [str(v) for v in values]
    out = []
    for v in values:
        if v is None or not 0 <= int(v) < len(names):
            raise UserError(f"label {v} is outside the {len(names)} class names of the table's ClassLabel: fix the table")
        out.append(str(names[int(v)]))
    return out


@functools.lru_cache(maxsize=16)
def parquet_dataset(path: str, signature: tuple) -> Dataset:
    """A table of PNG/JPEG bytes with labels (``ganlode data export``, either layout in the module
    docstring), or a folder of such part files."""
    import pyarrow as pa

    if signature[0] == "dir":  # a dataset folder of Parquet part files (as Ray Data or Spark write)
        fs, root = storage.filesystem(signature[1])
        files = [k for k, *_ in signature[2] if k.endswith(".parquet") and not os.path.basename(k).startswith((".", "_"))]
        if not files:
            raise UserError(f"folder {path} holds no .parquet files: point at a .parquet file or a folder of them")
        urls = [storage.join(signature[1], k[len(root.rstrip("/")):].lstrip("/")) for k in files]
        base = signature[1]
    else:
        urls = [signature[1]]
        base = signature[1].rstrip("/").rsplit("/", 1)[0] if "/" in signature[1].rstrip("/") else "."
    fix = "check the path or re-export it with ganlode data export"
    tables = [storage.read_table(u, fix=fix) for u in urls]
    try:
        table = pa.concat_tables(tables)
    except pa.ArrowInvalid as e:
        raise UserError(f"the part files of {path} have different columns ({str(e).splitlines()[0][:80]}): "
                        "re-export them as one table") from None
    features = hf_features_of(tables[0].schema)
    image_col = _column_of(table, features, "image", "Image")
    label_col = _column_of(table, features, "label", "ClassLabel")
    missing = [c for c, found in (("image", image_col), ("label", label_col)) if found is None]
    if missing:
        raise UserError(f"{path} lacks the column(s) {', '.join(missing)}: a target table needs "
                        f"{', '.join(PARQUET_COLUMNS)} (as ganlode data export writes)")
    if table.num_rows == 0:
        raise UserError(f"{path} has no rows: export a target into it with ganlode data export SPEC --out {path}")
    labels = _labels(table.column(label_col).combine_chunks(), features, label_col)
    sources = [str(s) if s else path for s in table.column("source").to_pylist()] if "source" in table.column_names else [path] * len(labels)
    channels = table.column("channels").to_pylist() if "channels" in table.column_names else [None] * len(labels)

    def mismatch(i: int, size: tuple, first: tuple) -> str:
        return (f"row {i} of {path} is {size[0]}x{size[1]} but row 0 is {first[0]}x{first[1]}: "
                "a target table must hold images of one size")

    blobs = _image_blobs(table.column(image_col).combine_chunks(), path, base)
    images = _decode_all(blobs, lambda i: f"row {i} of {path}", mismatch, [c in (None, 1) for c in channels], path)
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
