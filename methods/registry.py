"""The method registry: each catalogue record (``catalog.py``: options, defaults, summary)
with its builder and the check of which architectures it can serve.

Method modules import only ``base`` (and the maths they need); this module imports them, so no
cycle can form. The CLI and Tune read the torch-free ``catalog``; building goes through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from . import adabn, adam, architectures, bsa, catalog, cdc, finetune, glo, kernels, minegan, rick
from .miner import mine_space_error
from .catalog import MethodRecord
from .base import Adapter, FeatureFn, NotApplicable, OptionError, Source, TransferOptions
from .interface import batchnorm_layers, check_critic, check_generator

Builder = Callable[..., Adapter]
Applies = Callable[[Source], "str | None"]

def _always(source: Source) -> str | None:
    return None


def _fresh_architecture(source: Source) -> str | None:
    """scratch builds a new generator of the source's architecture: one whose builder restores stored
    weights instead (a TorchScript module) cannot start afresh."""
    cfg = getattr(source.generator, "cfg", None)
    try:
        arch = architectures.get(architectures.name_of(cfg))
    except ValueError:
        return None  # not a registry architecture: FineTune says so itself
    if not arch.fresh:
        return (f"scratch trains a freshly initialised generator of the source's architecture, and a {arch.name} "
                "generator cannot be initialised afresh (only its stored weights exist); use finetune, minegan or glo")
    return None


def _needs_batchnorm(name: str, what: str) -> Applies:
    def applies(source: Source) -> str | None:
        if not batchnorm_layers(source.generator):
            return (f"{name} {what}, and the generator ({type(source.generator).__name__}) has no BatchNorm layer; "
                    "use finetune, freezed, l2sp, distill, minegan or glo")
        return None
    return applies


@dataclass(frozen=True)
class MethodSpec:
    """A catalogue record (``catalog.MethodRecord``) with its builder and its applicability check."""

    record: MethodRecord
    builder: Builder
    applies: Applies = _always

    def __getattr__(self, name: str) -> Any:  # name, family, accepts, defaults, needs_critic, summary ...
        return getattr(self.record, name)


def _finetune(name: str) -> Builder:
    return lambda source, images, options, *, seed, feature_fn=None: finetune.FineTune(
        name, source, images, options, seed=seed)


def _latent(cls) -> Builder:
    return lambda source, images, options, *, seed, feature_fn=None: cls(
        source, images, options, seed=seed, feature_fn=feature_fn)


def _minegan(source, images, options, *, seed, feature_fn=None) -> Adapter:
    return minegan.MineGAN(source, images, options, seed=seed)


def _mine_space(source: Source, options: TransferOptions) -> str | None:
    """minegan's mine_space w needs a generator with a mapping network (stylegan2)."""
    return mine_space_error(source.generator, options.mine_space or "z")


def _cdc_layers(source: Source, options: TransferOptions) -> str | None:
    """cdc_layers must name feature layers the source generator has."""
    layers = cdc.feature_layers(source.generator)
    try:
        cdc.parse_layers(options.cdc_layers, len(layers or ()))
    except OptionError as e:
        return str(e)
    return None


def _adversarial(cls) -> Builder:
    return lambda source, images, options, *, seed, feature_fn=None: cls(source, images, options, seed=seed)


def _sees_filters(name: str) -> Applies:
    return lambda source: kernels.unseen_filters(source.generator, name)


# the checks that need the method's options too: method -> check(source, options) -> reason | None
_OPTION_APPLIES: dict[str, Callable[[Source, TransferOptions], "str | None"]] = {"minegan": _mine_space,
                                                                                  "cdc": _cdc_layers}

_BUILDERS: dict[str, tuple[Builder, Applies]] = {
    "scratch": (_finetune("scratch"), _fresh_architecture),
    "finetune": (_finetune("finetune"), _always),
    "freezed": (_finetune("freezed"), _always),
    "l2sp": (_finetune("l2sp"), _always),
    "distill": (_finetune("distill"), _always),
    "adabn": (_latent(adabn.AdaBN), _needs_batchnorm("adabn", "re-estimates BatchNorm statistics")),
    "bsa": (_latent(bsa.BSA), _needs_batchnorm("bsa", "adapts the scale/shift of normalisation layers")),
    "glo": (_latent(glo.GLO), _always),
    "minegan": (_minegan, _always),
    "cdc": (_adversarial(cdc.CDC), cdc.applies),
    "adam": (_adversarial(adam.AdAM), _sees_filters("adam")),
    "rick": (_adversarial(rick.RICK), _sees_filters("rick")),
}
if set(_BUILDERS) != set(catalog.METHODS):  # a record without a builder, or the reverse
    raise ImportError(f"registry and catalogue disagree: {sorted(set(_BUILDERS) ^ set(catalog.METHODS))}")
SPECS: tuple[MethodSpec, ...] = tuple(MethodSpec(r, *_BUILDERS[r.name]) for r in catalog.RECORDS)
METHODS_BY_NAME: dict[str, MethodSpec] = {s.name: s for s in SPECS}
METHODS, ADVERSARIAL, LATENT, NEEDS_CRITIC, ACCEPTS = (
    catalog.METHODS, catalog.ADVERSARIAL, catalog.LATENT, catalog.NEEDS_CRITIC, catalog.ACCEPTS)


def spec(method: str) -> MethodSpec:
    try:
        return METHODS_BY_NAME[method]
    except KeyError:
        raise OptionError(f"unknown method {method!r}; use one of {', '.join(METHODS)}", option="method",
                          allowed=METHODS) from None


def check_applies(method: str, source: Source, options: TransferOptions | None = None) -> None:
    """Raise :class:`NotApplicable` (one line) unless ``method`` can serve the source's architecture
    (with ``options``: with those options, e.g. minegan's mine_space w needs a mapping network)."""
    s = spec(method)
    check_generator(source.generator, "source generator")
    if s.needs_critic:
        if source.critic is None:
            raise NotApplicable(f"method {method} starts from the source critic, but the source has none; "
                                "use scratch, adabn, bsa or glo, or give a critic")
        check_critic(source.critic, "source critic")
    reason = s.applies(source)
    if not reason and options is not None and method in _OPTION_APPLIES:
        reason = _OPTION_APPLIES[method](source, options)
    if reason:
        raise NotApplicable(reason)


def build(method: str, source: Source, images: torch.Tensor, options: TransferOptions, *, seed: int,
          feature_fn: FeatureFn | None = None) -> Adapter:
    """Build the adapter of ``method``. ``options`` must be resolved (:func:`ganlode.methods.options.resolve`).

    Args:
        method: one of ``METHODS``.
        source: the source nets; they are copied, never changed.
        images: the target set, N x C x H x W in [-1, 1].
        options: resolved options.
        seed: fixes initialisation and every random draw of the run.
        feature_fn: differentiable image features for the perceptual loss (adabn, bsa, glo).
    """
    s = spec(method)
    if s.latent and feature_fn is None:
        raise ValueError(f"method {method} needs a feature_fn for its perceptual loss")
    check_applies(method, source, options)
    return s.builder(source, images, options, seed=seed, feature_fn=feature_fn)


def describe() -> list[tuple[str, str]]:
    """(name, summary) of every method, for help texts."""
    return [(s.name, s.summary) for s in SPECS]


__all__ = ["MethodSpec", "SPECS", "METHODS", "ADVERSARIAL", "LATENT", "NEEDS_CRITIC", "ACCEPTS", "spec", "build",
           "check_applies", "describe"]
