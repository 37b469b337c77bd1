"""``ganlode mine``: the artifact it writes, ``sample`` reading it, ``--resume``, and bad input."""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from ganlode.orchestrator.cli.main import main

TARGET = "mnist5k:3@12+animals:zebra@12"


@pytest.fixture(scope="module")
def sources(tmp_path_factory, provenanced_source):
    """Tiny untrained sources with the data provenance of real ones (digits 0-4, animals 5-9)."""
    root = tmp_path_factory.mktemp("sources")
    return {name: provenanced_source(root / name, spec, i, resolution=res)
            for i, (name, spec, res) in enumerate([("digits", "mnist5k:0-4", 28), ("animals", "animals:5-9", 28),
                                                  ("wide", "mnist5k:0-4", 32)])}


def mine_args(sources, out, *extra):
    return ["mine", "--source", sources["digits"], "--source", sources["animals"], "--target", TARGET,
            "--mining-steps", "6", "--finetune-steps", "2", "--batch", "8", "--out", str(out),
            "--threads", "1", "--no-progress", "--eval-n", "60", *extra]


def final_tensors(run) -> dict:
    return load_file(os.path.join(run, "checkpoints", "final", "model.safetensors"))


def test_mine_writes_one_mined_artifact_that_sample_reads(sources, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(mine_args(sources, run, "--in-process")) == 0
    assert "shares" in capsys.readouterr().out
    config = json.loads((run / "checkpoints" / "final" / "config.json").read_text())
    assert config["model_kind"] == "mined" and len(config["sources"]) == 2
    tensors = final_tensors(run)
    for i in range(2):
        assert any(k.startswith(f"sources.{i}.generator.") for k in tensors)
        assert any(k.startswith(f"sources.{i}.miner.") for k in tensors)
    p = tensors["shares"]
    assert torch.all(p >= 0) and float(p.sum()) == pytest.approx(1.0) and p.tolist() == pytest.approx(config["shares"])
    assert config["true_shares"] == pytest.approx([0.5, 0.5])  # 3s only in digits 0-4, zebras only in animals 5-9
    shares = pq.read_table(run / "shares.parquet").to_pylist()
    assert {r["step"] for r in shares} == set(range(1, 9)) and {r["index"] for r in shares} == {0, 1}
    for name in ("mixed", "source-0", "source-1", "shares"):
        assert (run / "samples" / f"{name}.png").stat().st_size > 0
    metrics = pq.read_table(run / "metrics.parquet").to_pylist()
    final = {r["metric"] for r in metrics if r["step"] == 8}
    assert {"fid", "kmmd", "mv", "share_0", "share_error_max"} <= final and all(r["method"] == "mine" for r in metrics)
    assert not [n for n in os.listdir(run / "checkpoints") if n.startswith("step-")]  # pruned once final exists
    assert main(["sample", str(run), "--n", "9", "--out", str(tmp_path / "grid.png")]) == 0
    from ganlode.orchestrator.artifacts.loaders import load_model

    model = load_model(str(run))
    x = model.sampler(5, torch.Generator().manual_seed(0))
    assert x.shape == (5, 1, 28, 28) and model.config["model_kind"] == "mined"


def test_resume_continues_from_the_last_checkpoint_without_repeating_steps(sources, tmp_path, capsys):
    from ganlode.orchestrator.pipelines.mine import mine_config, run_mine

    cfg = mine_config("ns-r1", mining_steps=6, finetune_steps=2, batch=8)
    evaluated = []

    def crash_at_6(step, metrics):
        evaluated.append(step)
        if step == 6:
            raise KeyboardInterrupt  # as if the run were killed after its step-4 checkpoint

    run = str(tmp_path / "run")
    common = dict(in_process=True, threads=1, show_progress=False, eval_n=60)
    with pytest.raises(KeyboardInterrupt):
        run_mine([sources["digits"], sources["animals"]], TARGET, run, cfg, checkpoint_every=4, eval_every=2,
                 on_eval=crash_at_6, **common)
    assert evaluated == [0, 2, 4, 6]
    assert os.listdir(os.path.join(run, "checkpoints")) == ["step-4"]
    assert main(mine_args(sources, run, "--in-process", "--checkpoint-every", "4", "--eval-every", "2",
                              "--resume")) == 0
    assert json.loads(open(os.path.join(run, "config.json")).read())["resumed_from"] == 4
    steps = [r["step"] for r in pq.read_table(os.path.join(run, "shares.parquet")).to_pylist() if r["index"] == 0]
    assert steps == list(range(1, 9))  # every step once
    rows = pq.read_table(os.path.join(run, "metrics.parquet")).to_pylist()
    fid_steps = [r["step"] for r in rows if r["metric"] == "fid" and r["split"] == "val"]
    assert [r["step"] for r in rows if r["metric"] == "fid" and r["split"] == "test"] == [8]  # once, at the end
    assert fid_steps == [0, 2, 4, 6, 8]  # the evaluation at 6 from before the crash is not doubled
    # the resumed run equals an uninterrupted one
    straight = str(tmp_path / "straight")
    run_mine([sources["digits"], sources["animals"]], TARGET, straight, cfg, checkpoint_every=4, eval_every=2, **common)
    a, b = final_tensors(run), final_tensors(straight)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # a finished run resumes to nothing, and is never overwritten without --resume
    assert main(mine_args(sources, run, "--in-process", "--resume")) == 0
    capsys.readouterr()
    assert main(mine_args(sources, run, "--in-process")) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["one source", "different sizes", "missing target"])
def test_bad_input_exits_2_with_one_line(sources, tmp_path, capsys, case):
    args = mine_args(sources, tmp_path / "bad", "--in-process")
    if case == "one source":
        args = args[:1] + args[3:]
    elif case == "different sizes":
        args[args.index(sources["animals"])] = sources["wide"]
    else:
        i = args.index("--target")
        args = args[:i] + args[i + 2:]
    try:
        code = main(args)
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error:") and "\n" not in err, err
    assert {"one source": "two or more", "different sizes": "different sizes", "missing target": "--target"}[case] in err
    assert not (tmp_path / "bad").exists()  # nothing written


def test_mine_on_ray_matches_the_in_process_run(sources, tmp_path, ray_cluster, capsys):
    ray_run, local_run = tmp_path / "ray", tmp_path / "local"
    assert main(mine_args(sources, ray_run, "--checkpoint-every", "3")) == 0
    assert main(mine_args(sources, local_run, "--in-process", "--checkpoint-every", "3")) == 0
    a, b = final_tensors(ray_run), final_tensors(local_run)
    assert a.keys() == b.keys()
    assert max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel()) <= 1e-6
    assert json.loads((ray_run / "config.json").read_text())["engine"] == "ray"
