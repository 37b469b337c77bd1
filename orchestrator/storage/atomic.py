"""Atomic writes: a failed or killed run never leaves a half-written file or folder where a whole one stood.

* One file (:func:`write_bytes_atomic`): locally, a temporary file beside it, fsynced and
  renamed over it (:func:`ganlode.actors._runtime.write_local_atomic`, the one local
  implementation); on S3 a single PUT (or a multipart upload, completed in one call) is
  atomic already.
* A directory (:func:`atomic_dir`): locally, the staging directory beside the target is
  swapped with it in one ``renameat2(RENAME_EXCHANGE)`` call (two renames where that call is
  missing); on S3 it is published by pointer (:mod:`.published`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Iterator

from ...actors._runtime import DIR_MODE, write_local_atomic
from .fs import filesystem, is_remote, local_path
from .published import publish_remote, resolve_physical
from .remote_errors import translate_errors


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` so that readers see either the old file or the whole new one."""
    path = str(path)
    if not is_remote(path):
        write_local_atomic(local_path(path), data)
        return
    fs, p = filesystem(path)
    with translate_errors(path, "writing"):
        # One PUT (or one completed multipart upload): the object appears whole or not at all.
        fs.pipe_file(resolve_physical(fs, p, include_self=False), data)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a local staging directory; on success publish it as ``path`` in one step.

    If the ``with`` body raises (or the process dies), ``path`` keeps its previous complete
    content. Locally the staging directory is swapped with the target; on S3 its files are
    uploaded to a fresh version prefix and the pointer is flipped last.
    """
    path = str(path)
    if not is_remote(path):
        target = local_path(path)
        parent = os.path.dirname(target)
        os.makedirs(parent, exist_ok=True)
        stage = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(target)}.tmp-")
        os.chmod(stage, DIR_MODE)
        try:
            yield Path(stage)
            _publish_local(stage, target)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        return
    with tempfile.TemporaryDirectory(prefix="ganlode-stage-") as stage:
        yield Path(stage)
        publish_remote(stage, path)


def _publish_local(stage: str, target: str) -> None:
    if os.path.isdir(target) and not os.path.islink(target) and _exchange(stage, target):
        shutil.rmtree(stage, ignore_errors=True)  # ``stage`` now holds the old content
        return
    old = None
    if os.path.lexists(target):
        old = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
    os.replace(stage, target)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def _exchange(a: str, b: str) -> bool:
    """Swap two paths in one system call (Linux ``renameat2``); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0
