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

from .glo import LatentFit, mine_codes
from .nets import Generator
from .transfer import FeatureFn, Source, TransferOptions


def batchnorm_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def input_statistics(generator: nn.Module, latents: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(mean, biased variance) per channel of every BatchNorm layer's input on one batch of latents.

    The generator runs in train mode (batch statistics), as during AdaBN's code fitting.
    """
    stats: list[tuple[torch.Tensor, torch.Tensor]] = []

    def hook(module, inputs):
        x = inputs[0]
        dims = [0] + list(range(2, x.dim()))
        stats.append((x.mean(dims), x.var(dims, unbiased=False)))

    layers = batchnorm_layers(generator)
    handles = [m.register_forward_pre_hook(hook) for m in layers]
    was_training = generator.training
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in layers]
    try:
        generator.train()
        generator(latents)
    finally:
        for h in handles:
            h.remove()
        for m, (rm, rv, nb) in zip(layers, saved):  # this measurement must not move the buffers
            m.running_mean.copy_(rm)
            m.running_var.copy_(rv)
            m.num_batches_tracked.copy_(nb)
        generator.train(was_training)
    return stats


@torch.no_grad()
def adapt_batchnorm(generator: nn.Module, latents: torch.Tensor) -> nn.Module:
    """Set every BatchNorm layer's running statistics to those of its inputs on ``latents``.

    Runs no gradient step and changes no parameter; returns ``generator`` (in eval mode).
    """
    stats = input_statistics(generator, latents)
    for m, (mean, var) in zip(batchnorm_layers(generator), stats):
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)
    return generator.eval()


class AdaBN(LatentFit):
    """Invert the target into codes (weights frozen, batch statistics), then adapt BN statistics."""

    def __init__(self, source: Source, images: torch.Tensor, options: TransferOptions, *, seed: int,
                 feature_fn: FeatureFn):
        generator = copy.deepcopy(source.generator).eval().requires_grad_(False)
        codes = mine_codes(generator, images, feature_fn, torch.Generator().manual_seed(seed))
        super().__init__("adabn", generator, [], images, codes, feature_fn, lr=options.lr, batch=None, seed=seed,
                         train_mode=True)

    def adapted_net(self) -> Generator:
        return adapt_batchnorm(copy.deepcopy(self.net), self.codes.detach())
