"""``ganlode import torchscript``: any generator saved with ``torch.jit.save`` as a ganlode checkpoint.

TorchScript says how to run a module but not what the generator interface needs, so
``latent_dim``, ``resolution`` and ``channels`` come from the module's own int attributes or
from flags (``--latent-dim`` ...); a flag that contradicts an attribute is refused. The module
is run once on two latents under ``no_grad`` and must make ``(2, channels, resolution,
resolution)`` images; outputs far outside [-1, 1] are warned about (ganlode clamps samples there).

The critic is a scripted one (``--critic FILE``: it must expose ``blocks`` and an exported
``features(x)``, as FreezeD and distillation read them), or, without one, a registry critic of
the generator's size that starts from scratch (a DCGAN critic up to 128 px, StyleGAN2's above),
recorded as ``critic_source: "scratch"``: finetune and minegan train it, while the options that
read a trained source critic (FreezeD, distillation, L2-SP on D) refuse such a checkpoint.

A file that is not TorchScript (a ``torch.save`` pickle above all) is refused before anything
loads it. The result is a checkpoint directory: ``generator.ts`` (and ``critic.ts``) as given,
``model.safetensors``, and ``config.json`` recording the files' sha256, the command and where
each attribute came from. See :mod:`ganlode.methods.torchscript` for the layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from .. import storage
from ..artifacts.checkpoint import CRITIC_SOURCE, SCRATCH_CRITIC, save_checkpoint
from ..artifacts.records import ModelRecord
from ..artifacts.rundir import command_line
from ..errors import UserError
from ...methods import architectures, nets
from ...methods.seeding import seeded_init
from ...methods.stylegan2 import StyleGAN2Config
from ...methods.torchscript import (ArchiveError, TorchScriptConfig, check_shape, critic_problem, error_line, load_archive,
                                    sha256)
from .common import check_new_out

SOURCE_FORMAT = "torchscript"
ATTRIBUTES = ("latent_dim", "resolution", "channels")
SCRATCH = SCRATCH_CRITIC         # critic_source: a registry critic, freshly initialised at import
SCRIPTED = "torchscript"         # critic_source: the scripted critic given with --critic
CRITIC_SEED = 0                  # the scratch critic's initialisation (seeding stream "import-critic")
CHECK_BATCH = 2
FAR_OUTSIDE = 1.5                # |x| beyond this: warn that the images are not in [-1, 1]
SAVE_HINT = "save it with torch.jit.save(torch.jit.script(model), FILE)"


@dataclass(frozen=True)
class ImportedTorchScript:
    """What an import wrote: the checkpoint, its architecture, the digest, where each attribute came from."""

    out: str
    arch: TorchScriptConfig
    sha256: str
    attributes: dict[str, str]       # attribute -> "module" or the flag that gave it
    critic_source: str               # SCRATCH or SCRIPTED
    critic_arch: dict[str, Any] | None
    output_range: tuple[float, float]
    warnings: tuple[str, ...] = ()


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# ---------------------------------------------------------------- reading and declaring


def read_module(path: str, what: str) -> tuple[bytes, torch.jit.ScriptModule]:
    """The bytes of ``path`` and the scripted module in them; a one-line UserError (led by ``what``, e.g.
    ``"--critic "``) unless it is TorchScript."""
    raw = storage.read_bytes(path)
    try:
        return raw, load_archive(raw)
    except ArchiveError as e:
        raise UserError(f"{what}{path} is not a TorchScript module: {e}; {SAVE_HINT}") from None


def declared_shape(module: torch.jit.ScriptModule, flags: Mapping[str, int | None],
                   path: str) -> tuple[dict[str, int], dict[str, str]]:
    """(value, origin) of every attribute: the module's int attribute, else the flag; contradictions refused."""
    values: dict[str, int] = {}
    origins: dict[str, str] = {}
    clashes, missing = [], []
    for name in ATTRIBUTES:
        own = getattr(module, name, None)
        given = flags.get(name)
        if own is not None and (isinstance(own, bool) or not isinstance(own, int)):
            raise UserError(f"{path}: the module's attribute {name} is a {type(own).__name__}, not an int: make it "
                            f"an int, or remove it and pass {flag(name)}")
        if own is not None and given is not None and own != given:
            clashes.append(f"{name} {own} but {flag(name)} {given}")
        elif own is not None:
            values[name], origins[name] = own, "module"
        elif given is not None:
            values[name], origins[name] = given, flag(name)
        else:
            missing.append(name)
    if clashes:
        raise UserError(f"{path} declares {'; '.join(clashes)}: drop the flag{'s' if len(clashes) > 1 else ''} "
                        "(the module's attributes are used), or fix the module")
    if missing:
        raise UserError(f"{path} has no int attribute {', '.join(missing)}: pass {' and '.join(map(flag, missing))} "
                        f"(or give the module int attributes {', '.join(ATTRIBUTES)})")
    return values, origins


def _described(values: Mapping[str, int], origins: Mapping[str, str]) -> str:
    return ", ".join(f"{k} {values[k]} from {'the module' if origins[k] == 'module' else origins[k]}"
                     for k in ATTRIBUTES)


def check_output(module: torch.jit.ScriptModule, shape: Mapping[str, int], described: str,
                 path: str) -> torch.Tensor:
    """The module's images for CHECK_BATCH seeded latents (eval mode, no_grad); UserError unless they
    have the declared shape and are finite."""
    latent_dim, resolution, channels = (shape[k] for k in ATTRIBUTES)
    z = torch.randn(CHECK_BATCH, latent_dim, generator=torch.Generator().manual_seed(0))
    module.eval()
    try:
        with torch.no_grad():
            x = module(z)
    except Exception as e:  # whatever the scripted code raises
        raise UserError(f"{path} fails on a batch of {CHECK_BATCH} latents of size {latent_dim} "
                        f"({error_line(e)}): check latent_dim ({described})") from None
    want = (CHECK_BATCH, channels, resolution, resolution)
    if not isinstance(x, torch.Tensor):
        raise UserError(f"{path} returns a {type(x).__name__}, not a tensor of images {want}: make forward(z) "
                        "return the images")
    if tuple(x.shape) != want:
        raise UserError(f"{path} makes images of shape {tuple(x.shape)} from {CHECK_BATCH} latents, but {described} "
                        f"declare {want}: fix the attributes or flags to match the module's output")
    if not torch.isfinite(x).all():
        raise UserError(f"{path} makes non-finite values (nan or inf) from standard-normal latents: check the module")
    return x.float()


def scratch_critic(resolution: int, channels: int, latent_dim: int) -> dict[str, Any]:
    """The registry critic a TorchScript generator of this size starts from without --critic (as a config dict).

    A DCGAN critic at 28, 32, 64 and 128 px, StyleGAN2's residual critic (config F widths) at
    larger powers of two. Only the critic half of the config is built for use: its generator
    half is kept as small as the config allows (``g_width`` 4, one mapping layer).
    """
    if resolution in nets.RESOLUTIONS:
        return architectures.to_dict(nets.GANConfig(resolution=resolution, channels=channels, latent_dim=latent_dim,
                                                    g_width=4))
    try:
        cfg = StyleGAN2Config(resolution=resolution, channels=channels, style_dim=latent_dim, n_mlp=1)
    except ValueError:
        raise UserError(f"no registry critic takes {resolution} px images (DCGAN: {', '.join(map(str, nets.RESOLUTIONS))}; "
                        "StyleGAN2: powers of two from 32): pass a scripted critic with --critic FILE") from None
    return architectures.to_dict(cfg)


def check_critic(module: torch.jit.ScriptModule, images: torch.Tensor, path: str) -> None:
    """UserError unless the scripted critic exposes the interface and scores the generator's images."""
    problem = critic_problem(module)
    if problem is not None:
        raise UserError(f"--critic {path} {problem}: FreezeD and distillation read a critic's blocks and features, "
                        "so a scripted critic must expose both")
    n = len(list(module.blocks.children()))
    module.eval()
    try:
        with torch.no_grad():
            scores = module(images)
            feats = module.features(images)
    except Exception as e:
        raise UserError(f"--critic {path} fails on the generator's images {tuple(images.shape)} "
                        f"({error_line(e)}): pass the critic of this generator") from None
    if not isinstance(scores, torch.Tensor) or scores.numel() != len(images) or scores.shape[0] != len(images):
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise UserError(f"--critic {path} scores {len(images)} images as {shape}: a critic returns one score per "
                        f"image, ({len(images)},) or ({len(images)}, 1)")
    if not isinstance(feats, (list, tuple)) or len(feats) != n:
        got = len(feats) if isinstance(feats, (list, tuple)) else type(feats).__name__
        raise UserError(f"--critic {path}: features(x) gives {got} outputs for its {n} blocks: it must return every "
                        "block's output, lowest first")


# ---------------------------------------------------------------- the command


def import_torchscript(path: str, out: str, *, latent_dim: int | None = None, resolution: int | None = None,
                       channels: int | None = None, critic: str | None = None,
                       command: str | None = None) -> ImportedTorchScript:
    """Import the scripted generator ``path`` (and the scripted critic ``critic``) as the checkpoint ``out``.

    Args:
        path: the TorchScript file of the generator (local or s3://).
        out: the checkpoint directory to create (local or s3://); an existing one is refused.
        latent_dim, resolution, channels: what the module does not declare as int attributes.
        critic: a TorchScript critic file; None: a registry critic that starts from scratch.
        command: the command recorded in the checkpoint (default: this process's command line).

    Returns:
        what was written. Every refusal is a one-line :class:`UserError`, with nothing written.
    """
    check_new_out(out)
    raw, module = read_module(path, "")
    values, origins = declared_shape(module, {"latent_dim": latent_dim, "resolution": resolution,
                                              "channels": channels}, path)
    described = _described(values, origins)
    try:
        check_shape(**values)
    except ValueError as e:
        raise UserError(f"{path}: {e} ({described})") from None
    images = check_output(module, values, described, path)
    if critic is None:
        critic_arch: dict[str, Any] | None = scratch_critic(values["resolution"], values["channels"], values["latent_dim"])
        critic_raw, critic_digest = b"", None
    else:
        critic_raw, critic_module = read_module(critic, "--critic ")
        check_critic(critic_module, images, critic)
        critic_arch, critic_digest = None, sha256(critic_raw)
    cfg = TorchScriptConfig(**values, sha256=sha256(raw), critic=critic_arch, critic_sha256=critic_digest,
                            module=raw, critic_module=critic_raw)
    generator, critic_net = seeded_init(CRITIC_SEED, lambda: architectures.build(cfg), "import-critic")
    lo, hi = float(images.min()), float(images.max())
    warnings: tuple[str, ...] = ()
    if max(abs(lo), abs(hi)) > FAR_OUTSIDE:
        warnings = (f"{path} makes values in [{lo:.3g}, {hi:.3g}], far outside [-1, 1], where ganlode clamps samples "
                    "and keeps targets: end the generator in tanh, or rescale its output",)
    source = SCRATCH if critic is None else SCRIPTED
    critic_record = ({"source": SCRATCH, "arch": critic_arch, "seed": CRITIC_SEED} if critic is None
                     else {"source": SCRIPTED, "path": critic, "sha256": critic_digest})
    record = ModelRecord(
        model_kind="gan", arch=architectures.to_dict(cfg), created=storage.utc_now(),
        extra={"command": command or command_line(), CRITIC_SOURCE: source,
               "imported": {"format": SOURCE_FORMAT, "path": path, "sha256": cfg.sha256, "attributes": origins,
                            "output_range": [lo, hi], "critic": critic_record}},
    )
    save_checkpoint(out, record, generator.eval(), critic_net.eval())
    return ImportedTorchScript(out=out, arch=cfg, sha256=cfg.sha256, attributes=origins, critic_source=source,
                               critic_arch=critic_arch, output_range=(lo, hi), warnings=warnings)
