"""DCGAN-style generator and critic for 28x28 and 32x32 images with 1 or 3 channels.

The generator uses BatchNorm. The critic has none (a gradient penalty needs per-sample
gradients) and is an ordered list of blocks, so that "freeze depth k" means the lowest k
blocks and distillation can read every block's features.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class GANConfig:
    """Architecture of a generator/critic pair; serialised into every checkpoint."""

    resolution: int = 28
    channels: int = 1
    latent_dim: int = 32
    g_width: int = 32
    d_width: int = 32

    def __post_init__(self) -> None:
        if self.resolution not in (28, 32):
            raise ValueError(f"resolution must be 28 or 32, got {self.resolution}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.latent_dim < 1 or self.g_width < 4 or self.d_width < 4:
            raise ValueError("latent_dim must be >= 1 and widths >= 4")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GANConfig":
        return cls(**{k: d[k] for k in ("resolution", "channels", "latent_dim", "g_width", "d_width")})


class _ImageShape:
    """``resolution`` and ``channels`` of the images a net makes or reads, from its config."""

    cfg: GANConfig

    @property
    def resolution(self) -> int:
        return self.cfg.resolution

    @property
    def channels(self) -> int:
        return self.cfg.channels


class Generator(_ImageShape, nn.Module):
    """z (B x latent_dim) -> image (B x C x R x R) in [-1, 1]."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.g_width
        self.start = cfg.resolution // 4  # 7 or 8
        self.fc = nn.Sequential(
            nn.Linear(cfg.latent_dim, 2 * w * self.start * self.start, bias=False),
            nn.BatchNorm1d(2 * w * self.start * self.start),
            nn.ReLU(inplace=True),
        )
        self.up = nn.Sequential(
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(w, w // 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(w // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(w // 2, cfg.channels, 3, 1, 1),
            nn.Tanh(),
        )

    @property
    def latent_dim(self) -> int:
        return self.cfg.latent_dim

    @property
    def num_classes(self) -> int:
        return 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.up[-1](self.pre_output(z))

    # ---- optional capabilities of the interface (methods/interface.py)

    def pre_output(self, z: torch.Tensor) -> torch.Tensor:
        """The output conv's result before the final tanh."""
        h = self.fc(z).view(z.shape[0], 2 * self.cfg.g_width, self.start, self.start)
        return self.up[:-1](h)

    @torch.no_grad()
    def fold_output_affine(self, scale: torch.Tensor, shift: torch.Tensor) -> "Generator":
        """A copy whose output is tanh(scale * pre_output(z) + shift), per output channel (exact)."""
        out = copy.deepcopy(self)
        conv = out.up[-2]
        conv.weight.mul_(scale.view(-1, 1, 1, 1))
        conv.bias.mul_(scale).add_(shift)
        return out

    @torch.no_grad()
    def fold_latent_affine(self, mean: torch.Tensor, chol: torch.Tensor) -> "Generator":
        """A copy whose eval-mode output on eps equals this generator's on mean + chol @ eps.

        The first layer is Linear (no bias) then BatchNorm1d: W(mean + L eps) = (W L) eps + W mean,
        and in eval mode adding W mean equals subtracting it from BatchNorm's running mean.
        """
        out = copy.deepcopy(self)
        linear, bn = out.fc[0], out.fc[1]
        w = linear.weight.double()
        bn.running_mean.copy_((bn.running_mean.double() - w @ mean.double()).float())
        linear.weight.copy_((w @ chol.double()).float())
        return out


class Critic(_ImageShape, nn.Module):
    """image -> score (B,). ``blocks`` are ordered from the input upwards; ``head`` is last."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.d_width
        act = lambda: nn.LeakyReLU(0.2, inplace=True)  # noqa: E731
        self.blocks = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(cfg.channels, w, 4, 2, 1), act()),  # R -> R/2
                nn.Sequential(nn.Conv2d(w, 2 * w, 4, 2, 1), act()),  # R/2 -> R/4
                nn.Sequential(nn.Conv2d(2 * w, 4 * w, 3, 2, 1), act()),  # R/4 -> 4
            ]
        )
        self.head = nn.Linear(4 * w * 4 * 4, 1)

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every block's output, lowest first."""
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x.flatten(1)).squeeze(1)


def build_gan(cfg: GANConfig) -> tuple[Generator, Critic]:
    return Generator(cfg), Critic(cfg)


def sample_latent(n: int, latent_dim: int, generator: torch.Generator | None = None) -> torch.Tensor:
    return torch.randn(n, latent_dim, generator=generator)
