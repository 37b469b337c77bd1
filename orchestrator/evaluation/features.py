"""The feature networks of the evaluation protocol, by name: one registry, read by the CLI flags too.

``auto`` (the default everywhere) picks by the images: the shipped classifier for the 28x28 gray
domains it was trained on (digits, animals, glyphs), the standard FID Inception for every other
size or channel count (colour, 32 px and up), since the classifier knows nothing of those.
"""

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
AUTO = "auto"
FEATURES = (AUTO, *EXTRACTORS)
CLASSIFIER_DOMAIN = (1, 28, 28)  # channels, height, width of the images the classifier was trained on


def resolve(kind: str, shape: tuple[int, ...]) -> str:
    """The concrete feature network of ``kind`` for images of ``shape`` ((N x) C x H x W): ``auto`` is
    the classifier on 28x28 gray images and the Inception on any other; a named kind is itself."""
    if kind == AUTO:
        return "classifier" if tuple(shape[-3:]) == CLASSIFIER_DOMAIN else "inception"
    if kind not in EXTRACTORS:
        raise ValueError(f"unknown feature kind {kind!r}; use one of {FEATURES}")
    return kind


def selection_kind(kind: str) -> str:
    """The features a *selector* reads (mining's and recommend's coverage of the target by each source,
    fitted on 1000 samples per source): ``auto`` is the classifier whatever the images, since the
    Inception's 12 images/s on CPU would make that fit minutes per source; a named kind is itself.
    Scores (FID, KMMD, MV) always use :func:`resolve`."""
    return "classifier" if kind == AUTO else resolve(kind, CLASSIFIER_DOMAIN)


def _auto(images: torch.Tensor) -> torch.Tensor:
    return EXTRACTORS[resolve(AUTO, tuple(images.shape))][0](images)


def extractor(kind: str = AUTO) -> Extractor:
    """Features of images in [-1, 1] by ``kind`` (``auto``: chosen per call by the images' shape)."""
    if kind == AUTO:
        return _auto
    return EXTRACTORS[resolve(kind, CLASSIFIER_DOMAIN)][0]


def require(kind: str, shape: tuple[int, ...] = CLASSIFIER_DOMAIN) -> str:
    """The concrete kind for images of ``shape``; raises a UserError (saying how to install it) unless it can be computed."""
    concrete = resolve(kind, shape)
    EXTRACTORS[concrete][1]()
    return concrete
