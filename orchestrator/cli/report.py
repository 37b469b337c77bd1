"""``ganlode report``: rebuild ``report.html`` for any run directory."""

from __future__ import annotations

import argparse

from ..report.html import build_report

EPILOG = """\
examples:
  ganlode report runs/demo
  ganlode report s3://bucket/runs/seven
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("report", help="rebuild a run's self-contained report.html", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Rebuild RUN/report.html (transfer, mine, tune or demo runs). Only report.html is written.")
    p.add_argument("run", metavar="RUN", help="run directory (local or s3://)")
    p.add_argument("--title", default=None)
    return p


def run(args: argparse.Namespace) -> int:
    print(f"wrote {build_report(args.run, args.title)}")
    return 0
