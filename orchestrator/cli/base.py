"""The click classes every ``ganlode`` command is built from.

- :class:`Command`: the epilog is printed as written (examples keep their columns), options are
  listed in sections (:class:`Option` names its section), ``check(ctx)`` runs right after parsing
  (rules between flags, so that parsing alone rejects a bad line: a usage error), and the S3
  endpoint is configured just before the callback runs, so ``--help`` and usage errors touch no
  storage.
- :class:`Group`: subcommands in the order they were added, and an unknown one is a usage error
  that lists the choices.
"""

from __future__ import annotations

from typing import Any, Callable

import click

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
OPTIONS = "Options"


class Option(click.Option):
    """A click option that says which ``--help`` section lists it."""

    def __init__(self, *args: Any, section: str = OPTIONS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.section = section


def _write_epilog(command: click.Command, formatter: click.HelpFormatter) -> None:
    if command.epilog:
        formatter.write_paragraph()
        formatter.write(command.epilog.rstrip("\n") + "\n")


class Command(click.Command):
    """A ganlode command (see the module docstring)."""

    def __init__(self, *args: Any, check: Callable[[click.Context], None] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.check = check

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rest = super().parse_args(ctx, args)
        if self.check is not None and not ctx.resilient_parsing:
            self.check(ctx)
        return rest

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            if not isinstance(param, click.Option):
                continue  # arguments are described in the command's help text
            row = param.get_help_record(ctx)
            if row is not None:
                sections.setdefault(getattr(param, "section", OPTIONS), []).append(row)
        for title, rows in sections.items():
            with formatter.section(title):
                formatter.write_dl(rows)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _write_epilog(self, formatter)

    def invoke(self, ctx: click.Context) -> Any:
        from .. import storage  # here, not at the top: --help needs no storage

        storage.configure(ctx.find_root().params.get("s3_endpoint"))
        return super().invoke(ctx)


class Group(click.Group):
    """A ganlode command with subcommands (see the module docstring)."""

    command_class = Command

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _write_epilog(self, formatter)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name = args[0]
        if not ctx.resilient_parsing and not name.startswith("-") and self.get_command(ctx, name) is None:
            choices = ", ".join(self.list_commands(ctx))
            raise click.UsageError(f"invalid choice: {name!r} (choose from {choices})", ctx)
        return super().resolve_command(ctx, args)
