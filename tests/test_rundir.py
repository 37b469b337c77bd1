"""Run directories: metrics appended as part files (local and S3), and the typed run/model records.

What must hold: every evaluation adds one part file and rewrites none; ``pyarrow.parquet`` and
``pyarrow.dataset`` read the folder whole, in the order of the appends, on local disk and on
S3; a single-file table from an older version becomes the first part; dropping rows touches only
the parts that hold them. ``config.json`` records say what they are (``run_kind`` /
``model_kind``), the old ``kind`` key is still read, and ``ganlode eval`` tells a run from a
checkpoint by the record, not by which files lie beside it.
"""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import torch

from ganlode.methods.nets import GANConfig, build_gan
from ganlode.orchestrator import storage
from ganlode.orchestrator.artifacts import checkpoint
from ganlode.orchestrator.artifacts.loaders import load_model, locate
from ganlode.orchestrator.artifacts.records import ModelRecord, RunRecord, record_type
from ganlode.orchestrator.artifacts.rundir import METRICS_FILE, METRICS_SCHEMA, RunDir, metric_rows
from ganlode.orchestrator.artifacts.zoo import zoo_names
from ganlode.orchestrator.cli.main import main

ARCH = GANConfig(latent_dim=8, g_width=8, d_width=8)


def _evaluations(run: RunDir, steps) -> None:
    for step in steps:
        run.append_metrics(metric_rows("finetune", step, {"fid": 100.0 - step, "kmmd": 0.1}, target="mnist5k:7@12",
                                            split="val"))


@pytest.fixture(params=["local", "s3"])
def run(request, tmp_path):
    if request.param == "local":
        return RunDir(str(tmp_path / "run"))
    return RunDir(f"{request.getfixturevalue('s3_bucket')}/runs/r")


def _read_whole(path: str) -> pa.Table:
    fs, p = storage.pyarrow_filesystem(path)
    return pq.read_table(p, filesystem=fs)


def test_each_evaluation_appends_one_part_and_rewrites_none(run):
    _evaluations(run, [0, 10])
    metrics = run.file(METRICS_FILE)
    first = storage.part_names(metrics)
    first_bytes = [storage.read_bytes(storage.join(metrics, n)) for n in first]
    _evaluations(run, [20])
    names = storage.part_names(metrics)
    assert len(first) == 2 and names[:2] == first and len(names) == 3 and names == sorted(names)
    assert [storage.read_bytes(storage.join(metrics, n)) for n in first] == first_bytes  # never rewritten

    whole = _read_whole(metrics)
    assert whole.num_rows == 6 and whole.column("step").to_pylist() == [0, 0, 10, 10, 20, 20]  # append order
    fs, p = storage.pyarrow_filesystem(metrics)
    assert pads.dataset(p, filesystem=fs, format="parquet").to_table().num_rows == 6
    assert run.read_metrics().equals(whole.select(METRICS_SCHEMA.names).cast(METRICS_SCHEMA))


def test_dropping_rows_touches_only_their_parts(run):
    _evaluations(run, [0, 10, 20])
    run.append_metrics(metric_rows("mine", 30, {"fid": 1.0}, split="test"))
    metrics = run.file(METRICS_FILE)
    before = {n: storage.read_bytes(storage.join(metrics, n)) for n in storage.part_names(metrics)}
    run.drop_metrics("finetune", after_step=10)
    after = {n: storage.read_bytes(storage.join(metrics, n)) for n in storage.part_names(metrics)}
    assert len(after) == 3 and all(before[n] == after[n] for n in after)  # the step-20 part went, no other changed
    assert [(r["method"], r["step"]) for r in run.read_metrics().to_pylist()] == [
        ("finetune", 0), ("finetune", 0), ("finetune", 10), ("finetune", 10), ("mine", 30)]
    run.drop_metrics()
    assert run.read_metrics().num_rows == 0


def test_a_single_file_table_becomes_the_first_part(tmp_path):
    run = RunDir(str(tmp_path / "old"))
    old = pa.Table.from_pylist([{**r, "seed": 0, "features": "classifier", "n": 5, "target": "t", "time": "x"}
                                for r in metric_rows("scratch", 0, {"fid": 7.0}, split="test")], schema=METRICS_SCHEMA)
    os.makedirs(run.path)
    pq.write_table(old, run.file(METRICS_FILE))  # as versions before the part-file layout wrote it
    assert run.read_metrics().to_pylist() == old.to_pylist()
    _evaluations(run, [1])
    assert os.path.isdir(run.file(METRICS_FILE)) and len(storage.part_names(run.file(METRICS_FILE))) == 2
    assert [r["step"] for r in pq.read_table(run.file(METRICS_FILE)).to_pylist()] == [0, 1, 1]


def test_records_read_the_old_kind_key_and_write_the_new_ones(tmp_path):
    for name in zoo_names():  # the shipped zoo still says "kind"
        ckpt = checkpoint.load_checkpoint(f"zoo:{name}", with_critic=False)
        assert ckpt.record.model_kind == "gan" and "kind" not in ckpt.config
    legacy = RunRecord.from_dict({"kind": "transfer", "method": "glo", "steps": 3})
    assert (legacy.run_kind, legacy.method, legacy.extra) == ("transfer", "glo", {"steps": 3})
    run = RunDir(str(tmp_path / "run"))
    run.write_config({"kind": "mine", "target": "mnist5k:7"})
    written = json.loads(open(run.file("config.json")).read())
    assert written["run_kind"] == "mine" and "kind" not in written and written["format"] == RunRecord.FORMAT
    torch.manual_seed(0)
    g, d = build_gan(ARCH)
    checkpoint.save_checkpoint(str(tmp_path / "ckpt"), {"kind": "gan", "arch": ARCH.to_dict()}, g, d)
    written = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert written["model_kind"] == "gan" and "kind" not in written and written["format"] == ModelRecord.FORMAT
    assert record_type(written) is ModelRecord and record_type({"kind": "demo"}) is RunRecord
    assert record_type({"arch": {}}) is ModelRecord and record_type({"steps": 1}) is None


def test_eval_tells_a_run_from_a_checkpoint_by_its_record(tmp_path, capsys):
    """A run directory that happens to hold weights at its top is still a run (the old rule said checkpoint)."""
    torch.manual_seed(0)
    g, d = build_gan(ARCH)
    run = RunDir(str(tmp_path / "run"))
    checkpoint.save_checkpoint(run.checkpoint_path(), {"model_kind": "gan", "arch": ARCH.to_dict()}, g, d)
    run.write_config(RunRecord(run_kind="transfer", status="done", method="finetune", target="mnist5k:7@12",
                               extra={"steps": 2}))
    with open(run.file("model.safetensors"), "wb") as f:  # a stray copy of the weights beside config.json
        f.write(open(os.path.join(run.checkpoint_path(), "model.safetensors"), "rb").read())
    where = locate(run.path)
    assert where.run is not None and where.checkpoint == run.checkpoint_path()
    assert main(["eval", run.path, "--n", "16"]) == 0
    assert "appended to" in capsys.readouterr().out
    assert [(r["method"], r["step"], r["n"]) for r in run.read_metrics().to_pylist() if r["metric"] == "fid"] == [
        ("finetune", 2, 16)]
    # the checkpoint itself is scored without writing anything
    assert main(["eval", run.checkpoint_path(), "--target", "mnist5k:7@12", "--n", "16"]) == 0
    assert "appended to" not in capsys.readouterr().out
    assert load_model(run.path).path == run.checkpoint_path()
