"""A killed transfer resumes to the same weights and metrics, for every method; model selection
reads only the validation split; the three splits never overlap."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from ganlode.methods.catalog import METHODS
from ganlode.orchestrator.data import spec as data_spec
from ganlode.orchestrator.evaluation import protocol
from ganlode.orchestrator.pipelines import transfer as pipeline
from ganlode.orchestrator.pipelines.transfer import resume_transfer, run_transfer

TARGET = "mnist5k:7@12"
OPTIONS = {
    "scratch": {"batch": 8, "n_critic": 1},
    "finetune": {"batch": 8, "n_critic": 1, "l2sp_weight": 0.1, "distill_weight": 0.5, "freeze_depth": 1},
    "freezed": {"batch": 8, "n_critic": 1},
    "l2sp": {"batch": 8, "n_critic": 1},
    "distill": {"batch": 8, "n_critic": 1},
    "minegan": {"batch": 8, "n_critic": 1, "mining_steps": 2},
    "adabn": {},
    "bsa": {"batch": 8},
    "glo": {"batch": 8},
    "cdc": {"batch": 8, "n_critic": 1},
    "adam": {"batch": 8, "n_critic": 1, "probe_steps": 2, "fisher_samples": 4},  # killed across the phase change
    "rick": {"batch": 8, "n_critic": 1, "warmup_steps": 1, "fisher_every": 2, "fisher_samples": 4},
}
RUN = dict(steps=4, eval_every=1, eval_n=16, show_progress=False, seed=3)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(autouse=True)
def _few_mining_candidates(monkeypatch):
    from ganlode.methods import latent

    monkeypatch.setattr(latent, "MINING_CANDIDATES", 128)


class Killed(Exception):
    pass


def _kill_at(step_to_die: int):
    def on_eval(step, values):
        if step == step_to_die:
            raise Killed(step)
    return on_eval


def _table(run) -> list[tuple]:
    t = pq.read_table(str(run / "metrics.parquet")).drop(["time"]).to_pylist()
    return sorted(tuple(sorted(r.items())) for r in t)


CASES = [(m, 2) for m in METHODS] + [("minegan", 3)]  # minegan: killed in mining, and in joint fine-tuning


@pytest.mark.parametrize("method,kill", CASES)
def test_a_killed_transfer_resumes_to_the_same_weights_and_metrics(method, kill, tiny_source, tmp_path):
    straight = run_transfer(tiny_source, TARGET, method, OPTIONS[method], out=str(tmp_path / "a"), **RUN)
    with pytest.raises(Killed):
        run_transfer(tiny_source, TARGET, method, OPTIONS[method], out=str(tmp_path / "b"), on_eval=_kill_at(kill),
                     **RUN)
    assert (tmp_path / "b" / "checkpoints" / "state.pt").exists()
    resumed = resume_transfer(str(tmp_path / "b"), show_progress=False)
    assert resumed.resumed_from == kill
    for name in ("final", "best"):
        a = (tmp_path / "a" / "checkpoints" / name / "model.safetensors").read_bytes()
        b = (tmp_path / "b" / "checkpoints" / name / "model.safetensors").read_bytes()
        assert a == b, name
    assert resumed.metrics == straight.metrics and resumed.best_step == straight.best_step
    assert resumed.history == straight.history
    assert _table(tmp_path / "a") == _table(tmp_path / "b")
    assert not (tmp_path / "b" / "checkpoints" / "state.pt").exists()  # finished: nothing left to resume


def test_resume_refuses_a_finished_run(tiny_source, tmp_path):
    from ganlode.orchestrator.errors import UserError

    run_transfer(tiny_source, TARGET, "glo", OPTIONS["glo"], out=str(tmp_path / "a"), **{**RUN, "steps": 1})
    with pytest.raises(UserError, match="nothing to resume"):
        resume_transfer(str(tmp_path / "a"), show_progress=False)


def test_model_selection_never_reads_the_test_split(tiny_source, tmp_path, monkeypatch):
    """During training only validation images are scored; the test split is read after the loop,
    and the best checkpoint is the argmin of the validation FID."""
    reads: list[tuple[str, bool]] = []
    in_loop = {"now": False}
    real_reference, real_run = data_spec.eval_reference, pipeline._Loop.run

    def reference(spec, n=None, seed=0, split="test"):
        reads.append((split, in_loop["now"]))
        return real_reference(spec, n=n, seed=seed, split=split)

    def run(self, start, done):
        in_loop["now"] = True
        try:
            return real_run(self, start, done)
        finally:
            in_loop["now"] = False

    scored: list[tuple[str, bool]] = []
    real_score = protocol.score

    def score(sampler, ref, seed=0):
        scored.append((ref.split, in_loop["now"]))
        return real_score(sampler, ref, seed=seed)

    monkeypatch.setattr("ganlode.orchestrator.evaluation.protocol.eval_reference", reference)
    monkeypatch.setattr(pipeline._Loop, "run", run)
    monkeypatch.setattr(protocol, "score", score)
    result = run_transfer(tiny_source, TARGET, "finetune", OPTIONS["finetune"], out=str(tmp_path / "r"), **RUN)
    assert {split for split, looping in scored if looping} == {"val"}
    assert [split for split, looping in scored if not looping] == ["test"] * len(
        [s for s, looping in scored if not looping])
    val = [h for h in result.history]
    assert result.best_step == min(val, key=lambda h: h["fid"])["step"]
    rows = pq.read_table(str(tmp_path / "r" / "metrics.parquet")).to_pylist()
    assert {r["split"] for r in rows if r["step"] not in (result.best_step, RUN["steps"])} == {"val"}
    assert {r["step"] for r in rows if r["split"] == "test"} == {result.best_step, RUN["steps"]}


@pytest.mark.parametrize("spec", ["mnist5k:3", "animals:zebra", "glyphs:A"])
def test_train_validation_and_test_never_overlap_and_do_not_move_with_the_seed(spec):
    ds, part = data_spec._parse(spec)[0].source, data_spec._parse(spec)[0]
    for g in part.groups:
        train, val, test = (set(ds.pool(s)[g].tolist()) for s in ("train", "val", "test"))
        assert not train & val and not train & test and not val & test
        assert len(val) >= 1 and len(test) >= len(val)
        assert train | val | test == set(np.flatnonzero(ds.group_of == g).tolist())
    a = data_spec.eval_reference(spec, split="val", seed=0).images
    b = data_spec.eval_reference(spec, split="val", seed=5).images
    assert sorted(map(bytes, a.numpy())) == sorted(map(bytes, b.numpy()))  # the split is the dataset's, not the seed's
