"""``ganlode pretrain``: train a source GAN from scratch on a target spec."""

from __future__ import annotations

import argparse

from ...methods.train import TrainConfig

EPILOG = """\
examples:
  ganlode pretrain --data mnist5k:0-4 --out runs/digits-0to4 --steps 3000
  ganlode pretrain --data animals:5-9 --out s3://bucket/zoo/animals-5to9 --workers 2
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "pretrain", help="train a GAN from scratch (a source model)", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a GAN from scratch on a target spec and write a checkpoint directory.",
    )
    p.add_argument("--data", required=True, help="target spec, e.g. mnist5k:0-4 (see `ganlode data --help`)")
    p.add_argument("--out", required=True, help="checkpoint directory to write (local or s3://)")
    p.add_argument("--steps", type=int, default=2000, help="generator steps (default 2000)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-4, help="learning rate of G and D")
    p.add_argument("--loss", choices=["wgan-gp", "ns-r1"], default="ns-r1")
    p.add_argument("--n-critic", type=int, default=None, help="critic steps per G step (default: 1 for ns-r1, 5 for wgan-gp)")
    p.add_argument("--r1-gamma", type=float, default=0.2)
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay of the saved generator's weights (0: off)")
    p.add_argument("--latent-dim", type=int, default=32)
    p.add_argument("--g-width", type=int, default=32)
    p.add_argument("--d-width", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="data-parallel Ray Train workers (0: train in this process)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per process (default: torch's choice)")
    p.add_argument("--fp16", action="store_true", help="store weights in float16 (halves the file; for shipping)")
    p.add_argument("--no-progress", action="store_true")
    return p


def train_config(args: argparse.Namespace) -> TrainConfig:
    n_critic = args.n_critic or (5 if args.loss == "wgan-gp" else 1)
    return TrainConfig(
        loss=args.loss, batch=args.batch, lr_g=args.lr, lr_d=args.lr, beta1=0.5,
        beta2=0.9 if args.loss == "wgan-gp" else 0.99, n_critic=n_critic, r1_gamma=args.r1_gamma, ema_decay=args.ema, seed=args.seed,
    )


def run(args: argparse.Namespace) -> int:
    from ..pipelines.pretrain import run_pretrain

    result = run_pretrain(args.data, args.out, train_config(args), args.steps, latent_dim=args.latent_dim,
                          g_width=args.g_width, d_width=args.d_width, workers=args.workers, threads=args.threads,
                          fp16=args.fp16, show_progress=not args.no_progress)
    print(f"wrote {args.out} ({result.wall_s:.0f} s; FID vs held-out {args.data}: "
          f"{result.metrics.get('fid', float('nan')):.2f})")
    return 0
