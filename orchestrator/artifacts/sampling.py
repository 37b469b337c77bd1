"""A sampler: ``sampler(n, torch.Generator) -> n images in [-1, 1]``, the one interface every
stored model is evaluated and drawn through."""

from __future__ import annotations

from typing import Callable

import torch

Sampler = Callable[[int, torch.Generator], torch.Tensor]


def generator_sampler(generator: torch.nn.Module) -> Sampler:
    """The sampler of a generator module: standard-normal latents of ``generator.latent_dim``, in eval mode."""
    latent = generator.latent_dim

    @torch.no_grad()
    def sample(n: int, gen: torch.Generator) -> torch.Tensor:
        generator.eval()
        out = [generator(torch.randn(min(512, n - i), latent, generator=gen)) for i in range(0, n, 512)]
        return torch.cat(out).clamp(-1, 1)

    return sample
