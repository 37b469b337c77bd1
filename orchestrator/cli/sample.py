"""``ganlode sample``: draw a grid of images from any checkpoint, run or zoo model."""

from __future__ import annotations

import argparse

import torch

from .. import storage
from ..artifacts.loaders import load_model
from ..data.images import grid_png
from ..errors import UserError

EPILOG = """\
examples:
  ganlode sample zoo:digits-0to4 --n 64 --out grid.png
  ganlode sample runs/seven --out seven.png --seed 3
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("sample", help="draw a sample grid from a checkpoint, run or zoo:NAME", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Draw samples from a checkpoint directory, a run directory or zoo:NAME.")
    p.add_argument("model", metavar="CKPT", help="checkpoint or run directory (local or s3://), or zoo:NAME")
    p.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    p.add_argument("--out", required=True, help="PNG file to write (local or s3://)")
    p.add_argument("--seed", type=int, default=0)
    return p


def run(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise UserError("--n must be at least 1")
    model = load_model(args.model)
    images = model.sampler(args.n, torch.Generator().manual_seed(args.seed))
    storage.write_bytes_atomic(args.out, grid_png(images))
    print(f"wrote {args.n} samples of {model.path} to {args.out}")
    return 0
