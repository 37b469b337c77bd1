"""Starting or joining a Ray cluster, once per process."""

from __future__ import annotations

import os


def ensure_ray(num_cpus: int | None = None, num_gpus: int | None = None, address: str | None = None) -> None:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), else start a local one; no-op if up.

    A local cluster gets no dashboard (it costs seconds here and nothing uses it) and a
    modest object store, enough for image batches and weights.
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
        include_dashboard=False,
        object_store_memory=int(os.environ.get("GANLODE_OBJECT_STORE_BYTES", 300 * 1024**2)),
        log_to_driver=True,
    )
