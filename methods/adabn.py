"""AdaBN (Li et al. 2016) for a generator: re-estimate BatchNorm statistics on target-domain inputs.

What it adapts in a GAN. In a classifier, AdaBN recomputes each BatchNorm layer's mean and
variance from target images. A generator's BatchNorm layers normalise G's own activations, and
G's inputs are latents, so "target-domain inputs" are latents whose images look like the
target. We take them from inversion: one code per target image, fitted by the reconstruction
loss of glo.py (L1 + perceptual) with G's weights frozen and BatchNorm in batch-statistics
mode over the whole code set (every step forwards all codes together). Then, with no gradient
step on any weight, each BatchNorm layer's running mean and variance are set to the mean and
(biased) variance of its inputs when all codes go through G. Afterwards the eval-mode
generator maps the codes to exactly the images the batch-statistics generator made while the
codes were fitted, and no weight (BatchNorm scale/shift included) differs from the source.

New images: the code Gaussian of glo.py, folded into the saved generator.
"""

from __future__ import annotations

import copy

import torch

from torch import nn

from . import seeding
from .base import FeatureFn, Source, TransferOptions
from .bn import adapt_batchnorm
from .latent import LatentFit, mine_codes


class AdaBN(LatentFit):
    """Invert the target into codes (weights frozen, batch statistics), then adapt BN statistics."""

    def __init__(self, source: Source, images: torch.Tensor, options: TransferOptions, *, seed: int,
                 feature_fn: FeatureFn):
        generator = copy.deepcopy(source.generator).eval().requires_grad_(False)
        codes = mine_codes(generator, images, feature_fn, seeding.generator(seed, "mine-codes"))
        super().__init__("adabn", generator, [], images, codes, feature_fn, lr=options.lr, batch=None, seed=seed,
                         train_mode=True)

    def adapted_net(self) -> nn.Module:
        return adapt_batchnorm(copy.deepcopy(self.net), self.codes.detach())
