"""Bad input at the command line: exit status 2 and exactly one line on stderr, nothing written."""

from __future__ import annotations

import json

import pytest
import torch

from ganlode.methods.nets import GANConfig, build_gan
from ganlode.orchestrator.artifacts import checkpoint
from ganlode.orchestrator.cli.main import main

ARCH = GANConfig(latent_dim=8, g_width=8, d_width=8)


@pytest.fixture
def ckpt(tmp_path):
    torch.manual_seed(0)
    g, d = build_gan(ARCH)
    path = tmp_path / "ckpt"
    checkpoint.save_checkpoint(str(path), {"arch": ARCH.to_dict(), "kind": "gan"}, g, d)
    return path


def _one_line_error(capsys, argv, *needles):
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert len(err) == 1, err
    for needle in needles:
        assert needle in err[0], err[0]
    assert "Traceback" not in err[0]
    return err[0]


@pytest.mark.parametrize("spec,needles", [
    ("nosuchset:1@5", ("unknown dataset", "mnist5k")),
    ("mnist5k:eleven@5", ("eleven", "mnist5k")),
    ("animals:unicorn", ("unicorn", "zebra")),
    ("mnist5k:7@400", ("350", "@350")),
    ("./no/such/folder", ("no/such/folder",)),
])
def test_bad_target_specs(spec, needles, capsys, tmp_path):
    out = tmp_path / "grid.png"
    _one_line_error(capsys, ["data", "show", spec, "--out", str(out)], *needles)
    assert not out.exists()


def test_pretrain_bad_data_writes_nothing(capsys, tmp_path):
    out = tmp_path / "run"
    _one_line_error(capsys, ["pretrain", "--data", "mnist5k:7@999", "--out", str(out), "--steps", "1"], "@")
    assert not out.exists()


def test_truncated_checkpoint(ckpt, capsys, tmp_path):
    w = ckpt / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    _one_line_error(capsys, ["sample", str(ckpt), "--out", str(tmp_path / "g.png")], "corrupt or truncated")
    assert not (tmp_path / "g.png").exists()


def test_corrupt_checkpoint_config(ckpt, capsys, tmp_path):
    (ckpt / "config.json").write_text("{")
    _one_line_error(capsys, ["sample", str(ckpt), "--out", str(tmp_path / "g.png")], "not valid JSON")


def test_architecture_mismatch(ckpt, capsys, tmp_path):
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["arch"]["latent_dim"] = 16
    (ckpt / "config.json").write_text(json.dumps(cfg))
    _one_line_error(capsys, ["sample", str(ckpt), "--out", str(tmp_path / "g.png")], "do not match the architecture")


def test_missing_checkpoint_path(capsys, tmp_path):
    _one_line_error(capsys, ["sample", str(tmp_path / "nothing"), "--out", str(tmp_path / "g.png")], "does not exist")


def test_unknown_zoo_model(capsys, tmp_path):
    _one_line_error(capsys, ["sample", "zoo:nope", "--out", str(tmp_path / "g.png")], "unknown zoo model", "digits-0to4")


def test_usage_errors_are_one_line(capsys):
    _one_line_error(capsys, ["pretrain", "--data", "mnist5k:1@5"], "--out")
    _one_line_error(capsys, ["no-such-command"], "invalid choice")


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
def test_click_usage_errors_are_one_line_and_write_nothing(argv, needles, capsys, tmp_path):
    out = tmp_path / "out"
    _one_line_error(capsys, [a.replace("{out}", str(out)) for a in argv], *needles)
    assert not out.exists()
