"""Checkpoints: bit-exact round trip, no pickle, clear errors on corrupt or mismatched files."""

from __future__ import annotations

import json

import pytest
import torch

from ganlode.methods.nets import GANConfig, build_gan
from ganlode.orchestrator.artifacts import checkpoint
from ganlode.orchestrator.errors import UserError

ARCH = GANConfig(latent_dim=8, g_width=8, d_width=8)


def _saved(tmp_path):
    torch.manual_seed(0)
    g, d = build_gan(ARCH)
    # non-trivial BN statistics, so buffers are part of the round trip
    g.train()
    g(torch.randn(16, 8))
    g.eval()
    path = tmp_path / "ckpt"
    checkpoint.save_checkpoint(str(path), {"arch": ARCH.to_dict(), "kind": "gan"}, g, d)
    return path, g, d


def test_round_trip_is_bit_exact(tmp_path):
    path, g, d = _saved(tmp_path)
    loaded = checkpoint.load_checkpoint(str(path))
    z, x = torch.randn(10, 8), torch.randn(10, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded.generator(z), g(z))
        assert torch.equal(loaded.critic(x), d(x))
    assert loaded.arch == ARCH


def test_checkpoint_holds_no_pickle(tmp_path, monkeypatch):
    path, _, _ = _saved(tmp_path)
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    raw = (path / "model.safetensors").read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    json.loads(raw[8:8 + header_len])  # safetensors: a JSON header and raw tensor bytes
    assert b"\x80\x04" not in raw[:2] and b"PK" != raw[:2]  # not a pickle or torch zip
    # loading must not touch pickle at all
    import pickle

    def boom(*a, **k):
        raise AssertionError("pickle was used while loading a checkpoint")

    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(torch, "load", boom)
    checkpoint.load_checkpoint(str(path))


def test_truncated_weights_are_a_user_error(tmp_path):
    path, _, _ = _saved(tmp_path)
    w = path / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(UserError, match="corrupt or truncated"):
        checkpoint.load_checkpoint(str(path))


def test_garbage_weights_are_a_user_error(tmp_path):
    path, _, _ = _saved(tmp_path)
    (path / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="corrupt or truncated"):
        checkpoint.load_checkpoint(str(path))


def test_corrupt_config_is_a_user_error(tmp_path):
    path, _, _ = _saved(tmp_path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        checkpoint.load_checkpoint(str(path))


def test_architecture_mismatch_is_a_user_error(tmp_path):
    path, _, _ = _saved(tmp_path)
    cfg = json.loads((path / "config.json").read_text())
    cfg["arch"]["g_width"] = 16
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="do not match the architecture"):
        checkpoint.load_checkpoint(str(path))


def test_missing_directory_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not a ganlode checkpoint"):
        checkpoint.load_checkpoint(str(tmp_path / "nope"))


def test_unknown_zoo_name_is_a_user_error():
    with pytest.raises(UserError, match="unknown zoo model"):
        checkpoint.load_checkpoint("zoo:no-such-model")


def test_failed_save_keeps_previous_checkpoint(tmp_path):
    path, g, d = _saved(tmp_path)
    before = (path / "model.safetensors").read_bytes()
    with pytest.raises(TypeError):
        checkpoint.save_checkpoint(str(path), {"arch": ARCH.to_dict(), "bad": object()}, g, d)
    assert (path / "model.safetensors").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_fp16_storage_halves_weights_and_loads(tmp_path):
    _, g, d = _saved(tmp_path)
    checkpoint.save_checkpoint(str(tmp_path / "half"), {"arch": ARCH.to_dict()}, g, d, dtype=torch.float16)
    loaded = checkpoint.load_checkpoint(str(tmp_path / "half"))
    z = torch.randn(4, 8)
    with torch.no_grad():
        assert torch.allclose(loaded.generator(z), g(z), atol=2e-2)
    assert loaded.generator.fc[0].weight.dtype == torch.float32
