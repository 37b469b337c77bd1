"""Multi-source MineGAN (Wang et al. 2020): one miner per source generator, a shared critic, and a
selector that learns how much each source serves the target.

One step, for sources G_1..G_N with miners M_1..M_N and a shared critic D:

1. draw u (B x d_u); every source makes x_i = G_i(M_i(u));
2. score s_ib = D(x_ib); the supersample takes, for each row b, the winner k(b) = argmax_i s_ib;
3. selector: p_i = the share of rows source i won, averaged over the last ``window`` batches;
4. the critic steps on real target images against the supersample, with its penalty;
5. the generator loss is taken on the winning scores under the updated critic,
   -mean_b s_k(b)b (WGAN) or mean_b softplus(-s_k(b)b) (non-saturating); its gradient dL/dx_i is
   zero outside the rows source i won, and each source back-propagates dL/dx_i through G_i and
   M_i, stepping M_i only while mining and G_i and M_i together while fine-tuning.

Everything random (u, real batches, GP mixing weights) comes from the one seeded generator in
:class:`CriticSelector`. :class:`MultiSourceMiner` is the in-process reference; the Ray path
(``ganlode.actors``) runs the same :class:`MinedSource` and :class:`CriticSelector` classes in
separate processes and moves only u, x_i and dL/dx_i between them, so both give the same numbers.
Sampling the result: pick source i with probability p_i, then x = G_i(M_i(u)) (:class:`MinedMixture`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Sequence

import torch
from torch import nn

from . import losses
from .miner import MinedGenerator, Miner, MinerConfig
from .nets import Critic, GANConfig, Generator

STAGES = ("mine", "finetune")


@dataclass(frozen=True)
class MultiSourceConfig:
    """Settings of a multi-source mining run (the same in every process of a distributed run)."""

    mining_steps: int = 1000  # steps 1..mining_steps train the miners only
    finetune_steps: int = 500  # the following steps train G_i and M_i jointly
    loss: str = "ns-r1"
    batch: int = 64
    lr_miner: float = 1e-3
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.99
    gp_weight: float = 10.0
    r1_gamma: float = 0.2
    window: int = 1000  # selector: batches averaged into p
    miner_input_dim: int = 16
    miner_hidden: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss not in losses.LOSSES:
            raise ValueError(f"loss must be one of {', '.join(losses.LOSSES)}, got {self.loss!r}")
        if self.mining_steps < 0 or self.finetune_steps < 0 or self.total_steps < 1:
            raise ValueError("mining_steps and finetune_steps must be >= 0, and at least one step in all")
        if self.batch < 1 or self.window < 1 or self.miner_input_dim < 1 or self.miner_hidden < 1:
            raise ValueError("batch, window, miner_input_dim and miner_hidden must be >= 1")

    @property
    def total_steps(self) -> int:
        return self.mining_steps + self.finetune_steps

    def stage(self, step: int) -> str:
        """The stage of step ``step`` (1-based)."""
        return "mine" if step <= self.mining_steps else "finetune"

    def miner_config(self, latent_dim: int) -> MinerConfig:
        return MinerConfig(latent_dim=latent_dim, input_dim=self.miner_input_dim, hidden=self.miner_hidden)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MultiSourceConfig":
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


# ---------------------------------------------------------------- the maths, as pure functions


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
    return losses.wgan_generator_loss(won) if loss == "wgan-gp" else losses.ns_generator_loss(won)


def critic_loss(
    critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, cfg: MultiSourceConfig, rng: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(adversarial loss, penalty) of the critic on real images against the supersample."""
    d_real, d_fake = critic(real), critic(fake)
    if cfg.loss == "wgan-gp":
        alpha = torch.rand(real.shape[0], 1, 1, 1, generator=rng).to(real.device)
        return losses.wgan_critic_loss(d_real, d_fake), losses.gradient_penalty(critic, real, fake, cfg.gp_weight, alpha=alpha)
    return losses.ns_critic_loss(d_real, d_fake), losses.r1_penalty(critic, real, cfg.r1_gamma)


# ---------------------------------------------------------------- state as flat tensor dicts


def module_tensors(prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}{k}": v.detach().cpu().clone() for k, v in module.state_dict().items()}


def load_module_tensors(module: nn.Module, prefix: str, tensors: dict[str, torch.Tensor]) -> None:
    module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)


def optimizer_tensors(prefix: str, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """An optimizer's per-parameter state as ``<prefix><param index>.<name>`` tensors."""
    out = {}
    for idx, state in opt.state_dict()["state"].items():
        for name, value in state.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            out[f"{prefix}{idx}.{name}"] = t.detach().cpu().clone()
    return out


def load_optimizer_tensors(opt: torch.optim.Optimizer, prefix: str, tensors: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix):
            idx, name = key[len(prefix):].split(".", 1)
            state.setdefault(int(idx), {})[name] = value.clone()
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})


# ---------------------------------------------------------------- the two halves of a step


class MinedSource:
    """One source generator, its miner and their optimizers: what a generator actor hosts.

    ``sample(u, step)`` keeps the autograd graph; ``apply_gradient(dL/dx)`` back-propagates it
    and steps the miner (and, while fine-tuning, the generator). While mining, G is frozen
    entirely: eval mode (BatchNorm running statistics untouched) and no parameter gradients.
    """

    def __init__(self, generator: Generator, miner: Miner, cfg: MultiSourceConfig):
        self.G, self.M, self.cfg = generator, miner, cfg
        betas = (cfg.beta1, cfg.beta2)
        self.opt_miner = torch.optim.Adam(miner.parameters(), lr=cfg.lr_miner, betas=betas)
        self.opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr_g, betas=betas)
        self.steps_done = 0
        self._x: torch.Tensor | None = None
        self._stage = "mine"

    def sample(self, u: torch.Tensor, step: int) -> torch.Tensor:
        """x = G(M(u)) for step ``step`` (1-based), graph kept for :meth:`apply_gradient`."""
        self._stage = self.cfg.stage(step)
        finetune = self._stage == "finetune"
        self.G.train(finetune)
        self.G.requires_grad_(finetune)
        self.M.train()
        self._x = self.G(self.M(u))
        return self._x

    def apply_gradient(self, grad_x: torch.Tensor) -> None:
        if self._x is None:
            raise RuntimeError("apply_gradient() needs a sample() first")
        opts = [self.opt_miner] + ([self.opt_g] if self._stage == "finetune" else [])
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        self._x.backward(grad_x.to(self._x.device))
        for opt in opts:
            opt.step()
        self._x = None
        self.steps_done += 1

    def mined_generator(self) -> MinedGenerator:
        return MinedGenerator(self.G, self.M)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = {**module_tensors("generator.", self.G), **module_tensors("miner.", self.M)}
        out.update(optimizer_tensors("opt_miner.", self.opt_miner))
        out.update(optimizer_tensors("opt_g.", self.opt_g))
        out["steps_done"] = torch.tensor(self.steps_done, dtype=torch.int64)
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        load_module_tensors(self.G, "generator.", tensors)
        load_module_tensors(self.M, "miner.", tensors)
        load_optimizer_tensors(self.opt_miner, "opt_miner.", tensors)
        load_optimizer_tensors(self.opt_g, "opt_g.", tensors)
        self.steps_done = int(tensors["steps_done"])
        self._x = None


@dataclass
class SelectorStep:
    """What one :meth:`CriticSelector.step` returns."""

    grads: list[torch.Tensor]  # dL/dx_i, one per source, shaped like x_i
    winners: torch.Tensor  # B: the source each supersample row came from (counted by the selector)
    loss_winners: torch.Tensor  # B: the winners under the updated critic (where dL/dx is non-zero)
    stats: dict[str, float]


class CriticSelector:
    """The shared critic, its optimizer, the selector window and the run's random generator.

    Args:
        critic: the shared critic (started from one source's critic), trained in place.
        images: the target training set, N x C x H x W in [-1, 1], on the critic's device.
        n_sources: N.
        cfg: run settings; ``cfg.seed`` seeds the one generator that draws u, real batches
            and GP mixing weights.
    """

    def __init__(self, critic: Critic, images: torch.Tensor, n_sources: int, cfg: MultiSourceConfig):
        if len(images) == 0:
            raise ValueError("the target set is empty")
        if n_sources < 1:
            raise ValueError("n_sources must be >= 1")
        self.critic, self.images, self.n, self.cfg = critic, images, n_sources, cfg
        self.opt = torch.optim.Adam(critic.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
        self.window = torch.zeros(0, n_sources, dtype=torch.int64)
        self.rng = torch.Generator().manual_seed(cfg.seed * 1_000_003 + 7)
        self.steps_done = 0

    def draw_latent(self) -> torch.Tensor:
        """u for the next step (B x d_u, on the CPU): drawn here, once, for every source."""
        return torch.randn(self.cfg.batch, self.cfg.miner_input_dim, generator=self.rng)

    def shares(self) -> torch.Tensor:
        return selector_shares(self.window, self.n)

    def step(self, fakes: Sequence[torch.Tensor]) -> SelectorStep:
        """Select, count, step the critic, and return dL/dx_i for every source's batch x_i."""
        if len(fakes) != self.n:
            raise ValueError(f"expected {self.n} fake batches, got {len(fakes)}")
        device = self.images.device
        xs = [x.detach().to(device) for x in fakes]
        batch = xs[0].shape[0]
        self.critic.train()
        with torch.no_grad():
            scores = self.critic(torch.cat(xs)).view(self.n, batch)
        winners = supersample(scores)
        self.window = selector_update(self.window, winners, self.n, self.cfg.window)
        real = self.images[torch.randint(len(self.images), (batch,), generator=self.rng).to(device)]
        adv, pen = critic_loss(self.critic, real, supersample_images(xs, winners), self.cfg, self.rng)
        self.opt.zero_grad(set_to_none=True)
        (adv + pen).backward()
        self.opt.step()
        leaves = [x.clone().requires_grad_(True) for x in xs]
        scores_g = self.critic(torch.cat(leaves)).view(self.n, batch)
        loss_winners = supersample(scores_g.detach())
        g_loss = generator_loss(scores_g, loss_winners, self.cfg.loss)
        grads = list(torch.autograd.grad(g_loss, leaves))  # dL/dx only: the critic's grads stay unset
        self.steps_done += 1
        stats = {"d_loss": float(adv.detach()), "penalty": float(pen.detach()), "g_loss": float(g_loss.detach())}
        return SelectorStep([g.detach() for g in grads], winners, loss_winners, stats)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = {**module_tensors("critic.", self.critic), **optimizer_tensors("opt_d.", self.opt)}
        out["selector.window"] = self.window.clone()
        out["selector.rng"] = self.rng.get_state().clone()
        out["selector.steps_done"] = torch.tensor(self.steps_done, dtype=torch.int64)
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        load_module_tensors(self.critic, "critic.", tensors)
        load_optimizer_tensors(self.opt, "opt_d.", tensors)
        self.window = tensors["selector.window"].to(torch.int64).reshape(-1, self.n).clone()
        self.rng.set_state(tensors["selector.rng"].to(torch.uint8).clone())
        self.steps_done = int(tensors["selector.steps_done"])


# ---------------------------------------------------------------- building, the reference, sampling


def miner_seed(seed: int, index: int) -> int:
    return seed * 1_000_003 + 1009 * (index + 1)


def init_miner(cfg: MinerConfig, seed: int) -> Miner:
    """A miner whose initial weights depend only on ``seed`` (the global RNG is left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Miner(cfg)


def build_source(arch: GANConfig, generator_state: dict[str, torch.Tensor], cfg: MultiSourceConfig, index: int,
                 device: torch.device | str = "cpu") -> MinedSource:
    """Source ``index``: G with the given weights and a miner seeded by (cfg.seed, index)."""
    generator = Generator(arch)
    generator.load_state_dict(generator_state, strict=True)
    miner = init_miner(cfg.miner_config(arch.latent_dim), miner_seed(cfg.seed, index))
    return MinedSource(generator.to(device), miner.to(device), cfg)


def build_selector(arch: GANConfig, critic_state: dict[str, torch.Tensor], images: torch.Tensor, n_sources: int,
                   cfg: MultiSourceConfig, device: torch.device | str = "cpu") -> CriticSelector:
    critic = Critic(arch)
    critic.load_state_dict(critic_state, strict=True)
    return CriticSelector(critic.to(device), images.to(device), n_sources, cfg)


def step_record(step: int, cfg: MultiSourceConfig, result: SelectorStep, shares: torch.Tensor) -> dict[str, Any]:
    """One row of a run's history: step, stage, losses and the selector's shares after the step."""
    return {"step": step, "stage": cfg.stage(step), **result.stats, "shares": [float(p) for p in shares]}


def source_prefix(index: int) -> str:
    return f"sources.{index}."


class MultiSourceMiner:
    """The in-process reference: every source and the critic/selector in this process.

    ``state_tensors()`` uses the same keys as the distributed path (``sources.<i>.*`` plus the
    critic/selector keys), so a checkpoint of either can be resumed by the other.
    """

    def __init__(self, sources: list[MinedSource], selector: CriticSelector, cfg: MultiSourceConfig):
        if len(sources) != selector.n:
            raise ValueError(f"{len(sources)} sources but a selector for {selector.n}")
        self.sources, self.selector, self.cfg = sources, selector, cfg

    @classmethod
    def build(cls, arches: Sequence[GANConfig], generator_states: Sequence[dict[str, torch.Tensor]],
              critic_state: dict[str, torch.Tensor], images: torch.Tensor, cfg: MultiSourceConfig,
              device: torch.device | str = "cpu") -> "MultiSourceMiner":
        """Sources from their generator weights; the shared critic from ``critic_state`` (arch of source 0)."""
        sources = [build_source(a, s, cfg, i, device) for i, (a, s) in enumerate(zip(arches, generator_states))]
        return cls(sources, build_selector(arches[0], critic_state, images, len(sources), cfg, device), cfg)

    @property
    def steps_done(self) -> int:
        return self.selector.steps_done

    def step(self) -> dict[str, Any]:
        t = self.steps_done + 1
        u = self.selector.draw_latent()
        xs = [s.sample(u.to(self.selector.images.device), t) for s in self.sources]
        result = self.selector.step(xs)
        for source, grad in zip(self.sources, result.grads):
            source.apply_gradient(grad)
        return step_record(t, self.cfg, result, self.selector.shares())

    def run_until(self, step: int) -> list[dict[str, Any]]:
        """Run steps until ``steps_done == step``; one history row per step run."""
        return [self.step() for _ in range(self.steps_done, step)]

    def shares(self) -> list[float]:
        return [float(p) for p in self.selector.shares()]

    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = self.selector.state_tensors()
        for i, source in enumerate(self.sources):
            out.update({source_prefix(i) + k: v for k, v in source.state_tensors().items()})
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.selector.load_state_tensors(tensors)
        for i, source in enumerate(self.sources):
            p = source_prefix(i)
            source.load_state_tensors({k[len(p):]: v for k, v in tensors.items() if k.startswith(p)})

    def mixture(self) -> "MinedMixture":
        return MinedMixture([s.mined_generator() for s in self.sources], self.selector.shares())

    def close(self) -> None:  # the same interface as the distributed path
        pass


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
