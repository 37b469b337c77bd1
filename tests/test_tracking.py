"""``--report-to``: the run's settings and scores reach MLflow and TensorBoard, and agree with the run.

MLflow is read back with MLflow's own client from a local file store; TensorBoard's event files
are read back record by record (TFRecord framing, tensorboardX's Event protobuf), so what a
TensorBoard shows is what the run directory holds.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ganlode.orchestrator.cli.main import main

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TARGET = "mnist5k:7@12"
FAST = ["--steps", "2", "--eval-every", "1", "--eval-n", "16", "--no-progress"]


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch) -> str:
    uri = f"file:{tmp_path / 'mlruns'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    return uri


def _runs(uri: str, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment}"
    return client, client.search_runs([found.experiment_id])


def _val_rows(run: Path) -> dict[tuple[int, str], float]:
    rows = pq.read_table(str(run / "metrics.parquet")).to_pylist()
    return {(r["step"], r["metric"]): r["value"] for r in rows if r["split"] == "val"}


def _events(folder: Path) -> dict[str, dict[int, float]]:
    """Every scalar of the event files under ``folder``: {tag: {step: value}}."""
    from tensorboardX.proto import event_pb2

    scalars: dict[str, dict[int, float]] = {}
    files = sorted(folder.rglob("events.out.tfevents.*"))
    assert files, f"no event files in {folder}"
    for path in files:
        data = path.read_bytes()
        at = 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            record = data[at + 12:at + 12 + length]  # length, its CRC, the record, its CRC
            at += 12 + length + 4
            event = event_pb2.Event.FromString(record)
            for v in event.summary.value:
                if v.HasField("simple_value"):
                    scalars.setdefault(v.tag, {})[event.step] = v.simple_value
    return scalars


def test_transfer_report_to_mlflow_logs_settings_and_every_score(tiny_source, tmp_path, mlflow_store):
    run = tmp_path / "run"
    assert main(["transfer", "--source", tiny_source, "--target", TARGET, "--method", "finetune",
                 "--out", str(run), "--report-to", "mlflow", *FAST]) == 0
    client, runs = _runs(mlflow_store, "ganlode-transfer")
    (tracked,) = runs
    assert tracked.info.status == "FINISHED"
    assert tracked.data.params["method"] == "finetune" and tracked.data.params["target"] == TARGET
    assert tracked.data.tags["ganlode.run"] == str(run)
    val = _val_rows(run)
    history = client.get_metric_history(tracked.info.run_id, "val/fid")
    assert {m.step: m.value for m in history} == pytest.approx({s: v for (s, k), v in val.items() if k == "fid"})
    import json

    config = json.loads((run / "config.json").read_text())
    assert tracked.data.metrics["test/fid"] == pytest.approx(config["metrics"]["fid"])
    assert tracked.data.metrics["best/fid"] == pytest.approx(config["best"]["test"]["fid"])


def test_transfer_report_to_tensorboard_writes_event_files_in_the_run(tiny_source, tmp_path):
    run = tmp_path / "run"
    assert main(["transfer", "--source", tiny_source, "--target", TARGET, "--method", "finetune",
                 "--out", str(run), "--report-to", "tensorboard", *FAST]) == 0
    scalars = _events(run / "tensorboard")
    val = _val_rows(run)
    assert scalars["val/fid"] == pytest.approx({s: v for (s, k), v in val.items() if k == "fid"}, rel=1e-6)
    assert set(scalars["val/kmmd"]) == {0, 1, 2} and set(scalars["test/fid"]) == {2}


def test_pretrain_report_to_tensorboard_ships_events_inside_the_checkpoint(tmp_path):
    out = tmp_path / "src"
    assert main(["pretrain", "--data", "mnist5k:0-1@20", "--out", str(out), "--steps", "3", "--batch", "8",
                 "--g-width", "8", "--latent-dim", "8", "--no-progress", "--report-to", "tensorboard"]) == 0
    scalars = _events(out / "tensorboard")
    assert set(scalars["train/g_loss"]) == {3} and set(scalars["test/fid"]) == {3}
    import json

    assert scalars["test/fid"][3] == pytest.approx(json.loads((out / "config.json").read_text())["metrics"]["fid"],
                                                   rel=1e-6)
    assert main(["sample", str(out), "--n", "4", "--out", str(tmp_path / "s.png")]) == 0  # still a checkpoint


def test_bad_input_opens_no_tracked_run(tmp_path, mlflow_store, one_line_error):
    """A run refused before it starts leaves neither an MLflow run nor a tensorboard folder."""
    missing = str(tmp_path / "no-such-source")
    one_line_error(["transfer", "--source", missing, "--target", TARGET, "--method", "finetune",
                    "--out", str(tmp_path / "run"), "--report-to", "mlflow", *FAST], "no-such-source")
    assert not (tmp_path / "mlruns").exists() or not _runs(mlflow_store, "ganlode-transfer")[1]
    assert not (tmp_path / "run").exists()


def test_a_tracker_without_its_package_is_one_line(monkeypatch):
    import builtins

    from ganlode.orchestrator import tracking
    from ganlode.orchestrator.errors import UserError

    real_import = builtins.__import__

    def no_mlflow(name, *args, **kwargs):
        if name.split(".")[0] == "mlflow":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    with pytest.raises(UserError, match=r"--report-to mlflow needs the mlflow-skinny package: pip install"):
        tracking.check("mlflow")


def test_params_flatten_and_only_finite_numbers_are_metrics():
    from ganlode.orchestrator import tracking

    assert tracking.flatten({"a": {"b": 1, "c": None}, "d": [1, 2], "e": "x" * 600}) == {
        "a.b": "1", "d": "[1, 2]", "e": "x" * tracking.PARAM_CHARS}
    assert tracking.scalars({"fid": 3.0, "n": 16, "step": 2, "mv": float("nan"), "ok": True, "k": "s"}, "val") == {
        "val/fid": 3.0}


def test_mine_report_to_mlflow_logs_shares_and_scores(provenanced_source, tmp_path, mlflow_store):
    sources = [provenanced_source(tmp_path / name, spec, i) for i, (name, spec) in
               enumerate([("digits", "mnist5k:0-4"), ("animals", "animals:5-9")])]
    run = tmp_path / "mined"
    assert main(["mine", "--source", sources[0], "--source", sources[1], "--target", "mnist5k:3@12+animals:zebra@12",
                 "--mining-steps", "3", "--finetune-steps", "1", "--batch", "8", "--out", str(run), "--threads", "1",
                 "--no-progress", "--eval-n", "60", "--in-process", "--report-to", "mlflow"]) == 0
    _, (tracked,) = _runs(mlflow_store, "ganlode-mine")
    assert tracked.info.status == "FINISHED" and tracked.data.params["selector"]
    import json

    config = json.loads((run / "config.json").read_text())
    assert tracked.data.metrics["test/fid"] == pytest.approx(config["metrics"]["fid"])
    shares = [tracked.data.metrics[f"mine/share_{i}"] for i in range(2)]
    assert sum(shares) == pytest.approx(1.0) and all(0 <= p <= 1 for p in shares)


def test_tune_report_to_mlflow_tracks_one_run_per_trial(ray_cluster, tiny_source, tmp_path, mlflow_store):
    out = tmp_path / "search"
    assert main(["tune", "--source", tiny_source, "--target", TARGET, "--method", "l2sp", "--trials", "2",
                 "--steps", "2", "--val-n", "16", "--out", str(out), "--quiet", "--report-to", "mlflow"]) == 0
    _, runs = _runs(mlflow_store, "ganlode-tune")
    trials = pq.read_table(str(out / "trials.parquet")).to_pylist()
    assert len(runs) == len(trials) == 2
    for tracked in runs:
        assert "l2sp_weight" in tracked.data.params  # the trial's searched settings
        assert "fid" in tracked.data.metrics and "kmmd" in tracked.data.metrics
