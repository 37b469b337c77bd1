"""Config files: ``RUN/run.yaml`` (what a run ran with) and ``--config FILE.yaml`` (run it again).

Every successful ``transfer``, ``mine``, ``tune`` and ``pretrain`` writes ``RUN/run.yaml``: the
command's options as click resolved them (defaults included), one key per option, named by its
flag without the dashes (``freeze-depth: 2``, ``source: [zoo:a, zoo:b]``). ``--config FILE``
reads such a file (or one written by hand) into click's ``default_map`` before the other options
are parsed, so a flag given beside it wins (``--config RUN/run.yaml --out runs/again``), and a
key that is no option of the command is a usage error naming it.

The file is written once the run has finished, under the run's lock. Left out of ``run.yaml``: ``--config`` itself, ``--force-unlock`` (never replayed) and ``--resume``
(a re-run is a new run). A run continued with ``transfer --resume`` or ``tune --resume`` writes
none: those commands take their settings from the stored run, not from options.

Nothing here imports torch or Ray; PyYAML is imported when a file is read or written.
"""

from __future__ import annotations

import difflib
from typing import Any

import click

from .base import Option

RUN_CONFIG_FILE = "run.yaml"
NOT_WRITTEN = ("config", "force_unlock", "resume")
META = "ganlode.config"  # ctx.meta key: the config file a command line loaded


def _key(param: click.Parameter) -> str:
    """A parameter's key in a config file: its longest flag without the dashes (``--freeze-depth``: ``freeze-depth``)."""
    flags = [o for o in param.opts if o.startswith("--")]
    return max(flags, key=len)[2:] if flags else str(param.name)


def _options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option) and p.name and p.expose_value]


def keys_of(command: click.Command) -> dict[str, str]:
    """Every spelling a config file may use for an option of ``command`` -> its click parameter name:
    the flag (``freeze-depth``, ``source``), its underscore form and the parameter name (``sources``)."""
    out: dict[str, str] = {}
    for p in _options(command):
        if p.name in ("config",):
            continue
        for flag in (o for o in p.opts if o.startswith("--")):
            out[flag[2:]] = p.name
            out[flag[2:].replace("-", "_")] = p.name
        out[p.name] = p.name
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def document(ctx: click.Context) -> dict[str, Any]:
    """The resolved options of ``ctx`` as a config mapping (flag names as keys, in the command's order)."""
    return {_key(p): _plain(ctx.params[p.name]) for p in _options(ctx.command)
            if p.name in ctx.params and p.name not in NOT_WRITTEN}


def dump(doc: dict[str, Any], command_path: str) -> bytes:
    import yaml

    head = f"# {command_path} --config THIS_FILE [--out NEW] re-runs these settings; a flag given beside it wins\n"
    return (head + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)).encode("utf-8")


def write_run_config(ctx: click.Context, run: str) -> str | None:
    """Write ``RUN/run.yaml`` with the resolved options of ``ctx``; returns its path (None: there is
    no directory ``run`` to write into, e.g. a pipeline stood in for by a test).

    The run's lock is taken for the write, as for every write into a run directory.
    """
    from .. import storage
    from ..pipelines.ownership import owning

    if not storage.exists(run):
        return None
    path = storage.join(run, RUN_CONFIG_FILE)
    with owning(run):
        storage.write_bytes_atomic(path, dump(document(ctx), ctx.command_path))
    return path


def _read(path: str, ctx: click.Context, param: click.Parameter) -> dict[str, Any]:
    import yaml

    from .. import storage
    from ..errors import UserError

    try:
        raw = storage.read_bytes(path)
    except UserError as e:
        raise click.BadParameter(str(e), ctx, param) from None
    except OSError as e:
        raise click.BadParameter(f"cannot read {path}: {e.strerror or e}", ctx, param) from None
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise click.BadParameter(f"{path} is not valid YAML{at}: fix it or write it again", ctx, param) from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise click.BadParameter(f"{path} must be a mapping of option names to values (like RUN/{RUN_CONFIG_FILE}), "
                                 f"not a {type(doc).__name__}", ctx, param)
    return doc


def load(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--config`` callback (eager): put the file's values into ``ctx.default_map``."""
    if not value or ctx.resilient_parsing:
        return value
    doc = _read(value, ctx, param)
    known = keys_of(ctx.command)
    defaults: dict[str, Any] = {}
    for key, v in doc.items():
        name = known.get(str(key))
        if name is None:
            close = difflib.get_close_matches(str(key), sorted(k for k in known if "_" not in k), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; the options of `{ctx.command_path}` are in its --help"
            raise click.BadParameter(f"{value}: unknown option {str(key)!r}{hint}", ctx, param)
        if v is not None:  # null: the option's own default
            defaults[name] = v
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    ctx.meta[META] = value
    return value


def config_option(f):
    """``--config FILE``: options from a YAML file (e.g. a run's ``run.yaml``); flags given beside it win."""
    return click.option("--config", "config", cls=Option, metavar="FILE.yaml", is_eager=True, expose_value=False,
                        callback=load, help=f"read the options from a YAML file, e.g. a run's RUN/{RUN_CONFIG_FILE}; "
                                            "flags given beside it win")(f)


def loaded_from(ctx: click.Context) -> str | None:
    """The ``--config`` file this command line read, or None."""
    return ctx.meta.get(META)
