"""Drawing from a stored model with the truncation trick, one seed per image (``ganlode sample``).

Truncation pulls every latent toward the centre of the model's latent distribution: ``psi < 1``
trades variety for typical images, ``psi = 0`` gives the centre's one image, ``psi = 1`` is the
model itself (its own sampler, untouched). Which latent and which centre depends on the model:

- **An architecture with a mapping network** (z -> w -> image: StyleGAN2): the StyleGAN2 trick in
  w. It draws z ~ N(0, I), w = mapping(z), and synthesises ``w_mean + psi * (w - w_mean)``, with
  ``w_mean = generator.mean_latent(4096, torch.Generator().manual_seed(0))`` (fixed, so the same
  seed always gives the same image).
- **MineGAN over such an architecture** (``minegan`` and ``mined`` models): the same in w, around
  the mean w of the mined model's own samples (``w`` of 4096 u ~ N(0, I) from seed 0), not the
  source's: truncation keeps to the mined region instead of pulling back to the source's centre.
  w is the miner's output for a miner mining in w (``mine_space: w``), ``mapping(M(u))`` for one
  mining in z.
- **Every other model** draws its latents z ~ N(0, I) as ``z * psi`` instead, i.e. toward the
  mean latent (0). Where the latent passes through a fitted map first, the scaling is applied
  before it, so it pulls toward that map's own centre: the fitted code Gaussian of adabn/bsa/glo
  (``mean + L (psi * eps)``) and the miners' input ``u`` of minegan and mined models over the DCGAN
  and TorchScript generators (no mapping network).

Per seed: image ``s`` is drawn alone from ``torch.Generator().manual_seed(s)``, so it does not
depend on which other seeds are asked for, and the same seed always gives the same image.
"""

from __future__ import annotations

import torch
from torch import nn

from ...methods.miner import MEAN_W_SAMPLES, MEAN_W_SEED, MinedGenerator, has_mapping_network, mean_w
from ...methods.multisource import MinedMixture
from .loaders import LoadedModel
from .sampling import Sampler, generator_sampler


class _Truncated(nn.Module):
    """``module(psi * z)``: the same generator with its latents scaled."""

    def __init__(self, module: nn.Module, psi: float):
        super().__init__()
        self.module = module
        self.psi = float(psi)

    @property
    def latent_dim(self) -> int:
        return self.module.latent_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.module(z * self.psi)


class _TruncatedW(nn.Module):
    """``generator(w_mean + psi * (w - w_mean), input_is_w=True)`` with ``w = to_w(latent)``: the
    truncation trick in the w space of a generator with a mapping network."""

    def __init__(self, module: nn.Module, generator: nn.Module, to_w, w_mean: torch.Tensor, psi: float):
        super().__init__()
        self.module = module  # what draws the latent (its latent_dim); its sub-modules compute w
        self.generator = generator
        self.to_w = to_w
        self.register_buffer("w_mean", w_mean.detach().clone())
        self.psi = float(psi)

    @property
    def latent_dim(self) -> int:
        return self.module.latent_dim

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        w = self.to_w(latent)
        return self.generator(self.w_mean + self.psi * (w - self.w_mean), input_is_w=True)


@torch.no_grad()
def _mined_w_mean(to_w, latent_dim: int, device: torch.device) -> torch.Tensor:
    """The mean w (1 x style_dim) of a mined model: to_w of MEAN_W_SAMPLES u ~ N(0, I) from MEAN_W_SEED."""
    u = torch.randn(MEAN_W_SAMPLES, latent_dim, generator=torch.Generator().manual_seed(MEAN_W_SEED))
    return to_w(u.to(device)).mean(0, keepdim=True)


def truncated_module(module: nn.Module, psi: float) -> nn.Module:
    """``module`` truncated by ``psi``: in w toward the mean w for a generator with a mapping network
    and for a miner in front of one, else its latent scaled by ``psi`` (see the module docstring)."""
    was_training = module.training
    module.eval()
    try:
        if has_mapping_network(module):
            return _TruncatedW(module, module, module.mapping, mean_w(module), psi)
        if isinstance(module, MinedGenerator) and has_mapping_network(module.generator):
            g, miner = module.generator, module.miner
            to_w = miner if module.space == "w" else (lambda u: g.mapping(miner(u)))
            device = next(miner.parameters()).device
            return _TruncatedW(module, g, to_w, _mined_w_mean(to_w, module.latent_dim, device), psi)
        return _Truncated(module, psi)
    finally:
        module.train(was_training)


def truncated_sampler(model: LoadedModel, psi: float = 1.0) -> Sampler:
    """The model's sampler truncated by ``psi`` (1: the model's own sampler)."""
    if psi == 1.0:
        return model.sampler
    module = model.module
    if isinstance(module, MinedMixture):  # same source choice per row, each source truncated
        return MinedMixture([truncated_module(s, psi) for s in module.sources], module.shares).eval().sample
    if module is None or not hasattr(module, "latent_dim"):
        raise ValueError(f"{model.path}: this model kind cannot be truncated (no latent input)")
    return generator_sampler(truncated_module(module, psi).eval())


def num_classes(model: LoadedModel) -> int:
    """The classes a model's generator is conditioned on (0: unconditional), over every sub-network."""
    if model.module is None:
        return 0
    return max((int(getattr(m, "num_classes", 0) or 0) for m in model.module.modules()), default=0)


def sample_seed(sampler: Sampler, seed: int) -> torch.Tensor:
    """One image (1 x C x H x W in [-1, 1]) drawn from its own ``torch.Generator().manual_seed(seed)``."""
    return sampler(1, torch.Generator().manual_seed(seed))
