"""``ganlode tune``: search transfer-method settings with Ray Tune (Optuna + ASHA)."""

from __future__ import annotations

import sys
from typing import Any

import click

from ..errors import UserError
from . import options, runconfig
from .base import Command
from .output import emit_json, stdout_to_stderr, unlock_kwargs

EPILOG = """\
default search spaces (override with --space FILE, YAML or JSON; a file replaces the whole space):
  freezed        freeze_depth randint 1..critic blocks, lr loguniform 1e-5..1e-3
  l2sp           l2sp_weight loguniform 1e-3..1e2, lr
  distill        distill_weight loguniform 1e-2..1e2, lr
  freezed+l2sp   freeze_depth randint 0..blocks + l2sp_weight (any + of freezed, l2sp, distill
                 trains finetune with those options together); finetune searches all three
  minegan        mining_steps randint 0..--steps, lr
  mine           (two or more --source) mining_steps, lr_miner loguniform 1e-4..1e-2, lr
  cdc            cdc_weight loguniform 1e1..1e4, lr
  adam, rick     importance_quantile uniform 25..75, lr
  scratch, adabn, bsa, glo: lr
  file format:   freeze_depth: {randint: [0, 3]}     lr: {loguniform: [1.0e-5, 1.0e-3]}
                 l2sp_on: {choice: [g, d, both]}      batch: 32   (a plain value is fixed)

every trial: same source, target draw and seed; scored (FID, KMMD, MV) every --eval-every steps
on the target's validation split (never trained on); ASHA stops trials that trail; Optuna (seeded
by --seed) proposes the next settings. Results in --out: trials.parquet, best.json, best/ (a run:
`ganlode sample OUT/best`, `ganlode eval OUT/best`), metric_vs_params.png.

examples:
  ganlode tune --source zoo:digits-0to4 --target mnist5k:7@100 --method freezed+l2sp \\
      --trials 16 --concurrent 2 --steps 400 --eval-every 50 --out runs/tune7
  ganlode tune --resume runs/tune7                 continue an interrupted search
  ganlode tune --source zoo:digits-0to4 --target mnist5k:7@100 --method l2sp --space space.yaml \\
      --trials 12 --steps 300 --metric fid --out s3://bucket/tune/l2sp
  ganlode tune --source zoo:digits-0to4 --source zoo:digits-5to9 --target mnist5k:7@100 --method mine \\
      --trials 8 --out runs/tune-mine
  ganlode tune --config runs/tune7/run.yaml --trials 24 --out runs/tune7-more --json

OUT/run.yaml holds every option a finished search ran with; --config OUT/run.yaml runs it again
(flags given beside it win).
"""

SEARCH_FLAGS = ("sources", "target", "method", "space_file", "trials", "steps", "convert_target")  # what --resume takes from the search
NEEDED = ("sources", "target", "method", "out")


def _spec(space_file: str | None, eval_every: int | None, **fields: Any):
    """The SearchSpec of the flags: ``fields`` are its fields by name; the space is read from
    ``space_file`` or is the method's default."""
    from ..search import space as S
    from ..search.spec import SearchSpec, with_default_space

    if not S.is_method(fields["method"]):
        raise UserError(f"unknown --method {fields['method']!r}: use one of {S.method_names()}")
    doc = S.read_space_file(space_file) if space_file else None  # None: filled once the critic depth is known
    spec = SearchSpec(space=doc or {}, eval_every=max(1, fields["steps"] // 6) if eval_every is None else eval_every,
                      **fields)
    return with_default_space(spec) if doc is None else spec


def _check(ctx: click.Context) -> None:
    """A new search needs --source, --target, --method and --out; ``--resume DIR`` takes them from DIR."""
    params = ctx.params
    if params["resume"]:
        given = options.given(ctx, SEARCH_FLAGS)
        if runconfig.loaded_from(ctx):
            given.insert(0, "--config")
        if given:
            raise click.UsageError(f"--resume continues the stored search as it was defined; drop {', '.join(given)}", ctx)
        if params["out"] and params["out"].rstrip("/") != params["resume"].rstrip("/"):
            raise click.UsageError("--resume DIR continues the search in DIR; drop --out (results go to DIR)", ctx)
        return
    flags = {p.name: p.opts[0] for p in ctx.command.params}
    missing = [flags[n] for n in NEEDED if not params[n]]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)} (or --resume DIR to continue a search)", ctx)


@click.command("tune", cls=Command, check=_check, epilog=EPILOG, short_help="search transfer-method settings (Ray Tune, Optuna, ASHA)",
               help="Search the settings of a transfer method with Ray Tune: Optuna proposes, ASHA stops early, "
                    "every trial checkpoints, and the best trial is exported as a run.")
@click.option("--source", "sources", multiple=True, metavar="CKPT",
              help="source checkpoint, run directory or zoo:NAME (repeat for --method mine)")
@click.option("--target", metavar="SPEC", help="target spec, e.g. mnist5k:7@100")
@click.option("--method", metavar="M", help="a transfer method, a + combination such as freezed+l2sp, or mine")
@click.option("--space", "space_file", metavar="FILE", help="search space (YAML or JSON) replacing the method's default")
@click.option("--trials", type=int, default=12, metavar="N", help="number of trials (default 12)")
@click.option("--concurrent", type=int, default=2, metavar="C",
              help="trials at once, capped by the cluster's free CPUs (default 2)")
@click.option("--steps", type=int, default=300, metavar="S", help="training steps per trial (default 300)")
@options.eval_every("score and checkpoint every K steps (default steps/6)")
@click.option("--metric", default="kmmd", metavar="NAME", help="metric to optimise: kmmd (default), fid or mv")
@click.option("--mode", default="min", type=click.Choice(("min", "max")), help="minimise (default) or maximise it")
@options.seed("seeds Optuna, the target draw and every trial's training (default 0)")
@click.option("--val-n", type=int, default=None, metavar="N", help="cap on the validation images")
@options.convert_target()
@click.option("--cpus-per-trial", type=float, default=1.0, metavar="CPUS",
              help="CPUs (and torch threads) per trial (default 1)")
@click.option("--max-failures", type=int, default=2, metavar="K",
              help="retries of a failed trial from its checkpoint (default 2)")
@click.option("--grace-period", type=int, default=None, metavar="STEPS",
              help="steps before ASHA may stop a trial (default steps/4)")
@options.out("search directory to create (local or s3://)", metavar="DIR")
@click.option("--resume", metavar="DIR", help="continue the search in DIR (takes no search-defining flags)")
@click.option("--quiet", is_flag=True, help="no Tune progress tables")
@options.report_to("also send every trial's settings and validation scores to tensorboard (event files in the "
                   "trials' folders, Ray Tune's TBXLoggerCallback) or mlflow (one MLflow run per trial; "
                   "MLFLOW_TRACKING_URI, default ./mlruns) (default none)")
@runconfig.config_option
@options.json_output("print one JSON object (the trials and the best) on stdout instead of the tables; "
                     "Tune's progress goes to stderr")
@options.force_unlock()
@click.pass_context
def command(ctx: click.Context, resume: str | None, quiet: bool, as_json: bool, force_unlock: bool, report_to: str,
            **fields: Any) -> int:
    from .. import tracking
    from ..search.run import run_search
    from ..search.spec import read_spec

    with stdout_to_stderr(as_json):
        callbacks = tracking.tune_callbacks(report_to)
        spec = read_spec(resume) if resume else _spec(**fields)
        outcome = run_search(spec, resume=bool(resume), verbose=0 if quiet else 1, callbacks=callbacks,
                             **unlock_kwargs(run_search, force_unlock))
        written = runconfig.write_run_config(ctx, spec.out) if outcome.complete and outcome.best and not resume else None
    if not outcome.complete:
        print(f"error: search interrupted with {outcome.finished} of {outcome.total} trials finished; continue it "
              f"with `ganlode tune --resume {spec.out}`", file=sys.stderr)
        return 130
    from ..search.results import summary

    if as_json:
        b = outcome.best
        emit_json({"command": "tune", "out": spec.out, "method": spec.method, "target": spec.target,
                   "metric": spec.metric, "mode": spec.mode, "split": "val", "finished": outcome.finished,
                   "total": outcome.total, "trials": outcome.rows,
                   "best": None if b is None else {"trial_id": b["trial_id"], "value": b["value"], "config": b["config"],
                                                   "run": b["run"]},
                   "config": written})
        if b is None:
            print(f"error: no trial reported a finite {spec.metric}; see the status and error columns of "
                  f"{spec.out}/trials.parquet", file=sys.stderr)
            return 1
        return 0
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
