"""Checkpoints: a directory with ``model.safetensors`` and ``config.json``. Loading never unpickles.

Tensors are stored under prefixes: ``generator.``, ``critic.``, ``miner.`` and, for mined
models, ``sources.<i>.generator.`` / ``sources.<i>.miner.``. ``config.json`` is the
:class:`~.records.ModelRecord`: the architecture, the loader kind, the data and command that
made the weights, the step count and measured metrics.

An architecture that rebuilds from files (a TorchScript generator: ``generator.ts``, and
``critic.ts`` for a scripted critic) keeps them in the same directory, byte for byte as imported;
``save_checkpoint`` writes the generator's attached files, ``load_checkpoint`` reads and checks
them (sha256) before the weights are loaded over them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .. import storage
from ..errors import UserError
from ...methods import architectures
from .records import ModelRecord
from .rundir import CONFIG_FILE as CONFIG
from .rundir import WEIGHTS_FILE as WEIGHTS
from .zoo import resolve


CRITIC_SOURCE = "critic_source"  # a record key: where the critic's weights come from (absent: trained with G)
SCRATCH_CRITIC = "scratch"       # ...a registry critic initialised at import, never trained


@dataclass
class Checkpoint:
    """A loaded checkpoint: nets in eval mode plus its record (``config``: the record as a dict)."""

    path: str
    config: dict[str, Any]
    generator: torch.nn.Module
    critic: torch.nn.Module | None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)  # the architecture's files (TorchScript archives)

    @property
    def arch(self) -> Any:
        """The architecture config (the registry's config object of the architecture named in ``arch``),
        its files attached."""
        return architectures.from_dict(self.config["arch"], self.files if self.files else None)

    @property
    def critic_from_scratch(self) -> bool:
        """True when the critic was initialised at import and never trained (no source critic to read)."""
        return self.config.get(CRITIC_SOURCE) == SCRATCH_CRITIC

    @property
    def record(self) -> ModelRecord:
        return ModelRecord.from_dict(self.config, f"{self.path}/{CONFIG}")


def state_tensors(prefix: str, module: torch.nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in module.state_dict().items():
        t = v.detach().cpu()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        out[f"{prefix}{k}"] = t.contiguous()
    return out


def save_checkpoint(
    path: str,
    record: ModelRecord | dict[str, Any],
    generator: torch.nn.Module | None = None,
    critic: torch.nn.Module | None = None,
    extra: dict[str, torch.Tensor] | None = None,
    dtype: torch.dtype | None = None,
    files: dict[str, bytes] | None = None,
) -> None:
    """Write a checkpoint directory atomically (a failure leaves any previous one intact).

    Args:
        path: local or s3:// directory.
        record: the checkpoint's ModelRecord (a dict is read as one: it must contain ``arch``, an
            architecture config dict, ``methods.architectures.to_dict``); every value must be JSON-able.
        generator, critic: saved under ``generator.`` / ``critic.``.
        extra: further named tensors (miners, latent codes, ...).
        dtype: store floating tensors in this dtype (e.g. torch.float16 for the zoo).
        files: further files written into the same directory (e.g. ``samples.png``); the files
            attached to the generator's architecture config (its TorchScript archives) are added.
    """
    files = {**architectures.files_of(getattr(generator, "cfg", None)), **(files or {})}
    tensors: dict[str, torch.Tensor] = {}
    if generator is not None:
        tensors.update(state_tensors("generator.", generator, dtype))
    if critic is not None:
        tensors.update(state_tensors("critic.", critic, dtype))
    for k, v in (extra or {}).items():
        t = v.detach().cpu()
        tensors[k] = (t.to(dtype) if dtype is not None and t.is_floating_point() else t).contiguous()
    if isinstance(record, dict):
        record = ModelRecord.from_dict(record, f"the config of {path}")
    config = record.replace(format=ModelRecord.FORMAT).to_dict()
    json.dumps(config)  # fail before writing anything if it is not serialisable
    with storage.atomic_dir(path) as stage:
        (stage / WEIGHTS).write_bytes(st_save(tensors))
        (stage / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        for name, blob in files.items():  # a name may hold folders ("tensorboard/events...")
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            (stage / name).write_bytes(blob)


def read_tensors(path: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The config and raw tensors of a checkpoint directory, validated; never unpickles."""
    path = resolve(path)
    if not storage.exists(storage.join(path, CONFIG)) or not storage.exists(storage.join(path, WEIGHTS)):
        raise UserError(
            f"{path} is not a ganlode checkpoint (needs {CONFIG} and {WEIGHTS}); "
            "pass a directory written by `ganlode pretrain`/`transfer`, or zoo:NAME"
        )
    config = ModelRecord.from_dict(storage.read_json(storage.join(path, CONFIG)), f"{path}/{CONFIG}").to_dict()
    raw = storage.read_bytes(storage.join(path, WEIGHTS))
    try:
        tensors = st_load(raw)
    except (SafetensorError, Exception) as e:  # safetensors raises several types on corrupt input
        raise UserError(
            f"{path}/{WEIGHTS} is corrupt or truncated ({str(e).splitlines()[0][:80]}); re-create or re-download it"
        ) from None
    return config, tensors


def load_into(module: torch.nn.Module, prefix: str, tensors: dict[str, torch.Tensor], path: str) -> None:
    """Load the tensors under ``prefix`` into ``module``; a mismatch is a UserError naming ``path``."""
    sub = {k[len(prefix):]: v.float() if v.is_floating_point() else v for k, v in tensors.items() if k.startswith(prefix)}
    expected = module.state_dict()
    missing = sorted(set(expected) - set(sub))
    unexpected = sorted(set(sub) - set(expected))
    bad_shape = sorted(k for k in set(sub) & set(expected) if sub[k].shape != expected[k].shape)
    if missing or unexpected or bad_shape:
        what = (missing and f"missing {missing[0]}") or (unexpected and f"unexpected {unexpected[0]}") or (
            f"{bad_shape[0]} has shape {tuple(sub[bad_shape[0]].shape)}, architecture wants {tuple(expected[bad_shape[0]].shape)}"
        )
        raise UserError(
            f"{path}: weights do not match the architecture in {CONFIG} ({prefix.rstrip('.')}: {what}); "
            "the config and weights come from different models"
        )
    module.load_state_dict(sub, strict=True)


def read_arch_files(arch: dict[str, Any], directory: str, what: str) -> dict[str, bytes]:
    """The files architecture ``arch`` rebuilds from, read from ``directory`` (none for most)."""
    try:
        names = architectures.stored_files(arch)
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{what} has an invalid 'arch' ({str(e).splitlines()[0]}); re-create the checkpoint") from None
    files = {}
    for name in names:
        if not storage.exists(storage.join(directory, name)):
            raise UserError(f"{directory} lacks {name}, the {arch.get('name')} module its {CONFIG} names: the checkpoint "
                            "is incomplete; copy it whole, or re-create it")
        files[name] = storage.read_bytes(storage.join(directory, name))
    return files


def arch_with_files(arch: dict[str, Any], directory: str, what: str) -> Any:
    """The config object of ``arch`` with its files from ``directory`` attached and checked."""
    files = read_arch_files(arch, directory, what)
    try:
        return architectures.from_dict(arch, files if files else None)
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{what} has an invalid 'arch' for the files beside it ({str(e).splitlines()[0]}); the config "
                        "and its module come from different models: re-create the checkpoint") from None


def load_checkpoint(path: str, with_critic: bool = True) -> Checkpoint:
    """Load a checkpoint directory (local, s3:// or zoo:NAME); nets come back in eval mode."""
    resolved = resolve(path)
    config, tensors = read_tensors(resolved)
    arch = arch_with_files(config["arch"], resolved, f"{resolved}/{CONFIG}")
    try:
        generator, critic = architectures.build(arch)
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{resolved}/{CONFIG} has an invalid 'arch' ({str(e).splitlines()[0]}); re-create the "
                        "checkpoint") from None
    load_into(generator, "generator.", tensors, resolved)
    has_critic = any(k.startswith("critic.") for k in tensors)
    if with_critic and has_critic:
        load_into(critic, "critic.", tensors, resolved)
    else:
        critic = None
    generator.eval()
    if critic is not None:
        critic.eval()
    extra = {k: v for k, v in tensors.items() if not k.startswith(("generator.", "critic."))}
    return Checkpoint(path=resolved, config=config, generator=generator, critic=critic, extra=extra,
                      files=architectures.files_of(arch))
