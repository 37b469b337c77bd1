"""Starting or joining a Ray cluster, once per process."""

from __future__ import annotations

import os


def ensure_ray(num_cpus: int | None = None, num_gpus: int | None = None, address: str | None = None,
               dashboard: bool = False) -> None:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), else start a local one; no-op if up.

    A local cluster gets a modest object store, enough for image batches and weights, and no
    dashboard unless asked (it costs seconds; Ray Train's controller polls its state API). Task
    arguments and results up to ``GANLODE_RAY_INLINE_BYTES`` (default 1 MiB; Ray's own is 100 KB)
    travel inline in the call and its reply, not through the object store: a mining step's x_i
    and dL/dx_i (200 KB each at a batch of 64 28x28 images) then cost no object-store round trip.
    A cluster that is joined keeps its own setting.
    """
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    ray.init(
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        include_dashboard=dashboard,
        object_store_memory=int(os.environ.get("GANLODE_OBJECT_STORE_BYTES", 300 * 1024**2)),
        log_to_driver=True,
        _system_config={"max_direct_call_object_size": int(os.environ.get("GANLODE_RAY_INLINE_BYTES", 1024**2))},
    )
