"""Drawing from a stored model with the truncation trick, one seed per image (``ganlode sample``).

Truncation: every model here draws its latents z ~ N(0, I); with ``psi`` it draws them as
``z * psi`` instead, i.e. toward the mean latent (0): ``psi < 1`` trades variety for typical
images, ``psi = 1`` is the model itself. Where the latent passes through a fitted map first,
the scaling is applied before it, so it pulls toward that map's own centre: the fitted code
Gaussian of adabn/bsa/glo (``mean + L (psi * eps)``) and the miners' input ``u`` of minegan and
mined models. An architecture with a mapping network (z -> w) would truncate toward its mean
``w`` instead (``w_mean + psi * (w - w_mean)``); none ships yet.

Per seed: image ``s`` is drawn alone from ``torch.Generator().manual_seed(s)``, so it does not
depend on which other seeds are asked for, and the same seed always gives the same image.
"""

from __future__ import annotations

import torch
from torch import nn

from ...methods.multisource import MinedMixture
from .loaders import LoadedModel
from .sampling import Sampler, generator_sampler


class _Truncated(nn.Module):
    """``module(psi * z)``: the same generator with its latents scaled."""

    def __init__(self, module: nn.Module, psi: float):
        super().__init__()
        self.module = module
        self.psi = float(psi)

    @property
    def latent_dim(self) -> int:
        return self.module.latent_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.module(z * self.psi)


def truncated_sampler(model: LoadedModel, psi: float = 1.0) -> Sampler:
    """The model's sampler with its latents scaled by ``psi`` (1: the model's own sampler)."""
    if psi == 1.0:
        return model.sampler
    module = model.module
    if isinstance(module, MinedMixture):  # same source choice per row, u scaled
        return MinedMixture([_Truncated(s, psi) for s in module.sources], module.shares).eval().sample
    if module is None or not hasattr(module, "latent_dim"):
        raise ValueError(f"{model.path}: this model kind cannot be truncated (no latent input)")
    return generator_sampler(_Truncated(module, psi).eval())


def num_classes(model: LoadedModel) -> int:
    """The classes a model's generator is conditioned on (0: unconditional), over every sub-network."""
    if model.module is None:
        return 0
    return max((int(getattr(m, "num_classes", 0) or 0) for m in model.module.modules()), default=0)


def sample_seed(sampler: Sampler, seed: int) -> torch.Tensor:
    """One image (1 x C x H x W in [-1, 1]) drawn from its own ``torch.Generator().manual_seed(seed)``."""
    return sampler(1, torch.Generator().manual_seed(seed))
