"""Experiment tracking (``--report-to``): a run's settings and scores, sent where people watch runs.

- ``none`` (the default): the run directory only (``metrics.parquet``, ``config.json``).
- ``tensorboard``: event files (tensorboardX) in ``RUN/tensorboard/``. A local run writes them
  as it goes, so ``tensorboard --logdir RUN`` follows it live; a run on S3 stages them locally
  and copies them into the run when it ends. A pretrained checkpoint carries them inside its
  directory (it is published in one step at the end).
- ``mlflow``: one MLflow run per ganlode run: the settings as parameters, every score as a
  metric at its step, the run's path as a tag, FINISHED or FAILED at the end. The tracking URI
  is ``MLFLOW_TRACKING_URI``, or by default MLflow's local file store ``./mlruns`` (read it with
  ``mlflow ui --backend-store-uri ./mlruns``); MLflow 3 refuses file stores unless
  ``MLFLOW_ALLOW_FILE_STORE`` is set, which this default sets. The experiment is
  ``MLFLOW_EXPERIMENT_NAME``, or ``ganlode-COMMAND``.

Metric names say their split: ``val/fid`` (model selection), ``test/fid`` (the reported
figures), ``train/g_loss``. ``ganlode tune`` uses Ray Tune's own callbacks instead
(:func:`tune_callbacks`), one tracked run per trial.

The packages are the ``tracking`` extra (``pip install 'ganlode[tracking]'``); asking for a
tracker without them is a one-line error before anything runs.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

from .errors import UserError

REPORT_TO = ("none", "tensorboard", "mlflow")
TB_FOLDER = "tensorboard"
DEFAULT_MLFLOW_URI = "mlruns"  # relative to the working directory, as MLflow's own default
PARAM_CHARS = 500  # a parameter value longer than this is cut (MLflow's limit is larger; keeps the UI readable)

_PACKAGES = {"tensorboard": ("tensorboardX", "tensorboardX"), "mlflow": ("mlflow", "mlflow-skinny")}


def check(report_to: str) -> None:
    """Refuse an unknown tracker, or one whose package is missing, in one line."""
    if report_to not in REPORT_TO:
        raise UserError(f"--report-to {report_to!r}: pick one of {', '.join(REPORT_TO)}")
    if report_to in _PACKAGES:
        module, package = _PACKAGES[report_to]
        try:
            __import__(module)
        except ImportError:
            raise UserError(f"--report-to {report_to} needs the {package} package: "
                            f"pip install 'ganlode[tracking]' (or pip install {package})") from None


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings as flat ``a.b`` names with string values (what trackers take as parameters)."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        elif value is not None:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            out[name] = text[:PARAM_CHARS]
    return out


def scalars(values: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """The finite numbers of ``values`` as ``prefix/name`` metrics (counts and text left out)."""
    out = {}
    for key, value in values.items():
        if key in ("step", "n") or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(float(value)):
            out[f"{prefix}/{key}"] = float(value)
    return out


def mlflow_uri() -> str:
    """The tracking URI: MLFLOW_TRACKING_URI, or the local file store ./mlruns (allowed explicitly)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not uri:
        uri = "file:" + os.path.abspath(DEFAULT_MLFLOW_URI)
    if uri.startswith("file:") or "://" not in uri:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri


class Tracker:
    """Where a run's parameters and metrics go; this base sends them nowhere (``--report-to none``).

    A tracker opens at its first metric, not when made: bad input refused before a run starts
    leaves no tracked run and writes nothing into any folder. Parameters wait for that moment."""

    kind = "none"

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.opened = self.closed = False

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update(params)

    def log_metrics(self, values: Mapping[str, Any], step: int, prefix: str) -> None:
        metrics = scalars(values, prefix)
        if not metrics or self.kind == "none":
            return
        if not self.opened:
            self._open()
            self.opened = True
            if self.params:
                self._params(flatten(self.params))
        self._metrics(metrics, int(step))

    def files(self) -> dict[str, bytes]:
        """Files the run directory should carry (relative names); the caller writes them."""
        return {}

    def close(self, ok: bool = True) -> None:
        if self.opened and not self.closed:
            self._close(ok)
        self.closed = True

    def _open(self) -> None: ...

    def _params(self, flat: dict[str, str]) -> None: ...

    def _metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def _close(self, ok: bool) -> None: ...

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)


class TensorBoard(Tracker):
    """Event files in ``RUN/tensorboard`` for a live local run, else in a local staging folder."""

    kind = "tensorboard"

    def __init__(self, run: str, *, live: bool):
        from . import storage

        super().__init__()
        self.run = run
        self.staged = not live or storage.is_remote(run)
        self.logdir = ""
        self.writer = None

    def _open(self) -> None:
        from tensorboardX import SummaryWriter

        from . import storage

        self.logdir = (tempfile.mkdtemp(prefix="ganlode-tb-") if self.staged
                       else os.path.join(storage.local_path(self.run), TB_FOLDER))
        self.writer = SummaryWriter(logdir=self.logdir, flush_secs=10)

    def _params(self, flat: dict[str, str]) -> None:
        rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(flat.items()))
        self.writer.add_text("params", "| setting | value |\n|---|---|\n" + rows, 0)

    def _metrics(self, metrics: dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)

    def files(self) -> dict[str, bytes]:
        if self.writer is None:
            return {}
        if not self.closed:
            self.writer.flush()
        out = {}
        for root, _, names in os.walk(self.logdir):
            for name in names:
                path = os.path.join(root, name)
                with open(path, "rb") as f:
                    out["/".join((TB_FOLDER, *os.path.relpath(path, self.logdir).split(os.sep)))] = f.read()
        if self.closed and self.staged:  # read once, at the end: the staging folder goes
            shutil.rmtree(self.logdir, ignore_errors=True)
            self.writer = None
        return out

    def _close(self, ok: bool) -> None:
        self.writer.close()


class MLflow(Tracker):
    """One MLflow run, through an explicit client (no process-global active run)."""

    kind = "mlflow"

    def __init__(self, run: str, command: str):
        super().__init__()
        self.run, self.command = run, command
        self.uri = mlflow_uri()
        self.client = None
        self.run_id = ""

    def _open(self) -> None:
        from mlflow.tracking import MlflowClient

        from . import storage

        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "").strip() or f"ganlode-{self.command}"
            found = self.client.get_experiment_by_name(name)
            experiment = found.experiment_id if found is not None else self.client.create_experiment(name)
            self.run_id = self.client.create_run(experiment, run_name=os.path.basename(self.run.rstrip("/")),
                                                 tags={"ganlode.command": self.command, "ganlode.run": self.run}).info.run_id
        except Exception as e:  # noqa: BLE001 - any tracking-server failure is the user's setting
            first = (str(e).strip().splitlines() or [e.__class__.__name__])[0][:200]
            raise UserError(f"--report-to mlflow: cannot open a run at {storage.redact(self.uri)} ({first}): "
                            "check MLFLOW_TRACKING_URI") from None

    def _params(self, flat: dict[str, str]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in sorted(flat.items())])

    def _metrics(self, metrics: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def _close(self, ok: bool) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")


def open_tracker(report_to: str, run: str, command: str, *, live: bool = True) -> Tracker:
    """The tracker ``--report-to`` names, for the run at ``run`` (local or s3://) of ``command``.
    ``live``: TensorBoard may write into the run directory as it goes (not for a directory that
    is published in one step at the end, such as a pretrained checkpoint)."""
    check(report_to)
    if report_to == "tensorboard":
        return TensorBoard(run, live=live)
    if report_to == "mlflow":
        return MLflow(run, command)
    return Tracker()


def write_files(tracker: Tracker, run: str) -> None:
    """Copy a staged tracker's files into the run directory (a live local TensorBoard wrote them there)."""
    from . import storage

    if isinstance(tracker, TensorBoard) and tracker.staged and tracker.writer is not None:
        tracker.close()
        for name, blob in tracker.files().items():
            storage.write_bytes_atomic(storage.join(run, *name.split("/")), blob)


def tune_callbacks(report_to: str, command: str = "tune") -> list[Any]:
    """Ray Tune's own logger callbacks for ``--report-to`` (one tracked run per trial)."""
    check(report_to)
    if report_to == "tensorboard":
        from ray.tune.logger import TBXLoggerCallback

        return [TBXLoggerCallback()]
    if report_to == "mlflow":
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "").strip() or f"ganlode-{command}"
        return [MLflowLoggerCallback(tracking_uri=mlflow_uri(), experiment_name=name, save_artifact=False)]
    return []
