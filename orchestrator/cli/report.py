"""``ganlode report``: rebuild ``report.html`` for any run directory."""

from __future__ import annotations

import click

from . import options
from .base import Command
from .output import unlock_kwargs

EPILOG = """\
examples:
  ganlode report runs/demo
  ganlode report s3://bucket/runs/seven --title "Digit seven"
  ganlode report runs/demo --force-unlock   the process that held the run's lock is gone
"""


@click.command("report", cls=Command, epilog=EPILOG, short_help="rebuild a run's self-contained report.html",
               help="Rebuild RUN/report.html for a transfer, mine, tune or demo run directory (local or s3://). "
                    "Only report.html is written.")
@click.argument("run", metavar="RUN")
@click.option("--title", default=None, help="the report's title (default: from the run)")
@options.force_unlock()
def command(run: str, title: str | None, force_unlock: bool) -> int:
    from ..report.html import build_report

    print(f"wrote {build_report(run, title, **unlock_kwargs(build_report, force_unlock))}")
    return 0
