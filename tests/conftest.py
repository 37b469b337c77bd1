"""Shared fixtures: one Ray cluster for the whole session, small seeded data."""

from __future__ import annotations

import os

import pytest

# Local test clusters run without token auth; deploy manifests keep it on.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")


@pytest.fixture(scope="module")
def torch_one_thread():
    """One torch thread for a module: tiny nets run far faster than on two contended threads."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_source(tmp_path_factory) -> str:
    """A tiny 28x28 DCGAN source checkpoint (random weights, real BatchNorm statistics)."""
    import torch

    from ganlode.methods import architectures
    from ganlode.methods.nets import GANConfig, build_gan
    from ganlode.orchestrator.artifacts.checkpoint import save_checkpoint

    arch = GANConfig(latent_dim=8, g_width=8, d_width=8)
    torch.manual_seed(0)
    g, d = build_gan(arch)
    g.train()
    g(torch.randn(64, arch.latent_dim))
    path = str(tmp_path_factory.mktemp("source") / "ckpt")
    save_checkpoint(path, {"model_kind": "gan", "arch": architectures.to_dict(arch),
                           "train": {"loss": "ns-r1", "r1_gamma": 0.2}, "data": {"spec": "mnist5k:0-1@40"}},
                    g.eval(), d.eval())
    return path


@pytest.fixture(scope="session")
def provenanced_source():
    """``make(path, spec, seed, **arch)``: a tiny untrained source at ``path`` whose record says it
    was trained on ``spec`` (its data counts), as mining's true shares read them."""
    import torch

    from ganlode.methods.nets import GANConfig, build_gan
    from ganlode.orchestrator import data
    from ganlode.orchestrator.artifacts.checkpoint import save_checkpoint

    def make(path, spec: str, seed: int, **arch_fields) -> str:
        arch = GANConfig(latent_dim=8, g_width=8, d_width=8, **arch_fields)
        torch.manual_seed(seed)
        g, d = build_gan(arch)
        config = {"kind": "gan", "arch": arch.to_dict(), "train": {"loss": "ns-r1"},
                  "data": {"counts": data.load_target(spec).provenance()["counts"]}}
        save_checkpoint(str(path), config, g, d)
        return str(path)

    return make


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster shared by every test that needs it (2 CPUs, 2 logical GPUs)."""
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            num_gpus=2,  # logical: lets placement tests see GPU ids on a CPU machine
            include_dashboard=False,
            object_store_memory=200 * 1024**2,
            log_to_driver=False,
        )
    yield ray
    ray.shutdown()


# ---------------------------------------------------------------- S3 (moto server on loopback)


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 endpoint over HTTP on 127.0.0.1 (moto), with fake credentials for the session.

    Any earlier AWS settings of the developer (profiles, keys, endpoints) are hidden, so tests
    never reach a real account.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = pytest.MonkeyPatch()
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        env.delenv(name)
    env.setenv("AWS_ACCESS_KEY_ID", "testing-key-id")
    env.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-key")
    env.setenv("AWS_DEFAULT_REGION", "us-east-1")
    env.setenv("AWS_ENDPOINT_URL", endpoint)
    env.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    env.setenv("AWS_CONFIG_FILE", os.devnull)
    env.setenv("AWS_EC2_METADATA_DISABLED", "true")
    from ganlode.orchestrator import storage

    storage.configure(None)
    yield endpoint
    env.undo()
    storage.configure(None)
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint):
    """A fresh, empty bucket on the session's S3 endpoint, as ``s3://NAME``."""
    import uuid

    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture
def one_line_error(capsys):
    """``one_line_error(argv, *needles)``: run ``ganlode ARGV``; it must exit 2 with exactly one line on
    stderr, no traceback, holding every needle. Returns that line."""
    from ganlode.orchestrator.cli.main import main

    def check(argv, *needles) -> str:
        rc = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2, err
        assert len(err) == 1, err
        for needle in needles:
            assert needle in err[0], err[0]
        assert "Traceback" not in err[0]
        return err[0]

    return check
