"""The interface every method talks to: a generator, a critic, and optional capabilities.

A **generator** is an ``nn.Module`` with ``latent_dim``, ``resolution``, ``channels`` and
``num_classes`` (0 when unconditional) that maps standard-normal latents (B x latent_dim) to
images (B x channels x resolution x resolution) in [-1, 1].

A **critic** is an ``nn.Module`` mapping images to scores (B,) that exposes its ordered
``blocks`` (lowest first, from the image side: freeze depth k means ``blocks[:k]``) and
``features(x)``, the list of every block's output, lowest first.

Methods use nothing else. An architecture may offer optional capabilities, which a method
checks for by name and, when missing, either does without or refuses in one line:

- ``pre_output(z)`` / ``fold_output_affine(scale, shift)``: the output layer's pre-activation,
  and a copy with a per-channel scale/shift written into that layer (BSA's output scale/shift);
- ``fold_latent_affine(mean, chol)``: a copy whose output on eps equals G(mean + chol eps)
  (GLO, BSA and AdaBN then export a plain generator; without it the export carries the map);
- ``feature_layers()``: the generator's layers whose outputs are its intermediate features,
  latent side first (CDC's distance consistency reads them);
- ``FILTER_AXIS`` on a layer class of the architecture's own: the output-filter axis of its
  ``weight`` (AdAM and RICK score and constrain filters; ``methods/kernels.py`` knows torch's).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

GENERATOR_ATTRS = ("latent_dim", "resolution", "channels", "num_classes")


@runtime_checkable
class GeneratorLike(Protocol):
    latent_dim: int
    resolution: int
    channels: int
    num_classes: int

    def __call__(self, z: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class CriticLike(Protocol):
    blocks: nn.ModuleList

    def features(self, x: torch.Tensor) -> list[torch.Tensor]: ...

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


class ConfigShape:
    """``resolution`` and ``channels`` of the images a net makes or reads, from its ``cfg``."""

    cfg: Any

    @property
    def resolution(self) -> int:
        return self.cfg.resolution

    @property
    def channels(self) -> int:
        return self.cfg.channels


class ConfigGenerator(ConfigShape):
    """The generator interface's attributes from ``cfg``: ``latent_dim`` is the config's
    ``LATENT_FIELD``; ``num_classes`` is 0 (an unconditional generator)."""

    LATENT_FIELD = "latent_dim"

    @property
    def latent_dim(self) -> int:
        return getattr(self.cfg, self.LATENT_FIELD)

    @property
    def num_classes(self) -> int:
        return 0


class BlockFeatures:
    """``features(x)`` of a critic whose ``blocks`` run in sequence: every block's output, lowest first."""

    blocks: Any

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats


class InterfaceError(ValueError):
    """A model that lacks what the interface (or a method) needs; the message is one line."""


def check_generator(generator: nn.Module, what: str = "generator") -> None:
    missing = [a for a in GENERATOR_ATTRS if not hasattr(generator, a)]
    if missing:
        raise InterfaceError(f"the {what} ({type(generator).__name__}) lacks {', '.join(missing)}: a generator "
                             f"must expose {', '.join(GENERATOR_ATTRS)}")


def check_critic(critic: nn.Module, what: str = "critic") -> None:
    if not isinstance(getattr(critic, "blocks", None), (nn.ModuleList, nn.Sequential, list, tuple)) \
            or not callable(getattr(critic, "features", None)):
        raise InterfaceError(f"the {what} ({type(critic).__name__}) must expose ordered `blocks` and `features(x)`")


def critic_depth(critic: nn.Module) -> int:
    """How many blocks the critic has: the largest freeze depth."""
    check_critic(critic)
    return len(critic.blocks)


def has_capability(model: nn.Module, name: str) -> bool:
    return callable(getattr(model, name, None))


def batchnorm_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
