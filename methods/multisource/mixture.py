"""The mined model: pick source i with probability p_i, then x = G_i(M_i(u))."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..miner import MinedGenerator


class MinedMixture(nn.Module):
    """The mined model: pick source i with probability p_i, then x = G_i(M_i(u))."""

    def __init__(self, sources: Sequence[MinedGenerator], shares: torch.Tensor):
        super().__init__()
        shares = torch.as_tensor(shares, dtype=torch.float64).flatten()
        if len(shares) != len(sources) or len(sources) == 0:
            raise ValueError(f"{len(sources)} sources but {len(shares)} shares")
        if bool((shares < 0).any()) or not abs(float(shares.sum()) - 1.0) < 1e-6:
            raise ValueError(f"shares must be non-negative and sum to 1, got {shares.tolist()}")
        if len({s.latent_dim for s in sources}) != 1:
            raise ValueError("every miner must take the same u size")
        self.sources = nn.ModuleList(sources)
        self.register_buffer("shares", shares)

    @property
    def latent_dim(self) -> int:
        return self.sources[0].latent_dim

    def choose(self, n: int, gen: torch.Generator | None = None) -> torch.Tensor:
        """n source indices drawn i.i.d. from p."""
        return torch.multinomial(self.shares, n, replacement=True, generator=gen)

    @torch.no_grad()
    def sample(self, n: int, gen: torch.Generator | None = None) -> torch.Tensor:
        self.eval()
        out = []
        for start in range(0, n, 512):
            m = min(512, n - start)
            idx = self.choose(m, gen)
            u = torch.randn(m, self.latent_dim, generator=gen)
            x = None
            for i, source in enumerate(self.sources):
                rows = (idx == i).nonzero().flatten()
                if len(rows):
                    xi = source(u[rows])
                    x = xi.new_empty(m, *xi.shape[1:]) if x is None else x
                    x[rows] = xi
            out.append(x)
        return torch.cat(out).clamp(-1, 1)

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # pragma: no cover - use sample()
        raise NotImplementedError("a mixture picks a source per row: call sample(n, generator)")
