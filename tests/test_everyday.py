"""Everyday use: scoring any folder, one PNG per seed, run.yaml / --config, --json, --force-unlock.

The transfers here are tiny (an 8-wide source, 2 steps, 16 evaluation images) and run on CPU.
"""

from __future__ import annotations

import json
import os
import re
from types import SimpleNamespace

import numpy as np
import pyarrow.compute as pc
import pytest
import torch

from ganlode.orchestrator.artifacts.rundir import RunDir
from ganlode.orchestrator.cli.main import main
from ganlode.orchestrator.evaluation import protocol

TARGET = "mnist5k:7@12"
N = 16
SEED = 2
TRANSFER = ["--method", "finetune", "--steps", "2", "--eval-every", "1", "--eval-n", str(N), "--batch", "8",
            "--n-critic", "1", "--seed", "1", "--no-progress"]

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _json(capsys) -> dict:
    """The one JSON object a --json command printed: stdout holds nothing else."""
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    return json.loads(lines[0])


def _metric_values(path: str) -> list[list]:
    """The value columns of a run's metrics table, in a fixed order."""
    t = RunDir(path).read_metrics()
    t = t.sort_by([("split", "ascending"), ("step", "ascending"), ("metric", "ascending"), ("features", "ascending")])
    return [t.column(c).to_pylist() for c in ("split", "step", "metric", "value", "n", "seed", "target")]


@pytest.fixture(scope="module")
def run(tiny_source, tmp_path_factory) -> tuple[str, dict, list]:
    """One tiny transfer run through the CLI with --json: (its directory, its JSON summary, its
    metrics as written, before any test appends `eval` rows to it)."""
    import contextlib
    import io

    path = str(tmp_path_factory.mktemp("everyday") / "run")
    torch.set_num_threads(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["transfer", "--source", tiny_source, "--target", TARGET, *TRANSFER, "--out", path, "--json"]) == 0
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1, out.getvalue()
    return path, json.loads(lines[0]), _metric_values(path)


# ---------------------------------------------------------------- 3. run.yaml and --config


def test_transfer_writes_its_resolved_options_as_run_yaml(run):
    import yaml

    path, summary, _ = run
    doc = yaml.safe_load(open(os.path.join(path, "run.yaml")))
    assert summary["config"] == os.path.join(path, "run.yaml")
    assert doc["target"] == TARGET and doc["method"] == "finetune" and doc["steps"] == 2 and doc["out"] == path
    assert doc["batch"] == 8 and doc["n-critic"] == 1 and doc["seed"] == 1
    assert doc["features"] == "auto" and doc["eval-every"] == 1  # defaults and given flags alike
    assert "freeze-depth" in doc and doc["freeze-depth"] is None  # unset: the method's default, again
    assert not {"config", "force-unlock", "resume"} & set(doc)


def test_a_run_rerun_from_its_config_reproduces_it_exactly(run, tmp_path, capsys):
    path, _, written = run
    again = str(tmp_path / "again")
    # the config has --json: true and the old --out; a flag beside it wins
    assert main(["transfer", "--config", os.path.join(path, "run.yaml"), "--out", again]) == 0
    assert json.loads(capsys.readouterr().out)["run"] == again
    assert _metric_values(again) == written
    weights = os.path.join("checkpoints", "final", "model.safetensors")
    assert open(os.path.join(again, weights), "rb").read() == open(os.path.join(path, weights), "rb").read()
    assert pc.all(pc.equal(RunDir(again).read_metrics().column("target"), TARGET)).as_py()


def test_pretrain_writes_run_yaml_that_parses_back(tmp_path, capsys):
    import yaml

    from ganlode.orchestrator.cli.main import parse

    out = str(tmp_path / "src")
    assert main(["pretrain", "--data", "mnist5k:0-1@16", "--out", out, "--steps", "1", "--batch", "8", "--latent-dim", "8",
                 "--g-width", "8", "--d-width", "8", "--no-progress"]) == 0
    doc = yaml.safe_load(open(os.path.join(out, "run.yaml")))
    assert doc["data"] == "mnist5k:0-1@16" and doc["steps"] == 1 and doc["lr"] == 2e-4 and doc["loss"] == "ns-r1"
    ctx = parse(["pretrain", "--config", os.path.join(out, "run.yaml"), "--out", str(tmp_path / "b")])
    assert ctx.params["latent_dim"] == 8 and ctx.params["out"] == str(tmp_path / "b")


# ---------------------------------------------------------------- 1. eval on folders


def _write_pngs(folder, images: torch.Tensor, prefix: str) -> None:
    from ganlode.orchestrator.data.images import png_bytes, to_uint8

    os.makedirs(folder, exist_ok=True)
    for i, hwc in enumerate(to_uint8(images)):
        with open(os.path.join(folder, f"{prefix}{i:04d}.png"), "wb") as f:
            f.write(png_bytes(hwc))


@pytest.fixture
def quantized_samples(monkeypatch):
    """The run's sampler as a PNG stores it (uint8): a model draws floats, a PNG keeps 8 bits, and
    the comparison is about the protocol, not about rounding."""
    from ganlode.orchestrator.artifacts import loaders
    from ganlode.orchestrator.data.images import from_uint8, to_uint8
    from ganlode.orchestrator.pipelines import evaluate

    real = loaders.load_model

    def load(path):
        model = real(path)
        sampler = model.sampler
        model.sampler = lambda n, g: from_uint8(to_uint8(sampler(n, g)).transpose(0, 3, 1, 2))
        return model

    monkeypatch.setattr(evaluate, "load_model", load)
    return load


def test_eval_of_two_folders_agrees_with_eval_of_the_run(run, tmp_path, capsys, quantized_samples):
    from ganlode.orchestrator import data

    path = run[0]
    assert main(["eval", path, "--n", str(N), "--seed", str(SEED), "--json"]) == 0
    by_run = _json(capsys)
    assert by_run["n"] == N and by_run["reference"] == {"kind": "spec", "path": TARGET, "split": "test", "n": N}

    # the same counts and seed, as PNG folders: the run's samples and its test reference
    samples = quantized_samples(path).sampler(N, protocol.sample_generator(SEED))
    reference = data.eval_reference(TARGET, n=N, split="test").images
    _write_pngs(tmp_path / "samples", samples, "s")
    _write_pngs(tmp_path / "reference", reference, "r")

    assert main(["eval", str(tmp_path / "samples"), "--against", str(tmp_path / "reference"), "--json"]) == 0
    by_folders = _json(capsys)
    assert by_folders["samples"]["n"] == by_folders["reference"]["n"] == N
    assert by_folders["samples"]["kind"] == by_folders["reference"]["kind"] == "folder"
    for key in ("fid", "kmmd", "mv", "kmmd_bandwidth"):
        assert by_folders["metrics"][key] == pytest.approx(by_run["metrics"][key], rel=1e-6, abs=1e-6), key

    # a folder against the spec: the reference is the spec's test split, drawn as the run's was
    assert main(["eval", str(tmp_path / "samples"), "--target", TARGET, "--json"]) == 0
    by_spec = _json(capsys)
    assert by_spec["reference"]["kind"] == "spec" and by_spec["reference"]["split"] == "test"
    for key in ("fid", "kmmd", "mv", "kmmd_bandwidth"):
        assert by_spec["metrics"][key] == pytest.approx(by_run["metrics"][key], rel=1e-6, abs=1e-6), key


def test_a_folder_of_the_test_split_against_the_run_gives_the_runs_figures(run, tmp_path, capsys):
    """FOLDER --against RUN: the folder is the reference, the model draws as many samples as it holds."""
    from ganlode.orchestrator import data

    path = run[0]
    assert main(["eval", path, "--n", str(N), "--seed", str(SEED), "--json"]) == 0
    by_run = _json(capsys)
    _write_pngs(tmp_path / "real", data.eval_reference(TARGET, n=N, split="test").images, "r")
    assert main(["eval", str(tmp_path / "real"), "--against", path, "--seed", str(SEED), "--json"]) == 0
    by_model = _json(capsys)
    assert by_model["samples"]["kind"] == "model" and by_model["samples"]["n"] == N
    assert by_model["reference"] == {"kind": "folder", "path": str(tmp_path / "real"), "n": N, "available": N}
    for key in ("fid", "kmmd", "mv", "kmmd_bandwidth"):
        assert by_model["metrics"][key] == pytest.approx(by_run["metrics"][key], rel=1e-6, abs=1e-6), key

    # text: the counts are stated; a larger folder is subsampled to the other side's size
    _write_pngs(tmp_path / "more", data.eval_reference(TARGET, split="test").images, "m")
    assert main(["eval", str(tmp_path / "more"), "--against", str(tmp_path / "real")]) == 0
    text = capsys.readouterr().out
    assert f"{N} of " in text and f"{N} images of {tmp_path / 'real'} (reference)" in text
    assert re.search(r"^fid\s+\d", text, re.M) and re.search(r"^kmmd_bandwidth\s+\d", text, re.M)


# ---------------------------------------------------------------- 2. sample --seeds, --trunc, --class


def test_sample_seeds_are_one_png_per_seed_and_reproducible(tiny_source, tmp_path, capsys):
    a, b, c = (str(tmp_path / x) for x in "abc")
    assert main(["sample", tiny_source, "--seeds", "3,7", "--out", a]) == 0
    assert main(["sample", tiny_source, "--seeds", "3,7", "--out", b]) == 0
    assert sorted(os.listdir(a)) == ["seed0003.png", "seed0007.png"]
    for name in os.listdir(a):
        assert open(os.path.join(a, name), "rb").read() == open(os.path.join(b, name), "rb").read()
    assert main(["sample", tiny_source, "--seeds", "5-7", "--out", c]) == 0  # a seed's image is its own
    assert open(os.path.join(c, "seed0007.png"), "rb").read() == open(os.path.join(a, "seed0007.png"), "rb").read()
    assert sorted(os.listdir(c)) == ["seed0005.png", "seed0006.png", "seed0007.png"]
    assert "seed0005.png" in capsys.readouterr().out


def test_truncation_scales_the_latents(tiny_source, tmp_path):
    from PIL import Image

    from ganlode.orchestrator.artifacts.loaders import load_model
    from ganlode.orchestrator.artifacts.truncation import sample_seed, truncated_sampler

    model = load_model(tiny_source)
    g = model.module
    half = truncated_sampler(model, 0.5)
    z = torch.randn(1, g.latent_dim, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.allclose(sample_seed(half, 4), g(0.5 * z).clamp(-1, 1))
    assert torch.equal(sample_seed(truncated_sampler(model, 1.0), 4), sample_seed(model.sampler, 4))
    out = str(tmp_path / "zero")
    assert main(["sample", tiny_source, "--seeds", "0-2", "--trunc", "0", "--out", out]) == 0  # psi 0: the mean latent
    arrays = [np.asarray(Image.open(os.path.join(out, f"seed{s:04d}.png"))) for s in range(3)]
    assert all(np.array_equal(arrays[0], x) for x in arrays[1:])


def test_sample_without_seeds_still_writes_a_grid(tiny_source, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "g.png"
    assert main(["sample", tiny_source, "--n", "4", "--out", str(out), "--trunc", "0.7"]) == 0
    assert Image.open(out).size[0] > 28 and "truncation 0.7" in capsys.readouterr().out


# ---------------------------------------------------------------- 4. --json


def test_zoo_json_carries_the_table(capsys):
    assert main(["zoo"]) == 0
    text = capsys.readouterr().out
    assert main(["zoo", "--json"]) == 0
    doc = _json(capsys)
    assert doc["domains"] == [m["name"] for m in doc["models"]] and doc["models"]
    for m in doc["models"]:
        assert m["name"] in text and m["data"] in text and m["use_as"] == f"zoo:{m['name']}"
        for d, fid in m["fid"].items():
            assert f"{fid:.2f}" in text


def test_data_show_json_carries_the_counts(tmp_path, capsys):
    grid = str(tmp_path / "g.png")
    assert main(["data", "show", "mnist5k:3@6+animals:zebra@4", "--out", grid]) == 0
    text = capsys.readouterr().out
    assert main(["data", "show", "mnist5k:3@6+animals:zebra@4", "--out", grid, "--json"]) == 0
    doc = _json(capsys)
    assert doc["total"] == 10 and doc["resolution"] == 28 and doc["channels"] == 1 and doc["grid_images"] == 10
    assert doc["counts"] == [{"source": "mnist5k", "class": "3", "images": 6}, {"source": "animals", "class": "zebra", "images": 4}]
    for row in doc["counts"]:
        assert re.search(rf"^{row['source']}\s+{row['class']}\s+{row['images']}$", text, re.M)


def test_transfer_json_carries_the_summary_figures(run):
    path, doc, written = run
    assert doc["run"] == path and doc["target"] == TARGET and doc["split"] == "test" and doc["n"] == N
    final = {metric: value for split, step, metric, value, *_ in zip(*written) if split == "test" and step == 2}
    for key in ("fid", "kmmd", "mv"):
        assert doc["metrics"][key] == pytest.approx(final[key])


def test_mine_json_carries_shares_and_figures(tiny_source, tmp_path, capsys):
    out = str(tmp_path / "mix")
    argv = ["mine", "--source", tiny_source, "--source", tiny_source, "--target", "mnist5k:0@8+mnist5k:1@8",
            "--mining-steps", "2", "--finetune-steps", "1", "--batch", "8", "--threads", "1", "--no-progress",
            "--eval-n", "16", "--in-process", "--loss", "ns-r1", "--out", out, "--json"]
    assert main(argv) == 0
    doc = _json(capsys)
    config = json.load(open(os.path.join(out, "checkpoints", "final", "config.json")))
    assert [s["share"] for s in doc["shares"]] == pytest.approx(config["shares"])
    assert [s["source"] for s in doc["shares"]] == [tiny_source, tiny_source]
    assert {"fid", "kmmd", "mv"} <= set(doc["metrics"]) and doc["config"] == os.path.join(out, "run.yaml")
    assert os.path.exists(os.path.join(out, "run.yaml"))


def _fake_outcome(tiny_source, out):
    from ganlode.orchestrator.search.spec import SearchSpec

    spec = SearchSpec(sources=(tiny_source,), target=TARGET, method="freezed", space={}, trials=2, concurrent=1,
                      steps=4, eval_every=2, out=out)
    rows = [{"trial_id": "t1", "freeze_depth": 1, "step": 4, "kmmd": 0.25, "fid": 12.5, "mv": 0.75, "status": "done",
             "wall_s": 1.0},
            {"trial_id": "t2", "freeze_depth": 2, "step": 4, "kmmd": 0.5, "fid": float("nan"), "mv": 0.5,
             "status": "done", "wall_s": 1.0}]
    prepared = SimpleNamespace(spec=spec, space=SimpleNamespace(names=["freeze_depth"]))
    best = {"row": 0, "trial_id": "t1", "value": 0.25, "config": {"freeze_depth": 1}, "run": f"{out}/best"}
    return SimpleNamespace(complete=True, finished=2, total=2, rows=rows, prepared=prepared, best=best)


def test_tune_json_carries_the_trials_and_the_best(tiny_source, tmp_path, capsys, monkeypatch):
    from ganlode.orchestrator.search import run as search_run

    out = str(tmp_path / "t")

    def fake(spec, *, resume=False, verbose=1, force_unlock=False, callbacks=()):
        print("Tune's progress table")  # must not reach stdout under --json
        return _fake_outcome(tiny_source, spec.out)

    monkeypatch.setattr(search_run, "run_search", fake)
    argv = ["tune", "--source", tiny_source, "--target", TARGET, "--method", "freezed", "--trials", "2", "--out", out]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert "Tune's progress table" in captured.err and "Tune's progress table" not in captured.out
    assert doc["best"]["trial_id"] == "t1" and f"{doc['metric']}={doc['best']['value']:.4g}" in text
    assert [r["trial_id"] for r in doc["trials"]] == ["t1", "t2"] and doc["trials"][1]["fid"] is None  # NaN: null
    assert doc["finished"] == doc["total"] == 2


def test_demo_json_carries_the_summary_table(monkeypatch, tmp_path, capsys):
    from ganlode.orchestrator.pipelines import demo

    rows = [{"method": "minegan (4 sources)", "target": "T", "fid": 12.25, "kmmd": 0.125, "mv": 0.5, "shares": "0.30 0.70"},
            {"method": "finetune", "target": "U", "fid": 30.5, "kmmd": 0.25, "mv": 0.75, "shares": ""}]

    def fake(out, budget, *, seed=0, show_progress=True, force_unlock=False):
        print("progress on stdout")
        return {"rows": rows, "report": f"{out}/report.html", "wall_s": 3.0, "true_shares": {"a": 0.3, "b": 0.7},
                "shares": {"a": 0.31, "b": 0.69}, "selector": "coverage",
                "recommendation": {"kind": "mine", "sources": ["a", "b"], "reason": "the target splits"}}

    monkeypatch.setattr(demo, "run_demo", fake)
    out = str(tmp_path / "demo")
    assert main(["demo", "--quick", "--out", out]) == 0
    text = capsys.readouterr().out
    assert main(["demo", "--quick", "--out", out, "--json"]) == 0
    doc = _json(capsys)
    assert doc["rows"] == rows and doc["true_shares"] == {"a": 0.3, "b": 0.7} and doc["report"] == f"{out}/report.html"
    assert doc["shares"] == {"a": 0.31, "b": 0.69} and doc["selector"] == "coverage"
    assert doc["recommendation"]["sources"] == ["a", "b"] and "recommended: a + b (the target splits)" in text
    assert "mined shares (coverage), true in brackets: a 0.31 (0.30), b 0.69 (0.70)" in text
    for r in rows:
        assert f"{r['fid']:.2f}" in text and f"{r['kmmd']:.4f}" in text


# ---------------------------------------------------------------- 8. --force-unlock reaches the pipeline


class _Seen(Exception):
    pass


def _spy():
    def spy(*args, force_unlock=False, **kwargs):
        raise _Seen(force_unlock)
    return spy


@pytest.mark.parametrize("module,name,argv", [
    ("ganlode.orchestrator.pipelines.transfer", "run_transfer",
     ["transfer", "--source", "S", "--target", TARGET, "--method", "finetune", "--out", "{out}"]),
    ("ganlode.orchestrator.pipelines.transfer", "resume_transfer", ["transfer", "--resume", "{out}"]),
    ("ganlode.orchestrator.pipelines.mine", "run_mine",
     ["mine", "--source", "S", "--source", "T", "--target", TARGET, "--loss", "ns-r1", "--out", "{out}"]),
    ("ganlode.orchestrator.search.run", "run_search",
     ["tune", "--source", "{source}", "--target", TARGET, "--method", "freezed", "--out", "{out}"]),
    ("ganlode.orchestrator.pipelines.pretrain", "run_pretrain", ["pretrain", "--data", TARGET, "--out", "{out}"]),
    ("ganlode.orchestrator.pipelines.demo", "run_demo", ["demo", "--out", "{out}"]),
    ("ganlode.orchestrator.pipelines.evaluate", "evaluate_model", ["eval", "{out}"]),
    ("ganlode.orchestrator.report.html", "build_report", ["report", "{out}"]),
])
def test_force_unlock_is_passed_to_the_pipeline(module, name, argv, tiny_source, tmp_path, monkeypatch):
    import importlib

    monkeypatch.setattr(importlib.import_module(module), name, _spy())
    words = [a.replace("{out}", str(tmp_path / "o")).replace("{source}", tiny_source) for a in argv]
    for flag, expected in ((["--force-unlock"], True), ([], False)):
        with pytest.raises(_Seen) as seen:
            main([*words, *flag])
        assert seen.value.args == (expected,)


def test_force_unlock_is_refused_where_a_pipeline_lacks_it():
    from ganlode.orchestrator.cli.output import unlock_kwargs
    from ganlode.orchestrator.errors import UserError

    def old(path):
        return path

    assert unlock_kwargs(old, False) == {}
    with pytest.raises(UserError, match="--force-unlock is not supported"):
        unlock_kwargs(old, True)
    assert unlock_kwargs(_spy(), True) == {"force_unlock": True}
