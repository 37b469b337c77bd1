"""Search spaces of ``ganlode tune``: the defaults per method, a YAML/JSON override, validation.

A space maps transfer options (the fields of
:class:`~ganlode.methods.base.TransferOptions`) to a distribution or a fixed value. In a
file (YAML or JSON, same shape)::

    freeze_depth: {randint: [0, 3]}            # whole numbers, both ends included
    l2sp_weight: {loguniform: [1.0e-3, 10]}    # low > 0
    lr: {loguniform: [1.0e-5, 1.0e-3]}
    l2sp_on: {choice: [g, d, both]}
    batch: 32                                  # fixed for every trial

A file replaces the method's default space as a whole: what it names is searched or fixed, and
every option it leaves out takes the method's usual default (as in ``ganlode transfer``).

Methods. Any method of ``ganlode transfer``; a ``+`` combination of the fine-tuning
regularisers (``freezed+l2sp``, ``l2sp+distill``, ``freezed+l2sp+distill``), which trains
``finetune`` with the union of their options; and ``mine``, a multi-source MineGAN search.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from ...methods import catalog, options as method_options
from ...methods.base import OptionError, TransferOptions
from ...methods.multisource import MultiSourceConfig
from .. import storage
from ..errors import UserError

KINDS = ("randint", "uniform", "loguniform", "choice")
INTEGER_OPTIONS = ("batch", "n_critic", "freeze_depth", "mining_steps", "probe_steps", "warmup_steps", "fisher_every",
                   "fisher_samples")
REGULARISERS = ("freezed", "l2sp", "distill")
MULTI_SOURCE = "mine"
# what a multi-source search may set: MultiSourceConfig fields; lr sets both lr_g and lr_d
MINE_OPTIONS = frozenset({"mining_steps", "lr", "lr_miner", "batch", "loss"})

# Ranges. L2-SP sums squared distances over ~1M weights while Adam normalises the gradient,
# so the weight spans 1e-3 (no visible effect) to 1e2 (weights pinned to the source).
LR_TRANSFER = (1e-5, 1e-3)
LR_SCRATCH = (5e-5, 1e-3)
LR_MINER = (1e-4, 1e-2)
LR_LATENT = {"adabn": (1e-3, 1e-1), "bsa": (1e-3, 1e-1), "glo": (1e-4, 1e-2)}
L2SP_WEIGHT = (1e-3, 1e2)
DISTILL_WEIGHT = (1e-2, 1e2)
CDC_WEIGHT = (1e1, 1e4)  # around the paper's 1000
IMPORTANCE_QUANTILE = (25.0, 75.0)  # AdAM's 50 and RICK's 40 (its code's default 75) inside


def is_method(method: str) -> bool:
    return method in catalog.METHODS or method == MULTI_SOURCE or _combination(method) is not None


def _combination(method: str) -> tuple[str, ...] | None:
    parts = tuple(method.split("+"))
    if len(parts) < 2 or len(set(parts)) != len(parts) or not set(parts) <= set(REGULARISERS):
        return None
    return parts


def method_names() -> str:
    return ", ".join([*catalog.METHODS, "freezed+l2sp (any + of freezed, l2sp, distill)", MULTI_SOURCE])


def build_method(method: str) -> str:
    """The ganlode.methods method that trains ``method``'s trials."""
    if method in catalog.METHODS:
        return method
    if method == MULTI_SOURCE:
        return "minegan"
    if _combination(method) is not None:
        return "finetune"
    raise UserError(f"unknown --method {method!r}: use one of {method_names()}")


def accepted(method: str) -> frozenset[str]:
    return MINE_OPTIONS if method == MULTI_SOURCE else catalog.ACCEPTS[build_method(method)]


@dataclass(frozen=True)
class Param:
    """One searched option: ``kind`` in KINDS with ``args`` ([low, high] or the choices)."""

    name: str
    kind: str
    args: tuple

    def to_json(self) -> dict[str, list]:
        return {self.kind: list(self.args)}

    @property
    def log_scale(self) -> bool:
        return self.kind == "loguniform"

    def corners(self) -> list[Any]:
        return list(self.args)


def default_space(method: str, *, critic_blocks: int, steps: int) -> dict[str, Any]:
    """The default search space of ``method`` as file-shaped JSON (see module docstring)."""
    lr = {"loguniform": list(LR_TRANSFER)}
    freeze_all = {"randint": [0, critic_blocks]}
    build = build_method(method)
    if method == MULTI_SOURCE:
        return {"mining_steps": {"randint": [0, steps]}, "lr_miner": {"loguniform": list(LR_MINER)}, "lr": lr}
    if build == "minegan":
        return {"mining_steps": {"randint": [0, steps]}, "lr": lr}
    if method in ("freezed",):
        return {"freeze_depth": {"randint": [1, critic_blocks]}, "lr": lr}
    if method == "l2sp":
        return {"l2sp_weight": {"loguniform": list(L2SP_WEIGHT)}, "lr": lr}
    if method == "distill":
        return {"distill_weight": {"loguniform": list(DISTILL_WEIGHT)}, "lr": lr}
    parts = _combination(method) or (REGULARISERS if method == "finetune" else ())
    if parts:
        space: dict[str, Any] = {}
        if "freezed" in parts:
            space["freeze_depth"] = freeze_all
        if "l2sp" in parts:
            space["l2sp_weight"] = {"loguniform": list(L2SP_WEIGHT)}
        if "distill" in parts:
            space["distill_weight"] = {"loguniform": list(DISTILL_WEIGHT)}
        return {**space, "lr": lr}
    if method == "cdc":
        return {"cdc_weight": {"loguniform": list(CDC_WEIGHT)}, "lr": lr}
    if method in ("adam", "rick"):
        return {"importance_quantile": {"uniform": list(IMPORTANCE_QUANTILE)}, "lr": lr}
    if method == "scratch":
        return {"lr": {"loguniform": list(LR_SCRATCH)}}
    return {"lr": {"loguniform": list(LR_LATENT[method])}}


def read_space_file(path: str) -> dict[str, Any]:
    """Parse a YAML or JSON search-space file into the file-shaped dict."""
    import yaml

    storage.check_readable(path)
    raw = storage.read_bytes(path)
    try:
        text = raw.decode("utf-8")
        doc = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as e:
        raise UserError(f"search space {path} is not valid {'JSON' if path.endswith('.json') else 'YAML'} "
                        f"({e.__class__.__name__}): write one option per line, e.g. `lr: {{loguniform: [1.0e-5, 1.0e-3]}}`") from None
    if not isinstance(doc, dict) or not doc:
        raise UserError(f"search space {path} must map option names to ranges, e.g. `lr: {{loguniform: [1.0e-5, 1.0e-3]}}`")
    return doc


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise UserError(f"{where}: {value!r} is not a number")
    if isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise UserError(f"{where}: {value!r} is not a number") from None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{where}: {value!r} is not a finite number")
    return float(value)


def _param(name: str, spec: Any, where: str) -> Param | Any:
    """A Param, or the fixed value itself."""
    if not isinstance(spec, dict):
        if isinstance(spec, list):
            raise UserError(f"{where}: write a list of values as {{choice: [...]}}, a range as {{randint|uniform|loguniform: [low, high]}}")
        return spec
    if len(spec) != 1 or next(iter(spec)) not in KINDS:
        raise UserError(f"{where}: give exactly one of {', '.join(KINDS)}, e.g. {{loguniform: [1.0e-5, 1.0e-3]}}")
    kind, args = next(iter(spec.items()))
    if not isinstance(args, list):
        raise UserError(f"{where}: {kind} takes a list, e.g. {{{kind}: [low, high]}}")
    if kind == "choice":
        if not args:
            raise UserError(f"{where}: empty range: choice needs at least one value")
        return Param(name, kind, tuple(args))
    if len(args) != 2:
        raise UserError(f"{where}: {kind} takes [low, high], got {len(args)} value(s)")
    low, high = (_number(a, where) for a in args)
    if kind == "randint":
        if low != int(low) or high != int(high):
            raise UserError(f"{where}: randint bounds must be whole numbers, got [{args[0]}, {args[1]}]")
        if low > high:
            raise UserError(f"{where}: empty range [{int(low)}, {int(high)}]: randint needs low <= high (both included)")
        return Param(name, kind, (int(low), int(high)))
    if not low < high:
        raise UserError(f"{where}: empty range [{args[0]}, {args[1]}]: {kind} needs low < high")
    if kind == "loguniform" and low <= 0:
        raise UserError(f"{where}: loguniform needs low > 0, got {args[0]} (use uniform for ranges that include 0)")
    return Param(name, kind, (low, high))


@dataclass(frozen=True)
class SearchSpace:
    """A validated space: searched params and fixed options, for one method."""

    method: str
    params: tuple[Param, ...]
    fixed: tuple[tuple[str, Any], ...]

    def to_json(self) -> dict[str, Any]:
        return {**{p.name: p.to_json() for p in self.params}, **dict(self.fixed)}

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def values(self, config: dict[str, Any]) -> dict[str, Any]:
        """One trial's settings: searched values from ``config`` plus the fixed ones, typed."""
        values = {**dict(self.fixed), **{k: config[k] for k in self.names}}
        for k in INTEGER_OPTIONS:
            if values.get(k) is not None:
                values[k] = int(values[k])
        for k in ("lr", "lr_miner", "l2sp_weight", "distill_weight", "cdc_weight", "importance_quantile",
                  "prune_quantile"):
            if values.get(k) is not None:
                values[k] = float(values[k])
        return values

    def probes(self) -> list[dict[str, Any]]:
        """Configs at the space's corners: every param at its low end, every one at its high end, and the
        low corner with each choice of each ``choice`` param. What holds at all of them holds for the space's
        thresholds (an option is on when > 0, a choice is one of those listed)."""
        low, high = {p.name: p.args[0] for p in self.params}, {p.name: p.args[-1] for p in self.params}
        return [low, high, *({**low, p.name: v} for p in self.params if p.kind == "choice" for v in p.args)]

    def options(self, config: dict[str, Any]) -> TransferOptions:
        """The TransferOptions of one single-source trial's config."""
        return TransferOptions(**self.values(config))

    def mine_overrides(self, config: dict[str, Any], steps: int) -> dict[str, Any]:
        """MultiSourceConfig fields of one multi-source trial (``steps`` in all)."""
        values = self.values(config)
        mining = values.pop("mining_steps", steps // 2)
        if "lr" in values:
            lr = values.pop("lr")
            values.update(lr_g=lr, lr_d=lr)
        return {**values, "mining_steps": mining, "finetune_steps": steps - mining}

    def tune_space(self) -> dict[str, Any]:
        """The Ray Tune param_space (randint's upper end is exclusive in Tune)."""
        from ray import tune

        out: dict[str, Any] = {}
        for p in self.params:
            if p.kind == "randint":
                out[p.name] = tune.randint(p.args[0], p.args[1] + 1)
            elif p.kind == "uniform":
                out[p.name] = tune.uniform(*p.args)
            elif p.kind == "loguniform":
                out[p.name] = tune.loguniform(*p.args)
            else:
                out[p.name] = tune.choice(list(p.args))
        return out


def parse_space(doc: dict[str, Any], method: str, *, critic_blocks: int, steps: int, where: str = "search space") -> SearchSpace:
    """Validate a file-shaped space for ``method``; every problem is a one-line UserError.

    Checks: known option names for the method, non-empty ranges, whole numbers where the option
    is one, and that both ends of every range (and every choice) are valid option values.
    """
    build = build_method(method)
    accepts = accepted(method)
    params: list[Param] = []
    fixed: dict[str, Any] = {}
    for name, spec in doc.items():
        if not isinstance(name, str) or name not in accepts:
            known = ", ".join(sorted(accepts))
            raise UserError(f"{where}: unknown parameter {name!r} for --method {method}; it takes {known}")
        value = _param(name, spec, f"{where}: {name}")
        if isinstance(value, Param):
            if name in INTEGER_OPTIONS and value.kind in ("uniform", "loguniform"):
                raise UserError(f"{where}: {name} takes whole numbers: use {{randint: [low, high]}} or {{choice: [...]}}")
            params.append(value)
        else:
            fixed[name] = value
    if not params:
        raise UserError(f"{where}: nothing to search: give at least one option a range, e.g. lr: {{loguniform: [1.0e-5, 1.0e-3]}}")
    space = SearchSpace(method, tuple(params), tuple(sorted(fixed.items())))
    for probe in space.probes():  # every corner value must be a valid option
        if method == MULTI_SOURCE:
            _check_mine(space.mine_overrides(_typed(space, probe, where), steps), steps, where)
            continue
        try:
            options = space.options(probe)
        except (TypeError, ValueError) as e:
            raise UserError(f"{where}: {e}") from None
        try:
            method_options.check(build, options, critic_blocks=critic_blocks, steps=steps)
        except OptionError as e:
            raise UserError(f"{where}: {e}") from None
    return space


def _typed(space: SearchSpace, probe: dict[str, Any], where: str) -> dict[str, Any]:
    try:
        space.values(probe)
    except (TypeError, ValueError) as e:
        raise UserError(f"{where}: {e}") from None
    return probe


def _check_mine(overrides: dict[str, Any], steps: int, where: str) -> None:
    if not 0 <= overrides["mining_steps"] <= steps:
        raise UserError(f"{where}: mining_steps {overrides['mining_steps']} must lie in 0..steps ({steps})")
    for k in ("lr_g", "lr_miner"):
        if k in overrides and not overrides[k] > 0:
            raise UserError(f"{where}: {'lr' if k == 'lr_g' else k} must be > 0, got {overrides[k]}")
    try:
        MultiSourceConfig(**overrides)
    except (TypeError, ValueError) as e:
        raise UserError(f"{where}: {e}") from None


def load_space(method: str, path: str | None, *, critic_blocks: int, steps: int) -> SearchSpace:
    """The default space of ``method``, or the one in ``path`` (YAML or JSON), validated."""
    if path is None:
        return parse_space(default_space(method, critic_blocks=critic_blocks, steps=steps), method,
                           critic_blocks=critic_blocks, steps=steps, where=f"default space of {method}")
    return parse_space(read_space_file(path), method, critic_blocks=critic_blocks, steps=steps,
                       where=f"search space {path}")
