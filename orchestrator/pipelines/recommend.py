"""``ganlode recommend``: which sources to start from, measured on the user's own target.

TransferGAN's study found that the best source for a small target is not always the closest
one: a source trained on a narrow, dense domain can transfer better even to an unrelated target.
So the recommendation rests on measurements, one Ray task per candidate (``num_cpus=1``):

1. **coverage**: the share of the target's training images the candidate's unmined samples
   explain (the multi-source ``coverage`` estimate over all candidates together: a calibrated
   which-source classifier on the selector's features (``features.selection_kind``: the shipped
   classifier's unless ``--features`` names another) of 1000 samples per candidate, then EM with
   backward elimination by ``min_share`` and ``min_gain``; :mod:`.mine_shares`);
2. the unmined candidate's **FID, KMMD and MV** against the target's **validation** split;
3. a **probe**: ``probe_steps`` of plain fine-tuning on the target's training images, scored on
   the validation split (``probe_steps=0`` skips it). Its cost is recorded per candidate.

The candidates are ranked by the probe's validation FID (without a probe: the unmined FID). The
recommendation is multi-source mining of the sources coverage keeps when it keeps two or more
(the target needs several sources), else the top-ranked single source. Nothing here reads the
test split: that is left for the figures of whatever run follows.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import pyarrow as pa
import torch

from ...methods import architectures
from ...methods.catalog import DEFAULT_MIN_GAIN, DEFAULT_MIN_SHARE
from .. import storage
from ..artifacts import checkpoint
from ..artifacts.loaders import locate
from ..artifacts.rundir import CONFIG_FILE, RECOMMEND_FILE, RECOMMEND_JSON
from ..artifacts.sampling import generator_sampler
from ..artifacts.zoo import PREFIX, zoo_names
from ..cluster import ensure_ray
from ..data.spec import load_target
from ..errors import UserError
from ..evaluation import features, protocol
from ..evaluation.features import extractor
from .mine_shares import COVERAGE_SAMPLES, coverage_from_features, source_features
from .transfer import TransferSettings, build_adapter
from .transfer_plan import check

DEFAULT_PROBE_STEPS = 200
PROBE_MIN_VAL = 10  # validation images the probe's FID needs at least (fewer give noise, not a ranking)
PROBE_METHOD = "finetune"
TABLE_FILE = RECOMMEND_FILE
JSON_FILE = RECOMMEND_JSON
SCHEMA = pa.schema([
    ("rank", pa.int64()), ("source", pa.string()), ("coverage", pa.float64()),
    ("fid", pa.float64()), ("kmmd", pa.float64()), ("mv", pa.float64()),
    ("probe_steps", pa.int64()), ("probe_fid", pa.float64()), ("probe_kmmd", pa.float64()), ("probe_mv", pa.float64()),
    ("probe_s", pa.float64()), ("score_s", pa.float64()), ("recommended", pa.bool_()),
])


@dataclass
class Candidate:
    """One candidate's measurements (every metric on the validation split)."""

    source: str
    coverage: float = 0.0
    fid: float = math.nan  # the unmined source
    kmmd: float = math.nan
    mv: float = math.nan
    probe_steps: int = 0
    probe_fid: float | None = None  # after the probe (None: no probe)
    probe_kmmd: float | None = None
    probe_mv: float | None = None
    probe_s: float = 0.0  # seconds of the probe's training steps and its scoring
    score_s: float = 0.0  # seconds of loading, sampling and scoring the unmined source
    rank: int = 0
    recommended: bool = False

    @property
    def rank_fid(self) -> float:
        """The probe's validation FID, else the unmined one (inf when not finite)."""
        value = self.probe_fid if self.probe_fid is not None else self.fid
        return value if math.isfinite(value) else math.inf

    def rank_key(self) -> tuple:
        """What the ranking sorts by, best first: the probe's validation FID; without a probe, the
        coverage share first (a source whose samples explain the target can be mined for it, while
        a whole source's FID mostly measures the classes the target lacks), then the unmined FID."""
        if self.probe_fid is not None:
            return (self.rank_fid, -self.coverage, self.source)
        return (-self.coverage, self.rank_fid, self.source)


@dataclass
class Recommendation:
    target: str
    candidates: list[Candidate]  # ranked, best first
    kind: str  # "single" or "mine"
    sources: list[str]  # what to start from
    shares: list[float]  # coverage shares of ``sources`` (summing to 1)
    reason: str  # one line
    probe_steps: int
    seed: int
    features: str
    n_val: int
    coverage_details: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "features": self.features, "seed": self.seed, "split": protocol.SELECTION_SPLIT,
                "n_val": self.n_val, "probe_steps": self.probe_steps, "probe_method": PROBE_METHOD,
                "recommendation": {"kind": self.kind, "sources": self.sources, "shares": self.shares,
                                   "reason": self.reason},
                "candidates": [asdict(c) for c in self.candidates], "coverage": self.coverage_details,
                "wall_s": round(self.wall_s, 2)}


# ---------------------------------------------------------------- candidates


def _shape(path: str) -> tuple[int, int]:
    """(channels, resolution) of the model at ``path``, from its config alone (no weights loaded)."""
    config = storage.read_json(storage.join(locate(path).checkpoint, CONFIG_FILE))
    if "arch" not in config:
        raise UserError(f"{path} records no architecture: pass a GAN checkpoint written by ganlode (or zoo:NAME)")
    cfg = architectures.from_dict(config["arch"])
    return int(cfg.channels), int(cfg.resolution)


def _words(shape: tuple[int, int]) -> str:
    return f"{shape[0]}x{shape[1]}x{shape[1]}"


def candidates(sources: Sequence[str] | None, shape: tuple[int, int], target: str) -> list[str]:
    """The sources to weigh: those given (each must match ``shape``), else every zoo model that does."""
    if sources:
        wrong = [f"{s} ({_words(_shape(s))})" for s in sources if _shape(s) != shape]
        if wrong:
            raise UserError(f"target {target} holds {_words(shape)} images but {', '.join(wrong)} "
                            f"make{'s' if len(wrong) == 1 else ''} another size: pass sources of the target's image "
                            "size and channels")
        if len(set(sources)) != len(sources):
            raise UserError("a --source is listed twice: list each candidate once")
        return list(sources)
    names = [f"{PREFIX}{n}" for n in zoo_names()]
    found = [s for s in names if _shape(s) == shape]
    if not found:
        have = sorted({_words(_shape(s)) for s in names}) or ["none"]
        raise UserError(f"no zoo model makes {_words(shape)} images like target {target} (the zoo makes "
                        f"{', '.join(have)}): pass your own with --source CKPT")
    return found


# ---------------------------------------------------------------- one candidate (a Ray task)


def score_candidate(source: str, index: int, target: str, ref: protocol.Reference, *, probe_steps: int, seed: int,
                    threads: int | None = 1, selection: str = "classifier") -> dict[str, Any]:
    """Measure one candidate: coverage features, the unmined scores and the probe (validation only).
    Bad input comes back as ``{"error": one line}`` (a Ray task's exception would carry its traceback)."""
    try:
        return _score(source, index, target, ref, probe_steps=probe_steps, seed=seed, threads=threads,
                      selection=selection)
    except UserError as e:
        return {"error": str(e)}


def _score(source: str, index: int, target: str, ref: protocol.Reference, *, probe_steps: int, seed: int,
           threads: int | None, selection: str) -> dict[str, Any]:
    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    plan = None
    if probe_steps > 0:
        plan = check(TransferSettings(source, target, PROBE_METHOD, {}, probe_steps, seed, 0, ref.feature_kind), out="")
        generator = plan.ckpt.generator
    else:
        generator = checkpoint.load_checkpoint(source, with_critic=False).generator
    feats = source_features(generator, index, feature_kind=selection, seed=seed)  # coverage: the selector's features
    unmined = protocol.score(generator_sampler(generator), ref, seed=seed)
    out: dict[str, Any] = {"source": source, "features": feats, "unmined": unmined,
                           "score_s": time.perf_counter() - t0, "probe": None, "probe_s": 0.0}
    if plan is not None:
        t1 = time.perf_counter()
        adapter = build_adapter(plan)
        finite = True
        for _ in range(probe_steps):
            stats = adapter.step()
            if not all(math.isfinite(v) for v in stats.values()):
                finite = False  # a probe that diverges ranks last
                break
        out["probe"] = (protocol.score(generator_sampler(adapter.sampling_generator()), ref, seed=seed) if finite
                        else {"fid": math.inf, "kmmd": math.inf, "mv": math.nan})
        out["probe_s"] = time.perf_counter() - t1
    return out


def _run_tasks(sources: list[str], target: str, ref: protocol.Reference, probe_steps: int, seed: int, selection: str,
               log: Callable[[str], None]) -> list[dict[str, Any]]:
    import ray

    ensure_ray()
    task = ray.remote(num_cpus=1)(score_candidate)
    pending = {task.remote(s, i, target, ref, probe_steps=probe_steps, seed=seed, selection=selection): i for i, s in enumerate(sources)}
    results: list[dict[str, Any] | None] = [None] * len(sources)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        i = pending.pop(ready[0])
        r = results[i] = ray.get(ready[0])
        if "error" in r:
            for other in pending:
                ray.cancel(other)
            raise UserError(f"--source {sources[i]}: {r['error']}")
        probe = f", probe FID {r['probe']['fid']:.1f} ({r['probe_s']:.0f} s)" if r["probe"] else ""
        log(f"recommend: {len(sources) - len(pending)}/{len(sources)} {sources[i]}: unmined FID "
            f"{r['unmined']['fid']:.1f}{probe}")
    return results  # type: ignore[return-value]


# ---------------------------------------------------------------- the recommendation


def decide(cands: list[Candidate], probe_steps: int) -> tuple[str, list[str], list[float], str]:
    """(kind, sources, shares, reason) from ranked candidates (best first) with their coverage shares."""
    kept = sorted((c for c in cands if c.coverage > 0), key=lambda c: -c.coverage)
    if len(kept) >= 2:
        total = sum(c.coverage for c in kept)
        shares = [c.coverage / total for c in kept]
        listed = ", ".join(f"{c.source} {p:.2f}" for c, p in zip(kept, shares))
        return ("mine", [c.source for c in kept], shares,
                f"the target splits over {len(kept)} sources (coverage {listed}): no single source covers more than "
                f"{max(shares):.0%} of it, so mine them together")
    best = cands[0]
    runner = f" (next: {cands[1].source} {cands[1].rank_fid:.1f})" if len(cands) > 1 else ""
    if probe_steps:
        why = (f"the lowest validation FID after a {probe_steps}-step fine-tuning probe, {best.rank_fid:.1f}{runner}; "
               f"coverage puts {best.coverage:.0%} of the target on it")
    else:
        why = (f"coverage puts {best.coverage:.0%} of the target on it, and its unmined validation FID is "
               f"{best.rank_fid:.1f}{runner} (no probe)")
    return "single", [best.source], [1.0], f"{best.source}: {why}"


def recommend(target: str, sources: Sequence[str] | None = None, *, probe_steps: int = DEFAULT_PROBE_STEPS,
              seed: int = 0, feature_kind: str = "auto", min_share: float = DEFAULT_MIN_SHARE,
              min_gain: float = DEFAULT_MIN_GAIN, eval_n: int | None = None, show_progress: bool = True) -> Recommendation:
    """Weigh ``sources`` (default: the zoo models of the target's size) for ``target``; nothing is written."""
    t0 = time.time()
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if show_progress else (lambda s: None)
    if isinstance(probe_steps, bool) or not isinstance(probe_steps, int) or probe_steps < 0:
        raise UserError(f"--probe-steps must be a whole number >= 0 (0 skips the probe), got {probe_steps}")
    train = load_target(target, seed=seed)
    shape = (train.channels, train.resolution)
    names = candidates(sources, shape, target)
    ref = protocol.reference(target, n=eval_n, feature_kind=feature_kind, split=protocol.SELECTION_SPLIT)
    selection = features.selection_kind(feature_kind)  # the coverage fit's features
    feature_kind = ref.feature_kind  # the scores': auto resolved by the target's images
    if probe_steps > 0 and len(ref) < PROBE_MIN_VAL:
        raise UserError(f"target {target} has {len(ref)} validation images and the probe scores on at least "
                        f"{PROBE_MIN_VAL}: add images to the target, or pass --probe-steps 0 to rank without a probe")
    log(f"recommend: {len(names)} candidates for {len(train)} images of {target}; "
        + (f"{probe_steps}-step probe each" if probe_steps else "no probe") + f", scored on {len(ref)} validation images")
    results = _run_tasks(names, target, ref, probe_steps, seed, selection, log)
    cands = [Candidate(source=r["source"], fid=float(r["unmined"]["fid"]), kmmd=float(r["unmined"]["kmmd"]),
                       mv=float(r["unmined"]["mv"]), probe_steps=probe_steps, score_s=round(r["score_s"], 2),
                       probe_s=round(r["probe_s"], 2),
                       probe_fid=None if r["probe"] is None else float(r["probe"]["fid"]),
                       probe_kmmd=None if r["probe"] is None else float(r["probe"]["kmmd"]),
                       probe_mv=None if r["probe"] is None else float(r["probe"]["mv"])) for r in results]
    details: dict[str, Any] = {}
    if len(cands) == 1:
        cands[0].coverage = 1.0
    else:
        cov, est = coverage_from_features([r["features"] for r in results], extractor(selection)(train.images),
                                          seed=seed, min_share=min_share, min_gain=min_gain)
        details = {**est.details, "samples_per_source": COVERAGE_SAMPLES, "features": selection}
        for c, p in zip(cands, est.shares):
            c.coverage = round(float(p), 6)
    cands.sort(key=Candidate.rank_key)
    for i, c in enumerate(cands, 1):
        c.rank = i
    kind, picked, shares, reason = decide(cands, probe_steps)
    for c in cands:
        c.recommended = c.source in picked
    return Recommendation(target=target, candidates=cands, kind=kind, sources=picked, shares=shares, reason=reason,
                          probe_steps=probe_steps, seed=seed, features=feature_kind, n_val=len(ref),
                          coverage_details=details, wall_s=time.time() - t0)


# ---------------------------------------------------------------- outputs


def table(rec: Recommendation) -> pa.Table:
    rows = [{k: getattr(c, k) for k in SCHEMA.names} for c in rec.candidates]
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def check_out(out: str) -> None:
    """UserError if ``out`` already holds a recommendation (never overwritten)."""
    for name in (TABLE_FILE, JSON_FILE):
        if storage.exists(storage.join(out, name)):
            raise UserError(f"{storage.join(out, name)} exists already (never overwritten): pass a new --out, "
                            "or delete it first")
    storage.check_writable(out)


def write(rec: Recommendation, out: str) -> None:
    """``OUT/recommend.parquet`` (one row per candidate, ranked) and ``OUT/recommend.json``."""
    storage.write_table(storage.join(out, TABLE_FILE), table(rec))
    storage.write_json_atomic(storage.join(out, JSON_FILE), rec.to_dict())


def summary(rec: Recommendation) -> str:
    """The ranked table and the recommendation, as printed."""
    probe = rec.probe_steps > 0
    head = f"{'rank':>4}  {'source':<22} {'coverage':>8} {'FID':>9} {'KMMD':>7}" + (
        f" {'probe FID':>10} {'probe s':>8}" if probe else "")
    lines = [f"candidates for {rec.target} (validation split, {rec.n_val} images)", head, "-" * len(head)]
    for c in rec.candidates:
        line = f"{c.rank:>4}{'*' if c.recommended else ' '} {c.source:<22} {c.coverage:>8.2f} {c.fid:>9.1f} {c.kmmd:>7.4f}"
        if probe:
            line += f" {c.rank_fid:>10.1f} {c.probe_s:>8.1f}"
        lines.append(line)
    what = ("mine " + " + ".join(f"{s} ({p:.2f})" for s, p in zip(rec.sources, rec.shares))) if rec.kind == "mine" \
        else f"start from {rec.sources[0]}"
    lines.append(f"recommendation: {what}")
    lines.append(f"why: {rec.reason}")
    return "\n".join(lines)
