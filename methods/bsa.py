"""Batch Statistics Adaptation (BSA, Noguchi & Harada 2019).

Only three things are trained, by the reconstruction loss of glo.py (L1 + perceptual):
- every BatchNorm layer's scale and shift (gamma, beta) in the generator;
- a per-channel scale and shift of the output layer's pre-activation (tanh(s * h + t)); the
  output conv is the one layer without BatchNorm, so this gives it the same freedom
  (initialised to s = 1, t = 0: the source generator). This needs the architecture's
  ``pre_output``/``fold_output_affine`` capabilities; without them only the normalisation
  layers' scale/shift and the codes are trained;
- one latent code per target image.
Every other weight and every BatchNorm running statistic stays as in the source: G runs in eval
mode, so BatchNorm is the source's normalisation followed by the adapted scale/shift.

The saved generator folds the output scale/shift into the last conv (exact) and the code
Gaussian into the first layer (see glo.py), so it is a plain generator.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from . import seeding
from .base import FeatureFn, Source, TransferOptions
from .interface import batchnorm_layers, has_capability
from .latent import LatentFit, mine_codes


class ScaleShiftGenerator(nn.Module):
    """z -> tanh(scale * h(z) + shift), h = ``generator.pre_output`` (per output channel)."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        if not (has_capability(generator, "pre_output") and has_capability(generator, "fold_output_affine")):
            raise ValueError(f"{type(generator).__name__} offers no pre_output/fold_output_affine")
        self.generator = generator
        self.scale = nn.Parameter(torch.ones(generator.channels))
        self.shift = nn.Parameter(torch.zeros(generator.channels))

    @property
    def latent_dim(self) -> int:
        return self.generator.latent_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.generator.pre_output(z)
        return torch.tanh(h * self.scale.view(1, -1, 1, 1) + self.shift.view(1, -1, 1, 1))

    @torch.no_grad()
    def folded(self) -> nn.Module:
        """A plain generator equal to this module: the scale/shift written into the output layer."""
        return self.generator.fold_output_affine(self.scale, self.shift)


def batchnorm_affine_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The scale and shift (weight, bias) of every BatchNorm layer in ``module``."""
    return [p for m in batchnorm_layers(module) for p in (m.weight, m.bias) if p is not None]


class BSA(LatentFit):
    def __init__(self, source: Source, images: torch.Tensor, options: TransferOptions, *, seed: int,
                 feature_fn: FeatureFn):
        generator = copy.deepcopy(source.generator).eval()
        trained = batchnorm_affine_parameters(generator)
        if not trained:
            raise ValueError(f"bsa adapts normalisation scale/shift, and {type(generator).__name__} has none")
        self.output_affine = has_capability(generator, "pre_output") and has_capability(generator, "fold_output_affine")
        net = ScaleShiftGenerator(generator) if self.output_affine else generator
        if self.output_affine:
            trained = trained + [net.scale, net.shift]
        trained_ids = {id(p) for p in trained}
        for p in generator.parameters():
            p.requires_grad_(id(p) in trained_ids)
        codes = mine_codes(generator, images, feature_fn, seeding.generator(seed, "mine-codes"))
        super().__init__("bsa", net, trained, images, codes, feature_fn, lr=options.lr, batch=options.batch, seed=seed)

    def _generator_for_export(self) -> nn.Module:
        return self.net.folded() if self.output_affine else self.net
