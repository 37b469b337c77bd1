"""One GAN training loop shared by pretraining, scratch and every fine-tuning method.

Methods customise it through data, not subclasses: which parameters each optimizer holds
(FreezeD leaves frozen blocks out), and extra loss terms for G and D (L2-SP, distillation).
The same loop runs in-process and inside each Ray Train worker (``grad_sync`` averages
gradients across workers), so a one-worker distributed run equals the in-process run.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import nn

from . import augment as diffaug
from . import losses, seeding
from .nets import Critic, Generator

Regularizer = Callable[[], torch.Tensor]
DistillTerm = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TrainConfig(losses.AdversarialConfig):
    """Optimisation settings of the adversarial loop (the shared fields: :class:`AdversarialConfig`)."""

    lr_g: float = 2e-4
    lr_d: float = 2e-4
    n_critic: int = 2
    ema_decay: float = 0.0  # > 0: keep an exponential moving average of G's weights (G_ema)
    # DiffAugment policy of what the critic sees ('': none; :mod:`.augment`), e.g. "translation,color".
    augment: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_critic < 1:
            raise ValueError("n_critic must be >= 1")
        self.augment_policy  # refuse an unknown policy when the settings are made, not at the first step

    @property
    def augment_policy(self) -> tuple[str, ...]:
        """The transforms of ``augment`` (:func:`.augment.parse_policy`)."""
        return diffaug.parse_policy(self.augment)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LossTerms:
    """Optional extra terms, each a function returning a scalar to add to a loss."""

    g_extra: list[Regularizer] = field(default_factory=list)
    d_extra: list[Regularizer] = field(default_factory=list)
    # Called with (real, fake) batches at each critic step; e.g. feature distillation.
    d_batch_extra: list[DistillTerm] = field(default_factory=list)


def make_adam(params: Iterable[nn.Parameter], lr: float, cfg: TrainConfig) -> torch.optim.Adam | None:
    params = [p for p in params if p.requires_grad]
    if not params:
        return None
    return torch.optim.Adam(params, lr=lr, betas=cfg.betas)


class GANTrainer:
    """Holds G, D, their optimizers and a seeded RNG; ``step()`` is one generator iteration.

    Args:
        generator, critic: the nets, trained in place.
        images: the training set, N x C x H x W in [-1, 1] (this worker's shard).
        cfg: optimisation settings.
        g_params, d_params: what each optimizer updates (default: all parameters). Parameters
            left out never change: FreezeD passes the critic without its lowest blocks.
        terms: extra loss terms.
        grad_sync: called on the list of parameters after each backward (data parallel).
        rank: worker rank; offsets the RNG so workers draw different batches.
        g_guard, d_guard: per-filter constraints (:class:`~.kernels.FilterGuard`: ``before()`` and
            ``after()`` around each optimiser step of G or D; AdAM's and RICK's frozen and pruned filters).
    """

    def __init__(
        self,
        generator: Generator,
        critic: Critic,
        images: torch.Tensor,
        cfg: TrainConfig,
        *,
        g_params: Iterable[nn.Parameter] | None = None,
        d_params: Iterable[nn.Parameter] | None = None,
        terms: LossTerms | None = None,
        grad_sync: Callable[[list[nn.Parameter]], None] | None = None,
        rank: int = 0,
        g_guard: Any = None,
        d_guard: Any = None,
    ):
        if len(images) == 0:
            raise ValueError("the training set is empty")
        self.G, self.D, self.images, self.cfg = generator, critic, images, cfg
        self.g_params = list(generator.parameters() if g_params is None else g_params)
        self.d_params = list(critic.parameters() if d_params is None else d_params)
        self.opt_g = make_adam(self.g_params, cfg.lr_g, cfg)
        self.opt_d = make_adam(self.d_params, cfg.lr_d, cfg)
        self.terms = terms or LossTerms()
        self.grad_sync = grad_sync
        self.g_guard, self.d_guard = g_guard, d_guard
        self.rng = seeding.generator(cfg.seed, "gan-train", rank)
        # Its own stream, so turning augmentation on or off leaves every other draw as it was.
        self.policy = cfg.augment_policy
        self.aug_rng = seeding.generator(cfg.seed, "augment", rank)
        self.steps_done = 0
        # The averaged generator is what gets shipped: it is smoother than the last iterate.
        self.G_ema = copy.deepcopy(generator).eval() if cfg.ema_decay > 0 else None
        if self.G_ema is not None:
            self.G_ema.requires_grad_(False)

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.G_ema is None:
            return
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.lerp_(p, 1.0 - self.cfg.ema_decay)
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    def _batch(self, n: int) -> torch.Tensor:
        idx = torch.randint(len(self.images), (n,), generator=self.rng)
        return self.images[idx]

    def _latent(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.G.latent_dim, generator=self.rng)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        """What the critic sees of ``x``: the DiffAugment policy's transform (identity without one)."""
        return diffaug.diff_augment(x, self.policy, self.aug_rng) if self.policy else x

    def _apply(self, opt: torch.optim.Optimizer | None, params: list[nn.Parameter], loss: torch.Tensor,
               guard: Any = None) -> None:
        if opt is None:
            return
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_sync is not None:
            self.grad_sync(params)
        if guard is not None:
            guard.before()
        opt.step()
        if guard is not None:
            guard.after()

    def critic_step(self) -> dict[str, float]:
        real = self._batch(self.cfg.batch)
        with torch.no_grad():
            fake = self.G(self._latent(self.cfg.batch))
        adv, pen = self.cfg.critic_loss(self.D, self._augment(real), self._augment(fake), self.rng)
        total = adv + pen
        for term in self.terms.d_extra:
            total = total + term()
        for term in self.terms.d_batch_extra:
            total = total + term(real, fake)
        # Critic gradients must not leak into G's (frozen) parameters: fake was made under no_grad.
        for p in self.G.parameters():
            p.grad = None
        self._apply(self.opt_d, self.d_params, total, self.d_guard)
        return {"d_loss": float(adv.detach()), "penalty": float(pen.detach())}

    def generator_step(self) -> dict[str, float]:
        fake = self.G(self._latent(self.cfg.batch))
        adv = self.cfg.generator_loss(self.D(self._augment(fake)))
        total = adv
        for term in self.terms.g_extra:
            total = total + term()
        self._apply(self.opt_g, self.g_params, total, self.g_guard)
        for p in self.D.parameters():  # G's backward passed through D; drop those grads
            p.grad = None
        return {"g_loss": float(adv.detach())}

    def step(self) -> dict[str, float]:
        self.G.train()
        stats: dict[str, float] = {}
        for _ in range(self.cfg.n_critic):
            stats = self.critic_step()
        stats.update(self.generator_step())
        self._update_ema()
        self.steps_done += 1
        return stats

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue bit for bit (torch.save(weights_only=True) safe)."""
        return {
            "G": self.G.state_dict(), "D": self.D.state_dict(),
            "opt_g": None if self.opt_g is None else self.opt_g.state_dict(),
            "opt_d": None if self.opt_d is None else self.opt_d.state_dict(),
            "G_ema": None if self.G_ema is None else self.G_ema.state_dict(),
            "rng": self.rng.get_state(), "aug_rng": self.aug_rng.get_state(), "steps_done": self.steps_done,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        for name in ("opt_g", "opt_d", "G_ema"):
            own, saved = getattr(self, name), state[name]
            if (own is None) != (saved is None):
                raise ValueError(f"state has {name} {'set' if saved is not None else 'unset'}, this trainer not")
            if own is not None:
                own.load_state_dict(saved)
        self.rng.set_state(state["rng"])
        if "aug_rng" in state:  # states saved before augmentation existed had no such stream
            self.aug_rng.set_state(state["aug_rng"])
        self.steps_done = int(state["steps_done"])
