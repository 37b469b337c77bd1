"""Target image sets: built-in datasets, folders of images and Parquet tables, drawn from specs.

A target spec is ``DATASET[:CLASSES][@N]``, parts joined with ``+``::

    mnist5k:7@100          100 sevens
    mnist5k:0-4            every training image of digits 0..4 (indices, inclusive)
    animals:bear,cat@100   50 bears and 50 cats
    mnist5k:3@60+animals:zebra@140
    emoji:animals-nature@64  64 images of one Unicode group (32 px RGB; emoji64 is 64 px)
    emoji-sub:animal-mammal  a Unicode subgroup (the classes of emoji-sub)
    ./my_images/           a folder (one subfolder per class, or one class named after the folder)
    ./t.parquet@50         a table written by ``ganlode data export`` / :func:`~.imageset.write_parquet`
    s3://bkt/target.parquet

Three splits. Every (source, class) group is split once and for all, by the dataset, never by
the user's ``--seed``: a permutation drawn from a constant seed (a CRC32 of
``"heldout/<dataset>/<class>"``) puts the first ceil(30%) of the group's images (at least 1 when
the group has 2 or more) in the held-out pool and the rest in the **training pool** (targets are
drawn from it); a second fixed permutation (``"valtest/<dataset>/<class>"``) splits the held-out
pool into the **validation split** (floor of half: model selection, early stopping, Tune) and the
**test split** (the rest: every reported figure). ``split="train"``, ``"val"`` and ``"test"`` draw
only from their own pools, so the three never overlap, whatever the seeds. Folder classes are
keyed by class name alone (``"heldout/folder/<class>"``), so moving a folder keeps its split. The
emoji datasets apply the rule to each Unicode subgroup's emoji rather than to its images, so all
variants of an emoji share one pool and a group's pools are its subgroups' (:mod:`.emoji`). A
Parquet table that carries a ``split`` column (as :func:`~.imageset.write_parquet` writes) is not
split again: its ``train``, ``val`` and ``test`` rows are those pools (rows marked ``eval``, as
the first version wrote them, are held out and split into val/test by the rule).

Drawing. ``@N`` on a part with k classes takes N // k images from each class, the first N % k
classes (in the order written) taking one more; each class is drawn without replacement from its
training pool with ``np.random.default_rng([seed, crc32(group)])``. Without ``@N`` a part takes
its whole training pool (in dataset order when no classes were named). The evaluation reference
of a spec uses the validation or test images of the same classes; with several parts it keeps
the parts' shares (their training counts, e.g. 60:140) as closely as whole images allow while
using as many images of that split as the smallest pool permits.

Raw arrays are loaded once per process (``functools.lru_cache``) and kept as read-only uint8;
every :class:`~.imageset.ImageSet` gets its own float copy in [-1, 1].
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from fractions import Fraction

import numpy as np

from .. import storage
from ..errors import UserError
from .datasets import BUILTINS, Dataset, builtin_classes, builtin_dataset, builtin_names, class_hint, crc
from .imageset import ImageSet
from .images import from_uint8
from .readers import is_parquet, path_dataset

SPEC_HELP = "write DATASET[:CLASSES][@N] parts joined with '+', e.g. mnist5k:7@100 or mnist5k:3@60+animals:zebra@140"


def class_names(dataset: str) -> list[str]:
    """The classes of a built-in dataset (without loading it) or of a folder / Parquet path."""
    if dataset in BUILTINS:
        return builtin_classes(dataset)
    if _looks_like_path(dataset):
        return list(path_dataset(dataset).labels)
    raise _unknown_dataset(dataset)


@dataclasses.dataclass
class _Part:
    text: str                 # the part as written, without @N
    source: Dataset
    groups: list[int]         # selected group indices, in order
    n: int | None
    whole: bool               # no classes named: keep dataset order

    def train_sizes(self) -> list[int]:
        return [len(self.source.train[g]) for g in self.groups]

    def held_sizes(self, split: str = "eval") -> list[int]:
        pools = self.source.pool(split)
        return [len(pools[g]) for g in self.groups]


SPLITS = ("train", "val", "test", "eval")
SPLIT_WORDS = {"train": "training", "val": "validation", "test": "test", "eval": "held-out"}


def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or is_parquet(text) or (not storage.is_remote(text) and os.path.isdir(text))


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


def _resolve_classes(dataset: str, source: Dataset, tokens: str, spec: str) -> list[str]:
    labels = source.labels
    lower = {}
    for label in labels:
        lower.setdefault(label.lower(), []).append(label)
    chosen: list[str] = []

    def position(end: str) -> int | None:
        """A range end: an index (digits) or a class name, e.g. 0-4 or A-Z."""
        if re.fullmatch(r"\d+", end):
            return int(end) if int(end) < len(labels) else None
        hits = lower.get(end.lower(), [])
        return labels.index(hits[0]) if len(hits) == 1 else None

    def unknown(tok: str) -> UserError:
        shown = ", ".join(labels[:40]) + (f", ... ({len(labels)} in all)" if len(labels) > 40 else "")
        return UserError(f"{dataset} has no class '{tok}': its classes are {shown} (or their indices 0-{len(labels) - 1})"
                         + (class_hint(dataset, tok) if dataset in BUILTINS else ""))

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
    if m and m.group(1).lower() in BUILTINS:  # a built-in name wins over a same-named folder
        dataset, classes = m.group(1).lower(), m.group(2)
        source = builtin_dataset(dataset)
    elif m and os.path.isdir(m.group(1)):  # a local folder named without a slash
        dataset, classes = m.group(1), m.group(2)
        source = path_dataset(dataset)
    elif _looks_like_path(body):
        dataset = body
        head, sep, tail = body.rpartition(":")
        if sep and head and "/" not in tail and "\\" not in tail and not (not storage.is_remote(body) and os.path.exists(body)):
            dataset, classes = head, tail
        source = path_dataset(dataset)
    elif m:
        raise _unknown_dataset(m.group(1))
    else:
        raise _malformed(spec, f"cannot read '{body}'")
    if classes is not None:
        if not classes.strip():
            raise _malformed(spec, f"'{body}' names no classes after ':'")
        wanted = _resolve_classes(dataset, source, classes, spec)
        groups = [g for label in wanted for g, (_, gl) in enumerate(source.groups) if gl == label]
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
    rng = np.random.default_rng([seed, crc(key)])
    return np.sort(pool[rng.permutation(len(pool))[:count]])


def _group_key(source: Dataset, g: int) -> str:
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
        raise UserError(f"'{spec}' gives no {SPLIT_WORDS[split]} images: "
                        "name classes that have images, or add images to the folder/table")
    images = from_uint8(np.concatenate(chunks))
    return ImageSet(images, labels, sources, spec.strip(), seed, split)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed {seed!r} is not a whole number >= 0: pass --seed 0 or another non-negative integer")
    return int(seed)


def _no_held_out(part: _Part, split: str) -> UserError:
    if part.source.split_column:
        return UserError(f"{part.text} holds no {SPLIT_WORDS[split]} rows for these classes: re-export it with "
                         "ganlode data export SPEC --with-eval so the table keeps its evaluation reference")
    need = "2 or more images to hold one out" if split in ("eval", "test") else "4 or more images to hold out a validation image"
    return UserError(f"{part.text} has no {SPLIT_WORDS[split]} images (a class needs {need}): add images")


def _eval_draw(parts: list[_Part], n: int | None, seed: int, spec: str, split: str) -> list[list[np.ndarray]]:
    capacity = [sum(p.held_sizes(split)) for p in parts]
    for p, c in zip(parts, capacity):
        if c == 0:
            raise _no_held_out(p, split)
    words = SPLIT_WORDS[split]
    if len(parts) == 1:
        totals = [capacity[0] if n is None else n]
        if totals[0] > capacity[0]:
            raise UserError(f"the {words} reference of '{spec}' has {capacity[0]} images; ask for n <= {capacity[0]}")
    else:
        shares = [sum(_train_counts(p)) for p in parts]
        if any(s == 0 for s in shares):
            empty = next(p.text for p, s in zip(parts, shares) if s == 0)
            raise UserError(f"{empty} has no training images, so its share of the reference is undefined: add images")
        k = min(Fraction(c, s) for c, s in zip(capacity, shares))
        most = math.floor(k * sum(shares))
        if n is not None and n > most:
            raise UserError(f"the {words} reference of '{spec}' holds at most {most} images at its parts' shares "
                            f"({':'.join(map(str, shares))}); ask for n <= {most}")
        total = most if n is None else n
        quotas = [Fraction(total * s, sum(shares)) for s in shares]
        totals = [math.floor(q) for q in quotas]
        for i in sorted(range(len(parts)), key=lambda i: (-(quotas[i] - totals[i]), i))[: total - sum(totals)]:
            totals[i] += 1
        totals = [min(t, c) for t, c in zip(totals, capacity)]
    out = []
    for part, total in zip(parts, totals):
        counts = _fill(total, part.held_sizes(split))
        pools = part.source.pool(split)
        out.append([_pick(pools[g], c, seed, f"{split}/" + _group_key(part.source, g))
                    for g, c in zip(part.groups, counts)])
    return out


def _check_split(split: str, allowed: tuple[str, ...]) -> str:
    if split not in allowed:
        raise UserError(f"split '{split}' is unknown: use one of {', '.join(allowed)}")
    return split


def load_target(spec: str, seed: int = 0, split: str = "train") -> ImageSet:
    """Draw the target set of ``spec`` (``split="train"``), or its whole ``val``, ``test`` or
    ``eval`` (val and test) split."""
    seed = _check_seed(seed)
    _check_split(split, SPLITS)
    parts = _parse(spec)
    if split != "train":
        return _assemble(parts, _eval_draw(parts, None, seed, spec, split), spec, seed, split)
    per_part = []
    for part in parts:
        counts = _train_counts(part)
        per_part.append([_pick(part.source.train[g], c, seed, _group_key(part.source, g))
                         for g, c in zip(part.groups, counts)])
    return _assemble(parts, per_part, spec, seed, "train")


def eval_reference(spec: str, n: int | None = None, seed: int = 0, split: str = "test") -> ImageSet:
    """The ``split`` images (``val`` or ``test``) of the spec's classes at the spec's shares; ``n`` caps the total."""
    seed = _check_seed(seed)
    _check_split(split, ("val", "test", "eval"))
    if n is not None and (not isinstance(n, (int, np.integer)) or n < 1):
        raise UserError(f"n={n!r} is not a positive whole number: ask for n >= 1 (or None for every {split} image)")
    parts = _parse(spec)
    return _assemble(parts, _eval_draw(parts, None if n is None else int(n), seed, spec, split), spec, seed, split)
