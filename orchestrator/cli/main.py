"""The ``ganlode`` command line: a thin dispatcher over one module per command.

Each command lives in ``ganlode.orchestrator.cli.<name>`` and exposes
``add_parser(subparsers) -> argparse.ArgumentParser`` and ``run(args) -> int``.
Exit status: 0 success, 2 bad input (one line on stderr, no traceback), 1 internal error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from ..errors import UserError

# Order is the order shown in --help.
COMMANDS: tuple[str, ...] = (
    "demo",
    "zoo",
    "data",
    "pretrain",
    "sample",
    "transfer",
    "mine",
    "tune",
    "eval",
    "report",
    "submit",
)

EPILOG = """\
examples:
  ganlode demo                                  the main job: mining + baselines, writes report.html
  ganlode zoo                                   list the shipped source GANs and their FIDs
  ganlode sample zoo:digits-0to4 --out grid.png draw a sample grid from a checkpoint
  ganlode data show mnist5k:7@100 --out t.png   inspect a target set
  ganlode pretrain --data mnist5k:0-4 --out runs/d04 --steps 2000
"""


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line (``error: ...``) and exit status 2, like every other bad input."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="ganlode",
        description="Adapt pretrained GANs to small image sets.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--s3-endpoint", metavar="URL",
                        help="S3-compatible endpoint for s3:// paths (default: AWS_ENDPOINT_URL, else AWS)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"{__package__}.{name}")
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # usage errors (2) and --help (0), as a return value for callers
        return e.code if isinstance(e.code, int) else 2
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        from .. import storage  # here, not at the top: `ganlode --help` needs no storage

        storage.configure(args.s3_endpoint)
        return int(args._run(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; completed results are kept, rerun with --resume where supported", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
