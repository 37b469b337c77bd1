"""Storage on a real S3 endpoint (moto over HTTP on loopback; real s3fs, botocore and pyarrow).

What must hold: a directory published with ``atomic_dir`` reads back whole (also through
pyarrow); a writer killed half-way leaves the previous complete result readable; every bad
input (unreachable endpoint, missing bucket, missing credentials) is one ``UserError`` line,
within seconds, that names the fix and carries no credentials.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ganlode.orchestrator import storage
from ganlode.orchestrator.errors import UserError

pytestmark = pytest.mark.timeout(90)

SECRETS = ("testing-key-id", "testing-secret-key")


def _table(n: int, first_step: int = 0) -> pa.Table:
    return pa.table({"step": list(range(first_step, first_step + n)), "fid": [100.0 / (i + 1) for i in range(n)]})


def _publish(url: str, steps: int, extra: dict[str, bytes] | None = None) -> None:
    with storage.atomic_dir(url) as stage:
        pq.write_table(_table(steps), stage / "metrics.parquet")
        (stage / "config.json").write_text(json.dumps({"steps": steps}))
        for name, data in (extra or {}).items():
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            (stage / name).write_bytes(data)


def _read_table(url: str) -> pa.Table:
    fs, path = storage.pyarrow_filesystem(url)
    return pq.read_table(path, filesystem=fs)


def test_atomic_dir_round_trip_reads_back_with_pyarrow(s3_bucket):
    ckpt = f"{s3_bucket}/runs/r1/checkpoints/latest"
    _publish(ckpt, 5, {"samples/grid.png": b"\x89PNG fake"})

    assert _read_table(storage.join(ckpt, "metrics.parquet")).equals(_table(5))
    assert storage.read_json(storage.join(ckpt, "config.json")) == {"steps": 5}
    assert storage.read_bytes(storage.join(ckpt, "samples/grid.png")) == b"\x89PNG fake"
    assert storage.listdir(ckpt) == ["config.json", "metrics.parquet", "samples"]
    assert storage.listdir(f"{s3_bucket}/runs/r1/checkpoints") == ["latest"]
    assert storage.exists(ckpt) and not storage.exists(storage.join(ckpt, "absent.json"))

    # A second publish replaces the whole directory: the old sample grid is gone.
    _publish(ckpt, 8)
    assert storage.read_json(storage.join(ckpt, "config.json")) == {"steps": 8}
    assert _read_table(storage.join(ckpt, "metrics.parquet")).equals(_table(8))
    assert storage.listdir(ckpt) == ["config.json", "metrics.parquet"]
    physical = storage.resolve(storage.join(ckpt, "metrics.parquet"))
    assert storage.VERSIONS_DIR in physical and storage.resolve(physical) == physical

    # A single file written next to it is one PUT: readable by pyarrow as is.
    storage.write_bytes_atomic(f"{s3_bucket}/runs/r1/config.json", b'{"method": "finetune"}')
    assert storage.read_json(f"{s3_bucket}/runs/r1/config.json") == {"method": "finetune"}
    assert storage.listdir(f"{s3_bucket}/runs/r1") == ["checkpoints", "config.json"]


def test_load_target_reads_a_parquet_table_from_s3(s3_bucket):
    data = pytest.importorskip("ganlode.orchestrator.data")
    target = data.load_target("digits8:1@5")
    url = f"{s3_bucket}/targets/t.parquet"
    data.write_parquet(target, url)

    assert _read_table(url).num_rows == 5
    back = data.load_target(url)
    assert len(back) == 5
    assert (data.to_uint8(back.images) == data.to_uint8(target.images)).all()


def _user_error(fn, *must_mention: str, within_s: float) -> str:
    start = time.monotonic()
    with pytest.raises(UserError) as info:
        fn()
    elapsed = time.monotonic() - start
    message = str(info.value)
    assert elapsed < within_s, f"took {elapsed:.1f}s: {message}"
    assert "\n" not in message
    assert not any(secret in message for secret in SECRETS), message
    for word in must_mention:
        assert word in message, message
    return message


def test_unreachable_endpoint_is_a_user_error_within_seconds(s3_bucket):
    with socket.socket() as s:  # a loopback port that nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    storage.configure(closed)
    try:
        _user_error(lambda: storage.read_bytes(f"{s3_bucket}/a.json"), "cannot reach", closed, within_s=8)
        _user_error(lambda: storage.check_writable(f"{s3_bucket}/run"), "cannot reach", within_s=8)
    finally:
        storage.configure(None)


def test_missing_bucket_is_a_user_error(s3_endpoint):
    url = "s3://no-such-bucket-ganlode/run"
    _user_error(lambda: storage.check_writable(url), "'no-such-bucket-ganlode' does not exist", within_s=5)
    _user_error(lambda: storage.check_readable(url), "does not exist", within_s=5)
    _user_error(lambda: storage.read_bytes(f"{url}/config.json"), "does not exist", within_s=5)
    _user_error(lambda: _publish(url, 1), "'no-such-bucket-ganlode' does not exist", within_s=5)
    assert not storage.exists(url)


def test_missing_credentials_is_a_user_error(s3_bucket, monkeypatch):
    storage.write_bytes_atomic(f"{s3_bucket}/a.json", b"{}")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    storage.configure(None)  # drop the connection that holds the old credentials
    try:
        _user_error(lambda: storage.read_bytes(f"{s3_bucket}/a.json"), "credentials", "AWS_PROFILE", within_s=5)
        _user_error(lambda: storage.check_writable(f"{s3_bucket}/run"), "credentials", within_s=5)
    finally:
        monkeypatch.undo()
        storage.configure(None)
    assert storage.read_json(f"{s3_bucket}/a.json") == {}


def test_missing_file_is_a_user_error(s3_bucket):
    _user_error(lambda: storage.read_bytes(f"{s3_bucket}/nothing/here.json"), "does not exist", within_s=5)
    _user_error(lambda: storage.check_readable(f"{s3_bucket}/nothing"), "does not exist", within_s=5)
    assert storage.listdir(f"{s3_bucket}/nothing") == []


class CommitHoldingProxy:
    """A TCP relay to the S3 endpoint that never forwards the pointer PUT (the commit).

    The writer behind it uploads its files normally but can never publish, so the test can
    kill it at a moment of its choosing without racing the commit.
    """

    COMMIT = re.compile(rb"PUT /[^ ]*/" + re.escape(storage.POINTER_NAME.encode()) + rb"[ ?]")

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.commit_held = threading.Event()
        self.sockets: list[socket.socket] = [self.server]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, outbound: bool) -> None:
        tail = b""
        try:
            while data := src.recv(65536):
                if outbound:
                    window = tail + data
                    hit = next((m for m in self.COMMIT.finditer(window) if m.end() > len(tail)), None)
                    if hit:
                        dst.sendall(window[len(tail):max(hit.start(), len(tail))])
                        self.commit_held.set()
                        return  # hold the connection: the commit never reaches the server
                    tail = window[-512:]
                dst.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        for s in self.sockets:
            try:
                s.close()
            except OSError:
                pass


WRITER = textwrap.dedent(
    """
    import os, sys
    from ganlode.orchestrator import storage

    with storage.atomic_dir(sys.argv[1]) as stage:
        for i in range(40):
            (stage / f"part-{i:03d}.bin").write_bytes(os.urandom(64 * 1024))
        (stage / "config.json").write_text('{"steps": 999}')
    print("published", flush=True)
    """
)


def test_writer_killed_mid_upload_leaves_previous_result_intact(s3_bucket, s3_endpoint, tmp_path):
    import boto3

    url = f"{s3_bucket}/runs/killed/checkpoints/latest"
    _publish(url, 5)
    bucket, key = url[len("s3://"):].split("/", 1)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    old_version = json.loads(client.get_object(Bucket=bucket, Key=f"{key}/{storage.POINTER_NAME}")["Body"].read())["version"]

    host, port = s3_endpoint[len("http://"):].split(":")
    proxy = CommitHoldingProxy((host, int(port)))
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = dict(os.environ, AWS_ENDPOINT_URL=f"http://127.0.0.1:{proxy.port}")
    writer = subprocess.Popen([sys.executable, str(script), url], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        new_objects: list[str] = []
        deadline = time.monotonic() + 60
        while not new_objects:  # kill right after the first new upload lands
            assert time.monotonic() < deadline, "the writer never uploaded anything"
            assert writer.poll() is None, writer.communicate()
            listed = client.list_objects_v2(Bucket=bucket, Prefix=f"{key}/{storage.VERSIONS_DIR}/").get("Contents", [])
            new_objects = [o["Key"] for o in listed if f"/{old_version}/" not in o["Key"]]
            time.sleep(0.02)
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        proxy.close()
    assert writer.returncode == -signal.SIGKILL

    # The previous complete result is what every reader still sees.
    assert storage.read_json(storage.join(url, "config.json")) == {"steps": 5}
    assert _read_table(storage.join(url, "metrics.parquet")).equals(_table(5))
    assert storage.listdir(url) == ["config.json", "metrics.parquet"]

    # The next successful publish wins and sweeps the killed writer's partial version away.
    _publish(url, 7)
    assert storage.read_json(storage.join(url, "config.json")) == {"steps": 7}
    listed = client.list_objects_v2(Bucket=bucket, Prefix=f"{key}/{storage.VERSIONS_DIR}/").get("Contents", [])
    assert not any(k in o["Key"] for o in listed for k in new_objects)
