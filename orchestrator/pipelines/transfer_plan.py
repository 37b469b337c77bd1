"""The check step of a transfer run: its settings, validated before anything is written.

:func:`check` turns :class:`TransferSettings` into a :class:`Plan` (the source nets, the
resolved options, the target set and the run directory) or raises a one-line
:class:`~ganlode.orchestrator.errors.UserError` naming the CLI flag at fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...methods import catalog, options, registry
from ...methods.base import NotApplicable, OptionError, Source, TransferOptions
from ...methods.interface import critic_depth
from ..artifacts import checkpoint
from ..artifacts.rundir import RunDir
from ..data.convert import Conversion, conform, target_conversion
from ..data.imageset import ImageSet
from ..data.spec import load_target
from ..errors import UserError
from ..evaluation import features
from .sources import load_source


@dataclass(frozen=True)
class TransferSettings:
    """Everything that defines a transfer run; stored in its config.json, read back by ``--resume``."""

    source: str
    target: str
    method: str
    options: dict[str, Any]  # as given (the resolved ones are recorded beside them)
    steps: int
    seed: int = 0
    eval_every: int | None = None
    features: str = "auto"  # as given; the plan resolves auto by the target (Plan.feature_kind)
    eval_n: int | None = None
    convert_target: bool = False  # --convert-target: resize/convert a target of another shape to the source's


def flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def validate_options(method: str, given: TransferOptions, *, critic_blocks: int, steps: int) -> None:
    """UserError (naming CLI flags) unless the options fit the method; the check itself is methods.options'."""
    try:
        options.check(method, given, critic_blocks=critic_blocks, steps=steps)
    except OptionError as e:
        if e.option == "method":
            raise UserError(f"unknown method {method!r}: use one of {', '.join(catalog.METHODS)}") from None
        msg = str(e)
        if e.option and msg.startswith(e.option):
            msg = flag(e.option) + msg[len(e.option):]
        if "does not apply" in msg:
            takes = ", ".join(flag(o) for o in e.allowed) or "no method options"
            hint = ("; to combine fine-tuning options use --method finetune"
                    if e.option in catalog.ACCEPTS["finetune"] and method in ("freezed", "l2sp", "distill") else "")
            msg = f"{flag(e.option)} does not apply to --method {method} (it takes {takes}){hint}"
        raise UserError(msg) from None


def check_source_critic(method: str, resolved: TransferOptions, ckpt: checkpoint.Checkpoint,
                        search: bool = False) -> None:
    """UserError when an option reads the source critic's trained weights and the source has none
    (its critic starts from scratch: a generator imported without a critic).

    ``search``: the options are a corner of a ``ganlode tune`` search space (``method`` as given to
    tune, a + combination included), and the hint says how to change the space.
    """
    use = catalog.source_critic_use(resolved.to_dict()) if ckpt.critic_from_scratch else None
    if use is None:
        return
    if use == "l2sp_on":
        hint = "fix `l2sp_on: g` in the search space (--space FILE)" if search else "anchor G alone with --l2sp-on g"
    elif search and (method == "finetune" or "+" in method):
        hint = f"search a space that leaves out {use} (--space FILE)"
    elif method == "finetune":
        hint = f"drop {flag(use)}"
    else:
        hint = "use --method finetune or minegan"
    raise UserError(f"--method {method} reads the source critic ({flag(use)} {getattr(resolved, use)}), but {ckpt.path} "
                    "has no source critic (imported without one, its critic starts from scratch): import one with "
                    f"`ganlode import torchscript FILE --critic CRITIC.ts --out CKPT`, or {hint}")


def check_target(target: ImageSet, arch, spec: str, source: str, convert: bool = False) -> Conversion | None:
    """How the target becomes images of the source's size and channels (None: it has them); without
    ``convert`` (``--convert-target``) a mismatch is a UserError naming that flag."""
    return target_conversion(target, spec, arch.channels, arch.resolution, f"source {source} makes", convert)


def eval_steps(steps: int, eval_every: int | None) -> list[int]:
    """Steps at which the model is scored: 0, every ``eval_every``, and the last."""
    every = max(1, steps // 10) if eval_every is None else eval_every
    points = {0, steps}
    if every > 0:
        points.update(range(every, steps, every))
    return sorted(points)


@dataclass
class Plan:
    """What the check step found: everything the run needs, nothing written yet."""

    settings: TransferSettings
    given: TransferOptions
    resolved: TransferOptions
    source: Source
    ckpt: checkpoint.Checkpoint
    target: ImageSet  # converted to the source's shape when ``conversion`` is set
    run: RunDir
    conversion: Conversion | None = None  # --convert-target: how the target (and its references) were converted
    feature_kind: str = "classifier"  # the evaluation features, resolved (never auto)
    reference_s: float = 0.0  # seconds the evaluation references took (set when they are built)


def check_settings(s: TransferSettings) -> TransferOptions:
    try:
        given = TransferOptions.from_dict(s.options)
    except (TypeError, ValueError) as e:
        raise UserError(f"{e}; known options: {', '.join(TransferOptions.names())}") from None
    if isinstance(s.steps, bool) or not isinstance(s.steps, int) or s.steps < 1:
        raise UserError(f"--steps must be a whole number >= 1, got {s.steps}")
    if s.eval_every is not None and s.eval_every < 0:
        raise UserError("--eval-every must be 0 (only at start and end) or more")
    if s.eval_n is not None and s.eval_n < 2:
        raise UserError(f"--eval-n must be at least 2 (FID needs two or more images), got {s.eval_n}")
    if s.features not in features.FEATURES:
        raise UserError(f"unknown features {s.features!r}: use one of {', '.join(features.FEATURES)}")
    if s.method not in catalog.METHODS:
        raise UserError(f"unknown method {s.method!r}: use one of {', '.join(catalog.METHODS)}")
    return given


def check(s: TransferSettings, out: str) -> Plan:
    given = check_settings(s)
    src, ckpt = load_source(s.source)
    try:
        registry.check_applies(s.method, src, given)
    except NotApplicable as e:
        raise UserError(f"--method {s.method} cannot adapt {ckpt.path}: {e}") from None
    blocks = critic_depth(src.critic) if src.critic is not None else 0
    validate_options(s.method, given, critic_blocks=blocks, steps=s.steps)
    resolved = options.resolve(s.method, given, src, s.steps)
    check_source_critic(s.method, resolved, ckpt)
    target_set = load_target(s.target, seed=s.seed)
    target_set, conversion = conform(target_set, s.target, ckpt.arch.channels, ckpt.arch.resolution,
                                     f"source {s.source} makes", s.convert_target)
    if s.method == "adabn" and len(target_set) < 2:
        raise UserError(f"adabn estimates statistics over the target codes and needs 2 or more images; {s.target} has 1")
    kind = features.require(s.features, tuple(target_set.images.shape))
    return Plan(s, given, resolved, src, ckpt, target_set, RunDir(out), conversion, kind)
