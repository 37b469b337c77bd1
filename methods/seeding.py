"""One seeding helper: every random stream of a run is derived from (seed, stream keys).

``generator(seed, "gan-train", rank)`` gives a torch.Generator whose state depends only on the
seed and the keys, through :class:`numpy.random.SeedSequence`, so two streams never collide by
arithmetic accident (no ``seed * constant + k``) and adding a stream never shifts another.
"""

from __future__ import annotations

import zlib
from typing import Callable, TypeVar

import numpy as np
import torch

T = TypeVar("T")


def _key(k: str | int) -> int:
    if isinstance(k, bool) or not isinstance(k, (str, int)):
        raise TypeError(f"stream keys are str or int, got {type(k).__name__}")
    return zlib.crc32(k.encode()) if isinstance(k, str) else int(k)


def derive(seed: int, *keys: str | int) -> int:
    """A 63-bit integer seed for the stream (seed, *keys)."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    state = np.random.SeedSequence([int(seed), *(_key(k) for k in keys)]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def generator(seed: int, *keys: str | int) -> torch.Generator:
    """A CPU torch.Generator seeded for the stream (seed, *keys)."""
    return torch.Generator().manual_seed(derive(seed, *keys))


def seeded_init(seed: int, make: Callable[[], T], *keys: str | int) -> T:
    """Run ``make`` (which builds modules) with torch's global RNG seeded for (seed, *keys).

    The global RNG is restored afterwards, so building a model never changes other draws.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive(seed, "init", *keys))
        return make()
