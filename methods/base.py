"""What every single-source transfer method shares: its inputs, its options and its adapter.

Every method is built by :func:`ganlode.methods.registry.build` from the same inputs (a
:class:`Source`, the target images, resolved :class:`TransferOptions`, a seed) and returns an
:class:`Adapter`:

- ``step()`` does one unit of training and returns its losses;
- ``sampling_generator()`` is the adapted model as it stands: a module with ``latent_dim``
  that maps standard normal latents to images (call it in eval mode), so one evaluation
  protocol scores every method;
- ``export()`` is what a checkpoint stores (:class:`Export`);
- ``state_dict()`` / ``load_state_dict()`` hold everything a resumed run needs to continue
  bit for bit (weights, optimizer moments, RNG states, step counters and phase);
- ``record()`` is the resolved settings the run logs.

A "step" is one generator update (after ``n_critic`` critic updates) for the adversarial
methods, and one optimiser update of codes/weights for adabn, bsa and glo.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable

import torch
from torch import nn


FeatureFn = Callable[[torch.Tensor], torch.Tensor]  # images in [-1, 1] -> N x d, differentiable


@dataclass(frozen=True)
class TransferOptions:
    """Method options; ``None`` means "not given" (:func:`ganlode.methods.options.resolve` fills defaults)."""

    lr: float | None = None
    batch: int | None = None
    loss: str | None = None
    n_critic: int | None = None
    freeze_depth: int | None = None
    l2sp_weight: float | None = None
    l2sp_on: str | None = None
    distill_weight: float | None = None
    mining_steps: int | None = None
    mine_space: str | None = None
    cdc_weight: float | None = None
    cdc_layers: str | None = None
    probe_steps: int | None = None
    warmup_steps: int | None = None
    fisher_every: int | None = None
    fisher_samples: int | None = None
    importance_quantile: float | None = None
    prune_quantile: float | None = None

    def given(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TransferOptions":
        unknown = sorted(set(d) - set(cls.names()))
        if unknown:
            raise OptionError(f"unknown transfer option(s): {', '.join(unknown)}", option=unknown[0],
                              allowed=cls.names())
        return cls(**d)


class OptionError(ValueError):
    """An option that does not belong to a method, a missing one, or a bad value.

    ``option`` is the option's field name (the CLI maps it to its flag), ``reason`` the rest of
    the message, ``allowed`` what would be accepted (when that is a list).
    """

    def __init__(self, message: str, option: str | None = None, allowed: tuple[str, ...] = ()):
        super().__init__(message)
        self.option = option
        self.allowed = tuple(allowed)


class NotApplicable(ValueError):
    """A method that cannot serve an architecture; the message says why in one line."""


@dataclass(frozen=True)
class Source:
    """What a transfer starts from: the source nets (never modified) and how they were trained."""

    generator: nn.Module
    critic: nn.Module | None
    train: dict[str, Any] = field(default_factory=dict)  # the source's TrainConfig as a dict

    @property
    def loss(self) -> str:
        return self.train.get("loss", "wgan-gp")


@dataclass
class Export:
    """What a checkpoint of an adapted model holds.

    ``kind`` names the loader (``gan``: a plain generator sampled with N(0, I) latents;
    ``minegan``: generator plus a miner under ``extra["miner.*"]``). ``extra`` may hold
    ``latent_mean``/``latent_chol``; with ``config["latent_affine"]`` true the loader samples
    G(mean + chol eps) (an architecture that cannot fold that map into its first layer).
    """

    kind: str
    generator: nn.Module
    critic: nn.Module | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


class Adapter(abc.ABC):
    """One transfer run's state."""

    method: str = ""

    @property
    @abc.abstractmethod
    def steps_done(self) -> int:
        """Training steps taken so far."""

    @abc.abstractmethod
    def step(self) -> dict[str, float]:
        """One training step; returns losses as floats."""

    @abc.abstractmethod
    def sampling_generator(self) -> nn.Module:
        """The adapted model: N(0, I) latents of size ``.latent_dim`` -> images in [-1, 1]."""

    @abc.abstractmethod
    def export(self) -> Export:
        """The adapted model as checkpoint contents."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """The full training state: tensors, numbers and nested dicts only (weights_only-safe)."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` into a freshly built adapter of the same configuration."""

    def record(self) -> dict[str, Any]:
        """The resolved settings to log with the run (method-specific keys)."""
        return {"method": self.method}
