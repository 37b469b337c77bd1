"""CDC (Ojha et al. 2021, "Few-shot Image Generation via Cross-domain Correspondence").

Two changes to fine-tuning, both as the paper and its code write them:

1. **Cross-domain distance consistency.** For a batch of N = 4 latents z_1..z_N and a generator
   layer l (drawn per anchor sample i from ``cdc_layers``), the similarities of sample i to the
   others, y_i(G) = softmax_j(cos(G^l(z_i), G^l(z_j))) over j != i, must stay as the source's:
   ``L_dist = cdc_weight * mean_{i,j} y_i(G_s)_j (log y_i(G_s)_j - log y_i(G_t)_j)``, i.e. the
   KL divergence from the source's distribution, averaged over the N (N - 1) entries (the code's
   ``KLDivLoss``; ``cdc_weight`` 1000 there). Both generators run in eval mode for it, so the
   term is exactly 0 while G_t equals G_s.
2. **Anchor regions and a patch-level critic.** The latent space is split: every
   ``SUBSPACE_FREQ``-th step draws z around a few fixed anchors (one per training image, each
   draw an anchor plus N(0, 0.1^2) noise) and uses the image-level critic; the other steps draw
   z ~ N(0, I) and use a patch-level critic: a 3x3 conv to one channel on an intermediate critic
   block's output (one block drawn per step), so only patches must look real there.

The patch heads are new (trained with the critic, from seeded weights). Sampling is plain
G(z); the checkpoint is a plain generator and critic (the heads are training machinery).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import Adapter, Export, NotApplicable, OptionError, Source, TransferOptions
from .finetune import train_config
from .seeding import generator as rng_stream
from .seeding import seeded_init
from .train import GANTrainer, LossTerms

CONSISTENCY_BATCH = 4  # the code's feat_const_batch
SUBSPACE_FREQ = 4  # every 4th step: anchors and the image-level critic
SUBSPACE_STD = 0.1  # the code's subspace_std
ALL_LAYERS = "all"


def feature_layers(generator: nn.Module) -> list[nn.Module] | None:
    fn = getattr(generator, "feature_layers", None)
    return list(fn()) if callable(fn) else None


def applies(source: Source) -> str | None:
    if feature_layers(source.generator) is None:
        return (f"cdc compares the generator's intermediate features, and this generator "
                f"({type(source.generator).__name__}) exposes none (no feature_layers()); use finetune or minegan")
    return None


def parse_layers(text: str | None, available: int) -> tuple[int, ...]:
    """``cdc_layers``: ``all`` or comma-separated indices into the generator's feature layers (0: the latent side)."""
    if text in (None, "", ALL_LAYERS):
        return tuple(range(available))
    try:
        picked = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise OptionError(f"cdc_layers must be '{ALL_LAYERS}' or comma-separated layer indices, got {text!r}",
                          option="cdc_layers") from None
    bad = [i for i in picked if not 0 <= i < available]
    if bad or not picked:
        raise OptionError(f"cdc_layers {text!r} names layer {bad[0] if bad else '(none)'}, and the source generator "
                          f"has feature layers 0..{available - 1}", option="cdc_layers")
    return tuple(sorted(set(picked)))


def layer_outputs(generator: nn.Module, z: torch.Tensor, layers: list[nn.Module]) -> list[torch.Tensor]:
    """G(z)'s intermediate outputs at ``layers`` (forward hooks; any architecture that names its layers)."""
    outs: dict[int, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, k=k: outs.__setitem__(k, o)) for k, m in enumerate(layers)]
    try:
        generator(z)
    finally:
        for h in hooks:
            h.remove()
    return [outs[k] for k in range(len(layers))]


def similarity_rows(feats: list[torch.Tensor], layer_of: list[int]) -> torch.Tensor:
    """N x (N - 1): row i is softmax over j != i of cos(f_i, f_j), with f from layer ``layer_of[i]``."""
    n = len(layer_of)
    rows = []
    for i in range(n):
        f = feats[layer_of[i]].flatten(1)
        sims = F.cosine_similarity(f[i:i + 1], f, dim=1)
        rows.append(torch.cat([sims[:i], sims[i + 1:]]))
    return torch.softmax(torch.stack(rows), dim=1)


def consistency_loss(adapted: nn.Module, source: nn.Module, layers_t: list[nn.Module], layers_s: list[nn.Module],
                     z: torch.Tensor, layer_of: list[int], weight: float) -> torch.Tensor:
    """weight * mean_{i,j} p_s log(p_s / p_t): CDC's cross-domain distance consistency (0 when G_t = G_s)."""
    with torch.no_grad():
        p_s = similarity_rows(layer_outputs(source, z, layers_s), layer_of)
    p_t = similarity_rows(layer_outputs(adapted, z, layers_t), layer_of)
    return weight * (p_s * (p_s.log() - p_t.log())).mean()


class PatchCritic(nn.Module):
    """The adapted critic plus CDC's patch heads: ``mode`` ``image`` scores images (B,), ``patch``
    scores the patches of block ``level``'s output (B x H x W) with that block's head."""

    def __init__(self, critic: nn.Module, levels: list[int], channels: list[int]):
        super().__init__()
        self.critic = critic
        self.levels = levels
        self.heads = nn.ModuleList([nn.Conv2d(c, 1, 3, padding=1) for c in channels])
        self.mode, self.level = "image", 0

    @property
    def blocks(self):  # the interface's blocks: the critic's own
        return self.critic.blocks

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.critic.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "image":
            return self.critic(x)
        block = self.levels[self.level]
        for b in self.critic.blocks[:block + 1]:
            x = b(x)
        return self.heads[self.level](x).squeeze(1)


def patch_levels(critic: nn.Module, resolution: int, channels: int) -> tuple[list[int], list[int]]:
    """The critic blocks whose outputs are patch grids: sides from 8 px to half the image (else the two
    largest below the image). Returns (block indices, their channels)."""
    with torch.no_grad():
        feats = critic.features(torch.zeros(1, channels, resolution, resolution))
    grids = [(i, f.shape[1], f.shape[-1]) for i, f in enumerate(feats) if f.ndim == 4]
    picked = [(i, c) for i, c, side in grids if 8 <= side <= resolution // 2]
    if not picked:
        picked = [(i, c) for i, c, side in grids if side < resolution][:2]
    if not picked:
        raise NotApplicable("cdc's patch critic needs critic blocks with spatial outputs; this critic has none")
    return [i for i, _ in picked], [c for _, c in picked]


class CDCTrainer(GANTrainer):
    """GANTrainer whose step alternates anchor steps (image-level critic) and patch steps."""

    def __init__(self, *args, anchors: torch.Tensor, **kwargs):
        super().__init__(*args, **kwargs)
        self.anchors = anchors
        self.anchor_step = False

    def _latent(self, n: int) -> torch.Tensor:
        if not self.anchor_step:
            return super()._latent(n)
        idx = torch.randint(len(self.anchors), (n,), generator=self.rng)
        return self.anchors[idx] + SUBSPACE_STD * torch.randn(n, self.anchors.shape[1], generator=self.rng)

    def step(self) -> dict[str, float]:
        self.anchor_step = self.steps_done % SUBSPACE_FREQ == 0
        critic: PatchCritic = self.D
        critic.mode = "image" if self.anchor_step else "patch"
        critic.level = int(torch.randint(len(critic.levels), (1,), generator=self.rng))
        try:
            return super().step()
        finally:
            critic.mode = "image"


class CDC(Adapter):
    method = "cdc"

    def __init__(self, source: Source, images: torch.Tensor, options: TransferOptions, *, seed: int):
        reason = applies(source)
        if reason:
            raise NotApplicable(reason)
        self.options = options
        self.G, D = copy.deepcopy(source.generator), copy.deepcopy(source.critic)
        self.G_source = copy.deepcopy(source.generator).eval().requires_grad_(False)
        self.layers_t, self.layers_s = feature_layers(self.G), feature_layers(self.G_source)
        self.picked = parse_layers(options.cdc_layers, len(self.layers_t))
        self.weight = float(options.cdc_weight if options.cdc_weight is not None else 0.0)
        levels, channels = patch_levels(D, self.G.resolution, self.G.channels)
        self.critic = seeded_init(seed, lambda: PatchCritic(D, levels, channels))
        anchors = torch.randn(len(images), self.G.latent_dim, generator=rng_stream(seed, "cdc-anchors"))
        terms = LossTerms(g_extra=[self._consistency])
        self.train_config = train_config(options, source, seed)
        self.trainer = CDCTrainer(self.G, self.critic, images, self.train_config, terms=terms, anchors=anchors)
        self.last_consistency = 0.0

    def consistency(self, z: torch.Tensor, layer_of: list[int]) -> torch.Tensor:
        """The distance-consistency term on latents ``z`` with layer ``layer_of[i]`` for sample i (both nets in eval mode)."""
        was = self.G.training
        self.G.eval()
        try:
            return consistency_loss(self.G, self.G_source, self.layers_t, self.layers_s, z, layer_of, self.weight)
        finally:
            self.G.train(was)

    def _consistency(self) -> torch.Tensor:
        rng = self.trainer.rng
        z = torch.randn(CONSISTENCY_BATCH, self.G.latent_dim, generator=rng)
        pick = torch.randint(len(self.picked), (CONSISTENCY_BATCH,), generator=rng)
        loss = self.consistency(z, [self.picked[int(k)] for k in pick])
        self.last_consistency = float(loss.detach())
        return loss

    @property
    def steps_done(self) -> int:  # type: ignore[override]
        return self.trainer.steps_done

    def step(self) -> dict[str, float]:
        stats = self.trainer.step()
        stats["consistency"] = self.last_consistency
        return stats

    def sampling_generator(self) -> nn.Module:
        return self.G

    def export(self) -> Export:
        return Export(kind="gan", generator=self.G, critic=self.critic.critic)

    def state_dict(self) -> dict[str, Any]:
        return {"trainer": self.trainer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trainer.load_state_dict(state["trainer"])

    def record(self) -> dict[str, Any]:
        return {"method": self.method, "train": self.train_config.to_dict(), "cdc_layers": list(self.picked),
                "patch_blocks": list(self.critic.levels)}
