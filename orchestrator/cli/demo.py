"""``ganlode demo``: the main job; no arguments needed."""

from __future__ import annotations

import click

from . import options
from .base import Command
from .output import emit_json, stdout_to_stderr, unlock_kwargs

EPILOG = """\
examples:
  ganlode demo                     the full demo (about 7 minutes on 2 CPU cores)
  ganlode demo --quick             smaller budgets and no probe, under 2 minutes
  ganlode demo --out s3://bucket/demo
  ganlode demo --quick --json --out demo-q   the summary as one JSON object (progress on stderr)
"""
BUDGET_FLAGS = ("mining_steps", "finetune_steps", "probe_steps", "eval_every")  # fields of pipelines.demo.Budget


@click.command("demo", cls=Command, epilog=EPILOG,
               short_help="the main job: recommend sources, mine them, compare with single sources; a report",
               help="For a digit-3/zebra target with known shares, on a local Ray cluster: rank every zoo source "
                    "(ganlode recommend), mine the recommended set with shares shown against the truth, fine-tune "
                    "single sources on the same target at the same budget, evaluate all of it and write report.html.")
@options.out("run directory (local or s3://; default ./ganlode-demo)", default="ganlode-demo", metavar="DIR")
@click.option("--quick", is_flag=True, help="smaller budgets, no probe, one baseline: under 2 minutes on 2 CPU cores")
@options.seed()
@click.option("--mining-steps", type=int, default=None, help="override the budget's mining steps")
@click.option("--finetune-steps", type=int, default=None, help="override the budget's fine-tuning steps")
@click.option("--probe-steps", type=int, default=None, help="override recommend's probe steps per candidate (0: none)")
@options.eval_every("override the budget's evaluation interval")
@options.no_progress()
@options.json_output()
@options.force_unlock()
def command(out: str, quick: bool, seed: int, no_progress: bool, as_json: bool, force_unlock: bool,
            **overrides: int | None) -> int:
    import dataclasses

    from ..pipelines.demo import BUDGETS, run_demo, summary_table

    budget = dataclasses.replace(BUDGETS["quick" if quick else "default"],
                                 **{k: v for k, v in overrides.items() if v is not None})
    with stdout_to_stderr(as_json):
        result = run_demo(out, budget, seed=seed, show_progress=not no_progress, **unlock_kwargs(run_demo, force_unlock))
    if as_json:
        emit_json({"command": "demo", "out": out, "budget": dataclasses.asdict(budget), "seed": seed, "split": "test",
                   "rows": result["rows"], "true_shares": result["true_shares"], "shares": result["shares"],
                   "selector": result["selector"], "recommendation": result["recommendation"],
                   "wall_s": result["wall_s"],
                   "report": result["report"]})
        return 0
    rec = result["recommendation"]
    print(f"recommended: {' + '.join(rec['sources'])} ({rec['reason']})")
    print(summary_table(result["rows"]))
    true = result["true_shares"] or {}
    print(f"mined shares ({result['selector']}), true in brackets: " + ", ".join(
        f"{k.split(':')[-1]} {p:.2f}" + (f" ({true[k]:.2f})" if k in true else "") for k, p in result["shares"].items()))
    print(f"demo finished in {result['wall_s']:.0f} s; report: {result['report']}")
    return 0
