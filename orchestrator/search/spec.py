"""What defines a search, stored as ``OUT/tune.json`` and checked before anything starts.

Storage. The Tune experiment lives in ``OUT/search`` (local or s3://, through
:func:`~ganlode.orchestrator.storage.pyarrow_filesystem`), the search settings in
``OUT/tune.json``. A finished search adds ``trials.parquet``, ``best.json``, ``best/`` (a
normal run directory: ``ganlode sample OUT/best``, ``ganlode eval OUT/best``) and
``metric_vs_params.png``; multi-source trials keep their run directories in ``OUT/trials/``.
Each name has one constant here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ...actors.placement import plan_nested_resources
from ...methods import catalog
from ...methods import options as method_options
from ...methods.base import Source
from ...methods.interface import critic_depth
from .. import storage
from ..data.convert import Conversion, conform
from ..data.imageset import ImageSet
from ..data.spec import load_target
from ..errors import UserError
from ..pipelines.sources import load_source, load_sources
from ..pipelines.transfer_plan import check_source_critic
from . import space as S

SEARCH_DIR = "search"  # the Tune experiment, under --out
SPEC_FILE = "tune.json"
TRIALS_FILE = "trials.parquet"
BEST_FILE = "best.json"
BEST_RUN = "best"
PLOT_FILE = "metric_vs_params.png"
TRIALS_DIR = "trials"  # multi-source trials' run directories
REPORTED = ("kmmd", "fid", "mv")  # what every trial reports at each evaluation
DIVERSITY = "intra_div"  # reported beside them when the trial's training images are few enough (protocol)
MINE_ENGINES = ("ray", "in-process")
RUN_KIND = "tune"  # the run_kind of tune.json


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
    convert_target: bool = False  # --convert-target: a target of another shape is converted to the source's

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
    if not S.is_method(spec.method):
        raise UserError(f"unknown --method {spec.method!r}: use one of {S.method_names()}")
    if spec.method == S.MULTI_SOURCE:
        if len(spec.sources) < 2:
            raise UserError("--method mine searches a multi-source run: repeat --source (two or more)")
    elif len(spec.sources) != 1:
        raise UserError(f"--method {spec.method} takes one --source (got {len(spec.sources)}); "
                        "use --method mine for several sources")
    _check_settings(spec)
    src = ckpt = None
    if spec.method == S.MULTI_SOURCE:
        arch, blocks = _check_mine_sources(spec)
    else:
        src, ckpt = _check_source(spec)
        arch, blocks = ckpt.arch, critic_blocks(src)
    target_for(spec, arch)
    space = S.parse_space(spec.space, spec.method, critic_blocks=blocks, steps=spec.steps,
                          where="search space")
    if ckpt is not None and ckpt.critic_from_scratch:
        _check_source_critic(spec, space, src, ckpt)
    return Prepared(spec, space, blocks)


def target_for(spec: SearchSpec, arch: Any) -> tuple[ImageSet, Conversion | None]:
    """The search's target draw in the shape of architecture ``arch`` (the first source's), and the
    conversion that made it (None: it had that shape); a mismatch without ``--convert-target`` is refused."""
    maker = f"source {spec.sources[0]} makes" if len(spec.sources) == 1 else "the sources make"
    return conform(load_target(spec.target, seed=spec.seed), spec.target, arch.channels, arch.resolution, maker,
                   spec.convert_target)


def _check_source_critic(spec: SearchSpec, space: S.SearchSpace, src: Source, ckpt: Any) -> None:
    """UserError, as ``ganlode transfer`` gives, when a trial at a corner of the space would read the
    trained weights of a source critic that starts from scratch."""
    method = S.build_method(spec.method)
    for probe in space.probes():
        resolved = method_options.resolve(method, space.options(probe), src, spec.steps)
        check_source_critic(spec.method, resolved, ckpt, search=True)


def _check_settings(spec: SearchSpec) -> None:
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


def _check_mine_sources(spec: SearchSpec) -> tuple[Any, int]:
    """(the sources' architecture, critic blocks) of a multi-source search, whose trials fit their CPUs."""
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
    return load_sources(list(spec.sources))[0].arch, 3


def _check_source(spec: SearchSpec) -> tuple[Source, Any]:
    """The source (nets) and its checkpoint of a single-source search."""
    src, ckpt = load_source(spec.sources[0])
    if S.build_method(spec.method) in catalog.NEEDS_CRITIC and src.critic is None:
        raise UserError(f"{ckpt.path} holds no critic weights, which --method {spec.method} starts from: "
                        "use a checkpoint written by `ganlode pretrain`")
    return src, ckpt


def critic_blocks(src: Source) -> int:
    """The source critic's depth through the interface, the range of freeze_depth (0 without a critic:
    nothing to freeze; the methods that need one refuse such a source)."""
    return critic_depth(src.critic) if src.critic is not None else 0


def with_default_space(spec: SearchSpec) -> SearchSpec:
    """``spec`` with the method's default space (the critic depth comes from the first source)."""
    src, _ = load_source(spec.sources[0])
    return replace(spec, space=S.default_space(spec.method, critic_blocks=critic_blocks(src), steps=spec.steps))


def trial_run_dir(spec: SearchSpec, trial_id: str) -> str:
    """A multi-source trial's run directory, ``OUT/trials/<trial id>``."""
    return storage.join(spec.out, TRIALS_DIR, trial_id)


def experiment_path(out: str) -> tuple[Any, str]:
    """The pyarrow filesystem and path of the Tune experiment under ``out``."""
    fs, root = storage.pyarrow_filesystem(out)
    return fs, f"{root.rstrip('/')}/{SEARCH_DIR}"


def holds_search(out: str) -> bool:
    """True if ``out`` holds a search that Tune can restore."""
    from ray import tune

    if not storage.exists(storage.join(out, SPEC_FILE)):
        return False
    fs, path = experiment_path(out)
    return tune.Tuner.can_restore(path, storage_filesystem=fs)


def read_spec(out: str) -> SearchSpec:
    """The search stored in ``out`` (its ``tune.json``)."""
    if not storage.exists(storage.join(out, SPEC_FILE)):
        raise UserError(f"{out} holds no search (no {SPEC_FILE}): pass the --out of an earlier `ganlode tune`")
    raw = storage.read_json(storage.join(out, SPEC_FILE))
    try:
        return SearchSpec.from_dict({**raw, "out": out})
    except (KeyError, TypeError) as e:
        raise UserError(f"{storage.join(out, SPEC_FILE)} is incomplete ({e}): restore it or start a new search") from None


