"""Turning any path a user gives (checkpoint, run directory, zoo:NAME) into a sampler.

What a path is comes from its ``config.json`` (:func:`~.records.record_type`): a checkpoint's
:class:`~.records.ModelRecord`, whose ``model_kind`` picks the loader in :data:`LOADERS`, or a
run's :class:`~.records.RunRecord`, whose model is ``RUN/checkpoints/final``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from .. import storage
from ..errors import UserError
from ...methods import architectures
from ...methods.latent import LatentGaussianGenerator
from ...methods.miner import MinedGenerator, Miner, MinerConfig
from ...methods.multisource import MinedMixture, MultiSourceConfig, selector_shares, source_prefix
from . import checkpoint
from .records import ModelRecord, RunRecord, record_type
from .rundir import CONFIG_FILE, RunDir
from .sampling import Sampler, generator_sampler
from .zoo import resolve


@dataclass
class LoadedModel:
    """A stored model ready to sample: ``module`` is the generator as an ``nn.Module`` (eval mode),
    ``sampler`` draws n images with a torch.Generator (the protocol's interface)."""

    path: str
    config: dict[str, Any]
    sampler: Sampler
    resolution: int
    channels: int
    module: torch.nn.Module | None = None


@dataclass(frozen=True)
class Located:
    """What a path holds: a checkpoint directory, and the run it is the result of (if any)."""

    path: str                 # the path as given, zoo:NAME resolved
    checkpoint: str           # the checkpoint directory
    run: RunRecord | None     # the run's record when ``path`` is a run directory


def locate(path: str) -> Located:
    """Read ``path``'s config.json and say what it is: a checkpoint, or a run and its final checkpoint."""
    path = resolve(path)
    config_path = storage.join(path, CONFIG_FILE)
    if not storage.exists(config_path):
        if not storage.exists(path):
            raise UserError(f"{path} does not exist; pass a checkpoint directory, a run directory or zoo:NAME")
        raise UserError(f"{path} holds no run or checkpoint (no {CONFIG_FILE}); pass a directory written by ganlode, "
                        "or zoo:NAME")
    raw = storage.read_json(config_path)
    kind = record_type(raw)
    if kind is ModelRecord:
        return Located(path, path, None)
    if kind is RunRecord:
        run = RunDir(path)
        final = run.checkpoint_path()
        if not storage.exists(storage.join(final, CONFIG_FILE)):
            raise UserError(f"{path} has no final checkpoint (the run is unfinished or failed): re-run it with a new --out")
        return Located(path, final, RunRecord.from_dict(raw, config_path))
    raise UserError(f"{config_path} records neither a run nor a checkpoint; pass a directory written by ganlode, "
                    "or zoo:NAME")


def checkpoint_dir(path: str) -> str:
    """The checkpoint directory behind ``path``: itself, a run's ``checkpoints/final``, or zoo."""
    return locate(path).checkpoint


def load_model(path: str) -> LoadedModel:
    d = checkpoint_dir(path)
    record = ModelRecord.from_dict(storage.read_json(storage.join(d, CONFIG_FILE)), f"{d}/{CONFIG_FILE}")
    if record.model_kind not in LOADERS:
        raise UserError(f"{d}: unknown model kind {record.model_kind!r} in {CONFIG_FILE}; "
                        f"known: {', '.join(sorted(LOADERS))}")
    return LOADERS[record.model_kind](d)


# ---------------------------------------------------------------- one loader per model kind


def _load_gan(path: str) -> LoadedModel:
    """A plain generator; with ``latent_affine`` (an architecture that cannot fold the fitted code
    Gaussian of GLO/BSA/AdaBN into its first layer) it samples G(latent_mean + latent_chol @ eps)."""
    ckpt = checkpoint.load_checkpoint(path, with_critic=False)
    module: torch.nn.Module = ckpt.generator
    if ckpt.config.get("latent_affine"):
        try:
            module = LatentGaussianGenerator(ckpt.generator, ckpt.extra["latent_mean"].float(),
                                             ckpt.extra["latent_chol"].float())
        except KeyError as e:
            raise UserError(f"{path}: latent_affine is set but {e.args[0]} is missing from the weights; "
                            "re-create the checkpoint") from None
    module.eval()
    return LoadedModel(path, ckpt.config, generator_sampler(module), ckpt.generator.resolution,
                       ckpt.generator.channels, module)


def _load_minegan(path: str) -> LoadedModel:
    """A single-source MineGAN: x = G(M(u)), u ~ N(0, I); the miner is stored under ``miner.``, and
    ``mine_space`` in the config says what it outputs (``z``, the default of older checkpoints, or
    ``w``: x = G(M(u), input_is_w=True))."""
    ckpt = checkpoint.load_checkpoint(path, with_critic=False)
    try:
        miner = Miner(MinerConfig(**ckpt.config["miner"]))
        miner.load_state_dict({k[len("miner."):]: v.float() for k, v in ckpt.extra.items() if k.startswith("miner.")})
    except (KeyError, TypeError, RuntimeError) as e:
        raise UserError(f"{path}: the miner in this minegan checkpoint is missing or does not match its config "
                        f"({str(e).splitlines()[0][:80]}); re-create it with `ganlode transfer --method minegan`") from None
    miner.eval()
    try:
        module = MinedGenerator(ckpt.generator, miner, ckpt.config.get("mine_space", "z")).eval()
    except ValueError as e:
        raise UserError(f"{path}: {e}; re-create it with `ganlode transfer --method minegan`") from None
    return LoadedModel(path, ckpt.config, generator_sampler(module), ckpt.generator.resolution,
                       ckpt.generator.channels, module)


def mixture_from_state(arches: Sequence[Any], cfg: MultiSourceConfig,
                       tensors: dict[str, torch.Tensor]) -> MinedMixture:
    """The mined model (every G_i(M_i(.)) and p) from a run state or a mined artifact's tensors."""
    sources = []
    for i, arch in enumerate(arches):
        g, _ = architectures.build(arch)
        m = Miner(cfg.miner_config(g.latent_dim))
        checkpoint.load_into(g, f"{source_prefix(i)}generator.", tensors, "run state")
        checkpoint.load_into(m, f"{source_prefix(i)}miner.", tensors, "run state")
        sources.append(MinedGenerator(g, m))
    shares = tensors["shares"] if "shares" in tensors else selector_shares(tensors["selector.window"], len(arches))
    return MinedMixture(sources, shares).eval()


def _load_mined(path: str) -> LoadedModel:
    """Multi-source MineGAN: a sampler that picks source i ~ p, then x = G_i(M_i(u))."""
    config, tensors = checkpoint.read_tensors(path)
    try:
        arches = [_source_arch(s, i, path) for i, s in enumerate(config["sources"])]
        cfg = MultiSourceConfig.from_dict(config["mining"])
        if "shares" not in tensors:
            raise KeyError("shares")
        mixture = mixture_from_state(arches, cfg, tensors)
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path} is not a complete mined model ({e.__class__.__name__}: {e}); re-run `ganlode mine`") from None
    return LoadedModel(path, config, mixture.sample, arches[0].resolution, arches[0].channels, mixture)


def _source_arch(source: dict[str, Any], index: int, path: str) -> Any:
    """Source ``index``'s architecture in a mined model; one that rebuilds from files (TorchScript)
    reads them from the source checkpoint the record names, checked against their sha256."""
    arch = source["arch"]
    if not architectures.stored_files(arch):
        return architectures.from_dict(arch)
    origin = source.get("path")
    if not origin or not storage.exists(storage.join(origin, CONFIG_FILE)):
        raise UserError(f"{path}: source {index} is a {arch.get('name')} generator whose module lives in its source "
                        f"checkpoint {origin}, which is gone: restore that checkpoint at that path")
    return checkpoint.arch_with_files(arch, origin, f"{path}/{CONFIG_FILE} (source {index})")


# model_kind -> loader(checkpoint_dir) -> LoadedModel
LOADERS: dict[str, Callable[[str], LoadedModel]] = {
    "gan": _load_gan,
    "minegan": _load_minegan,
    "mined": _load_mined,
}
