"""Filters, their Fisher importance, and exact per-filter constraints: what AdAM and RICK share.

- A **kernel** is the weight of a conv or linear layer; its **filters** are the slices along the
  output axis (``Kernel.axis``: 0 for ``nn.Conv2d``/``nn.Linear``, 1 for ``nn.ConvTranspose2d``;
  an architecture's own layers say theirs with a ``FILTER_AXIS`` attribute, as StyleGAN2's do).
  A net whose layers are opaque (a TorchScript module) has none.
- The **empirical Fisher** of parameters theta over n samples is F = (1/n) sum_i (d loss_i /
  d theta)^2, one backward per sample (Kirkpatrick et al. 2017; AdAM and RICK take it from GAN
  Memory, Cong et al. 2020). A filter's importance is the mean of F over its weights.
- :class:`FilterGuard` holds per-filter constraints around an optimiser step: a *frozen* filter
  comes back bit-identical (its saved value is restored after the step, so Adam's moments cannot
  move it), a *pruned* one is zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import nn


@dataclass(frozen=True)
class Kernel:
    """One layer's weight: ``module.<attr>`` with filters along ``axis``; ``bias``: the per-filter bias, if any."""

    name: str
    module: nn.Module
    axis: int
    attr: str = "weight"

    @property
    def weight(self) -> torch.Tensor:
        return getattr(self.module, self.attr)

    @property
    def bias(self) -> nn.Parameter | None:
        b = getattr(self.module, "bias", None)
        n = self.weight.shape[self.axis]
        return b if isinstance(b, nn.Parameter) and b.ndim == 1 and len(b) == n else None

    @property
    def filters(self) -> int:
        return self.weight.shape[self.axis]

    @property
    def kind(self) -> str:
        """``conv`` or ``linear``: importance quantiles are taken within one kind (their scales differ)."""
        return "linear" if self.weight.ndim == 2 else "conv"


def filter_axis(module: nn.Module) -> int | None:
    """The output-filter axis of ``module.weight`` (None: not a kernel layer this code knows)."""
    if isinstance(module, nn.ConvTranspose2d):
        return 1
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        return 0
    axis = getattr(module, "FILTER_AXIS", None)
    return axis if isinstance(axis, int) else None


def kernels(net: nn.Module, exclude: Iterable[nn.Module] = ()) -> list[Kernel]:
    """Every kernel of ``net`` in module order (those under ``exclude`` left out)."""
    skip = {id(m) for e in exclude for m in e.modules()}
    out = []
    for name, m in net.named_modules():
        if id(m) in skip:
            continue
        axis = filter_axis(m)
        w = getattr(m, "weight", None)
        if axis is not None and isinstance(w, torch.Tensor) and w.ndim >= 2:
            out.append(Kernel(name, m, axis))
    return out


def unseen_filters(generator: nn.Module, method: str) -> str | None:
    """Why ``method`` (adam, rick) cannot serve ``generator``: it has no kernel this code can see (None: it has)."""
    if kernels(generator):
        return None
    return (f"{method} scores and constrains the generator's conv and linear filters, and this generator "
            f"({type(generator).__name__}) has none it can see; use finetune or minegan")


def empirical_fisher(loss_of: Callable[[int], torch.Tensor], params: list[torch.Tensor], n: int) -> list[torch.Tensor]:
    """(1/n) sum_i (d loss_of(i) / d p)^2 for each p in ``params``: one backward per sample."""
    if n < 1:
        raise ValueError("the Fisher needs at least one sample")
    acc = [torch.zeros_like(p, dtype=torch.float32) for p in params]
    for i in range(n):
        grads = torch.autograd.grad(loss_of(i), params, allow_unused=True)
        for a, g in zip(acc, grads):
            if g is not None:
                a.add_(g.detach().float().pow(2))
    return [a / n for a in acc]


def per_filter_mean(values: torch.Tensor, axis: int) -> torch.Tensor:
    """The mean of ``values`` over every axis but ``axis``: one number per filter."""
    dims = [d for d in range(values.ndim) if d != axis]
    return values.mean(dim=dims) if dims else values


def filter_mask(mask: torch.Tensor, like: torch.Tensor, axis: int) -> torch.Tensor:
    """A per-filter boolean ``mask`` shaped to broadcast over a tensor ``like`` along ``axis``."""
    shape = [1] * like.ndim
    shape[axis] = -1
    return mask.view(shape)


def quantile_lines(importance: dict[str, torch.Tensor], kinds: dict[str, str], q: float) -> dict[str, float]:
    """The ``q``-th percentile (0-100, linear interpolation as numpy's) of the importances of each kind."""
    lines = {}
    for kind in sorted(set(kinds.values())):
        pooled = torch.cat([v.flatten() for k, v in importance.items() if kinds[k] == kind])
        lines[kind] = float(torch.quantile(pooled.double(), q / 100.0))
    return lines


class FilterGuard:
    """Per-filter constraints on parameters, enforced around each optimiser step.

    ``freeze(p, mask, axis)``: the filters of ``p`` where ``mask`` is true keep the value they
    have when the step starts. ``prune(p, mask, axis)``: they are set to zero now and after
    every step. Masks accumulate over calls (a pruned filter stays pruned).
    """

    def __init__(self) -> None:
        self.frozen: dict[int, tuple[torch.Tensor, torch.Tensor, int]] = {}
        self.pruned: dict[int, tuple[torch.Tensor, torch.Tensor, int]] = {}
        self._saved: dict[int, torch.Tensor] = {}

    def freeze(self, p: torch.Tensor, mask: torch.Tensor, axis: int, *, replace: bool = False) -> None:
        old = self.frozen.get(id(p))
        if old is not None and not replace:
            mask = mask | old[1]
        self.frozen[id(p)] = (p, mask.clone(), axis)

    def prune(self, p: torch.Tensor, mask: torch.Tensor, axis: int) -> None:
        old = self.pruned.get(id(p))
        if old is not None:
            mask = mask | old[1]
        self.pruned[id(p)] = (p, mask.clone(), axis)
        self._zero()

    def clear_frozen(self) -> None:
        self.frozen.clear()

    @torch.no_grad()
    def _zero(self) -> None:
        for p, mask, axis in self.pruned.values():
            p.masked_fill_(filter_mask(mask, p, axis), 0.0)

    def before(self) -> None:
        self._saved = {k: p.detach().clone() for k, (p, _, _) in self.frozen.items()}

    @torch.no_grad()
    def after(self) -> None:
        for k, (p, mask, axis) in self.frozen.items():
            p.copy_(torch.where(filter_mask(mask, p, axis), self._saved[k], p))
        self._saved = {}
        self._zero()

    def masks(self, params: list[torch.Tensor]) -> dict[str, dict[int, torch.Tensor]]:
        """The masks by position in ``params`` (what a state dict stores)."""
        index = {id(p): i for i, p in enumerate(params)}
        return {kind: {index[k]: m for k, (_, m, _) in table.items()}
                for kind, table in (("frozen", self.frozen), ("pruned", self.pruned))}

    def load_masks(self, params: list[torch.Tensor], axes: list[int], masks: dict[str, dict[int, torch.Tensor]]) -> None:
        self.frozen = {id(params[i]): (params[i], m.clone(), axes[i]) for i, m in masks["frozen"].items()}
        self.pruned = {id(params[i]): (params[i], m.clone(), axes[i]) for i, m in masks["pruned"].items()}


def gan_fisher(generator: nn.Module, critic: nn.Module, images: torch.Tensor, cfg, g_params: list[torch.Tensor],
               d_params: list[torch.Tensor], n: int, rng: torch.Generator) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The empirical Fisher of a GAN's parameters over ``n`` samples, one (z, real image) per sample: for
    ``g_params`` of the generator loss on G(z_i), for ``d_params`` of the critic's adversarial loss on
    (x_i, G(z_i)) (no penalty), as AdAM's and RICK's code estimate it. G runs in eval mode (one sample
    per pass: BatchNorm takes its running statistics); its mode is restored afterwards."""
    z = torch.randn(n, generator.latent_dim, generator=rng)
    real = images[torch.randint(len(images), (n,), generator=rng)]
    was = generator.training
    generator.eval()
    try:
        fg = empirical_fisher(lambda i: cfg.generator_loss(critic(generator(z[i:i + 1]))), g_params, n)
        fd = empirical_fisher(lambda i: cfg.adversarial_critic_loss(critic(real[i:i + 1]),
                                                                    critic(generator(z[i:i + 1]).detach())), d_params, n)
    finally:
        generator.train(was)
    return fg, fd
