"""`ganlode demo --quick` with an even smaller budget: the report is whole and says what ran."""

from __future__ import annotations

import base64
import json
import re

from ganlode.orchestrator.cli.main import main
from ganlode.orchestrator.pipelines.demo import BASELINES
from ganlode.orchestrator.artifacts.rundir import RunDir

TINY = ["--mining-steps", "3", "--finetune-steps", "1", "--transfer-steps", "3", "--eval-every", "0", "--no-progress"]


def test_demo_quick_writes_a_complete_report(ray_cluster, tmp_path, capsys):
    out = str(tmp_path / "demo")
    assert main(["demo", "--quick", "--out", out, *TINY]) == 0
    printed = capsys.readouterr().out
    assert "report:" in printed and "report.html" in printed
    run = RunDir(out)
    page = open(run.file("report.html"), encoding="utf-8").read()
    # every image and link resolves inside the file: inline PNGs, no external references
    refs = re.findall(r"(?:src|href)=['\"]([^'\"]+)['\"]", page)
    assert refs
    for ref in refs:
        assert ref.startswith("data:image/png;base64,"), ref[:60]
        assert base64.b64decode(ref.split(",", 1)[1]).startswith(b"\x89PNG")
    # a results row per method: the four baselines and the multi-source run
    rows = re.findall(r"<tr><td>([^<]+)</td>", page)
    assert sorted(rows) == sorted([*BASELINES, "minegan (4 sources)"])
    # the selector's shares plot exists, against the true shares
    assert "alt='shares'" in page
    # the shares sampling uses (coverage, estimated before mining) are printed, tabled, and near the truth
    assert "mined shares (coverage)" in printed and "Sampling uses the <b>coverage</b> shares" in page
    doc = json.loads(open(run.file("shares.json")).read())
    assert doc["routed"] and doc["kept"] == ["zoo:digits-0to4", "zoo:animals-5to9"]
    assert doc["max_error"]["coverage"] <= 0.05
    assert run.read_config()["true_shares"] == {
        "zoo:digits-0to4": 0.3, "zoo:digits-5to9": 0.0, "zoo:animals-0to4": 0.0, "zoo:animals-5to9": 0.7}
    # sample grids per method beside real target images
    for name in (*BASELINES, "target-mining", "target-baselines", "mine-mixed"):
        assert f"alt='{name}'" in page, name
    # the mined sources' grids are named after the sources routing kept, in the mined model's order
    assert "mined from zoo:digits-0to4" in page and "mined from zoo:animals-5to9" in page
    assert "mined from zoo:digits-5to9" not in page and "fixed at the coverage estimate" in page
