"""The shared interface of the single-source transfer methods.

Every method is built by :func:`build` from the same inputs (a :class:`Source`, the target
images, resolved :class:`TransferOptions`, a seed) and returns an :class:`Adapter`:

- ``step()`` does one unit of training and returns its losses;
- ``sampling_generator()`` is the adapted model as it stands: a module with ``latent_dim``
  that maps standard normal latents to images (call it in eval mode), so one evaluation
  protocol scores every method;
- ``export()`` is what a checkpoint stores (:class:`Export`).

A "step" is one generator update (after ``n_critic`` critic updates) for the adversarial
methods, and one optimiser update of codes/weights for adabn, bsa and glo.

Which options belong to which method is written down once here (``ACCEPTS``/``REQUIRES``);
freeze_depth, l2sp_weight and distill_weight are options of the one fine-tuning loop:
``freezed``, ``l2sp`` and ``distill`` each require their own option, ``finetune`` accepts all
three together.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable

import torch
from torch import nn

from .nets import Critic, Generator

FeatureFn = Callable[[torch.Tensor], torch.Tensor]  # images in [-1, 1] -> N x d, differentiable

METHODS = ("scratch", "finetune", "freezed", "l2sp", "distill", "adabn", "bsa", "glo", "minegan")
ADVERSARIAL = ("scratch", "finetune", "freezed", "l2sp", "distill", "minegan")
LATENT = ("adabn", "bsa", "glo")  # methods that fit one latent code per target image
NEEDS_CRITIC = ("finetune", "freezed", "l2sp", "distill", "minegan")

_GAN = frozenset({"lr", "batch", "loss", "n_critic"})
ACCEPTS: dict[str, frozenset[str]] = {
    "scratch": _GAN,
    "finetune": _GAN | {"freeze_depth", "l2sp_weight", "l2sp_on", "distill_weight"},
    "freezed": _GAN | {"freeze_depth"},
    "l2sp": _GAN | {"l2sp_weight", "l2sp_on"},
    "distill": _GAN | {"distill_weight"},
    "minegan": _GAN | {"mining_steps"},
    "adabn": frozenset({"lr"}),  # the codes are fitted on the whole target set at once
    "bsa": frozenset({"lr", "batch"}),
    "glo": frozenset({"lr", "batch"}),
}
REQUIRES: dict[str, frozenset[str]] = {
    "freezed": frozenset({"freeze_depth"}),
    "l2sp": frozenset({"l2sp_weight"}),
    "distill": frozenset({"distill_weight"}),
}
L2SP_ON = ("g", "d", "both")
# Default learning rates: scratch as pretraining; transfer more gently; latent fits faster.
DEFAULT_LR = {"scratch": 2e-4, "adabn": 1e-2, "bsa": 1e-2, "glo": 1e-3}
DEFAULT_TRANSFER_LR = 1e-4


@dataclass(frozen=True)
class TransferOptions:
    """Method options; ``None`` means "not given" (see :func:`resolve_options` for defaults)."""

    lr: float | None = None
    batch: int | None = None
    loss: str | None = None
    n_critic: int | None = None
    freeze_depth: int | None = None
    l2sp_weight: float | None = None
    l2sp_on: str | None = None
    distill_weight: float | None = None
    mining_steps: int | None = None

    def given(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TransferOptions":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown transfer option(s): {', '.join(unknown)}")
        return cls(**d)


class OptionError(ValueError):
    """An option that does not belong to a method, a missing required one, or a bad value."""

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option


def check_options(method: str, options: TransferOptions, *, critic_blocks: int, steps: int) -> None:
    """Raise :class:`OptionError` unless ``options`` fit ``method`` (names are field names)."""
    if method not in METHODS:
        raise OptionError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    given = options.given()
    for name in given:
        if name not in ACCEPTS[method]:
            raise OptionError(f"{name} does not apply to method {method}", option=name)
    for name in REQUIRES.get(method, ()):
        if name not in given:
            raise OptionError(f"{name} is required by method {method}", option=name)
    o = options
    if o.lr is not None and not o.lr > 0:
        raise OptionError(f"lr must be > 0, got {o.lr}", option="lr")
    if o.batch is not None and o.batch < 1:
        raise OptionError(f"batch must be >= 1, got {o.batch}", option="batch")
    if o.n_critic is not None and o.n_critic < 1:
        raise OptionError(f"n_critic must be >= 1, got {o.n_critic}", option="n_critic")
    if o.loss is not None and o.loss not in ("wgan-gp", "ns-r1"):
        raise OptionError(f"loss must be wgan-gp or ns-r1, got {o.loss!r}", option="loss")
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
        raise OptionError(f"l2sp_on must be one of {', '.join(L2SP_ON)}, got {o.l2sp_on!r}", option="l2sp_on")
    if o.mining_steps is not None and not 0 <= o.mining_steps <= steps:
        raise OptionError(f"mining_steps {o.mining_steps} must lie in 0..steps ({steps})", option="mining_steps")


@dataclass(frozen=True)
class Source:
    """What a transfer starts from: the source nets (never modified) and how they were trained."""

    generator: Generator
    critic: Critic | None
    train: dict[str, Any] = field(default_factory=dict)  # the source's TrainConfig as a dict

    @property
    def loss(self) -> str:
        return self.train.get("loss", "wgan-gp")


def resolve_options(method: str, options: TransferOptions, source: Source, steps: int) -> TransferOptions:
    """Fill every option the method uses with its default; options it does not use stay None."""
    accepts = ACCEPTS[method]
    o = options
    loss = o.loss or source.loss
    defaults: dict[str, Any] = {
        "lr": DEFAULT_LR.get(method, DEFAULT_TRANSFER_LR),
        "batch": 64,
        "loss": loss,
        "n_critic": 5 if loss == "wgan-gp" else 1,
        "freeze_depth": 0,
        "l2sp_weight": 0.0,
        "l2sp_on": "both",
        "distill_weight": 0.0,
        "mining_steps": steps // 2,
    }
    filled = {k: (getattr(o, k) if getattr(o, k) is not None else defaults[k]) for k in accepts}
    return replace(TransferOptions(), **filled)


@dataclass
class Export:
    """What a checkpoint of an adapted model holds.

    ``kind`` names the loader (``gan``: a plain generator sampled with N(0, I) latents;
    ``minegan``: generator plus a miner under ``extra["miner.*"]``).
    """

    kind: str
    generator: Generator
    critic: Critic | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


class Adapter(abc.ABC):
    """One transfer run's state."""

    method: str = ""
    steps_done: int = 0

    @abc.abstractmethod
    def step(self) -> dict[str, float]:
        """One training step; returns losses as floats."""

    @abc.abstractmethod
    def sampling_generator(self) -> nn.Module:
        """The adapted model: N(0, I) latents of size ``.latent_dim`` -> images in [-1, 1]."""

    @abc.abstractmethod
    def export(self) -> Export:
        """The adapted model as checkpoint contents."""


def build(
    method: str,
    source: Source,
    images: torch.Tensor,
    options: TransferOptions,
    *,
    seed: int,
    feature_fn: FeatureFn | None = None,
) -> Adapter:
    """Build the adapter of ``method``. ``options`` must be resolved (:func:`resolve_options`).

    Args:
        method: one of ``METHODS``.
        source: the source nets; they are copied, never changed.
        images: the target set, N x C x H x W in [-1, 1].
        options: resolved options.
        seed: fixes initialisation and every random draw of the run.
        feature_fn: differentiable image features for the perceptual loss (adabn, bsa, glo).
    """
    if method in LATENT and feature_fn is None:
        raise ValueError(f"method {method} needs a feature_fn for its perceptual loss")
    if method in NEEDS_CRITIC and source.critic is None:
        raise ValueError(f"method {method} starts from the source critic, but the source has none")
    if method in ("scratch", "finetune", "freezed", "l2sp", "distill"):
        from .finetune import FineTune

        return FineTune(method, source, images, options, seed=seed)
    if method == "minegan":
        from .minegan import MineGAN

        return MineGAN(source, images, options, seed=seed)
    if method == "adabn":
        from .adabn import AdaBN

        return AdaBN(source, images, options, seed=seed, feature_fn=feature_fn)
    if method == "bsa":
        from .bsa import BSA

        return BSA(source, images, options, seed=seed, feature_fn=feature_fn)
    if method == "glo":
        from .glo import GLO

        return GLO(source, images, options, seed=seed, feature_fn=feature_fn)
    raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")


def seeded_init(seed: int, make: Callable[[], Any]) -> Any:
    """Run ``make`` (which builds modules) with torch's global RNG seeded, then restore it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()
