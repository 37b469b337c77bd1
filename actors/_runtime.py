"""What every process of a mining run shares: its device, its threads, its allocator settings, and
atomic local writes.

The atomic write here is the one local implementation in ganlode: the orchestrator's storage
layer (``ganlode.orchestrator.storage``) uses it for every local file, and the generator actors
for their state files. It lives in ``actors/`` because actors may not import the orchestrator.
torch is imported by the two functions that need it, so that writing a file never loads torch.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create private (0600/0700) entries; published ones get the usual modes.
_UMASK = _read_umask()
FILE_MODE = 0o666 & ~_UMASK
DIR_MODE = 0o777 & ~_UMASK


def torch_device() -> torch.device:
    """CUDA when this process can see a GPU, else the CPU (never inferred from Ray's GPU ids)."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def set_threads(threads: int) -> None:
    """Pin torch's intra-op threads: actors with a fraction of a CPU must not each use every core."""
    import torch

    torch.set_num_threads(max(1, int(threads)))


# glibc's mallopt parameters and the values keep_freed_memory sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 * 1024**2  # glibc's largest
_TRIM_THRESHOLD = 256 * 1024**2


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse; whether it could (False off glibc).

    In a Ray worker process, glibc hands torch's per-step tensors (up to a few MB) out as fresh
    mmap'ed pages and returns them at free, so every step faults them in again: measured on a
    2-core machine, about 6000 page faults and 10 ms of system time per critic step with N=2
    (a tenth of the step), none in a plain Python process, whose adaptive thresholds settle.
    Fixed thresholds (blocks up to 32 MiB from the heap, which is trimmed only past 256 MiB free)
    keep a step's memory resident from one step to the next.
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))


def write_local_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to the local file ``path`` so that readers see the old file or the whole new one.

    A temporary file in the same directory is written, flushed to disk, given the usual mode
    (``0o666`` less the umask) and renamed over ``path``; on any failure it is removed.
    """
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
