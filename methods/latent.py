"""Fitting one latent code per target image by reconstruction: what GLO, BSA and AdaBN share.

    loss = mean |G(z_i) - x_i|  +  perceptual_weight * mean (f(G(z_i)) - f(x_i))^2 / mean f(x)^2

f is a feature function passed in (the evaluation classifier's features, differentiable); the
perceptual term is divided by the target features' mean square so that both terms are of order 1.

Codes start from "mined" latents: for each target image the nearest (in features) of
``candidates`` random latents under the source generator. G runs in eval mode, so BatchNorm is a
fixed per-channel affine map and one image's reconstruction never depends on the others.

Sampling new images afterwards: a Gaussian N(mu, S + r I) is fitted to the learned codes (maximum
likelihood, plus a small ridge r so that it is positive definite with fewer codes than latent
dimensions) and z = mu + L eps, eps ~ N(0, I), L L^T = S + r I. Where the architecture can fold
this map into its first layer (``fold_latent_affine``), the saved checkpoint is a plain generator
sampled with N(0, I) latents, exact in eval mode; otherwise the checkpoint carries (mu, L).
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

from . import seeding
from .base import Adapter, Export, FeatureFn
from .interface import has_capability

PERCEPTUAL_WEIGHT = 1.0
MINING_CANDIDATES = 2048
RIDGE = 1e-3  # relative to the codes' mean variance


def reconstruction_loss(fake: torch.Tensor, real: torch.Tensor, feature_fn: FeatureFn, feature_scale: float,
                        perceptual_weight: float = PERCEPTUAL_WEIGHT) -> tuple[torch.Tensor, torch.Tensor]:
    """(L1 pixel loss, perceptual loss); the total is l1 + perceptual_weight * perceptual."""
    l1 = (fake - real).abs().mean()
    with torch.no_grad():
        target = feature_fn(real)
    perceptual = (feature_fn(fake) - target).pow(2).mean() / feature_scale
    return l1, perceptual_weight * perceptual


@torch.no_grad()
def mine_codes(generator: nn.Module, images: torch.Tensor, feature_fn: FeatureFn, gen: torch.Generator,
               candidates: int | None = None, latent_dim: int | None = None) -> torch.Tensor:
    """For each image, the random latent (of ``candidates``, default MINING_CANDIDATES) nearest in features."""
    candidates = candidates or MINING_CANDIDATES
    was_training = generator.training
    generator.eval()
    d = latent_dim or generator.latent_dim
    z = torch.randn(candidates, d, generator=gen)
    fz = torch.cat([feature_fn(generator(z[i:i + 512])) for i in range(0, candidates, 512)])
    fx = feature_fn(images)
    nearest = torch.cdist(fx.double(), fz.double()).argmin(1)
    generator.train(was_training)
    return z[nearest].clone()


def fit_gaussian(codes: torch.Tensor, ridge: float = RIDGE) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, L) with L L^T = Cov(codes) + ridge * mean variance * I (Cov: maximum likelihood)."""
    c = codes.detach().double()
    mean = c.mean(0)
    centred = c - mean
    cov = centred.T @ centred / len(c)
    scale = float(torch.diagonal(cov).mean()) if len(c) > 1 else 1.0
    cov = cov + (ridge * max(scale, 1e-8)) * torch.eye(c.shape[1], dtype=c.dtype)
    return mean.float(), torch.linalg.cholesky(cov).float()


class LatentGaussianGenerator(nn.Module):
    """eps ~ N(0, I) -> net(mean + L eps): samples of the fitted code distribution."""

    def __init__(self, net: nn.Module, mean: torch.Tensor, chol: torch.Tensor):
        super().__init__()
        self.net = net
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("chol", chol.detach().clone())

    @property
    def latent_dim(self) -> int:
        return self.mean.shape[0]

    def forward(self, eps: torch.Tensor) -> torch.Tensor:
        return self.net(self.mean + eps @ self.chol.T)


def fold_latent_gaussian(generator: nn.Module, mean: torch.Tensor, chol: torch.Tensor) -> nn.Module:
    """A copy of ``generator`` whose eval-mode output on eps equals generator(mean + L eps).

    Needs the architecture's ``fold_latent_affine`` capability (the DCGAN folds it into its
    first Linear + BatchNorm1d).
    """
    if not has_capability(generator, "fold_latent_affine"):
        raise ValueError(f"{type(generator).__name__} cannot fold a latent affine map (no fold_latent_affine)")
    return generator.fold_latent_affine(mean, chol)


class LatentFit(Adapter):
    """Fit one code per target image (and ``params`` of ``net``) by reconstruction.

    Args:
        method: name recorded in results.
        net: module z -> image; trained in place where ``params`` point into it.
        params: the net's parameters to train (may be empty).
        images: the target set.
        codes: initial codes, one row per image.
        feature_fn: differentiable features for the perceptual loss.
        lr: Adam learning rate of codes and parameters.
        batch: images per step (all of them, when None or larger than the set).
        seed: fixes the batch draws.
        train_mode: run the net in train mode (batch statistics) instead of eval mode.
    """

    def __init__(self, method: str, net: nn.Module, params: Iterable[nn.Parameter], images: torch.Tensor,
                 codes: torch.Tensor, feature_fn: FeatureFn, *, lr: float, batch: int | None, seed: int,
                 train_mode: bool = False, perceptual_weight: float = PERCEPTUAL_WEIGHT):
        if len(images) == 0:
            raise ValueError("the training set is empty")
        self.method = method
        self.net, self.images, self.feature_fn = net, images, feature_fn
        self.codes = nn.Parameter(codes.detach().clone())
        self.params = list(params)
        self.opt = torch.optim.Adam([self.codes, *self.params], lr=lr, betas=(0.9, 0.999))
        self.batch = len(images) if batch is None else min(batch, len(images))
        self.train_mode = train_mode
        self.perceptual_weight = perceptual_weight
        with torch.no_grad():
            self.feature_scale = float(feature_fn(images).pow(2).mean().clamp_min(1e-8))
        self.rng = seeding.generator(seed, "latent-fit")
        self._steps_done = 0

    @property
    def steps_done(self) -> int:
        return self._steps_done

    def step(self) -> dict[str, float]:
        self.net.train(self.train_mode)
        if self.batch == len(self.images):
            idx = torch.arange(len(self.images))
        else:
            idx = torch.randperm(len(self.images), generator=self.rng)[: self.batch]
        fake = self.net(self.codes[idx])
        l1, perceptual = reconstruction_loss(fake, self.images[idx], self.feature_fn, self.feature_scale,
                                             self.perceptual_weight)
        self.opt.zero_grad(set_to_none=True)
        (l1 + perceptual).backward()
        self.opt.step()
        self._steps_done += 1
        return {"l1": float(l1.detach()), "perceptual": float(perceptual.detach())}

    def adapted_net(self) -> nn.Module:
        """The net as it samples after training (adabn re-estimates statistics here)."""
        return self.net

    def sampling_generator(self) -> nn.Module:
        mean, chol = fit_gaussian(self.codes)
        return LatentGaussianGenerator(self.adapted_net(), mean, chol)

    def _generator_for_export(self) -> nn.Module:
        """The adapted net as a plain generator of the architecture (BSA folds its output affine)."""
        return self.adapted_net()

    def export(self) -> Export:
        mean, chol = fit_gaussian(self.codes)
        generator = self._generator_for_export()
        extra = {"codes": self.codes.detach().clone(), "latent_mean": mean, "latent_chol": chol}
        if has_capability(generator, "fold_latent_affine"):
            return Export(kind="gan", generator=fold_latent_gaussian(generator, mean, chol), extra=extra,
                          config={"sampling": "eps ~ N(0, I) -> G(mean + L eps), folded into the generator's first "
                                              "layer; codes, latent_mean and latent_chol are stored for reference"})
        return Export(kind="gan", generator=generator, extra=extra,
                      config={"latent_affine": True,
                              "sampling": "eps ~ N(0, I) -> G(latent_mean + latent_chol @ eps)"})

    def state_dict(self) -> dict[str, Any]:
        return {"codes": self.codes.detach().clone(), "net": self.net.state_dict(), "opt": self.opt.state_dict(),
                "rng": self.rng.get_state(), "steps_done": self._steps_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.codes.copy_(state["codes"])
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.rng.set_state(state["rng"])
        self._steps_done = int(state["steps_done"])

    def record(self) -> dict[str, Any]:
        return {"method": self.method, "batch": self.batch, "perceptual_weight": self.perceptual_weight,
                "train_mode": self.train_mode}
