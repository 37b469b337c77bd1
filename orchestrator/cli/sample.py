"""``ganlode sample``: draw a grid of images from any checkpoint, run or zoo model."""

from __future__ import annotations

import click

from . import options
from .base import Command

EPILOG = """\
examples:
  ganlode sample zoo:digits-0to4 --n 64 --out grid.png
  ganlode sample runs/seven --out seven.png --seed 3
"""


@click.command("sample", cls=Command, epilog=EPILOG, short_help="draw a sample grid from a checkpoint, run or zoo:NAME",
               help="Draw samples from CKPT: a checkpoint directory, a run directory (local or s3://) or zoo:NAME.")
@click.argument("model", metavar="CKPT")
@click.option("--n", type=int, default=64, help="number of samples (default 64)")
@options.out("PNG file to write (local or s3://)", required=True, metavar="PNG")
@options.seed("seed of the samples (default 0)")
def command(model: str, n: int, out: str, seed: int) -> int:
    import torch

    from .. import storage
    from ..artifacts.loaders import load_model
    from ..data.images import grid_png
    from ..errors import UserError

    if n < 1:
        raise UserError("--n must be at least 1")
    loaded = load_model(model)
    images = loaded.sampler(n, torch.Generator().manual_seed(seed))
    storage.write_bytes_atomic(out, grid_png(images))
    print(f"wrote {n} samples of {loaded.path} to {out}")
    return 0
