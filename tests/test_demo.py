"""`ganlode demo --quick` with an even smaller budget: the report is whole and tells the story in order."""

from __future__ import annotations

import base64
import json
import re

from ganlode.orchestrator.artifacts.rundir import RunDir
from ganlode.orchestrator.cli.main import main
from ganlode.orchestrator.pipelines.demo import TARGET

TINY = ["--mining-steps", "3", "--finetune-steps", "1", "--eval-every", "0", "--no-progress"]
DIGITS, ZEBRAS = "zoo:digits-0to4", "zoo:animals-5to9"


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
    # 1. recommend weighed the whole zoo (8 gray 28x28 sources) and picked the two that make the target
    rec = json.loads(open(run.file("recommend.json")).read())
    assert rec["target"] == TARGET and len(rec["candidates"]) == 8 and rec["probe_steps"] == 0
    assert rec["recommendation"]["kind"] == "mine" and rec["recommendation"]["sources"] == [ZEBRAS, DIGITS]
    assert "Which sources to start from" in page and f"recommended: {ZEBRAS} + {DIGITS}" in printed
    # 2. the recommended set was mined, routed, with the coverage shares near the truth
    doc = json.loads(open(run.file("shares.json")).read())
    assert doc["routed"] and doc["sources"] == [ZEBRAS, DIGITS] and doc["kept"] == [ZEBRAS, DIGITS]
    assert doc["max_error"]["coverage"] <= 0.05
    assert run.read_config()["true_shares"] == {ZEBRAS: 0.7, DIGITS: 0.3}
    assert "mined shares (coverage)" in printed and "Sampling uses the <b>coverage</b> shares" in page
    # 3. a results row per run, every one on the same target: the mined set and the top single source
    rows = re.findall(r"<tr><td>([^<]+)</td>", page)
    mined = "minegan (2 sources: animals-5to9 + digits-0to4)"
    assert mined in rows and "finetune from animals-5to9" in rows
    targets = {r["target"] for r in run.read_metrics().to_pylist()}
    assert targets == {TARGET}
    # sample grids per run beside real target images; the mined grids are named after their sources
    for name in ("target", "mine-mixed", "finetune-from-animals-5to9"):
        assert f"alt='{name}'" in page, name
    assert f"mined from {DIGITS}" in page and f"mined from {ZEBRAS}" in page and "fixed at the coverage estimate" in page
