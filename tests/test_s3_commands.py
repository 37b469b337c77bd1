"""Commands with s3:// paths against a real S3 endpoint (moto server on loopback)."""

from __future__ import annotations

import json

import pyarrow.fs as pafs

from ganlode.orchestrator import storage
from ganlode.orchestrator.artifacts.checkpoint import load_checkpoint
from ganlode.orchestrator.cli.main import main

TINY = ["--steps", "2", "--g-width", "8", "--d-width", "8", "--latent-dim", "8", "--no-progress", "--batch", "8"]


def test_pretrain_to_s3_reads_back_with_pyarrow(s3_bucket, tmp_path, capsys):
    out = f"{s3_bucket}/zoo/tiny"
    assert main(["pretrain", "--data", "mnist5k:0-1@20", "--out", out, *TINY]) == 0
    fs, path = storage.pyarrow_filesystem(out)
    assert isinstance(fs, pafs.FileSystem)
    with fs.open_input_stream(f"{path}/config.json") as f:
        config = json.loads(f.read())
    assert config["steps"] == 2 and config["data"]["spec"] == "mnist5k:0-1@20"
    with fs.open_input_stream(f"{path}/model.safetensors") as f:
        raw = f.read()
    assert len(raw) > 1000
    # the same checkpoint loads through ganlode and samples
    ckpt = load_checkpoint(out)
    assert ckpt.arch.latent_dim == 8
    assert main(["sample", out, "--n", "4", "--out", f"{s3_bucket}/grid.png"]) == 0
    assert storage.read_bytes(f"{s3_bucket}/grid.png")[:4] == b"\x89PNG"


def test_missing_bucket_exits_2_in_one_line(s3_endpoint, capsys):
    rc = main(["pretrain", "--data", "mnist5k:0-1@20", "--out", "s3://no-such-bucket-xyz/run", *TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "no-such-bucket-xyz" in err[0]
    assert "testing-secret-key" not in err[0] and "testing-key-id" not in err[0]
