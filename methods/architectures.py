"""The architecture registry: one record per architecture, building (G, D) from a serialisable config.

A checkpoint stores ``architectures.to_dict(cfg)``: the architecture's ``name`` plus its
config's fields. ``build(d)`` turns that back into a generator and a critic. The DCGAN is the
first entry (``nets.py``), StyleGAN2 the second (``stylegan2/``); others register themselves the
same way (``register``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from . import nets, stylegan2


@dataclass(frozen=True)
class Architecture:
    """One architecture: its name, its config type (a frozen dataclass with ``to_dict`` and
    ``from_dict``) and the builder of a fresh (generator, critic) pair from that config."""

    name: str
    config: type
    build: Callable[[Any], tuple[nn.Module, nn.Module]]
    description: str = ""


ARCHITECTURES: dict[str, Architecture] = {}
DEFAULT = "dcgan"


def register(arch: Architecture) -> Architecture:
    if arch.name in ARCHITECTURES and ARCHITECTURES[arch.name] is not arch:
        raise ValueError(f"architecture {arch.name!r} is registered already")
    ARCHITECTURES[arch.name] = arch
    return arch


def get(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}: known are {', '.join(sorted(ARCHITECTURES))}") from None


def name_of(cfg: Any) -> str:
    for arch in ARCHITECTURES.values():
        if type(cfg) is arch.config:
            return arch.name
    raise ValueError(f"{type(cfg).__name__} is not the config of a registered architecture")


def to_dict(cfg: Any) -> dict[str, Any]:
    """The serialisable form of an architecture config: ``{"name": ..., **fields}``."""
    return {"name": name_of(cfg), **cfg.to_dict()}


def from_dict(d: dict[str, Any]) -> Any:
    """The config object of ``d`` (a dict without ``name`` is a DCGAN, as older checkpoints are)."""
    rest = dict(d)
    arch = get(rest.pop("name", DEFAULT))
    return arch.config.from_dict(rest)


def build(cfg: Any) -> tuple[nn.Module, nn.Module]:
    """A fresh (generator, critic) of config ``cfg`` (a config object or its dict)."""
    if isinstance(cfg, dict):
        cfg = from_dict(cfg)
    return get(name_of(cfg)).build(cfg)


def config_of(generator: nn.Module) -> Any:
    """The architecture config a registry-built generator carries (``generator.cfg``)."""
    cfg = getattr(generator, "cfg", None)
    if cfg is None:
        raise ValueError(f"{type(generator).__name__} was not built by the architecture registry (it has no cfg)")
    name_of(cfg)
    return cfg


register(Architecture("dcgan", nets.GANConfig, nets.build_gan,
                      "DCGAN: Linear+BN then two ConvTranspose+BN stages; a 3-block conv critic without BN"))
register(Architecture("stylegan2", stylegan2.StyleGAN2Config, stylegan2.build_stylegan2,
                      "StyleGAN2 (config F, rosinality's stylegan2-pytorch layout): mapping network, modulated convs "
                      "with noise, skip generator; residual critic with minibatch stddev"))
