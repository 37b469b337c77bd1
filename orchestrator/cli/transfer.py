"""``ganlode transfer``: adapt one source GAN to a small target set with one method."""

from __future__ import annotations

from typing import Any

import click

from ...methods import catalog
from . import options, runconfig
from .base import Command
from .output import emit_json, finish_tracking, stdout_to_stderr, unlock_kwargs

RUN_FLAGS = ("source", "target", "method", "out")  # what a new run needs, and --resume must not have


def _methods() -> str:
    """Each method's summary and its own defaults, from the catalogue."""
    width = max(map(len, catalog.METHODS))
    lines = []
    for r in catalog.RECORDS:
        lines.append(f"  {r.name:<{width}}  {r.summary}")
        lines.append(f"  {'':<{width}}  defaults: {catalog.defaults_text(r.name)}")
    return "\n".join(lines)


def _common_defaults() -> str:
    """The defaults every method shares (those that follow from the loss or the steps are said in words)."""
    shared = catalog.defaults("finetune", loss=catalog.LOSSES[0], steps=0, critic_blocks=None)
    fixed = {k: v for k, v in sorted(shared.items()) if k not in ("lr", "loss", "n_critic")}
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in fixed.items())


_by_loss = ", ".join(f"{d['n_critic']} for {loss}" for loss, d in catalog.LOSS_DEFAULTS.items())
EPILOG = f"""\
methods and their own defaults (from the method catalogue); the other options a method takes
(see "Method options") default to {_common_defaults()};
loss: the source's; n_critic: {_by_loss}; mining_steps: half the steps.
{_methods()}
  adabn, bsa and glo sample new images from a Gaussian fitted to the learned codes.
  minegan's --mine-space: z (default) mines the generator's input; w (stylegan2 sources: an
  architecture with a mapping network) puts the miner between the mapping and the synthesis
  network, and the mapping network stays frozen in both phases.

scoring: FID, KMMD and MV on the target's validation split every --eval-every steps (model
selection); the summary line reports the final model on the test split.

RUN/run.yaml holds every option the run ran with (defaults included); --config RUN/run.yaml
runs it again, and a flag given beside it wins (a new --out, more --steps).

examples:
  ganlode transfer --source zoo:digits-0to4 --target mnist5k:7@25 --method finetune --steps 500 --out runs/ft7
  ganlode transfer --source zoo:digits-0to4 --target mnist5k:7@100 --method freezed --out runs/fd7
  ganlode transfer --source zoo:digits-0to4 --target mnist5k:7@100 --method l2sp --l2sp-weight 0.1 --out runs/l7
  ganlode transfer --source zoo:animals-0to4 --target animals:horse@100 --method minegan --mining-steps 300 \\
      --steps 600 --out s3://bucket/runs/horse-mine
  ganlode transfer --source zoo:emoji-faces --target emoji-sub:cat-face@10 --method rick --steps 600 --out runs/rick
  ganlode transfer --source zoo:emoji-faces --target emoji-sub:cat-face@10 --method cdc --cdc-layers 1,2,3 \\
      --out runs/cdc
  ganlode transfer --resume runs/ft7        continue a killed run; every setting comes from the run
  ganlode transfer --config runs/ft7/run.yaml --out runs/ft7-again   the same settings again
  ganlode transfer --config runs/ft7/run.yaml --steps 1000 --out runs/ft7-long --json
  ganlode eval runs/ft7                     score a run again (e.g. --features inception)
"""


def _check(ctx: click.Context) -> None:
    """A new run needs --source, --target, --method and --out; ``--resume`` takes its settings from the run."""
    params = ctx.params
    if params["resume"] is not None:
        extra = options.given(ctx, set(params) - {"resume", "no_progress", "as_json", "force_unlock", "report_to"})
        if runconfig.loaded_from(ctx):
            extra.insert(0, "--config")
        if extra:
            raise click.UsageError(f"--resume RUN continues the run with its own settings; drop {', '.join(extra)}", ctx)
        return
    missing = [options.flag(n) for n in RUN_FLAGS if params[n] is None]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)} (or --resume RUN to continue a killed run)", ctx)


@click.command("transfer", cls=Command, check=_check, epilog=EPILOG,
               short_help="adapt a source GAN to a small target set (one method)",
               help="Adapt a pretrained GAN to a small target set with one transfer method, scoring it "
                    "(FID, KMMD, MV) as it trains, and write a run directory.")
@click.option("--source", metavar="CKPT", help="source checkpoint or run directory, or zoo:NAME")
@click.option("--target", metavar="SPEC", help="target spec, e.g. mnist5k:7@25 (see `ganlode data --help`)")
@click.option("--method", type=click.Choice(catalog.METHODS), metavar="METHOD",
              help=f"one of: {', '.join(catalog.METHODS)} (see below)")
@click.option("--steps", type=int, default=500, help="training steps (default 500)")
@options.out("run directory to create (local or s3://)", metavar="RUN")
@options.seed("fixes the target draw, initialisation and training (default 0)")
@options.eval_every("score on the validation split every K steps (default steps/10; 0: only at start and end)")
@options.features()
@options.eval_n()
@options.convert_target()
@options.no_progress()
@options.report_to()
@click.option("--resume", metavar="RUN",
              help="continue the killed run RUN from its last saved state (takes no other option but --no-progress, "
                   "--json, --report-to and --force-unlock)")
@runconfig.config_option
@options.json_output()
@options.force_unlock()
@options.method_options
@click.pass_context
def command(ctx: click.Context, resume: str | None, no_progress: bool, as_json: bool, force_unlock: bool,
            report_to: str, **params: Any) -> int:
    from .. import tracking

    written = None  # RUN/run.yaml: a fresh run's options (a resumed run keeps its own settings)
    tracker = tracking.open_tracker(report_to, resume or params["out"], "transfer")
    with stdout_to_stderr(as_json), tracker:
        def on_eval(step: int, values: dict[str, float]) -> None:
            tracker.log_metrics(values, step, "val")

        if resume is not None:
            from ..artifacts.rundir import RunDir
            from ..pipelines.transfer import resume_transfer

            tracker.log_params({"resume": resume})
            result = resume_transfer(resume, on_eval=on_eval, show_progress=not no_progress,
                                     **unlock_kwargs(resume_transfer, force_unlock))
            target = RunDir(result.run).read_record().target
        else:
            from ...methods.base import TransferOptions
            from ..pipelines.transfer import run_transfer

            tracker.log_params({k: v for k, v in params.items() if v is not None})
            method_options = TransferOptions(**options.take_method_options(params))
            target = params["target"]
            result = run_transfer(
                params["source"], target, params["method"], method_options, steps=params["steps"], out=params["out"],
                seed=params["seed"], eval_every=params["eval_every"], feature_kind=params["features"],
                eval_n=params["eval_n"], convert_target=params["convert_target"], on_eval=on_eval,
                show_progress=not no_progress, **unlock_kwargs(run_transfer, force_unlock),
            )
            written = runconfig.write_run_config(ctx, result.run)
        finish_tracking(tracker, result.run, [(result.metrics, result.steps, "test"),
                                              (result.best_metrics, result.best_step, "best")])
    m = result.metrics
    if as_json:
        emit_json({"command": "transfer", "run": result.run, "method": result.method, "steps": result.steps,
                   "target": target, "split": "test", "wall_s": result.wall_s,
                   "metrics": {k: m.get(k) for k in ("fid", "kmmd", "mv", "intra_div") if k in m}, "n": m.get("n"),
                   "best_step": result.best_step, "best_metrics": result.best_metrics,
                   "resumed_from": result.resumed_from,
                   "config": written})
        return 0
    diversity = f"  intra-cluster diversity {m['intra_div']:.3f}" if "intra_div" in m else ""
    print(f"wrote {result.run} ({result.wall_s:.0f} s): FID {m['fid']:.3f}  KMMD {m['kmmd']:.4f}  MV {m['mv']:.3f}"
          f"{diversity} vs {m['n']} test images of {target}")
    return 0
