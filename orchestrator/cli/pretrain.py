"""``ganlode pretrain``: train a source GAN from scratch on a target spec."""

from __future__ import annotations

from typing import Any

import click

from ...methods import catalog
from ..errors import UserError
from . import options, runconfig
from .base import Command
from .output import unlock_kwargs

EPILOG = """\
examples:
  ganlode pretrain --data mnist5k:0-4 --out runs/digits-0to4 --steps 3000
  ganlode pretrain --data animals:5-9 --out s3://bucket/zoo/animals-5to9 --workers 2
  ganlode pretrain --config runs/digits-0to4/run.yaml --seed 1 --out runs/digits-0to4-s1
  ganlode pretrain --data emoji:flags --arch stylegan2 --latent-dim 64 --g-width 32 --n-mlp 4 --lr 2e-3 --out runs/flags
  ganlode pretrain --data emoji:flags --augment translation,color --out runs/flags-aug
  ganlode pretrain --data emoji:flags --steps 20000 --select-every 2000 --out runs/flags-long

--arch stylegan2: --latent-dim is the style size (z and w), --g-width the channels at 4-32 px of G and
D alike (rosinality's config F: 512), --n-mlp the mapping layers, --channel-multiplier the widths above
32 px. Its resolution is the data's and must be a power of two from 32 px.

--augment: DiffAugment (Zhao et al. 2020): real and generated images alike pass through the same
kind of random, differentiable transform before the critic, so a critic trained on a few hundred
images does not memorise them; the generator never learns the transform.

--select-every N: every N steps and after the last, the generator as it would be saved is scored
(FID) on the data's validation split; the best step's weights are saved, its test-split FID is the
reported one, and DIR/config.json lists every validation score under "selection".

DIR/run.yaml holds every option the model was trained with; --config DIR/run.yaml trains it
again (flags given beside it win).
"""


def train_config(*, loss: str, lr: float, n_critic: int | None, ema: float, **fields: Any):
    """The TrainConfig of these flags: the loss's own critic steps and betas unless given
    (``catalog.LOSS_DEFAULTS``); ``fields`` are TrainConfig fields by name (batch, r1_gamma, seed)."""
    from ...methods.train import TrainConfig

    by_loss = catalog.LOSS_DEFAULTS[loss]
    try:
        return TrainConfig(loss=loss, lr_g=lr, lr_d=lr, beta1=by_loss["beta1"], beta2=by_loss["beta2"],
                           n_critic=by_loss["n_critic"] if n_critic is None else n_critic, ema_decay=ema, **fields)
    except ValueError as e:
        raise UserError(f"invalid training settings: {e}") from None


@click.command("pretrain", cls=Command, epilog=EPILOG, short_help="train a GAN from scratch (a source model)",
               help="Train a GAN from scratch on a target spec and write a checkpoint directory.")
@click.option("--data", required=True, metavar="SPEC", help="target spec, e.g. mnist5k:0-4 (see `ganlode data --help`)")
@options.out("checkpoint directory to write (local or s3://)", required=True, metavar="DIR")
@click.option("--steps", type=int, default=2000, help="generator steps (default 2000)")
@click.option("--batch", type=int, default=catalog.DEFAULT_BATCH, help=f"images per step (default {catalog.DEFAULT_BATCH})")
@click.option("--lr", type=float, default=2e-4, help="learning rate of G and D (default 2e-4)")
@options.loss("adversarial loss (default ns-r1)", default="ns-r1")
@click.option("--n-critic", type=int, default=None, help=catalog.OPTION_HELP["n_critic"])
@click.option("--r1-gamma", type=float, default=0.2, help="R1 penalty weight for ns-r1 (default 0.2)")
@click.option("--augment", default="", metavar="POLICY",
              help="DiffAugment of what the critic sees, a comma-separated subset of color, translation, cutout "
                   "(default: none; for a few hundred images: translation,color)")
@click.option("--select-every", type=click.IntRange(min=0), default=0, metavar="N",
              help="every N steps, and after the last, score the saved generator on the data's validation split "
                   "and keep the best step (default 0: keep the last)")
@click.option("--ema", type=float, default=0.999, help="EMA decay of the saved generator's weights (default 0.999; 0: off)")
@click.option("--arch", type=click.Choice(catalog.PRETRAIN_ARCHS), default="dcgan", show_default=True, help="architecture to train")
@click.option("--latent-dim", type=int, default=32, help="latent size (default 32; stylegan2: the style size)")
@click.option("--g-width", type=int, default=32, help="generator width (default 32; stylegan2: G and D at 4-32 px)")
@click.option("--d-width", type=int, default=None, help="critic width (dcgan; default: --g-width)")
@click.option("--n-mlp", type=int, default=8, help="stylegan2: mapping layers (default 8)")
@click.option("--channel-multiplier", type=int, default=1, help="stylegan2: width factor above 32 px (default 1)")
@options.seed()
@click.option("--workers", type=int, default=0, help="data-parallel Ray Train workers (default 0: train in this process)")
@click.option("--threads", type=int, default=None, help="torch threads per process (default: torch's choice)")
@click.option("--fp16", is_flag=True, help="store weights in float16 (halves the file; for shipping)")
@options.no_progress()
@options.report_to()
@runconfig.config_option
@options.force_unlock()
@click.pass_context
def command(ctx: click.Context, data: str, out: str, steps: int, arch: str, latent_dim: int, g_width: int,
            d_width: int | None, n_mlp: int, channel_multiplier: int, workers: int, threads: int | None, fp16: bool,
            no_progress: bool, force_unlock: bool, select_every: int, report_to: str, **train: Any) -> int:
    from .. import tracking
    from ..pipelines.pretrain import run_pretrain

    tcfg = train_config(**train)
    # the checkpoint directory is published in one step at the end: TensorBoard's events go in with it
    with tracking.open_tracker(report_to, out, "pretrain", live=False) as tracker:
        tracker.log_params({"data": data, "out": out, "steps": steps, "arch": arch, "latent_dim": latent_dim,
                            "g_width": g_width, "d_width": d_width, "workers": workers, "select_every": select_every,
                            "train": tcfg.to_dict()})
        result = run_pretrain(data, out, tcfg, steps, arch=arch, latent_dim=latent_dim, g_width=g_width,
                              d_width=d_width, n_mlp=n_mlp, channel_multiplier=channel_multiplier, workers=workers,
                              threads=threads, fp16=fp16, show_progress=not no_progress, select_every=select_every,
                              tracker=tracker, **unlock_kwargs(run_pretrain, force_unlock))
    runconfig.write_run_config(ctx, out)
    kept = f", step {result.kept_step} of {steps} kept on validation" if select_every else ""
    print(f"wrote {out} ({result.wall_s:.0f} s; FID vs held-out {data}: {result.metrics.get('fid', float('nan')):.2f}{kept})")
    return 0
