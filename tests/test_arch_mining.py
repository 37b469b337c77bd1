"""Multi-source mining on Ray actors with an architecture other than the DCGAN: the actors rebuild
each source from its registry dict (StyleGAN2 here), the run equals the in-process reference's,
and the mined checkpoint's record names its architecture."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from ganlode.methods import architectures
from ganlode.methods.stylegan2 import StyleGAN2Config, build_stylegan2
from ganlode.orchestrator.artifacts.checkpoint import save_checkpoint
from ganlode.orchestrator.artifacts.loaders import load_model
from ganlode.orchestrator.cli.main import main

pytestmark = pytest.mark.usefixtures("torch_one_thread")

# 32 px and narrow: a step of either source takes milliseconds.
CFG = StyleGAN2Config(resolution=32, style_dim=8, n_mlp=1, channel_multiplier=1, base_channels=4)


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    """Two random StyleGAN2 sources (seeds 0 and 1) and a folder of 24 colour 32x32 PNGs."""
    root = tmp_path_factory.mktemp("arch-mining")
    sources = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        g, d = build_stylegan2(CFG)
        path = str(root / f"stylegan2-{seed}")
        save_checkpoint(path, {"model_kind": "gan", "arch": architectures.to_dict(CFG), "train": {"loss": "ns-r1"}},
                        g.eval(), d.eval())
        sources.append(path)
    folder = root / "target" / "squares"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(24):
        img = np.zeros((32, 32, 3), np.uint8)
        img[..., i % 3] = 180
        img[8:24, 8:24] = rng.integers(0, 256, 3)
        Image.fromarray(img).save(folder / f"{i:02d}.png")
    return sources, str(folder)


def _mine(problem, out, *extra) -> list[str]:
    sources, target = problem
    return ["mine", "--source", sources[0], "--source", sources[1], "--target", target, "--out", str(out),
            "--mining-steps", "2", "--finetune-steps", "1", "--batch", "4", "--selector", "count", "--threads", "1",
            "--eval-n", "4", "--checkpoint-every", "0", "--no-progress", *extra]


def test_stylegan2_sources_mine_on_ray_as_in_process(problem, tmp_path, ray_cluster):
    ray_run, local_run = tmp_path / "ray", tmp_path / "local"
    assert main(_mine(problem, ray_run)) == 0
    assert json.loads((ray_run / "config.json").read_text())["engine"] == "ray"
    assert main(_mine(problem, local_run, "--in-process")) == 0

    # the same run: every mined tensor (each G_i after its fine-tuning step, each M_i, p) agrees
    a, b = (load_file(os.path.join(r, "checkpoints", "final", "model.safetensors")) for r in (ray_run, local_run))
    assert a.keys() == b.keys() and any(k.startswith("sources.1.generator.") for k in a)
    assert max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel()) <= 1e-5

    # the record names the architecture, top level and per source, and rebuilds it
    record = json.loads((ray_run / "checkpoints" / "final" / "config.json").read_text())
    assert record["arch"]["name"] == "stylegan2" and architectures.from_dict(record["arch"]) == CFG
    assert [architectures.from_dict(s["arch"]) for s in record["sources"]] == [CFG, CFG]

    model = load_model(str(ray_run))
    x = model.sampler(3, torch.Generator().manual_seed(0))
    assert x.shape == (3, 3, 32, 32) and torch.isfinite(x).all() and x.abs().max() <= 1
    assert main(["sample", str(ray_run), "--n", "4", "--out", str(tmp_path / "grid.png")]) == 0
