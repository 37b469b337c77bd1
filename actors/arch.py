"""An architecture config on its way into an actor: its dict, and the files it rebuilds from.

A source's architecture travels as ``architectures.to_dict(cfg)`` (any registered architecture:
DCGAN, StyleGAN2, TorchScript, ...). One that rebuilds from files (a TorchScript archive) also
sends them, once, through the object store: the driver keeps the reference alive for the actors'
lifetime (a restarted actor fetches them again), as it does the weights. A DCGAN sends its dict
alone, inline, as before.
"""

from __future__ import annotations

from typing import Any

import ray

from ..methods import architectures

FETCH_TIMEOUT_S = 300


def pack(cfg: Any) -> tuple[dict[str, Any], list | None]:
    """(the config's dict, None or a one-element list holding an ObjectRef to its files).

    The list form keeps the bytes out of the actor's own constructor arguments (ray-project/ray#53727);
    the caller holds the list while the actors live.
    """
    files = architectures.files_of(cfg)
    return architectures.to_dict(cfg), ([ray.put(files)] if files else None)


def unpack(arch: dict[str, Any], files: list | dict[str, bytes] | None) -> Any:
    """The config object of ``arch``, with its files (given, or behind the ObjectRef of :func:`pack`) attached."""
    if isinstance(files, list):
        files = ray.get(files[0], timeout=FETCH_TIMEOUT_S)
    return architectures.from_dict(arch, files or None)
