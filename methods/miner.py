"""MineGAN's miner: a small MLP u -> z placed in front of a frozen generator (Wang et al. 2020).

The miner learns which region of the source latent space serves the target, so the source
generator can be steered without touching its weights. Shape follows the MNIST original:
u (d_u) -> Linear -> ReLU -> Linear -> z.

Mining spaces (:data:`MINE_SPACES`): ``z``, the generator's input, for every architecture; ``w``
for an architecture with a mapping network (StyleGAN2: z -> mapping -> w -> synthesis), where
the miner's output is a w fed to ``generator(w, input_is_w=True)`` (the miner sits between the
mapping and the synthesis network, and the mapping network is not used).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .architectures import name_of
from .catalog import MINE_SPACES  # what the miner's output is: the generator's latent z, or its style w


def has_mapping_network(generator: nn.Module) -> bool:
    """Whether ``generator`` is z -> mapping -> w -> synthesis (StyleGAN2): it has ``mapping(z)``,
    ``synthesis(w)``, ``mean_latent(n, generator)`` and its mapping network as the module ``style``."""
    return (all(callable(getattr(generator, name, None)) for name in ("mapping", "synthesis", "mean_latent"))
            and isinstance(getattr(generator, "style", None), nn.Module))


def mapping_parameters(generator: nn.Module) -> list[nn.Parameter]:
    """The mapping network's parameters (z -> w) of a generator that has one."""
    return list(generator.style.parameters())


MEAN_W_SAMPLES = 4096  # z draws behind a mean w (the StyleGAN2 truncation trick's centre)
MEAN_W_SEED = 0  # ... drawn from this fixed seed, so the centre is the same every time


def mean_w(generator: nn.Module, n: int = MEAN_W_SAMPLES, seed: int = MEAN_W_SEED) -> torch.Tensor:
    """The generator's mean w (1 x style_dim) over ``n`` z drawn from ``torch.Generator().manual_seed(seed)``."""
    return generator.mean_latent(n, torch.Generator().manual_seed(seed))


def mine_space_error(generator: nn.Module, space: str) -> str | None:
    """Why ``generator`` cannot be mined in ``space`` (None: it can)."""
    if space not in MINE_SPACES:
        return f"mine_space must be one of {', '.join(MINE_SPACES)}, got {space!r}"
    if space == "w" and not has_mapping_network(generator):
        return (f"mine_space w puts the miner between a mapping network (z -> w) and the synthesis network, and only "
                f"architectures with a mapping network (stylegan2) mine in w; this {_arch_name(generator)} generator "
                "has none: mine in z")
    return None


def _arch_name(generator: nn.Module) -> str:
    try:
        return name_of(getattr(generator, "cfg", None))
    except ValueError:
        return type(generator).__name__


@dataclass(frozen=True)
class MinerConfig:
    latent_dim: int  # the miner's output size: the generator's z size (its w size when mining in w)
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
    """G(M(u)): exposes ``latent_dim`` = the miner's input size, so any sampler can use it.

    ``space`` ``z``: x = G(M(u)); ``w``: x = G(M(u), input_is_w=True) = synthesis(M(u)).
    """

    def __init__(self, generator: nn.Module, miner: Miner, space: str = "z"):
        super().__init__()
        reason = mine_space_error(generator, space)
        if reason:
            raise ValueError(reason)
        self.generator = generator
        self.miner = miner
        self.space = space

    @property
    def latent_dim(self) -> int:
        return self.miner.input_dim

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if self.space == "w":
            return self.generator(self.miner(u), input_is_w=True)
        return self.generator(self.miner(u))
