"""The ``glyphs`` built-in dataset: printed digits and capital letters, rendered on the fly.

Digits 0-9 and letters A-Z are rendered with Pillow from the text fonts that matplotlib ships
(``matplotlib/mpl-data/fonts/ttf``), white on black like MNIST: each glyph is scaled so that its
longer side spans 20 of 28 pixels and centred by its bounding box. Every (font, character) pair
then gets a fixed set of small deterministic variants (scale, shift, rotation drawn from a
constant seed), so each class holds ``len(TEXT_FONTS) * VARIANTS`` images (21 x 16 = 336).

Nothing is cached on disk; the whole set (12,096 images) renders in about 0.7 s on two busy
cores (the caller keeps it in memory once per process).
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from ..errors import UserError

CLASSES: tuple[str, ...] = tuple("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")

# Text fonts only: the DejaVu "Display" files, STIX NonUni/Size variants, cmex10, cmsy10 and
# cmmi10 hold symbols or math variants rather than the letters at their usual code points, and
# LastResortHE draws placeholder boxes. The BaKoMa cm*10 fonts map ASCII to their own glyphs.
TEXT_FONTS: tuple[str, ...] = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
    "cmr10.ttf",
    "cmb10.ttf",
    "cmss10.ttf",
    "cmti10.ttf",
    "cmtt10.ttf",
)

VARIANTS = 16          # per (font, character); variant 0 is the plain centred glyph
SIZE = 28              # output resolution
BOX = 20               # the glyph's longer side, in output pixels (as MNIST digits)
_SEED = 20261121       # fixed: the set is the same in every process


def font_dir() -> str:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the glyphs dataset renders matplotlib's fonts, but matplotlib is not installed: pip install matplotlib")
    return os.path.join(list(spec.submodule_search_locations)[0], "mpl-data", "fonts", "ttf")


def _render_base(font_path: str, big: int) -> np.ndarray:
    """All CLASSES of one font, each centred in a ``big`` x ``big`` float32 canvas in [0, 1]."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(font_path, size=96)
    box = BOX
    out = np.zeros((len(CLASSES), big, big), np.float32)
    for i, ch in enumerate(CLASSES):
        canvas = Image.new("L", (192, 192), 0)
        ImageDraw.Draw(canvas).text((48, 32), ch, fill=255, font=font)
        bbox = canvas.getbbox()
        if bbox is None:  # pragma: no cover - guarded by TEXT_FONTS
            continue
        glyph = canvas.crop(bbox)
        w, h = glyph.size
        s = box / max(w, h)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        glyph = glyph.resize((nw, nh), Image.Resampling.LANCZOS)
        tile = Image.new("L", (big, big), 0)
        tile.paste(glyph, ((big - nw) // 2, (big - nh) // 2))
        out[i] = np.asarray(tile, np.float32) / 255.0
    return out


def render() -> tuple[np.ndarray, np.ndarray]:
    """Render the whole set: (uint8 images N x 1 x 28 x 28, int64 class indices into CLASSES).

    Order: class-major, then font, then variant.
    """
    import torch
    import torch.nn.functional as F

    folder = font_dir()
    missing = [f for f in TEXT_FONTS if not os.path.exists(os.path.join(folder, f))]
    if missing:
        raise UserError(f"matplotlib's font folder {folder} lacks {', '.join(missing)}: reinstall matplotlib (pip install --force-reinstall matplotlib)")
    big = SIZE
    base = np.stack([_render_base(os.path.join(folder, f), big) for f in TEXT_FONTS], 1)  # C x F x big x big
    n_cls, n_font = base.shape[:2]

    rng = np.random.default_rng(_SEED)
    n = n_cls * n_font * VARIANTS
    scale = rng.uniform(0.85, 1.1, n)
    angle = np.deg2rad(rng.uniform(-12.0, 12.0, n))
    shift = rng.uniform(-0.08, 0.08, (n, 2))  # in units of half the canvas (1.0 = 14 px)
    first = np.arange(n) % VARIANTS == 0
    scale[first], angle[first], shift[first] = 1.0, 0.0, 0.0
    # affine_grid maps output coords to input coords: inverse of (scale, rotate, shift).
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    theta = np.zeros((n, 2, 3), np.float32)
    theta[:, 0, 0], theta[:, 0, 1] = cos, sin
    theta[:, 1, 0], theta[:, 1, 1] = -sin, cos
    theta[:, :, 2] = -np.einsum("nij,nj->ni", theta[:, :, :2], shift)

    # Each glyph is fitted at full size with Lanczos, then moved with one bilinear resample.
    src = torch.from_numpy(base).reshape(n_cls * n_font, 1, big, big)
    src = src.repeat_interleave(VARIANTS, 0)
    grid = F.affine_grid(torch.from_numpy(theta), [n, 1, big, big], align_corners=False)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    images = (out.clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
    labels = np.repeat(np.arange(n_cls, dtype=np.int64), n_font * VARIANTS)
    return images, labels


def per_class() -> int:
    return len(TEXT_FONTS) * VARIANTS


if __name__ == "__main__":  # pragma: no cover - timing helper
    import time

    t = time.perf_counter()
    imgs, labs = render()
    print(imgs.shape, labs.shape, f"{time.perf_counter() - t:.2f} s")
