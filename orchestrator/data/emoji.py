"""The ``emoji`` built-in datasets: Noto Color Emoji in colour, by Unicode group or subgroup.

Sources (Debian packages, read in place; nothing is downloaded): ``fonts-noto-color-emoji``
gives ``NotoColorEmoji.ttf`` (a CBDT bitmap font, OFL) and ``unicode-data`` gives
``emoji-test.txt``, whose ``# group:`` and ``# subgroup:`` lines name the classes. Only
``fully-qualified`` emoji are drawn (3,655 in Unicode 15.0; Component holds none).

Four datasets (see ``datasets.BUILTINS``), the same images under two labellings, at 32 or 64 px:

- ``emoji`` / ``emoji64``: the 9 groups as slugs (``smileys-emotion``, ``people-body``,
  ``animals-nature``, ``food-drink``, ``travel-places``, ``activities``, ``objects``,
  ``symbols``, ``flags``);
- ``emoji-sub`` / ``emoji-sub64``: the 99 subgroups as slugs (``face-smiling``,
  ``animal-mammal``, ``food-fruit``, ``sky-weather``, ...).

A subgroup is a class of its own dataset rather than a class of ``emoji``: a dataset gives each
image one class, so the spec grammar (``DATASET:CLASSES``) and its draws stay as they are.

Augmentation. One image per emoji is too few for a GAN (Activities has 85 emoji), so every emoji
of a group with n emoji is drawn in ceil(``PER_GROUP`` / n) variants: variant 0 is the plain
centred emoji, the others zoom out (scale 0.8-1.0) and shift (up to 5% of the frame) by amounts
drawn from a constant seed and the emoji's code points. No flips or rotations: arrows, clocks,
keycaps and flags would read differently. Images per group (emoji x variants):

====================  =====  ========  ======
group                 emoji  variants  images
====================  =====  ========  ======
smileys-emotion         166         7   1,162
people-body           2,148         1   2,148
animals-nature          152         7   1,064
food-drink              133         8   1,064
travel-places           218         5   1,090
activities               85        13   1,105
objects                 261         4   1,044
symbols                 223         5   1,115
flags                   269         4   1,076
====================  =====  ========  ======

10,868 images in all; a subgroup holds its emoji times its group's variants.

Split. Every subgroup's *emoji* are split once and for all by the held-out rule of
:mod:`.spec` (keys ``heldout/emoji/<subgroup>`` and ``valtest/emoji/<subgroup>``), and all
variants of an emoji go to its pool: no held-out emoji has a shifted twin in a training pool.
A group's pools are the union of its subgroups', so both labellings and both resolutions share
one split. A subgroup of one emoji (``animal-amphibian``) has no held-out images.

Rendering. Each emoji is drawn once with ``ImageFont.truetype(font, 109)`` (the size of the
font's only bitmap strike) on a transparent 136x128 canvas with ``embedded_color=True``,
composited on white, framed by a square window centred on its bounding box (144 px at the
strike's scale: 8 px of margin around a full 128 px emoji) and resized into the output with
Lanczos filtering. Output: uint8 N x 3 x R x R.

Cache. The rendered arrays are kept under ``$XDG_CACHE_HOME/ganlode/emoji`` (default
``~/.cache/ganlode/emoji``), one ``.npz`` per resolution, keyed by the SHA-256 of the font, the
emoji drawn, the recipe's version and Pillow's version, and written atomically. Rendering is
deterministic, so a missing or stale cache file is simply rendered again (8 s for all 10,868
images at 32 px, 10 s at 64 px, on two busy cores; a cached load takes 0.2-0.5 s).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import os
import re
import zlib

import numpy as np

from .. import storage
from ..errors import UserError

FONT_PATH = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
LIST_PATH = "/usr/share/unicode/emoji/emoji-test.txt"
APT_INSTALL = "apt-get install -y fonts-noto-color-emoji unicode-data"
RESOLUTIONS = (32, 64)

FONT_SIZE = 109          # the CBDT strike's size: the only one the font accepts
CANVAS = (136, 128)      # the strike's glyph box; every emoji of the font fits in it at (0, 0)
FRAME = 144              # the plain variant's window side, in strike pixels
PER_GROUP = 1024         # each group gets at least this many images (variants per emoji)
SCALES = (0.8, 1.0)      # variant zoom (window side FRAME / scale): only outwards, nothing is cut
SHIFT = 0.05             # variant shift, a fraction of the window side, per axis
RECIPE = 1               # bump when the rendering changes: old cache files are then ignored
_SEED = 20261201         # fixed: the variants are the same in every process
_PAD = math.ceil(FRAME / SCALES[0] * (0.5 + SHIFT))  # white margin that every window stays inside


@dataclasses.dataclass(frozen=True)
class Emoji:
    """One fully-qualified emoji of the list: its string and its group and subgroup slugs."""

    sequence: str
    group: str
    subgroup: str


@dataclasses.dataclass(frozen=True)
class Rendered:
    """Every emoji's images: ``images`` (uint8 N x 3 x R x R) and ``emoji_of`` (index into ``entries``)."""

    entries: tuple[Emoji, ...]
    images: np.ndarray
    emoji_of: np.ndarray


def slug(name: str) -> str:
    """A spec-friendly class name: lower case, runs of other characters as one '-' (``Food & Drink`` -> ``food-drink``)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _missing(path: str) -> UserError:
    return UserError(f"the emoji dataset needs {path}, which is missing: {APT_INSTALL}")


def read_list(path: str | None = None) -> list[Emoji]:
    """The fully-qualified emoji of ``emoji-test.txt`` (default :data:`LIST_PATH`), in file order."""
    path = path or LIST_PATH
    if not os.path.isfile(path):
        raise _missing(path)
    entries, group, subgroup = [], "", ""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("# group:"):
                group = slug(line.split(":", 1)[1])
            elif line.startswith("# subgroup:"):
                subgroup = slug(line.split(":", 1)[1])
            elif line.strip() and not line.startswith("#"):
                points, _, rest = line.partition(";")
                if rest.split("#", 1)[0].strip() == "fully-qualified":
                    entries.append(Emoji("".join(chr(int(p, 16)) for p in points.split()), group, subgroup))
    if not entries:
        raise UserError(f"{path} lists no fully-qualified emoji: reinstall it (apt-get install --reinstall -y unicode-data)")
    return entries


def class_names(level: str, entries: list[Emoji] | None = None) -> list[str]:
    """The group or subgroup slugs (``level``), in the list's order."""
    entries = read_list() if entries is None else entries
    return list(dict.fromkeys(getattr(e, level) for e in entries))


def variant_counts(entries: list[Emoji] | tuple[Emoji, ...]) -> np.ndarray:
    """Variants per emoji: ceil(PER_GROUP / n) for an emoji of a group with n emoji."""
    sizes: dict[str, int] = {}
    for e in entries:
        sizes[e.group] = sizes.get(e.group, 0) + 1
    return np.array([-(-PER_GROUP // sizes[e.group]) for e in entries], np.int64)


def variant_windows(entry: Emoji, count: int) -> np.ndarray:
    """(scale, dx, dy) per variant of ``entry``: row 0 is the plain frame (1, 0, 0)."""
    rng = np.random.default_rng([_SEED, zlib.crc32(entry.sequence.encode("utf-8"))])
    out = np.empty((count, 3))
    out[:, 0] = rng.uniform(*SCALES, count)
    out[:, 1:] = rng.uniform(-SHIFT, SHIFT, (count, 2))
    out[0] = (1.0, 0.0, 0.0)
    return out


def render(entries: list[Emoji] | tuple[Emoji, ...], resolution: int, font_path: str | None = None) -> Rendered:
    """Draw every variant of ``entries`` at ``resolution`` px (no cache): emoji-major, then variant."""
    from PIL import Image, ImageDraw, ImageFont, features

    font_path = font_path or FONT_PATH
    if not os.path.isfile(font_path):
        raise _missing(font_path)
    if not features.check_feature("raqm"):  # basic layout draws a flag or a ZWJ sequence as its first code point
        raise UserError("the emoji dataset needs Pillow with Raqm text layout for emoji sequences, which this Pillow "
                        "lacks: pip install --force-reinstall pillow")
    font = ImageFont.truetype(font_path, FONT_SIZE, layout_engine=ImageFont.Layout.RAQM)
    counts = variant_counts(entries)
    images = np.empty((int(counts.sum()), resolution, resolution, 3), np.uint8)
    lanczos = Image.Resampling.LANCZOS
    k = 0
    for entry, count in zip(entries, counts):
        glyph = Image.new("RGBA", CANVAS, (0, 0, 0, 0))
        ImageDraw.Draw(glyph).text((0, 0), entry.sequence, font=font, embedded_color=True)
        bbox = glyph.getchannel("A").getbbox()
        if bbox is None:
            raise UserError(f"{font_path} draws nothing for emoji {entry.sequence!r}: reinstall it (apt-get install --reinstall -y fonts-noto-color-emoji)")
        tile = Image.new("RGB", (CANVAS[0] + 2 * _PAD, CANVAS[1] + 2 * _PAD), (255, 255, 255))
        tile.paste(glyph, (_PAD, _PAD), glyph)
        cx, cy = _PAD + (bbox[0] + bbox[2]) / 2, _PAD + (bbox[1] + bbox[3]) / 2
        for scale, dx, dy in variant_windows(entry, int(count)):
            side = FRAME / scale
            x, y = cx + dx * side, cy + dy * side
            box = (x - side / 2, y - side / 2, x + side / 2, y + side / 2)
            images[k] = np.asarray(tile.resize((resolution, resolution), lanczos, box=box))
            k += 1
    emoji_of = np.repeat(np.arange(len(entries), dtype=np.int64), counts)
    return Rendered(tuple(entries), np.ascontiguousarray(images.transpose(0, 3, 1, 2)), emoji_of)


# ---- the on-disk cache -----------------------------------------------------------------------


def cache_dir() -> str:
    """Where rendered arrays are kept: ``$XDG_CACHE_HOME/ganlode/emoji`` (default ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ganlode", "emoji")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_path(resolution: int, entries: list[Emoji] | tuple[Emoji, ...]) -> str:
    """The cache file of ``entries`` at ``resolution``: named by the font's bytes, the emoji drawn,
    the recipe and Pillow's version."""
    import PIL

    if not os.path.isfile(FONT_PATH):
        raise _missing(FONT_PATH)
    drawn = "\n".join(f"{e.group}/{e.subgroup}/{e.sequence}" for e in entries)
    parts = [_sha256(FONT_PATH), hashlib.sha256(drawn.encode("utf-8")).hexdigest(), str(RECIPE), str(PER_GROUP), PIL.__version__]
    key = hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]
    return os.path.join(cache_dir(), f"emoji-{resolution}px-{key}.npz")


def _read_cache(path: str, resolution: int, expected: np.ndarray) -> np.ndarray | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            images, emoji_of = z["images"], z["emoji_of"]
    except (OSError, KeyError, ValueError, zlib.error):
        return None  # absent, partial or foreign: render again
    if images.dtype != np.uint8 or images.shape != (len(expected), 3, resolution, resolution) \
            or not np.array_equal(emoji_of, expected):
        return None
    return images


def load(resolution: int = 32) -> Rendered:
    """Every fully-qualified emoji at ``resolution`` px, from the cache when it holds them."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"emoji renders at {' or '.join(map(str, RESOLUTIONS))} px, not {resolution}")
    entries = read_list()
    path = cache_path(resolution, entries)
    expected = np.repeat(np.arange(len(entries), dtype=np.int64), variant_counts(entries))
    images = _read_cache(path, resolution, expected)
    if images is not None:
        return Rendered(tuple(entries), images, expected)
    rendered = render(entries, resolution)
    buf = io.BytesIO()
    np.savez_compressed(buf, images=rendered.images, emoji_of=rendered.emoji_of)
    try:
        storage.write_bytes_atomic(path, buf.getvalue())
    except OSError:
        pass  # a read-only home: render again next time rather than fail
    return rendered
