"""Run directories: the one layout every long command writes (local or s3://).

    RUN/config.json          what was run: command, method, options, seeds, data provenance
    RUN/checkpoints/final/   a checkpoint directory (model.safetensors + config.json)
    RUN/checkpoints/step-N/  intermediate checkpoints for --resume
    RUN/samples/*.png        sample grids
    RUN/metrics.parquet      one row per (method, step, metric): the evaluation protocol's output
    RUN/report.html          the report

Every file is written atomically; a finished result is never replaced by a failed re-run.
"""

from __future__ import annotations

import io
import shlex
import sys
import time
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from . import storage
from .errors import UserError

METRICS_FILE = "metrics.parquet"
CONFIG_FILE = "config.json"
METRIC_COLUMNS = ("method", "step", "metric", "value", "seed", "features", "n", "target", "time")
_SCHEMA = pa.schema([
    ("method", pa.string()), ("step", pa.int64()), ("metric", pa.string()), ("value", pa.float64()),
    ("seed", pa.int64()), ("features", pa.string()), ("n", pa.int64()), ("target", pa.string()), ("time", pa.string()),
])


def command_line() -> str:
    """The ganlode command being run, as a user would retype it."""
    return "ganlode " + " ".join(shlex.quote(a) for a in sys.argv[1:])


class RunDir:
    """A run directory at ``path`` (local or s3://)."""

    def __init__(self, path: str):
        self.path = str(path)

    def file(self, *parts: str) -> str:
        return storage.join(self.path, *parts)

    def checkpoint_path(self, name: str = "final") -> str:
        return self.file("checkpoints", name)

    def is_run(self) -> bool:
        return storage.exists(self.file(CONFIG_FILE))

    def require_run(self) -> None:
        if not self.is_run():
            raise UserError(f"{self.path} holds no ganlode run (no {CONFIG_FILE}); pass a directory written by "
                            "`ganlode transfer`, `mine`, `tune` or `demo`")

    def write_config(self, config: dict[str, Any]) -> None:
        storage.write_json_atomic(self.file(CONFIG_FILE), {"command": command_line(), **config})

    def read_config(self) -> dict[str, Any]:
        self.require_run()
        return storage.read_json(self.file(CONFIG_FILE))

    def write_sample(self, name: str, png: bytes) -> str:
        path = self.file("samples", name if name.endswith(".png") else f"{name}.png")
        storage.write_bytes_atomic(path, png)
        return path

    def read_metrics(self) -> pa.Table:
        path = self.file(METRICS_FILE)
        if not storage.exists(path):
            return _SCHEMA.empty_table()
        try:
            return pq.read_table(io.BytesIO(storage.read_bytes(path)), use_threads=False)
        except (pa.ArrowInvalid, OSError) as e:
            raise UserError(f"{path} is corrupt ({str(e).splitlines()[0][:80]}); restore it or re-run the evaluation "
                            "with `ganlode eval`") from None

    def append_metrics(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append rows (see METRIC_COLUMNS) to metrics.parquet; the file is replaced atomically."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        new = [{**{"seed": 0, "features": "classifier", "n": 0, "target": "", "time": now}, **r} for r in rows]
        table = pa.Table.from_pylist([{k: r.get(k) for k in METRIC_COLUMNS} for r in new], schema=_SCHEMA)
        old = self.read_metrics()
        if old.num_rows:
            table = pa.concat_tables([old.select(list(METRIC_COLUMNS)).cast(_SCHEMA), table])
        buf = io.BytesIO()
        pq.write_table(table, buf)
        storage.write_bytes_atomic(self.file(METRICS_FILE), buf.getvalue())


def metric_rows(method: str, step: int, values: dict[str, float], **common: Any) -> list[dict[str, Any]]:
    """Long-format rows for one evaluation: one row per metric."""
    return [{"method": method, "step": step, "metric": k, "value": float(v), **common}
            for k, v in values.items() if isinstance(v, (int, float)) and k != "n"]
