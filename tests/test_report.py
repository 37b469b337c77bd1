"""report.html: self-contained, one row per method, and bad inputs leave the run untouched."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil

import torch

from ganlode.orchestrator.cli.main import main
from ganlode.orchestrator.artifacts.rundir import SHARES_FILE, RunDir, metric_rows
from ganlode.orchestrator.data.images import grid_png


def _fake_run(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    run.write_config({"kind": "transfer", "target": "mnist5k:7@25", "true_shares": {"a": 0.3, "b": 0.7}})
    rows = []
    for method, base in (("finetune", 30.0), ("freezed", 20.0), ("scratch", 90.0)):
        for step in (10, 20):
            rows += metric_rows(method, step, {"fid": base / step * 10, "kmmd": base / 1000, "mv": 0.9}, seed=0, split="val")
        rows += metric_rows(method, 20, {"fid": base + 0.5, "kmmd": base / 1000, "mv": 0.9}, seed=0, split="test")
    rows += metric_rows("freezed", 10, {"fid": 19.25, "kmmd": 0.02, "mv": 0.9}, seed=0, split="test")  # best by val
    run.append_metrics(rows)
    g = torch.Generator().manual_seed(0)
    for name in ("target", "finetune", "freezed", "scratch"):
        run.write_sample(name, grid_png(torch.rand(4, 1, 28, 28, generator=g) * 2 - 1))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"step": [0, 10, 0, 10], "source": ["a", "a", "b", "b"], "share": [0.5, 0.32, 0.5, 0.68]}),
                   run.file(SHARES_FILE))
    return run


def test_report_is_self_contained_with_a_row_per_method(tmp_path, capsys):
    run = _fake_run(tmp_path)
    assert main(["report", run.path]) == 0
    page = open(run.file("report.html"), encoding="utf-8").read()
    srcs = re.findall(r"src='([^']*)'", page) + re.findall(r'href="([^"]*)"', page)
    assert srcs, "the report shows images"
    for src in srcs:  # every image is inline: it opens with no server and no network
        assert src.startswith("data:image/png;base64,"), src[:40]
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    rows = re.findall(r"<tr><td>([^<]+)</td>", page)
    assert sorted(rows) == ["finetune", "freezed", "freezed (best by validation, step 10)", "scratch"]
    # the table holds the test split's figures (20.5 for freezed), never the validation ones (10.0)
    fid = dict(re.findall(r"<tr><td>([^<]+)</td><td class='[a-z]*'>([0-9.]+)</td>", page))
    assert fid == {"finetune": "30.5", "freezed": "20.5", "freezed (best by validation, step 10)": "19.25",
                   "scratch": "90.5"}
    assert "alt='shares'" in page and "alt='curves'" in page
    assert "real target images" in page


def _digest(folder):
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, folder)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def test_corrupt_metrics_exit_2_and_leave_files(tmp_path, capsys):
    run = _fake_run(tmp_path)
    parts = run.file("metrics.parquet")  # a folder of part files, one per append
    with open(os.path.join(parts, sorted(os.listdir(parts))[-1]), "r+b") as f:
        f.truncate(100)
    before = _digest(run.path)
    assert main(["report", run.path]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "metrics.parquet is corrupt" in err[0]
    assert _digest(run.path) == before


def test_missing_metrics_exit_2_and_leave_files(tmp_path, capsys):
    run = _fake_run(tmp_path)
    shutil.rmtree(run.file("metrics.parquet"))
    before = _digest(run.path)
    assert main(["report", run.path]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no metrics.parquet" in err[0]
    assert _digest(run.path) == before


def test_report_on_a_non_run_exit_2(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no ganlode run" in capsys.readouterr().err


def test_best_marks_compare_only_rows_on_the_same_target(tmp_path):
    """A method name with parentheses ("minegan (4 sources)") keeps its own target: each target
    has its own best row."""
    run = RunDir(str(tmp_path / "run"))
    run.write_config({"kind": "demo", "target": "a; b"})
    rows = metric_rows("minegan (4 sources)", 5, {"fid": 800.0}, target="mix", split="test")
    rows += metric_rows("finetune", 5, {"fid": 300.0}, target="seven", split="test")
    rows += metric_rows("scratch", 5, {"fid": 900.0}, target="seven", split="test")
    run.append_metrics(rows)
    assert main(["report", run.path]) == 0
    page = open(run.file("report.html"), encoding="utf-8").read()
    cells = dict(re.findall(r"<tr><td>([^<]+)</td><td [^>]*><code>[^<]*</code></td><td class='([a-z]*)'>", page))
    assert cells == {"minegan (4 sources)": "best", "finetune": "best", "scratch": ""}
