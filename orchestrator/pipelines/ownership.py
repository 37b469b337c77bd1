"""One writer per run: how a pipeline takes ``RUN/.ganlode-lock`` before it writes anything.

Every command that writes a run directory (transfer, mine, tune, pretrain, demo, eval's appends,
report) runs its writes inside :func:`owning`::

    plan = _check(...)                           # argument checks first: bad input writes nothing
    with owning(out, force_unlock=force_unlock) as lock:
        run = LockedRunDir(out, lock)            # state checks ("already finished"?) go here
        ...                                      # every write of the run

A second writer is refused with one line naming the holder (``UserError``, exit 2) and writes
nothing; a stale lock (dead pid on this host, expired lease on S3) is taken over with a one-line
notice; ``force_unlock`` (``--force-unlock``) removes a live one (see :mod:`..storage.lock`).

:class:`LockedRunDir` is the cheap hook for S3, where a lock can be lost (taken over after its
lease lapsed, e.g. a frozen process): every path it hands out first calls ``lock.check()``, so
no checkpoint, metrics part, sample or config is committed after the lock was lost. Locally
``check()`` never raises.

Ownership is per directory: a run's sub-runs (``demo``'s ``mine/`` and ``transfer/<method>/``, a
search's ``trials/<id>/``) take their own locks, in their own lock files. Forked children share
the flock; Ray workers are spawned (exec'd), and the lock file is close-on-exec, so Tune trials
and actors never hold or inherit their driver's lock.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

from .. import storage
from ..artifacts.rundir import RunDir, command_line


@contextlib.contextmanager
def owning(out: str, *, force_unlock: bool = False, command: str | None = None) -> Iterator[storage.RunLock]:
    """Check that ``out`` can be written and hold its lock for the ``with`` body.

    Locally the writability check (which writes nothing) comes first, so an unwritable ``--out``
    keeps its usual message; on S3 it writes a probe object, so it runs once the lock is held.
    A local run directory that the lock had to create is removed again if the body leaves it
    empty (a refusal under the lock writes nothing).
    """
    remote = storage.is_remote(out)
    created = None
    if not remote:
        storage.check_writable(out)
        if not os.path.exists(storage.local_path(out)):
            created = storage.local_path(out)
    try:
        with storage.RunLock(out, command=command or command_line(), force=force_unlock) as lock:
            if remote:
                storage.check_writable(out)
            yield lock
    finally:
        if created is not None:
            with contextlib.suppress(OSError):  # not empty (the run was written, or another writer's lock)
                os.rmdir(created)


class LockedRunDir(RunDir):
    """A :class:`RunDir` whose every file path is handed out only while ``lock`` is still held.

    Each write of a run (config.json, a metrics part, a sample, a checkpoint, the training
    state) names its file through :meth:`file` just before it writes, so ``lock.check()`` there
    stops a run that lost its S3 lock before its next commit (one ``UserError`` line).
    """

    def __init__(self, path: str, lock: storage.RunLock):
        super().__init__(path)
        self.lock = lock

    def file(self, *parts: str) -> str:
        self.lock.check()
        return super().file(*parts)
