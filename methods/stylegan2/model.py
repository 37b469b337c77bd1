"""StyleGAN2's generator and residual discriminator (config F), keyed as rosinality's ``stylegan2-pytorch``.

Generator: z -> PixelNorm -> ``n_mlp`` equalized linear layers (lr x 0.01) -> w; a learnt 4x4
constant, then per resolution two modulated 3x3 convs (the first upsamples) with noise, and a
ToRGB whose output is added to the upsampled image of the resolution below (the skip
architecture). The image is the last sum: unbounded, roughly in [-1, 1] once trained.

Discriminator: a 1x1 fromRGB conv, one residual block per resolution down to 4x4, the minibatch
standard deviation as an extra feature map, a 3x3 conv and two equalized linear layers.

Its ``blocks`` (rosinality's ``convs``) are ordered from the image side: fromRGB, then the residual
blocks from the highest resolution. StyleGAN2-ADA's ``--freezed`` counts layers (fromRGB 1, each
block 3: conv0, conv1, skip), so freeze depth k here is ``--freezed=3k-2``: 1, 4, 7, ...
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..interface import BlockFeatures, ConfigGenerator, ConfigShape
from .layers import ConstantInput, ConvLayer, EqualLinear, PixelNorm, ResBlock, StyledConv, ToRGB

CONFIG_FIELDS = ("resolution", "channels", "style_dim", "n_mlp", "channel_multiplier", "base_channels", "mapping_lr_mul")


@dataclass(frozen=True)
class StyleGAN2Config:
    """A StyleGAN2 generator/critic pair; serialised into every checkpoint.

    ``base_channels`` is the width at 4 to 32 px (rosinality and config F: 512); above 32 px the
    width halves per doubling of resolution from ``base_channels * channel_multiplier / 2`` at
    64 px, so the defaults give rosinality's table (64 px: 256 x multiplier, ..., 1024 px: 16 x).
    """

    resolution: int = 256
    channels: int = 3
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    base_channels: int = 512
    mapping_lr_mul: float = 0.01

    def __post_init__(self) -> None:
        r = self.resolution
        if r < 32 or r & (r - 1):
            raise ValueError(f"resolution must be a power of two >= 32, got {r}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.style_dim < 1 or self.n_mlp < 0 or self.channel_multiplier < 1 or self.base_channels < 1:
            raise ValueError("style_dim, channel_multiplier and base_channels must be >= 1 and n_mlp >= 0")
        if not self.mapping_lr_mul > 0:
            raise ValueError(f"mapping_lr_mul must be > 0, got {self.mapping_lr_mul}")
        if self.width(r) < 1:
            raise ValueError(f"base_channels {self.base_channels} x channel_multiplier {self.channel_multiplier} "
                             f"leaves no channels at {r} px")

    def width(self, res: int) -> int:
        """The feature channels at resolution ``res``."""
        if res <= 32:
            return self.base_channels
        return self.base_channels * self.channel_multiplier * 32 // res

    @property
    def log_size(self) -> int:
        return int(math.log2(self.resolution))

    @property
    def num_layers(self) -> int:
        """The noise inputs (one per styled conv): 1 at 4 px, 2 per resolution above."""
        return (self.log_size - 2) * 2 + 1

    @property
    def n_latent(self) -> int:
        """The w inputs of the synthesis network (one per styled conv and the ToRGB of the top)."""
        return self.log_size * 2 - 2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "StyleGAN2Config":
        return cls(**{k: d[k] for k in CONFIG_FIELDS})


class Generator(ConfigGenerator, nn.Module):
    """z (B x style_dim) -> image (B x C x R x R); same z, same image (the stored noise by default)."""

    LATENT_FIELD = "style_dim"

    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        self.cfg = cfg
        dim = cfg.style_dim
        self.style = nn.Sequential(PixelNorm(), *[EqualLinear(dim, dim, lr_mul=cfg.mapping_lr_mul, activation=True)
                                                  for _ in range(cfg.n_mlp)])
        width4 = cfg.width(4)
        self.input = ConstantInput(width4)
        self.conv1 = StyledConv(width4, width4, 3, dim)
        self.to_rgb1 = ToRGB(width4, dim, cfg.channels, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for i in range(cfg.num_layers):  # layer i works at 2 ** ((i + 5) // 2) px
            size = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, size, size))
        in_width = width4
        for log_res in range(3, cfg.log_size + 1):
            out_width = cfg.width(2 ** log_res)
            self.convs.append(StyledConv(in_width, out_width, 3, dim, upsample=True))
            self.convs.append(StyledConv(out_width, out_width, 3, dim))
            self.to_rgbs.append(ToRGB(out_width, dim, cfg.channels))
            in_width = out_width

    # ---- the generator interface (methods/interface.py)


    def forward(self, z: torch.Tensor, input_is_w: bool = False, randomize_noise: bool = False) -> torch.Tensor:
        """G(z) = synthesis(mapping(z)); ``input_is_w``: ``z`` is w already (B x style_dim or B x n_latent x style_dim)."""
        return self.synthesis(z if input_is_w else self.mapping(z), randomize_noise=randomize_noise)

    def feature_layers(self) -> list[nn.Module]:
        """The styled convs in synthesis order (4 px first): their outputs are G's intermediate features."""
        return [self.conv1, *self.convs]

    # ---- w space

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """w = f(z), B x style_dim."""
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The mean w of ``n`` standard-normal z (1 x style_dim), the centre the truncation trick pulls to."""
        z = torch.randn(n, self.cfg.style_dim, generator=generator).to(self.input.input.device)
        return self.mapping(z).mean(0, keepdim=True)

    def noise_buffers(self) -> list[torch.Tensor]:
        """The stored noise of every styled conv, in layer order (``noises.noise_i``)."""
        return [getattr(self.noises, f"noise_{i}") for i in range(self.cfg.num_layers)]

    def synthesis(self, w: torch.Tensor, noise: list[torch.Tensor | None] | None = None,
                  randomize_noise: bool = False) -> torch.Tensor:
        """The image of w: B x style_dim (one w for every layer) or B x n_latent x style_dim (one per layer).

        Noise: ``noise`` (one tensor or None per layer) if given; else fresh draws with
        ``randomize_noise``, else the stored buffers (deterministic).
        """
        if w.ndim == 2:
            w = w.unsqueeze(1).expand(-1, self.cfg.n_latent, -1)
        if w.shape[1] != self.cfg.n_latent:
            raise ValueError(f"w has {w.shape[1]} layers, the synthesis network takes {self.cfg.n_latent}")
        if noise is None:
            noise = [None] * self.cfg.num_layers if randomize_noise else self.noise_buffers()
        out = self.conv1(self.input(w.shape[0]), w[:, 0], noise=noise[0])
        image = self.to_rgb1(out, w[:, 1])
        i = 1
        for up, conv, noise1, noise2, to_rgb in zip(self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2],
                                                    self.to_rgbs):
            out = up(out, w[:, i], noise=noise1)
            out = conv(out, w[:, i + 1], noise=noise2)
            image = to_rgb(out, w[:, i + 2], image)
            i += 2
        return image


class Discriminator(BlockFeatures, ConfigShape, nn.Module):
    """image (B x C x R x R) -> score (B,); ``blocks`` from the image side, ``features`` their outputs."""

    STDDEV_GROUP = 4

    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        self.cfg = cfg
        in_width = cfg.width(cfg.resolution)
        self.convs = nn.ModuleList([ConvLayer(cfg.channels, in_width, 1)])
        for log_res in range(cfg.log_size, 2, -1):
            out_width = cfg.width(2 ** (log_res - 1))
            self.convs.append(ResBlock(in_width, out_width))
            in_width = out_width
        width4 = cfg.width(4)
        self.final_conv = ConvLayer(in_width + 1, width4, 3)
        self.final_linear = nn.Sequential(EqualLinear(width4 * 4 * 4, width4, activation=True), EqualLinear(width4, 1))

    # ---- the critic interface (methods/interface.py)

    @property
    def blocks(self) -> nn.ModuleList:
        """fromRGB, then one residual block per resolution (R -> R/2, ..., 8 -> 4)."""
        return self.convs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.convs:
            x = block(x)
        return self.head(x)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """The score (B,) of the last block's output: minibatch stddev, final conv, two linear layers."""
        x = torch.cat([x, minibatch_stddev(x, stddev_group(x.shape[0], self.STDDEV_GROUP))], 1)
        x = self.final_conv(x)
        return self.final_linear(x.view(x.shape[0], -1)).squeeze(1)


def stddev_group(batch: int, largest: int) -> int:
    """The group size of the minibatch stddev: the largest divisor of ``batch`` up to ``largest``.

    rosinality (and StyleGAN2) take ``min(batch, 4)`` and fail unless it divides the batch; for
    every batch that works there, this is the same number.
    """
    return max(g for g in range(1, min(batch, largest) + 1) if batch % g == 0)


def minibatch_stddev(x: torch.Tensor, group: int) -> torch.Tensor:
    """One feature map per sample: the standard deviation over its group, averaged over C, H, W.

    Samples b and b + B/group, b + 2B/group, ... form a group (``view(group, -1, ...)``).
    """
    batch, channels, height, width = x.shape
    y = x.view(group, -1, 1, channels, height, width)
    y = torch.sqrt(y.var(0, unbiased=False) + 1e-8)
    y = y.mean([2, 3, 4], keepdim=True).squeeze(2)
    return y.repeat(group, 1, height, width)


def build_stylegan2(cfg: StyleGAN2Config) -> tuple[Generator, Discriminator]:
    return Generator(cfg), Discriminator(cfg)
