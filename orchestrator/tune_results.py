"""The results of a finished ``ganlode tune`` search, written into its ``--out``.

- ``trials.parquet``: one row per trial: trial_id, the searched settings (one column each),
  step (steps trained), the last reported kmmd/fid/mv, status (done, stopped: by ASHA,
  diverged, error), wall_s, error;
- ``best.json``: the best row (by ``--metric``/``--mode`` over trials that reported a finite
  value), its table index, settings, resolved options and metrics;
- ``best/``: the best trial's last checkpoint as a normal run directory (the layout of
  :mod:`ganlode.orchestrator.runs`, as ``ganlode transfer`` writes it);
- ``metric_vs_params.png``: the metric against each searched setting.
"""

from __future__ import annotations

import io
import math
import os
import time
from typing import Any

from ..methods import transfer as T
from . import checkpoint, evaluation, storage
from .runs import RunDir, metric_rows

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


def trial_rows(prepared: Any, grid: Any) -> list[dict[str, Any]]:
    """One dict per trial (see module docstring), in the order Tune created them."""
    from .tune import REPORTED

    spec, names = prepared.spec, prepared.space.names
    rows = []
    for result in grid:
        m = result.metrics or {}
        config = result.config or {}
        row: dict[str, Any] = {"trial_id": _trial_id(result)}
        row.update({n: config.get(n) for n in names})
        row["step"] = int(m["step"]) if m.get("step") is not None else None
        row.update({k: (float(m[k]) if m.get(k) is not None else None) for k in REPORTED})
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


def write_table(rows: list[dict[str, Any]], path: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    storage.write_bytes_atomic(path, buf.getvalue())


def export_best(prepared: Any, result: Any, row: dict[str, Any], out: str) -> dict[str, Any]:
    """Write the best trial's last checkpoint as a run directory at ``out``; returns its config."""
    from ..methods.finetune import train_config
    from .tune import build_trial, load_trial_state

    spec = prepared.spec
    config = {n: row[n] for n in prepared.space.names}
    setup = build_trial(spec, config)
    with result.checkpoint.as_directory() as d:
        step, history = load_trial_state(setup.adapter, d)
    final = {k: v for k, v in history[-1].items() if k != "step"}
    export = setup.adapter.export()
    arch = setup.checkpoint.arch
    resolved = {k: v for k, v in setup.options.to_dict().items() if v is not None}
    adversarial = setup.method in T.ADVERSARIAL
    tcfg = train_config(setup.options, setup.source, spec.seed).to_dict() if adversarial else None
    features, target = "classifier", spec.target
    tune_info = {"search": spec.out, "trial_id": row["trial_id"], "method": spec.method, "metric": spec.metric,
                 "mode": spec.mode, "searched": config, "val_n": spec.val_n}
    run = RunDir(out)
    ckpt_config = {
        "kind": export.kind, "arch": arch.to_dict(), "method": setup.method, "options": resolved, "steps": step,
        "seed": spec.seed, "source": spec.sources[0], "source_data": setup.checkpoint.config.get("data"),
        "data": setup.target.provenance(), "metrics": final, "features": features,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "tune": tune_info, **export.config,
    }
    if tcfg is not None:
        ckpt_config["train"] = tcfg
    grid = evaluation.sample_grid_png(setup.adapter.sampling_generator(), n=64, seed=spec.seed)
    checkpoint.save_checkpoint(run.checkpoint_path("final"), ckpt_config, export.generator, export.critic,
                               extra=export.extra, files={"samples.png": grid})
    run.write_sample("final", grid)
    n = int(final.get("n", 0))
    rows = [r for h in history for r in metric_rows(setup.method, int(h["step"]), {k: v for k, v in h.items() if k != "step"},
                                                     seed=spec.seed, features=features, n=n, target=target)]
    run.append_metrics(rows)
    run_config = {
        "kind": "transfer", "method": setup.method, "source": spec.sources[0], "source_path": setup.checkpoint.path,
        "target": target, "steps": step, "seed": spec.seed, "eval_every": spec.eval_every, "features": features,
        "eval_n": spec.val_n, "options": resolved, "options_given": prepared.space.options(config).given(),
        "train": tcfg, "data": setup.target.provenance(), "source_data": setup.checkpoint.config.get("data"),
        "status": "done", "metrics": final, "tune": tune_info,
    }
    run.write_config(run_config)
    return run_config


def export_mined(prepared: Any, row: dict[str, Any], out: str) -> dict[str, Any]:
    """A multi-source trial already wrote a run directory: copy it to ``out`` and note the search."""
    from .tune import trial_run_dir

    spec = prepared.spec
    src = trial_run_dir(spec, row["trial_id"])
    if not storage.exists(storage.join(src, "checkpoints", "final", checkpoint.WEIGHTS)):
        raise RuntimeError(f"trial {row['trial_id']} has no final model in {src}")
    copy_tree(src, out)
    run = RunDir(out)
    config = run.read_config()
    config["tune"] = {"search": spec.out, "trial_id": row["trial_id"], "method": spec.method, "metric": spec.metric,
                      "mode": spec.mode, "searched": {n: row[n] for n in prepared.space.names}, "val_n": spec.val_n,
                      "trial_run": src}
    config.pop("command", None)
    run.write_config(config)
    config["options"] = config.get("mining", {})
    return config


def copy_tree(src: str, dst: str) -> None:
    """Copy a directory tree as stored (published-directory pointers included)."""
    import shutil

    if not storage.is_remote(src):
        shutil.copytree(storage.resolve(src), storage.resolve(dst), dirs_exist_ok=True)
        return
    fs, s = storage.filesystem(src)
    _, d = storage.filesystem(dst)
    with storage.translate_errors(src, "copying"):
        for path in fs.find(s):
            fs.copy(path, d + path[len(s):])


def plot_png(rows: list[dict[str, Any]], prepared: Any, best: int | None) -> bytes:
    """The metric against each searched setting (one panel each; log axes for log-uniform ones)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401 (used as matplotlib.ticker)

    spec, params = prepared.spec, prepared.space.params
    colours = {"done": "tab:blue", "stopped": "tab:gray"}
    labels = {"done": "full budget", "stopped": "stopped early (ASHA)"}
    fig, axes = plt.subplots(1, len(params), figsize=(3.6 * len(params), 3.2), squeeze=False)
    for ax, p in zip(axes[0], params):
        for status, colour in colours.items():
            pts = [(r[p.name], r[spec.metric]) for r in rows
                   if r["status"] == status and r[spec.metric] is not None and math.isfinite(r[spec.metric])]
            if pts:
                xs = [_position(x, p) for x, _ in pts]
                ax.scatter(xs, [y for _, y in pts], s=22, c=colour, label=labels[status], alpha=0.8)
        if best is not None:
            ax.scatter([_position(rows[best][p.name], p)], [rows[best][spec.metric]], s=140, marker="*",
                       c="tab:orange", edgecolors="black", label="best", zorder=3)
        # the whole searched range, so the plot shows where in the space the trials landed
        if p.log_scale:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlim(p.args[0] / 1.3, p.args[1] * 1.3)
        elif p.kind == "randint":
            ax.set_xlim(p.args[0] - 0.5, p.args[1] + 0.5)
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        elif p.kind == "uniform":
            pad = (p.args[1] - p.args[0]) * 0.05
            ax.set_xlim(p.args[0] - pad, p.args[1] + pad)
        else:
            ax.set_xticks(range(len(p.args)), [str(a) for a in p.args])
        ax.set_xlabel(p.name)
        ax.set_ylabel(f"{spec.metric} ({spec.mode})")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"ganlode tune: {spec.method} on {spec.target}", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _position(value: Any, p: Any) -> Any:
    return list(p.args).index(value) if p.kind == "choice" else value


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def summary(rows: list[dict[str, Any]], prepared: Any, best: int | None, limit: int = 20) -> str:
    """A plain-text table of the trials, best first."""
    spec = prepared.spec
    cols = ["trial_id", *prepared.space.names, "step", "kmmd", "fid", "mv", "status", "wall_s"]
    sign = 1 if spec.mode == "min" else -1

    def key(i: int) -> tuple:
        v = rows[i][spec.metric]
        ok = v is not None and math.isfinite(v) and rows[i]["status"] in ("done", "stopped")
        return (not ok, sign * v if ok else 0.0, i)

    order = sorted(range(len(rows)), key=key)[:limit]
    cells = [[_fmt(rows[i][c]) for c in cols] for i in order]
    widths = [max(len(c), *(len(r[j]) for r in cells)) for j, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    for i, r in zip(order, cells):
        mark = " *" if i == best else ""
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths)) + mark)
    if len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more in trials.parquet")
    return "\n".join(lines)


def write_results(prepared: Any, grid: Any) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Write trials.parquet, best.json, best/ and the plot; returns (rows, best record or None)."""
    from .tune import BEST_FILE, BEST_RUN, PLOT_FILE, TRIALS_FILE

    spec = prepared.spec
    rows = trial_rows(prepared, grid)
    write_table(rows, storage.join(spec.out, TRIALS_FILE))
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
