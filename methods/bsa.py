"""Batch Statistics Adaptation (BSA, Noguchi & Harada 2019).

Only three things are trained, by the reconstruction loss of glo.py (L1 + perceptual):
- every BatchNorm layer's scale and shift (gamma, beta) in the generator;
- a per-channel scale and shift of the output layer's pre-activation (tanh(s * h + t)); the
  output conv is the one layer without BatchNorm, so this gives it the same freedom
  (initialised to s = 1, t = 0: the source generator);
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

from .glo import LatentFit, mine_codes
from .nets import Generator
from .transfer import FeatureFn, Source, TransferOptions


class ScaleShiftGenerator(nn.Module):
    """z -> tanh(scale * h(z) + shift), h the generator up to its output conv (per output channel)."""

    def __init__(self, generator: Generator):
        super().__init__()
        if not isinstance(generator.up[-1], nn.Tanh) or not isinstance(generator.up[-2], nn.Conv2d):
            raise ValueError("ScaleShiftGenerator expects the generator to end in Conv2d -> Tanh")
        self.generator = generator
        channels = generator.cfg.channels
        self.scale = nn.Parameter(torch.ones(channels))
        self.shift = nn.Parameter(torch.zeros(channels))

    @property
    def latent_dim(self) -> int:
        return self.generator.latent_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        g = self.generator
        h = g.fc(z).view(z.shape[0], 2 * g.cfg.g_width, g.start, g.start)
        h = g.up[:-1](h)
        return torch.tanh(h * self.scale.view(1, -1, 1, 1) + self.shift.view(1, -1, 1, 1))

    @torch.no_grad()
    def folded(self) -> Generator:
        """A plain generator equal to this module: the scale/shift written into the output conv."""
        out = copy.deepcopy(self.generator)
        conv = out.up[-2]
        conv.weight.mul_(self.scale.view(-1, 1, 1, 1))
        conv.bias.mul_(self.scale).add_(self.shift)
        return out


def batchnorm_affine_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The scale and shift (weight, bias) of every BatchNorm layer in ``module``."""
    return [p for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for p in (m.weight, m.bias) if p is not None]


class BSA(LatentFit):
    def __init__(self, source: Source, images: torch.Tensor, options: TransferOptions, *, seed: int,
                 feature_fn: FeatureFn):
        generator = copy.deepcopy(source.generator).eval()
        net = ScaleShiftGenerator(generator)
        trained = batchnorm_affine_parameters(generator) + [net.scale, net.shift]
        trained_ids = {id(p) for p in trained}
        for p in generator.parameters():
            p.requires_grad_(id(p) in trained_ids)
        codes = mine_codes(generator, images, feature_fn, torch.Generator().manual_seed(seed))
        super().__init__("bsa", net, trained, images, codes, feature_fn, lr=options.lr, batch=options.batch, seed=seed)

    def _generator_for_export(self) -> Generator:
        return self.net.folded()
