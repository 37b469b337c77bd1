"""BatchNorm statistics: re-estimating running mean/var from inputs, with no gradient step."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


def batchnorm_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_batchnorm(module: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Replace every BN layer's running statistics by those of ``module``'s activations on ``batches``.

    Uses cumulative averaging (momentum None) over all batches, so afterwards each layer's
    running mean equals the mean of its inputs over the batches (for equal-sized batches),
    and its running variance their mean unbiased batch variance. No parameter changes.
    Returns the number of batches seen. The module is left in eval mode.
    """
    layers = batchnorm_layers(module)
    saved = [(m.momentum, m.training) for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
    module.train()
    n = 0
    try:
        for x in batches:
            module(x)
            n += 1
    finally:
        for m, (momentum, _) in zip(layers, saved):
            m.momentum = momentum
        module.eval()
    return n
