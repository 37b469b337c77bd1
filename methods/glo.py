"""GLO-style fine-tuning (Bojanowski et al. 2018): G and one latent code per target image,
trained by reconstruction (L1 + perceptual, :mod:`ganlode.methods.latent`), with no discriminator.
G runs in eval mode, so one image's reconstruction never depends on the others.
"""

from __future__ import annotations

import copy

import torch

from . import seeding
from .base import FeatureFn, Source, TransferOptions
from .latent import LatentFit, mine_codes


class GLO(LatentFit):
    """G and one code per target image, trained by reconstruction (G in eval mode)."""

    def __init__(self, source: Source, images: torch.Tensor, options: TransferOptions, *, seed: int,
                 feature_fn: FeatureFn):
        generator = copy.deepcopy(source.generator).eval()
        codes = mine_codes(generator, images, feature_fn, seeding.generator(seed, "mine-codes"))
        super().__init__("glo", generator, generator.parameters(), images, codes, feature_fn,
                         lr=options.lr, batch=options.batch, seed=seed)
