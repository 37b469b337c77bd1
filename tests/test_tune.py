"""``ganlode tune``: Ray Tune search over transfer settings (Optuna + ASHA), resumable, on local disk or S3.

What must hold:
- a search runs its trials, and its results agree with each other: trials.parquet has one row
  per trial, best.json names the best finished row, and the exported best run reproduces the
  reported score when ``ganlode eval`` scores it again;
- a trial that fails is retried from its last checkpoint (not from step 0), and a checkpoint
  restores the exact training state (resumed training equals uninterrupted training);
- an interrupted search, resumed, never re-runs a finished trial and ends with a complete table
  (locally and on S3);
- the search is seeded: the same seed proposes the same settings;
- a multi-source (--method mine) trial runs its sources on generator actors and a coordinator in
  bundles the trial reserved, continues from its run's step checkpoints when retried, and leaves
  nothing holding resources;
- bad input exits 2 with one line, before any trial starts.
"""

from __future__ import annotations

import json
import os
import signal

import pyarrow.parquet as pq
import pytest
import torch

from ganlode.methods import catalog, registry
from ganlode.methods import options as method_options
from ganlode.methods.base import TransferOptions
from ganlode.methods.nets import GANConfig, build_gan
from ganlode.orchestrator import data
from ganlode.orchestrator.artifacts import checkpoint
from ganlode.orchestrator.cli.main import main
from ganlode.orchestrator.errors import UserError
from ganlode.orchestrator.search import space as S

pytestmark = pytest.mark.timeout(120)

TARGET = "mnist5k:7@16"
VAL_N = 20


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> str:
    """A tiny source GAN (random weights suffice: the tests check the machinery, not quality)."""
    arch = GANConfig(latent_dim=8, g_width=8, d_width=8)
    torch.manual_seed(0)
    g, d = build_gan(arch)
    path = str(tmp_path_factory.mktemp("src") / "tiny")
    checkpoint.save_checkpoint(path, {"kind": "gan", "arch": arch.to_dict(),
                                      "train": {"loss": "ns-r1", "beta1": 0.5, "beta2": 0.99, "r1_gamma": 0.2}},
                               g, d)
    return path


def _spec(source: str, out: str, **kw):
    from ganlode.orchestrator.search.spec import SearchSpec

    method = kw.pop("method", "freezed+l2sp")
    steps = kw.pop("steps", 4)
    base = dict(sources=(source,), target=TARGET, method=method,
                space=kw.pop("space", None) or S.default_space(method, critic_blocks=3, steps=steps),
                trials=4, concurrent=2, steps=steps, eval_every=2, out=out, val_n=VAL_N, seed=0)
    base.update(kw)
    s = SearchSpec(**base)
    # small batches keep the trials fast
    return SearchSpec(**{**s.to_dict(), "sources": s.sources, "space": {**s.space, "batch": 8}})


def _trace(trace_dir) -> dict[str, list[int]]:
    """trial id -> start steps of its executions (one file per execution)."""
    runs: dict[str, list[int]] = {}
    for name in os.listdir(trace_dir):
        if name == "failed":
            continue
        trial, start, _ = name.split(".")
        runs.setdefault(trial, []).append(int(start))
    return {k: sorted(v) for k, v in runs.items()}


# ---------------------------------------------------------------- search spaces (no Ray)


@pytest.mark.parametrize("method", [*catalog.METHODS, "freezed+l2sp", "l2sp+distill", "freezed+l2sp+distill"])
def test_default_spaces_are_valid_for_their_method(method):
    space = S.load_space(method, None, critic_blocks=3, steps=100)
    assert space.names and set(space.names) <= catalog.ACCEPTS[S.build_method(method)]
    if method == "freezed+l2sp":
        assert S.build_method(method) == "finetune" and space.names == ["freeze_depth", "l2sp_weight", "lr"]
        assert space.params[0].args == (0, 3)  # 0..critic blocks, both ends included


def test_space_file_overrides_the_default(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("freeze_depth: {randint: [1, 2]}\nl2sp_weight: {loguniform: [1e-2, 1]}\nl2sp_on: {choice: [g, d]}\nbatch: 16\n")
    space = S.load_space("finetune", str(f), critic_blocks=3, steps=10)
    assert space.names == ["freeze_depth", "l2sp_weight", "l2sp_on"] and dict(space.fixed) == {"batch": 16}
    opts = space.options({"freeze_depth": 2, "l2sp_weight": 0.5, "l2sp_on": "d"})
    assert opts == TransferOptions(freeze_depth=2, l2sp_weight=0.5, l2sp_on="d", batch=16)


@pytest.mark.parametrize("text, says", [
    ("momentum: {uniform: [0, 1]}", "unknown parameter 'momentum'"),
    ("l2sp_weight: {loguniform: [1, 1]}", "empty range"),
    ("freeze_depth: {randint: [3, 1]}", "empty range"),
    ("lr: {choice: []}", "empty range"),
    ("freeze_depth: {randint: [0, 5]}", "critic has 3 blocks"),
    ("freeze_depth: {uniform: [0, 2]}", "whole numbers"),
    ("l2sp_weight: {loguniform: [0, 1]}", "low > 0"),
])
def test_bad_space_file_is_one_user_error(tmp_path, text, says):
    f = tmp_path / "bad.yaml"
    f.write_text(text + "\n")
    with pytest.raises(UserError, match=says):
        S.load_space("freezed+l2sp", str(f), critic_blocks=3, steps=10)


def test_same_seed_proposes_the_same_settings():
    from ray.tune.search.optuna import OptunaSearch

    space = S.load_space("freezed+l2sp", None, critic_blocks=3, steps=10).tune_space()

    def proposals(seed):
        searcher = OptunaSearch(space=space, metric="kmmd", mode="min", seed=seed)
        return [searcher.suggest(f"t{i}") for i in range(4)]

    assert proposals(3) == proposals(3)
    assert proposals(3) != proposals(4)


def test_concurrency_is_capped_to_the_free_cpus(source, tmp_path):
    from ganlode.orchestrator.search.trials import capped_concurrency, trial_resources

    spec = _spec(source, str(tmp_path), trials=12, concurrent=8)
    assert capped_concurrency(spec, {"CPU": 2.0, "GPU": 2.0}) == 2
    assert capped_concurrency(spec, {"CPU": 16.0}) == 8
    assert capped_concurrency(_spec(source, str(tmp_path), trials=3, concurrent=8), {"CPU": 16.0}) == 3
    with pytest.raises(UserError, match="needs 2 CPUs but the Ray cluster has 1 free"):
        capped_concurrency(_spec(source, str(tmp_path), cpus_per_trial=2.0), {"CPU": 1.0})
    # a multi-source trial on actors: its CPUs hold it and its actors; a GPU per generator
    mine = _spec(source, str(tmp_path), method="mine", sources=(source, source), trials=8, concurrent=8,
                 gpus_per_source=1.0)
    assert capped_concurrency(mine, {"CPU": 16.0, "GPU": 4.0}) == 2
    assert capped_concurrency(_spec(source, str(tmp_path), method="mine", sources=(source, source), gpus_per_source=0.0),
                              {"CPU": 2.0}) == 2
    with pytest.raises(UserError, match="needs 2 GPUs but the Ray cluster has 1 free"):
        capped_concurrency(mine, {"CPU": 16.0, "GPU": 1.0})
    in_process = _spec(source, str(tmp_path), method="mine", sources=(source, source), engine="in-process")
    assert [dict(b) for b in trial_resources(in_process).bundles] == [{"CPU": 1.0}]  # the fallback: one bundle


# ---------------------------------------------------------------- trial checkpoints (no Ray)


@pytest.mark.parametrize("method, options, save_at", [
    ("finetune", dict(freeze_depth=1, l2sp_weight=0.1, distill_weight=0.1), 2),
    ("minegan", dict(mining_steps=2), 3),  # restored after the switch to joint fine-tuning
])
def test_checkpoint_restores_the_exact_training_state(source, tmp_path, method, options, save_at):
    """Training 5 steps straight equals training save_at steps, restoring into a fresh adapter, and going on."""
    from ganlode.orchestrator.evaluation.classifier import perceptual_features
    from ganlode.orchestrator.pipelines.sources import load_source
    from ganlode.orchestrator.search.state import load_trial_state, save_trial_state

    src, _ = load_source(source)
    images = data.load_target(TARGET).images
    opts = method_options.resolve(method, TransferOptions(batch=8, **options), src, 5)
    feats = perceptual_features() if method in catalog.LATENT else None

    def fresh():
        return registry.build(method, src, images, opts, seed=1, feature_fn=feats)

    straight = fresh()
    for _ in range(5):
        straight.step()
    first = fresh()
    for _ in range(save_at):
        first.step()
    save_trial_state(first, str(tmp_path), save_at, [{"step": save_at}])
    resumed = fresh()
    step, history = load_trial_state(resumed, str(tmp_path))
    assert (step, history) == (save_at, [{"step": save_at}])
    for _ in range(5 - save_at):
        resumed.step()
    a, b = straight.export(), resumed.export()
    for name in ("generator", "critic"):
        if getattr(a, name) is None:
            continue
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), f"{method}: {name} differs after resuming"
    assert all(torch.equal(a.extra[k], b.extra[k]) for k in a.extra)


# ---------------------------------------------------------------- bad input (exit 2, one line, no Ray)


def _cli(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


def test_bad_input_exits_2_with_one_line(source, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"dropout": {"uniform": [0, 1]}}))
    empty = tmp_path / "empty.yaml"
    empty.write_text("l2sp_weight: {loguniform: [1.0, 0.5]}\n")
    common = ["tune", "--source", source, "--target", TARGET, "--method", "l2sp", "--trials", "2", "--steps", "2"]
    cases = [
        ([*common, "--space", str(bad), "--out", str(tmp_path / "a")], "unknown parameter 'dropout'"),
        ([*common, "--space", str(empty), "--out", str(tmp_path / "b")], "empty range"),
        ([*common, "--metric", "accuracy", "--out", str(tmp_path / "c")], "not reported by any trial"),
        (["tune", "--resume", str(tmp_path)], "holds no search"),
        (["tune", "--resume", str(tmp_path), "--method", "l2sp"], "drop --method"),
        ([*common[:6], "mine", "--out", str(tmp_path / "d")], "repeat --source"),
    ]
    for argv, says in cases:
        code, err = _cli(capsys, *argv)
        assert code == 2 and len(err.splitlines()) == 1 and says in err, (argv, err)
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()  # nothing written


# ---------------------------------------------------------------- searches on the shared Ray cluster


def test_an_interrupted_trial_resumes_to_the_same_weights_and_metrics(ray_cluster, source, tmp_path):
    """One trial, run straight and run with a failure after its step-2 checkpoint (Tune retries it
    from there, through Adapter.state_dict): the same reported metrics and bit-identical weights."""
    from ganlode.orchestrator.search.run import run_search

    outs = {}
    for name, hooks in (("straight", {}), ("interrupted", {"trace_dir": str(tmp_path / "trace"), "fail_at_step": 3})):
        out = str(tmp_path / name)
        assert run_search(_spec(source, out, trials=1, concurrent=1), hooks=hooks, verbose=0).complete
        outs[name] = out
    assert _trace(str(tmp_path / "trace")) == {open(tmp_path / "trace" / "failed").read(): [0, 2]}  # it did resume
    rows = {k: pq.read_table(os.path.join(v, "trials.parquet")).to_pylist()[0] for k, v in outs.items()}
    for key in ("kmmd", "fid", "mv", "step", "lr", "l2sp_weight", "freeze_depth"):
        assert rows["straight"][key] == rows["interrupted"][key], key
    weights = [open(os.path.join(v, "best", "checkpoints", "final", "model.safetensors"), "rb").read()
               for v in outs.values()]
    assert weights[0] == weights[1]
    metrics = [pq.read_table(os.path.join(v, "best", "metrics.parquet")).drop(["time"]).to_pylist() for v in outs.values()]
    assert metrics[0] == metrics[1]



def test_search_end_to_end_retries_failed_trials_from_their_checkpoint(ray_cluster, source, tmp_path, capsys):
    from ganlode.orchestrator.artifacts.loaders import load_model
    from ganlode.orchestrator.search.run import run_search

    out, trace = str(tmp_path / "search"), str(tmp_path / "trace")
    spec = _spec(source, out)
    # the first trial to reach step 3 fails there, after its step-2 checkpoint
    outcome = run_search(spec, hooks={"trace_dir": trace, "fail_at_step": 3}, verbose=0)
    assert outcome.complete

    table = pq.read_table(os.path.join(out, "trials.parquet")).to_pylist()
    assert len(table) == 4 and len({r["trial_id"] for r in table}) == 4
    assert {"trial_id", "freeze_depth", "l2sp_weight", "lr", "step", "kmmd", "fid", "mv", "intra_div", "status",
            "wall_s"} <= set(table[0])
    assert all(r["status"] in ("done", "stopped") for r in table), table
    assert all(r["intra_div"] is not None and r["intra_div"] >= 0 for r in table)  # its few shots are known
    assert all(0 <= r["freeze_depth"] <= 3 and 1e-3 <= r["l2sp_weight"] <= 1e2 for r in table)

    best = json.load(open(os.path.join(out, "best.json")))
    done = [r for r in table if r["status"] == "done"]
    assert done and best["trial_id"] == min(done, key=lambda r: r["kmmd"])["trial_id"]
    assert table[best["row"]]["trial_id"] == best["trial_id"] and best["value"] == table[best["row"]]["kmmd"]

    # the failed trial was retried from its checkpoint (step 2), not from 0; the others ran once
    runs = _trace(trace)
    assert set(runs) == {r["trial_id"] for r in table}
    failed = open(os.path.join(trace, "failed")).read()
    for r in table:
        assert runs[r["trial_id"]] == ([0, 2] if r["trial_id"] == failed else [0]), (r, runs)
    assert next(r for r in table if r["trial_id"] == failed)["step"] == 4

    # the export is a normal run: it loads, samples, and `ganlode eval` reproduces the reported score
    model = load_model(os.path.join(out, "best"))
    assert model.sampler(3, torch.Generator().manual_seed(0)).shape == (3, 1, 28, 28)
    # on the validation split (what the search compared); the run's own figures are the test split's
    assert main(["eval", os.path.join(out, "best"), "--n", str(VAL_N), "--seed", "0", "--split", "val"]) == 0
    printed = capsys.readouterr().out
    kmmd = float(next(line.split()[1] for line in printed.splitlines() if line.startswith("kmmd ")))
    assert kmmd == pytest.approx(best["value"], abs=1e-4)
    assert main(["eval", os.path.join(out, "best"), "--n", str(VAL_N), "--seed", "0"]) == 0
    printed = capsys.readouterr().out
    kmmd = float(next(line.split()[1] for line in printed.splitlines() if line.startswith("kmmd ")))
    recorded = json.load(open(os.path.join(out, "best", "config.json")))
    assert recorded["metrics_split"] == "test" and kmmd == pytest.approx(recorded["metrics"]["kmmd"], abs=1e-4)
    assert main(["sample", os.path.join(out, "best"), "--out", str(tmp_path / "g.png"), "--n", "4"]) == 0
    assert (tmp_path / "g.png").stat().st_size > 0
    assert open(os.path.join(out, "metric_vs_params.png"), "rb").read(4) == b"\x89PNG"


def _interrupt_after(n: int):
    """A Tune callback that sends the driver SIGUSR1 (Tune's stop signal, like Ctrl+C) once n trials ended."""
    from ray.tune import Callback

    class Interrupt(Callback):
        ended: list[str] = []

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.ended.append(trial.trial_id)
            if len(self.ended) == n:
                os.kill(os.getpid(), signal.SIGUSR1)

    return Interrupt()


def _interrupt_and_resume(source, out, trace, trials, interrupt_after, concurrent, steps=4):
    """Run a search, interrupt it after some trials ended, resume it; returns (ended trials, executions)."""
    from ganlode.orchestrator.search.run import run_search
    from ganlode.orchestrator.search.spec import read_spec

    spec = _spec(source, out, trials=trials, concurrent=concurrent, steps=steps)
    interrupt = _interrupt_after(interrupt_after)
    first = run_search(spec, callbacks=[interrupt], hooks={"trace_dir": trace}, verbose=0)
    assert not first.complete and first.finished < trials
    ended = list(interrupt.ended)
    assert len(ended) >= interrupt_after
    second = run_search(read_spec(out), resume=True, hooks={"trace_dir": trace}, verbose=0)
    assert second.complete and len(second.rows) == trials
    return ended, _trace(trace)


def test_interrupted_search_resumes_without_rerunning_finished_trials(ray_cluster, source, tmp_path, capsys):
    out, trace = str(tmp_path / "search"), str(tmp_path / "trace")
    ended, runs = _interrupt_and_resume(source, out, trace, trials=4, interrupt_after=2, concurrent=2)
    table = pq.read_table(os.path.join(out, "trials.parquet")).to_pylist()
    assert len(table) == 4 and all(r["status"] in ("done", "stopped") for r in table)
    assert set(runs) == {r["trial_id"] for r in table}
    for trial in ended:  # ended before the interruption: executed once, never again
        assert runs[trial] == [0], f"{trial} ran again: {runs[trial]}"
    assert sum(len(v) for v in runs.values()) <= 4 + 1  # at most the interrupted trial ran twice
    # continuing a search that is complete only rewrites its results
    assert main(["tune", "--resume", out, "--quiet"]) == 0
    assert "best: trial" in capsys.readouterr().out


def test_search_on_s3_resumes_from_there(ray_cluster, source, s3_bucket, tmp_path, monkeypatch):
    from ganlode.orchestrator import storage
    from ganlode.orchestrator.artifacts.loaders import load_model

    out = f"{s3_bucket}/tune/search"
    ended, runs = _interrupt_and_resume(source, out, str(tmp_path / "trace"), trials=2, interrupt_after=1, concurrent=1, steps=2)
    assert all(runs[t] == [0] for t in ended)
    table = pq.read_table(storage.pyarrow_filesystem(storage.join(out, "trials.parquet"))[1],
                          filesystem=storage.pyarrow_filesystem(out)[0]).to_pylist()
    assert len(table) == 2
    best = storage.read_json(storage.join(out, "best.json"))
    assert load_model(storage.join(out, "best")).config["tune"]["trial_id"] == best["trial_id"]


def _trial_bundles():
    """A Tune callback that records each trial's reserved bundles when it starts."""
    from ray.tune import Callback

    class Bundles(Callback):
        seen: dict[str, list[dict]] = {}

        def on_trial_start(self, iteration, trials, trial, **info):
            self.seen[trial.trial_id] = [dict(b) for b in trial.placement_group_factory.bundles]

    return Bundles()


@pytest.mark.timeout(300)
def test_multi_source_search_runs_trials_on_actors_and_exports_the_best(ray_cluster, source, tmp_path, capsys):
    """--method mine: each trial is a run_mine run on generator actors + a coordinator placed in
    bundles the trial reserved (so trials never wait on each other's actors); a failed trial
    continues its run from the step it last reported; the best run becomes OUT/best, and
    eval reproduces its score; afterwards every actor and reservation is released."""
    import time

    from ganlode.orchestrator.search.run import run_search

    ray = ray_cluster
    arch = GANConfig(latent_dim=8, g_width=8, d_width=8)
    torch.manual_seed(1)
    g, d = build_gan(arch)
    second = str(tmp_path / "second")
    checkpoint.save_checkpoint(second, {"kind": "gan", "arch": arch.to_dict(), "train": {"loss": "ns-r1"}}, g, d)
    out, trace = str(tmp_path / "mine"), str(tmp_path / "trace")
    spec = _spec(source, out, method="mine", steps=4, trials=2, sources=(source, second),
                 target="mnist5k:3@8+mnist5k:7@8", eval_every=1)
    assert spec.engine == "ray"  # the default
    bundles = _trial_bundles()
    # the first trial to reach step 2 fails there, after reporting (and checkpointing) step 1
    outcome = run_search(spec, callbacks=[bundles], hooks={"trace_dir": trace, "fail_at_step": 2}, verbose=0)
    assert outcome.complete

    table = pq.read_table(os.path.join(out, "trials.parquet")).to_pylist()
    assert len(table) == 2 and {"mining_steps", "lr_miner", "lr"} <= set(table[0])
    # every trial reserved its own bundle (0) plus one per generator and one for the coordinator:
    # 1 CPU split four ways, a (logical) GPU per generator; 2 trials x 2 GPUs ran one at a time
    assert set(bundles.seen) == {r["trial_id"] for r in table}
    expected = [{"CPU": 0.25}, {"CPU": 0.25, "GPU": 1.0}, {"CPU": 0.25, "GPU": 1.0}, {"CPU": 0.25}]
    assert all(b == expected for b in bundles.seen.values()), bundles.seen
    assert json.load(open(os.path.join(out, "tune.json")))["gpus_per_source"] == 1.0  # kept for --resume
    # ...and its run went through the actors in those bundles (not the in-process engine)
    for r in table:
        run_config = json.load(open(os.path.join(out, "trials", r["trial_id"], "config.json")))
        assert run_config["engine"] == "ray", run_config
        assert run_config["actors"] == {"bundles": expected[1:], "caller_placement_group": True}

    # the failed trial was retried from its step-1 report, and its run resumed from that step's checkpoint
    runs = _trace(trace)
    failed = open(os.path.join(trace, "failed")).read()
    for r in table:
        assert runs[r["trial_id"]] == ([0, 1] if r["trial_id"] == failed else [0]), (r, runs)
    assert json.load(open(os.path.join(out, "trials", failed, "config.json")))["resumed_from"] == 1
    steps = [x["step"] for x in pq.read_table(os.path.join(out, "trials", failed, "shares.parquet")).to_pylist()
             if x["index"] == 0]
    assert steps and steps == list(range(1, steps[-1] + 1))  # every step once (ASHA may stop it before 4)

    best = json.load(open(os.path.join(out, "best.json")))
    config = json.load(open(os.path.join(out, "best", "config.json")))
    assert config["run_kind"] == "mine" and config["tune"]["trial_id"] == best["trial_id"]
    assert config["mining"]["mining_steps"] == best["config"]["mining_steps"]
    assert main(["eval", os.path.join(out, "best"), "--n", str(VAL_N), "--seed", "0", "--split", "val"]) == 0
    kmmd = float(next(line.split()[1] for line in capsys.readouterr().out.splitlines() if line.startswith("kmmd ")))
    assert kmmd == pytest.approx(best["value"], abs=1e-4)  # the search compared trials on validation

    # nothing is left holding resources: the trials' groups and their actors are gone
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0) < 2 or ray.available_resources().get("GPU", 0) < 2:
        assert time.monotonic() < deadline, ray.available_resources()
        time.sleep(0.5)
