"""MineGAN's miner: a small MLP u -> z placed in front of a frozen generator (Wang et al. 2020).

The miner learns which region of the source latent space serves the target, so the source
generator can be steered without touching its weights. Shape follows the MNIST original:
u (d_u) -> Linear -> ReLU -> Linear -> z.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class MinerConfig:
    latent_dim: int  # the generator's z size
    input_dim: int = 16  # u size
    hidden: int = 64

    def to_dict(self) -> dict:
        return asdict(self)


class Miner(nn.Module):
    def __init__(self, cfg: MinerConfig):
        super().__init__()
        self.cfg = cfg
        self.net = nn.Sequential(
            nn.Linear(cfg.input_dim, cfg.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(cfg.hidden, cfg.latent_dim),
        )

    @property
    def input_dim(self) -> int:
        return self.cfg.input_dim

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.net(u)


class MinedGenerator(nn.Module):
    """G(M(u)): exposes ``latent_dim`` = the miner's input size, so any sampler can use it."""

    def __init__(self, generator: nn.Module, miner: Miner):
        super().__init__()
        self.generator = generator
        self.miner = miner

    @property
    def latent_dim(self) -> int:
        return self.miner.input_dim

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.generator(self.miner(u))
