"""Turning any path a user gives (checkpoint, run directory, zoo:NAME) into a sampler."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from . import checkpoint, storage
from .errors import UserError

Sampler = Callable[[int, torch.Generator], torch.Tensor]
# kind -> loader(checkpoint_dir) -> LoadedModel; extended by other model kinds (e.g. mined).
LOADERS: dict[str, Callable[[str], "LoadedModel"]] = {}


@dataclass
class LoadedModel:
    path: str
    config: dict[str, Any]
    sampler: Sampler
    resolution: int
    channels: int


def checkpoint_dir(path: str) -> str:
    """The checkpoint directory behind ``path``: itself, a run's ``checkpoints/final``, or zoo."""
    path = checkpoint.resolve(path)
    if storage.exists(storage.join(path, checkpoint.WEIGHTS)):
        return path
    final = storage.join(path, "checkpoints", "final")
    if storage.exists(storage.join(final, checkpoint.WEIGHTS)):
        return final
    if not storage.exists(path):
        raise UserError(f"{path} does not exist; pass a checkpoint directory, a run directory or zoo:NAME")
    raise UserError(f"{path} holds no run or checkpoint (no {checkpoint.WEIGHTS} and no checkpoints/final/); "
                    "pass a directory written by ganlode, or zoo:NAME")


def _load_gan(path: str) -> LoadedModel:
    from .evaluation import generator_sampler

    ckpt = checkpoint.load_checkpoint(path, with_critic=False)
    return LoadedModel(path, ckpt.config, generator_sampler(ckpt.generator), ckpt.arch.resolution, ckpt.arch.channels)


LOADERS["gan"] = _load_gan


def _load_mined(path: str) -> LoadedModel:  # multi-source MineGAN: pick i ~ p, then G_i(M_i(u))
    from .mine import load_mined

    return load_mined(path)


LOADERS["mined"] = _load_mined


def _load_minegan(path: str) -> LoadedModel:
    """A single-source MineGAN: x = G(M(u)), u ~ N(0, I); the miner is stored under ``miner.``."""
    from ..methods.miner import MinedGenerator, Miner, MinerConfig
    from .evaluation import generator_sampler

    ckpt = checkpoint.load_checkpoint(path, with_critic=False)
    try:
        miner = Miner(MinerConfig(**ckpt.config["miner"]))
        miner.load_state_dict({k[len("miner."):]: v.float() for k, v in ckpt.extra.items() if k.startswith("miner.")})
    except (KeyError, TypeError, RuntimeError) as e:
        raise UserError(f"{path}: the miner in this minegan checkpoint is missing or does not match its config "
                        f"({str(e).splitlines()[0][:80]}); re-create it with `ganlode transfer --method minegan`") from None
    miner.eval()
    sampler = generator_sampler(MinedGenerator(ckpt.generator, miner))
    return LoadedModel(path, ckpt.config, sampler, ckpt.arch.resolution, ckpt.arch.channels)


LOADERS["minegan"] = _load_minegan


def load_model(path: str) -> LoadedModel:
    d = checkpoint_dir(path)
    config = storage.read_json(storage.join(d, checkpoint.CONFIG))
    kind = config.get("kind", "gan") if isinstance(config, dict) else None
    if kind not in LOADERS:
        raise UserError(f"{d}: unknown model kind {kind!r} in {checkpoint.CONFIG}; known: {', '.join(sorted(LOADERS))}")
    return LOADERS[kind](d)
