"""``ganlode mine``: multi-source MineGAN, one Ray actor per source generator."""

from __future__ import annotations

from typing import Any

import click

from ...methods.catalog import DEFAULT_MIN_GAIN, DEFAULT_MIN_SHARE, DEFAULT_SELECTOR, SELECTORS
from . import options, runconfig
from .base import Command
from .output import emit_json, finish_tracking, stdout_to_stderr, unlock_kwargs

EPILOG = """\
how it works:
  every source G_i gets a miner M_i (u -> z) on its own Ray actor (its own GPU when the cluster has
  GPUs); a coordinator holds one critic, started from the first source's critic. Each step every
  source draws x_i = G_i(M_i(u)) from the same u, the critic's best-scored source wins each row,
  and a critic step takes the rows the critic scored best. Mining trains the miners only;
  fine-tuning trains G_i and M_i. Sampling the result picks source i with probability p_i, then
  x = G_i(M_i(u)).

shares (--selector; RUN/shares.json records every one):
  coverage     before mining, a calibrated "which source made x" classifier on the unmined
               sources' samples, then EM on the target images (the default); sources under
               --min-share, or gaining less than --min-gain, are dropped
  count        the share of rows each source won over the last --window batches (the paper)
  mixture-fit  the mixture of the mined sources nearest the target (least MMD), ties broken
               toward the coverage shares
  --route mines each source coverage keeps against its own part of the target, with its own
  critic, so a source that should not serve the target is never trained to imitate it.

examples:
  ganlode mine --source zoo:digits-0to4 --source zoo:animals-5to9 \\
      --target mnist5k:3@30+animals:zebra@70 --mining-steps 1000 --finetune-steps 500 --out runs/mix
  ganlode mine --source zoo:digits-0to4 --source zoo:animals-5to9 \\
      --target mnist5k:3@30+animals:zebra@70 --out runs/mix --resume   continue a killed run
  ganlode mine --source zoo:digits-0to4 --source zoo:animals-5to9 \\
      --target mnist5k:3@30+animals:zebra@70 --out runs/ref --in-process --threads 2   no Ray
  ganlode mine --source zoo:digits-0to4 --source zoo:digits-5to9 --source zoo:animals-5to9 \\
      --target mnist5k:3@30+animals:zebra@70 --route --out runs/routed   each source on its own part
  ganlode mine --config runs/mix/run.yaml --out runs/mix2 --json   the same settings again, JSON summary
  ganlode sample runs/mix --out mix.png             draw from the mined model

RUN/run.yaml holds every option the run ran with; --config RUN/run.yaml runs it again (flags
given beside it win).
"""
# Flags that are MultiSourceConfig fields, passed to pipelines.mine.mine_config by name.
CONFIG_FLAGS = ("mining_steps", "finetune_steps", "batch", "lr_miner", "lr_g", "lr_d", "window", "seed", "n_critic",
                "warmup", "rows", "miner_input_dim")


def _check(ctx: click.Context) -> None:
    n = len(ctx.params["sources"])
    if n < 2:
        raise click.UsageError(f"multi-source mining needs two or more --source (got {n}); "
                               "for one source use `ganlode transfer --method minegan`", ctx)


@click.command("mine", cls=Command, check=_check, epilog=EPILOG,
               short_help="multi-source MineGAN: mine several source GANs for one target (Ray)",
               help="Mine two or more source GANs for a target set with one miner per source and a shared critic, "
                    "learn each source's share, fine-tune, and write one mined model.")
@click.option("--source", "sources", multiple=True, required=True, metavar="CKPT",
              help="a source checkpoint, run directory or zoo:NAME; repeat it (two or more); the shared "
                   "critic starts from the first one's critic")
@click.option("--target", required=True, metavar="SPEC", help="target spec, e.g. mnist5k:3@30+animals:zebra@70")
@options.out("run directory (local or s3://)", required=True, metavar="RUN")
@click.option("--mining-steps", type=click.IntRange(min=0), default=1000, metavar="M",
              help="steps training the miners only (default 1000)")
@click.option("--finetune-steps", type=click.IntRange(min=0), default=500, metavar="F",
              help="steps then training G_i and M_i jointly (default 500)")
@click.option("--batch", type=click.IntRange(min=1), default=64, metavar="N", help="rows per step, shared by every source (default 64)")
@options.seed("fixes the target draw, the miners and every random draw (default 0)")
@options.loss("adversarial loss (default: the first source's)")
@click.option("--lr-miner", type=float, default=1e-3, help="miner learning rate (default 1e-3)")
@click.option("--lr-g", type=float, default=1e-4, help="generator learning rate while fine-tuning (default 1e-4)")
@click.option("--lr-d", type=float, default=1e-4, help="critic learning rate (default 1e-4)")
@click.option("--window", type=click.IntRange(min=1), default=1000, metavar="N",
              help="batches the count selector's shares average over (default 1000)")
@click.option("--selector", type=click.Choice(SELECTORS), default=DEFAULT_SELECTOR, show_default=True,
              help="whose shares sampling the mined model uses")
@click.option("--route", is_flag=True, help="mine each kept source against its own part of the target (needs --selector coverage)")
@click.option("--min-share", type=float, default=DEFAULT_MIN_SHARE, show_default=True, metavar="P",
              help="the coverage estimate drops sources whose share falls below P")
@click.option("--min-gain", type=float, default=DEFAULT_MIN_GAIN, show_default=True, metavar="NATS",
              help="...and sources that explain the target images they cover by less than NATS of log-likelihood "
                   "per image better than the other sources (0: keep them)")
@click.option("--n-critic", type=click.IntRange(min=1), default=1, show_default=True, metavar="K",
              help="critic steps per mining step, each on fresh samples")
@click.option("--warmup", type=click.IntRange(min=0), default=0, show_default=True, metavar="S",
              help="steps before the count selector starts counting wins")
@click.option("--rows", type=click.Choice(("best", "shares")), default="best", show_default=True,
              help="each critic row's source: the critic's best-scored one (the paper), or drawn from the shares "
                   "(as sampling does)")
@click.option("--miner-input-dim", type=click.IntRange(min=1), default=16, show_default=True, metavar="D",
              help="size of the miners' input u")
@click.option("--gpus-per-source", type=click.FloatRange(min=0), default=None, metavar="G",
              help="GPUs per generator actor (default: 1 when the cluster has a GPU per source; 0: CPUs)")
@click.option("--threads", type=int, default=None, help="torch threads per actor (in-process: for this process)")
@click.option("--checkpoint-every", type=int, default=100, metavar="K",
              help="write RUN/checkpoints/step-N every K steps for --resume (default 100; 0: never)")
@click.option("--resume", is_flag=True, help="continue the run in --out from its last checkpoint")
@click.option("--in-process", is_flag=True, help="run the in-process reference instead of Ray actors")
@options.eval_every("also score every K steps (default 0: at start and end)", default=0)
@options.features()
@options.eval_n()
@options.convert_target()
@options.no_progress()
@options.report_to()
@runconfig.config_option
@options.json_output()
@options.force_unlock()
@click.pass_context
def command(ctx: click.Context, sources: tuple[str, ...], target: str, out: str, loss: str | None, report_to: str,
            gpus_per_source: float | None, threads: int | None, checkpoint_every: int, resume: bool, in_process: bool,
            eval_every: int, features: str, eval_n: int | None, no_progress: bool, as_json: bool, force_unlock: bool,
            selector: str, route: bool, min_share: float, min_gain: float, convert_target: bool, **config: Any) -> int:
    from .. import tracking
    from ..pipelines.mine import mine_config, run_mine
    from ..pipelines.sources import trained_loss

    tracker = tracking.open_tracker(report_to, out, "mine")
    with stdout_to_stderr(as_json), tracker:
        loss = loss or trained_loss(sources[0])
        cfg = mine_config(loss, **{name: config[name] for name in CONFIG_FLAGS})
        tracker.log_params({"sources": list(sources), "target": target, "out": out, "loss": loss, "selector": selector,
                            "route": route, "min_share": min_share, "min_gain": min_gain, "resume": resume, **config})

        def on_eval(step: int, values: dict[str, float]) -> None:
            tracker.log_metrics(values, step, "val")

        result = run_mine(
            list(sources), target, out, cfg, gpus_per_source=gpus_per_source, checkpoint_every=checkpoint_every,
            resume=resume, in_process=in_process, threads=threads, eval_every=eval_every, feature_kind=features,
            eval_n=eval_n, show_progress=not no_progress, selector=selector, route=route, min_share=min_share,
            min_gain=min_gain, convert_target=convert_target, on_eval=on_eval,
            **unlock_kwargs(run_mine, force_unlock),
        )
        written = runconfig.write_run_config(ctx, result.run)
        steps = config["mining_steps"] + config["finetune_steps"]
        finish_tracking(tracker, result.run, [(result.metrics, steps, "test"),
                                              ({f"share_{i}": p for i, p in enumerate(result.shares)}, steps, "mine")])
    m = result.metrics
    error = None if result.true_shares is None else max(abs(a - b) for a, b in zip(result.shares, result.true_shares))
    if as_json:
        emit_json({"command": "mine", "run": result.run, "target": target, "wall_s": result.wall_s,
                   "selector": result.selector,
                   "shares": [{"source": s, "share": p} for s, p in zip(sources, result.shares)],
                   "by_selector": {k: dict(zip(sources, v)) for k, v in result.by_selector.items()},
                   "kept": [sources[i] for i in result.kept],
                   "true_shares": result.true_shares,
                   "max_share_error": error, "split": "test",
                   "metrics": {k: m[k] for k in ("fid", "kmmd", "mv", "intra_div") if k in m}, "n": m.get("n"),
                   "val_metrics": result.val_metrics, "resumed_from": result.resumed_from, "config": written})
        return 0
    shares = ", ".join(f"{s} {p:.3f}" for s, p in zip(sources, result.shares))
    line = f"wrote {result.run} ({result.wall_s:.0f} s): {result.selector} shares {shares}"
    if "fid" in m:
        line += f"; FID {m['fid']:.3f}  KMMD {m['kmmd']:.4f}  MV {m['mv']:.3f}"
        if "intra_div" in m:
            line += f"  intra-cluster diversity {m['intra_div']:.3f}"
    if error is not None:
        line += f"; max |p - true share| {error:.3f}"
    print(line)
    return 0
