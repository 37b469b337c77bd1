"""``ganlode data``: inspect a target spec (counts and a sample grid) or export it to Parquet."""

from __future__ import annotations

import argparse

from .. import data
from ..errors import UserError

GRID_LIMIT = 64

EPILOG = """\
target specs: DATASET[:CLASSES][@N], parts joined with '+'
  CLASSES  names or indices, comma-separated; ranges like 0-4 or A-Z
  @N       N images in total, split evenly over the part's classes
           (without @N: every training image of those classes)
  30% of every class is held out for evaluation (fixed, whatever --seed);
  --split eval shows or exports that held-out reference instead.

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
"""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC", help="target spec, e.g. mnist5k:7@100 or ./my_images/")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0); the held-out split never depends on it")
    p.add_argument("--split", choices=("train", "eval"), default="train",
                   help="train: the drawn target set (default); eval: its held-out evaluation reference")


def add_parser(subparsers) -> argparse.ArgumentParser:
    builtins = "\n".join(f"  {name:<9}{desc}" for name, desc in data.describe_builtins())
    p = subparsers.add_parser(
        "data",
        help="inspect and export target image sets",
        description="Inspect a target spec (counts per class and a sample grid) or export it as a Parquet table.",
        epilog=EPILOG.format(builtins=builtins),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    show = sub.add_parser("show", help="print counts per (source, class) and write a grid of up to 64 images",
                          description="Print counts per (source, class) and the total; with --out, write a PNG grid.")
    _add_common(show)
    show.add_argument("--out", help="PNG file for a grid of up to 64 images (local or s3://)")
    export = sub.add_parser("export", help="write the drawn images as a Parquet table",
                            description="Write the drawn images as a Parquet table (image PNG bytes, height, width, "
                                        "channels, label, source, split) that works as a target spec itself.")
    _add_common(export)
    export.add_argument("--out", required=True, help="the .parquet file to write (local or s3://)")
    export.add_argument("--with-eval", action="store_true",
                        help="also store the held-out reference (split=eval rows), so the table keeps its evaluation set")
    return p


def _table(imageset: data.ImageSet) -> str:
    rows = [(s, label, str(c)) for s, label, c in data.iter_counts(imageset)]
    head = ("source", "class", "images")
    widths = [max(len(r[i]) for r in [head, *rows, ("", "total", "")]) for i in range(3)]
    fmt = f"{{:<{widths[0]}}}  {{:<{widths[1]}}}  {{:>{widths[2]}}}"
    lines = [fmt.format(*head)] + [fmt.format(*r) for r in rows] + [fmt.format("total", "", str(len(imageset)))]
    return "\n".join(lines)


def _summary(imageset: data.ImageSet) -> str:
    res = imageset.images.shape[-1]
    return (f"{imageset.spec}  split={imageset.split} seed={imageset.seed}  "
            f"{res}x{res}, {imageset.channels} channel{'s' if imageset.channels > 1 else ''}")


def run(args: argparse.Namespace) -> int:
    command = getattr(args, "data_command", None)
    if command is None:
        raise UserError("say what to do with the data: ganlode data show SPEC, or ganlode data export SPEC --out t.parquet "
                        "(see ganlode data --help)")
    imageset = data.load_target(args.spec, seed=args.seed, split=args.split)
    if command == "show":
        print(_summary(imageset))
        print(_table(imageset))
        if args.out:
            picked = data.grid_pick(imageset, GRID_LIMIT)
            data.show_grid(picked, args.out)
            print(f"wrote a grid of {len(picked)} images to {args.out}")
        return 0
    if command == "export":
        sets = [imageset]
        if args.with_eval:
            if args.split == "eval":
                raise UserError("--with-eval adds the held-out rows to a training export: drop --split eval or --with-eval")
            sets.append(data.load_target(args.spec, seed=args.seed, split="eval"))
        data.write_parquet(sets, args.out)
        rows = sum(len(s) for s in sets)
        extra = f" ({len(sets[0])} train, {len(sets[1])} eval)" if len(sets) > 1 else ""
        print(f"wrote {rows} rows{extra} to {args.out}")
        return 0
    raise UserError(f"unknown data command '{command}': use show or export")  # pragma: no cover - argparse guards
