"""BatchNorm statistics: setting running mean/var to those of given inputs, with no gradient step.

Used by AdaBN (adabn.py) and after pretraining, where the weight-averaged generator gets the
statistics of its own activations instead of the last iterate's.
"""

from __future__ import annotations

import torch
from torch import nn

from .interface import batchnorm_layers

__all__ = ["batchnorm_layers", "input_statistics", "adapt_batchnorm"]


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
