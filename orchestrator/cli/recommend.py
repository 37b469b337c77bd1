"""``ganlode recommend``: which sources to start from, measured on the target (one Ray task per candidate)."""

from __future__ import annotations

import click

from ...methods.catalog import DEFAULT_MIN_GAIN, DEFAULT_MIN_SHARE
from . import options
from .base import Command
from .output import emit_json, stdout_to_stderr

EPILOG = """\
what it measures, per candidate, on the target's validation split (never the test split):
  coverage    the share of the target's images the unmined source explains (all candidates
              weighed together: a calibrated which-source classifier and EM, as mining's
              coverage selector), 0 for a source that explains too little to keep
  FID, KMMD   the unmined source against the validation images
  probe FID   after --probe-steps of plain fine-tuning (default 200; about 20 s per candidate
              on one CPU core for the shipped 28x28 models; 0 skips it)
The ranking follows the probe FID (without a probe: the unmined FID). The recommendation is
multi-source mining of the sources coverage keeps when it keeps two or more, else the top-ranked
source. The table goes to OUT/recommend.parquet and OUT/recommend.json.

examples:
  ganlode recommend --target mnist5k:7@25                     every zoo model of the target's size
  ganlode recommend --target mnist5k:3@30+animals:zebra@70 --probe-steps 0
  ganlode recommend --target ./my_images --source runs/a --source runs/b --out rec
  ganlode recommend --target glyphs:7@25 --json --out rec7     the table as one JSON object
"""


@click.command("recommend", cls=Command, epilog=EPILOG,
               short_help="rank source GANs for a target: coverage, FID, a short transfer probe (Ray)",
               help="Weigh candidate source GANs for a target set (by default every zoo model of the target's image "
                    "size and channels): coverage share, unmined FID and KMMD, and a short fine-tuning probe, all on "
                    "the validation split; then recommend one source, or a set to mine together.")
@click.option("--target", required=True, metavar="SPEC", help="target spec, e.g. mnist5k:7@25 or a folder")
@click.option("--source", "sources", multiple=True, metavar="CKPT",
              help="a candidate checkpoint, run directory or zoo:NAME; repeat it (default: the whole zoo of the "
                   "target's size and channels)")
@click.option("--probe-steps", type=click.IntRange(min=0), default=200, show_default=True, metavar="N",
              help="fine-tuning steps of each candidate's probe (0: no probe)")
@options.out("where recommend.parquet and recommend.json go (local or s3://)", default="ganlode-recommend",
             metavar="DIR")
@options.seed("fixes the target draw, the samples and the probes (default 0)")
@click.option("--min-share", type=float, default=DEFAULT_MIN_SHARE, show_default=True, metavar="P",
              help="coverage drops candidates whose share falls below P")
@click.option("--min-gain", type=float, default=DEFAULT_MIN_GAIN, show_default=True, metavar="NATS",
              help="...and candidates that explain the images they cover by less than NATS per image better than "
                   "the others")
@options.features()
@options.eval_n()
@options.no_progress()
@options.json_output()
def command(target: str, sources: tuple[str, ...], probe_steps: int, out: str, seed: int, min_share: float,
            min_gain: float, features: str, eval_n: int | None, no_progress: bool, as_json: bool) -> int:
    from ..pipelines import recommend as R

    with stdout_to_stderr(as_json):
        R.check_out(out)
        rec = R.recommend(target, list(sources) or None, probe_steps=probe_steps, seed=seed, feature_kind=features,
                          min_share=min_share, min_gain=min_gain, eval_n=eval_n, show_progress=not no_progress)
        R.write(rec, out)
    if as_json:
        emit_json({"command": "recommend", "out": out, **rec.to_dict()})
        return 0
    print(R.summary(rec))
    print(f"wrote {out}/{R.TABLE_FILE} and {R.JSON_FILE} ({rec.wall_s:.0f} s)")
    return 0
