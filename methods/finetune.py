"""Scratch training and the fine-tuning family: TransferGAN, FreezeD, L2-SP, feature distillation.

- scratch (the floor): a fresh GAN of the source's architecture, trained on the target alone.
- finetune (TransferGAN, Wang et al. 2018): G and D start from the source weights.
- freeze_depth k (FreezeD, Mo et al. 2020): the lowest k critic blocks are left out of the
  critic's optimizer (and need no gradient), so they stay bit-identical.
- l2sp_weight alpha (L2-SP, Li et al. 2018): alpha * sum_i ||w_i - w0_i||^2 over the trained
  weights of G, D or both, with w0 the source weights.
- distill_weight beta (Mo et al. 2020): beta * sum over critic blocks l of
  mean((f_l(x) - f0_l(x))^2), f0 the frozen source critic, on the critic step's real and fake
  images together.

All four are options of one loop (:class:`~ganlode.methods.train.GANTrainer`) and combine.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

import torch
from torch import nn

from . import architectures, losses
from .base import Adapter, Export, Source, TransferOptions
from .interface import critic_depth
from .seeding import seeded_init
from .train import GANTrainer, LossTerms, TrainConfig


def train_config(options: TransferOptions, source: Source, seed: int) -> TrainConfig:
    """The adversarial loop's settings: the given options, else the source's own, else defaults."""
    loss = options.loss or source.loss
    same_loss = loss == source.loss
    src = source.train if same_loss else {}
    by_loss = losses.defaults(loss)
    return TrainConfig(
        loss=loss,
        batch=options.batch or 64,
        lr_g=options.lr,
        lr_d=options.lr,
        beta1=src.get("beta1", by_loss["beta1"]),
        beta2=src.get("beta2", by_loss["beta2"]),
        n_critic=options.n_critic or by_loss["n_critic"],
        gp_weight=src.get("gp_weight", 10.0),
        r1_gamma=src.get("r1_gamma", 1.0),
        seed=seed,
    )


def frozen_critic_parameters(critic: nn.Module, freeze_depth: int) -> list[nn.Parameter]:
    """The parameters of the lowest ``freeze_depth`` critic blocks."""
    depth = critic_depth(critic)
    if not 0 <= freeze_depth <= depth:
        raise ValueError(f"freeze_depth must be in 0..{depth}, got {freeze_depth}")
    return [p for block in critic.blocks[:freeze_depth] for p in block.parameters()]


def l2sp_penalty(params: Iterable[nn.Parameter], anchors: Iterable[torch.Tensor], weight: float) -> torch.Tensor:
    """weight * sum_i ||w_i - w0_i||^2."""
    total = torch.zeros(())
    for p, a in zip(params, anchors, strict=True):
        total = total + (p - a).pow(2).sum()
    return weight * total


def distill_loss(critic: nn.Module, source_critic: nn.Module, x: torch.Tensor, weight: float) -> torch.Tensor:
    """weight * sum_l mean((f_l(x) - f0_l(x))^2) over the critic blocks; f0 has no gradient."""
    with torch.no_grad():
        target = source_critic.features(x)
    return weight * sum(((f - t) ** 2).mean() for f, t in zip(critic.features(x), target))


class FineTune(Adapter):
    """scratch / finetune / freezed / l2sp / distill, as one adversarial loop."""

    def __init__(self, method: str, source: Source, images: torch.Tensor, options: TransferOptions, *, seed: int):
        self.method = method
        self.options = options
        if method == "scratch":
            arch = architectures.config_of(source.generator)
            self.G, self.D = seeded_init(seed, lambda: architectures.build(arch))
        else:
            self.G, self.D = copy.deepcopy(source.generator), copy.deepcopy(source.critic)
        depth = options.freeze_depth or 0
        frozen = {id(p) for p in frozen_critic_parameters(self.D, depth)}
        for p in self.D.parameters():
            p.requires_grad_(id(p) not in frozen)
        d_params = [p for p in self.D.parameters() if id(p) not in frozen]
        terms = LossTerms()
        alpha = options.l2sp_weight or 0.0
        if alpha > 0:
            on = options.l2sp_on or "both"
            if on in ("g", "both"):
                g_params = list(self.G.parameters())
                g_anchor = [p.detach().clone() for p in source.generator.parameters()]
                terms.g_extra.append(lambda: l2sp_penalty(g_params, g_anchor, alpha))
            if on in ("d", "both"):
                source_of = {id(p): p0 for p, p0 in zip(self.D.parameters(), source.critic.parameters())}
                d_anchor = [source_of[id(p)].detach().clone() for p in d_params]
                terms.d_extra.append(lambda: l2sp_penalty(d_params, d_anchor, alpha))
        beta = options.distill_weight or 0.0
        if beta > 0:
            self.source_critic = copy.deepcopy(source.critic).eval().requires_grad_(False)
            terms.d_batch_extra.append(
                lambda real, fake: distill_loss(self.D, self.source_critic, torch.cat([real, fake.detach()]), beta))
        self.train_config = train_config(options, source, seed)
        self.trainer = GANTrainer(self.G, self.D, images, self.train_config, d_params=d_params, terms=terms)

    @property
    def steps_done(self) -> int:  # type: ignore[override]
        return self.trainer.steps_done

    def step(self) -> dict[str, float]:
        return self.trainer.step()

    def sampling_generator(self) -> nn.Module:
        return self.G

    def export(self) -> Export:
        return Export(kind="gan", generator=self.G, critic=self.D)

    def state_dict(self) -> dict[str, Any]:
        return {"trainer": self.trainer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trainer.load_state_dict(state["trainer"])

    def record(self) -> dict[str, Any]:
        return {"method": self.method, "train": self.train_config.to_dict()}
