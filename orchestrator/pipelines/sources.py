"""Source GANs: loading the checkpoints a transfer or a mining run starts from, checked."""

from __future__ import annotations

from typing import Sequence

from ...methods.base import Source
from .. import storage
from ..artifacts import checkpoint
from ..artifacts.loaders import locate
from ..artifacts.rundir import CONFIG_FILE
from ..errors import UserError

PLAIN = "gan"  # the only model kind a run starts from
_PLAIN_HINT = "(from `ganlode pretrain`, a fine-tuning run, or zoo:NAME)"


def load_source(path: str) -> tuple[Source, checkpoint.Checkpoint]:
    """One source for ``ganlode transfer``: its nets (critic included) and its checkpoint."""
    ckpt = checkpoint.load_checkpoint(path, with_critic=True)
    kind = ckpt.record.model_kind
    if kind != PLAIN:
        raise UserError(f"{ckpt.path} is a {kind!r} model; a transfer source must be a plain GAN checkpoint {_PLAIN_HINT}")
    train = ckpt.config.get("train") if isinstance(ckpt.config.get("train"), dict) else {}
    return Source(ckpt.generator, ckpt.critic, train), ckpt


def load_sources(sources: Sequence[str], critics: str = "first") -> list[checkpoint.Checkpoint]:
    """Every source of a mining run, with the critic of the first (``critics="first"``: the shared
    critic starts from it) or of every one (``"all"``: routed mining gives each source its own)."""
    if len(sources) < 2:
        raise UserError(f"multi-source mining needs two or more --source (got {len(sources)}); "
                        "for one source use `ganlode transfer --method minegan`")
    if critics not in ("first", "all"):
        raise ValueError(f"critics must be 'first' or 'all', got {critics!r}")
    ckpts = [checkpoint.load_checkpoint(s, with_critic=(i == 0 or critics == "all")) for i, s in enumerate(sources)]
    for s, c in zip(sources, ckpts):
        if c.record.model_kind != PLAIN:
            raise UserError(f"--source {s} is a {c.record.model_kind!r} model; sources must be plain GAN checkpoints "
                            f"{_PLAIN_HINT}")
    channels = {c.arch.channels for c in ckpts}
    if len(channels) > 1:
        listed = ", ".join(f"{s}: {'gray' if c.arch.channels == 1 else 'colour'}" for s, c in zip(sources, ckpts))
        raise UserError(f"gray and colour sources cannot be mined in one run ({listed}): pick sources that all make "
                        "gray images or all make colour images")
    shapes = {(c.arch.channels, c.arch.resolution) for c in ckpts}
    if len(shapes) > 1:
        listed = ", ".join(f"{s}: {c.arch.channels}x{c.arch.resolution}x{c.arch.resolution}" for s, c in zip(sources, ckpts))
        raise UserError(f"the sources make images of different sizes or channels ({listed}); "
                        "pick sources that all make the target's image size")
    missing = [s for s, c in zip(sources, ckpts) if critics == "all" and c.critic is None]
    if missing:
        raise UserError(f"routed mining gives every source its own critic, but {', '.join(missing)} holds none: "
                        "use sources written by `ganlode pretrain` (or zoo:NAME), or drop --route")
    if ckpts[0].critic is None:
        raise UserError(f"the shared critic starts from the first source's critic, but {sources[0]} holds none: "
                        "list a source written by `ganlode pretrain` (or zoo:NAME) first")
    return ckpts


def trained_loss(ckpt: checkpoint.Checkpoint | str, default: str = "ns-r1") -> str:
    """The adversarial loss a source was trained with (``default``, pretrain's, when it records none).

    ``ckpt`` is a loaded checkpoint, or a path (checkpoint, run or zoo:NAME), whose record alone is
    read: no weights are loaded.
    """
    if isinstance(ckpt, str):
        config = storage.read_json(storage.join(locate(ckpt).checkpoint, CONFIG_FILE))
    else:
        config = ckpt.config
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    return train.get("loss", default)
