"""``ganlode import``: bring a GAN trained elsewhere in as a ganlode checkpoint (``import stylegan2``)."""

from __future__ import annotations

import click

from ..errors import UserError
from . import options
from .base import Group

EPILOG = """\
sources:
  stylegan2  a .pt file of rosinality's stylegan2-pytorch (train.py's checkpoints, or
             convert_weight.py's conversions of NVIDIA's official weights)

The result is an ordinary checkpoint directory: use it wherever a checkpoint path goes.

examples:
  ganlode import stylegan2 ffhq-256.pt --out models/ffhq256
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


@click.group("import", cls=Group, invoke_without_command=True, epilog=EPILOG,
             short_help="bring in a GAN trained elsewhere (StyleGAN2) as a checkpoint",
             help="Bring in a GAN trained elsewhere as a ganlode checkpoint, read without running any code from the file.")
@click.pass_context
def command(ctx: click.Context) -> None:
    if ctx.invoked_subcommand is None:
        raise UserError("say what to import: ganlode import stylegan2 FILE.pt --out CKPT (see ganlode import --help)")


@command.command("stylegan2", epilog=STYLEGAN2_EPILOG,
                 short_help="import a checkpoint of rosinality's stylegan2-pytorch",
                 help="Import FILE, a checkpoint of rosinality's stylegan2-pytorch (local or s3://), as the checkpoint "
                      "directory CKPT.")
@click.argument("source", metavar="FILE")
@options.out("the checkpoint directory to create (local or s3://); an existing one is refused", required=True,
             metavar="CKPT")
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
