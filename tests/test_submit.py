"""``ganlode submit`` against a real local Ray head with token auth.

The head runs in its own temporary directory, on its own ports and in its own process group,
and only that group (plus any process naming its directory) is stopped at the end: the
in-process Ray cluster other tests share is never touched, and ``ray stop`` is never run.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from ganlode.orchestrator.cli.main import main

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
PORT_FLAGS = ("--port", "--dashboard-port", "--ray-client-server-port", "--dashboard-agent-listen-port",
              "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port",
              "--node-manager-port", "--object-manager-port")


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _pids_naming(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _stop_head(pgid: int, temp_dir: str) -> None:
    for sig, grace_s in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):  # gcs and raylet ignore SIGTERM
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
    for pid in _pids_naming(temp_dir):  # anything of this head that left its group
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(temp_dir, ignore_errors=True)


def _clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment minus every RAY_* setting (the test session sets RAY_AUTH_MODE=disabled)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", **extra)
    return env


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A `ray start --head` cluster with token auth; yields its job-server address and token."""
    token = secrets.token_hex(16)
    temp_dir = tempfile.mkdtemp(prefix="rh-", dir="/tmp")  # short: Ray's socket paths are limited
    ports = dict(zip(PORT_FLAGS, _free_ports(len(PORT_FLAGS))))
    home = tmp_path_factory.mktemp("head-home")
    env = _clean_env(home, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    cmd = [str(VENV_BIN / "ray"), "start", "--head", "--num-cpus=1", "--num-gpus=0", "--include-dashboard=true",
           "--dashboard-host=127.0.0.1", "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}",
           "--disable-usage-stats", *(f"{flag}={port}" for flag, port in ports.items())]
    with open(os.path.join(temp_dir, "start.log"), "w") as log:
        starter = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if starter.wait(timeout=120) != 0:
            pytest.fail("ray start failed: " + Path(temp_dir, "start.log").read_text()[-3000:])
        yield SimpleNamespace(address=f"http://127.0.0.1:{ports['--dashboard-port']}", token=token)
    finally:
        if starter.poll() is None:
            starter.kill()
        _stop_head(starter.pid, temp_dir)


def _submit(args: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "ganlode"), "submit", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_submit_runs_a_ganlode_command_on_the_cluster(ray_head, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("shipped with the job\n")
    grid = tmp_path / "grid.png"  # the cluster is local, so the job can write here
    result = _submit(["--address", ray_head.address, "--working-dir", str(work),
                      "--runtime-env", str(ROOT / "deploy" / "runtime_env.yaml"),
                      "--", "data", "show", "digits8:1@5", "--out", str(grid)],
                     _clean_env(tmp_path, RAY_AUTH_TOKEN=ray_head.token))
    assert result.returncode == 0, result.stderr[-3000:]
    job_id = result.stdout.splitlines()[0]
    assert job_id.startswith("raysubmit_")
    assert "wrote a grid of 5 images" in result.stdout  # the job's own output, followed live
    assert f"job {job_id} SUCCEEDED" in result.stderr
    assert grid.stat().st_size > 0
    assert ray_head.token not in result.stdout + result.stderr


def test_a_failing_job_exits_1_and_no_wait_returns_at_once(ray_head, tmp_path):
    env = _clean_env(tmp_path, RAY_AUTH_TOKEN=ray_head.token)
    failed = _submit(["--address", ray_head.address, "--", "no-such-command"], env)
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert "invalid choice" in failed.stdout  # argparse's complaint, from the cluster
    assert "FAILED" in failed.stderr.splitlines()[-1]

    quick = _submit(["--address", ray_head.address, "--no-wait", "--", "--help"], env)
    assert quick.returncode == 0, quick.stderr[-3000:]
    assert quick.stdout.strip().startswith("raysubmit_") and len(quick.stdout.splitlines()) == 1


def test_entrypoint_resources_and_submission_id_reach_the_job(ray_head, tmp_path):
    """The job carries the id asked for, and its entrypoint the CPUs asked for: 1 of the head's 1 runs,
    2 wait as pending demand. A second job of one id is exit 2, one line."""
    from ray.job_submission import JobSubmissionClient

    env = _clean_env(tmp_path, RAY_AUTH_TOKEN=ray_head.token)
    job_id = f"ganlode-{secrets.token_hex(4)}"
    args = ["--address", ray_head.address, "--entrypoint-num-cpus", "1", "--submission-id", job_id, "--", "--help"]
    first = _submit(args, env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.splitlines()[0] == job_id
    assert f"job {job_id} SUCCEEDED" in first.stderr
    again = _submit(args, env)
    assert again.returncode == 2
    assert again.stderr.count("\n") == 1 and f"already has a job {job_id}" in again.stderr

    client = JobSubmissionClient(ray_head.address, headers={"Authorization": f"Bearer {ray_head.token}"})
    big = _submit(["--address", ray_head.address, "--entrypoint-num-cpus", "2", "--no-wait", "--", "--help"], env)
    assert big.returncode == 0, big.stderr[-3000:]
    big_id = big.stdout.strip()
    try:
        time.sleep(5)  # `ganlode --help` takes about a second once placed
        assert str(client.get_job_status(big_id)) in ("PENDING", "JobStatus.PENDING")
    finally:
        client.stop_job(big_id)


def test_a_missing_or_wrong_token_is_one_line_and_exit_2(ray_head, tmp_path):
    missing = _submit(["--address", ray_head.address, "--", "--help"], _clean_env(tmp_path))
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "requires a token" in missing.stderr

    wrong = _submit(["--address", ray_head.address, "--", "--help"],
                    _clean_env(tmp_path, RAY_AUTH_TOKEN="0" * 32))
    assert wrong.returncode == 2
    assert wrong.stderr.count("\n") == 1 and "rejected the token" in wrong.stderr
    assert ray_head.token not in missing.stderr + wrong.stderr


def test_an_address_without_a_head_is_exit_2_within_seconds(capsys):
    (closed,) = _free_ports(1)
    start = time.monotonic()
    code = main(["submit", "--address", f"http://127.0.0.1:{closed}", "--", "--help"])
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: no Ray head answers at")
    assert elapsed < 10
