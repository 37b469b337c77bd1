"""Multi-source mining's settings and its maths, as pure functions (Wang et al. 2020)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Sequence

import torch

from .. import losses
from ..miner import MinerConfig

STAGES = ("mine", "finetune")
ROWS = ("best", "shares")  # how the supersample picks each row's source: the critic's argmax, or drawn from p


@dataclass(frozen=True)
class MultiSourceConfig(losses.AdversarialConfig):
    """Settings of a multi-source mining run (the same in every process of a distributed run).

    The adversarial fields (loss, batch, betas, penalties, seed) are the single-source loop's
    (:class:`~ganlode.methods.losses.AdversarialConfig`), with mining's own defaults.
    """

    loss: str = "ns-r1"
    beta2: float = 0.99
    r1_gamma: float = 0.2
    mining_steps: int = 1000  # steps 1..mining_steps train the miners only
    finetune_steps: int = 500  # the following steps train G_i and M_i jointly
    lr_miner: float = 1e-3
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    window: int = 1000  # selector: batches averaged into p
    miner_input_dim: int = 16
    miner_hidden: int = 64
    n_critic: int = 1  # critic steps per mining step, each on fresh samples
    warmup: int = 0  # steps before the selector starts counting wins
    rows: str = "best"  # ROWS: each supersample row's source (best: the critic's argmax; shares: drawn from p)
    row_shares: tuple[float, ...] = ()  # p for rows="shares" and routed runs (empty: the selector's own counts)
    routed: bool = False  # one critic per source, each against its own part of the target (RoutedSelector)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mining_steps < 0 or self.finetune_steps < 0 or self.total_steps < 1:
            raise ValueError("mining_steps and finetune_steps must be >= 0, and at least one step in all")
        if self.window < 1 or self.miner_input_dim < 1 or self.miner_hidden < 1 or self.n_critic < 1:
            raise ValueError("window, miner_input_dim, miner_hidden and n_critic must be >= 1")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if self.rows not in ROWS:
            raise ValueError(f"rows must be one of {', '.join(ROWS)}, got {self.rows!r}")
        shares = tuple(float(p) for p in self.row_shares)
        if shares and (min(shares) < 0 or abs(sum(shares) - 1.0) > 1e-6):
            raise ValueError(f"row_shares must be non-negative and sum to 1, got {list(shares)}")
        object.__setattr__(self, "row_shares", shares)
        if self.routed and not shares:
            raise ValueError("a routed run needs row_shares: each source's share of the target")

    @property
    def total_steps(self) -> int:
        return self.mining_steps + self.finetune_steps

    def stage(self, step: int) -> str:
        """The stage of step ``step`` (1-based)."""
        return "mine" if step <= self.mining_steps else "finetune"

    def miner_config(self, latent_dim: int) -> MinerConfig:
        return MinerConfig(latent_dim=latent_dim, input_dim=self.miner_input_dim, hidden=self.miner_hidden)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (tuples as lists), so a dict read back from a record compares equal."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def rows_per_step(self) -> int:
        """Rows every source draws per step: ``batch`` for each of the ``n_critic`` critic steps."""
        return self.batch * self.n_critic

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MultiSourceConfig":
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


def supersample(scores: torch.Tensor) -> torch.Tensor:
    """N x B critic scores -> the B winning source indices (argmax per row; ties: lowest index)."""
    if scores.dim() != 2:
        raise ValueError(f"scores must be N x B, got shape {tuple(scores.shape)}")
    return scores.argmax(dim=0)


def supersample_images(fakes: Sequence[torch.Tensor], winners: torch.Tensor) -> torch.Tensor:
    """Row b of the result is row b of ``fakes[winners[b]]``."""
    stacked = torch.stack(list(fakes))
    return stacked[winners, torch.arange(stacked.shape[1], device=stacked.device)]


def selector_update(window: torch.Tensor, winners: torch.Tensor, n_sources: int, size: int = 1000) -> torch.Tensor:
    """Append one batch's win counts (a row of length N) and keep the last ``size`` rows."""
    counts = torch.bincount(winners.detach().cpu(), minlength=n_sources).to(torch.int64).unsqueeze(0)
    return torch.cat([window.to(torch.int64).reshape(-1, n_sources), counts])[-size:]


def selector_shares(window: torch.Tensor, n_sources: int) -> torch.Tensor:
    """p: each source's share of rows won, averaged over the window's batches (uniform if empty)."""
    if window.numel() == 0:
        return torch.full((n_sources,), 1.0 / n_sources, dtype=torch.float64)
    per_batch = window.double() / window.sum(1, keepdim=True).double()
    return per_batch.mean(0)


def generator_loss(scores: torch.Tensor, winners: torch.Tensor, loss: str) -> torch.Tensor:
    """The generator loss on the winning score of every row (gradient only at the winners)."""
    won = scores.gather(0, winners.unsqueeze(0)).squeeze(0)
    return losses.AdversarialConfig(loss=loss).generator_loss(won)
