"""Colour end to end: the shipped colour zoo, every method family from it to a 25-shot emoji target,
three colour sources mined on Ray, and each image-path command on RGB images.

The evaluation of every colour run is the FID Inception's (``--features auto``); the tests keep
their references small (``--eval-n``) because it scores about 12 images/s on 2 CPU threads.
"""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from ganlode.orchestrator.cli.main import main
from ganlode.orchestrator.data import emoji
from ganlode.orchestrator.evaluation import inception

pytestmark = [
    pytest.mark.skipif(not (os.path.isfile(emoji.FONT_PATH) and os.path.isfile(emoji.LIST_PATH)),
                       reason=f"no emoji font or list: {emoji.APT_INSTALL}"),
    pytest.mark.skipif(not inception.available(), reason=f"no FID Inception weights: {inception.INSTALL}"),
]

COLOUR_ZOO = {"emoji-faces": "stylegan2", "emoji-flags": "stylegan2", "emoji-buttons": "dcgan"}
TARGET = "emoji-sub:cat-face@25"  # 25 cat faces: a new domain for every colour source
EVAL = ["--eval-n", "6"]


def _png_mode(path) -> tuple[str, tuple[int, int]]:
    with Image.open(path) as im:
        return im.mode, im.size


def _zoo_config(name: str) -> dict:
    from ganlode.orchestrator.artifacts.zoo import zoo_root

    with open(os.path.join(zoo_root(), name, "config.json")) as f:
        return json.load(f)


# ---------------------------------------------------------------- the shipped colour zoo


@pytest.mark.parametrize("name", sorted(COLOUR_ZOO))
def test_each_colour_source_is_nearest_its_own_group_with_its_provenance(name):
    cfg = _zoo_config(name)
    assert cfg["arch"]["name"] == COLOUR_ZOO[name] and cfg["arch"]["channels"] == 3 and cfg["arch"]["resolution"] == 32
    assert cfg["command"].startswith("ganlode pretrain --data ") and cfg["train"]["seed"] == 0
    assert cfg["data"]["channels"] == 3 and cfg["data"]["n"] >= 425  # provenance: the data it was trained on
    zoo = cfg["zoo"]
    assert zoo["features"] == "inception" and set(zoo["fid"]) == set(COLOUR_ZOO)
    own = zoo["fid"][name]
    others = [v for d, v in zoo["fid"].items() if d != name]
    assert own < min(others), zoo["fid"]  # every colour source is nearest its own group
    if name != "emoji-buttons":  # and the StyleGAN2s by more than a factor of two (buttons: 0.66)
        assert own < 0.5 * min(others), zoo["fid"]
    if "--select-every" in cfg["command"]:  # the kept step is the best on the validation split
        sel = cfg["selection"]
        assert sel["split"] == "val" and sel["step"] == min(sel["scores"], key=lambda r: r["val_fid"])["step"]
    from ganlode.orchestrator.artifacts.zoo import zoo_root

    assert _png_mode(os.path.join(zoo_root(), name, "samples.png"))[0] == "RGB"


def test_zoo_lists_the_colour_models_with_their_architecture_and_inception_fids(capsys):
    assert main(["zoo", "--json"]) == 0
    models = {m["name"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    for name, arch in COLOUR_ZOO.items():
        assert models[name]["arch"] == arch and models[name]["features"] == "inception"
    assert main(["zoo"]) == 0
    out = capsys.readouterr().out
    assert "FID: inception features" in out and "FID: classifier features" in out  # one table per image size


# ---------------------------------------------------------------- methods from the colour zoo


# From the StyleGAN2 of the colour zoo (colour DCGAN sources run every method in test_convert_target and
# test_transfer_cli; here the report and mining tests start from them):
CASES = [("emoji-faces", m) for m in ("finetune", "freezed", "l2sp", "distill", "minegan", "minegan-w")]


@pytest.mark.parametrize("source,method", CASES)
def test_methods_run_from_a_colour_zoo_source_to_a_25_shot_emoji_target(source, method, tmp_path):
    from ganlode.orchestrator import api
    from ganlode.orchestrator.artifacts.loaders import load_model

    extra = {"freezed": {"freeze_depth": 1}, "minegan": {"mining_steps": 1},
             "minegan-w": {"mining_steps": 1, "mine_space": "w"}}.get(method, {})
    out = str(tmp_path / "run")
    run = api.transfer(f"zoo:{source}", TARGET, method.split("-")[0], out=out, steps=2, eval_every=0, eval_n=6, progress=False,
                       batch=8, **extra)
    assert all(np.isfinite(run.metrics[k]) for k in ("fid", "kmmd", "mv"))
    config = json.load(open(os.path.join(out, "config.json")))
    assert config["features"] == "inception" and config["data"]["n"] == 25
    model = load_model(out)
    x = model.sampler(4, torch.Generator().manual_seed(0))
    assert x.shape == (4, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    if method == "minegan-w":
        assert config["adapter"]["mine_space"] == "w"
    if method == "freezed":  # the critic's block nearest the image is the source's, bit for bit; the next one moved
        from ganlode.orchestrator.artifacts.checkpoint import load_checkpoint

        src, tuned = load_checkpoint(f"zoo:{source}").critic, load_checkpoint(os.path.join(out, "checkpoints", "final")).critic
        same = [all(torch.equal(a, b) for a, b in zip(s.state_dict().values(), t.state_dict().values()))
                for s, t in zip(src.blocks, tuned.blocks)]
        assert same[0] and not all(same[1:]), same


@pytest.mark.parametrize("method", ["adabn", "bsa"])
def test_batchnorm_methods_say_in_one_line_that_stylegan2_has_none(method, tmp_path, capsys, one_line_error):
    one_line_error(["transfer", "--source", "zoo:emoji-faces", "--target", TARGET, "--method", method, "--steps", "1",
                    "--out", str(tmp_path / "run")], "BatchNorm")
    assert not (tmp_path / "run").exists()


def test_three_colour_sources_mine_on_ray(ray_cluster, tmp_path, capsys):
    run = tmp_path / "mined"
    argv = ["mine", *[a for n in COLOUR_ZOO for a in ("--source", f"zoo:{n}")],
            "--target", "emoji-sub:cat-face@10+emoji-sub:keycap@10", "--mining-steps", "2", "--finetune-steps", "1",
            "--batch", "8", "--threads", "1", "--no-progress", "--eval-n", "6",
            "--out", str(run), "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    shares = [r["share"] for r in summary["shares"]]
    assert len(shares) == 3 and sum(shares) == pytest.approx(1.0) and min(shares) >= 0
    config = json.load(open(run / "checkpoints" / "final" / "config.json"))
    assert config["model_kind"] == "mined" and len(config["sources"]) == 3
    assert [s["arch"]["name"] for s in config["sources"]] == list(COLOUR_ZOO.values())
    assert json.load(open(run / "config.json"))["engine"] == "ray"
    assert _png_mode(run / "samples" / "mixed.png")[0] == "RGB"


# ---------------------------------------------------------------- every image-path command on RGB


def test_pretrain_both_architectures_on_colour_data_and_sample_a_colour_grid(tmp_path, capsys):
    for arch, extra in (("dcgan", ["--g-width", "8", "--latent-dim", "8"]),
                        ("stylegan2", ["--arch", "stylegan2", "--latent-dim", "16", "--g-width", "8", "--n-mlp", "2"])):
        out = tmp_path / arch
        assert main(["pretrain", "--data", "emoji-sub:keycap@16", "--out", str(out), "--steps", "2", "--batch", "8",
                     "--no-progress", *extra]) == 0
        cfg = json.load(open(out / "config.json"))
        assert cfg["arch"]["name"] == arch and cfg["arch"]["channels"] == 3
        assert np.isfinite(cfg["metrics"]["fid"]) and cfg["metrics"]["n"] > 0
        grid = tmp_path / f"{arch}.png"
        assert main(["sample", str(out), "--n", "4", "--out", str(grid)]) == 0
        assert _png_mode(grid) == ("RGB", _png_mode(grid)[1]) and _png_mode(grid)[1][0] > 32


def test_pretrain_refuses_what_an_architecture_cannot_take(tmp_path, capsys, one_line_error):
    one_line_error(["pretrain", "--data", "mnist5k:1@8", "--arch", "stylegan2", "--steps", "1",
                    "--out", str(tmp_path / "a")], "power of two", "28")
    one_line_error(["pretrain", "--data", "emoji:flags@8", "--arch", "stylegan2", "--d-width", "16", "--steps", "1",
                    "--out", str(tmp_path / "b")], "share one width", "--d-width")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_data_export_import_show_keep_colour_pixels(tmp_path, capsys):
    from ganlode.orchestrator.data import load_target

    table, again = tmp_path / "t.parquet", tmp_path / "u.parquet"
    assert main(["data", "export", "emoji:flags@6", "--out", str(table)]) == 0
    assert main(["data", "import", str(table), "--out", str(again)]) == 0
    capsys.readouterr()
    assert main(["data", "show", str(again), "--json", "--out", str(tmp_path / "grid.png")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["channels"] == 3 and doc["resolution"] == 32
    assert _png_mode(tmp_path / "grid.png")[0] == "RGB"
    a, b = load_target("emoji:flags@6"), load_target(str(again))
    assert torch.equal(a.images, b.images)  # the same pixels, all three channels


def test_eval_scores_colour_with_the_inception_and_gray_with_the_classifier(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    from ganlode.orchestrator.data import load_target
    from ganlode.orchestrator.data.images import to_uint8

    for i, img in enumerate(to_uint8(load_target("emoji:flags@8").images)):
        Image.fromarray(img).save(folder / f"{i}.png")
    assert main(["eval", str(folder), "--target", "emoji:flags", "--n", "8", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["features"] == "inception" and doc["n"] == 8 and np.isfinite(doc["metrics"]["fid"])
    assert main(["eval", "zoo:digits-0to4", "--target", "mnist5k:3", "--n", "8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["features"] == "classifier"


def test_recommend_weighs_the_colour_zoo_for_a_colour_target(ray_cluster, tmp_path, capsys):
    assert main(["recommend", "--target", TARGET, "--probe-steps", "0", "--eval-n", "6",
                 "--json", "--out", str(tmp_path / "rec")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {c["source"] for c in doc["candidates"]} == {f"zoo:{n}" for n in COLOUR_ZOO}  # only the 32 px RGB zoo


def test_report_of_a_colour_run_shows_colour_samples(tmp_path, capsys):
    import base64
    import re

    from ganlode.orchestrator import api

    out = str(tmp_path / "run")
    api.transfer("zoo:emoji-buttons", TARGET, "finetune", out=out, steps=1, eval_every=0, eval_n=6, progress=False,
                 batch=8)
    assert main(["report", out]) == 0
    page = open(capsys.readouterr().out.split("wrote ", 1)[1].strip()).read()
    pngs = re.findall(r"<div class='grid'><img [^>]*src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)  # sample grids
    images = [np.asarray(Image.open(io.BytesIO(base64.b64decode(p))).convert("RGB")).astype(int) for p in pngs]
    colour = [a for a in images if np.abs(a[..., 0] - a[..., 2]).mean() > 10]  # red and blue differ: not gray
    assert pngs and len(colour) == len(images), [im.shape for im in images]  # every sample grid keeps its colours
