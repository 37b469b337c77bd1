"""``ganlode import stylegan2``: a checkpoint of rosinality's ``stylegan2-pytorch`` as a ganlode checkpoint.

The source is what that repository's ``train.py`` saves, ``{"g", "d", "g_ema", "g_optim", "d_optim",
"args", "ada_aug_p"}`` (``args``: its ``argparse.Namespace``), or what its ``convert_weight.py``
makes of NVIDIA's weights, ``{"g_ema", "latent_avg"}`` plus ``"g"``/``"d"`` when asked for.

It is read with ``torch.load(weights_only=True)``, with ``argparse.Namespace`` as the one allowed
global: tensors, containers and numbers are all that unpickle, so nothing in the file runs. The
architecture comes from ``args`` where they are present (size, latent, n_mlp, channel_multiplier)
and from the weights' shapes otherwise; ``g_ema`` becomes the generator and ``d`` the critic, both
loaded strictly. The result is an ordinary safetensors checkpoint, written atomically, whose
record says where it came from (the file's sha256, the command, the training args).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import re
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .. import storage
from ..artifacts.checkpoint import save_checkpoint
from ..artifacts.records import ModelRecord
from ..artifacts.rundir import command_line
from ..errors import UserError
from ...methods import architectures
from ...methods.stylegan2 import StyleGAN2Config, build_stylegan2
from .common import check_new_out

SOURCE_FORMAT = "rosinality/stylegan2-pytorch"
SAFE_GLOBALS: tuple[type, ...] = (argparse.Namespace,)
GENERATOR_KEY = "g_ema"
CRITIC_KEY = "d"
W_AVG = "w_avg"  # convert_weight.py's latent_avg (NVIDIA's dlatent_avg), kept as an extra tensor
# args field -> StyleGAN2Config field
ARGS_FIELDS = {"size": "resolution", "latent": "style_dim", "n_mlp": "n_mlp", "channel_multiplier": "channel_multiplier"}
SHOWN_KEYS = 3


@dataclass(frozen=True)
class ImportedStyleGAN2:
    """What an import wrote: the checkpoint, its architecture, the source's digest, the parts taken."""

    out: str
    arch: StyleGAN2Config
    sha256: str
    critic: bool
    args: dict[str, Any] | None


# ---------------------------------------------------------------- reading the file, safely


def _unsafe_detail(message: str) -> str | None:
    """What ``torch.load(weights_only=True)`` refused, from its message; None if it refused nothing."""
    if "Weights only load failed" not in message:
        return None
    found = re.search(r"Unsupported global: GLOBAL (\S+)", message)
    if found:
        return f"the pickled global {found.group(1)}"
    found = re.search(r"WeightsUnpickler error:\s*(.+)", message)
    return " ".join(found.group(1).split())[:100] if found else "an object it does not allow"


def load_safely(raw: bytes, path: str) -> Any:
    """The object ``torch.save`` wrote into ``raw``, unpickling tensors, containers, numbers and
    ``argparse.Namespace`` only; anything else is a one-line :class:`UserError`."""
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the refusal below says enough
            return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, KeyError, ... on bad input
        detail = _unsafe_detail(str(e))
        if detail is not None and "Unsupported operand" not in detail:
            raise UserError(
                f"{path} holds {detail}, which torch.load(weights_only=True) refuses (only tensors, containers, numbers "
                "and argparse.Namespace are read, so no code in it runs): re-save it from its state dicts alone, "
                "torch.save({'g_ema': g_ema.state_dict(), 'd': d.state_dict(), 'args': args}, path)"
            ) from None
        reason = " ".join(str(e).split())[:80] or type(e).__name__
        raise UserError(f"{path} is not a readable torch checkpoint ({type(e).__name__}: {reason}); "
                        f"pass a .pt file saved by {SOURCE_FORMAT}'s train.py or convert_weight.py") from None


def _state_dict(obj: dict, key: str, path: str) -> dict[str, torch.Tensor]:
    sd = obj[key]
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise UserError(f"{path}: '{key}' is not a state dict (a dict of tensors); is it a {SOURCE_FORMAT} checkpoint?")
    return {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}


def _args_dict(args: Any, path: str) -> dict[str, Any] | None:
    if args is None:
        return None
    if isinstance(args, argparse.Namespace):
        args = vars(args)
    if not isinstance(args, dict):
        raise UserError(f"{path}: 'args' is a {type(args).__name__}, not the training args (an argparse.Namespace)")
    return {str(k): _jsonable(v) for k, v in args.items()}


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v if not isinstance(v, float) or math.isfinite(v) else repr(v)
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return repr(v)


# ---------------------------------------------------------------- the architecture


def _indices(sd: dict[str, torch.Tensor], pattern: str) -> set[int]:
    return {int(m.group(1)) for k in sd if (m := re.fullmatch(pattern, k))}


def infer_arch(g_state: dict[str, torch.Tensor], path: str) -> dict[str, int]:
    """StyleGAN2Config fields read off a generator state dict's shapes (channel_multiplier only above 32 px)."""
    try:
        fields = {
            "resolution": 2 ** (len(_indices(g_state, r"to_rgbs\.(\d+)\..*")) + 2),
            "channels": int(g_state["to_rgb1.bias"].shape[1]),
            "style_dim": int(g_state["conv1.conv.modulation.weight"].shape[1]),
            "n_mlp": len(_indices(g_state, r"style\.(\d+)\.weight")),
            "base_channels": int(g_state["input.input"].shape[1]),
        }
        if fields["resolution"] >= 64:  # convs.6 upsamples to 64 px: base * multiplier / 2 channels
            width64 = int(g_state["convs.6.conv.weight"].shape[1])
            fields["channel_multiplier"] = max(1, round(2 * width64 / fields["base_channels"]))
    except (KeyError, IndexError) as e:
        raise UserError(f"{path}: '{GENERATOR_KEY}' lacks {e.args[0]!s}, so it is not a {SOURCE_FORMAT} StyleGAN2 "
                        "generator (swagan and other models are not supported)") from None
    return fields


def arch_of(g_state: dict[str, torch.Tensor], args: dict[str, Any] | None, path: str) -> StyleGAN2Config:
    """The architecture: the training args where given, the weights' shapes for the rest."""
    if args is not None and args.get("arch", "stylegan2") != "stylegan2":
        raise UserError(f"{path} was trained with --arch {args['arch']}; only stylegan2 checkpoints can be imported")
    fields: dict[str, Any] = infer_arch(g_state, path)
    for name, field in ARGS_FIELDS.items():
        if args is not None and isinstance(args.get(name), int) and not isinstance(args.get(name), bool):
            fields[field] = args[name]
    try:
        return StyleGAN2Config(**fields)
    except ValueError as e:
        raise UserError(f"{path}: not an architecture ganlode builds ({e})") from None


def _shown(keys: list[str]) -> str:
    more = f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else ""
    return ", ".join(keys[:SHOWN_KEYS]) + more


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], key: str, arch: StyleGAN2Config, path: str) -> None:
    """``module.load_state_dict(state, strict=True)``; a mismatch names a few of the keys, in one line."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k} {tuple(state[k].shape)} (wants {tuple(expected[k].shape)})"
              for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        what = "; ".join(part for part in (
            unexpected and f"unexpected keys {_shown(unexpected)}",
            missing and f"missing keys {_shown(missing)}",
            shapes and f"shapes {_shown(shapes)}") if part)
        raise UserError(
            f"{path}: '{key}' does not match a StyleGAN2 of size {arch.resolution}, latent {arch.style_dim}, "
            f"n_mlp {arch.n_mlp}, channel_multiplier {arch.channel_multiplier} ({what}); pass a {SOURCE_FORMAT} "
            "checkpoint whose args describe its weights"
        )
    module.load_state_dict(state, strict=True)


# ---------------------------------------------------------------- the command


def import_stylegan2(path: str, out: str, command: str | None = None) -> ImportedStyleGAN2:
    """Read rosinality's checkpoint ``path`` and write it as the ganlode checkpoint ``out``.

    Args:
        path: the ``.pt`` file (local or s3://).
        out: the checkpoint directory to create (local or s3://); an existing one is refused.
        command: the command recorded in the checkpoint (default: this process's command line).

    Returns:
        what was written. Every refusal is a one-line :class:`UserError`, with nothing written.
    """
    check_new_out(out)
    raw = storage.read_bytes(path)
    sha256 = hashlib.sha256(raw).hexdigest()
    obj = load_safely(raw, path)
    if not isinstance(obj, dict) or GENERATOR_KEY not in obj:
        found = ", ".join(sorted(map(str, obj))[:6]) if isinstance(obj, dict) else type(obj).__name__
        raise UserError(f"{path} has no '{GENERATOR_KEY}' (it holds {found or 'nothing'}): pass a {SOURCE_FORMAT} checkpoint, "
                        "a dict with the state dicts 'g_ema' and optionally 'd'")
    args = _args_dict(obj.get("args"), path)
    g_state = _state_dict(obj, GENERATOR_KEY, path)
    arch = arch_of(g_state, args, path)
    generator, critic = build_stylegan2(arch)
    load_strict(generator, g_state, GENERATOR_KEY, arch, path)
    has_critic = CRITIC_KEY in obj
    if has_critic:
        load_strict(critic, _state_dict(obj, CRITIC_KEY, path), CRITIC_KEY, arch, path)
    extra = {}
    w_avg = obj.get("latent_avg")
    if isinstance(w_avg, torch.Tensor) and w_avg.numel() == arch.style_dim:
        extra[W_AVG] = w_avg.detach().float().reshape(1, arch.style_dim)
    record = ModelRecord(
        model_kind="gan", arch=architectures.to_dict(arch), created=storage.utc_now(),
        extra={"command": command or command_line(),
               "imported": {"format": SOURCE_FORMAT, "path": path, "sha256": sha256, "args": args,
                            "generator": GENERATOR_KEY, "critic": CRITIC_KEY if has_critic else None,
                            "w_avg": W_AVG if extra else None}},
    )
    save_checkpoint(out, record, generator.eval(), critic.eval() if has_critic else None, extra=extra)
    return ImportedStyleGAN2(out=out, arch=arch, sha256=sha256, critic=has_critic, args=args)
