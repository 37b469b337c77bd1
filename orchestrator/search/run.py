"""``ganlode tune``: a Ray Tune search (Optuna proposals, ASHA early stopping) over transfer settings.

The trials (:mod:`.trials`) report ``kmmd``, ``fid`` and ``mv`` on the validation set at every
evaluation, with a checkpoint of their whole training state; ASHA stops the trials that trail
at each rung, Optuna (TPE, seeded) proposes the next. :func:`run_search` checks the spec,
builds the tuner (or restores it), fits it, and once every trial has ended writes the results
(:mod:`.results`).

Validation set. Trials are scored on the target's validation split (``split="val"``, disjoint
from every training draw and from the test split), in full unless ``val_n`` caps it; the best
trial is chosen on it, and only the exported best run (``OUT/best``) is then scored once on the
test split, which is what ``ganlode eval`` reads. A search's best validation score is optimistic;
its test score is not.

Faults. ``FailureConfig(max_failures)`` restarts a failed trial from its last checkpoint (the
exact training state: weights, optimizer moments, RNG, step), so a retried trial continues the
run it was on. An interrupted search (Ctrl+C, SIGUSR1, a lost driver) is continued by
``Tuner.restore(resume_unfinished=True, resume_errored=True)``: finished trials stay as they
are, unfinished ones continue from their checkpoints, and the searcher proposes the rest.

One writer. The search holds the lock of its ``--out`` (``OUT/.ganlode-lock``,
:mod:`..pipelines.ownership`) from its first write to its last, so a second search (a
``--resume`` included) into the same ``--out`` is refused while it runs. Multi-source trials
lock their own run directories (``OUT/trials/<id>/.ganlode-lock``, other files): no trial ever
waits on the search's lock, and Ray's workers are spawned, so none inherits it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any, Sequence

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from .. import storage
from ..artifacts.records import RunRecord
from ..artifacts.rundir import command_line
from ..cluster import ensure_ray
from ..errors import UserError
from ..pipelines.ownership import owning
from .results import write_results
from .spec import RUN_KIND, SEARCH_DIR, SPEC_FILE, Prepared, SearchSpec, check_spec, experiment_path, holds_search
from .trials import capped_concurrency, trainable, trial_needs, with_cluster_gpus


@dataclass
class SearchOutcome:
    complete: bool
    finished: int  # trials that ended (done, stopped early or errored)
    total: int  # trials the search asked for
    grid: Any = None  # ray.tune.ResultGrid
    prepared: Prepared | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None


def _check_out(spec: SearchSpec, resume: bool) -> None:
    """What ``spec.out`` must (not) hold; judged under its lock."""
    if resume:
        if not holds_search(spec.out):
            raise UserError(f"{spec.out} holds no restorable search (no Tune experiment in {SEARCH_DIR}/): "
                            "pass the --out of an earlier `ganlode tune`, or start a new search")
    elif storage.exists(storage.join(spec.out, SPEC_FILE)):
        raise UserError(f"{spec.out} already holds a search: continue it with `ganlode tune --resume {spec.out}`, "
                        "or pick a new --out")


def _write_spec(spec: SearchSpec, concurrency: int) -> None:
    """``OUT/tune.json``: the search's record, everything ``--resume`` needs."""
    settings = spec.to_dict()
    record = RunRecord(run_kind=RUN_KIND, command=command_line(), method=settings.pop("method"),
                       target=settings.pop("target"), seed=settings.pop("seed"),
                       extra={**settings, "max_concurrent": concurrency, "created": storage.utc_now()})
    storage.write_json_atomic(storage.join(spec.out, SPEC_FILE), record.to_dict())


def _new_tuner(spec: SearchSpec, prepared: Prepared, callbacks: Sequence[Any], hooks: dict[str, Any] | None,
               verbose: int) -> tune.Tuner:
    free = ray.available_resources()
    concurrency = capped_concurrency(spec, free)
    if verbose:
        gpus = f" and {free.get('GPU', 0):g} GPUs" if trial_needs(spec).get("GPU") else ""
        capped = f" (capped from {spec.concurrent}: the cluster has {free.get('CPU', 0):g} CPUs{gpus} free)" \
            if concurrency < min(spec.concurrent, spec.trials) else ""
        print(f"tune: {spec.trials} trials of {spec.method} x {spec.steps} steps, at most {concurrency} at once"
              f"{capped}; optimising {spec.metric} ({spec.mode}) on the validation split of {spec.target}",
              file=sys.stderr)
    _write_spec(spec, concurrency)
    fs, path = experiment_path(spec.out)
    scheduler = ASHAScheduler(time_attr="step", max_t=spec.steps, grace_period=spec.asha_grace,
                              reduction_factor=spec.reduction_factor)
    return tune.Tuner(
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


def run_search(
    spec: SearchSpec,
    *,
    resume: bool = False,
    callbacks: Sequence[Any] = (),
    hooks: dict[str, Any] | None = None,
    verbose: int = 1,
    force_unlock: bool = False,
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
        force_unlock: remove the lock of ``spec.out`` even if its holder may be alive (``--force-unlock``);
            without it a search another process is running there is refused.

    Returns:
        A SearchOutcome; ``complete`` is False when the search was interrupted.
    """
    prepared = check_spec(spec)
    with owning(spec.out, force_unlock=force_unlock) as lock:
        _check_out(spec, resume)
        return _search(spec, prepared, lock, resume=resume, callbacks=callbacks, hooks=hooks, verbose=verbose)


def _search(spec: SearchSpec, prepared: Prepared, lock: storage.RunLock, *, resume: bool, callbacks: Sequence[Any],
            hooks: dict[str, Any] | None, verbose: int) -> SearchOutcome:
    """Fit the (new or restored) tuner and write the results; the lock of ``spec.out`` is held."""
    ensure_ray()
    if not resume or spec.gpus_per_source is None:
        spec = with_cluster_gpus(spec, ray.available_resources())
    # Trials checkpoint at every evaluation by design (ASHA may stop them at any rung), so Tune's
    # warning about frequent experiment snapshots is expected noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if resume:
        fs, path = experiment_path(spec.out)
        tuner = tune.Tuner.restore(path, trainable(spec, hooks), resume_unfinished=True, resume_errored=True,
                                   storage_filesystem=fs)
    else:
        tuner = _new_tuner(spec, prepared, callbacks, hooks, verbose)
    grid = tuner.fit()
    ended = grid.num_terminated + grid.num_errors
    outcome = SearchOutcome(complete=len(grid) >= spec.trials and ended == len(grid), finished=ended,
                            total=spec.trials, grid=grid, prepared=prepared)
    if outcome.complete:
        lock.check()  # S3: no results after the lock was lost
        outcome.rows, outcome.best = write_results(prepared, grid)
    return outcome
