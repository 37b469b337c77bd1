"""The trials of a search: one trainable per kind of search, and what each trial reserves.

One trial trains one configuration of a transfer method from the same source, on the same
target draw and with the same training seed (common random numbers: trials differ only in
their settings). Every ``eval_every`` steps (and at the last step) it scores the model under
the evaluation protocol on the validation set and reports ``kmmd``, ``fid`` and ``mv`` to Tune
together with a checkpoint of its whole training state (:mod:`.state`).

Several sources (``--method mine``). A trial is one
:func:`ganlode.orchestrator.pipelines.mine.run_mine` run on Ray actors, one generator actor per
source and a coordinator, as ``ganlode mine`` runs it. The trial reserves their resources with
its own (a placement group: its bundle, then one per generator and one for the coordinator;
``--cpus-per-trial`` is split between them, and the generators share the cluster's GPUs, one
each when there are enough), so a trial never waits on actors behind other trials'
reservations. ``SearchSpec.engine="in-process"`` runs the in-process reference engine within
the trial's bundle instead.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

import torch
from ray import tune
from ray.util import get_current_placement_group

from ...actors.placement import default_gpus_per_source, plan_nested_resources
from ...methods import catalog, options as method_options, registry
from ...methods.base import Adapter, Source, TransferOptions
from ..artifacts.sampling import generator_sampler
from ..data.imageset import ImageSet
from ..data.convert import Conversion
from ..errors import UserError
from ..evaluation import protocol
from ..evaluation.classifier import perceptual_features
from ..pipelines.mine import mine_config, run_mine
from ..pipelines.sources import load_source
from . import space as S
from .spec import DIVERSITY, REPORTED, SearchSpec, critic_blocks, target_for, trial_run_dir
from .state import load_trial_state, read_meta, save_trial_state, write_meta


@dataclass
class TrialSetup:
    adapter: Adapter
    method: str  # the methods/ method that trains it
    options: TransferOptions  # resolved
    source: Source
    checkpoint: Any  # the source's loaded checkpoint (path, config, arch)
    target: ImageSet  # in the source's shape (converted when ``conversion`` is set)
    conversion: Conversion | None = None  # --convert-target: how the target and its references are converted


def build_trial(spec: SearchSpec, config: dict[str, Any]) -> TrialSetup:
    """The adapter of one configuration, freshly initialised (seeded by ``spec.seed``)."""
    src, ckpt = load_source(spec.sources[0])
    space = S.parse_space(spec.space, spec.method, critic_blocks=critic_blocks(src), steps=spec.steps)
    method = S.build_method(spec.method)
    options = method_options.resolve(method, space.options(config), src, spec.steps)
    target, conversion = target_for(spec, ckpt.arch)
    adapter = registry.build(method, src, target.images, options, seed=spec.seed,
                      feature_fn=perceptual_features() if method in catalog.LATENT else None)
    return TrialSetup(adapter, method, options, src, ckpt, target, conversion)


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
    t0 = time.time()
    s = SearchSpec.from_dict(spec)
    torch.set_num_threads(max(1, int(s.cpus_per_trial)))
    trial_id = tune.get_context().get_trial_id()
    setup = build_trial(s, config)
    adapter = setup.adapter
    ref = protocol.reference(s.target, n=s.val_n, split=protocol.SELECTION_SPLIT,  # never the test split
                             convert=setup.conversion, train_seed=s.seed)
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
                values = protocol.score(generator_sampler(adapter.sampling_generator()), ref, seed=s.seed)
            history.append({"step": step, **{k: float(v) for k, v in values.items()}})
            wall_s = earlier_s + time.time() - t0  # this trial's own time, over all its executions
            with tempfile.TemporaryDirectory(prefix="ganlode-trial-") as d:
                save_trial_state(adapter, d, step, history, wall_s)
                metrics = {"step": step, "diverged": diverged, "wall_s": wall_s, **{k: float(values[k]) for k in REPORTED},
                           **({DIVERSITY: float(values[DIVERSITY])} if DIVERSITY in values else {}),
                           **{f"loss_{k}": float(v) for k, v in stats.items()}}
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
            if diverged:
                return


def mine_resources(spec: SearchSpec) -> tuple[float, Any]:
    """A multi-source trial on actors: (its own CPUs, the MiningResources of its N+1 actors).

    The trial's ``cpus_per_trial`` is split between the trial's process and the actors (2
    sources, 1 CPU: 0.25 each), so a trial reserves what any trial is given.
    """
    return plan_nested_resources(len(spec.sources), spec.cpus_per_trial, spec.gpus_per_source or 0.0)


def trial_resources(spec: SearchSpec) -> Any:
    """What one trial reserves, as a placement group: everything a trial runs must fit in it,
    so no trial ever waits on resources another trial holds. A multi-source trial on actors
    holds bundle 0 itself and reserves bundles 1..N+1 for its generator actors and coordinator
    (an actor a trial starts outside its reservation can wait for ever behind other trials)."""
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
    if spec.method != S.MULTI_SOURCE or spec.engine != "ray" or spec.gpus_per_source is not None:
        return spec
    return replace(spec, gpus_per_source=default_gpus_per_source(len(spec.sources), float(available.get("GPU", 0.0))))


def trainable(spec: SearchSpec, hooks: dict[str, Any] | None = None):
    """The search's trainable, with its spec, test hooks and per-trial reservation bound."""
    fn = mine_trial if spec.method == S.MULTI_SOURCE else transfer_trial
    return tune.with_resources(tune.with_parameters(fn, spec=spec.to_dict(), hooks=hooks), trial_resources(spec))


def mine_trial(config: dict[str, Any], spec: dict[str, Any], hooks: dict[str, Any] | None = None) -> None:
    """The multi-source trainable: one :func:`ganlode.orchestrator.pipelines.mine.run_mine` run per trial.

    With the ``ray`` engine the run's generator actors and coordinator take bundles 1..N+1 of
    the trial's own placement group (:func:`trial_resources`), and are stopped when the run
    ends, fails or is stopped by ASHA. The run directory ``OUT/trials/<trial id>`` holds the
    run's own step checkpoints (written every ``eval_every`` steps, each once its evaluation was
    reported), so a retried or restored trial continues it with ``resume=True`` on fresh actors;
    the Tune checkpoint only records the step and the run's path.
    """
    s = SearchSpec.from_dict(spec)
    on_actors = s.engine == "ray"
    placement_group = None
    if on_actors:
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
            write_meta(d, step=step, run=run_dir, wall_s=wall_s)
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
                      placement_group=placement_group, convert_target=s.convert_target)
    report(s.steps, result.val_metrics)  # trials are compared on validation; test is for the exported best
