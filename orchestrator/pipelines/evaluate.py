"""Scoring a stored model again under the evaluation protocol (``ganlode eval``).

What the path is comes from its ``config.json`` record, never from which files lie beside it:
a run directory (its final checkpoint is scored, and the rows are appended to the run's
``metrics.parquet``) or a checkpoint (zoo:NAME included; nothing is written).

Scoring a run takes the run's lock (:mod:`.ownership`) before it reads the model, so rows are
never appended to a run that another process is writing: that is refused in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import storage
from ..artifacts.loaders import load_model, locate
from ..artifacts.records import RunRecord, record_type
from ..artifacts.rundir import CONFIG_FILE, METRICS_FILE, metric_rows
from ..artifacts.zoo import resolve
from ..data.convert import Conversion
from ..errors import UserError
from ..evaluation import features, protocol
from .ownership import LockedRunDir, owning


@dataclass
class Evaluation:
    path: str              # the model scored
    method: str
    target: str
    n: int                 # reference images (and samples)
    split: str             # the reference split: test (reported figures) or val
    values: dict[str, float]
    appended_to: str | None  # the run's metrics table the rows went to
    features: str = "classifier"  # the feature network that scored it (auto resolved)


def _recorded_target(config: dict[str, Any], what: str) -> str:
    spec = config.get("target") or (config.get("data") or {}).get("spec")
    if not spec:
        raise UserError(f"{what} records no target: pass --target SPEC, e.g. --target mnist5k:7")
    return spec


def _run_at(path: str) -> str | None:
    """The run directory ``path`` names (its config.json records a run), else None (a checkpoint,
    zoo:NAME, or nothing: :func:`locate` words that)."""
    resolved = resolve(path)
    config = storage.join(resolved, CONFIG_FILE)
    if storage.exists(config) and record_type(storage.read_json(config)) is RunRecord:
        return resolved
    return None


def evaluate_model(path: str, *, target: str | None = None, n: int | None = None, feature_kind: str = "auto",
                   seed: int = 0, split: str = protocol.REPORT_SPLIT, force_unlock: bool = False) -> Evaluation:
    """Score the run or checkpoint at ``path`` against ``target``'s ``split`` (test by default; default
    target: the recorded one).

    A run's rows are appended under its lock: a run that another process is writing is refused
    (``force_unlock``, ``--force-unlock``: remove a lock whose holder may be alive)."""
    if split not in protocol.EVAL_SPLITS:
        raise UserError(f"--split {split} is unknown: use one of {', '.join(protocol.EVAL_SPLITS)}")
    if n is not None and n < 2:
        raise UserError("--n must be at least 2 (FID needs two or more images)")
    if seed < 0:
        raise UserError("--seed must be >= 0")
    if feature_kind not in features.FEATURES:
        raise UserError(f"unknown features {feature_kind!r}: use one of {', '.join(features.FEATURES)}")
    run_path = _run_at(path)
    if run_path is None:
        return _evaluate(path, target, n, feature_kind, seed, split, None)
    with owning(run_path, force_unlock=force_unlock) as lock:
        return _evaluate(path, target, n, feature_kind, seed, split, LockedRunDir(run_path, lock))


def _evaluate(path: str, target: str | None, n: int | None, feature_kind: str, seed: int, split: str,
              run: LockedRunDir | None) -> Evaluation:
    where = locate(path)
    given = target
    if where.run is not None:
        config = where.run.to_dict()
        target = target or _recorded_target(config, f"the run {where.path}")
        method, step = where.run.method or where.run.run_kind, int(config.get("steps") or 0)
    model = load_model(where.checkpoint)
    if where.run is None:
        config = model.config
        target = target or _recorded_target(config, f"the checkpoint {model.path}")
        method, step = model.config.get("method") or model.config.get("model_kind", "gan"), 0
    # a model trained on a converted target (--convert-target) is scored against its target converted alike
    recorded = config.get("target_conversion") if given is None else None
    convert = Conversion.from_dict(recorded) if isinstance(recorded, dict) else None
    # a run's own target: its seed drew its training images, so the score adds their intra-cluster diversity
    run_seed = config.get("seed") if where.run is not None and given is None else None
    ref = protocol.reference(target, n=n, feature_kind=feature_kind, split=split, convert=convert,
                             train_seed=run_seed if isinstance(run_seed, int) else None)
    values = protocol.score(model.sampler, ref, seed=seed)
    feature_kind = ref.feature_kind  # auto resolved by the reference images
    appended_to = None
    if where.run is not None:
        if run is None or run.path != where.path:  # config.json changed between the two reads
            raise UserError(f"{where.path} changed while it was being scored; run `ganlode eval` again")
        run.append_metrics(metric_rows(method, step, values, seed=seed, features=feature_kind, n=len(ref),
                                       target=target, split=split))
        appended_to = run.file(METRICS_FILE)
    return Evaluation(model.path, method, target, len(ref), split, values, appended_to, feature_kind)
