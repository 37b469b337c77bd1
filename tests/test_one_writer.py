"""One writer per run: commands that write a run directory hold its lock (``RUN/.ganlode-lock``).

What must hold, with real processes (the ``ganlode`` CLI in subprocesses):
- two transfers into one ``--out`` at once (locally and on S3), two mines, two tunes: exactly one
  runs, every other exits 2 with one line naming the holder (pid, host, since when) and writes
  nothing, and the finished run is the winner's alone (every metrics row carries its method and
  seed; config.json agrees); a ``--resume`` of a run whose writer is alive is refused the same way;
- eval appending to, and report writing into, a run that is being written are refused;
- a transfer killed with SIGKILL leaves a stale lock, which the next ``resume`` takes over (one line
  on stderr) and finishes with the weights of an uninterrupted run;
- four transfers into four ``--out`` at once all succeed, each run consistent in itself;
- ``force_unlock`` removes a live lock with a one-line notice; a run whose (S3) lock was lost
  commits nothing more.

A winner is made to overlap its rivals by a gate: it runs the real command in a process that
stops at one point of the run (the lock held, some of the run written) until the test opens it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from ganlode.orchestrator import storage
from ganlode.orchestrator.artifacts.rundir import RunDir
from ganlode.orchestrator.errors import UserError
from ganlode.orchestrator.storage import LOCK_FILE

pytestmark = [pytest.mark.timeout(150), pytest.mark.usefixtures("torch_one_thread")]

HOST = socket.gethostname()
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
TARGET = "mnist5k:7@12"
FAST = ["--eval-n", "16", "--no-progress", "--batch", "8", "--n-critic", "1"]

# `ganlode ARGV...`, stopped at one point of its run until the file $GATE exists; it touches
# $GATE.reached when it gets there. GATE_AT: transfer:N (after the validation evaluation of step N,
# whose training state is saved), mine (after each evaluation), tune (once OUT/tune.json is written).
GATED = textwrap.dedent("""
    import os, sys, time
    import torch
    torch.set_num_threads(1)
    gate, at = os.environ["GATE"], os.environ["GATE_AT"]

    def wait():
        open(gate + ".reached", "w").close()
        while not os.path.exists(gate):
            time.sleep(0.02)

    if at.startswith("transfer:"):
        from ganlode.orchestrator.pipelines import transfer as T
        step_at, evaluate = int(at.split(":")[1]), T._Loop.evaluate
        def gated(self, step, done, log):
            evaluate(self, step, done, log)
            if step == step_at:
                wait()
        T._Loop.evaluate = gated
    elif at == "mine":
        from ganlode.orchestrator.pipelines import mine as M
        call = M._Evaluator.__call__
        def gated(self, *args, **kwargs):
            values = call(self, *args, **kwargs)
            wait()
            return values
        M._Evaluator.__call__ = gated
    elif at == "tune":
        from ganlode.orchestrator.search import run as R
        new_tuner = R._new_tuner
        def gated(*args, **kwargs):
            tuner = new_tuner(*args, **kwargs)
            wait()
            return tuner
        R._new_tuner = gated
    from ganlode.orchestrator.cli.main import main
    sys.exit(main(sys.argv[1:]))
""")


def _start(argv: list[str], gate=None, at: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if gate is None:
        cmd = [sys.executable, "-m", "ganlode.orchestrator.cli.main", *argv]
    else:
        env.update(GATE=str(gate), GATE_AT=at)
        cmd = [sys.executable, "-c", GATED, *argv]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    """(exit status, stderr) of a process, once it ended."""
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def _reach(proc: subprocess.Popen, gate, timeout: float = 90) -> None:
    """Wait until ``proc`` stands at its gate."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(f"{gate}.reached"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the gated process never reached its gate: {proc.communicate()[1][-3000:]}")
        time.sleep(0.05)


def _lock_exists(run: str) -> bool:
    if not run.startswith("s3://"):
        return os.path.exists(os.path.join(run, LOCK_FILE))
    import boto3

    bucket, _, prefix = run[len("s3://"):].partition("/")
    listing = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).list_objects_v2(
        Bucket=bucket, Prefix=f"{prefix}/{LOCK_FILE}")
    return bool(listing.get("Contents"))


def _refused(rc: int, err: str, run: str, holder: subprocess.Popen, command: str) -> None:
    """Exit 2 with one line naming the holder: pid, host, since when, its command."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1, (rc, err)
    assert re.fullmatch(rf"error: {re.escape(run)} is being written by pid {holder.pid} on host {re.escape(HOST)} "
                        rf"since {STAMP} \(command: ganlode {command} .*\); wait for it to finish, or pass "
                        r"--force-unlock if that process is gone", lines[0]), lines[0]


def _only(run: str, method: str, seed: int) -> list[dict]:
    """Every metrics row of ``run`` and its config.json are the given method's and seed's."""
    rows = RunDir(run).read_metrics().to_pylist()
    assert rows and {(r["method"], r["seed"]) for r in rows} == {(method, seed)}
    config = RunDir(run).read_config()
    assert (config["status"], config["method"], config["seed"]) == ("done", method, seed)
    assert not _lock_exists(run)
    return rows


def _transfer(source: str, out: str, method: str, seed: int, steps: int = 2, eval_every: int = 1) -> list[str]:
    return ["transfer", "--source", source, "--target", TARGET, "--method", method, "--seed", str(seed),
            "--steps", str(steps), "--eval-every", str(eval_every), "--out", out, *FAST]


@pytest.fixture(params=["local", "s3"])
def out(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "run")
    return f"{request.getfixturevalue('s3_bucket')}/runs/run"


# ------------------------------------------------------------------------------ one writer, the rest refused


def test_two_transfers_into_one_out_one_runs_the_other_is_refused(tiny_source, out, tmp_path):
    gate = tmp_path / "gate"
    winner = _start(_transfer(tiny_source, out, "finetune", seed=1), gate, "transfer:0")
    _reach(winner, gate)  # config.json and step 0's rows are written; the run is locked
    assert _lock_exists(out)
    rows_before = RunDir(out).read_metrics().num_rows
    rivals = [_start(_transfer(tiny_source, out, "l2sp", seed=2)), _start(["transfer", "--resume", out, "--no-progress"])]
    for rival in rivals:
        rc, err = _finish(rival)
        _refused(rc, err, out, winner, "transfer")

    # eval would append to the run, report would write into it: refused in one line too
    from ganlode.orchestrator.pipelines.evaluate import evaluate_model
    from ganlode.orchestrator.report.html import build_report

    for call in (lambda: evaluate_model(out, n=16), lambda: build_report(out)):
        with pytest.raises(UserError) as e:
            call()
        assert len(str(e.value).splitlines()) == 1 and f"being written by pid {winner.pid} on host {HOST}" in str(e.value)
    assert RunDir(out).read_metrics().num_rows == rows_before  # nobody else wrote a row

    gate.touch()
    rc, err = _finish(winner)
    assert rc == 0, err
    rows = _only(out, "finetune", 1)
    assert sorted({(r["step"], r["split"]) for r in rows}) == [(0, "val"), (1, "val"), (2, "test"), (2, "val")]
    assert not storage.exists(RunDir(out).file("report.html"))


def test_two_mines_into_one_out_one_runs_the_other_is_refused(tiny_source, out, tmp_path):
    gate = tmp_path / "gate"

    def mine(seed: int, *more: str) -> list[str]:
        return ["mine", "--source", tiny_source, "--source", tiny_source, "--target", TARGET, "--out", out,
                "--mining-steps", "2", "--finetune-steps", "1", "--batch", "8", "--in-process", "--threads", "1",
                "--checkpoint-every", "1", "--eval-n", "16", "--no-progress", "--seed", str(seed), *more]

    winner = _start(mine(1), gate, "mine")
    _reach(winner, gate)
    assert _lock_exists(out)
    rivals = [_start(mine(2)), _start(mine(1, "--resume"))]  # a --resume of a live run is refused as well
    for rival in rivals:
        rc, err = _finish(rival)
        _refused(rc, err, out, winner, "mine")
    gate.touch()
    rc, err = _finish(winner)
    assert rc == 0, err
    _only(out, "mine", 1)


def test_two_tunes_into_one_out_one_runs_the_other_is_refused(tiny_source, out, tmp_path):
    gate = tmp_path / "gate"

    def tune(seed: int) -> list[str]:
        return ["tune", "--source", tiny_source, "--target", TARGET, "--method", "l2sp", "--trials", "1",
                "--concurrent", "1", "--steps", "2", "--eval-every", "1", "--val-n", "16", "--quiet",
                "--seed", str(seed), "--out", out]

    winner = _start(tune(1), gate, "tune")
    _reach(winner, gate)  # OUT/tune.json is written, the Tune experiment not started
    assert _lock_exists(out)
    rivals = [_start(tune(2)), _start(["tune", "--resume", out, "--quiet"])]
    for rival in rivals:
        rc, err = _finish(rival)
        _refused(rc, err, out, winner, "tune")
    gate.touch()
    rc, err = _finish(winner)
    assert rc == 0, err
    assert storage.read_json(storage.join(out, "tune.json"))["seed"] == 1
    assert storage.read_table(storage.join(out, "trials.parquet")).num_rows == 1
    _only(storage.join(out, "best"), "l2sp", 1)
    assert not _lock_exists(out)


# ------------------------------------------------------------------------------------------ stale locks


def test_a_killed_transfer_leaves_a_stale_lock_that_resume_takes_over(tiny_source, tmp_path, capsys):
    from ganlode.orchestrator.pipelines.transfer import run_transfer

    run, gate = str(tmp_path / "killed"), tmp_path / "gate"
    victim = _start(_transfer(tiny_source, run, "finetune", seed=3, steps=6, eval_every=2), gate, "transfer:4")
    _reach(victim, gate)  # step 4 evaluated, its training state saved
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL
    assert _lock_exists(run)  # the file stays; its flock died with the process
    capsys.readouterr()

    from ganlode.orchestrator.cli.main import main

    assert main(["transfer", "--resume", run, "--no-progress"]) == 0  # the next command on the run
    captured = capsys.readouterr()
    assert captured.out.startswith(f"wrote {run} ")
    fid = [r["step"] for r in RunDir(run).read_metrics().to_pylist() if r["metric"] == "fid" and r["split"] == "val"]
    assert fid == [0, 2, 4, 6]  # the evaluations before the kill are kept, none is doubled
    err = [line for line in captured.err.splitlines() if line.strip()]
    assert len(err) == 1 and re.fullmatch(
        rf"took over the lock of {re.escape(run)} left by pid {victim.pid} on {re.escape(HOST)} since {STAMP} "
        r"\(that process is gone(; its pid is in use by another process)?\)", err[0]), err
    _only(run, "finetune", 3)

    reference = str(tmp_path / "uninterrupted")
    run_transfer(tiny_source, TARGET, "finetune", {"batch": 8, "n_critic": 1}, steps=6, out=reference, seed=3,
                 eval_every=2, eval_n=16, show_progress=False)
    weights = os.path.join("checkpoints", "final", "model.safetensors")
    with open(os.path.join(run, weights), "rb") as a, open(os.path.join(reference, weights), "rb") as b:
        assert a.read() == b.read()


# ---------------------------------------------------------------------------------- different runs at once


def test_four_transfers_into_four_outs_at_once_all_succeed(tiny_source, tmp_path):
    jobs = [("finetune", 1), ("l2sp", 2), ("distill", 3), ("freezed", 4)]
    procs = [_start(_transfer(tiny_source, str(tmp_path / f"run{i}"), method, seed, steps=1, eval_every=0))
             for i, (method, seed) in enumerate(jobs)]
    for proc in procs:
        rc, err = _finish(proc)
        assert rc == 0, err
    for i, (method, seed) in enumerate(jobs):
        _only(str(tmp_path / f"run{i}"), method, seed)


def test_force_unlock_removes_a_live_lock_with_a_notice(tiny_source, tmp_path, capsys):
    """``force_unlock`` (the CLI's ``--force-unlock``) through the Python API; without it: refused."""
    from ganlode.orchestrator import api

    out = str(tmp_path / "forced")
    held = storage.RunLock(out, command="ganlode transfer (a holder that hung)").acquire()
    settings = dict(method="finetune", out=out, steps=1, eval_every=0, eval_n=16, seed=5, batch=8, n_critic=1)
    with pytest.raises(UserError, match=f"being written by pid {os.getpid()} on host"):
        api.transfer(tiny_source, TARGET, **settings)
    assert os.listdir(out) == [LOCK_FILE]  # the refused run wrote nothing
    capsys.readouterr()
    api.transfer(tiny_source, TARGET, force_unlock=True, **settings)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith(f"removed the lock of {out} held by pid {os.getpid()} on {HOST} since ")
    held.release()  # not its file any more: it leaves the run alone
    _only(out, "finetune", 5)


def test_a_run_that_lost_its_lock_commits_nothing_more(s3_bucket):
    """On S3 a lock can be lost (taken over after its lease lapsed): the run's next commit raises."""
    from ganlode.orchestrator.pipelines.ownership import LockedRunDir

    out = f"{s3_bucket}/runs/lost"
    row = {"method": "finetune", "step": 0, "metric": "fid", "value": 1.0, "split": "val"}
    with storage.RunLock(out, command="ganlode transfer") as lock:
        run = LockedRunDir(out, lock)
        run.append_metrics([row])
        lock._impl.lost = "lost the lock of RUN (now held by pid 1 on elsewhere since then)"  # as renewal sets it
        for commit in (lambda: run.append_metrics([row]), lambda: run.write_sample("final", b"png"),
                       lambda: run.write_config({"run_kind": "transfer"})):
            with pytest.raises(UserError, match="lost the lock of RUN"):
                commit()
    assert RunDir(out).read_metrics().num_rows == 1 and not RunDir(out).is_run()
