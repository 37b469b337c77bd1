"""``ganlode sample``: draw a grid, or one PNG per seed, from any checkpoint, run or zoo model."""

from __future__ import annotations

import click

from . import options
from .base import Command

EPILOG = """\
--seeds: one image per seed, each drawn alone from torch.Generator().manual_seed(SEED), written
as DIR/seed0000.png, seed0001.png, ...: the same seed gives the same image, whatever else is asked.

--trunc PSI, the truncation trick: every latent is pulled toward the centre of the model's latent
distribution (PSI < 1: more typical, less varied images; 0: the centre's one image; 1: the model
as it is). An architecture with a mapping network (stylegan2) draws w = mapping(z) and uses
w_mean + PSI * (w - w_mean), w_mean its mean w over 4096 z of a fixed seed; a minegan or mined
model over it does the same around the mean w of its own samples. Other models draw their latents
z ~ N(0, I) as z * PSI (toward the mean latent 0); those with a fitted code Gaussian (adabn, bsa,
glo) scale around its mean, mined models their miners' input.

examples:
  ganlode sample zoo:digits-0to4 --n 64 --out grid.png
  ganlode sample runs/seven --out seven.png --seed 3
  ganlode sample zoo:digits-0to4 --seeds 0-99 --out samples/     seed0000.png ... seed0099.png
  ganlode sample runs/seven --seeds 3,7,42 --trunc 0.7 --out picks/
"""


def _check(ctx: click.Context) -> None:
    if ctx.params["seeds"] is not None:
        clash = options.given(ctx, ["n", "seed"])
        if clash:
            raise click.UsageError(f"--seeds draws one image per seed; drop {', '.join(clash)} (grid options)", ctx)
        out = ctx.params["out"]
        blocker = options.blocked_by_file(f"{out.rstrip('/')}/seed0000.png")
        if blocker is not None:
            raise click.UsageError(f"--seeds writes a folder of PNGs, but --out {out} is under or is the file {blocker}: "
                                   "pass a folder", ctx)


@click.command("sample", cls=Command, check=_check, epilog=EPILOG,
               short_help="draw a sample grid, or one PNG per seed, from a checkpoint, run or zoo:NAME",
               help="Draw samples from CKPT: a checkpoint directory, a run directory (local or s3://) or zoo:NAME; "
                    "a grid in one PNG, or with --seeds one PNG per seed in a folder.")
@click.argument("model", metavar="CKPT")
@click.option("--n", type=int, default=64, help="number of samples in the grid (default 64)")
@options.out("the grid's PNG file, or with --seeds the folder of PNGs (local or s3://)", required=True, metavar="PNG|DIR")
@options.seed("seed of the grid's samples (default 0)")
@click.option("--seeds", type=options.Seeds(), default=None, metavar="SEEDS",
              help="one PNG per seed: a range 0-99 or a list 3,7,42 (or both: 0-9,20)")
@click.option("--trunc", "psi", type=click.FloatRange(min=0.0), default=1.0, metavar="PSI",
              help="truncation: pull latents toward their mean by PSI, in w for stylegan2, else z * PSI "
                   "(default 1: none; see below)")
@click.option("--class", "class_name", metavar="NAME",
              help="the class to draw, for a class-conditional model (every shipped model is unconditional)")
def command(model: str, n: int, out: str, seed: int, seeds: tuple[int, ...] | None, psi: float,
            class_name: str | None) -> int:
    from .. import storage
    from ..artifacts.loaders import load_model
    from ..artifacts.truncation import num_classes, sample_seed, truncated_sampler
    from ..data.images import grid_png, png_bytes, to_uint8
    from ..errors import UserError

    if seeds is None and n < 1:
        raise UserError("--n must be at least 1")
    loaded = load_model(model)
    if class_name is not None:
        classes = num_classes(loaded)
        if classes == 0:
            raise UserError(f"{loaded.path} is unconditional (its generator has num_classes 0): drop --class {class_name}")
        raise UserError(f"{loaded.path} is conditioned on {classes} classes, but sampling by class is not supported "
                        "for its architecture yet: drop --class")
    try:
        sampler = truncated_sampler(loaded, psi)
    except ValueError as e:
        raise UserError(f"{e}: drop --trunc") from None
    trunc = f", truncation {psi:g}" if psi != 1.0 else ""
    if seeds is None:
        import torch

        images = sampler(n, torch.Generator().manual_seed(seed))
        storage.write_bytes_atomic(out, grid_png(images))
        print(f"wrote {n} samples of {loaded.path} to {out}{trunc}")
        return 0
    names = []
    for s in seeds:
        name = f"seed{s:04d}.png"
        storage.write_bytes_atomic(storage.join(out, name), png_bytes(to_uint8(sample_seed(sampler, s))[0]))
        names.append(name)
    shown = ", ".join(names) if len(names) <= 3 else f"{names[0]} ... {names[-1]}"
    print(f"wrote {len(names)} image{'s' if len(names) > 1 else ''} of {loaded.path} to {out} ({shown}){trunc}")
    return 0
