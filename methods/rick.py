"""RICK (Zhao et al. 2023, "Exploring Incompatible Knowledge Transfer in Few-shot Image Generation").

Fine-tuning in which each filter's Fisher importance for the target, re-estimated as adaptation
goes, decides what happens to it (the paper's code, ``train_dynamic_update_prune.py``):

1. Warm-up (``warmup_steps``): only the critic's head (its layers after the blocks) trains; G
   does not move.
2. From then on, every ``fisher_every`` steps: the empirical Fisher of every kernel's weights
   (and per-filter bias) is estimated on ``fisher_samples`` samples (:func:`~.kernels.gan_fisher`:
   the generator loss for G, the critic's adversarial loss for D). A filter's importance is the mean
   of its weights' Fisher (averaged with its bias's where it has one). Within each net and layer kind
   (conv, linear):
   - importance above the ``importance_quantile``-th percentile: the filter is **frozen** (this
     round's decision; it keeps its value bit for bit while frozen);
   - at or below the ``prune_quantile``-th percentile: the filter is **pruned**, zero from then on
     (the pruned set only grows: the knowledge that does not fit the target is truncated);
   - the rest are fine-tuned.
The critic's head always trains. The checkpoint is a plain generator and critic.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from .base import Adapter, Export, NotApplicable, Source, TransferOptions
from .finetune import train_config
from .kernels import FilterGuard, Kernel, gan_fisher, kernels, per_filter_mean, quantile_lines, unseen_filters
from .seeding import generator as rng_stream
from .train import GANTrainer


def head_parameters(critic: nn.Module) -> list[nn.Parameter]:
    """The critic's parameters outside its blocks (its head)."""
    inside = {id(p) for p in critic.blocks.parameters()}
    return [p for p in critic.parameters() if id(p) not in inside]


def filter_importance(kernel_list: list[Kernel], fisher: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per filter: the mean Fisher of its weights, averaged with its bias's Fisher where it has a bias.
    ``fisher`` holds, in order, each kernel's weight Fisher followed by its bias's (if any)."""
    out, i = {}, 0
    for k in kernel_list:
        imp = per_filter_mean(fisher[i], k.axis)
        i += 1
        if k.bias is not None:
            imp = (imp + fisher[i]) / 2
            i += 1
        out[k.name] = imp
    return out


def fisher_params(kernel_list: list[Kernel]) -> list[torch.Tensor]:
    return [p for k in kernel_list for p in ([k.weight] + ([k.bias] if k.bias is not None else []))]


class RICK(Adapter):
    method = "rick"

    def __init__(self, source: Source, images: torch.Tensor, options: TransferOptions, *, seed: int):
        reason = unseen_filters(source.generator, self.method)
        if reason:
            raise NotApplicable(reason)
        self.options = options
        self.images = images
        self.G, self.D = copy.deepcopy(source.generator), copy.deepcopy(source.critic)
        self.kernels_g = kernels(self.G)
        self.kernels_d = kernels(self.D.blocks)
        self.blocks = list(self.D.blocks.parameters())
        self.guard_g, self.guard_d = FilterGuard(), FilterGuard()
        self.train_config = train_config(options, source, seed)
        self.trainer = GANTrainer(self.G, self.D, images, self.train_config, g_guard=self.guard_g,
                                  d_guard=self.guard_d)
        self.fisher_rng = rng_stream(seed, "rick-fisher")
        self.counts = {"frozen": 0, "pruned": 0}

    @property
    def steps_done(self) -> int:  # type: ignore[override]
        return self.trainer.steps_done

    def _decide(self, kernel_list: list[Kernel], fisher: list[torch.Tensor], guard: FilterGuard) -> tuple[int, int]:
        imp = filter_importance(kernel_list, fisher)
        kinds = {k.name: k.kind for k in kernel_list}
        cut = quantile_lines(imp, kinds, self.options.importance_quantile)
        low = quantile_lines(imp, kinds, self.options.prune_quantile)
        guard.clear_frozen()
        frozen = pruned = 0
        for k in kernel_list:
            v = imp[k.name]
            prune = v <= low[k.kind]
            freeze = (v > cut[k.kind]) & ~prune
            for p, axis in ((k.weight, k.axis), (k.bias, 0)):
                if p is not None:
                    guard.freeze(p, freeze, axis, replace=True)
                    guard.prune(p, prune, axis)
            frozen += int(freeze.sum())
            pruned += int(guard.pruned[id(k.weight)][1].sum())
        return frozen, pruned

    def update_importance(self) -> None:
        """Re-estimate every filter's Fisher importance and re-decide which filters are frozen and pruned."""
        fg, fd = gan_fisher(self.G, self.D, self.images, self.train_config, fisher_params(self.kernels_g),
                            fisher_params(self.kernels_d), self.options.fisher_samples, self.fisher_rng)
        fz_g, pr_g = self._decide(self.kernels_g, fg, self.guard_g)
        fz_d, pr_d = self._decide(self.kernels_d, fd, self.guard_d)
        self.counts = {"frozen": fz_g + fz_d, "pruned": pr_g + pr_d}

    def step(self) -> dict[str, float]:
        t, warmup = self.trainer, self.options.warmup_steps
        if t.steps_done < warmup:  # the critic's head alone; G (statistics included) does not move
            self.G.eval()
            for p in self.blocks:
                p.requires_grad_(False)
            try:
                stats: dict[str, float] = {}
                for _ in range(self.train_config.n_critic):
                    stats = t.critic_step()
            finally:
                for p in self.blocks:
                    p.requires_grad_(True)
            t.steps_done += 1
            return {**stats, **self.counts}
        if (t.steps_done - warmup) % self.options.fisher_every == 0:
            self.update_importance()
        return {**t.step(), **self.counts}

    def sampling_generator(self) -> nn.Module:
        return self.G

    def export(self) -> Export:
        return Export(kind="gan", generator=self.G, critic=self.D)

    def _params(self) -> tuple[list[torch.Tensor], list[int], list[torch.Tensor], list[int]]:
        pg = fisher_params(self.kernels_g)
        pd = fisher_params(self.kernels_d)
        axes = lambda ks: [a for k in ks for a in ([k.axis] + ([0] if k.bias is not None else []))]  # noqa: E731
        return pg, axes(self.kernels_g), pd, axes(self.kernels_d)

    def state_dict(self) -> dict[str, Any]:
        pg, _, pd, _ = self._params()
        return {"trainer": self.trainer.state_dict(), "fisher_rng": self.fisher_rng.get_state(),
                "guard_g": self.guard_g.masks(pg), "guard_d": self.guard_d.masks(pd), "counts": dict(self.counts)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trainer.load_state_dict(state["trainer"])
        self.fisher_rng.set_state(state["fisher_rng"])
        pg, ag, pd, ad = self._params()
        self.guard_g.load_masks(pg, ag, state["guard_g"])
        self.guard_d.load_masks(pd, ad, state["guard_d"])
        self.counts = {k: int(v) for k, v in state["counts"].items()}

    def record(self) -> dict[str, Any]:
        return {"method": self.method, "train": self.train_config.to_dict(),
                "filters": {"generator": sum(k.filters for k in self.kernels_g),
                            "critic": sum(k.filters for k in self.kernels_d)}}
