"""``ganlode mine``: multi-source MineGAN, one Ray actor per source generator."""

from __future__ import annotations

import argparse

from ..errors import UserError
from ..evaluation.features import FEATURES

EPILOG = """\
how it works:
  every source G_i gets a miner M_i (u -> z) on its own Ray actor (its own GPU when the cluster has
  GPUs); a coordinator holds one critic, started from the first source's critic. Each step every
  source draws x_i = G_i(M_i(u)) from the same u, the critic's best-scored source wins each row,
  and the selector's share p_i of won rows (over the last --window batches) says how much each
  source serves the target. Mining trains the miners only; fine-tuning trains G_i and M_i.
  Sampling the result picks source i with probability p_i, then x = G_i(M_i(u)).

examples:
  ganlode mine --source zoo:digits-0to4 --source zoo:animals-5to9 \\
      --target mnist5k:3@30+animals:zebra@70 --mining-steps 1000 --finetune-steps 500 --out runs/mix
  ganlode mine ... --out runs/mix --resume          # continue a killed run from its last checkpoint
  ganlode mine ... --in-process --threads 2         # the in-process reference (no Ray)
  ganlode sample runs/mix --out mix.png             # draw from the mined model
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "mine", help="multi-source MineGAN: mine several source GANs for one target (Ray)", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Mine two or more source GANs for a target set with one miner per source and a shared "
                    "critic, learn each source's share, fine-tune, and write one mined model.",
    )
    p.add_argument("--source", action="append", required=True, metavar="CKPT",
                   help="a source checkpoint, run directory or zoo:NAME; repeat it (two or more); the shared "
                        "critic starts from the first one's critic")
    p.add_argument("--target", required=True, metavar="SPEC", help="target spec, e.g. mnist5k:3@30+animals:zebra@70")
    p.add_argument("--out", required=True, metavar="RUN", help="run directory (local or s3://)")
    p.add_argument("--mining-steps", type=int, default=1000, metavar="M", help="steps training the miners only (default 1000)")
    p.add_argument("--finetune-steps", type=int, default=500, metavar="F",
                   help="steps then training G_i and M_i jointly (default 500)")
    p.add_argument("--batch", type=int, default=64, help="rows per step, shared by every source (default 64)")
    p.add_argument("--seed", type=int, default=0, help="fixes the target draw, the miners and every random draw")
    p.add_argument("--loss", choices=["wgan-gp", "ns-r1"], default=None, help="adversarial loss (default: the first source's)")
    p.add_argument("--lr-miner", type=float, default=1e-3, help="miner learning rate (default 1e-3)")
    p.add_argument("--lr-g", type=float, default=1e-4, help="generator learning rate while fine-tuning (default 1e-4)")
    p.add_argument("--lr-d", type=float, default=1e-4, help="critic learning rate (default 1e-4)")
    p.add_argument("--window", type=int, default=1000, help="batches the selector's shares average over (default 1000)")
    p.add_argument("--gpus-per-source", type=float, default=None, metavar="G",
                   help="GPUs per generator actor (default: 1 when the cluster has a GPU per source; 0: CPUs)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per actor (in-process: for this process)")
    p.add_argument("--checkpoint-every", type=int, default=100, metavar="K",
                   help="write RUN/checkpoints/step-N every K steps for --resume (default 100; 0: never)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--in-process", action="store_true", help="run the in-process reference instead of Ray actors")
    p.add_argument("--eval-every", type=int, default=0, metavar="K", help="also score every K steps (default: start and end)")
    p.add_argument("--features", choices=FEATURES, default="classifier", help="evaluation features")
    p.add_argument("--eval-n", type=int, default=None, metavar="N", help="cap on the held-out reference size")
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args: argparse.Namespace) -> int:
    from ..artifacts.checkpoint import load_checkpoint
    from ..pipelines.mine import mine_config, run_mine
    from ..pipelines.sources import trained_loss

    if len(args.source) < 2:
        raise UserError(f"multi-source mining needs two or more --source (got {len(args.source)}); "
                        "for one source use `ganlode transfer --method minegan`")
    for name, value in (("--mining-steps", args.mining_steps), ("--finetune-steps", args.finetune_steps)):
        if value < 0:
            raise UserError(f"{name} must be 0 or more, got {value}")
    if args.mining_steps + args.finetune_steps < 1:
        raise UserError("--mining-steps plus --finetune-steps must be at least 1")
    if args.batch < 1 or args.window < 1:
        raise UserError("--batch and --window must be at least 1")
    if args.gpus_per_source is not None and args.gpus_per_source < 0:
        raise UserError("--gpus-per-source must be 0 or more")
    loss = args.loss or trained_loss(load_checkpoint(args.source[0], with_critic=False))
    cfg = mine_config(loss, mining_steps=args.mining_steps, finetune_steps=args.finetune_steps, batch=args.batch,
                      lr_miner=args.lr_miner, lr_g=args.lr_g, lr_d=args.lr_d, window=args.window, seed=args.seed)
    result = run_mine(
        args.source, args.target, args.out, cfg, gpus_per_source=args.gpus_per_source,
        checkpoint_every=args.checkpoint_every, resume=args.resume, in_process=args.in_process, threads=args.threads,
        eval_every=args.eval_every, feature_kind=args.features, eval_n=args.eval_n, show_progress=not args.no_progress,
    )
    m = result.metrics
    shares = ", ".join(f"{s} {p:.3f}" for s, p in zip(args.source, result.shares))
    line = f"wrote {result.run} ({result.wall_s:.0f} s): shares {shares}"
    if "fid" in m:
        line += f"; FID {m['fid']:.3f}  KMMD {m['kmmd']:.4f}  MV {m['mv']:.3f}"
    if result.true_shares is not None:
        line += f"; max |p - true share| {max(abs(a - b) for a, b in zip(result.shares, result.true_shares)):.3f}"
    print(line)
    return 0
