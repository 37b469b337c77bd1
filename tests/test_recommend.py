"""`ganlode recommend`: which sources to start from, measured on the validation split, on Ray."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from ganlode.orchestrator.cli.main import main
from ganlode.orchestrator.pipelines import recommend as R

DIGITS, ANIMALS = "zoo:digits-5to9", "zoo:animals-5to9"
TARGET = "mnist5k:7@20"


def _run_json(capsys, argv):
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_a_source_that_cannot_make_the_target_ranks_below_one_that_can(ray_cluster, tmp_path, capsys):
    """An animal source for a digit target: coverage 0 and the worse FID, so it ranks second;
    --probe-steps 0 skips the probe (no probe figures, no probe time), and both outputs agree."""
    out = tmp_path / "rec"
    doc = _run_json(capsys, ["recommend", "--target", TARGET, "--source", ANIMALS, "--source", DIGITS,
                             "--probe-steps", "0", "--eval-n", "60", "--no-progress", "--json", "--out", str(out)])
    ranked = [c["source"] for c in doc["candidates"]]
    assert ranked == [DIGITS, ANIMALS]
    by = {c["source"]: c for c in doc["candidates"]}
    assert by[DIGITS]["coverage"] == pytest.approx(1.0) and by[ANIMALS]["coverage"] == 0.0
    assert by[DIGITS]["fid"] < by[ANIMALS]["fid"]
    assert doc["recommendation"]["kind"] == "single" and doc["recommendation"]["sources"] == [DIGITS]
    assert doc["probe_steps"] == 0 and doc["split"] == "val" and doc["n_val"] == 60
    assert all(c["probe_fid"] is None and c["probe_s"] == 0.0 for c in doc["candidates"])
    # the table on disk says the same, ranked
    table = pq.read_table(out / R.TABLE_FILE).to_pylist()
    assert [r["source"] for r in table] == ranked and [r["rank"] for r in table] == [1, 2]
    assert [r["recommended"] for r in table] == [True, False]
    assert json.loads((out / R.JSON_FILE).read_text())["candidates"] == doc["candidates"]


def test_the_probe_fine_tunes_each_candidate_and_ranks_by_its_validation_fid(ray_cluster, tmp_path, capsys):
    doc = _run_json(capsys, ["recommend", "--target", TARGET, "--source", DIGITS, "--source", ANIMALS,
                             "--probe-steps", "2", "--eval-n", "60", "--no-progress", "--json",
                             "--out", str(tmp_path / "rec")])
    cands = doc["candidates"]
    assert doc["probe_steps"] == 2 and doc["probe_method"] == "finetune"
    assert all(math.isfinite(c["probe_fid"]) and c["probe_s"] > 0 and c["probe_steps"] == 2 for c in cands)
    assert [c["probe_fid"] for c in cands] == sorted(c["probe_fid"] for c in cands)
    assert cands[0]["source"] == DIGITS
    # the probe trained: its model is not the unmined one
    assert all(c["probe_fid"] != c["fid"] for c in cands)


def test_text_output_names_the_pick_and_an_existing_table_is_never_overwritten(ray_cluster, tmp_path, capsys):
    out = tmp_path / "rec"
    argv = ["recommend", "--target", TARGET, "--source", DIGITS, "--probe-steps", "0", "--eval-n", "30",
            "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"recommendation: start from {DIGITS}" in printed and "why: " in printed
    before = (out / R.JSON_FILE).read_bytes()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists already" in err[0] and "--out" in err[0]
    assert (out / R.JSON_FILE).read_bytes() == before


def _folder(path, n: int, size: int, channels: int) -> str:
    from PIL import Image

    rng = np.random.default_rng(0)
    os.makedirs(path, exist_ok=True)
    for i in range(n):
        arr = rng.integers(0, 256, (size, size, 3) if channels == 3 else (size, size), dtype=np.uint8)
        Image.fromarray(arr).save(os.path.join(path, f"{i}.png"))
    return str(path)


def test_no_candidate_of_the_targets_size_and_channels(tmp_path, capsys, one_line_error):
    target = _folder(tmp_path / "colour48", 8, 48, 3)
    one_line_error(["recommend", "--target", target, "--out", str(tmp_path / "rec")],
                    "no zoo model makes 3x48x48 images", "--source")
    one_line_error(["recommend", "--target", target, "--source", DIGITS, "--out", str(tmp_path / "rec")],
                    "3x48x48", f"{DIGITS} (1x28x28)")
    assert not (tmp_path / "rec").exists()


def test_a_target_smaller_than_the_probe_needs(tmp_path, capsys, one_line_error):
    target = _folder(tmp_path / "tiny", 6, 28, 1)  # 6 images: 4 to train on, 1 validation image, 1 test image
    one_line_error(["recommend", "--target", target, "--source", DIGITS, "--out", str(tmp_path / "rec")],
                    "1 validation images", f"at least {R.PROBE_MIN_VAL}", "--probe-steps 0")
    assert not (tmp_path / "rec").exists()


def _cand(source, coverage, fid, probe=None):
    return R.Candidate(source=source, coverage=coverage, fid=fid, probe_fid=probe)


def test_decide_mines_the_sources_coverage_keeps_else_starts_from_the_top_one():
    kind, sources, shares, reason = R.decide([_cand("a", 0.6, 10.0), _cand("b", 0.0, 20.0), _cand("c", 0.2, 30.0)], 0)
    assert kind == "mine" and sources == ["a", "c"] and shares == pytest.approx([0.75, 0.25])
    assert "2 sources" in reason and "75%" in reason
    kind, sources, shares, reason = R.decide([_cand("b", 1.0, 20.0, probe=5.0), _cand("a", 0.0, 10.0, probe=7.0)], 100)
    assert (kind, sources, shares) == ("single", ["b"], [1.0]) and "100-step" in reason and "next: a 7.0" in reason


def test_ranking_reads_the_probe_when_there_is_one_else_coverage_then_fid():
    without = sorted([_cand("far", 0.0, 10.0), _cand("covers", 1.0, 50.0), _cand("mid", 0.0, 30.0)],
                     key=R.Candidate.rank_key)
    assert [c.source for c in without] == ["covers", "far", "mid"]
    probed = sorted([_cand("x", 1.0, 10.0, probe=40.0), _cand("y", 0.0, 90.0, probe=20.0),
                     _cand("z", 0.0, 5.0, probe=float("nan"))], key=R.Candidate.rank_key)
    assert [c.source for c in probed] == ["y", "x", "z"]  # a diverged probe (NaN) ranks last
