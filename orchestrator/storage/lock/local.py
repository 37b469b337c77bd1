"""A run lock on local disk: an flock on ``RUN/.ganlode-lock`` plus the holder record inside.

``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``RUN/.ganlode-lock``, kept open (close-on-exec) for the
lock's lifetime; the record is written into the file once the flock is held. The kernel drops
an flock when its process dies, so after a SIGKILL the file remains with a free flock:

* flock busy: held; ``UserError`` (with ``force``: the file is unlinked, a notice printed, and a
  fresh file locked; the old holder keeps writing unless stopped, which is the user's call);
* flock free, record from this host (dead pid, or a reused pid): taken over, with the notice
  ``took over the lock of RUN left by pid P on H since T (that process is gone)``;
* flock free, record from another host: flock over NFS or other shared storage may not be
  reliable, so it counts as held: ``UserError`` asking for ``--force-unlock``; with ``force``
  taken over with a notice;
* flock free, empty or unreadable file (a holder killed before it wrote its record): taken over.

After the flock, the acquirer checks that the path still names the inode it locked (a
releaser unlinks the file), so two processes can never both hold a lock file. A filesystem
without flock support is a ``UserError``. Forked (not exec'd) children share the flock: it
lasts until the last of them exits. ``holder()`` takes a shared flock for an instant; acquire
retries its flock for 0.1 s so that such a probe is not mistaken for a holder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from typing import Any

from ...errors import UserError
from ..fs import local_path
from .record import ATTEMPTS, LOCK_FILE, busy, clean, notice, parse, pid_alive, who


class LocalLock:
    """The local-disk implementation behind a :class:`~.runlock.RunLock` (its ``owner``)."""

    def __init__(self, owner: Any):
        self.owner = owner
        self.dir = local_path(owner.run)
        self.location = os.path.join(self.dir, LOCK_FILE)
        self.fd: int | None = None
        self.record: dict = {}

    def _fail(self, action: str, e: OSError) -> UserError:
        return UserError(f"cannot {action} {self.location}: {e.strerror or e.__class__.__name__}")

    @staticmethod
    def _read(fd: int, settle_s: float = 0.0) -> dict | None:
        """The record in ``fd``; with ``settle_s``, wait that long for a holder still writing it."""
        deadline = time.monotonic() + settle_s
        while True:
            record = parse(os.pread(fd, 65536, 0))
            if record is not None or time.monotonic() >= deadline:
                return record
            time.sleep(0.02)

    def _same_file(self, fd: int) -> bool:
        try:
            st = os.stat(self.location)
        except FileNotFoundError:
            return False
        fst = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)

    def _flock(self, fd: int, mode: int, tries: int = 1) -> bool:
        """True if the flock was taken, False if another holds it (after ``tries`` 20 ms apart)."""
        for attempt in range(tries):
            if attempt:
                time.sleep(0.02)
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                return True
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise UserError(f"cannot lock {self.owner.run}: its filesystem does not support file locks "
                                    f"({e.strerror or e.errno}); use a local disk for --out") from None
        return False

    def acquire(self, record: dict) -> None:
        self.record = record
        run, force = self.owner.run, self.owner.force
        try:
            os.makedirs(self.dir, exist_ok=True)
        except OSError as e:
            raise self._fail("create the run directory for", e) from None
        for _ in range(ATTEMPTS):
            try:
                fd = os.open(self.location, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as e:
                raise self._fail("open the lock file", e) from None
            try:
                if not self._flock(fd, fcntl.LOCK_EX, tries=5):  # outlasts a holder() probe's instant
                    previous = self._read(fd, settle_s=1.0)
                    if not force:
                        raise busy(run, previous)
                    if self._same_file(fd):  # else it was released meanwhile: nothing to remove
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(self.location)
                            notice(f"removed the lock of {run} held by {who(previous)} (--force-unlock)")
                            force = False  # one removal, one notice
                    os.close(fd)
                    continue
                if not self._same_file(fd):  # released (unlinked) between our open and our flock
                    os.close(fd)
                    continue
                self._take_over(run, self._read(fd), bytes(os.pread(fd, 1, 0)), force)
                data = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
                os.ftruncate(fd, 0)
                os.pwrite(fd, data, 0)
                os.fsync(fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.close(fd)
                raise
            self.fd = fd
            return
        raise UserError(f"cannot lock {run}: its lock file keeps changing; retry, or pass --force-unlock")

    def _take_over(self, run: str, previous: dict | None, first_byte: bytes, force: bool) -> None:
        """We hold the flock of an existing file: judge what its record says."""
        if previous is None:
            if first_byte:
                notice(f"took over the lock of {run} (its holder record was unreadable)")
            return  # empty: a holder killed before it wrote its record, or a new file
        if force:
            notice(f"removed the lock of {run} left by {who(previous)} (--force-unlock)")
            return
        if previous.get("host") != socket.gethostname():
            raise UserError(
                f"{run} is locked by pid {clean(previous.get('pid'))} on host {clean(previous.get('host'))} since "
                f"{clean(previous.get('since'))} (command: {clean(previous.get('command'))}); that host's process "
                "cannot be checked from here (locks over shared storage are not reliable): wait for it to finish, "
                "or pass --force-unlock if that process is gone")
        gone = "that process is gone"
        if pid_alive(previous.get("pid")):
            gone = "that process is gone; its pid is in use by another process"
        notice(f"took over the lock of {run} left by {who(previous)} ({gone})")

    def release(self, own_process: bool) -> None:
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            if own_process and self._same_file(fd):
                record = self._read(fd)
                if record and record.get("token") == self.record["token"]:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.location)  # before the close: nobody can lock this inode and win
        finally:
            os.close(fd)

    def holder(self) -> dict | None:
        try:
            fd = os.open(self.location, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise self._fail("read the lock file", e) from None
        try:
            if not self._flock(fd, fcntl.LOCK_SH):
                return self._read(fd, settle_s=1.0) or {}
            record = self._read(fd)
            fcntl.flock(fd, fcntl.LOCK_UN)
            if record and record.get("host") != socket.gethostname():
                return record  # another host's lock counts as held (see acquire)
            return None
        finally:
            os.close(fd)
