"""The one-writer lock of a run directory: :class:`RunLock` (see the package docstring).

It picks its implementation by the path (:class:`~.local.LocalLock` or :class:`~.s3.S3Lock`);
what is common to both (the holder record, acquire-while-held, release on exit and in the
owning process only, the S3 ``lost`` flag) is here.
"""

from __future__ import annotations

import os
import socket
import uuid

from ...errors import UserError
from ..clock import utc_now
from ..fs import is_remote
from .local import LocalLock
from .record import FORMAT, clean, notice
from .s3 import S3Lock


class RunLock:
    """The one-writer lock of the run directory ``run_path`` (see the package docstring).

    Args:
        run_path: the run directory (``--out``): a local path or ``s3://bucket/prefix``.
        command: what holds the lock, as the refusal message shows it (e.g. the command line).
        lease_s: S3 only: a lock not renewed for this long may be taken over; renewed every
            ``lease_s / 3``.
        force: remove whatever lock is there first (``--force-unlock``), with a notice.
    """

    def __init__(self, run_path: str | os.PathLike, *, command: str, lease_s: float = 60.0, force: bool = False):
        if not lease_s > 0:
            raise ValueError("lease_s must be positive")
        self.run = str(run_path)
        self.command = clean(command, 500)
        self.lease_s = float(lease_s)
        self.force = bool(force)
        self.token: str | None = None
        self.record: dict | None = None  # this lock's record while held
        self._pid = os.getpid()
        self._impl = S3Lock(self) if is_remote(self.run) else LocalLock(self)

    @property
    def path(self) -> str:
        """Where the lock lives: a local path, or ``s3://bucket/key``."""
        return self._impl.location

    @property
    def held(self) -> bool:
        return self.record is not None

    @property
    def lost(self) -> str | None:
        """Why the lock was lost (S3: taken over while held), else None."""
        return getattr(self._impl, "lost", None)

    def check(self) -> None:
        """Raise :class:`UserError` if the lock was lost; call it before committing results."""
        if self.lost:
            raise UserError(self.lost)

    def _new_record(self) -> dict:
        return {"format": FORMAT, "host": socket.gethostname(), "pid": os.getpid(), "since": utc_now(),
                "command": self.command, "token": uuid.uuid4().hex}

    def acquire(self) -> RunLock:
        if self.held:
            return self
        self._pid = os.getpid()
        record = self._new_record()
        self._impl.acquire(record)
        self.record, self.token = record, record["token"]
        return self

    def release(self) -> None:
        if not self.held:
            return
        try:
            self._impl.release(own_process=os.getpid() == self._pid)
        except (UserError, OSError) as e:  # a finished run must not fail here: the lock expires or is forced
            notice(f"could not remove the lock {self.path} ({clean(e)}); remove it, or pass --force-unlock next time")
        finally:
            self.record = None

    def holder(self) -> dict | None:
        return self._impl.holder()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"RunLock({self.run!r}, held={self.held})"
