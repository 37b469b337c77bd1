"""Run directories: the one layout every long command writes (local or s3://).

    RUN/config.json          the RunRecord: command, method, options, seeds, data provenance
    RUN/checkpoints/final/   a checkpoint directory (model.safetensors + config.json)
    RUN/checkpoints/step-N/  intermediate checkpoints for --resume
    RUN/samples/*.png        sample grids
    RUN/metrics.parquet/     one row per (method, step, metric): the evaluation protocol's output,
                             one part file per evaluation (``pyarrow.parquet.read_table`` reads it whole)
    RUN/shares.parquet       mined runs: (step, source, index, share) of the selector
    RUN/report.html          the report

Every file is written atomically and metrics are only ever appended; a finished result is never
replaced by a failed re-run. Each file name has one constant, here.
"""

from __future__ import annotations

import shlex
import sys
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute as pc

from .. import storage
from ..errors import UserError
from .records import RunRecord

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
METRICS_FILE = "metrics.parquet"
SHARES_FILE = "shares.parquet"
SHARES_JSON = "shares.json"  # a mining run's shares: the selector's, every selector's, and the truth
RECOMMEND_FILE = "recommend.parquet"  # `ganlode recommend`: one row per candidate, ranked
RECOMMEND_JSON = "recommend.json"  # ...and the whole recommendation
REPORT_FILE = "report.html"
SAMPLES_DIR = "samples"
CHECKPOINTS_DIR = "checkpoints"
FINAL_CHECKPOINT = "final"
BEST_CHECKPOINT = "best"  # the model with the best validation score (model selection never reads test)
STATE_FILE = "checkpoints/state.pt"  # a transfer's exact training state, for --resume
STEP_PREFIX = "step-"  # checkpoints/step-N, the way back for --resume
CHECKPOINT_SAMPLES = "samples.png"  # the sample grid inside a checkpoint directory

# ``split`` names the reference a score was taken on: ``val`` (model selection) or ``test``
# (reported figures); rows written before the protocol had two splits read back as ``eval``.
METRIC_COLUMNS = ("method", "step", "metric", "value", "split", "seed", "features", "n", "target", "time")
METRICS_SCHEMA = pa.schema([
    ("method", pa.string()), ("step", pa.int64()), ("metric", pa.string()), ("value", pa.float64()),
    ("split", pa.string()), ("seed", pa.int64()), ("features", pa.string()), ("n", pa.int64()),
    ("target", pa.string()), ("time", pa.string()),
])
LEGACY_SPLIT = "eval"


def command_line() -> str:
    """The ganlode command being run, as a user would retype it."""
    return "ganlode " + " ".join(shlex.quote(a) for a in sys.argv[1:])


class RunDir:
    """A run directory at ``path`` (local or s3://)."""

    def __init__(self, path: str):
        self.path = str(path)

    def file(self, *parts: str) -> str:
        return storage.join(self.path, *parts)

    def checkpoint_path(self, name: str = FINAL_CHECKPOINT) -> str:
        return self.file(CHECKPOINTS_DIR, name)

    def is_run(self) -> bool:
        return storage.exists(self.file(CONFIG_FILE))

    def require_run(self) -> None:
        if not self.is_run():
            raise UserError(f"{self.path} holds no ganlode run (no {CONFIG_FILE}); pass a directory written by "
                            "`ganlode transfer`, `mine`, `tune` or `demo`")

    # ------------------------------------------------------------ the record

    def write_config(self, record: RunRecord | dict[str, Any]) -> None:
        """Write ``config.json`` (a dict is read as a RunRecord); the command defaults to this process's."""
        if isinstance(record, dict):
            record = RunRecord.from_dict(record, self.file(CONFIG_FILE))
        record = record.replace(format=RunRecord.FORMAT, command=record.command or command_line())
        storage.write_json_atomic(self.file(CONFIG_FILE), record.to_dict())

    def read_config(self) -> dict[str, Any]:
        """``config.json`` as stored (see :meth:`read_record` for the typed record)."""
        self.require_run()
        return storage.read_json(self.file(CONFIG_FILE))

    def read_record(self) -> RunRecord:
        return RunRecord.from_dict(self.read_config(), self.file(CONFIG_FILE))

    # ------------------------------------------------------------ samples

    def write_sample(self, name: str, png: bytes) -> str:
        path = self.file(SAMPLES_DIR, name if name.endswith(".png") else f"{name}.png")
        storage.write_bytes_atomic(path, png)
        return path

    def sample_names(self) -> list[str]:
        """The sample grids' file names (``*.png``), sorted."""
        return [n for n in storage.listdir(self.file(SAMPLES_DIR)) if n.endswith(".png")]

    def read_sample(self, name: str) -> bytes:
        return storage.read_bytes(self.file(SAMPLES_DIR, name))

    # ------------------------------------------------------------ metrics

    def has_metrics(self) -> bool:
        return storage.exists(self.file(METRICS_FILE))

    def read_metrics(self) -> pa.Table:
        """Every metric row so far, in the order they were appended (an empty table if none)."""
        path = self.file(METRICS_FILE)
        if not storage.exists(path) or (storage.is_dir(path) and not storage.part_names(path)):
            return METRICS_SCHEMA.empty_table()
        fix = "restore it or re-run the evaluation with `ganlode eval`"
        table = storage.read_table(path, fix=fix)
        if "split" not in table.column_names:
            table = table.append_column("split", pa.array([LEGACY_SPLIT] * table.num_rows, pa.string()))
        return table.select(list(METRIC_COLUMNS)).cast(METRICS_SCHEMA)

    def append_metrics(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append rows (see METRIC_COLUMNS) as one new part of metrics.parquet; nothing is rewritten."""
        now = storage.utc_now()
        new = [{**{"seed": 0, "features": "classifier", "n": 0, "target": "", "time": now}, **r} for r in rows]
        for r in new:
            if r.get("split") not in ("val", "test"):
                raise ValueError(f"a metric row must name its split (val or test), got {r.get('split')!r}")
        if new:
            table = pa.Table.from_pylist([{k: r.get(k) for k in METRIC_COLUMNS} for r in new], schema=METRICS_SCHEMA)
            storage.append_part(self.file(METRICS_FILE), table)

    def drop_metrics(self, method: str | None = None, after_step: int = -1, split: str | None = None) -> None:
        """Remove the rows of ``method`` (every method: None) evaluated after ``after_step``
        (on ``split``; every split: None).

        Used when a run restarts (everything) or resumes (what follows its last checkpoint);
        each part file is removed or rewritten atomically, and a repeated call finishes an
        interrupted one.
        """
        if not self.has_metrics():
            return

        def keep(t: pa.Table) -> Any:
            drop = pc.greater(t["step"], after_step)
            if method is not None:
                drop = pc.and_(pc.equal(t["method"], method), drop)
            if split is not None:
                column = t["split"] if "split" in t.column_names else pa.array([LEGACY_SPLIT] * t.num_rows)
                drop = pc.and_(pc.equal(column, split), drop)
            return pc.invert(drop)

        storage.filter_parts(self.file(METRICS_FILE), keep)


def metric_rows(method: str, step: int, values: dict[str, float], **common: Any) -> list[dict[str, Any]]:
    """Long-format rows for one evaluation: one row per metric."""
    return [{"method": method, "step": step, "metric": k, "value": float(v), **common}
            for k, v in values.items() if isinstance(v, (int, float)) and k != "n"]
