"""The results of a finished ``ganlode tune`` search, written into its ``--out``.

- ``trials.parquet``: one row per trial: trial_id, the searched settings (one column each),
  step (steps trained), the last reported kmmd/fid/mv and intra_div (empty where not scored), status (done, stopped: by ASHA,
  diverged, error), wall_s, error;
- ``best.json``: the best row (by ``--metric``/``--mode`` over trials that reported a finite
  value), its table index, settings, resolved options and metrics;
- ``best/``: the best trial's last checkpoint as a normal run directory (the layout of
  :mod:`ganlode.orchestrator.artifacts.rundir`, as ``ganlode transfer`` writes it);
- ``metric_vs_params.png``: the metric against each searched setting.
"""

from __future__ import annotations

import math
import os
from typing import Any

import pyarrow as pa

from ..evaluation.features import AUTO, resolve as resolve_features
from .. import storage
from ..artifacts.records import RunRecord
from ..artifacts.rundir import WEIGHTS_FILE, RunDir, metric_rows
from ..artifacts.sampling import generator_sampler
from ..evaluation import protocol
from ..pipelines.transfer import write_transfer_result
from ..report.plots import search_png
from .spec import BEST_FILE, BEST_RUN, DIVERSITY, PLOT_FILE, REPORTED, TRIALS_FILE, Prepared, trial_run_dir
from .state import load_trial_state
from .trials import build_trial

STATUSES = ("done", "stopped", "diverged", "error", "pending")


def _status(result: Any, steps: int) -> str:
    m = result.metrics or {}
    if result.error is not None:
        return "error"
    if m.get("diverged"):
        return "diverged"
    if m.get("step") is None:
        return "pending"
    return "done" if int(m["step"]) >= steps else "stopped"


def _trial_id(result: Any) -> str:
    m = result.metrics or {}
    if m.get("trial_id"):
        return str(m["trial_id"])
    # trial directories are named <trainable>_<trial id>_<index>_<settings>
    parts = os.path.basename(str(result.path).rstrip("/")).split("_")
    return parts[2] if len(parts) > 3 else os.path.basename(str(result.path))


def trial_rows(prepared: Prepared, grid: Any) -> list[dict[str, Any]]:
    """One dict per trial (see module docstring), in the order Tune created them."""
    spec, names = prepared.spec, prepared.space.names
    rows = []
    for result in grid:
        m = result.metrics or {}
        config = result.config or {}
        row: dict[str, Any] = {"trial_id": _trial_id(result)}
        row.update({n: config.get(n) for n in names})
        row["step"] = int(m["step"]) if m.get("step") is not None else None
        row.update({k: (float(m[k]) if m.get(k) is not None else None) for k in (*REPORTED, DIVERSITY)})
        row["status"] = _status(result, spec.steps)
        row["wall_s"] = round(float(m["wall_s"]), 2) if m.get("wall_s") is not None else None
        row["error"] = str(result.error).strip().splitlines()[-1][:200] if result.error is not None else None
        rows.append(row)
    return rows


def best_index(rows: list[dict[str, Any]], metric: str, mode: str) -> int | None:
    """The trial with the best finite ``metric`` among those that trained the whole budget
    (ASHA lets the leaders of every rung finish), else among those ASHA stopped; ties go to the
    earlier trial."""
    def finite(r: dict[str, Any]) -> bool:
        return r[metric] is not None and math.isfinite(r[metric])

    scored = [(r[metric], i) for i, r in enumerate(rows) if r["status"] == "done" and finite(r)]
    if not scored:
        scored = [(r[metric], i) for i, r in enumerate(rows) if r["status"] == "stopped" and finite(r)]
    if not scored:
        return None
    key = (lambda t: (t[0], t[1])) if mode == "min" else (lambda t: (-t[0], t[1]))
    return min(scored, key=key)[1]


def export_best(prepared: Prepared, result: Any, row: dict[str, Any], out: str) -> dict[str, Any]:
    """Write the best trial's last checkpoint as a run directory at ``out``; returns its config."""
    spec = prepared.spec
    config = {n: row[n] for n in prepared.space.names}
    setup = build_trial(spec, config)
    with result.checkpoint.as_directory() as d:
        step, history = load_trial_state(setup.adapter, d)
    final_val = {k: v for k, v in history[-1].items() if k != "step"}
    # trials score with the protocol's default (auto) features: resolved by the (converted) target's images
    features, target = resolve_features(AUTO, tuple(setup.target.images.shape)), spec.target
    tune_info = {"search": spec.out, "trial_id": row["trial_id"], "method": spec.method, "metric": spec.metric,
                 "mode": spec.mode, "searched": config, "val_n": spec.val_n}
    record = RunRecord(
        run_kind="transfer", status="done", method=setup.method, target=target, seed=spec.seed, features=features,
        data=setup.target.provenance(), metrics=final_val,
        extra={"source": spec.sources[0], "source_path": setup.checkpoint.path, "steps": step,
               "eval_every": spec.eval_every, "eval_n": spec.val_n,
               "options": {k: v for k, v in setup.options.to_dict().items() if v is not None},
               "options_given": prepared.space.options(config).given(),
               "train": setup.adapter.record().get("train"), "adapter": setup.adapter.record(),
               "source_data": setup.checkpoint.config.get("data"), "tune": tune_info,
               "target_conversion": None if setup.conversion is None else setup.conversion.to_dict()},
    )
    common = dict(seed=spec.seed, features=features, target=target)
    n = int(final_val.get("n", 0))
    rows = [r for h in history for r in metric_rows(setup.method, int(h["step"]), {k: v for k, v in h.items() if k != "step"},
                                                     split=protocol.SELECTION_SPLIT, n=n, **common)]
    # The search chose this trial on validation; its figures are the test split's, read here once.
    test_ref = protocol.reference(target, n=spec.val_n, feature_kind=features, split=protocol.REPORT_SPLIT,
                                  convert=setup.conversion, train_seed=spec.seed)
    test = protocol.score(generator_sampler(setup.adapter.sampling_generator()), test_ref, seed=spec.seed)
    rows += metric_rows(setup.method, step, test, split=protocol.REPORT_SPLIT, n=len(test_ref), **common)
    record = record.replace(metrics=test, metrics_split=protocol.REPORT_SPLIT, val_metrics=final_val)
    run = RunDir(out)
    write_transfer_result(run, setup.adapter, setup.checkpoint.arch, record)
    run.append_metrics(rows)
    run.write_config(record)
    return run.read_config()


def export_mined(prepared: Prepared, row: dict[str, Any], out: str) -> dict[str, Any]:
    """A multi-source trial already wrote a run directory: copy it to ``out`` and note the search."""
    spec = prepared.spec
    src = trial_run_dir(spec, row["trial_id"])
    if not storage.exists(storage.join(RunDir(src).checkpoint_path(), WEIGHTS_FILE)):
        raise RuntimeError(f"trial {row['trial_id']} has no final model in {src}")
    storage.copy_tree(src, out)
    run = RunDir(out)
    tune_info = {"search": spec.out, "trial_id": row["trial_id"], "method": spec.method, "metric": spec.metric,
                 "mode": spec.mode, "searched": {n: row[n] for n in prepared.space.names}, "val_n": spec.val_n,
                 "trial_run": src}
    run.write_config(run.read_record().replace(tune=tune_info, command=None))  # the command is this search's
    config = run.read_config()
    config["options"] = config.get("mining", {})
    return config


def plot_png(rows: list[dict[str, Any]], prepared: Prepared, best: int | None) -> bytes:
    """The metric against each searched setting (one panel each; log axes for log-uniform ones)."""
    spec = prepared.spec
    return search_png(rows, prepared.space.params, spec.metric, spec.mode,
                      f"ganlode tune: {spec.method} on {spec.target}", best)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def summary(rows: list[dict[str, Any]], prepared: Prepared, best: int | None, limit: int = 20) -> str:
    """A plain-text table of the trials, best first."""
    spec = prepared.spec
    cols = ["trial_id", *prepared.space.names, "step", "kmmd", "fid", "mv", DIVERSITY, "status", "wall_s"]
    sign = 1 if spec.mode == "min" else -1

    def key(i: int) -> tuple:
        v = rows[i][spec.metric]
        ok = v is not None and math.isfinite(v) and rows[i]["status"] in ("done", "stopped")
        return (not ok, sign * v if ok else 0.0, i)

    order = sorted(range(len(rows)), key=key)[:limit]
    cells = [[_fmt(rows[i].get(c)) for c in cols] for i in order]
    widths = [max(len(c), *(len(r[j]) for r in cells)) for j, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    for i, r in zip(order, cells):
        mark = " *" if i == best else ""
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths)) + mark)
    if len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more in trials.parquet")
    return "\n".join(lines)


def write_results(prepared: Prepared, grid: Any) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Write trials.parquet, best.json, best/ and the plot; returns (rows, best record or None)."""
    spec = prepared.spec
    rows = trial_rows(prepared, grid)
    storage.write_table(storage.join(spec.out, TRIALS_FILE), pa.Table.from_pylist(rows))
    i = best_index(rows, spec.metric, spec.mode)
    storage.write_bytes_atomic(storage.join(spec.out, PLOT_FILE), plot_png(rows, prepared, i))
    if i is None:
        return rows, None
    run_path = storage.join(spec.out, BEST_RUN)
    existing = RunDir(run_path)
    if existing.is_run() and (existing.read_config().get("tune") or {}).get("trial_id") == rows[i]["trial_id"]:
        run_config = existing.read_config()  # a resumed, already finished search: keep the export
    elif spec.method == "mine":
        run_config = export_mined(prepared, rows[i], run_path)
    else:
        run_config = export_best(prepared, grid[i], rows[i], run_path)
    best = {
        "trial_id": rows[i]["trial_id"], "row": i, "metric": spec.metric, "mode": spec.mode,
        "value": rows[i][spec.metric], "config": {n: rows[i][n] for n in prepared.space.names},
        "method": spec.method, "train_method": run_config["method"], "options": run_config["options"],
        "metrics": {k: rows[i][k] for k in ("kmmd", "fid", "mv")}, "step": rows[i]["step"],
        "run": run_path, "trials": len(rows),
    }
    storage.write_json_atomic(storage.join(spec.out, BEST_FILE), best)
    return rows, best
