"""``ganlode demo``: the main job; no arguments needed."""

from __future__ import annotations

import argparse
import dataclasses

from ..pipelines.demo import BUDGETS, run_demo, summary_table

EPILOG = """\
examples:
  ganlode demo                     the full demo (about 5 minutes on 2 CPU cores)
  ganlode demo --quick             smaller budgets, about 2.5 minutes
  ganlode demo --out s3://bucket/demo
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", help="the main job: multi-source mining + baselines, with a report", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Mine the four zoo sources for a digit-3/zebra target with known shares on a local "
                                   "Ray cluster, run single-source baselines on a held-out digit, evaluate all of it "
                                   "and write report.html.")
    p.add_argument("--out", default="ganlode-demo", help="run directory (local or s3://; default ./ganlode-demo)")
    p.add_argument("--quick", action="store_true", help="smaller budgets: about 2.5 minutes on 2 CPU cores")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mining-steps", type=int, default=None, help="override the budget's mining steps")
    p.add_argument("--finetune-steps", type=int, default=None)
    p.add_argument("--transfer-steps", type=int, default=None, help="override the baselines' steps")
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args: argparse.Namespace) -> int:
    budget = BUDGETS["quick" if args.quick else "default"]
    overrides = {k: getattr(args, k) for k in ("mining_steps", "finetune_steps", "transfer_steps", "eval_every")
                 if getattr(args, k) is not None}
    budget = dataclasses.replace(budget, **overrides)
    result = run_demo(args.out, budget, seed=args.seed, show_progress=not args.no_progress)
    print(summary_table(result["rows"]))
    if result["true_shares"]:
        print("true shares: " + " ".join(f"{k}={v:.2f}" for k, v in result["true_shares"].items()))
    print(f"demo finished in {result['wall_s']:.0f} s; report: {result['report']}")
    return 0
