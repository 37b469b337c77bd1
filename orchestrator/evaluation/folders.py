"""Scoring any folder of images under the evaluation protocol (``ganlode eval FOLDER ...``).

Three comparisons, all through :mod:`.protocol`'s rules: features of the *reference* (real
images), the KMMD bandwidth from the reference features, and equal sample counts.

- ``FOLDER --against FOLDER2``: the images of FOLDER scored against FOLDER2 as the reference;
- ``FOLDER --target SPEC``: against the spec's test split (``split="val"``: its validation split),
  the reference exactly as :func:`.protocol.reference` draws it;
- ``FOLDER --against RUN|CKPT|zoo:NAME``: FOLDER is the reference and the model's samples are
  scored against it, drawn as :func:`.protocol.score` draws them (as many as the reference,
  stream ``protocol.sample_generator(seed)``), so a folder holding a run's test split gives that run's figures.

A folder is any path the data layer reads as a dataset (a folder of images, with or without one
subfolder per class, or a Parquet table); every image in it is used, whatever its class or split.
When the two sides differ in size (or ``n`` caps them), the larger is subsampled without
replacement with ``numpy.random.default_rng([seed, side])`` (kept in folder order), so both
hold the same number of images; the counts are returned with the scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ...methods import metrics as M
from .. import storage
from ..artifacts.loaders import load_model
from ..artifacts.rundir import CONFIG_FILE
from ..artifacts.zoo import PREFIX as ZOO_PREFIX
from ..artifacts.zoo import resolve
from ..data.images import from_uint8
from ..data.readers import path_dataset
from ..errors import UserError
from . import features, protocol

SAMPLES_SALT, REFERENCE_SALT = 0, 1  # the second word of a subsample's seed, per side


@dataclass(frozen=True)
class Side:
    """One side of a comparison: what it is, where, how many images it holds and how many were used."""

    kind: str            # "folder", "spec" or "model"
    path: str
    n: int               # images used (both sides: the same)
    available: int       # images it holds (a model: as many as asked)
    split: str | None = None   # a spec's split
    method: str | None = None  # a model's method or kind

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class FolderScore:
    samples: Side
    reference: Side
    feature_kind: str
    seed: int
    values: dict[str, float] = field(default_factory=dict)  # fid, kmmd, mv, kmmd_bandwidth, n


def is_model(path: str) -> bool:
    """Whether ``path`` names a run or checkpoint (zoo:NAME, or a directory with a config.json) rather than images."""
    if path.startswith(ZOO_PREFIX):
        return True
    try:
        return storage.exists(storage.join(resolve(path), CONFIG_FILE))
    except UserError:
        return False


def folder_images(path: str) -> np.ndarray:
    """Every image of the folder (or table) at ``path`` as uint8 N x C x H x W; a folder with fewer than
    two images is refused (FID needs two)."""
    images = path_dataset(path).images
    if len(images) < 2:
        raise UserError(f"{path} holds {len(images)} image: scoring needs at least 2 (FID compares two covariances)")
    return images


def _take(images: np.ndarray, n: int, seed: int, salt: int) -> np.ndarray:
    if len(images) == n:
        return images
    rng = np.random.default_rng([seed, salt])
    return images[np.sort(rng.choice(len(images), n, replace=False))]


def _count(*sizes: int, cap: int | None) -> int:
    n = min([*sizes, *(() if cap is None else (cap,))])
    if n < 2:
        raise UserError(f"only {n} image(s) to compare: scoring needs at least 2 on each side")
    return n


def _reference(images: np.ndarray, path: str, feature_kind: str) -> protocol.Reference:
    feats = features.extractor(feature_kind)(from_uint8(images))
    return protocol.Reference(path, feats, M.kmmd_bandwidth(feats), feature_kind, "folder")


def score_images(images: torch.Tensor, ref: protocol.Reference) -> dict[str, float]:
    """The protocol's metrics of ``images`` (as many as the reference) against ``ref``."""
    if len(images) != len(ref):
        raise ValueError(f"{len(images)} images vs a reference of {len(ref)}: the protocol compares equal counts")
    out = M.all_metrics(features.extractor(ref.feature_kind)(images), ref.features, ref.bandwidth)
    out["n"] = len(ref)
    return out


def score_folder(folder: str, *, against: str | None = None, target: str | None = None,
                 split: str = protocol.REPORT_SPLIT, n: int | None = None, feature_kind: str = "auto",
                 seed: int = 0) -> FolderScore:
    """Score the images of ``folder`` against another folder, a target spec's split, or a model
    (see the module docstring). ``n`` caps the number of images on each side."""
    if (against is None) == (target is None):
        raise UserError(f"say what to score {folder} against: --against FOLDER2|RUN|CKPT, or --target SPEC")
    if n is not None and n < 2:
        raise UserError("--n must be at least 2 (FID needs two or more images)")
    if seed < 0:
        raise UserError("--seed must be >= 0")
    if split not in protocol.EVAL_SPLITS:
        raise UserError(f"--split {split} is unknown: use one of {', '.join(protocol.EVAL_SPLITS)}")
    if feature_kind not in features.FEATURES:
        raise UserError(f"unknown features {feature_kind!r}: use one of {', '.join(features.FEATURES)}")
    if is_model(folder):
        raise UserError(f"{folder} is a run or checkpoint, not a folder of images: `ganlode eval {folder}` scores it "
                        "against its target (--against takes a folder as the first argument)")
    images = folder_images(folder)
    feature_kind = features.require(feature_kind, tuple(from_uint8(images[:1]).shape))  # auto: by the folder's images

    if target is not None:
        ref = protocol.reference(target, n=min(len(images), n or len(images)), feature_kind=feature_kind, split=split)
        count = _count(len(images), len(ref), cap=n)
        samples = _take(images, count, seed, SAMPLES_SALT)
        values = score_images(from_uint8(samples), ref)
        return FolderScore(Side("folder", folder, count, len(images)), Side("spec", target, len(ref), len(ref), split=split),
                           feature_kind, seed, values)

    assert against is not None
    if is_model(against):  # the folder is the reference; the model's samples are scored against it
        model = load_model(against)
        count = _count(len(images), cap=n)
        ref = _reference(_take(images, count, seed, REFERENCE_SALT), folder, feature_kind)
        values = protocol.score(model.sampler, ref, seed=seed)
        method = model.config.get("method") or model.config.get("model_kind", "gan")
        return FolderScore(Side("model", model.path, count, count, method=method), Side("folder", folder, count, len(images)),
                           feature_kind, seed, values)

    reference_images = folder_images(against)
    count = _count(len(images), len(reference_images), cap=n)
    ref = _reference(_take(reference_images, count, seed, REFERENCE_SALT), against, feature_kind)
    values = score_images(from_uint8(_take(images, count, seed, SAMPLES_SALT)), ref)
    return FolderScore(Side("folder", folder, count, len(images)), Side("folder", against, count, len(reference_images)),
                       feature_kind, seed, values)
