"""``MiningCluster``: N generator actors and one coordinator actor in one placement group.

It is the driver's handle on a distributed mining run and has the interface of the in-process
reference (:class:`ganlode.methods.multisource.MultiSourceMiner`): ``steps_done``,
``run_until``, ``shares``, ``state_tensors``, ``load_state_tensors``, ``close``. Where its
actors go is planned in :mod:`ganlode.actors.placement`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from typing import Any, Sequence

import ray
import torch
from ray.util.placement_group import placement_group as create_placement_group
from ray.util.placement_group import remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from ..methods.multisource import MultiSourceConfig
from .arch import pack
from .coordinator import CoordinatorActor
from .generator import GeneratorActor
from .placement import MiningResources, check_bundles


def _state_dir() -> str:
    return os.path.join(tempfile.gettempdir(), "ganlode-mine", uuid.uuid4().hex[:12])


class MiningCluster:
    """N GeneratorActors and one CoordinatorActor in one placement group.

    Args:
        arches: each source's architecture config (any registered architecture's, files attached).
        generator_states: each source generator's weights.
        critic_state: the shared critic's starting weights (architecture ``arches[0]``), handed to
            the coordinator as given.
        images: the target training set, handed to the coordinator as given.
        cfg: the run's settings.
        resources: from :func:`plan_resources` (or :func:`plan_nested_resources`).
        snapshot_every: steps between in-memory snapshots (the most a dead actor costs).
        max_restarts: restarts Ray grants each generator actor.
        step_timeout_s, restart_timeout_s, ready_timeout_s: the longest waits for one step,
            for a restarted actor, and for the placement group.
        placement_group: a group the caller holds (a Tune trial's); the actors take its
            bundles ``bundle_offset`` .. ``bundle_offset + N`` (generators, then the
            coordinator), which must hold ``resources.bundles(N)``. The cluster creates no
            group then, and leaves this one in place on :meth:`close`.
        bundle_offset: the first bundle of ``placement_group`` that is the run's (0 without one).
    """

    def __init__(self, arches: Sequence[Any], generator_states: Sequence[dict[str, torch.Tensor]],
                 critic_state: Any, images: Any, cfg: MultiSourceConfig,
                 resources: MiningResources, *, snapshot_every: int = 100, max_restarts: int = 3,
                 step_timeout_s: float = 120.0, restart_timeout_s: float = 120.0, ready_timeout_s: float = 60.0,
                 placement_group: Any = None, bundle_offset: int = 0):
        n = len(arches)
        self.resources = resources
        self.timeout_s = step_timeout_s
        self.restart_timeout_s = restart_timeout_s
        self.state_dir = _state_dir()
        self.owns_placement_group = placement_group is None
        if placement_group is None:
            self.pg = create_placement_group(resources.bundles(n), strategy="PACK")
            self.bundle_offset = 0
        else:
            check_bundles(placement_group.bundle_specs, resources, n, bundle_offset)
            self.pg = placement_group
            self.bundle_offset = bundle_offset
        try:
            ray.get(self.pg.ready(), timeout=ready_timeout_s)
        except ray.exceptions.GetTimeoutError:
            if self.owns_placement_group:
                remove_placement_group(self.pg)
            raise RuntimeError(
                f"the Ray cluster could not place {n} generator actors and a coordinator within {ready_timeout_s:.0f} s: "
                f"they need {resources.bundles(n)}, the cluster has {ray.available_resources()} free"
            ) from None

        def bundle(i: int) -> PlacementGroupSchedulingStrategy:
            return PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=self.bundle_offset + i)

        gen_cls = ray.remote(GeneratorActor)
        coord_cls = ray.remote(CoordinatorActor)
        cfg_dict = cfg.to_dict()
        # Held here for the actors' lifetime: a restarted actor fetches its weights again.
        self._weights = [ray.put({k: v.detach().cpu() for k, v in state.items()}) for state in generator_states]
        self._arches = [pack(a) for a in arches]  # (dict, files ref or None); the refs live as long as the actors
        self.generators = [
            gen_cls.options(
                num_cpus=resources.cpus_per_source, num_gpus=resources.gpus_per_source,
                max_restarts=max_restarts, max_task_retries=0,
                scheduling_strategy=bundle(i),
            ).remote(i, self._arches[i][0], [self._weights[i]], cfg_dict,
                     os.path.join(self.state_dir, f"source-{i}.safetensors"), resources.threads_per_source,
                     self._arches[i][1])
            for i in range(n)
        ]
        self.coordinator = coord_cls.options(
            num_cpus=resources.coordinator_cpus, num_gpus=resources.coordinator_gpus, max_restarts=0,
            scheduling_strategy=bundle(n),
        ).remote(self.generators, self._arches[0][0], critic_state, images, cfg_dict,
                 resources.coordinator_threads, snapshot_every, step_timeout_s, restart_timeout_s, self._arches[0][1])
        self._steps_done = 0

    def _get(self, ref: Any, steps: int = 1) -> Any:
        return ray.get(ref, timeout=self.timeout_s * max(1, steps) + 3 * self.restart_timeout_s)

    @property
    def steps_done(self) -> int:
        return self._steps_done

    def run_until(self, step: int) -> list[dict[str, Any]]:
        rows = self._get(self.coordinator.run_until.remote(step), step - self._steps_done)
        self._steps_done = step
        return rows

    def shares(self) -> list[float]:
        return self._get(self.coordinator.shares.remote())

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return self._get(self.coordinator.state_tensors.remote())

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self._steps_done = self._get(self.coordinator.load_state_tensors.remote(tensors))

    def generator_info(self) -> list[dict[str, Any]]:
        return ray.get([g.info.remote() for g in self.generators], timeout=self.timeout_s)

    def coordinator_info(self) -> dict[str, Any]:
        return self._get(self.coordinator.info.remote())

    def close(self) -> None:
        """Stop every actor, free the placement group (if this cluster made it) and drop the actors' state files."""
        try:
            ray.get([g.discard_state_file.remote() for g in self.generators], timeout=10)
        except Exception:  # noqa: BLE001 - best effort: a dead actor's node may be gone
            pass
        for actor in [self.coordinator, *self.generators]:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        if self.owns_placement_group:
            try:
                remove_placement_group(self.pg)
            except Exception:  # noqa: BLE001
                pass
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> "MiningCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
