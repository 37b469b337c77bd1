"""The one-writer-per-run lock (``RUN/.ganlode-lock``), on local disk and on S3 (moto on loopback).

What must hold: while one holder has the lock, another acquirer gets a one-line ``UserError``
naming host, pid and since-when, and writes nothing; of two processes racing, exactly one wins;
a SIGKILLed holder's lock (or an expired S3 lease) is taken over with a one-line notice, a live
renewed lease is not; ``force`` removes a live lock with a notice; release removes only the
caller's own lock; the lock writes nothing else in the run.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from ganlode.orchestrator.errors import UserError
from ganlode.orchestrator.storage.lock import s3 as lockmod
from ganlode.orchestrator.storage.lock import LOCK_FILE, RunLock

pytestmark = pytest.mark.timeout(60)

HOST = socket.gethostname()
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
S3_LEASE = 2.0  # short leases keep the S3 tests fast; renewal runs every lease/3

# A holder or racer in its own process. "hold": acquire, say READY, sleep until killed.
# "race": say WAITING, wait for "go" on stdin, try once, say GOT or BUSY; the winner keeps the lock
# until told "release" on stdin.
CHILD = textwrap.dedent("""
    import sys, time
    from ganlode.orchestrator.errors import UserError
    from ganlode.orchestrator.storage.lock import RunLock
    run, lease, mode = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    lock = RunLock(run, command="ganlode transfer --out " + run + " (" + mode + ")", lease_s=lease)
    if mode == "hold":
        lock.acquire()
        print("READY", flush=True)
        time.sleep(300)
    print("WAITING", flush=True)
    sys.stdin.readline()
    try:
        lock.acquire()
    except UserError as e:
        print("BUSY", e, flush=True)
        sys.exit(0)
    print("GOT", flush=True)
    sys.stdin.readline()
    lock.release()
""")


def _child(run: str, mode: str, lease: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, run, str(lease), mode], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _expect(proc: subprocess.Popen, word: str) -> None:
    line = proc.stdout.readline()
    if not line.startswith(word):
        proc.kill()
        raise AssertionError(f"child said {line!r}, expected {word}; stderr: {proc.stderr.read()[-2000:]}")


@pytest.fixture(params=["local", "s3"])
def where(request, tmp_path):
    """``(kind, run path, lease_s)`` for a fresh run directory."""
    if request.param == "local":
        return "local", str(tmp_path / "runs" / "r1"), 60.0
    bucket = request.getfixturevalue("s3_bucket")
    return "s3", f"{bucket}/runs/r1", S3_LEASE


def _s3_client():
    import boto3

    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])


def _split(run: str) -> tuple[str, str]:
    bucket, _, prefix = run[len("s3://"):].partition("/")
    return bucket, prefix


def _contents(run: str) -> list[str]:
    """Every name the run directory holds (hidden ones included)."""
    if not run.startswith("s3://"):
        return sorted(os.listdir(run)) if os.path.isdir(run) else []
    bucket, prefix = _split(run)
    listing = _s3_client().list_objects_v2(Bucket=bucket, Prefix=prefix + "/")
    return sorted(o["Key"][len(prefix) + 1:] for o in listing.get("Contents", []))


def _record(run: str) -> dict | None:
    """The holder record stored in the lock, or None if there is no lock."""
    if not run.startswith("s3://"):
        try:
            with open(os.path.join(run, LOCK_FILE), "rb") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            return None
    bucket, prefix = _split(run)
    try:
        return json.loads(_s3_client().get_object(Bucket=bucket, Key=f"{prefix}/{LOCK_FILE}")["Body"].read())
    except _s3_client().exceptions.NoSuchKey:
        return None


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


# ------------------------------------------------------------------------------- one holder at a time


def test_second_acquirer_is_refused_in_one_line_and_writes_nothing(where, capsys):
    kind, run, lease = where
    first = RunLock(run, command="ganlode transfer --method finetune --out RUN", lease_s=lease).acquire()
    mine = _record(run)
    assert set(mine) >= {"host", "pid", "since", "command", "token"}
    assert mine["host"] == HOST and mine["pid"] == os.getpid() and re.fullmatch(STAMP, mine["since"])
    assert mine["token"] == first.token and mine["command"] == "ganlode transfer --method finetune --out RUN"
    if kind == "s3":
        assert mine["lease_s"] == lease and re.fullmatch(STAMP, mine["expires"])

    second = RunLock(run, command="ganlode transfer --method bsa --out RUN", lease_s=lease)
    with pytest.raises(UserError) as e:
        second.acquire()
    message = str(e.value)
    assert "\n" not in message
    assert f"pid {os.getpid()}" in message and f"host {HOST}" in message and f"since {mine['since']}" in message
    assert "--method finetune" in message and "--force-unlock" in message
    assert not second.held
    assert _contents(run) == [LOCK_FILE]  # the refused one wrote nothing; renewal only moves "expires"
    def without_expiry(record: dict) -> dict:
        return {k: v for k, v in record.items() if k != "expires"}

    assert without_expiry(_record(run)) == without_expiry(mine)
    assert second.holder()["token"] == first.token
    assert capsys.readouterr().err == ""

    first.release()
    assert _contents(run) == [] and second.holder() is None
    with second:  # free again: the second one gets it now
        assert _record(run)["token"] == second.token
    assert _contents(run) == []


def test_lock_is_released_when_the_with_block_raises(where):
    _, run, lease = where
    with pytest.raises(ValueError), RunLock(run, command="ganlode transfer", lease_s=lease) as held:
        assert held.held and _record(run)["token"] == held.token
        raise ValueError("the run failed")
    assert not held.held and _contents(run) == []
    held.release()  # idempotent


def test_two_processes_race_and_exactly_one_wins(where):
    _, run, lease = where
    racers = [_child(run, "race", lease) for _ in range(2)]
    try:
        for p in racers:
            _expect(p, "WAITING")
        for p in racers:  # as close together as two writes get
            p.stdin.write("go\n")
            p.stdin.flush()
        said = [p.stdout.readline().strip() for p in racers]
        assert sorted(s.split()[0] for s in said) == ["BUSY", "GOT"], said
        winner = racers[[s.split()[0] for s in said].index("GOT")]
        busy = next(s for s in said if s.startswith("BUSY"))
        assert f"pid {winner.pid} on host {HOST}" in busy
        assert _record(run)["pid"] == winner.pid
        winner.stdin.write("release\n")
        winner.stdin.flush()
        assert [p.wait(timeout=20) for p in racers] == [0, 0]
    finally:
        for p in racers:
            p.kill()
    assert _contents(run) == []  # the winner released it


def test_sigkilled_holder_is_taken_over_with_one_notice(where, capsys):
    kind, run, lease = where
    holder = _child(run, "hold", lease)
    try:
        _expect(holder, "READY")
        if kind == "s3":
            time.sleep(lease + 0.5)  # past one lease: a live holder keeps renewing it
        with pytest.raises(UserError, match=f"pid {holder.pid} on host"):
            RunLock(run, command="too early", lease_s=lease).acquire()
        since = _record(run)["since"]
    finally:
        holder.kill()
        holder.wait()
    assert _record(run)["pid"] == holder.pid  # SIGKILL left its lock behind
    capsys.readouterr()

    deadline = time.monotonic() + (0 if kind == "local" else 3 * lease + 3)
    while True:  # locally the flock is free at once; on S3 the lease has to run out first
        try:
            taker = RunLock(run, command="after the kill", lease_s=lease).acquire()
            break
        except UserError:
            assert time.monotonic() < deadline, "the stale lock was never taken over"
            time.sleep(0.25)
    notice = _one_line(capsys.readouterr().err)
    assert notice.startswith(f"took over the lock of {run} left by pid {holder.pid} on {HOST} since {since} (")
    assert "that process is gone" in notice
    assert _record(run)["token"] == taker.token
    taker.release()
    assert _contents(run) == []


# ---------------------------------------------------------------------------------- force, release


def test_force_removes_a_live_lock_and_release_removes_only_its_own(where, capsys):
    kind, run, lease = where
    first = RunLock(run, command="first", lease_s=lease).acquire()
    since = first.record["since"]
    forced = RunLock(run, command="forced", lease_s=lease, force=True).acquire()
    removed = f"removed the lock of {run} held by pid {os.getpid()} on {HOST} since {since} (--force-unlock)"
    assert _record(run)["token"] == forced.token and _contents(run) == [LOCK_FILE]

    if kind == "s3":  # the old holder's renewal notices, in one line (its thread may print before or after)
        deadline = time.monotonic() + 3 * lease
        while not first.lost and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.lost and "lost the lock of" in first.lost
        assert sorted(capsys.readouterr().err.strip().splitlines()) == sorted([removed, first.lost])
        with pytest.raises(UserError, match="lost the lock"):
            first.check()
    else:
        assert _one_line(capsys.readouterr().err) == removed
        assert first.lost is None
        first.check()

    first.release()  # not its lock any more: it must stay
    assert _record(run)["token"] == forced.token
    forced.release()
    forced.release()
    assert _contents(run) == [] and _record(run) is None


def test_release_leaves_a_lock_that_was_replaced_behind_its_back(where):
    kind, run, lease = where
    held = RunLock(run, command="mine", lease_s=lease).acquire()
    other = dict(held.record, token="someone-else", pid=1)
    if kind == "local":  # someone removed the file and wrote their own (e.g. a forced acquirer)
        os.unlink(held.path)
        with open(held.path, "w") as f:
            json.dump(other, f)
    else:
        bucket, prefix = _split(run)
        held._impl._stop.set()  # renewal would notice and stop; keep the test about release alone
        _s3_client().put_object(Bucket=bucket, Key=f"{prefix}/{LOCK_FILE}", Body=json.dumps(other).encode())
    held.release()
    assert _record(run) == other


# ----------------------------------------------------------------------------------- local specifics


def test_local_forked_child_never_removes_its_parents_lock(tmp_path):
    run = str(tmp_path / "run")
    held = RunLock(run, command="parent").acquire()
    pid = os.fork()
    if pid == 0:  # the child inherits the held lock object, as a forked worker would
        code = 1
        try:
            held.release()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert status == 0 and _record(run)["token"] == held.token
    with pytest.raises(UserError):  # and the flock is still the parent's
        RunLock(run, command="other").acquire()
    held.release()
    assert _contents(run) == []


def _write_record(run: str, record: dict) -> None:
    os.makedirs(run, exist_ok=True)
    with open(os.path.join(run, LOCK_FILE), "w") as f:
        json.dump(record, f)


def test_local_record_of_a_dead_pid_is_taken_over(tmp_path, capsys):
    run = str(tmp_path / "run")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _write_record(run, {"host": HOST, "pid": gone.pid, "since": "2026-01-02T03:04:05Z", "command": "old",
                        "token": "t-old"})
    assert RunLock(run, command="x").holder() is None  # flock free, this host: not in force
    with RunLock(run, command="new") as taker:
        assert _record(run)["token"] == taker.token
    assert _one_line(capsys.readouterr().err) == (
        f"took over the lock of {run} left by pid {gone.pid} on {HOST} since 2026-01-02T03:04:05Z "
        "(that process is gone)")


def test_local_empty_lock_file_of_a_holder_killed_before_writing_is_taken_over(tmp_path, capsys):
    run = str(tmp_path / "run")
    os.makedirs(run)
    open(os.path.join(run, LOCK_FILE), "w").close()
    with RunLock(run, command="new") as taker:
        assert _record(run)["token"] == taker.token
    assert capsys.readouterr().err == "" and _contents(run) == []


def test_local_lock_of_another_host_counts_as_held_unless_forced(tmp_path, capsys):
    run = str(tmp_path / "run")
    theirs = {"host": "node-7.cluster.invalid", "pid": 4242, "since": "2026-01-02T03:04:05Z",
              "command": "ganlode transfer", "token": "t-theirs"}
    _write_record(run, theirs)
    with pytest.raises(UserError) as e:
        RunLock(run, command="x").acquire()
    message = str(e.value)
    assert "\n" not in message and "pid 4242 on host node-7.cluster.invalid since 2026-01-02T03:04:05Z" in message
    assert "--force-unlock" in message
    assert _record(run) == theirs and RunLock(run, command="x").holder() == theirs
    assert capsys.readouterr().err == ""

    with RunLock(run, command="x", force=True) as forced:
        assert _record(run)["token"] == forced.token
    assert _one_line(capsys.readouterr().err) == (
        f"removed the lock of {run} left by pid 4242 on node-7.cluster.invalid since 2026-01-02T03:04:05Z "
        "(--force-unlock)")
    assert _contents(run) == []


# -------------------------------------------------------------------------------------- S3 specifics


def test_moto_honours_conditional_writes_and_the_lock_detects_it(s3_bucket, s3_endpoint):
    """What the test server does with IfNoneMatch / IfMatch (the module docstring quotes this)."""
    from botocore.exceptions import ClientError

    c, bucket, key = _s3_client(), s3_bucket[len("s3://"):], "probe/object"

    def status(call, **kw) -> tuple[int, str | None]:
        try:
            r = call(Bucket=bucket, Key=key, **kw)
            return r["ResponseMetadata"]["HTTPStatusCode"], None
        except ClientError as e:
            return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"]

    assert status(c.put_object, Body=b"1", IfNoneMatch="*") == (200, None)
    assert status(c.put_object, Body=b"2", IfNoneMatch="*") == (412, "PreconditionFailed")
    assert status(c.put_object, Body=b"3", IfMatch='"0123"') == (412, "PreconditionFailed")
    assert c.get_object(Bucket=bucket, Key=key)["Body"].read() == b"1"
    etag = c.head_object(Bucket=bucket, Key=key)["ETag"]
    assert status(c.put_object, Body=b"4", IfMatch=etag) == (200, None)
    assert status(c.delete_object, IfMatch=etag) == (412, "PreconditionFailed")  # the ETag changed
    etag = c.head_object(Bucket=bucket, Key=key)["ETag"]
    assert status(c.delete_object, IfMatch=etag) == (204, None)
    assert status(c.put_object, Body=b"6", IfMatch=etag) == (404, "NoSuchKey")

    with RunLock(f"{s3_bucket}/runs/r1", command="x", lease_s=S3_LEASE) as held:
        assert held._impl.conditional and lockmod._CONDITIONAL[(s3_endpoint, bucket)] is True
        assert held.path == f"{s3_bucket}/runs/r1/{LOCK_FILE}"


def test_s3_best_effort_mode_still_keeps_one_holder(s3_bucket, s3_endpoint, monkeypatch, capsys):
    """For servers that ignore conditional headers: check, write, read back and compare."""
    run = f"{s3_bucket}/runs/r1"
    monkeypatch.setitem(lockmod._CONDITIONAL, (s3_endpoint, s3_bucket[len("s3://"):]), False)
    monkeypatch.setattr(lockmod, "SETTLE_S", 0.05)
    first = RunLock(run, command="first", lease_s=S3_LEASE).acquire()
    assert not first._impl.conditional and _record(run)["token"] == first.token
    with pytest.raises(UserError, match=f"pid {os.getpid()} on host {HOST}"):
        RunLock(run, command="second", lease_s=S3_LEASE).acquire()
    time.sleep(S3_LEASE + 0.5)  # renewed without IfMatch: still live
    with pytest.raises(UserError):
        RunLock(run, command="second", lease_s=S3_LEASE).acquire()
    forced = RunLock(run, command="forced", lease_s=S3_LEASE, force=True).acquire()
    deadline = time.monotonic() + 3 * S3_LEASE
    while not first.lost and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.lost
    # two holders in one process, so two notices: the forced removal, and the first holder's
    # renewal thread finding it lost the lock (which may come first; each is one line)
    lines = sorted(capsys.readouterr().err.strip().splitlines())
    assert len(lines) == 2 and lines[0].startswith(f"lost the lock of {run} (now held by pid") \
        and lines[1].startswith(f"removed the lock of {run} held by pid"), lines
    first.release()
    assert _record(run)["token"] == forced.token
    forced.release()
    assert _contents(run) == []


def test_s3_expired_lease_of_a_stopped_renewal_is_taken_over(s3_bucket, capsys):
    run = f"{s3_bucket}/runs/r1"
    stalled = RunLock(run, command="stalled", lease_s=1.0).acquire()
    stalled._impl._stop.set()  # renewal stops, as in a frozen or partitioned holder
    time.sleep(2.5)  # more than a lease by the server's second-resolution clock
    taker = RunLock(run, command="taker", lease_s=S3_LEASE).acquire()
    notice = _one_line(capsys.readouterr().err)
    assert notice.startswith(f"took over the lock of {run} left by pid {os.getpid()} on {HOST} since ")
    assert "lease expired" in notice
    stalled.release()  # not its lock any more
    assert _record(run)["token"] == taker.token
    taker.release()
    assert _contents(run) == []
