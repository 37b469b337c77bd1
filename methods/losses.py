"""GAN losses as small pure functions.

WGAN-GP (Gulrajani et al. 2017) and the non-saturating loss with R1 (Mescheder et al. 2018).
Each takes critic outputs (and, for penalties, the critic and its inputs) and returns a scalar.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

Critic = Callable[[torch.Tensor], torch.Tensor]


def wgan_critic_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """E[D(fake)] - E[D(real)]: the critic minimises this."""
    return d_fake.mean() - d_real.mean()


def wgan_generator_loss(d_fake: torch.Tensor) -> torch.Tensor:
    return -d_fake.mean()


def gradient_penalty(
    critic: Critic,
    real: torch.Tensor,
    fake: torch.Tensor,
    weight: float = 10.0,
    alpha: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """weight * E[(||grad_x D(x_hat)||_2 - 1)^2] at x_hat = alpha*real + (1-alpha)*fake."""
    if alpha is None:
        alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), generator=generator, dtype=real.dtype)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    norms = grad.flatten(1).norm(2, dim=1)
    return weight * ((norms - 1) ** 2).mean()


def ns_critic_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """softplus(-D(real)) + softplus(D(fake)): the logistic critic loss."""
    return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()


def ns_generator_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """softplus(-D(fake)): the non-saturating generator loss."""
    return F.softplus(-d_fake).mean()


def r1_penalty(critic: Critic, real: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """gamma/2 * E[||grad_x D(x)||^2] on real data."""
    x = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return 0.5 * gamma * grad.flatten(1).pow(2).sum(1).mean()


LOSSES = ("wgan-gp", "ns-r1")
