"""MineGAN with one source (Wang et al. 2020): mine the source's latent space, then fine-tune.

1. Mining (``mining_steps`` steps): a miner M: u -> z sits in front of the source generator G.
   Only M is trained, adversarially against a critic that starts from the source critic (with
   the source's loss unless another is given). G is frozen and stays in eval mode, so its
   weights and BatchNorm statistics are bit-identical afterwards.
2. Joint fine-tuning (the remaining steps): G (in train mode) and M are trained together, the
   critic continues with its optimizer state.
Sampling: x = G(M(u)), u ~ N(0, I); the checkpoint kind ``minegan`` stores G, M and the critic.

Mining space (``mine_space``): ``z`` (the default, every architecture) as above. ``w``, for an
architecture with a mapping network (StyleGAN2; any other generator is refused with a
ValueError): the miner outputs a w (style_dim) and x = G(M(u), input_is_w=True) =
synthesis(M(u)), so the miner sits between the mapping and the synthesis network. Its last
bias starts at the source's mean w (:func:`~.miner.mean_w`), so mining starts from the centre
of the source's w distribution instead of w = 0. The mapping network stays frozen in both
phases: mining trains the miner alone, joint fine-tuning the synthesis network and the miner
(the mapping network's weights are bit-identical afterwards; it is not used in sampling). The
checkpoint records the space (``mine_space`` in its config).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from .base import Adapter, Export, NotApplicable, Source, TransferOptions
from .finetune import train_config
from .miner import MinedGenerator, Miner, MinerConfig, mapping_parameters, mean_w, mine_space_error
from .seeding import seeded_init
from .train import GANTrainer, make_adam


class FrozenGeneratorMiner(MinedGenerator):
    """G(M(u)) whose generator stays in eval mode even when the module is put in train mode."""

    def train(self, mode: bool = True) -> "FrozenGeneratorMiner":
        super().train(mode)
        self.generator.eval()
        return self


def mining_trainer(generator: nn.Module, miner: Miner, critic: nn.Module, images: torch.Tensor,
                   cfg, space: str = "z") -> GANTrainer:
    """A GANTrainer whose generator optimizer holds only the miner; G is frozen in eval mode."""
    generator.eval().requires_grad_(False)
    return GANTrainer(FrozenGeneratorMiner(generator, miner, space), critic, images, cfg,
                      g_params=list(miner.parameters()))


def start_joint_finetuning(trainer: GANTrainer, generator: nn.Module, miner: Miner, space: str = "z") -> None:
    """Switch a mining trainer to training G and M together (the critic keeps its optimizer);
    in ``w`` space G's mapping network stays frozen (synthesis and miner are trained)."""
    generator.requires_grad_(True)
    trainer.G = MinedGenerator(generator, miner, space)
    if space == "w":
        frozen = mapping_parameters(generator)
        for p in frozen:
            p.requires_grad_(False)
        ids = {id(p) for p in frozen}
        trainer.g_params = [p for p in generator.parameters() if id(p) not in ids] + list(miner.parameters())
    else:
        trainer.g_params = list(generator.parameters()) + list(miner.parameters())
    trainer.opt_g = make_adam(trainer.g_params, trainer.cfg.lr_g, trainer.cfg)


class MineGAN(Adapter):
    method = "minegan"

    def __init__(self, source: Source, images: torch.Tensor, options: TransferOptions, *, seed: int,
                 miner_config: MinerConfig | None = None, mine_space: str | None = None):
        """``mine_space``: ``z`` or ``w`` (default: ``options.mine_space``, else ``z``); ``w`` needs a
        generator with a mapping network (:class:`~.base.NotApplicable`, a ValueError, otherwise)."""
        self.mine_space = mine_space or options.mine_space or "z"
        reason = mine_space_error(source.generator, self.mine_space)
        if reason:
            raise NotApplicable(reason)
        self.G = copy.deepcopy(source.generator)
        self.D = copy.deepcopy(source.critic).requires_grad_(True)
        if self.mine_space == "w":
            w_mean = mean_w(self.G)
            self.miner_config = miner_config or MinerConfig(latent_dim=w_mean.shape[-1])
            self.miner = seeded_init(seed, lambda: Miner(self.miner_config), "miner")
            with torch.no_grad():
                self.miner.net[-1].bias.copy_(w_mean.reshape(-1))
        else:
            self.miner_config = miner_config or MinerConfig(latent_dim=self.G.latent_dim)
            self.miner = seeded_init(seed, lambda: Miner(self.miner_config), "miner")
        self.mining_steps = options.mining_steps or 0
        self.train_config = train_config(options, source, seed)
        self.trainer = mining_trainer(self.G, self.miner, self.D, images, self.train_config, self.mine_space)
        self.joint = False
        if self.mining_steps == 0:
            self._start_joint()

    def _start_joint(self) -> None:
        start_joint_finetuning(self.trainer, self.G, self.miner, self.mine_space)
        self.joint = True

    @property
    def steps_done(self) -> int:  # type: ignore[override]
        return self.trainer.steps_done

    @property
    def phase(self) -> str:
        return "joint" if self.joint else "mining"

    def step(self) -> dict[str, float]:
        if not self.joint and self.trainer.steps_done >= self.mining_steps:
            self._start_joint()
        return self.trainer.step()

    def sampling_generator(self) -> nn.Module:
        return MinedGenerator(self.G, self.miner, self.mine_space)

    def export(self) -> Export:
        extra = {f"miner.{k}": v.detach().clone() for k, v in self.miner.state_dict().items()}
        return Export(kind="minegan", generator=self.G, critic=self.D, extra=extra,
                      config={"miner": self.miner_config.to_dict(), "mining_steps": self.mining_steps,
                              "mine_space": self.mine_space})

    def state_dict(self) -> dict[str, Any]:
        return {"joint": self.joint, "trainer": self.trainer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if bool(state["joint"]) and not self.joint:  # joint fine-tuning has its own G optimizer: switch first
            self._start_joint()
        elif self.joint and not bool(state["joint"]):
            raise ValueError("cannot load a mining-stage state into a MineGAN already fine-tuning jointly")
        self.trainer.load_state_dict(state["trainer"])

    def record(self) -> dict[str, Any]:
        return {"method": self.method, "train": self.train_config.to_dict(), "miner": self.miner_config.to_dict(),
                "mining_steps": self.mining_steps, "mine_space": self.mine_space}
