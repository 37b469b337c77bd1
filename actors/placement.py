"""Placing a multi-source mining run on a Ray cluster.

One placement group holds one bundle per source generator (``{"CPU": c, "GPU": g}``: a whole GPU
each when the cluster has them, else a fraction of a CPU) and one bundle for the coordinator.
Fractions matter: an actor that asks for a whole CPU each on a 2-CPU box leaves the third one
waiting forever, so bundles ask for what is there and every wait has a timeout.

A caller that already runs inside a placement group (a Ray Tune trial) reserves the mining
run's bundles in its own group instead (:func:`plan_nested_resources` sizes them, the caller's
own process keeping bundle 0) and hands that group to
:class:`~ganlode.actors.cluster.MiningCluster`, which then creates and removes no group of its
own: an actor asking for resources outside the trial's reservation could wait for ever behind
other trials.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import ray


@dataclass(frozen=True)
class MiningResources:
    """What each actor asks Ray for."""

    cpus_per_source: float
    gpus_per_source: float
    coordinator_cpus: float
    threads_per_source: int = 1
    coordinator_threads: int = 1
    coordinator_gpus: float = 0.0  # the shared critic gets a GPU only when one is left over

    def bundles(self, n_sources: int) -> list[dict[str, float]]:
        source = {"CPU": self.cpus_per_source, **({"GPU": self.gpus_per_source} if self.gpus_per_source else {})}
        coordinator = {"CPU": self.coordinator_cpus, **({"GPU": self.coordinator_gpus} if self.coordinator_gpus else {})}
        return [dict(source) for _ in range(n_sources)] + [coordinator]

    @classmethod
    def from_bundles(cls, bundles: Sequence[dict[str, float]], threads: int | None = None) -> "MiningResources":
        """The resources of N source bundles then one coordinator bundle (as :meth:`bundles` lays them out).

        Raises:
            ValueError: fewer than two bundles, or source bundles that differ.
        """
        if len(bundles) < 2:
            raise ValueError(f"a mining run needs one bundle per source and one for the coordinator, got {len(bundles)}")
        *sources, coordinator = [{k: float(v) for k, v in b.items()} for b in bundles]
        cpus, gpus = sources[0].get("CPU", 0.0), sources[0].get("GPU", 0.0)
        if any((b.get("CPU", 0.0), b.get("GPU", 0.0)) != (cpus, gpus) for b in sources):
            raise ValueError(f"the source bundles differ ({sources}); give every source the same resources")
        coordinator_cpus = coordinator.get("CPU", 0.0)
        t = threads or max(1, int(cpus))
        return cls(cpus, gpus, coordinator_cpus, t, threads or max(1, int(coordinator_cpus)),
                   coordinator.get("GPU", 0.0))


def _floor(x: float, step: float = 0.05) -> float:
    return round(max(step, math.floor(x / step + 1e-9) * step), 2)


def default_gpus_per_source(n_sources: int, gpus: float) -> float:
    """1 when there are N whole GPUs; else 1/k of one, k = sources per GPU; 0 without a GPU.

    (A fraction like 2/3 would not pack: two such bundles do not fit on one GPU.)
    """
    whole = int(gpus)
    return 0.0 if whole < 1 else 1.0 / math.ceil(n_sources / whole)


def plan_resources(n_sources: int, gpus_per_source: float | None = None, *, threads: int | None = None,
                   available: dict[str, float] | None = None) -> MiningResources:
    """Resources for N generator actors and a coordinator on the cluster's free resources.

    Args:
        n_sources: N.
        gpus_per_source: GPUs per generator actor; None picks 1 when the cluster has N free GPUs,
            1/k of a GPU (k sources per GPU) when it has fewer, and 0 when it has none.
        threads: torch threads per actor (default: the whole CPUs its bundle holds, at least 1).
        available: free resources (default: ``ray.available_resources()``).
    """
    if available is None:
        available = ray.available_resources()
    cpus, gpus = float(available.get("CPU", 0.0)), float(available.get("GPU", 0.0))
    coordinator_gpus = 0.0
    if gpus_per_source is None:
        coordinator_gpus = 1.0 if int(gpus) > n_sources else 0.0
        gpus_per_source = default_gpus_per_source(n_sources, gpus)
    if gpus_per_source < 0:
        raise ValueError("gpus_per_source must be >= 0")
    # Leave a tenth for whatever else runs; no actor asks for more than 1 CPU.
    per_actor = min(1.0, 0.9 * cpus / (n_sources + 1)) if cpus > 0 else 0.05
    per_actor = _floor(per_actor)
    t = threads or max(1, int(per_actor))
    return MiningResources(per_actor, float(gpus_per_source), per_actor, t, t, coordinator_gpus)


def plan_nested_resources(n_sources: int, cpus: float, gpus_per_source: float = 0.0) -> tuple[float, MiningResources]:
    """Split ``cpus`` between a host process and the N+1 actors of a mining run it drives.

    The host (a Tune trial) keeps one bundle of its own; each actor gets ``cpus / (N + 2)``
    (rounded down to 0.05, at least 0.05), the host the rest, so the N+2 bundles add up to
    ``cpus``: a trial reserves what one trial is given (2 sources, 1 CPU: 0.25 each). Each
    actor runs one torch thread per whole CPU of its bundle (at least one). The generators get
    ``gpus_per_source`` each (see :func:`default_gpus_per_source`); the coordinator's small
    critic stays on its CPU, so that GPUs go to the generators of as many trials as fit.

    Returns:
        (the host bundle's CPUs, the actors' MiningResources).

    Raises:
        ValueError: ``cpus`` too small to split (under 0.05 per actor plus some for the host).
    """
    if n_sources < 1 or not cpus > 0 or gpus_per_source < 0:
        raise ValueError(f"need one or more sources, CPUs > 0 and GPUs >= 0 (got {n_sources}, {cpus}, {gpus_per_source})")
    per_actor = _floor(cpus / (n_sources + 2))
    host = round(cpus - (n_sources + 1) * per_actor, 4)
    if host <= 0:
        raise ValueError(f"{cpus:g} CPUs are too few for a trial and {n_sources + 1} actors "
                         f"(at least {0.05 * (n_sources + 2):.2f})")
    t = max(1, int(per_actor))
    return host, MiningResources(per_actor, float(gpus_per_source), per_actor, t, t, 0.0)


def gpus_needed(n_sources: int, gpus_per_source: float) -> float:
    """Whole GPUs that N bundles of ``gpus_per_source`` need (fractions pack only whole per GPU)."""
    if gpus_per_source <= 0:
        return 0.0
    if gpus_per_source >= 1:
        return n_sources * gpus_per_source
    return float(math.ceil(n_sources / math.floor(1 / gpus_per_source + 1e-9)))


def check_bundles(bundles: Sequence[dict[str, float]], resources: MiningResources, n_sources: int, offset: int) -> None:
    """Raise ValueError unless ``bundles[offset:]`` hold what N generators and a coordinator ask for.

    An actor asking a bundle for more than it holds is never scheduled: it would wait for ever.
    """
    need = resources.bundles(n_sources)
    have = list(bundles)[offset:offset + len(need)]
    short = [(offset + i, want, got) for i, (want, got) in enumerate(zip(need, have))
             if any(float(got.get(k, 0.0)) + 1e-9 < v for k, v in want.items())]
    if len(have) < len(need) or short:
        raise ValueError(f"the placement group's bundles {offset}..{offset + len(need) - 1} must hold {need} "
                         f"(N generators, then the coordinator), it has {list(bundles)}")
