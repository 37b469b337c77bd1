"""The shipped evaluation feature network: loading it and extracting features.

Rebuild the shipped weights with::

    python -m ganlode.orchestrator.tools.train_classifier --out orchestrator/assets/classifier
"""

from __future__ import annotations

import functools
import json
import os
from importlib import resources

import torch

from ...methods.classifier import FEATURE_DIM, FeatureClassifier
from ..artifacts.rundir import CONFIG_FILE, WEIGHTS_FILE
from ..errors import UserError


def asset_dir() -> str:
    return str(resources.files("ganlode.orchestrator") / "assets" / "classifier")


@functools.lru_cache(maxsize=1)
def feature_net() -> FeatureClassifier:
    """The shipped classifier in eval mode (cached per process)."""
    from safetensors.torch import load_file

    d = asset_dir()
    cfg_path, w_path = os.path.join(d, CONFIG_FILE), os.path.join(d, WEIGHTS_FILE)
    if not (os.path.exists(cfg_path) and os.path.exists(w_path)):
        raise UserError(f"the evaluation classifier is missing from {d}; reinstall ganlode or rebuild it with "
                        "`python -m ganlode.orchestrator.tools.train_classifier --out <that folder>`")
    with open(cfg_path) as f:
        cfg = json.load(f)
    net = FeatureClassifier(num_classes=len(cfg["classes"]), feature_dim=cfg.get("feature_dim", FEATURE_DIM))
    net.load_state_dict(load_file(w_path))
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


@torch.no_grad()
def extract(images: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """Classifier features (N x FEATURE_DIM) of images in [-1, 1]; eval mode, no gradients."""
    net = feature_net()
    return torch.cat([net.features(images[i:i + batch].float()) for i in range(0, len(images), batch)])


def perceptual_features():
    """The classifier's features as a loss, differentiable in the input (weights frozen), for the
    latent methods' perceptual term (``methods.base.FeatureFn``)."""
    return feature_net().features
