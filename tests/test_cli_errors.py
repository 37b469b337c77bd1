"""Bad input at the command line: exit status 2 and exactly one line on stderr, nothing written."""

from __future__ import annotations

import json

import pytest
import torch

from ganlode.methods.nets import GANConfig, build_gan
from ganlode.orchestrator.artifacts import checkpoint

ARCH = GANConfig(latent_dim=8, g_width=8, d_width=8)


@pytest.fixture
def ckpt(tmp_path):
    torch.manual_seed(0)
    g, d = build_gan(ARCH)
    path = tmp_path / "ckpt"
    checkpoint.save_checkpoint(str(path), {"arch": ARCH.to_dict(), "kind": "gan"}, g, d)
    return path


@pytest.mark.parametrize("spec,needles", [
    ("nosuchset:1@5", ("unknown dataset", "mnist5k")),
    ("mnist5k:eleven@5", ("eleven", "mnist5k")),
    ("animals:unicorn", ("unicorn", "zebra")),
    ("mnist5k:7@400", ("350", "@350")),
    ("./no/such/folder", ("no/such/folder",)),
])
def test_bad_target_specs(spec, needles, capsys, tmp_path, one_line_error):
    out = tmp_path / "grid.png"
    one_line_error(["data", "show", spec, "--out", str(out)], *needles)
    assert not out.exists()


def test_pretrain_bad_data_writes_nothing(capsys, tmp_path, one_line_error):
    out = tmp_path / "run"
    one_line_error(["pretrain", "--data", "mnist5k:7@999", "--out", str(out), "--steps", "1"], "@")
    assert not out.exists()


def test_truncated_checkpoint(ckpt, capsys, tmp_path, one_line_error):
    w = ckpt / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    one_line_error(["sample", str(ckpt), "--out", str(tmp_path / "g.png")], "corrupt or truncated")
    assert not (tmp_path / "g.png").exists()


def test_corrupt_checkpoint_config(ckpt, capsys, tmp_path, one_line_error):
    (ckpt / "config.json").write_text("{")
    one_line_error(["sample", str(ckpt), "--out", str(tmp_path / "g.png")], "not valid JSON")


def test_architecture_mismatch(ckpt, capsys, tmp_path, one_line_error):
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["arch"]["latent_dim"] = 16
    (ckpt / "config.json").write_text(json.dumps(cfg))
    one_line_error(["sample", str(ckpt), "--out", str(tmp_path / "g.png")], "do not match the architecture")


def test_missing_checkpoint_path(capsys, tmp_path, one_line_error):
    one_line_error(["sample", str(tmp_path / "nothing"), "--out", str(tmp_path / "g.png")], "does not exist")


def test_unknown_zoo_model(capsys, tmp_path, one_line_error):
    one_line_error(["sample", "zoo:nope", "--out", str(tmp_path / "g.png")], "unknown zoo model", "digits-0to4")


def test_usage_errors_are_one_line(capsys, one_line_error):
    one_line_error(["pretrain", "--data", "mnist5k:1@5"], "--out")
    one_line_error(["no-such-command"], "invalid choice")


@pytest.mark.parametrize("argv,needles", [
    (["data", "nosuch"], ("invalid choice", "show, export")),
    (["transfer", "--sed", "1"], ("No such option", "--seed")),
    (["sample", "zoo:digits-0to4", "--out", "{out}", "--n", "many"], ("--n", "many")),
    (["transfer", "--source", "S", "--target", "mnist5k:7@25", "--method", "freezd", "--out", "{out}"], ("--method", "freezd")),
    (["transfer", "--source", "S", "--out", "{out}"], ("--target", "--method", "--resume")),
    (["transfer", "--resume", "{out}", "--source", "S", "--steps", "3"], ("--resume", "drop --source, --steps")),
    (["eval", "{out}", "--split", "train"], ("--split", "train")),
    (["mine", "--source", "S", "--target", "mnist5k:7@25", "--out", "{out}"], ("two or more",)),
    (["mine", "--source", "S", "--source", "T", "--target", "mnist5k:7@25", "--out", "{out}", "--batch", "0"], ("--batch",)),
    (["tune", "--target", "mnist5k:7@25", "--out", "{out}"], ("--source", "--method")),
    (["submit", "--address", "http://127.0.0.1:1"], ("after --",)),
])
def test_click_usage_errors_are_one_line_and_write_nothing(argv, needles, capsys, tmp_path, one_line_error):
    out = tmp_path / "out"
    one_line_error([a.replace("{out}", str(out)) for a in argv], *needles)
    assert not out.exists()


# ---------------------------------------------------------------- everyday use: folders, configs, seeds, --out


def test_eval_of_a_folder_with_no_images(capsys, tmp_path, one_line_error):
    empty, other = tmp_path / "empty", tmp_path / "other"
    empty.mkdir()
    other.mkdir()
    (other / "notes.txt").write_text("no images here")
    one_line_error(["eval", str(empty), "--against", str(other)], "holds no images", str(empty))
    one_line_error(["eval", str(empty), "--target", "mnist5k:7"], "holds no images")
    one_line_error(["eval", str(empty)], "folder of images", "--against")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "other"] and not list(empty.iterdir())


@pytest.mark.parametrize("command", ["transfer", "mine", "tune", "pretrain"])
def test_a_config_key_that_is_no_option(command, capsys, tmp_path, one_line_error):
    config = tmp_path / "run.yaml"
    config.write_text("seed: 1\nfreez-depth: 2\n")
    line = one_line_error([command, "--config", str(config), "--out", str(tmp_path / "out")],
                           "--config", "unknown option 'freez-depth'")
    assert command != "transfer" or "did you mean 'freeze-depth'" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text,needles", [
    ("- a list\n", ("must be a mapping",)),
    ("steps: [oops\n", ("not valid YAML",)),
])
def test_a_config_file_that_is_not_a_mapping(text, needles, capsys, tmp_path, one_line_error):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    one_line_error(["transfer", "--config", str(config), "--out", str(tmp_path / "out")], *needles)
    one_line_error(["transfer", "--config", str(tmp_path / "none.yaml")], "does not exist")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("seeds", ["x", "1-", "3..7", "-2", "7-3", "1,,2", "0.5"])
def test_seeds_that_are_not_a_range_or_a_list(seeds, ckpt, capsys, tmp_path, one_line_error):
    out = tmp_path / "samples"
    one_line_error(["sample", str(ckpt), "--seeds", seeds, "--out", str(out)], "--seeds")
    assert not out.exists()


def test_sample_class_of_an_unconditional_model(ckpt, capsys, tmp_path, one_line_error):
    one_line_error(["sample", str(ckpt), "--class", "3", "--out", str(tmp_path / "g.png")],
                    "unconditional", "num_classes 0")
    assert not (tmp_path / "g.png").exists()


@pytest.mark.parametrize("argv", [
    ["data", "show", "mnist5k:7@5", "--out", "{file}/g.png"],
    ["data", "export", "mnist5k:7@5", "--out", "{file}/t.parquet"],
    ["sample", "{ckpt}", "--out", "{file}/sub/g.png"],
    ["sample", "{ckpt}", "--seeds", "0-2", "--out", "{file}"],
    ["transfer", "--source", "{ckpt}", "--target", "mnist5k:7@5", "--method", "finetune", "--out", "{file}/run"],
])
def test_an_out_whose_parent_is_a_file(argv, ckpt, capsys, tmp_path, one_line_error):
    blocker = tmp_path / "FILE"
    blocker.write_text("a file, not a folder")
    words = [a.replace("{file}", str(blocker)).replace("{ckpt}", str(ckpt)) for a in argv]
    one_line_error(words, "--out", str(blocker), "file")
    assert blocker.read_text() == "a file, not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE", "ckpt"]


def test_pretrain_unknown_augmentation_writes_nothing(capsys, tmp_path, one_line_error):
    out = tmp_path / "run"
    one_line_error(["pretrain", "--data", "mnist5k:7@20", "--out", str(out), "--steps", "1", "--augment", "flip"],
                   "flip", "color, translation, cutout")
    assert not out.exists()


def test_pretrain_select_every_needs_a_validation_split(capsys, tmp_path, one_line_error):
    """Model selection reads the validation split; data too small to hold one out is refused before training."""
    import numpy as np
    from PIL import Image

    folder = tmp_path / "three"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((28, 28), 60 * i, np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "run"
    one_line_error(["pretrain", "--data", str(folder), "--out", str(out), "--steps", "1", "--select-every", "1"],
                   "validation", "4 or more")
    assert not out.exists()
