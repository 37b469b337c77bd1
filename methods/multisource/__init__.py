"""Multi-source MineGAN (Wang et al. 2020): one miner per source generator, a shared critic, and a
selector that learns how much each source serves the target.

One step, for sources G_1..G_N with miners M_1..M_N and a shared critic D:

1. draw u (B x d_u); every source makes x_i = G_i(M_i(u));
2. score s_ib = D(x_ib); the supersample takes, for each row b, the winner k(b) = argmax_i s_ib;
3. selector: p_i = the share of rows source i won, averaged over the last ``window`` batches;
4. the critic steps on real target images against the supersample, with its penalty;
5. the generator loss is taken on the winning scores under the updated critic,
   -mean_b s_k(b)b (WGAN) or mean_b softplus(-s_k(b)b) (non-saturating); its gradient dL/dx_i is
   zero outside the rows source i won, and each source back-propagates dL/dx_i through G_i and
   M_i, stepping M_i only while mining and G_i and M_i together while fine-tuning.

Everything random (u, real batches, GP mixing weights) comes from the one seeded generator in
:class:`CriticSelector`. :class:`MultiSourceMiner` is the in-process reference; the Ray path
(``ganlode.actors``) runs the same :class:`MinedSource` and :class:`CriticSelector` classes in
separate processes and moves only u, x_i and dL/dx_i between them, so both give the same numbers.
Sampling the result: pick source i with probability p_i, then x = G_i(M_i(u)) (:class:`MinedMixture`).

Modules: ``maths`` (settings and pure functions), ``state`` (flat tensor state), ``parts`` (the
two halves of a step), ``engine`` (building, the in-process reference), ``mixture`` (sampling).
"""

from .engine import MultiSourceMiner, build_selector, build_source, init_miner, source_prefix, step_record
from .maths import (
    ROWS,
    STAGES,
    MultiSourceConfig,
    generator_loss,
    selector_shares,
    selector_update,
    supersample,
    supersample_images,
)
from .mixture import MinedMixture
from .parts import CriticSelector, MinedSource, RoutedSelector, SelectorStep
from .state import load_module_tensors, load_optimizer_tensors, module_tensors, optimizer_tensors

__all__ = ["MultiSourceMiner", "build_selector", "build_source", "init_miner", "source_prefix", "step_record",
           "ROWS", "STAGES", "MultiSourceConfig", "generator_loss", "selector_shares", "selector_update", "supersample",
           "supersample_images", "MinedMixture", "CriticSelector", "RoutedSelector", "MinedSource", "SelectorStep",
           "load_module_tensors", "load_optimizer_tensors", "module_tensors", "optimizer_tensors"]
