"""The evaluation protocol, written down in one place and the same for every method.

1. Features: the shipped classifier's penultimate layer (``--features classifier``, default),
   or the standard FID Inception (``--features inception``, optional extra); eval mode, no grad.
2. Reference: the target spec's **validation** split for model selection (early stopping, best
   checkpoint, Tune) or its **test** split for every reported figure; neither is ever used for
   training, both keep the target's class shares, and each score records its split. A run that
   converted its target (``--convert-target``) converts its references the same way.
3. Samples: exactly as many generated images as reference images, drawn with a fixed seed.
4. Metrics: FID, KMMD (bandwidth = median pairwise reference distance, reported) and MV; and,
   where the run's training images are known (``train_seed``; at most ``MAX_TRAIN_FEATURES`` of
   them), the intra-cluster diversity ``intra_div`` on the same features (``methods/metrics.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...methods import metrics as M
from ...methods import seeding
from ..artifacts.sampling import Sampler, generator_sampler
from ..data.convert import Conversion
from ..data.images import grid_png
from ..data.spec import eval_reference, load_target
from .features import AUTO, FEATURES, extractor, require  # noqa: F401 (FEATURES: the protocol's choices)

PROTOCOL_VERSION = 2  # 2: separate validation and test splits (1: one held-out split)
SELECTION_SPLIT = "val"  # what model selection reads
REPORT_SPLIT = "test"  # what every reported figure reads
EVAL_SPLITS = (SELECTION_SPLIT, REPORT_SPLIT)
MAX_TRAIN_FEATURES = 500  # a larger training set is no few-shot target: no intra-cluster diversity


@dataclass(frozen=True)
class Reference:
    spec: str
    features: torch.Tensor
    bandwidth: float
    feature_kind: str
    split: str = REPORT_SPLIT
    train_features: torch.Tensor | None = None  # the run's training images' features (intra-cluster diversity)

    def __len__(self) -> int:
        return len(self.features)


def reference(spec: str, n: int | None = None, feature_kind: str = AUTO, split: str = REPORT_SPLIT,
              convert: Conversion | None = None, train_seed: int | None = None) -> Reference:
    """Features of the ``split`` reference images (``val`` or ``test``) for ``spec`` (at most ``n`` of them),
    converted by ``convert`` first when the run converted its target (``--convert-target``); ``auto``
    features are resolved by those images (the Reference names the concrete kind). With ``train_seed``
    (the run's seed, which drew its training images) it also holds the training images' features, so
    scores add the intra-cluster diversity (not for more than ``MAX_TRAIN_FEATURES`` training images)."""
    if split not in EVAL_SPLITS:
        raise ValueError(f"split must be one of {', '.join(EVAL_SPLITS)}, got {split!r}")
    ref = eval_reference(spec, n=n, split=split)
    images = ref.images if convert is None else convert(ref.images)
    kind = require(feature_kind, tuple(images.shape))
    feats = extractor(kind)(images)
    train_feats = None
    if train_seed is not None:
        train = load_target(spec, seed=train_seed).images
        if len(train) <= MAX_TRAIN_FEATURES:
            train_feats = extractor(kind)(train if convert is None else convert(train))
    return Reference(spec, feats, M.kmmd_bandwidth(feats), kind, split, train_feats)


def cost_line(refs: dict[str, Reference], seconds: float) -> str:
    """What a run's evaluation costs, in one line: the features, the reference sizes and their time."""
    kind = next(iter(refs.values())).feature_kind
    sizes = " + ".join(f"{len(r)} {r.split}" for r in refs.values())
    return (f"evaluation: {kind} features; references {sizes} images ({seconds:.1f} s); each score draws as many "
            f"samples" + (" (Inception: about 12 images/s on 2 CPU threads)" if kind == "inception" else ""))


def sample_generator(seed: int) -> torch.Generator:
    """The protocol's own stream of sample draws for ``seed`` (never the training streams)."""
    return seeding.generator(seed, "evaluation-samples")


def score(sampler: Sampler, ref: Reference, seed: int = 0) -> dict[str, float]:
    """Metrics of ``len(ref)`` samples against the reference (equal counts by construction)."""
    samples = sampler(len(ref), sample_generator(seed))
    feats = extractor(ref.feature_kind)(samples)
    out = M.all_metrics(feats, ref.features, ref.bandwidth)
    if ref.train_features is not None:
        out[M.DIVERSITY] = M.intra_cluster_diversity(feats, ref.train_features) / ref.bandwidth
    out["n"] = len(ref)
    return out


def quick_fid(generator: torch.nn.Module, spec: str, seed: int = 0, split: str = REPORT_SPLIT) -> dict[str, float]:
    """All protocol metrics of a single generator against ``spec``'s ``split`` (test by default)."""
    return score(generator_sampler(generator), reference(spec, split=split), seed=seed)


def sample_grid_png(generator: torch.nn.Module, n: int = 64, seed: int = 0) -> bytes:
    return grid_png(generator_sampler(generator)(n, torch.Generator().manual_seed(seed)))
