"""`ganlode doctor`: one line per check, exit 0 whatever is missing, Ray never started."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from ganlode.orchestrator.cli import doctor
from ganlode.orchestrator.cli.main import main

PREFIXES = ("ganlode ", "torch ", "Ray ", "CUDA", "dataset mnist5k", "dataset animals", "dataset fashion", "emoji font",
            "emoji list", "fonts (glyphs", "Inception weights", "Ray cluster: ")


def _lines(capsys) -> list[str]:
    return capsys.readouterr().out.strip().splitlines()


def test_doctor_prints_every_line_without_a_ray_cluster(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))  # no head recorded there
    assert main(["doctor"]) == 0
    lines = _lines(capsys)
    assert len(lines) == len(PREFIXES), lines
    for line, prefix in zip(lines, PREFIXES):
        assert line.startswith(prefix), (prefix, line)
    assert lines[-1].startswith("Ray cluster: none running")
    assert not list(tmp_path.iterdir())  # nothing started, nothing written


def test_an_unreachable_address_is_a_line_within_the_timeout(capsys, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    assert main(["doctor"]) == 0
    last = _lines(capsys)[-1]
    assert last.startswith(f"Ray cluster: not reachable at 127.0.0.1:{port} (RAY_ADDRESS)")


def test_the_head_recorded_by_ray_start_is_found(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text("10.0.0.7:6379\n")
    address, origin = doctor.ray_address()
    assert address == "10.0.0.7:6379" and "ray_current_cluster" in origin


def test_a_failing_check_is_its_own_line(capsys, monkeypatch):
    def broken():
        raise RuntimeError("boom")

    real = doctor.lines
    monkeypatch.setattr(doctor, "lines", lambda: [(w, broken if w == "CUDA" else c) for w, c in real()])
    monkeypatch.setenv("RAY_ADDRESS", "local")
    assert main(["doctor"]) == 0
    lines = _lines(capsys)
    assert "CUDA: check failed (RuntimeError: boom)" in lines and len(lines) == len(PREFIXES)


@pytest.mark.timeout(120)
def test_doctor_as_a_command(tmp_path):
    env = {**os.environ, "RAY_TMPDIR": str(tmp_path)}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-m", "ganlode.orchestrator.cli.main", "doctor"], capture_output=True,
                          text=True, env=env, timeout=100)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip().splitlines()) == len(PREFIXES) and done.stderr == ""
