"""The ``ganlode`` command line: a click group over one module per command.

Each command lives in ``ganlode.orchestrator.cli.<name>`` as a click command named ``command``,
imported when it is asked for. A command module imports torch, Ray and the pipelines only inside
its callback, so ``--help`` (of ``ganlode`` and of every command) loads neither.

Exit status: 0 success, 2 bad input (one line on stderr, no traceback: click's usage errors and
:class:`~ganlode.orchestrator.errors.UserError`), 130 interrupted, 1 internal error.
"""

from __future__ import annotations

import importlib
import sys
from typing import Sequence

import click

from ... import __version__
from ..errors import UserError
from . import options
from .base import CONTEXT_SETTINGS, Group

# Order is the order shown in --help.
COMMANDS: tuple[str, ...] = (
    "demo",
    "zoo",
    "data",
    "pretrain",
    "import",
    "sample",
    "transfer",
    "mine",
    "recommend",
    "tune",
    "eval",
    "report",
    "submit",
    "doctor",
)

# A command whose name is a Python keyword lives in the module of that name plus "_".
MODULES: dict[str, str] = {"import": "import_"}

EPILOG = """\
examples:
  ganlode demo                                    the main job: mining + baselines, writes report.html
  ganlode zoo                                     list the shipped source GANs and their FIDs
  ganlode sample zoo:digits-0to4 --out grid.png   draw a sample grid from a checkpoint
  ganlode data show mnist5k:7@100 --out t.png     inspect a target set
  ganlode pretrain --data mnist5k:0-4 --out runs/d04 --steps 2000
  ganlode import stylegan2 ffhq-256.pt --out models/ffhq256   a StyleGAN2 of rosinality's stylegan2-pytorch
  ganlode --s3-endpoint http://127.0.0.1:9000 data show s3://bkt/t.parquet@50 --out s3://bkt/t.png
  ganlode doctor                                  what this installation has: versions, datasets, CUDA, Ray

shell completion (bash; for zsh, zsh_source in ~/.zshrc):
  eval "$(_GANLODE_COMPLETE=bash_source ganlode)"   in ~/.bashrc
"""

INTERRUPTED = "error: interrupted; completed results are kept, rerun with --resume where supported"


class _Interrupted(Exception):
    """Ctrl-C inside a command, carried past click (which would print a blank line first)."""


class _Commands(Group):
    """The top-level group: commands imported on first use, in :data:`COMMANDS` order."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        return importlib.import_module(f"{__package__}.{MODULES.get(name, name)}").command

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise _Interrupted() from None


@click.group("ganlode", cls=_Commands, invoke_without_command=True, context_settings=CONTEXT_SETTINGS,
             epilog=EPILOG, help="Adapt pretrained GANs to small image sets.")
@click.version_option(__version__, "--version", prog_name="ganlode", message="%(prog)s %(version)s")
@options.s3_endpoint()
@click.pass_context
def cli(ctx: click.Context, s3_endpoint: str | None) -> None:
    # Each command configures storage from --s3-endpoint as it starts (base.Command.invoke).
    if ctx.invoked_subcommand is None:  # plain `ganlode`: the help, as a usage error
        click.echo(ctx.get_help())
        ctx.exit(2)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def usage_error_line(e: click.UsageError) -> str:
    """A click usage error as ganlode's one line: ``error: ganlode CMD: ... (see `ganlode CMD --help`)``."""
    path = e.ctx.command_path if e.ctx is not None else "ganlode"
    return f"error: {path}: {_one_line(e.format_message())} (see `{path} --help`)"


def parse(argv: Sequence[str]) -> click.Context:
    """Parse ``ganlode ARGV...`` down to the command it names, without running anything.

    Returns the innermost command's context; bad input raises click's usage errors, as it would
    when run. Used by the tests that check every example in the help texts and READMEs.
    """
    command: click.Command = cli
    ctx = cli.make_context("ganlode", list(argv), resilient_parsing=False)
    while isinstance(command, click.Group):
        protected = getattr(ctx, "_protected_args", None)  # click >= 8.2; `protected_args` before
        rest = [*(ctx.protected_args if protected is None else protected), *ctx.args]  # what Group.invoke passes on
        if not rest:
            return ctx
        name, sub, args = command.resolve_command(ctx, rest)
        assert sub is not None and name is not None
        command, ctx = sub, sub.make_context(name, args, parent=ctx, resilient_parsing=False)
    return ctx


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ganlode ARGV...`` and return its exit status (see the module docstring).

    Internal errors are not caught: they raise, so that the console script exits 1 with the traceback.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        return int(cli.main(args, prog_name="ganlode", standalone_mode=False) or 0)
    except click.UsageError as e:  # BadParameter, NoSuchOption, MissingParameter, ...
        print(usage_error_line(e), file=sys.stderr)
        return 2
    except click.ClickException as e:
        print(f"error: {_one_line(e.format_message())}", file=sys.stderr)
        return 2
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (_Interrupted, click.exceptions.Abort):
        print(INTERRUPTED, file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
