"""Building the sources and the selector, and the in-process reference :class:`MultiSourceMiner`."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from .. import architectures
from ..miner import Miner, MinerConfig
from ..seeding import seeded_init
from .maths import MultiSourceConfig
from .mixture import MinedMixture
from .parts import CriticSelector, MinedSource, RoutedSelector, SelectorStep


def init_miner(cfg: MinerConfig, seed: int, index: int) -> Miner:
    """Miner ``index``'s initial weights: they depend only on (seed, index); the global RNG is left alone."""
    return seeded_init(seed, lambda: Miner(cfg), "miner", index)


def build_source(arch: Any, generator_state: dict[str, torch.Tensor], cfg: MultiSourceConfig, index: int,
                 device: torch.device | str = "cpu") -> MinedSource:
    """Source ``index``: G (architecture config ``arch``, a config or its dict) with the given weights,
    and a miner seeded by (cfg.seed, index)."""
    generator, _ = architectures.build(arch)
    generator.load_state_dict(generator_state, strict=True)
    miner = init_miner(cfg.miner_config(generator.latent_dim), cfg.seed, index)
    return MinedSource(generator.to(device), miner.to(device), cfg)


def build_selector(arch: Any, critic_state: dict[str, torch.Tensor] | Sequence[dict[str, torch.Tensor]],
                   images: torch.Tensor | Sequence[torch.Tensor], n_sources: int, cfg: MultiSourceConfig,
                   device: torch.device | str = "cpu") -> CriticSelector | RoutedSelector:
    """The critic side of a run: one shared critic (``critic_state``, against all of ``images``),
    or, when ``cfg.routed``, one critic per source (``critic_state[i]`` against ``images[i]``)."""

    def critic(state: dict[str, torch.Tensor]) -> torch.nn.Module:
        _, d = architectures.build(arch)
        d.load_state_dict(state, strict=True)
        return d.to(device)

    if not cfg.routed:
        return CriticSelector(critic(critic_state), images.to(device), n_sources, cfg)
    if len(critic_state) != n_sources or len(images) != n_sources:
        raise ValueError(f"a routed run needs {n_sources} critic states and image sets, "
                         f"got {len(critic_state)} and {len(images)}")
    return RoutedSelector([critic(s) for s in critic_state], [x.to(device) for x in images], cfg)


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
    def build(cls, arches: Sequence[Any], generator_states: Sequence[dict[str, torch.Tensor]],
              critic_state: Any, images: Any, cfg: MultiSourceConfig,
              device: torch.device | str = "cpu") -> "MultiSourceMiner":
        """Sources from their generator weights; the critic side from ``critic_state`` and ``images``
        (arch of source 0; lists of them, one per source, when ``cfg.routed``: :func:`build_selector`)."""
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
