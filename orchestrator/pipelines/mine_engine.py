"""The engine of a mining run: the in-process reference, or Ray actors (one per source + a coordinator).

Both have one interface (``steps_done``, ``run_until``, ``shares``, ``state_tensors``,
``load_state_tensors``, ``close``): :class:`ganlode.methods.multisource.MultiSourceMiner` and
:class:`ganlode.actors.cluster.MiningCluster`. Placement problems (too few GPUs) are bad input:
the engine starts before the run writes anything.
"""

from __future__ import annotations

from typing import Any, Sequence

import ray
import torch

from ...actors._runtime import torch_device
from ...actors.cluster import MiningCluster
from ...actors.placement import MiningResources, gpus_needed, plan_resources
from ...methods.multisource import MultiSourceConfig, MultiSourceMiner
from ..artifacts import checkpoint
from ..cluster import ensure_ray
from ..errors import UserError


def start_engine(ckpts: Sequence[checkpoint.Checkpoint], images: torch.Tensor | Sequence[torch.Tensor],
                 cfg: MultiSourceConfig, *, in_process: bool, gpus_per_source: float | None, threads: int | None,
                 snapshot_every: int, placement_group: Any = None) -> MultiSourceMiner | MiningCluster:
    """The engine of a run over ``ckpts`` (their generators, and source 0's critic) for ``images``;
    routed (``cfg.routed``): every source's own critic, and ``images`` one part per source.

    ``placement_group``: a group the caller holds (a Tune trial's), bundle 0 its own and bundles
    1..N+1 this run's; None makes (and on close removes) a group of the run's own.
    """
    arches = [c.arch for c in ckpts]
    gen_states = [{k: v.detach().clone() for k, v in c.generator.state_dict().items()} for c in ckpts]
    critic_states = [{k: v.detach().clone() for k, v in c.critic.state_dict().items()}
                     for c in (ckpts if cfg.routed else ckpts[:1])]
    critic_state: Any = critic_states if cfg.routed else critic_states[0]
    if in_process:
        if threads:
            torch.set_num_threads(threads)
        return MultiSourceMiner.build(arches, gen_states, critic_state, images, cfg, str(torch_device()))
    ensure_ray()
    n = len(ckpts)
    if placement_group is not None:
        try:
            resources = MiningResources.from_bundles(placement_group.bundle_specs[1:], threads=threads)
            return MiningCluster(arches, gen_states, critic_state, images, cfg, resources, snapshot_every=snapshot_every,
                                 placement_group=placement_group, bundle_offset=1)
        except ValueError as e:
            raise RuntimeError(f"the placement group given to the mining run does not fit {n} sources: {e}") from None
    have = float(ray.cluster_resources().get("GPU", 0.0))
    if gpus_per_source and gpus_needed(n, gpus_per_source) > have:
        raise UserError(f"--gpus-per-source {gpus_per_source:g} with {n} sources needs {gpus_needed(n, gpus_per_source):g} GPUs, "
                        f"the Ray cluster has {have:g}: lower it (0 runs every generator on CPUs)")
    resources = plan_resources(n, gpus_per_source, threads=threads)
    try:
        return MiningCluster(arches, gen_states, critic_state, images, cfg, resources, snapshot_every=snapshot_every)
    except RuntimeError as e:
        raise UserError(f"{e}; free resources or lower --gpus-per-source") from None
