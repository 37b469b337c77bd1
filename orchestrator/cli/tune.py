"""``ganlode tune``: search transfer-method settings with Ray Tune (Optuna + ASHA)."""

from __future__ import annotations

import argparse
import sys

from ..errors import UserError

EPILOG = """\
default search spaces (override with --space FILE, YAML or JSON; a file replaces the whole space):
  freezed        freeze_depth randint 1..critic blocks, lr loguniform 1e-5..1e-3
  l2sp           l2sp_weight loguniform 1e-3..1e2, lr
  distill        distill_weight loguniform 1e-2..1e2, lr
  freezed+l2sp   freeze_depth randint 0..blocks + l2sp_weight (any + of freezed, l2sp, distill
                 trains finetune with those options together); finetune searches all three
  minegan        mining_steps randint 0..--steps, lr
  mine           (two or more --source) mining_steps, lr_miner loguniform 1e-4..1e-2, lr
  scratch, adabn, bsa, glo: lr
  file format:   freeze_depth: {randint: [0, 3]}     lr: {loguniform: [1.0e-5, 1.0e-3]}
                 l2sp_on: {choice: [g, d, both]}      batch: 32   (a plain value is fixed)

every trial: same source, target draw and seed; scored (FID, KMMD, MV) every --eval-every steps
on the target's held-out split (never trained on); ASHA stops trials that trail; Optuna (seeded
by --seed) proposes the next settings. Results in --out: trials.parquet, best.json, best/ (a run:
`ganlode sample OUT/best`, `ganlode eval OUT/best`), metric_vs_params.png.

examples:
  ganlode tune --source zoo:digits-0to4 --target mnist5k:7@100 --method freezed+l2sp \\
      --trials 16 --concurrent 2 --steps 400 --eval-every 50 --out runs/tune7
  ganlode tune --resume runs/tune7                 continue an interrupted search
  ganlode tune --source zoo:digits-0to4 --target mnist5k:7@100 --method l2sp --space space.yaml \\
      --trials 12 --steps 300 --metric fid --out s3://bucket/tune/l2sp
"""

SEARCH_FLAGS = ("source", "target", "method", "space", "trials", "steps")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "tune", help="search transfer-method settings (Ray Tune, Optuna, ASHA)", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Search the settings of a transfer method with Ray Tune: Optuna proposes, ASHA stops "
                    "early, every trial checkpoints, and the best trial is exported as a run.",
    )
    p.add_argument("--source", action="append", metavar="CKPT",
                   help="source checkpoint, run directory or zoo:NAME (repeat for --method mine)")
    p.add_argument("--target", metavar="SPEC", help="target spec, e.g. mnist5k:7@100")
    p.add_argument("--method", metavar="M", help="a transfer method, a + combination such as freezed+l2sp, or mine")
    p.add_argument("--space", metavar="FILE", help="search space (YAML or JSON) replacing the method's default")
    p.add_argument("--trials", type=int, metavar="N", help="number of trials (default 12)")
    p.add_argument("--concurrent", type=int, default=2, metavar="C", help="trials at once, capped by the cluster's free CPUs (default 2)")
    p.add_argument("--steps", type=int, metavar="S", help="training steps per trial (default 300)")
    p.add_argument("--eval-every", type=int, default=None, metavar="K",
                   help="score and checkpoint every K steps (default steps/6)")
    p.add_argument("--metric", default="kmmd", metavar="NAME", help="metric to optimise: kmmd (default), fid or mv")
    p.add_argument("--mode", default="min", choices=["min", "max"], help="minimise (default) or maximise it")
    p.add_argument("--seed", type=int, default=0, help="seeds Optuna, the target draw and every trial's training")
    p.add_argument("--val-n", type=int, default=None, metavar="N", help="cap on the validation (held-out) images")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, metavar="CPUS", help="CPUs (and torch threads) per trial (default 1)")
    p.add_argument("--max-failures", type=int, default=2, metavar="K", help="retries of a failed trial from its checkpoint (default 2)")
    p.add_argument("--grace-period", type=int, default=None, metavar="STEPS",
                   help="steps before ASHA may stop a trial (default steps/4)")
    p.add_argument("--out", metavar="DIR", help="search directory to create (local or s3://)")
    p.add_argument("--resume", metavar="DIR", help="continue the search in DIR (takes no search-defining flags)")
    p.add_argument("--quiet", action="store_true", help="no Tune progress tables")
    return p


def _spec(args: argparse.Namespace):
    from ..search import space as S
    from ..search.spec import SearchSpec, with_default_space

    missing = [f"--{n}" for n in ("source", "target", "method", "out") if not getattr(args, n)]
    if missing:
        raise UserError(f"ganlode tune needs {', '.join(missing)} (or --resume DIR to continue a search)")
    steps = 300 if args.steps is None else args.steps
    if not S.is_method(args.method):
        raise UserError(f"unknown --method {args.method!r}: use one of {S.method_names()}")
    eval_every = args.eval_every if args.eval_every is not None else max(1, steps // 6)
    if args.space:
        doc = S.read_space_file(args.space)
    else:
        doc = None  # filled once the source's critic depth is known
    spec = SearchSpec(
        sources=tuple(args.source), target=args.target, method=args.method, space=doc or {}, trials=12 if args.trials is None else args.trials,
        concurrent=args.concurrent, steps=steps, eval_every=eval_every, out=args.out, metric=args.metric,
        mode=args.mode, seed=args.seed, val_n=args.val_n, cpus_per_trial=args.cpus_per_trial,
        max_failures=args.max_failures, grace_period=args.grace_period,
    )
    if doc is None:
        spec = with_default_space(spec)
    return spec


def run(args: argparse.Namespace) -> int:
    from ..search.run import run_search
    from ..search.spec import read_spec

    if args.resume:
        given = [f"--{n.replace('_', '-')}" for n in SEARCH_FLAGS if getattr(args, n)]
        if given:
            raise UserError(f"--resume continues the stored search as it was defined; drop {', '.join(given)}")
        if args.out and args.out.rstrip("/") != args.resume.rstrip("/"):
            raise UserError("--resume DIR continues the search in DIR; drop --out (results go to DIR)")
        spec = read_spec(args.resume)
        resume = True
    else:
        spec = _spec(args)
        resume = False
    outcome = run_search(spec, resume=resume, verbose=0 if args.quiet else 1)
    if not outcome.complete:
        print(f"error: search interrupted with {outcome.finished} of {outcome.total} trials finished; continue it "
              f"with `ganlode tune --resume {spec.out}`", file=sys.stderr)
        return 130
    from ..search.results import summary

    print(summary(outcome.rows, outcome.prepared, None if outcome.best is None else outcome.best["row"]))
    if outcome.best is None:
        print(f"error: no trial reported a finite {spec.metric}; see the status and error columns of "
              f"{spec.out}/trials.parquet", file=sys.stderr)
        return 1
    b = outcome.best
    print(f"best: trial {b['trial_id']} {spec.metric}={b['value']:.4g} with "
          + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in b["config"].items()))
    print(f"wrote {spec.out}: trials.parquet, best.json, best/ (try `ganlode sample {b['run']} --out best.png`), "
          "metric_vs_params.png")
    return 0
