"""AdAM (Zhao et al. 2022, "Few-shot Image Generation via Adaptation-Aware Kernel Modulation").

Kernel modulation: a kernel W (filters along one axis, ``out`` of them, ``fan`` weights each) is
used as W * (1 + v u^T), with v in R^out and u in R^fan (both drawn N(0, 1e-14) at the start, so
the modulated kernel starts as W), reshaped like W. Two phases, as the paper's two scripts:

1. **Importance probing** (``probe_steps``): every kernel of G and of the critic's blocks is
   modulated; only the modulation factors (and the critic's head) train, on the target. Then
   the empirical Fisher of the factors is estimated on ``fisher_samples`` samples
   (:func:`~.kernels.gan_fisher`), and filter o's importance is mean(F_u) + F_v[o].
2. **Main adaptation** (the remaining steps) restarts from the source with fresh factors.
   Within each net and layer kind (conv, linear), filters above the ``importance_quantile``-th
   percentile of importance are **modulated**: their source weights stay frozen, bit for bit,
   and only their factors train. The others are **fine-tuned**: their factors are zero and
   stay zero, their weights train. Biases, normalisation and the critic's head train.

The checkpoint is a plain generator and critic: each modulation is folded into its kernel.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from .base import Adapter, Export, NotApplicable, Source, TransferOptions
from .finetune import train_config
from .kernels import FilterGuard, Kernel, gan_fisher, kernels, quantile_lines, unseen_filters
from .rick import head_parameters
from .seeding import generator as rng_stream
from .train import GANTrainer

INIT_SCALE = 1e-7  # the code's u, v = randn * 1e-7


class KernelModulation(nn.Module):
    """The parametrisation W -> W * (1 + v u^T) of a kernel with filters along ``axis``."""

    def __init__(self, shape: torch.Size, axis: int, rng: torch.Generator):
        super().__init__()
        self.axis = axis
        out = shape[axis]
        fan = math.prod(shape) // out
        self.u = nn.Parameter(torch.randn(fan, generator=rng) * INIT_SCALE)
        self.v = nn.Parameter(torch.randn(out, generator=rng) * INIT_SCALE)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        moved = weight.movedim(self.axis, 0)
        flat = moved.reshape(moved.shape[0], -1)
        modulated = flat * (1 + torch.outer(self.v, self.u))
        return modulated.reshape(moved.shape).movedim(0, self.axis)


def modulate(kernel_list: list[Kernel], rng: torch.Generator) -> list[KernelModulation]:
    """Register a kernel modulation on every kernel (in place); returns them in order."""
    mods = []
    for k in kernel_list:
        mod = KernelModulation(k.weight.shape, k.axis, rng)
        parametrize.register_parametrization(k.module, k.attr, mod)
        mods.append(mod)
    return mods


def base_weight(k: Kernel) -> nn.Parameter:
    """The source weight under a kernel's modulation."""
    return getattr(k.module.parametrizations, k.attr).original


def fold(net: nn.Module, plain: nn.Module) -> nn.Module:
    """A copy of ``plain`` (``net`` without its modulations: the source net) holding ``net``'s weights with
    every modulation folded into its kernel, under the architecture's own names.

    (Not ``remove_parametrizations`` on a deep copy: the copy shares its parametrised class with
    ``net``, and removing the parametrisation there would strip ``net``'s weights too.)"""
    state = {k: v for k, v in net.state_dict().items() if ".parametrizations." not in k and
             not k.startswith("parametrizations.")}
    for name, m in net.named_modules():
        if parametrize.is_parametrized(m):
            for attr in m.parametrizations.keys():
                state[f"{name}.{attr}" if name else attr] = getattr(m, attr).detach().clone()
    out = copy.deepcopy(plain)
    out.load_state_dict(state)
    return out


def modulation_importance(mods: list[KernelModulation], fisher: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per filter: mean(F_u) + F_v[o]; ``fisher`` holds each modulation's (F_u, F_v) in order."""
    return [fisher[2 * i].mean() + fisher[2 * i + 1] for i in range(len(mods))]


def factor_params(mods: list[KernelModulation]) -> list[nn.Parameter]:
    return [p for m in mods for p in (m.u, m.v)]


class AdAM(Adapter):
    method = "adam"

    def __init__(self, source: Source, images: torch.Tensor, options: TransferOptions, *, seed: int):
        reason = unseen_filters(source.generator, self.method)
        if reason:
            raise NotApplicable(reason)
        self.source, self.images, self.options, self.seed = source, images, options, seed
        self.train_config = train_config(options, source, seed)
        self.fisher_rng = rng_stream(seed, "adam-fisher")
        self.phase = "probe"
        self.important: dict[str, list[torch.Tensor]] | None = None
        self._build(probe=True)
        if options.probe_steps == 0:
            self._start_main()

    def _build(self, probe: bool) -> None:
        self.G, self.D = copy.deepcopy(self.source.generator), copy.deepcopy(self.source.critic)
        self.kernels_g, self.kernels_d = kernels(self.G), kernels(self.D.blocks)
        rng = rng_stream(self.seed, "adam-factors", "probe" if probe else "main")
        self.mods_g, self.mods_d = modulate(self.kernels_g, rng), modulate(self.kernels_d, rng)
        self.guard_g, self.guard_d = FilterGuard(), FilterGuard()
        if probe:  # the factors (and the critic's head) alone
            g_params = factor_params(self.mods_g)
            d_params = factor_params(self.mods_d) + head_parameters(self.D)
            self.trainer = GANTrainer(self.G, self.D, self.images, self.train_config, g_params=g_params,
                                      d_params=d_params)
        else:
            self.trainer = GANTrainer(self.G, self.D, self.images, self.train_config, g_guard=self.guard_g,
                                      d_guard=self.guard_d)

    def probe_importance(self) -> dict[str, list[torch.Tensor]]:
        """Each filter's importance after probing (generator and critic kernels, in order)."""
        fg, fd = gan_fisher(self.G, self.D, self.images, self.train_config, factor_params(self.mods_g),
                            factor_params(self.mods_d), self.options.fisher_samples, self.fisher_rng)
        return {"generator": modulation_importance(self.mods_g, fg), "critic": modulation_importance(self.mods_d, fd)}

    def _constrain(self, kernel_list: list[Kernel], mods: list[KernelModulation], important: list[torch.Tensor],
                   guard: FilterGuard) -> None:
        for k, mod, keep in zip(kernel_list, mods, important):
            with torch.no_grad():
                mod.v.masked_fill_(~keep, 0.0)
            guard.freeze(mod.v, ~keep, 0)  # fine-tuned filters: no modulation, ever
            guard.freeze(base_weight(k), keep, k.axis)  # modulated filters: the source weights, bit for bit

    def _start_main(self, important: dict[str, list[torch.Tensor]] | None = None) -> None:
        if important is None:
            imp = self.probe_importance()
            important = {}
            for net, ks in (("generator", self.kernels_g), ("critic", self.kernels_d)):
                named = {k.name: v for k, v in zip(ks, imp[net])}
                cut = quantile_lines(named, {k.name: k.kind for k in ks}, self.options.importance_quantile)
                important[net] = [named[k.name] > cut[k.kind] for k in ks]
        done = self.trainer.steps_done
        self._build(probe=False)
        self.trainer.steps_done = done
        self.important, self.phase = important, "main"
        self._constrain(self.kernels_g, self.mods_g, important["generator"], self.guard_g)
        self._constrain(self.kernels_d, self.mods_d, important["critic"], self.guard_d)

    @property
    def steps_done(self) -> int:  # type: ignore[override]
        return self.trainer.steps_done

    def step(self) -> dict[str, float]:
        stats = self.trainer.step()
        if self.phase == "probe" and self.trainer.steps_done >= self.options.probe_steps:
            self._start_main()
        return stats

    def sampling_generator(self) -> nn.Module:
        return self.G

    def export(self) -> Export:
        return Export(kind="gan", generator=fold(self.G, self.source.generator), critic=fold(self.D, self.source.critic))

    def state_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "trainer": self.trainer.state_dict(), "fisher_rng": self.fisher_rng.get_state(),
                "important": self.important}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.fisher_rng.set_state(state["fisher_rng"])
        if state["phase"] == "main" and self.phase != "main":
            self._start_main(state["important"])
        self.trainer.load_state_dict(state["trainer"])

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "train": self.train_config.to_dict()}
        if self.important is not None:
            out["modulated_filters"] = {net: int(sum(int(m.sum()) for m in ms)) for net, ms in self.important.items()}
        return out
