"""The Python API alone: a transfer and a two-source mining run, sampled from the returned generators."""

from __future__ import annotations

import pytest
import torch

import ganlode

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_import_ganlode_is_cheap_and_versioned():
    import subprocess
    import sys

    code = "import sys, ganlode; print(ganlode.__version__, 'torch' in sys.modules, 'ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == ganlode.__version__ and out[0][0].isdigit()
    assert out[1:] == ["False", "False"]  # the entry points load torch and Ray on first use
    assert set(ganlode.__all__) >= {"transfer", "mine", "tune", "evaluate", "load", "__version__"}


def test_transfer_and_two_source_mining_through_the_api(tiny_source, tmp_path, monkeypatch):
    run = ganlode.transfer(tiny_source, "mnist5k:7@12", method="freezed", out=str(tmp_path / "t"), steps=3,
                           eval_every=1, eval_n=16, batch=8, n_critic=1)
    assert isinstance(run, ganlode.TransferRun) and run.method == "freezed" and run.path == str(tmp_path / "t")
    assert set(run.metrics) >= {"fid", "kmmd", "mv"} and run.best_step in (0, 1, 2, 3)
    assert [h["step"] for h in run.history] == [0, 1, 2, 3]
    g = run.generator
    assert isinstance(g, torch.nn.Module) and not g.training
    with torch.no_grad():
        x = g(torch.randn(5, g.latent_dim))
    assert x.shape == (5, 1, 28, 28) and float(x.abs().max()) <= 1
    assert torch.equal(run.sample(6, seed=1), run.sample(6, seed=1))
    # evaluate on the test split reproduces the run's recorded test figures
    again = ganlode.evaluate(run.path, n=16)
    assert again["fid"] == pytest.approx(run.metrics["fid"], rel=1e-6)

    mix = ganlode.mine([tiny_source, tiny_source], "mnist5k:7@12", out=str(tmp_path / "m"), mining_steps=2,
                       finetune_steps=1, batch=8, in_process=True, eval_n=16, window=10)
    assert isinstance(mix, ganlode.MineRun) and len(mix.shares) == 2 and sum(mix.shares) == pytest.approx(1)
    mixture = mix.generator
    assert isinstance(mixture, torch.nn.Module)
    images = mixture.sample(7, torch.Generator().manual_seed(0))
    assert images.shape == (7, 1, 28, 28)
    loaded = ganlode.load(mix.path)
    assert torch.equal(loaded.sample(4, seed=2), mix.sample(4, seed=2))
