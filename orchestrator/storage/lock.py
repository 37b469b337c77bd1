"""One writer per run: a lock at ``RUN/.ganlode-lock``, on local disk or on S3.

Two commands started with the same ``--out`` would otherwise both write into the run directory
and mix their results. A command takes the lock before it writes anything there::

    with RunLock(out, command="ganlode transfer ...", force=args.force_unlock):
        ...  # write the run

API
---
``RunLock(run_path, *, command, lease_s=60.0, force=False)``
    A context manager (``__enter__`` acquires, ``__exit__`` releases, on exceptions too).
``acquire()``
    Take the lock or raise :class:`~ganlode.orchestrator.errors.UserError` (one line, naming
    the holder's host, pid, start time and command). Calling it while held is a no-op.
``release()``
    Remove the lock file/object only if it still carries this lock's token; idempotent; a
    forked child never removes its parent's lock.
``holder()``
    The record of the lock in force at ``run_path`` (anyone's, this one's included), or None
    when there is none or only a stale one; ``{}`` when a lock is held but its record is unreadable.
``lost`` / ``check()``
    S3 only: set (and one line printed on stderr) when renewal finds the lock taken over;
    ``check()`` raises ``UserError`` then. Long-running writers should call ``check()`` before
    each commit (checkpoint, table part). Locally ``lost`` stays None (an flock cannot be lost).
``LOCK_FILE``
    ``".ganlode-lock"``. Its ``.ganlode-`` prefix hides it from :func:`~.files.listdir` and keeps
    it out of published-directory garbage collection. The lock writes nothing else in the run.

The holder record (JSON): ``format``, ``host`` (``socket.gethostname()``), ``pid``, ``since``
(UTC, ``YYYY-MM-DDTHH:MM:SSZ``), ``command``, ``token`` (random); on S3 also ``lease_s`` and
``expires`` (the holder's clock, for people; expiry itself is judged by the server's clock).

Every notice (a stale lock taken over, a forced removal, a lost lock) is ONE line on stderr.

Local paths
-----------
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

S3 (``s3://bucket/prefix``)
---------------------------
A botocore client with the endpoint, timeouts and retry mode of :mod:`.fs` (credentials from the
usual AWS chain, as for s3fs); failures become one-line ``UserError`` s via :mod:`.remote_errors`.
The key is ``RUN/.ganlode-lock`` with published-directory pointers above RUN resolved (RUN's own
pointer is not followed, so a publish of RUN never moves the lock).

* acquire: GET the lock; if absent, ``PutObject(IfNoneMatch="*")``. If present and its lease
  expired (server ``Date`` minus the object's ``Last-Modified`` > its ``lease_s``), or with
  ``force``, it is overwritten with ``PutObject(IfMatch=<stale ETag>)``, which fails if the
  holder renewed or another taker won meanwhile. A 412/409 answer means "re-read and decide again".
  A 412 whose re-read shows our own token (a botocore retry of a PUT that had succeeded) is ours.
* renewal: a daemon thread re-writes the record (later ``expires``) every ``lease_s / 3`` with
  ``IfMatch=<last ETag>``; a 412/404 whose re-read shows another token sets ``lost``. Transient
  errors are retried at the next tick.
* release: stop renewal, GET, and if the token is ours ``DeleteObject(IfMatch=<ETag>)`` (a plain
  delete where the server rejects that condition).
* support check: after the first conditional create of a process per (endpoint, bucket), the
  same PUT is sent again with ``IfNoneMatch="*"``: a 412 proves conditions are honoured (the
  object is unchanged either way). A server that ignores them, or rejects them
  (``NotImplemented``, ``InvalidArgument``, ``InvalidRequest``, 501), gets the documented best
  effort: check-then-write, wait ``SETTLE_S``, read back and compare the token; renew and release
  only after a read shows our token. Two racers can still both win there within milliseconds.

What moto (5.2.5, ``moto[server]`` as the tests use it) does, as measured (the status codes are
asserted by ``tests/test_run_lock.py::test_moto_honours_conditional_writes_and_the_lock_detects_it``;
the race by a one-off probe, 8 threads x 5 trials on one key): it honours ``PutObject`` ``IfNoneMatch="*"`` (412
``PreconditionFailed``, ``Condition: If-None-Match`` on an existing key) and ``IfMatch`` (412 on
a wrong ETag, 404 ``NoSuchKey`` on a missing key), and ``DeleteObject`` ``IfMatch`` (412 / 404).
It evaluates the condition and then writes without a lock of its own, so it is not atomic
under concurrent requests as AWS is (in practice exactly one of 8 racing threads won each trial).
Its ETags are the MD5 of the body, as AWS's are for single-part PUTs; it sends ``Date`` and
``Last-Modified`` to the second.
"""

from __future__ import annotations

import calendar
import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time
import uuid
from email.utils import parsedate_to_datetime
from typing import Any

from ..errors import UserError
from .clock import utc_now
from .fs import (BOTOCORE_MAX_ATTEMPTS, CONNECT_TIMEOUT_S, READ_TIMEOUT_S, filesystem, is_remote, local_path,
                 redact, s3_endpoint)
from .published import resolve_physical
from .remote_errors import error_code, translate_errors

LOCK_FILE = ".ganlode-lock"
FORMAT = "ganlode-lock/1"
SETTLE_S = 0.5  # best-effort S3 mode: wait this long before reading the lock back
_ATTEMPTS = 8  # re-reads of a lock that keeps changing under us before giving up
_UNSUPPORTED_CODES = {"NotImplemented", "InvalidArgument", "InvalidRequest", "ConditionalRequestsNotSupported"}

# (endpoint, bucket) -> whether conditional writes are honoured; filled by the first acquire.
_CONDITIONAL: dict[tuple[str, str], bool] = {}


def _notice(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _clean(value: Any, limit: int = 200) -> str:
    """A record field as a message may show it: one line, printable, bounded."""
    text = " ".join(str(value).split()) if value is not None else "?"
    text = "".join(c if c.isprintable() else "?" for c in text) or "?"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _who(record: dict | None) -> str:
    if not record:
        return "an unknown holder (unreadable record)"
    return f"pid {_clean(record.get('pid'))} on {_clean(record.get('host'))} since {_clean(record.get('since'))}"


def _busy(run: str, record: dict | None) -> UserError:
    if not record:
        return UserError(f"{run} is being written by another process (its lock record is unreadable); wait for "
                         "it to finish, or pass --force-unlock if that process is gone")
    return UserError(
        f"{run} is being written by pid {_clean(record.get('pid'))} on host {_clean(record.get('host'))} since "
        f"{_clean(record.get('since'))} (command: {_clean(record.get('command'))}); wait for it to finish, or pass "
        "--force-unlock if that process is gone")


def _parse(raw: bytes) -> dict | None:
    """A holder record, or None for an empty or unreadable one."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("token"), str) else None


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """The one-writer lock of the run directory ``run_path`` (see the module docstring).

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
        self.command = _clean(command, 500)
        self.lease_s = float(lease_s)
        self.force = bool(force)
        self.token: str | None = None
        self.record: dict | None = None  # this lock's record while held
        self._pid = os.getpid()
        self._impl = _S3Lock(self) if is_remote(self.run) else _LocalLock(self)

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
            _notice(f"could not remove the lock {self.path} ({_clean(e)}); remove it, or pass --force-unlock next time")
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


# ------------------------------------------------------------------------------------ local disk


class _LocalLock:
    def __init__(self, owner: RunLock):
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
            record = _parse(os.pread(fd, 65536, 0))
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
        for _ in range(_ATTEMPTS):
            try:
                fd = os.open(self.location, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as e:
                raise self._fail("open the lock file", e) from None
            try:
                if not self._flock(fd, fcntl.LOCK_EX, tries=5):  # outlasts a holder() probe's instant
                    previous = self._read(fd, settle_s=1.0)
                    if not force:
                        raise _busy(run, previous)
                    if self._same_file(fd):  # else it was released meanwhile: nothing to remove
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(self.location)
                            _notice(f"removed the lock of {run} held by {_who(previous)} (--force-unlock)")
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
                _notice(f"took over the lock of {run} (its holder record was unreadable)")
            return  # empty: a holder killed before it wrote its record, or a new file
        if force:
            _notice(f"removed the lock of {run} left by {_who(previous)} (--force-unlock)")
            return
        if previous.get("host") != socket.gethostname():
            raise UserError(
                f"{run} is locked by pid {_clean(previous.get('pid'))} on host {_clean(previous.get('host'))} since "
                f"{_clean(previous.get('since'))} (command: {_clean(previous.get('command'))}); that host's process "
                "cannot be checked from here (locks over shared storage are not reliable): wait for it to finish, "
                "or pass --force-unlock if that process is gone")
        gone = "that process is gone"
        if _pid_alive(previous.get("pid")):
            gone = "that process is gone; its pid is in use by another process"
        _notice(f"took over the lock of {run} left by {_who(previous)} ({gone})")

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


# --------------------------------------------------------------------------------------------- S3


class _Conflict(Exception):
    """412 PreconditionFailed / 409 ConditionalRequestConflict."""


class _Missing(Exception):
    """404 NoSuchKey."""


class _Unsupported(Exception):
    """The server rejects conditional headers."""


class _S3Lock:
    def __init__(self, owner: RunLock):
        self.owner = owner
        self.display = redact(owner.run)
        self.bucket = self.key = ""  # found on first use (it may read pointers)
        self._client = None
        self.etag: str | None = None
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()
        self.record: dict = {}

    def _locate(self) -> None:
        if self.key:
            return
        fs, p = filesystem(self.owner.run)
        with translate_errors(self.owner.run, "locking"):
            physical = resolve_physical(fs, p, include_self=False)  # RUN's own pointer is not followed
        bucket, _, prefix = physical.strip("/").partition("/")
        if not bucket:
            raise UserError(f"{self.display} names no bucket: use s3://BUCKET/PREFIX")
        self.bucket, self.key = bucket, f"{prefix}/{LOCK_FILE}" if prefix else LOCK_FILE

    @property
    def location(self) -> str:
        self._locate()
        return f"s3://{self.bucket}/{self.key}"

    @property
    def support_key(self) -> tuple[str, str]:
        self._locate()
        return (s3_endpoint() or "aws", self.bucket)

    # -- requests

    @property
    def client(self):
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.session.Session().client(
                "s3", endpoint_url=s3_endpoint(),
                config=Config(connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S,
                              retries={"total_max_attempts": BOTOCORE_MAX_ATTEMPTS, "mode": "standard"}))
        return self._client

    def _call(self, op: str, **kwargs: Any) -> dict:
        import botocore.exceptions as bex
        from s3fs.errors import translate_boto_error

        self._locate()
        conditional = "IfMatch" in kwargs or "IfNoneMatch" in kwargs
        with translate_errors(self.owner.run, "locking"):
            try:
                return getattr(self.client, op)(Bucket=self.bucket, Key=self.key, **kwargs)
            except bex.ClientError as e:
                code = error_code(e)
                status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                    raise _Conflict() from None
                if code in ("NoSuchKey", "404") or (status == 404 and code != "NoSuchBucket"):
                    raise _Missing() from None
                if conditional and (code in _UNSUPPORTED_CODES or status == 501):
                    raise _Unsupported() from None
                raise translate_boto_error(e)  # an OSError that translate_errors words

    def _get(self) -> tuple[dict | None, str, bool] | None:
        """(record or None if unreadable, ETag, expired) of the lock object, or None if absent."""
        try:
            r = self._call("get_object")
        except _Missing:
            return None
        with translate_errors(self.owner.run, "locking"):
            record = _parse(r["Body"].read())
        lease = record.get("lease_s") if record else None
        lease = float(lease) if isinstance(lease, (int, float)) and lease > 0 else self.owner.lease_s
        return record, r["ETag"], self._age(r, record) > lease

    @staticmethod
    def _age(response: dict, record: dict | None) -> float:
        """Seconds since the lock object was last written, by the server's clock where it says."""
        date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        modified = response.get("LastModified")
        if date and modified is not None:
            with contextlib.suppress(TypeError, ValueError):
                return (parsedate_to_datetime(date) - modified).total_seconds()
        with contextlib.suppress(TypeError, ValueError, KeyError):  # no server clock: the holder's
            expires = calendar.timegm(time.strptime(record["expires"], "%Y-%m-%dT%H:%M:%SZ"))
            return time.time() - expires + float(record["lease_s"])
        return float("inf") if record is None else 0.0

    def _body(self) -> bytes:
        record = dict(self.record)
        record["lease_s"] = self.owner.lease_s
        record["expires"] = _stamp(time.time() + self.owner.lease_s)
        return (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")

    def _put(self, **condition: str) -> str:
        return self._call("put_object", Body=self._body(), ContentType="application/json", **condition)["ETag"]

    @property
    def conditional(self) -> bool:
        return _CONDITIONAL.get(self.support_key, True)

    # -- acquire

    def acquire(self, record: dict) -> None:
        self.record, self.lost = record, None
        token, force, run = record["token"], self.owner.force, self.display
        for _ in range(_ATTEMPTS):
            current = self._get()
            if current is None:
                etag = self._create(token)
                if etag is None:
                    continue  # someone else created it first: read again
                self.etag, notice = etag, None
            else:
                previous, stale_etag, expired = current
                if previous and previous.get("token") == token:  # our own PUT, retried by botocore
                    self.etag, notice = stale_etag, None
                elif not expired and not force:
                    raise _busy(run, previous)
                else:
                    etag = self._replace(stale_etag, token)
                    if etag is None:
                        continue
                    self.etag = etag
                    if force:
                        notice = f"removed the lock of {run} held by {_who(previous)} (--force-unlock)"
                    elif previous:
                        notice = (f"took over the lock of {run} left by {_who(previous)} (its lease expired at "
                                  f"{_clean(previous.get('expires'))}: that process is gone or stopped renewing)")
                    else:
                        notice = f"took over the lock of {run} (its holder record was unreadable and not renewed)"
            if notice:
                _notice(notice)
            self._thread = threading.Thread(target=self._renew_loop, name="ganlode-run-lock", daemon=True)
            self._stop.clear()
            self._thread.start()
            return
        raise UserError(f"cannot lock {run}: its lock object keeps changing; retry, or pass --force-unlock")

    def _create(self, token: str) -> str | None:
        """Create the lock object; its ETag, or None if another writer's appeared."""
        if self.conditional:
            try:
                etag = self._put(IfNoneMatch="*")
            except _Conflict:
                return None
            except _Unsupported:
                _CONDITIONAL[self.support_key] = False
            else:
                if self.support_key not in _CONDITIONAL:
                    _CONDITIONAL[self.support_key] = self._probe()
                if self.conditional:
                    return etag
                return self._verify(token)
        self._put()
        return self._verify(token)

    def _probe(self) -> bool:
        """Re-send our create with IfNoneMatch="*": a 412 proves the server honours conditions.

        The body is identical, so a server that ignores the header rewrites the same record.
        """
        try:
            self._put(IfNoneMatch="*")
        except (_Conflict, _Unsupported) as e:
            return isinstance(e, _Conflict)
        return False

    def _replace(self, stale_etag: str, token: str) -> str | None:
        if self.conditional:
            try:
                return self._put(IfMatch=stale_etag)
            except (_Conflict, _Missing):
                return None
            except _Unsupported:
                _CONDITIONAL[self.support_key] = False
        self._put()
        return self._verify(token)

    def _verify(self, token: str) -> str | None:
        """Best effort: wait, read the lock back, and keep it only if it still carries ``token``."""
        time.sleep(SETTLE_S)
        current = self._get()
        if current and current[0] and current[0].get("token") == token:
            return current[1]
        if current is None:
            return None
        raise _busy(self.display, current[0])

    # -- renewal

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.owner.lease_s / 3):
            with self._mutex:
                if self._stop.is_set():
                    return
                try:
                    if self._renew():
                        return
                except Exception:  # noqa: BLE001 - transient: the next tick tries again, within the lease
                    continue

    def _renew(self) -> bool:
        """Extend the lease; True when the lock turned out lost (stop renewing)."""
        token = self.record["token"]
        if self.conditional:
            try:
                self.etag = self._put(IfMatch=self.etag)
                return False
            except (_Conflict, _Missing):
                pass
            except _Unsupported:
                _CONDITIONAL[self.support_key] = False
        current = self._get()
        if current and current[0] and current[0].get("token") == token:
            if self.conditional:
                self.etag = current[1]  # a retried renewal that had succeeded: adopt its ETag
            else:
                self.etag = self._put()
            return False
        who = f"now held by {_who(current[0])}" if current and current[0] else "its lock object is gone"
        self.lost = (f"lost the lock of {self.display} ({who}): another writer may be using this run; stop, "
                     "and rerun once it is done")
        _notice(self.lost)
        return True

    # -- release

    def release(self, own_process: bool) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None
        if not own_process or self.lost:
            return
        with self._mutex:
            current = self._get()
            if not current or not current[0] or current[0].get("token") != self.record["token"]:
                return  # not ours any more: leave it
            try:
                self._call("delete_object", IfMatch=current[1])
            except (_Conflict, _Missing):
                pass
            except _Unsupported:
                self._call("delete_object")

    def holder(self) -> dict | None:
        current = self._get()
        if current is None:
            return None
        record, _, expired = current
        if expired:
            return None
        return record or {}
