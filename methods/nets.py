"""DCGAN-style generator and critic for 28, 32, 64 and 128 px images with 1 or 3 channels.

The generator uses BatchNorm. The critic has none (a gradient penalty needs per-sample
gradients) and is an ordered list of blocks, so that "freeze depth k" means the lowest k
blocks and distillation can read every block's features.

Sizes. The generator starts from a 7x7 grid (28 px) or an 8x8 one (32, 64, 128 px) and doubles
it with one ConvTranspose stage per doubling (2, 2, 3 or 4 stages), halving the channels each
time down to ``g_width / 2`` before a 3x3 output conv; so it starts at ``g_width * 2**(stages - 1)``
channels. The critic mirrors it with one stride-2 block per halving down to 4x4 (3, 3, 4 or 5
blocks, the last a 3x3 conv, the others 4x4), doubling ``d_width`` per block up to 8x. At 28
and 32 px both nets are exactly the original two-stage / three-block nets (same modules, same
parameter names, same initialisation), so older checkpoints load unchanged.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .interface import BlockFeatures, ConfigGenerator, ConfigShape


# resolution -> (start grid side, doublings): the generator's plan, which the critic mirrors
PLANS = {28: (7, 2), 32: (8, 2), 64: (8, 3), 128: (8, 4)}
RESOLUTIONS = tuple(PLANS)
MAX_CRITIC_MULT = 8  # critic widths double per block up to 8 x d_width (as DCGAN's)


@dataclass(frozen=True)
class GANConfig:
    """Architecture of a generator/critic pair; serialised into every checkpoint."""

    resolution: int = 28
    channels: int = 1
    latent_dim: int = 32
    g_width: int = 32
    d_width: int = 32

    def __post_init__(self) -> None:
        if self.resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {', '.join(map(str, RESOLUTIONS))}, got {self.resolution}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.latent_dim < 1 or self.g_width < 4 or self.d_width < 4:
            raise ValueError("latent_dim must be >= 1 and widths >= 4")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GANConfig":
        return cls(**{k: d[k] for k in ("resolution", "channels", "latent_dim", "g_width", "d_width")})


class Generator(ConfigGenerator, nn.Module):
    """z (B x latent_dim) -> image (B x C x R x R) in [-1, 1]."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        self.cfg = cfg
        self.start, stages = PLANS[cfg.resolution]
        self.top = cfg.g_width * 2 ** (stages - 1)  # channels of the start grid: 2 x g_width at 28/32
        self.fc = nn.Sequential(
            nn.Linear(cfg.latent_dim, self.top * self.start * self.start, bias=False),
            nn.BatchNorm1d(self.top * self.start * self.start),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        for i in range(stages):  # each stage doubles the grid and halves the channels
            c_in, c_out = self.top >> i, self.top >> (i + 1)
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        self.up = nn.Sequential(*layers, nn.Conv2d(self.top >> stages, cfg.channels, 3, 1, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.up[-1](self.pre_output(z))

    # ---- optional capabilities of the interface (methods/interface.py)

    def feature_layers(self) -> list[nn.Module]:
        """The layers whose outputs are G's intermediate features, latent side first: the projected
        start grid, then each upsampling stage (after its activation)."""
        return [self.fc, *[m for m in self.up if isinstance(m, nn.ReLU)]]

    def pre_output(self, z: torch.Tensor) -> torch.Tensor:
        """The output conv's result before the final tanh."""
        h = self.fc(z).view(z.shape[0], self.top, self.start, self.start)
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


class Critic(BlockFeatures, ConfigShape, nn.Module):
    """image -> score (B,). ``blocks`` are ordered from the input upwards; ``head`` is last."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        self.cfg = cfg
        _, stages = PLANS[cfg.resolution]
        widths = [cfg.d_width * min(2 ** k, MAX_CRITIC_MULT) for k in range(stages + 1)]
        blocks = []
        for k, (c_in, c_out) in enumerate(zip([cfg.channels, *widths[:-1]], widths)):
            kernel = 3 if k == stages else 4  # 4x4 halves exactly; the last 3x3 takes 7 or 8 to 4
            blocks.append(nn.Sequential(nn.Conv2d(c_in, c_out, kernel, 2, 1), nn.LeakyReLU(0.2, inplace=True)))
        self.blocks = nn.ModuleList(blocks)  # R -> R/2 -> ... -> 4
        self.head = nn.Linear(widths[-1] * 4 * 4, 1)

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x.flatten(1)).squeeze(1)


def build_gan(cfg: GANConfig) -> tuple[Generator, Critic]:
    return Generator(cfg), Critic(cfg)


def sample_latent(n: int, latent_dim: int, generator: torch.Generator | None = None) -> torch.Tensor:
    return torch.randn(n, latent_dim, generator=generator)
