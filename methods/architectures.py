"""The architecture registry: one record per architecture, building (G, D) from a serialisable config.

A checkpoint stores ``architectures.to_dict(cfg)``: the architecture's ``name`` plus its
config's fields. ``build(d)`` turns that back into a generator and a critic. The DCGAN is the
first entry (``nets.py``), StyleGAN2 the second (``stylegan2/``), any TorchScript generator the
third (``torchscript.py``); others register themselves the same way (``register``).

Most architectures are their config alone. One that rebuilds from files (TorchScript archives)
keeps them beside the checkpoint's weights: its config names them (``stored_files``), carries
them once attached (``with_files``, ``files``), and never writes them into its dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from torch import nn

from . import nets, stylegan2, torchscript


@dataclass(frozen=True)
class Architecture:
    """One architecture: its name, its config type (a frozen dataclass with ``to_dict`` and
    ``from_dict``) and the builder of a fresh (generator, critic) pair from that config."""

    name: str
    config: type
    build: Callable[[Any], tuple[nn.Module, nn.Module]]
    description: str = ""
    fresh: bool = True  # build() initialises new weights (False: it restores stored ones; scratch cannot use it)


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


def from_dict(d: dict[str, Any], files: Mapping[str, bytes] | None = None) -> Any:
    """The config object of ``d`` (a dict without ``name`` is a DCGAN, as older checkpoints are),
    with ``files`` (the ones :func:`stored_files` names, read from beside the weights) attached."""
    rest = dict(d)
    arch = get(rest.pop("name", DEFAULT))
    cfg = arch.config.from_dict(rest)
    return cfg.with_files(files) if files is not None and hasattr(cfg, "with_files") else cfg


def stored_files(cfg: Any) -> tuple[str, ...]:
    """The files a checkpoint of architecture ``cfg`` (a config or its dict) keeps beside its weights."""
    if isinstance(cfg, dict):
        cfg = from_dict(cfg)
    return tuple(cfg.stored_files()) if hasattr(cfg, "stored_files") else ()


def files_of(cfg: Any) -> dict[str, bytes]:
    """The attached files of a config object (empty for an architecture without any, or for None)."""
    return dict(cfg.files()) if cfg is not None and hasattr(cfg, "files") else {}


def build(cfg: Any) -> tuple[nn.Module, nn.Module]:
    """A new (generator, critic) of config ``cfg`` (a config object or its dict): freshly initialised, or
    for an architecture that is not ``fresh`` (TorchScript) the weights it restores."""
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
register(Architecture("torchscript", torchscript.TorchScriptConfig,
                      lambda cfg: torchscript.build_torchscript(cfg, lambda critic: build(critic)[1]),
                      "any generator saved with torch.jit.save (`ganlode import torchscript`); its critic a registry "
                      "architecture's or a scripted one", fresh=False))
