"""``report.html``: one self-contained page per run (images inlined, no server, no network).

It reads only what a run directory holds (see :mod:`ganlode.orchestrator.artifacts.rundir`):
- ``config.json``: the exact command and configuration;
- ``metrics.parquet``: the results table (each method's final model, and a transfer's
  best-by-validation model, on the test split) and FID/KMMD over steps (validation split);
- ``samples/*.png``: a sample grid per method, beside ``samples/target.png`` (real images);
- ``shares.parquet`` (mined runs): the selector's shares over time against ``true_shares``;
- ``recommend.json`` (the demo, or a run written beside `ganlode recommend`'s output): the
  ranked candidates and the recommendation.
Nothing else in the run directory is touched; the page is written atomically, under the run's
lock (``RUN/.ganlode-lock``): a report of a run that another process is writing is refused.
"""

from __future__ import annotations

import base64
import html
import json
import re
from typing import Any

from .. import storage
from ..artifacts.rundir import METRICS_FILE, RECOMMEND_JSON, REPORT_FILE, SHARES_FILE, SHARES_JSON, RunDir, command_line
from ..errors import UserError
from .plots import curves_png, shares_png

LOWER_IS_BETTER = {"fid": True, "kmmd": True}

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.sub{color:#666;margin-top:0}table{border-collapse:collapse;margin:.5rem 0}th,td{padding:.3rem .7rem;border-bottom:1px solid #eee;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f6f6f6}.best{font-weight:700;color:#0a6}
.grids{display:flex;flex-wrap:wrap;gap:1rem}.grid{text-align:center}.grid img{image-rendering:pixelated;width:200px;border:1px solid #ccc}
.grid .real{border:2px solid #0a6}.plots img{max-width:100%}pre{background:#f6f6f6;padding:.8rem;overflow-x:auto;font-size:.8rem}
code{background:#f3f3f3;padding:.1rem .3rem}
"""


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def load_inputs(run: RunDir) -> dict[str, Any]:
    """Everything the report shows, read and validated before anything is written."""
    config = run.read_config()
    metrics_path = run.file(METRICS_FILE)
    if not run.has_metrics():
        raise UserError(f"{run.path} has no {METRICS_FILE}; evaluate the run first with `ganlode eval {run.path}`")
    metrics = storage.read_table(metrics_path, fix=f"restore it or re-run `ganlode eval {run.path}`").to_pylist()
    if not metrics:
        raise UserError(f"{metrics_path} holds no rows; evaluate the run with `ganlode eval {run.path}`")
    missing = {"method", "step", "metric", "value"} - set(metrics[0])
    if missing:
        raise UserError(f"{metrics_path} lacks columns {sorted(missing)}; it was not written by ganlode")
    shares_path = run.file(SHARES_FILE)
    shares = storage.read_table(shares_path, fix="restore it or re-run the mining").to_pylist() \
        if storage.exists(shares_path) else []
    samples = {name[:-4]: run.read_sample(name) for name in run.sample_names()}
    estimates = storage.read_json(run.file(SHARES_JSON)) if storage.exists(run.file(SHARES_JSON)) else None
    recommendation = storage.read_json(run.file(RECOMMEND_JSON)) if storage.exists(run.file(RECOMMEND_JSON)) else None
    return {"config": config, "metrics": metrics, "shares": shares, "samples": samples, "estimates": estimates,
            "recommendation": recommendation}


def _num(value: Any, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def recommend_html(doc: dict[str, Any]) -> str:
    """recommend.json as a table: the ranked candidates (validation split) and the recommendation."""
    probe = bool(doc.get("probe_steps"))
    head = "<tr><th>rank</th><th>source</th><th>coverage</th><th>FID</th><th>KMMD</th>" + (
        f"<th>FID after a {int(doc['probe_steps'])}-step probe</th><th>probe s</th>" if probe else "") + "</tr>"
    rows = ["<table>", head]
    for c in doc["candidates"]:
        cls = " class='best'" if c.get("recommended") else ""
        cells = (f"<td>{c['rank']}</td><td style='text-align:left'{cls}>{html.escape(c['source'])}</td>"
                 f"<td{cls}>{c['coverage']:.2f}</td><td>{_num(c['fid'], '.1f')}</td><td>{_num(c['kmmd'], '.4f')}</td>")
        if probe:
            cells += f"<td>{_num(c.get('probe_fid'), '.1f')}</td><td>{_num(c.get('probe_s'), '.1f')}</td>"
        rows.append(f"<tr>{cells}</tr>")
    rows.append("</table>")
    r = doc["recommendation"]
    what = ("mine " + " + ".join(f"{html.escape(s)} ({p:.2f})" for s, p in zip(r["sources"], r["shares"]))
            if r["kind"] == "mine" else f"start from {html.escape(r['sources'][0])}")
    return ("".join(rows) + f"<p class='sub'>Every figure on the validation split ({doc.get('n_val', '?')} images) of "
            f"<code>{html.escape(str(doc['target']))}</code>. Recommendation: <b>{what}</b>: {html.escape(r['reason'])}.</p>")


def shares_html(doc: dict[str, Any]) -> str:
    """RUN/shares.json as a table: per source, the shares sampling uses, every selector's, the truth."""
    selectors = list(doc["by_selector"])
    truth = doc.get("true_shares") or {}
    head = "".join(f"<th>{html.escape(s)}{' (used)' if s == doc['selector'] else ''}</th>" for s in selectors)
    rows = [f"<table><tr><th>source</th>{'<th>true share</th>' if truth else ''}{head}</tr>"]
    for source in doc["sources"]:
        cells = "".join(f"<td class='{'best' if s == doc['selector'] else ''}'>{doc['by_selector'][s][source]:.3f}</td>"
                        for s in selectors)
        true_cell = f"<td>{truth[source]:.3f}</td>" if truth else ""
        rows.append(f"<tr><td style='text-align:left'>{html.escape(source)}</td>{true_cell}{cells}</tr>")
    rows.append("</table>")
    note = [f"Sampling uses the <b>{html.escape(doc['selector'])}</b> shares"]
    if doc.get("routed"):
        note.append(f"routed: {len(doc['kept'])} of {len(doc['sources'])} sources mined, each against its own part "
                    "of the target")
    if doc.get("max_error"):
        note.append("max |p - true share|: " + ", ".join(f"{k} {v:.3f}" for k, v in doc["max_error"].items()))
    return "".join(rows) + "<p class='sub'>" + "; ".join(note) + ".</p>"


REPORTED_SPLITS = ("test", "eval")  # "eval": rows of runs made before the protocol had a test split
SELECTION_SPLITS = ("val", "eval")


def final_table(metrics: list[dict]) -> tuple[list[str], dict[str, dict[str, float]]]:
    """Per method, each metric of its final model on the test split (mean over seeds).

    A transfer also scored its best-by-validation model on test: that model gets its own row,
    ``METHOD (best by validation, step K)``. Validation rows never enter the table; a method
    with no test row at all (an unfinished run) shows its last validation scores, marked so.
    """
    def split_of(r: dict) -> str:
        return r.get("split") or "eval"

    rows = [r for r in metrics if split_of(r) in REPORTED_SPLITS]
    shown = {r["method"] for r in rows}
    rows += [{**r, "method": f"{r['method']} (validation)"} for r in metrics
             if split_of(r) in SELECTION_SPLITS and r["method"] not in shown]
    last: dict[str, int] = {}
    for r in rows:
        last[r["method"]] = max(last.get(r["method"], -1), int(r["step"]))
    acc: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        step = int(r["step"])
        name = r["method"] if step == last[r["method"]] else f"{r['method']} (best by validation, step {step})"
        acc.setdefault(name, {}).setdefault(r["metric"], []).append(float(r["value"]))
    table = {m: {k: sum(v) / len(v) for k, v in d.items()} for m, d in acc.items()}
    cols = [c for c in ("fid", "kmmd", "mv") if any(c in d for d in table.values())]
    cols += sorted({k for d in table.values() for k in d} - set(cols) - {"kmmd_bandwidth"})
    return cols, table


def _grid_label(name: str, config: dict[str, Any], estimates: dict[str, Any] | None = None) -> str:
    """``source-2`` / ``mine-source-2`` -> the source's name (the mined model's sources: a routed
    run's kept ones, from its shares.json); ``mixed`` -> the mixture."""
    m = re.fullmatch(r"(mine-)?source-(\d+)", name)
    sources = (estimates or {}).get("kept") or config.get("sources") or []
    if m and int(m.group(2)) < len(sources):
        return f"mined from {sources[int(m.group(2))]}"
    if name.endswith("mixed"):
        return "mined model (sources mixed by p)"
    return name


def render(inputs: dict[str, Any], title: str) -> str:
    config, metrics, samples = inputs["config"], inputs["metrics"], inputs["samples"]
    cols, table = final_table(metrics)
    # "best" is per target: methods on different targets are not comparable
    by_method = {r["method"]: r.get("target") or "" for r in metrics}
    # a derived row ("finetune (best by validation, step 40)") has its method's target
    targets_of = {m: by_method[m] if m in by_method else by_method.get(m.rsplit(" (", 1)[0], "") for m in table}
    best = {(c, t): min((m for m in table if targets_of[m] == t), key=lambda m: table[m].get(c, float("inf")))
            for c in cols if LOWER_IS_BETTER.get(c) for t in set(targets_of.values())}
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p class='sub'>target <code>{html.escape(str(config.get('target', '?')))}</code> · "
             f"evaluation: {html.escape(str(config.get('features', 'classifier')))} features; the table is on the "
             "test split, the curves on the validation split (model selection)</p>"]
    if inputs.get("recommendation"):
        parts.append("<h2>Which sources to start from</h2>" + recommend_html(inputs["recommendation"]))
    show_target = len(set(targets_of.values())) > 1
    parts.append("<h2>Results</h2><table><tr><th>method</th>" + ("<th>target</th>" if show_target else "")
                 + "".join(f"<th>{c.upper()}</th>" for c in cols) + "</tr>")
    for m in sorted(table, key=lambda m: (targets_of.get(m, ""), table[m].get("fid", float("inf")))):
        cells = "".join(
            f"<td class='{'best' if best.get((c, targets_of[m])) == m else ''}'>{table[m][c]:.4g}</td>" if c in table[m] else "<td>–</td>"
            for c in cols
        )
        tcell = f"<td style='text-align:left'><code>{html.escape(targets_of.get(m, ''))}</code></td>" if show_target else ""
        parts.append(f"<tr><td>{html.escape(m)}</td>{tcell}{cells}</tr>")
    parts.append("</table><p class='sub'>FID, KMMD: lower is better. MV: sample diversity relative to the "
                 "reference (1 = as diverse as the target).</p>")
    grids = {k: v for k, v in samples.items() if not k.endswith("shares")}  # plots are shown below
    if grids:
        parts.append("<h2>Samples</h2><div class='grids'>")
        ordered = sorted(grids, key=lambda k: (not k.startswith("target"), k))
        for name in ordered:
            real = name.startswith("target")
            cls = "real" if real else ""
            label = ("real target images" + name[len("target"):].replace("-", ": ", 1)) if real else _grid_label(name, config, inputs.get("estimates"))
            parts.append(f"<div class='grid'><img class='{cls}' alt='{html.escape(name)}' src='{_data_uri(grids[name])}'>"
                         f"<div>{html.escape(label)}</div></div>")
        parts.append("</div>")
    true = config.get("true_shares")
    if isinstance(true, list):  # mine runs record them in source order
        true = dict(zip(config.get("sources", []), true))
    shares = shares_png(inputs["shares"], true)
    if inputs.get("estimates") or shares:
        parts.append("<h2>Selector shares</h2>")
    if inputs.get("estimates"):
        parts.append(shares_html(inputs["estimates"]))
    if shares:
        caption = ("A routed run's shares over the steps: fixed at the coverage estimate"
                   if (inputs.get("estimates") or {}).get("routed")
                   else "The count selector's shares of won rows over the steps (the MineGAN rule)")
        parts.append(f"<p class='sub'>{caption}, against the true shares:</p>"
                     f"<div class='plots'><img alt='shares' src='{_data_uri(shares)}'></div>")
    curves = curves_png([r for r in metrics if (r.get("split") or "eval") in SELECTION_SPLITS])
    if curves:
        parts.append(f"<h2>Quality over steps</h2><div class='plots'><img alt='curves' src='{_data_uri(curves)}'></div>")
    parts.append("<h2>Command and configuration</h2>")
    parts.append(f"<pre>{html.escape(str(config.get('command', '')))}</pre>")
    parts.append(f"<pre>{html.escape(json.dumps(config, indent=2, sort_keys=True, default=str))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def build_report(path: str, title: str | None = None, *, force_unlock: bool = False,
                 lock: storage.RunLock | None = None) -> str:
    """Write RUN/report.html from the run's files; returns its path. Reads everything first.

    The run's lock is taken for the reading and the write (a run being written by another
    process is refused in one line); ``lock``: the caller holds it already (``ganlode demo``).
    ``force_unlock`` removes a lock whose holder may be alive (``--force-unlock``).
    """
    run = RunDir(path)
    run.require_run()  # before the lock: a path that holds no run gets nothing written into it
    if lock is not None:
        return _write_report(run, title, lock)
    with storage.RunLock(path, command=command_line(), force=force_unlock) as own:
        return _write_report(run, title, own)


def _write_report(run: RunDir, title: str | None, lock: storage.RunLock) -> str:
    inputs = load_inputs(run)
    page = render(inputs, title or f"ganlode report: {run.read_record().run_kind}")
    out = run.file(REPORT_FILE)
    lock.check()
    storage.write_bytes_atomic(out, page.encode("utf-8"))
    return out
