"""A run lock on S3: one object ``RUN/.ganlode-lock`` written with conditional PUTs, under a renewed lease.

A botocore client with the endpoint, timeouts and retry mode of :mod:`..fs` (credentials from the
usual AWS chain, as for s3fs); failures become one-line ``UserError`` s via :mod:`..remote_errors`.
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
import json
import threading
import time
from email.utils import parsedate_to_datetime
from typing import Any

from ...errors import UserError
from ..fs import BOTOCORE_MAX_ATTEMPTS, CONNECT_TIMEOUT_S, READ_TIMEOUT_S, filesystem, redact, s3_endpoint
from ..published import resolve_physical
from ..remote_errors import error_code, translate_errors
from .record import ATTEMPTS, LOCK_FILE, busy, clean, notice, parse, stamp, who

SETTLE_S = 0.5  # best-effort S3 mode: wait this long before reading the lock back
_UNSUPPORTED_CODES = {"NotImplemented", "InvalidArgument", "InvalidRequest", "ConditionalRequestsNotSupported"}

# (endpoint, bucket) -> whether conditional writes are honoured; filled by the first acquire.
_CONDITIONAL: dict[tuple[str, str], bool] = {}


class _Conflict(Exception):
    """412 PreconditionFailed / 409 ConditionalRequestConflict."""


class _Missing(Exception):
    """404 NoSuchKey."""


class _Unsupported(Exception):
    """The server rejects conditional headers."""


class S3Lock:
    """The S3 implementation behind a :class:`~.runlock.RunLock` (its ``owner``)."""

    def __init__(self, owner: Any):
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
            record = parse(r["Body"].read())
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
        record["expires"] = stamp(time.time() + self.owner.lease_s)
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
        for _ in range(ATTEMPTS):
            current = self._get()
            if current is None:
                etag = self._create(token)
                if etag is None:
                    continue  # someone else created it first: read again
                self.etag, message = etag, None
            else:
                previous, stale_etag, expired = current
                if previous and previous.get("token") == token:  # our own PUT, retried by botocore
                    self.etag, message = stale_etag, None
                elif not expired and not force:
                    raise busy(run, previous)
                else:
                    etag = self._replace(stale_etag, token)
                    if etag is None:
                        continue
                    self.etag = etag
                    if force:
                        message = f"removed the lock of {run} held by {who(previous)} (--force-unlock)"
                    elif previous:
                        message = (f"took over the lock of {run} left by {who(previous)} (its lease expired at "
                                  f"{clean(previous.get('expires'))}: that process is gone or stopped renewing)")
                    else:
                        message = f"took over the lock of {run} (its holder record was unreadable and not renewed)"
            if message:
                notice(message)
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
        raise busy(self.display, current[0])

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
        holder = f"now held by {who(current[0])}" if current and current[0] else "its lock object is gone"
        self.lost = (f"lost the lock of {self.display} ({holder}): another writer may be using this run; stop, "
                     "and rerun once it is done")
        notice(self.lost)
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
