"""Any generator as TorchScript: a scripted module behind the generator interface.

A :class:`TorchScriptConfig` names the archive (``torch.jit.save``'s zip) by its sha256 and
declares what the interface needs that TorchScript does not say: ``latent_dim``, ``resolution``
and ``channels``. The archive's bytes travel with the config object (``with_files``) but never
into its dict: a checkpoint keeps them beside its weights as ``generator.ts`` (and ``critic.ts``
for a scripted critic), and ``model.safetensors`` holds the weights, which override the
archive's. So the structure file of a fine-tuned model is byte-for-byte the imported one, and
its weights are safetensors like every other checkpoint's.

The critic is either a registry architecture's (``critic``: its config dict, e.g. a DCGAN's),
or a scripted critic (``critic_sha256``) that exposes ``blocks`` (a ModuleList, lowest first)
and an exported ``features(x)``, as the interface asks.

Loading reads TorchScript only: an archive without TorchScript code (a ``torch.save`` pickle,
which could run any Python) is refused before ``torch.jit.load`` sees it. An archive's own
``data.pkl``/``constants.pkl`` are read by TorchScript's unpickler, which builds tensors and
TorchScript objects, never Python globals; running the module runs its TorchScript code, as
running any model does, not Python from the file.
"""

from __future__ import annotations

import copy
import hashlib
import io
import re
import warnings
import zipfile
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import torch
from torch import nn

from .interface import ConfigGenerator

GENERATOR_FILE = "generator.ts"
CRITIC_FILE = "critic.ts"
CHANNELS = (1, 3)
_FIELDS = ("latent_dim", "resolution", "channels", "sha256", "critic", "critic_sha256")


class ArchiveError(ValueError):
    """Bytes that are not a TorchScript archive, or one that does not load; the message is one line."""


def sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def archive_problem(raw: bytes) -> str | None:
    """Why ``raw`` is not a TorchScript archive (None: it is one), read off the zip's entry names alone.

    ``torch.jit.save`` writes ``<name>/code/...`` and ``<name>/constants.pkl``; ``torch.save``
    writes a zip too, but with a ``data.pkl`` of Python objects and no code: that is refused.
    """
    try:
        names = zipfile.ZipFile(io.BytesIO(raw)).namelist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return "it is not a zip archive, or a truncated one (TorchScript files are the zips torch.jit.save writes)"
    code = any(n.split("/", 2)[1:2] == ["code"] for n in names)
    constants = any(n.endswith("/constants.pkl") for n in names)
    if not (code and constants):
        if any(n.endswith("/data.pkl") for n in names):
            return "it is a torch.save checkpoint (a pickle of Python objects, never loaded: it could run code), " \
                   "not TorchScript"
        return "it holds no TorchScript code"
    return None


def error_line(e: BaseException, limit: int = 100) -> str:
    """One short line saying what ``e`` is: for a TorchScript error (a serialised TorchScript traceback,
    then the original error) its last line, else its first, led by the error's type."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if not lines:
        return type(e).__name__
    line = lines[-1] if "TorchScript" in lines[0] else lines[0]
    if not re.match(r"\w+(Error|Exception): ", line):
        line = f"{type(e).__name__}: {line}"
    return line[:limit]


def load_archive(raw: bytes) -> torch.jit.ScriptModule:
    """The scripted module in ``raw``, on the CPU; :class:`ArchiveError` unless it is TorchScript."""
    problem = archive_problem(raw)
    if problem is not None:
        raise ArchiveError(problem)
    try:
        with warnings.catch_warnings():
            # recent torch marks TorchScript deprecated: a notice for the module's author, not for this reader
            warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.jit")
            return torch.jit.load(io.BytesIO(raw), map_location="cpu")
    except Exception as e:  # torch.jit.load raises RuntimeError (and others) on damaged archives
        raise ArchiveError(f"torch.jit.load cannot read it ({error_line(e)})") from None


def check_shape(latent_dim: int, resolution: int, channels: int) -> None:
    """ValueError unless the declared sizes are ones the interface takes."""
    for name, value in (("latent_dim", latent_dim), ("resolution", resolution)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    if isinstance(channels, bool) or channels not in CHANNELS:
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")


@dataclass(frozen=True)
class TorchScriptConfig:
    """A TorchScript generator's declared shape, its archive's digest and its critic.

    ``critic`` is a registry architecture's config dict (the critic comes from that builder),
    ``critic_sha256`` a scripted critic's digest; exactly one is set. The archives themselves
    (``module``, ``critic_module``) are attached by :meth:`with_files` and are not serialised.
    """

    latent_dim: int
    resolution: int
    channels: int
    sha256: str
    critic: dict[str, Any] | None = field(default=None, hash=False)  # a dict: left out of the hash
    critic_sha256: str | None = None
    module: bytes = field(default=b"", repr=False, compare=False)
    critic_module: bytes = field(default=b"", repr=False, compare=False)

    def __post_init__(self) -> None:
        check_shape(self.latent_dim, self.resolution, self.channels)
        if (self.critic is None) == (self.critic_sha256 is None):
            raise ValueError("a TorchScript architecture names exactly one critic: a registry config or a scripted one")

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TorchScriptConfig":
        return cls(**{k: d[k] for k in ("latent_dim", "resolution", "channels", "sha256")},
                   critic=d.get("critic"), critic_sha256=d.get("critic_sha256"))

    # ---- the archives beside the weights

    def stored_files(self) -> tuple[str, ...]:
        """The files a checkpoint of this architecture keeps beside its weights."""
        return (GENERATOR_FILE,) if self.critic_sha256 is None else (GENERATOR_FILE, CRITIC_FILE)

    def files(self) -> dict[str, bytes]:
        """The attached archives by file name (empty when none are attached)."""
        if not self.module:
            return {}
        return {GENERATOR_FILE: self.module, **({CRITIC_FILE: self.critic_module} if self.critic_sha256 else {})}

    def with_files(self, files: Mapping[str, bytes]) -> "TorchScriptConfig":
        """This config with its archives attached; ValueError if one is missing or is not the one named."""
        for name, digest in ((GENERATOR_FILE, self.sha256), (CRITIC_FILE, self.critic_sha256)):
            if digest is None:
                continue
            if name not in files:
                raise ValueError(f"{name} is missing")
            if sha256(files[name]) != digest:
                raise ValueError(f"{name} is not the archive this config names (its sha256 differs)")
        critic_module = files[CRITIC_FILE] if self.critic_sha256 else b""
        return replace(self, module=files[GENERATOR_FILE], critic_module=critic_module)


def copy_scripted(module: torch.jit.ScriptModule, memo: dict[int, Any] | None = None) -> torch.jit.ScriptModule:
    """A deep copy whose parameters are leaves, as ``copy.deepcopy`` of an ``nn.Module`` gives.

    ``copy.deepcopy`` of a ScriptModule clones its parameters through autograd (each copy has a
    ``CloneBackward`` grad_fn), and an optimizer refuses such non-leaf tensors; cloned under
    ``no_grad`` they are leaves, and ``requires_grad`` is copied over.
    """
    with torch.no_grad():
        out = copy.deepcopy(module, memo)
    for p, q in zip(out.parameters(), module.parameters(), strict=True):
        p.requires_grad_(q.requires_grad)
    return out


class TorchScriptGenerator(ConfigGenerator, nn.Module):
    """A scripted generator behind the interface: ``forward(z)`` is the module's, the attributes the config's.

    The scripted module is an ordinary trainable submodule (``module.*`` in the state dict), so
    fine-tuning trains its parameters and ``train()``/``eval()`` reach its BatchNorm layers.
    """

    def __init__(self, module: torch.jit.ScriptModule, cfg: TorchScriptConfig):
        super().__init__()
        self.module = module
        self.cfg = cfg


    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.module(z)

    def __deepcopy__(self, memo: dict[int, Any]) -> "TorchScriptGenerator":
        out = TorchScriptGenerator(copy_scripted(self.module, memo), self.cfg).train(self.training)
        memo[id(self)] = out
        return out


class TorchScriptCritic(nn.Module):
    """A scripted critic behind the interface: its ``blocks`` submodule's children, its exported ``features``."""

    def __init__(self, module: torch.jit.ScriptModule):
        super().__init__()
        self.module = module

    @property
    def blocks(self) -> tuple[nn.Module, ...]:
        return tuple(self.module.blocks.children())

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.module.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x).reshape(x.shape[0])  # (B,) or (B, 1) -> (B,)

    def __deepcopy__(self, memo: dict[int, Any]) -> "TorchScriptCritic":
        out = TorchScriptCritic(copy_scripted(self.module, memo)).train(self.training)
        memo[id(self)] = out
        return out


def critic_problem(module: torch.jit.ScriptModule) -> str | None:
    """What a scripted critic lacks of the interface (None: nothing)."""
    blocks = getattr(module, "blocks", None)
    if not isinstance(blocks, nn.Module) or not list(blocks.children()):
        return "has no `blocks` (a ModuleList of its blocks, lowest first)"
    if not callable(getattr(module, "features", None)):
        return "has no `features(x)` (decorate it with @torch.jit.export)"
    return None


def build_torchscript(cfg: TorchScriptConfig,
                      build_critic: Callable[[dict[str, Any]], nn.Module]) -> tuple[TorchScriptGenerator, nn.Module]:
    """The generator (a fresh copy of the attached archive) and the critic (``build_critic(cfg.critic)``,
    or the attached scripted critic)."""
    if not cfg.module:
        raise ValueError(f"the TorchScript archive {cfg.sha256[:12]} is not attached: load the checkpoint that holds "
                         f"{GENERATOR_FILE}")
    generator = TorchScriptGenerator(load_archive(cfg.module), cfg)
    if cfg.critic is not None:
        return generator, build_critic(cfg.critic)
    critic = load_archive(cfg.critic_module)
    problem = critic_problem(critic)
    if problem is not None:
        raise ValueError(f"the scripted critic {problem}")
    return generator, TorchScriptCritic(critic)
