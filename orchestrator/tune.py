"""``ganlode tune``: a Ray Tune search (Optuna proposals, ASHA early stopping) over transfer settings.

One trial trains one configuration of a transfer method from the same source, on the same
target draw and with the same training seed (common random numbers: trials differ only in
their settings). Every ``eval_every`` steps (and at the last step) it scores the model under
the evaluation protocol (:mod:`ganlode.orchestrator.evaluation`) on the validation set and
reports ``kmmd``, ``fid`` and ``mv`` to Tune together with a checkpoint of its whole training
state; ASHA stops the trials that trail at each rung, Optuna (TPE, seeded) proposes the next.

Validation set. The target's held-out evaluation split (``data.load_target(spec,
split="eval")``, disjoint from every training draw), in full unless ``val_n`` caps it. It is
the reference ``ganlode eval`` uses, so a search's best score is optimistic on it; compare a
chosen configuration with fresh training seeds (``benchmarks/tune_search.py`` does).

Storage. The Tune experiment lives in ``OUT/search`` (local or s3://, through
:func:`storage.pyarrow_filesystem`), the search settings in ``OUT/tune.json``. A finished search
adds ``trials.parquet``, ``best.json``, ``best/`` (a normal run directory: ``ganlode sample
OUT/best``, ``ganlode eval OUT/best``) and ``metric_vs_params.png``.

Several sources (``--method mine``). A trial is one :func:`ganlode.orchestrator.mine.run_mine`
run on Ray actors, one generator actor per source and a coordinator, as ``ganlode mine`` runs
it. The trial reserves their resources with its own (a placement group: its bundle, then one
per generator and one for the coordinator; ``--cpus-per-trial`` is split between them, and the
generators share the cluster's GPUs, one each when there are enough), so a trial never waits on
actors behind other trials' reservations. ``SearchSpec.engine="in-process"`` runs the
in-process reference engine within the trial's bundle instead.

Faults. ``FailureConfig(max_failures)`` restarts a failed trial from its last checkpoint (the
exact training state: weights, optimizer moments, RNG, step), so a retried trial continues the
run it was on. An interrupted search (Ctrl+C, SIGUSR1, a lost driver) is continued by
``Tuner.restore(resume_unfinished=True, resume_errored=True)``: finished trials stay as they
are, unfinished ones continue from their checkpoints, and the searcher proposes the rest.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Sequence

import torch

from ..methods import transfer as T
from . import data, evaluation, storage
from . import search_space as S
from .errors import UserError

SEARCH_DIR = "search"  # the Tune experiment, under --out
SPEC_FILE = "tune.json"
TRIALS_FILE = "trials.parquet"
BEST_FILE = "best.json"
BEST_RUN = "best"
PLOT_FILE = "metric_vs_params.png"
TRIALS_DIR = "trials"  # multi-source trials' run directories
REPORTED = ("kmmd", "fid", "mv")  # what every trial reports at each evaluation
STATE_FILE = "state.pt"
META_FILE = "meta.json"
STATE_FORMAT = "ganlode-tune-state/1"
MINE_ENGINES = ("ray", "in-process")


@dataclass(frozen=True)
class SearchSpec:
    """Everything that defines a search; stored as ``OUT/tune.json`` so ``--resume`` needs nothing else."""

    sources: tuple[str, ...]
    target: str
    method: str
    space: dict[str, Any]  # file-shaped (search_space module docstring), validated
    trials: int
    concurrent: int
    steps: int
    eval_every: int
    out: str
    metric: str = "kmmd"
    mode: str = "min"
    seed: int = 0
    val_n: int | None = None
    cpus_per_trial: float = 1.0
    max_failures: int = 2
    grace_period: int | None = None  # steps a trial runs before ASHA may stop it (None: see asha_grace)
    reduction_factor: int = 2
    # --method mine only: "ray" runs each trial's sources on generator actors beside a coordinator
    # (the trial reserves their bundles, see trial_resources); "in-process" is the one-process
    # reference engine, within the trial's own CPUs.
    engine: str = "ray"
    gpus_per_source: float | None = None  # None: fixed from the cluster's free GPUs when the search starts

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sources"] = list(self.sources)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SearchSpec":
        names = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in d.items() if k in names}, "sources": tuple(d["sources"])})

    @property
    def asha_grace(self) -> int:
        """Default: a quarter of the budget, at least one evaluation, on the evaluation grid."""
        if self.grace_period is not None:
            return self.grace_period
        quarter = max(self.eval_every, self.steps // 4)
        return min(self.steps, quarter - quarter % self.eval_every or self.eval_every)


@dataclass
class Prepared:
    """What the driver learned while checking a spec (the source's shape, the parsed space)."""

    spec: SearchSpec
    space: S.SearchSpace
    critic_blocks: int


def check_spec(spec: SearchSpec) -> Prepared:
    """Validate every input before anything is written or started; problems are one-line UserErrors."""
    from .transfer import load_source

    if not S.is_method(spec.method):
        raise UserError(f"unknown --method {spec.method!r}: use one of {S.method_names()}")
    if spec.method == S.MULTI_SOURCE:
        if len(spec.sources) < 2:
            raise UserError("--method mine searches a multi-source run: repeat --source (two or more)")
    elif len(spec.sources) != 1:
        raise UserError(f"--method {spec.method} takes one --source (got {len(spec.sources)}); "
                        "use --method mine for several sources")
    for name, value, low in (("--trials", spec.trials, 1), ("--concurrent", spec.concurrent, 1),
                             ("--steps", spec.steps, 1), ("--eval-every", spec.eval_every, 1),
                             ("--max-failures", spec.max_failures, 0)):
        if not isinstance(value, int) or value < low:
            raise UserError(f"{name} must be a whole number >= {low}, got {value}")
    if spec.eval_every > spec.steps:
        raise UserError(f"--eval-every ({spec.eval_every}) exceeds --steps ({spec.steps}): trials would report only "
                        "at the end and ASHA could not stop any; use --eval-every <= --steps")
    if spec.metric not in REPORTED:
        raise UserError(f"--metric {spec.metric!r} is not reported by any trial: use one of {', '.join(REPORTED)}")
    if spec.mode not in ("min", "max"):
        raise UserError(f"--mode must be min or max, got {spec.mode!r}")
    if spec.val_n is not None and spec.val_n < 2:
        raise UserError("--val-n must be at least 2 (FID needs two or more images)")
    if not spec.cpus_per_trial > 0:
        raise UserError(f"--cpus-per-trial must be > 0, got {spec.cpus_per_trial}")
    if spec.grace_period is not None and not 1 <= spec.grace_period <= spec.steps:
        raise UserError(f"--grace-period must lie in 1..--steps ({spec.steps}), got {spec.grace_period}")
    if spec.method == S.MULTI_SOURCE:
        from ..actors.placement import plan_nested_resources
        from .mine import load_sources

        if spec.engine not in MINE_ENGINES:
            raise UserError(f"unknown mining engine {spec.engine!r}: use one of {', '.join(MINE_ENGINES)}")
        if spec.gpus_per_source is not None and not spec.gpus_per_source >= 0:
            raise UserError(f"gpus_per_source must be >= 0, got {spec.gpus_per_source}")
        if spec.engine == "ray":
            try:
                plan_nested_resources(len(spec.sources), spec.cpus_per_trial, spec.gpus_per_source or 0.0)
            except ValueError as e:
                raise UserError(f"--cpus-per-trial {spec.cpus_per_trial:g} cannot hold a trial and its mining actors: {e}; "
                                "raise --cpus-per-trial") from None
        arches = [c.arch for c in load_sources(list(spec.sources))]
        blocks = 3
    else:
        src, ckpt = load_source(spec.sources[0])
        if S.build_method(spec.method) in T.NEEDS_CRITIC and src.critic is None:
            raise UserError(f"{ckpt.path} holds no critic weights, which --method {spec.method} starts from: "
                            "use a checkpoint written by `ganlode pretrain`")
        arches = [ckpt.arch]
        blocks = src.critic.num_blocks if src.critic is not None else 3
    target = data.load_target(spec.target, seed=spec.seed)
    arch = arches[0]
    if target.resolution != arch.resolution or target.channels != arch.channels:
        raise UserError(f"target {spec.target} holds {target.channels}x{target.resolution}x{target.resolution} images "
                        f"but source {spec.sources[0]} makes {arch.channels}x{arch.resolution}x{arch.resolution}: pick "
                        "a target of the source's image size and channels")
    space = S.parse_space(spec.space, spec.method, critic_blocks=blocks, steps=spec.steps,
                          where="search space")
    return Prepared(spec, space, blocks)


# ---------------------------------------------------------------- training state of an adapter
# A Tune checkpoint must let a retried trial continue exactly: weights, optimizer moments, RNG
# and step counters of every object the adapter holds. The walk below covers the adapters of
# methods/ (GANTrainer-based and LatentFit); an adapter with its own state_dict() wins.


def _walk(obj: Any, prefix: str, out: dict[str, Any], seen: set[int]) -> None:
    for name, value in vars(obj).items():
        key = f"{prefix}{name}"
        if isinstance(value, torch.nn.Module):
            out[key] = {"module": value.state_dict()}
        elif isinstance(value, torch.optim.Optimizer):
            out[key] = {"optim": value.state_dict()}
        elif isinstance(value, torch.Generator):
            out[key] = {"rng": value.get_state()}
        elif isinstance(value, torch.Tensor) and name != "images":  # the target set never changes
            out[key] = {"tensor": value.detach().clone()}
        elif isinstance(value, (bool, int)) and name in ("steps_done", "joint"):
            out[key] = {"value": value}
        elif type(value).__module__.startswith("ganlode.methods") and hasattr(value, "__dict__") \
                and id(value) not in seen and not _is_config(value):
            seen.add(id(value))
            _walk(value, f"{key}.", out, seen)


def _is_config(value: Any) -> bool:
    return hasattr(value, "__dataclass_fields__")


def adapter_state(adapter: T.Adapter) -> dict[str, Any]:
    """The adapter's full training state (tensors, ints, optimizer and RNG states)."""
    if hasattr(adapter, "state_dict"):
        return {"own": adapter.state_dict()}  # type: ignore[attr-defined]
    out: dict[str, Any] = {}
    _walk(adapter, "", out, {id(adapter)})
    return out


def load_adapter_state(adapter: T.Adapter, state: dict[str, Any]) -> None:
    """Inverse of :func:`adapter_state` on a freshly built adapter of the same configuration."""
    if "own" in state:
        adapter.load_state_dict(state["own"])  # type: ignore[attr-defined]
        return
    # MineGAN switches to joint fine-tuning lazily, replacing G's optimizer: switch first.
    if state.get("joint", {}).get("value") and not getattr(adapter, "joint", True):
        adapter._start_joint()  # type: ignore[attr-defined]
    for key, entry in sorted(state.items(), key=lambda kv: kv[0].count(".")):
        *path, name = key.split(".")
        owner = adapter
        for part in path:
            owner = getattr(owner, part)
        target = getattr(owner, name)
        if "module" in entry:
            target.load_state_dict(entry["module"])
        elif "optim" in entry:
            target.load_state_dict(entry["optim"])
        elif "rng" in entry:
            target.set_state(entry["rng"])
        elif "tensor" in entry:
            with torch.no_grad():
                target.copy_(entry["tensor"])
        elif name != "joint":
            setattr(owner, name, entry["value"])


def save_trial_state(adapter: T.Adapter, directory: str, step: int, history: list[dict[str, float]],
                     wall_s: float = 0.0) -> None:
    torch.save({"format": STATE_FORMAT, "step": step, "state": adapter_state(adapter)},
               os.path.join(directory, STATE_FILE))
    with open(os.path.join(directory, META_FILE), "w") as f:
        json.dump({"format": STATE_FORMAT, "step": step, "history": history, "wall_s": wall_s}, f)


def read_meta(directory: str) -> dict[str, Any]:
    with open(os.path.join(directory, META_FILE)) as f:
        return json.load(f)


def load_trial_state(adapter: T.Adapter, directory: str) -> tuple[int, list[dict[str, float]]]:
    """Restore a trial checkpoint into ``adapter``; returns (step, evaluation history)."""
    # weights_only: tensors, numbers and containers only; nothing is unpickled into code.
    blob = torch.load(os.path.join(directory, STATE_FILE), weights_only=True)
    if blob.get("format") != STATE_FORMAT:
        raise RuntimeError(f"{directory}: not a {STATE_FORMAT} checkpoint")
    load_adapter_state(adapter, blob["state"])
    with open(os.path.join(directory, META_FILE)) as f:
        meta = json.load(f)
    return int(blob["step"]), list(meta.get("history", []))


# ---------------------------------------------------------------- one trial


@dataclass
class TrialSetup:
    adapter: T.Adapter
    method: str  # the methods/ method that trains it
    options: T.TransferOptions  # resolved
    source: T.Source
    checkpoint: Any  # the source's loaded checkpoint (path, config, arch)
    target: data.ImageSet


def build_trial(spec: SearchSpec, config: dict[str, Any]) -> TrialSetup:
    """The adapter of one configuration, freshly initialised (seeded by ``spec.seed``)."""
    from .transfer import load_source, perceptual_features

    src, ckpt = load_source(spec.sources[0])
    blocks = src.critic.num_blocks if src.critic is not None else 3
    space = S.parse_space(spec.space, spec.method, critic_blocks=blocks, steps=spec.steps)
    method = S.build_method(spec.method)
    options = T.resolve_options(method, space.options(config), src, spec.steps)
    target = data.load_target(spec.target, seed=spec.seed)
    adapter = T.build(method, src, target.images, options, seed=spec.seed,
                      feature_fn=perceptual_features() if method in T.LATENT else None)
    return TrialSetup(adapter, method, options, src, ckpt, target)


def _trace(hooks: dict[str, Any] | None, trial_id: str, start: int) -> None:
    if hooks and hooks.get("trace_dir"):
        os.makedirs(hooks["trace_dir"], exist_ok=True)
        with open(os.path.join(hooks["trace_dir"], f"{trial_id}.{start}.{uuid.uuid4().hex[:8]}"), "w") as f:
            f.write(f"{os.getpid()} {time.time():.2f}\n")


def _maybe_fail(hooks: dict[str, Any] | None, trial_id: str, step: int) -> None:
    """Test hook: the first trial to reach ``fail_at_step`` fails there, once (a marker file)."""
    if not hooks or hooks.get("fail_at_step") != step or not hooks.get("trace_dir"):
        return
    try:
        fd = os.open(os.path.join(hooks["trace_dir"], "failed"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, trial_id.encode())
    os.close(fd)
    raise RuntimeError(f"injected failure at step {step}")


def transfer_trial(config: dict[str, Any], spec: dict[str, Any], hooks: dict[str, Any] | None = None) -> None:
    """The Tune trainable: train one configuration, report metrics and a checkpoint every K steps."""
    from ray import tune

    t0 = time.time()
    s = SearchSpec.from_dict(spec)
    torch.set_num_threads(max(1, int(s.cpus_per_trial)))
    trial_id = tune.get_context().get_trial_id()
    setup = build_trial(s, config)
    adapter = setup.adapter
    ref = evaluation.reference(s.target, n=s.val_n)
    start, history, earlier_s = 0, [], 0.0
    restored = tune.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as d:
            start, history = load_trial_state(adapter, d)
            earlier_s = float(read_meta(d).get("wall_s", 0.0))
    _trace(hooks, trial_id, start)
    for step in range(start + 1, s.steps + 1):
        stats = adapter.step()
        _maybe_fail(hooks, trial_id, step)
        diverged = not all(math.isfinite(v) for v in stats.values())
        if diverged or step % s.eval_every == 0 or step == s.steps:
            if diverged:  # a setting that blows up is a bad setting, not a fault to retry
                values = {k: math.inf for k in REPORTED}
            else:
                values = evaluation.score(evaluation.generator_sampler(adapter.sampling_generator()), ref, seed=s.seed)
            history.append({"step": step, **{k: float(v) for k, v in values.items()}})
            wall_s = earlier_s + time.time() - t0  # this trial's own time, over all its executions
            with tempfile.TemporaryDirectory(prefix="ganlode-trial-") as d:
                save_trial_state(adapter, d, step, history, wall_s)
                metrics = {"step": step, "diverged": diverged, "wall_s": wall_s, **{k: float(values[k]) for k in REPORTED},
                           **{f"loss_{k}": float(v) for k, v in stats.items()}}
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
            if diverged:
                return


# ---------------------------------------------------------------- the search


@dataclass
class SearchOutcome:
    complete: bool
    finished: int  # trials that ended (done, stopped early or errored)
    total: int  # trials the search asked for
    grid: Any = None  # ray.tune.ResultGrid
    prepared: Prepared | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None


def experiment_path(out: str) -> tuple[Any, str]:
    """The pyarrow filesystem and path of the Tune experiment under ``out``."""
    fs, root = storage.pyarrow_filesystem(out)
    return fs, f"{root.rstrip('/')}/{SEARCH_DIR}"


def holds_search(out: str) -> bool:
    from ray import tune

    if not storage.exists(storage.join(out, SPEC_FILE)):
        return False
    fs, path = experiment_path(out)
    return tune.Tuner.can_restore(path, storage_filesystem=fs)


def read_spec(out: str) -> SearchSpec:
    if not storage.exists(storage.join(out, SPEC_FILE)):
        raise UserError(f"{out} holds no search (no {SPEC_FILE}): pass the --out of an earlier `ganlode tune`")
    raw = storage.read_json(storage.join(out, SPEC_FILE))
    try:
        return SearchSpec.from_dict({**raw, "out": out})
    except (KeyError, TypeError) as e:
        raise UserError(f"{storage.join(out, SPEC_FILE)} is incomplete ({e}): restore it or start a new search") from None


def mine_resources(spec: SearchSpec) -> tuple[float, Any]:
    """A multi-source trial on actors: (its own CPUs, the MiningResources of its N+1 actors).

    The trial's ``cpus_per_trial`` is split between the trial's process and the actors (2
    sources, 1 CPU: 0.25 each), so a trial reserves what any trial is given.
    """
    from ..actors.placement import plan_nested_resources

    return plan_nested_resources(len(spec.sources), spec.cpus_per_trial, spec.gpus_per_source or 0.0)


def trial_resources(spec: SearchSpec) -> Any:
    """What one trial reserves, as a placement group: everything a trial runs must fit in it,
    so no trial ever waits on resources another trial holds. A multi-source trial on actors
    holds bundle 0 itself and reserves bundles 1..N+1 for its generator actors and coordinator
    (an actor a trial starts outside its reservation can wait for ever behind other trials)."""
    from ray import tune

    if spec.method == S.MULTI_SOURCE and spec.engine == "ray":
        own, mining = mine_resources(spec)
        return tune.PlacementGroupFactory([{"CPU": own}] + mining.bundles(len(spec.sources)))
    return tune.PlacementGroupFactory([{"CPU": spec.cpus_per_trial}])


def trial_needs(spec: SearchSpec) -> dict[str, float]:
    """What one trial reserves in all, per resource (its bundles added up)."""
    total: dict[str, float] = {}
    for bundle in trial_resources(spec).bundles:
        for name, amount in bundle.items():
            total[name] = total.get(name, 0.0) + amount
    return total


def capped_concurrency(spec: SearchSpec, available: dict[str, float]) -> int:
    """--concurrent, lowered to the number of trials the cluster's free CPUs (and GPUs) hold at once."""
    fits = spec.concurrent
    for name, need in trial_needs(spec).items():
        if need <= 0:
            continue
        have = float(available.get(name, 0.0))
        n = int(have / need + 1e-9)
        if n < 1:
            unit = f"{name}s" if name in ("CPU", "GPU") else name
            fix = "lower --cpus-per-trial or add nodes" if name == "CPU" else f"free some {unit} or add nodes"
            raise UserError(f"a trial needs {need:g} {unit} but the Ray cluster has {have:g} free: {fix}")
        fits = min(fits, n)
    return max(1, min(spec.concurrent, fits, spec.trials))


def with_cluster_gpus(spec: SearchSpec, available: dict[str, float]) -> SearchSpec:
    """A multi-source search on actors with ``gpus_per_source`` fixed from the cluster's free GPUs
    (1 each when there are N, 1/k of one with fewer, 0 without), so a resumed search reserves the same."""
    from dataclasses import replace

    from ..actors.placement import default_gpus_per_source

    if spec.method != S.MULTI_SOURCE or spec.engine != "ray" or spec.gpus_per_source is not None:
        return spec
    return replace(spec, gpus_per_source=default_gpus_per_source(len(spec.sources), float(available.get("GPU", 0.0))))


def trainable(spec: SearchSpec, hooks: dict[str, Any] | None = None):
    from ray import tune

    fn = mine_trial if spec.method == S.MULTI_SOURCE else transfer_trial
    return tune.with_resources(tune.with_parameters(fn, spec=spec.to_dict(), hooks=hooks), trial_resources(spec))


def trial_run_dir(spec: SearchSpec, trial_id: str) -> str:
    return storage.join(spec.out, TRIALS_DIR, trial_id)


def mine_trial(config: dict[str, Any], spec: dict[str, Any], hooks: dict[str, Any] | None = None) -> None:
    """The multi-source trainable: one :func:`ganlode.orchestrator.mine.run_mine` run per trial.

    With the ``ray`` engine the run's generator actors and coordinator take bundles 1..N+1 of
    the trial's own placement group (:func:`trial_resources`), and are stopped when the run
    ends, fails or is stopped by ASHA. The run directory ``OUT/trials/<trial id>`` holds the
    run's own step checkpoints (written every ``eval_every`` steps, each once its evaluation was
    reported), so a retried or restored trial continues it with ``resume=True`` on fresh actors;
    the Tune checkpoint only records the step and the run's path.
    """
    from ray import tune

    from .mine import mine_config, run_mine

    s = SearchSpec.from_dict(spec)
    on_actors = s.engine == "ray"
    placement_group = None
    if on_actors:
        from ray.util import get_current_placement_group

        placement_group = get_current_placement_group()
        if placement_group is None:
            raise RuntimeError("a multi-source trial on actors must run in its placement group (see trial_resources)")
        own_cpus = float(placement_group.bundle_specs[0].get("CPU", 1.0))
    else:
        own_cpus = s.cpus_per_trial
    threads = max(1, int(own_cpus))
    torch.set_num_threads(threads)
    trial_id = tune.get_context().get_trial_id()
    space = S.parse_space(s.space, s.method, critic_blocks=3, steps=s.steps)
    overrides = space.mine_overrides(config, s.steps)
    loss = overrides.pop("loss", None)
    if loss is None:
        from .transfer import load_source

        loss = load_source(s.sources[0])[0].loss
    cfg = mine_config(loss, **overrides, seed=s.seed)
    run_dir = trial_run_dir(s, trial_id)
    t0, start, earlier_s = time.time(), 0, 0.0
    restored = tune.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as d:
            meta = read_meta(d)
            start, earlier_s = int(meta["step"]), float(meta.get("wall_s", 0.0))
    _trace(hooks, trial_id, start)

    def report(step: int, values: dict[str, float]) -> None:
        wall_s = earlier_s + time.time() - t0
        with tempfile.TemporaryDirectory(prefix="ganlode-trial-") as d:
            with open(os.path.join(d, META_FILE), "w") as f:
                json.dump({"format": STATE_FORMAT, "step": step, "run": run_dir, "wall_s": wall_s}, f)
            metrics = {"step": step, "diverged": False, "wall_s": wall_s, **{k: float(values[k]) for k in REPORTED},
                       **{k: float(v) for k, v in values.items() if k.startswith("share")}}
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))

    def on_eval(step: int, values: dict[str, float]) -> None:
        # The last evaluation is reported once run_mine has written the final model: Tune may
        # end a trial as soon as it reports its last step.
        if step == 0 or step <= start or step >= s.steps:
            return
        _maybe_fail(hooks, trial_id, step)
        report(step, values)

    # On actors, each actor's threads follow its bundle; in-process, the trial's generators share its CPUs.
    result = run_mine(list(s.sources), s.target, run_dir, cfg, seed=s.seed, checkpoint_every=s.eval_every,
                      resume=True, in_process=not on_actors, threads=None if on_actors else threads,
                      eval_every=s.eval_every, on_eval=on_eval, eval_n=s.val_n, show_progress=False,
                      placement_group=placement_group)
    report(s.steps, result.metrics)


def run_search(
    spec: SearchSpec,
    *,
    resume: bool = False,
    callbacks: Sequence[Any] = (),
    hooks: dict[str, Any] | None = None,
    verbose: int = 1,
) -> SearchOutcome:
    """Run (or continue) a search and, once every trial has ended, write its results.

    Args:
        spec: the search; with ``resume`` it must be the one stored in ``spec.out``.
        resume: continue the search in ``spec.out`` (finished trials are not run again).
        callbacks: Ray Tune callbacks (progress, tests).
        hooks: test hooks for the trainable: ``trace_dir`` (one file per trial execution,
            named ``<trial_id>.<start step>.<random>``), ``fail_at_step`` (the first trial to reach that step
            fails there, once).
        verbose: Tune's console verbosity (0 silent, 1 default).

    Returns:
        A SearchOutcome; ``complete`` is False when the search was interrupted.
    """
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from .cluster import ensure_ray
    from .tune_results import write_results

    prepared = check_spec(spec)
    storage.check_writable(spec.out)
    if resume:
        if not holds_search(spec.out):
            raise UserError(f"{spec.out} holds no restorable search (no Tune experiment in {SEARCH_DIR}/): "
                            "pass the --out of an earlier `ganlode tune`, or start a new search")
    elif storage.exists(storage.join(spec.out, SPEC_FILE)):
        raise UserError(f"{spec.out} already holds a search: continue it with `ganlode tune --resume {spec.out}`, "
                        "or pick a new --out")
    ensure_ray()
    if not resume or spec.gpus_per_source is None:
        spec = with_cluster_gpus(spec, ray.available_resources())
    # Trials checkpoint at every evaluation by design (ASHA may stop them at any rung), so Tune's
    # warning about frequent experiment snapshots is expected noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    fs, path = experiment_path(spec.out)
    if resume:
        tuner = tune.Tuner.restore(path, trainable(spec, hooks), resume_unfinished=True, resume_errored=True,
                                   storage_filesystem=fs)
    else:
        free = ray.available_resources()
        concurrency = capped_concurrency(spec, free)
        if verbose:
            gpus = f" and {free.get('GPU', 0):g} GPUs" if trial_needs(spec).get("GPU") else ""
            capped = f" (capped from {spec.concurrent}: the cluster has {free.get('CPU', 0):g} CPUs{gpus} free)" \
                if concurrency < min(spec.concurrent, spec.trials) else ""
            print(f"tune: {spec.trials} trials of {spec.method} x {spec.steps} steps, at most {concurrency} at once"
                  f"{capped}; optimising {spec.metric} ({spec.mode}) on the held-out split of {spec.target}",
                  file=sys.stderr)
        storage.write_json_atomic(storage.join(spec.out, SPEC_FILE),
                                  {**spec.to_dict(), "max_concurrent": concurrency,
                                   "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        scheduler = ASHAScheduler(time_attr="step", max_t=spec.steps, grace_period=spec.asha_grace,
                                  reduction_factor=spec.reduction_factor)
        tuner = tune.Tuner(
            trainable(spec, hooks),
            param_space=prepared.space.tune_space(),
            tune_config=tune.TuneConfig(
                metric=spec.metric, mode=spec.mode, search_alg=OptunaSearch(seed=spec.seed),
                scheduler=scheduler, num_samples=spec.trials, max_concurrent_trials=concurrency, reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=SEARCH_DIR, storage_path=path.rsplit("/", 1)[0], storage_filesystem=fs,
                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=list(callbacks), verbose=verbose,
            ),
        )
    grid = tuner.fit()
    ended = grid.num_terminated + grid.num_errors
    outcome = SearchOutcome(complete=len(grid) >= spec.trials and ended == len(grid), finished=ended,
                            total=spec.trials, grid=grid, prepared=prepared)
    if outcome.complete:
        outcome.rows, outcome.best = write_results(prepared, grid)
    return outcome
