"""GAN losses as small pure functions.

WGAN-GP (Gulrajani et al. 2017) and the non-saturating loss with R1 (Mescheder et al. 2018).
Each takes critic outputs (and, for penalties, the critic and its inputs) and returns a scalar.
A critic's output is one score per image (B,) or a map of patch scores per image (B x ...; CDC's
patch critic): the adversarial terms average over every score, the penalties differentiate each
image's mean score (for a (B,) output that is the score itself, bit for bit).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .catalog import LOSS_DEFAULTS, LOSSES

Critic = Callable[[torch.Tensor], torch.Tensor]


def per_image(scores: torch.Tensor) -> torch.Tensor:
    """One score per image: a patch map's mean (a (B,) output unchanged)."""
    return scores if scores.ndim == 1 else scores.reshape(len(scores), -1).mean(1)


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
    (grad,) = torch.autograd.grad(per_image(critic(x_hat)).sum(), x_hat, create_graph=True)
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
    (grad,) = torch.autograd.grad(per_image(critic(x)).sum(), x, create_graph=True)
    return 0.5 * gamma * grad.flatten(1).pow(2).sum(1).mean()


def defaults(loss: str) -> dict[str, Any]:
    """Settings that follow from the loss (``catalog.LOSS_DEFAULTS``): n_critic, beta1, beta2."""
    check_loss(loss)
    return dict(LOSS_DEFAULTS[loss])


def check_loss(loss: str) -> None:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")


@dataclass(frozen=True)
class AdversarialConfig:
    """The settings every adversarial loop shares (single-source training and multi-source mining),
    and the one dispatch from the loss name to its critic and generator terms."""

    loss: str = "wgan-gp"
    batch: int = 64
    beta1: float = 0.5
    beta2: float = 0.9
    gp_weight: float = 10.0
    r1_gamma: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_loss(self.loss)
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")

    @property
    def betas(self) -> tuple[float, float]:
        return (self.beta1, self.beta2)

    def critic_loss(self, critic: Critic, real: torch.Tensor, fake: torch.Tensor,
                    rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(adversarial loss, penalty) of the critic on real images against fakes.

        WGAN-GP draws its mixing weights from ``rng`` (on the CPU, then moved), so the same
        seed gives the same numbers on every device.
        """
        d_real, d_fake = critic(real), critic(fake)
        if self.loss == "wgan-gp":
            alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), generator=rng).to(real.device)
            return wgan_critic_loss(d_real, d_fake), gradient_penalty(critic, real, fake, self.gp_weight, alpha=alpha)
        return ns_critic_loss(d_real, d_fake), r1_penalty(critic, real, self.r1_gamma)

    def adversarial_critic_loss(self, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
        """The critic's adversarial term alone, without its penalty (what the Fisher of AdAM and RICK reads)."""
        return wgan_critic_loss(d_real, d_fake) if self.loss == "wgan-gp" else ns_critic_loss(d_real, d_fake)

    def generator_loss(self, d_fake: torch.Tensor) -> torch.Tensor:
        return wgan_generator_loss(d_fake) if self.loss == "wgan-gp" else ns_generator_loss(d_fake)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
