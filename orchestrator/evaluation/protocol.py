"""The evaluation protocol, written down in one place and the same for every method.

1. Features: the shipped classifier's penultimate layer (``--features classifier``, default),
   or the standard FID Inception (``--features inception``, optional extra); eval mode, no grad.
2. Reference: the held-out evaluation split of the target spec (never used for training), in
   the target's class shares.
3. Samples: exactly as many generated images as reference images, drawn with a fixed seed.
4. Metrics: FID, KMMD (bandwidth = median pairwise reference distance, reported) and MV.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...methods import metrics as M
from ..artifacts.sampling import Sampler, generator_sampler
from ..data.images import grid_png
from ..data.spec import eval_reference
from .features import FEATURES, extractor  # noqa: F401 (FEATURES: the protocol's choices)

PROTOCOL_VERSION = 1


@dataclass(frozen=True)
class Reference:
    spec: str
    features: torch.Tensor
    bandwidth: float
    feature_kind: str

    def __len__(self) -> int:
        return len(self.features)


def reference(spec: str, n: int | None = None, feature_kind: str = "classifier") -> Reference:
    """Features of the held-out reference images for ``spec`` (at most ``n`` of them)."""
    ref = eval_reference(spec, n=n)
    feats = extractor(feature_kind)(ref.images)
    return Reference(spec, feats, M.kmmd_bandwidth(feats), feature_kind)


def score(sampler: Sampler, ref: Reference, seed: int = 0) -> dict[str, float]:
    """Metrics of ``len(ref)`` samples against the reference (equal counts by construction)."""
    samples = sampler(len(ref), torch.Generator().manual_seed(10_000 + seed))
    feats = extractor(ref.feature_kind)(samples)
    out = M.all_metrics(feats, ref.features, ref.bandwidth)
    out["n"] = len(ref)
    return out


def quick_fid(generator: torch.nn.Module, spec: str, seed: int = 0) -> dict[str, float]:
    """All protocol metrics of a single generator against ``spec``'s held-out split."""
    return score(generator_sampler(generator), reference(spec), seed=seed)


def sample_grid_png(generator: torch.nn.Module, n: int = 64, seed: int = 0) -> bytes:
    return grid_png(generator_sampler(generator)(n, torch.Generator().manual_seed(seed)))
