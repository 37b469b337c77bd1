"""The feature networks of the evaluation protocol, by name: one registry, read by the CLI flags too."""

from __future__ import annotations

from typing import Callable

import torch

from . import classifier, inception

Extractor = Callable[[torch.Tensor], torch.Tensor]

# name -> (features of images in [-1, 1], a check that raises a UserError saying how to install it)
EXTRACTORS: dict[str, tuple[Extractor, Callable[[], object]]] = {
    "classifier": (classifier.extract, classifier.feature_net),
    "inception": (inception.extract, inception.require),
}
FEATURES = tuple(EXTRACTORS)


def extractor(kind: str = "classifier") -> Extractor:
    if kind not in EXTRACTORS:
        raise ValueError(f"unknown feature kind {kind!r}; use one of {FEATURES}")
    return EXTRACTORS[kind][0]


def require(kind: str) -> None:
    """Raise a UserError (saying how to install it) unless the features ``kind`` can be computed."""
    EXTRACTORS[kind][1]()
