"""``ganlode import``: bring a GAN trained elsewhere in as a ganlode checkpoint (``import stylegan2``,
``import torchscript``)."""

from __future__ import annotations

import click

from ..errors import UserError
from . import options
from .base import Group

EPILOG = """\
sources:
  stylegan2    a .pt file of rosinality's stylegan2-pytorch (train.py's checkpoints, or
               convert_weight.py's conversions of NVIDIA's official weights)
  torchscript  any generator saved with torch.jit.save (and optionally its critic)

The result is an ordinary checkpoint directory: use it wherever a checkpoint path goes.

examples:
  ganlode import stylegan2 ffhq-256.pt --out models/ffhq256
  ganlode import torchscript my_gan.ts --out models/mine
  ganlode sample models/ffhq256 --n 16 --out ffhq.png
"""

STYLEGAN2_EPILOG = """\
The file is read with torch.load(weights_only=True), argparse.Namespace being the one object
allowed besides tensors, containers and numbers: a file holding anything else is refused, and
nothing in it runs. The architecture (size, latent, n_mlp, channel_multiplier) comes from the
file's training args, or from the weights' shapes where they are missing; g_ema becomes the
generator and d (when present) the critic. The checkpoint's config.json records the source
file's sha256, the command and the args.

examples:
  ganlode import stylegan2 checkpoint/550000.pt --out models/ffhq256
  ganlode import stylegan2 s3://bkt/stylegan2-ffhq-config-f.pt --out s3://bkt/models/ffhq --json
"""


TORCHSCRIPT_EPILOG = """\
FILE is what torch.jit.save writes (of torch.jit.script(G) or torch.jit.trace(G, z)); forward(z)
maps standard-normal latents (B x latent_dim) to images (B x channels x resolution x resolution)
in [-1, 1]. latent_dim, resolution and channels come from the module's int attributes, or from
the flags where it has none; a flag that contradicts an attribute is refused. The module is run
once on 2 latents and must make images of that shape. A torch.save pickle is refused unread.

The critic: --critic FILE, a scripted critic whose forward(x) gives one score per image, with a
`blocks` ModuleList (lowest first) and an exported features(x) (every block's output). Without
it, a registry critic of the generator's size starts from scratch (DCGAN at 28 to 128 px,
StyleGAN2's above): finetune, minegan and glo train it or do without, while FreezeD
(--freeze-depth), distillation (--distill-weight) and L2-SP on D need a trained source critic and
refuse. scratch, adabn and bsa refuse a scripted generator too (it cannot be re-initialised, and
its layers are opaque). The checkpoint keeps FILE as generator.ts; a fine-tuned result keeps it
too, with its trained weights in model.safetensors.

examples:
  ganlode import torchscript my_gan.ts --out models/mine
  ganlode import torchscript traced.ts --latent-dim 128 --resolution 64 --channels 3 --out models/traced
  ganlode import torchscript g.ts --critic d.ts --out models/with-critic
  ganlode transfer --source models/mine --target ./photos/ --method finetune --steps 2000 --out runs/ft
"""


CKPT_OUT = options.out("the checkpoint directory to create (local or s3://); an existing one is refused", required=True,
                       metavar="CKPT")


@click.group("import", cls=Group, invoke_without_command=True, epilog=EPILOG,
             short_help="bring in a GAN trained elsewhere (StyleGAN2, TorchScript) as a checkpoint",
             help="Bring in a GAN trained elsewhere as a ganlode checkpoint, read without running Python from the file.")
@click.pass_context
def command(ctx: click.Context) -> None:
    if ctx.invoked_subcommand is None:
        raise UserError("say what to import: ganlode import stylegan2 FILE.pt --out CKPT, or ganlode import "
                        "torchscript FILE.ts --out CKPT (see ganlode import --help)")


@command.command("stylegan2", epilog=STYLEGAN2_EPILOG,
                 short_help="import a checkpoint of rosinality's stylegan2-pytorch",
                 help="Import FILE, a checkpoint of rosinality's stylegan2-pytorch (local or s3://), as the checkpoint "
                      "directory CKPT.")
@click.argument("source", metavar="FILE")
@CKPT_OUT
@options.json_output()
def stylegan2(source: str, out: str, as_json: bool) -> int:
    import shlex

    from ..importers import import_stylegan2

    result = import_stylegan2(source, out, command=f"ganlode import stylegan2 {shlex.quote(source)} --out {shlex.quote(out)}")
    arch = result.arch
    if as_json:
        from .output import emit_json

        emit_json({"command": "import stylegan2", "source": source, "sha256": result.sha256, "out": result.out,
                   "arch": arch.to_dict(), "critic": result.critic})
        return 0
    critic = "g_ema as the generator, d as the critic" if result.critic else \
        "g_ema as the generator (the file has no d: no critic)"
    print(f"imported {source} (StyleGAN2 {arch.resolution} px, latent {arch.style_dim}, n_mlp {arch.n_mlp}, "
          f"channel_multiplier {arch.channel_multiplier}; sha256 {result.sha256[:12]}) as {result.out}: {critic}")
    return 0


@command.command("torchscript", epilog=TORCHSCRIPT_EPILOG,
                 short_help="import any generator saved with torch.jit.save",
                 help="Import FILE, a generator saved with torch.jit.save (local or s3://), as the checkpoint directory "
                      "CKPT.")
@click.argument("source", metavar="FILE")
@CKPT_OUT
@click.option("--latent-dim", type=int, default=None, metavar="N",
              help="the latent size, when the module has no int attribute latent_dim")
@click.option("--resolution", type=int, default=None, metavar="PX",
              help="the image side in pixels, when the module has no int attribute resolution")
@click.option("--channels", type=int, default=None, metavar="C",
              help="1 (gray) or 3 (RGB), when the module has no int attribute channels")
@click.option("--critic", "critic", default=None, metavar="FILE",
              help="a scripted critic to start from (default: a registry critic from scratch)")
@options.json_output()
def torchscript(source: str, out: str, latent_dim: int | None, resolution: int | None, channels: int | None,
                critic: str | None, as_json: bool) -> int:
    import shlex
    import sys

    from ...methods import architectures
    from ..importers import import_torchscript
    from ..importers.torchscript import SCRATCH

    given = {"--latent-dim": latent_dim, "--resolution": resolution, "--channels": channels, "--critic": critic}
    flags = "".join(f" {k} {shlex.quote(str(v))}" for k, v in given.items() if v is not None)
    result = import_torchscript(source, out, latent_dim=latent_dim, resolution=resolution, channels=channels,
                                critic=critic,
                                command=f"ganlode import torchscript {shlex.quote(source)}{flags} --out {shlex.quote(out)}")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    arch = result.arch
    if as_json:
        from .output import emit_json

        emit_json({"command": "import torchscript", "source": source, "sha256": result.sha256, "out": result.out,
                   "arch": architectures.to_dict(arch), "attributes": result.attributes, "critic_source": result.critic_source,
                   "output_range": list(result.output_range)})
        return 0
    if result.critic_source == SCRATCH:
        critic_arch = result.critic_arch or {}
        critic_text = (f"a {critic_arch.get('name')} critic that starts from scratch (FreezeD, distill and L2-SP on D "
                       "need a trained one: --critic FILE)")
    else:
        critic_text = f"{critic} as the critic"
    flagged = [f"{k} from {v}" for k, v in result.attributes.items() if v != "module"]
    origin = f"; {', '.join(flagged)}" if flagged else ""
    print(f"imported {source} (TorchScript, latent {arch.latent_dim}, {arch.resolution} px, {arch.channels} channel"
          f"{'s' if arch.channels > 1 else ''}{origin}; sha256 {result.sha256[:12]}) as {result.out}: the module as "
          f"the generator, {critic_text}")
    return 0
