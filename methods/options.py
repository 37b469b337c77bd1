"""Checking and resolving a method's options against its :class:`~ganlode.methods.registry.MethodSpec`.

Validation is written once, here: every error is an :class:`OptionError` naming the option's
field, so the CLI only maps field names to flags.
"""

from __future__ import annotations

from dataclasses import replace

from . import losses
from .base import OptionError, Source, TransferOptions
from .catalog import DEFAULT_TRANSFER_LR, L2SP_ON, MINE_SPACES, defaults
from .interface import critic_depth
from .registry import spec

__all__ = ["check", "resolve", "defaults", "DEFAULT_TRANSFER_LR"]


def check(method: str, options: TransferOptions, *, critic_blocks: int, steps: int) -> None:
    """Raise :class:`OptionError` unless ``options`` fit ``method`` (names are field names)."""
    s = spec(method)
    for name in options.given():
        if name not in s.accepts:
            raise OptionError(f"{name} does not apply to method {method}", option=name, allowed=tuple(sorted(s.accepts)))
    o = options
    if o.lr is not None and not o.lr > 0:
        raise OptionError(f"lr must be > 0, got {o.lr}", option="lr")
    if o.batch is not None and o.batch < 1:
        raise OptionError(f"batch must be >= 1, got {o.batch}", option="batch")
    if o.n_critic is not None and o.n_critic < 1:
        raise OptionError(f"n_critic must be >= 1, got {o.n_critic}", option="n_critic")
    if o.loss is not None and o.loss not in losses.LOSSES:
        raise OptionError(f"loss must be one of {', '.join(losses.LOSSES)}, got {o.loss!r}", option="loss",
                          allowed=losses.LOSSES)
    if o.freeze_depth is not None:
        low = 1 if method == "freezed" else 0
        if not low <= o.freeze_depth <= critic_blocks:
            raise OptionError(f"freeze_depth {o.freeze_depth} is out of range: the critic has {critic_blocks} blocks, "
                              f"so use {low}..{critic_blocks}", option="freeze_depth")
    for name in ("l2sp_weight", "distill_weight"):
        v = getattr(o, name)
        if v is not None and not v >= 0:
            raise OptionError(f"{name} must be >= 0, got {v}", option=name)
    if o.l2sp_on is not None and o.l2sp_on not in L2SP_ON:
        raise OptionError(f"l2sp_on must be one of {', '.join(L2SP_ON)}, got {o.l2sp_on!r}", option="l2sp_on",
                          allowed=L2SP_ON)
    if o.mining_steps is not None and not 0 <= o.mining_steps <= steps:
        raise OptionError(f"mining_steps {o.mining_steps} must lie in 0..steps ({steps})", option="mining_steps")
    for name in ("probe_steps", "warmup_steps"):
        v = getattr(o, name)
        if v is not None and not 0 <= v <= steps:
            raise OptionError(f"{name} {v} must lie in 0..steps ({steps})", option=name)
    for name in ("fisher_every", "fisher_samples"):
        v = getattr(o, name)
        if v is not None and v < 1:
            raise OptionError(f"{name} must be >= 1, got {v}", option=name)
    if o.cdc_weight is not None and not o.cdc_weight >= 0:
        raise OptionError(f"cdc_weight must be >= 0, got {o.cdc_weight}", option="cdc_weight")
    for name in ("importance_quantile", "prune_quantile"):
        v = getattr(o, name)
        if v is not None and not 0 <= v <= 100:
            raise OptionError(f"{name} is a percentile and must lie in 0..100, got {v}", option=name)
    if o.prune_quantile is not None and o.importance_quantile is not None and o.prune_quantile > o.importance_quantile:
        raise OptionError(f"prune_quantile {o.prune_quantile} is above importance_quantile {o.importance_quantile}: "
                          "pruned filters are the least important ones", option="prune_quantile")
    mine_space = o.mine_space
    if mine_space is not None and mine_space not in MINE_SPACES:
        raise OptionError(f"mine_space must be one of {', '.join(MINE_SPACES)}, got {mine_space!r}",
                          option="mine_space", allowed=MINE_SPACES)


def resolve(method: str, options: TransferOptions, source: Source, steps: int) -> TransferOptions:
    """Fill every option the method uses with its default; options it does not use stay None."""
    loss = options.loss or source.loss
    blocks = critic_depth(source.critic) if source.critic is not None else None
    filled = defaults(method, loss=loss, steps=steps, critic_blocks=blocks)
    filled.update({k: v for k, v in options.given().items() if k in filled})
    return replace(TransferOptions(), **filled)

