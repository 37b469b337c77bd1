"""The shares of a mining run: what each selector estimates, and ``RUN/shares.json``.

Three selectors (``--selector``; the maths are pure functions in :mod:`ganlode.methods.multisource`):

- ``count``: the MineGAN rule, each source's share of the rows the critic picked, over the
  selector's window (:func:`~ganlode.methods.multisource.selector_shares`);
- ``coverage``: before mining, a calibrated classifier of "which source made x", fitted on the
  evaluation features of each unmined source's samples, then EM over its posteriors on the
  target's training images (:mod:`~ganlode.methods.multisource.coverage`); sources under
  ``min_share``, or that explain the images they cover less than ``min_gain`` nats better than
  the rest do, are dropped one at a time and EM re-run on the rest;
- ``mixture-fit``: after (or during) mining, the shares whose mixture of the mined sources'
  samples is nearest the target in squared MMD on the evaluation features, with ties (a flat
  optimum, when sources overlap) broken toward the coverage shares
  (:func:`~ganlode.methods.multisource.selectors.mixture_fit`, ``tie_break``).

``RUN/shares.json`` is ``{"selector": NAME, "shares": {SOURCE: p}, "by_selector": {NAME: {SOURCE:
p}}, ...}``; ``shares`` is what sampling the mined model uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ...methods import seeding
from ...methods.catalog import SELECTORS
from ...methods.multisource.coverage import Coverage, coverage, fit_source_classifier, route_images
from ...methods.multisource.selectors import mixture_fit, tie_break
from ..evaluation.features import extractor

COVERAGE_SAMPLES = 1000  # unmined samples per source for the which-source classifier
FIT_SAMPLES = 1000  # mined samples per source for mixture-fit
FLAT_TOL = 0.01  # mixture-fit: relative slack in MMD² that counts as a tie


@dataclass
class Estimate:
    """One selector's shares over every source of the run (0 for a source not in it), and details."""

    shares: list[float]
    details: dict[str, Any] = field(default_factory=dict)


@torch.no_grad()
def _samples(generator: torch.nn.Module, n: int, latent_dim: int, gen: torch.Generator) -> torch.Tensor:
    generator.eval()
    out = [generator(torch.randn(min(512, n - i), latent_dim, generator=gen)) for i in range(0, n, 512)]
    return torch.cat(out).clamp(-1, 1)


def source_features(generator: torch.nn.Module, index: int, *, feature_kind: str, seed: int,
                    n: int = COVERAGE_SAMPLES) -> torch.Tensor:
    """Evaluation features of ``n`` unmined samples of the ``index``-th source (its own draw stream)."""
    return extractor(feature_kind)(_samples(generator, n, generator.latent_dim, seeding.generator(seed, "coverage", index)))


def coverage_from_features(feats: Sequence[torch.Tensor], target_feats: torch.Tensor, *, seed: int, min_share: float,
                           min_gain: float) -> tuple[Coverage, Estimate]:
    """The ``coverage`` estimate from each source's sample features and the target's features."""
    clf = fit_source_classifier(list(feats), seed=seeding.derive(seed, "coverage", "split"))
    cov = coverage(clf, target_feats, min_share=min_share, min_gain=min_gain)
    details = {"accuracy": round(cov.accuracy, 4), "min_share": min_share, "min_gain": min_gain,
               "samples_per_source": len(feats[0]),
               "dropped": [i for i, p in enumerate(cov.shares.tolist()) if p == 0.0],
               "bbse": None if cov.bbse is None else [round(float(p), 6) for p in cov.bbse]}
    return cov, Estimate([float(p) for p in cov.shares], details)


def source_coverage(generators: Sequence[torch.nn.Module], target_images: torch.Tensor, *, feature_kind: str,
                    seed: int, min_share: float, min_gain: float,
                    n: int = COVERAGE_SAMPLES) -> tuple[Coverage, Estimate]:
    """The ``coverage`` estimate from the unmined ``generators`` (each with ``latent_dim``)."""
    feats = [source_features(g, i, feature_kind=feature_kind, seed=seed, n=n) for i, g in enumerate(generators)]
    return coverage_from_features(feats, extractor(feature_kind)(target_images), seed=seed, min_share=min_share,
                                  min_gain=min_gain)


def routes(cov: Coverage, target_images: torch.Tensor) -> tuple[list[int], list[torch.Tensor], list[float]]:
    """Routing from a coverage estimate: (kept sources, each one's part of the target, their shares).

    Kept are the sources the coverage estimate left a share (it drops those under its
    ``min_share``); each target image goes to the kept source most likely to have made it.
    """
    kept, assign = route_images(cov.responsibilities, cov.shares)
    parts = [target_images[assign == k] for k in range(len(kept))]
    total = float(sum(cov.shares[i] for i in kept))
    return kept, parts, [float(cov.shares[i]) / total for i in kept]


def mixture_fit_shares(mixture_sources: Sequence[torch.nn.Module], target_images: torch.Tensor, *, feature_kind: str,
                       seed: int, toward: Sequence[float] | None, n: int = FIT_SAMPLES) -> Estimate:
    """The ``mixture-fit`` estimate over the mined sources (``G_i(M_i(.))``), ties broken ``toward``."""
    ex = extractor(feature_kind)
    feats = [ex(_samples(s, n, s.latent_dim, seeding.generator(seed, "mixture-fit", i)))
             for i, s in enumerate(mixture_sources)]
    fit = mixture_fit(feats, ex(target_images), flat_tol=FLAT_TOL)
    shares = fit.shares
    if toward is not None and len(mixture_sources) > 1:
        shares = tie_break(fit, torch.tensor(list(toward), dtype=torch.float64), tol=FLAT_TOL * fit.mmd2)
    details = {"mmd2": fit.mmd2, "flatness": fit.flatness, "argmin": [float(p) for p in fit.shares],
               "mmd2_chosen": fit.objective(shares), "bandwidth": fit.bandwidth, "samples_per_source": n}
    return Estimate([float(p) for p in shares], details)


def spread(shares: Sequence[float], kept: Sequence[int], n_sources: int) -> list[float]:
    """Shares over the ``kept`` sources as shares over all ``n_sources`` (0 elsewhere)."""
    out = [0.0] * n_sources
    for i, p in zip(kept, shares):
        out[i] = float(p)
    return out


def shares_document(selector: str, sources: Sequence[str], by_selector: dict[str, Estimate],
                    truth: Sequence[float] | None, kept: Sequence[int], routed: bool) -> dict[str, Any]:
    """The content of ``RUN/shares.json``."""
    if selector not in SELECTORS or selector not in by_selector:
        raise ValueError(f"no {selector!r} estimate among {sorted(by_selector)}")

    def named(p: Sequence[float]) -> dict[str, float]:
        return {s: round(float(x), 6) for s, x in zip(sources, p)}

    doc: dict[str, Any] = {
        "selector": selector,
        "sources": list(sources),  # the order of every list here (the maps below are written with sorted keys)
        "shares": named(by_selector[selector].shares),
        "by_selector": {k: named(e.shares) for k, e in by_selector.items()},
        "details": {k: e.details for k, e in by_selector.items()},
        "routed": routed,
        "kept": [sources[i] for i in kept],
        "true_shares": None if truth is None else named(truth),
    }
    if truth is not None:
        doc["max_error"] = {k: round(max(abs(a - b) for a, b in zip(e.shares, truth)), 6) for k, e in by_selector.items()}
    return doc
