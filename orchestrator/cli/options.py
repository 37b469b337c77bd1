"""The options several commands share, each defined once as a click decorator.

The method options (``--lr`` ... ``--mining-steps``) are read off the method catalogue
(:mod:`ganlode.methods.catalog`: names, help, choices); their click parameter names are the
fields of :class:`~ganlode.methods.base.TransferOptions`, so a command builds one with
``TransferOptions(**take_method_options(params))``. Nothing here imports torch or Ray.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable

import click
from click.core import ParameterSource

from ...methods import catalog
from .base import Option

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

# The feature networks of the evaluation protocol and its reference splits. Their registries
# (evaluation.features, evaluation.protocol) import torch, which --help must not:
# tests/test_cli_help.py checks that these equal them.
FEATURES: tuple[str, ...] = ("auto", "classifier", "inception")
EVAL_SPLITS: tuple[str, ...] = ("val", "test")

METHOD_OPTIONS: tuple[str, ...] = tuple(catalog.OPTION_HELP)  # the fields of TransferOptions
METHOD_SECTION = "Method options (an option the method does not take is an error)"
_METHOD_TYPES: dict[str, Any] = {
    "lr": float, "batch": int, "loss": click.Choice(catalog.LOSSES), "n_critic": int, "freeze_depth": int,
    "l2sp_weight": float, "l2sp_on": click.Choice(catalog.L2SP_ON), "distill_weight": float, "mining_steps": int,
    "mine_space": click.Choice(catalog.MINE_SPACES), "cdc_weight": float, "cdc_layers": str, "probe_steps": int,
    "warmup_steps": int, "fisher_every": int, "fisher_samples": int, "importance_quantile": float,
    "prune_quantile": float,
}
_METAVARS = {"freeze_depth": "K", "l2sp_weight": "A", "distill_weight": "B", "mining_steps": "M", "cdc_weight": "W",
             "cdc_layers": "LIST", "probe_steps": "P", "warmup_steps": "S", "fisher_every": "N", "fisher_samples": "N",
             "importance_quantile": "Q", "prune_quantile": "Q"}


def flag(name: str) -> str:
    """The flag of a parameter or option field: ``freeze_depth`` -> ``--freeze-depth``."""
    return "--" + name.replace("_", "-")


def blocked_by_file(path: str) -> str | None:
    """The existing *file* among the local ``path``'s parents (None: none, or a remote path).

    ``FILE/g.png`` cannot be written when FILE is a file; saying so at parse time makes it a
    one-line usage error instead of a traceback from deep inside a write. Nothing is created.
    """
    if "://" in path:
        return None
    probe = os.path.dirname(os.path.abspath(os.path.expanduser(path)))
    while probe and not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            return None
        probe = parent
    return probe if probe and not os.path.isdir(probe) else None


def _check_out(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if isinstance(value, str) and value and not ctx.resilient_parsing:
        blocker = blocked_by_file(value)
        if blocker is not None:
            raise click.BadParameter(f"cannot write {value}: {blocker} is a file, not a folder", ctx, param)
    return value


def out(help: str, *, required: bool = False, default: str | None = None, metavar: str = "PATH") -> Decorator:
    """``--out``: where the command writes (local or s3://); a local path under a file is a usage error."""
    # No default=None for a required option: click >= 8.3 takes an explicit None as a given default.
    extra = {} if default is None else {"default": default}
    return click.option("--out", required=required, metavar=metavar, help=help, callback=_check_out, **extra)


def json_output(help: str = "print one JSON object on stdout instead of the text summary (progress and logs go to stderr)"
                ) -> Decorator:
    return click.option("--json", "as_json", is_flag=True, help=help)


def force_unlock(help: str = "remove the run's lock even if the process holding it may still be alive "
                             "(only when that process is gone)") -> Decorator:
    return click.option("--force-unlock", is_flag=True, help=help)


class Seeds(click.ParamType):
    """``--seeds``: a range ``0-99`` (inclusive), a list ``3,7``, or both ``0-9,20,30-32``; no duplicates."""

    name = "seeds"
    LIMIT = 100_000

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, ...]:
        if isinstance(value, (tuple, list)):
            value = ",".join(str(v) for v in value)
        text = str(value).strip()
        seeds: dict[int, None] = {}
        for part in text.split(","):
            part = part.strip()
            lo, sep, hi = part.partition("-")
            if not (lo.isdigit() and (hi.isdigit() if sep else True)):
                self.fail(f"{text!r} is not a range (0-99) or a list (3,7) of seeds >= 0", param, ctx)
            a, b = int(lo), int(hi) if sep else int(lo)
            if b < a:
                self.fail(f"{part!r} runs backwards: write {b}-{a}", param, ctx)
            if len(seeds) + (b - a + 1) > self.LIMIT:
                self.fail(f"{text!r} names more than {self.LIMIT} seeds", param, ctx)
            seeds.update(dict.fromkeys(range(a, b + 1)))
        return tuple(seeds)


def seed(help: str = "seed of every random draw (default 0)") -> Decorator:
    return click.option("--seed", type=int, default=0, metavar="INT", help=help)


def report_to(help: str = "also send the settings and scores to tensorboard (event files in the run directory) "
                          "or mlflow (MLFLOW_TRACKING_URI, default ./mlruns) (default none)") -> Decorator:
    from ..tracking import REPORT_TO

    return click.option("--report-to", type=click.Choice(REPORT_TO), default="none", metavar="|".join(REPORT_TO),
                        help=help)


def no_progress(help: str = "no progress bar and no per-evaluation lines") -> Decorator:
    return click.option("--no-progress", is_flag=True, help=help)


def eval_every(help: str = "score every K steps (default steps/10; 0: only at start and end)",
               default: int | None = None) -> Decorator:
    return click.option("--eval-every", type=int, default=default, metavar="K", help=help)


def eval_n(help: str = "cap on the evaluation reference size (default: the whole split)") -> Decorator:
    return click.option("--eval-n", type=int, default=None, metavar="N", help=help)


def features(help: str = "evaluation features: auto (default: the shipped classifier for 28x28 gray images, the "
                         "standard FID Inception for any other), classifier or inception") -> Decorator:
    return click.option("--features", type=click.Choice(FEATURES), default="auto", metavar="NAME", help=help)


def convert_target(help: str = "a target whose image size or channels differ from the source's is resized to its "
                               "resolution (bicubic, antialiased) and its channels converted (gray repeated into RGB, "
                               "or RGB to ITU-R 601 luma), its validation and test references too; the run records "
                               "the conversion (without it such a target is refused)") -> Decorator:
    # the flag data.convert.FLAG names in its refusal (not imported here: it loads torch)
    return click.option("--convert-target", is_flag=True, help=help)


def loss(help: str = catalog.OPTION_HELP["loss"], default: str | None = None, section: str = "Options") -> Decorator:
    return click.option("--loss", cls=Option, section=section, type=click.Choice(catalog.LOSSES), default=default,
                        metavar="LOSS", help=help)


def s3_endpoint() -> Decorator:
    return click.option("--s3-endpoint", metavar="URL",
                        help="S3-compatible endpoint for s3:// paths (default: AWS_ENDPOINT_URL, else AWS)")


def _taken_by(name: str) -> str:
    """Which methods take option ``name``, for its help: `` [finetune, freezed]``, `` [all but adabn]``."""
    takes = [r.name for r in catalog.RECORDS if name in r.accepts]
    others = [r.name for r in catalog.RECORDS if name not in r.accepts]
    if not others:
        return ""
    return f" [all but {', '.join(others)}]" if len(others) < len(takes) else f" [{', '.join(takes)}]"


def method_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Every method option of the catalogue, unset (None) unless given; the method fills the rest."""
    for name in reversed(METHOD_OPTIONS):
        help = catalog.OPTION_HELP[name] + _taken_by(name)
        if name == "loss":
            f = loss(help, section=METHOD_SECTION)(f)
            continue
        f = click.option(flag(name), name, cls=Option, section=METHOD_SECTION, type=_METHOD_TYPES[name],
                         default=None, metavar=_METAVARS.get(name), help=help)(f)
    return f


def take_method_options(params: dict[str, Any]) -> dict[str, Any]:
    """Remove the method options from a callback's ``params`` and return them by field name."""
    return {name: params.pop(name) for name in METHOD_OPTIONS}


def given(ctx: click.Context, names: Iterable[str] | None = None) -> list[str]:
    """The flags the user gave (on the command line or through the environment), among ``names``."""
    wanted = None if names is None else set(names)
    return [p.opts[0] for p in ctx.command.params
            if (wanted is None or p.name in wanted)
            and ctx.get_parameter_source(p.name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)]
