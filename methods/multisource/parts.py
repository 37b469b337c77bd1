"""The two halves of a mining step: :class:`MinedSource` (what a generator actor hosts) and
:class:`CriticSelector` (the shared critic and the selector, what the coordinator hosts)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch
from torch import nn

from .. import seeding
from ..miner import MinedGenerator, Miner
from .maths import MultiSourceConfig, generator_loss, selector_shares, selector_update, supersample, supersample_images
from .state import load_module_tensors, load_optimizer_tensors, module_tensors, optimizer_tensors

Stream = tuple[str | int, ...]  # the keys of a seeded random stream (seeding.generator(seed, *keys))


class MinedSource:
    """One source generator, its miner and their optimizers: what a generator actor hosts.

    ``sample(u, step)`` keeps the autograd graph; ``apply_gradient(dL/dx)`` back-propagates it
    and steps the miner (and, while fine-tuning, the generator). While mining, G is frozen
    entirely: eval mode (BatchNorm running statistics untouched) and no parameter gradients.
    """

    def __init__(self, generator: nn.Module, miner: Miner, cfg: MultiSourceConfig):
        self.G, self.M, self.cfg = generator, miner, cfg
        betas = cfg.betas
        self.opt_miner = torch.optim.Adam(miner.parameters(), lr=cfg.lr_miner, betas=betas)
        self.opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr_g, betas=betas)
        self.steps_done = 0
        self._x: torch.Tensor | None = None
        self._stage = "mine"

    def sample(self, u: torch.Tensor, step: int) -> torch.Tensor:
        """x = G(M(u)) for step ``step`` (1-based), graph kept for :meth:`apply_gradient`.

        ``u`` holds ``cfg.rows_per_step`` rows; the graph is kept for the last ``cfg.batch`` of them
        only (the earlier ones feed the extra critic steps of ``n_critic > 1``, and get no gradient).
        """
        self._stage = self.cfg.stage(step)
        finetune = self._stage == "finetune"
        self.G.train(finetune)
        self.G.requires_grad_(finetune)
        self.M.train()
        keep = self.cfg.batch  # rows before the last batch only feed extra critic steps (n_critic > 1)
        if u.shape[0] > keep:
            with torch.no_grad():
                extra = self.G(self.M(u[:-keep]))
            self._x = self.G(self.M(u[-keep:]))
            return torch.cat([extra, self._x.detach()])
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

    def __init__(self, critic: nn.Module, images: torch.Tensor, n_sources: int, cfg: MultiSourceConfig,
                 stream: Stream = ("selector",)):
        if len(images) == 0:
            raise ValueError("the target set is empty")
        if n_sources < 1:
            raise ValueError("n_sources must be >= 1")
        if cfg.row_shares and len(cfg.row_shares) != n_sources:
            raise ValueError(f"row_shares has {len(cfg.row_shares)} entries for {n_sources} sources")
        self.critic, self.images, self.n, self.cfg = critic, images, n_sources, cfg
        self.opt = torch.optim.Adam(critic.parameters(), lr=cfg.lr_d, betas=cfg.betas)
        self.window = torch.zeros(0, n_sources, dtype=torch.int64)
        self.rng = seeding.generator(cfg.seed, *stream)
        self.steps_done = 0

    def draw_latent(self) -> torch.Tensor:
        """u for the next step (``rows_per_step`` x d_u, on the CPU): drawn here, once, for every source."""
        return torch.randn(self.cfg.rows_per_step, self.cfg.miner_input_dim, generator=self.rng)

    def shares(self) -> torch.Tensor:
        return selector_shares(self.window, self.n)

    def _rows(self, scores: torch.Tensor) -> torch.Tensor:
        """Each row's source: the critic's argmax (``rows="best"``), or drawn from p (``"shares"``)."""
        if self.cfg.rows == "best":
            return supersample(scores)
        p = torch.tensor(self.cfg.row_shares, dtype=torch.float64) if self.cfg.row_shares else self.shares()
        return torch.multinomial(p, scores.shape[1], replacement=True, generator=self.rng).to(scores.device)

    def step(self, fakes: Sequence[torch.Tensor]) -> SelectorStep:
        """Select, count, step the critic (``n_critic`` times, one batch of rows each), and return
        dL/dx_i for the last batch of every source's x_i.

        With ``rows="best"`` the generator loss is taken at the winners under the updated critic;
        with ``rows="shares"`` at the rows drawn for the critic's step (what sampling does).
        Wins are counted from step ``warmup + 1`` on.
        """
        if len(fakes) != self.n:
            raise ValueError(f"expected {self.n} fake batches, got {len(fakes)}")
        device = self.images.device
        batch = self.cfg.batch
        xs_all = [x.detach().to(device) for x in fakes]
        if any(x.shape[0] != self.cfg.rows_per_step for x in xs_all):
            raise ValueError(f"every source must send {self.cfg.rows_per_step} rows, got {[x.shape[0] for x in xs_all]}")
        self.critic.train()
        for c in range(self.cfg.n_critic):
            xs = [x[c * batch:(c + 1) * batch] for x in xs_all]
            with torch.no_grad():
                scores = self.critic(torch.cat(xs)).view(self.n, batch)
            winners = self._rows(scores)
            real = self.images[torch.randint(len(self.images), (batch,), generator=self.rng).to(device)]
            adv, pen = self.cfg.critic_loss(self.critic, real, supersample_images(xs, winners), self.rng)
            self.opt.zero_grad(set_to_none=True)
            (adv + pen).backward()
            self.opt.step()
        if self.steps_done >= self.cfg.warmup:
            self.window = selector_update(self.window, winners, self.n, self.cfg.window)
        leaves = [x.clone().requires_grad_(True) for x in xs]
        scores_g = self.critic(torch.cat(leaves)).view(self.n, batch)
        loss_winners = supersample(scores_g.detach()) if self.cfg.rows == "best" else winners
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


class RoutedSelector:
    """Routed mining: source i has its own critic, trained against its own part of the target only.

    The interface is :class:`CriticSelector`'s, so the in-process reference and the coordinator
    run it unchanged. Route i is a one-source :class:`CriticSelector` (critic ``critics[i]``,
    images ``images[i]``, random stream ``(seed, "selector", "route", i)``); one u per step, drawn
    from the stream ``(seed, "selector")``, feeds every source. No source competes for rows, so a
    source that should not serve the target is not in the run at all and never learns to imitate
    it. The shares are fixed: ``cfg.row_shares`` (each route's share of the target).
    """

    def __init__(self, critics: Sequence[nn.Module], images: Sequence[torch.Tensor], cfg: MultiSourceConfig):
        if len(critics) != len(images) or not critics:
            raise ValueError(f"a routed selector needs one critic per image set, got {len(critics)} and {len(images)}")
        if len(cfg.row_shares) != len(critics):
            raise ValueError(f"row_shares has {len(cfg.row_shares)} entries for {len(critics)} routes")
        single = replace(cfg, rows="best", row_shares=(), routed=False)
        self.routes = [CriticSelector(c, x, 1, single, stream=("selector", "route", i))
                       for i, (c, x) in enumerate(zip(critics, images))]
        self.n, self.cfg = len(critics), cfg
        self.images = self.routes[0].images
        self.rng = seeding.generator(cfg.seed, "selector")
        self._shares = torch.tensor(cfg.row_shares, dtype=torch.float64)

    @property
    def steps_done(self) -> int:
        return self.routes[0].steps_done

    def draw_latent(self) -> torch.Tensor:
        return torch.randn(self.cfg.rows_per_step, self.cfg.miner_input_dim, generator=self.rng)

    def shares(self) -> torch.Tensor:
        return self._shares.clone()

    def step(self, fakes: Sequence[torch.Tensor]) -> SelectorStep:
        if len(fakes) != self.n:
            raise ValueError(f"expected {self.n} fake batches, got {len(fakes)}")
        results = [route.step([x]) for route, x in zip(self.routes, fakes)]
        stats = {k: sum(r.stats[k] for r in results) / self.n for k in results[0].stats}
        rows = torch.arange(self.n).repeat_interleave(self.cfg.batch)
        return SelectorStep([r.grads[0] for r in results], rows, rows, stats)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = {"selector.rng": self.rng.get_state().clone(),
               "selector.steps_done": torch.tensor(self.steps_done, dtype=torch.int64)}
        for i, route in enumerate(self.routes):
            out.update({f"route.{i}.{k}": v for k, v in route.state_tensors().items()})
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.rng.set_state(tensors["selector.rng"].to(torch.uint8).clone())
        for i, route in enumerate(self.routes):
            p = f"route.{i}."
            route.load_state_tensors({k[len(p):]: v for k, v in tensors.items() if k.startswith(p)})
