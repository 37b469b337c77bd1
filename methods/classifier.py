"""The evaluation feature network: a small CNN classifier over all built-in 28x28 domains.

Its penultimate layer (``FEATURE_DIM`` ReLU units) is the feature space of FID, KMMD and MV.
Colour input is averaged to gray and every input is resized to 28x28, so one network scores
every domain the zoo covers. It is always used in eval mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_DIM = 64


class FeatureClassifier(nn.Module):
    def __init__(self, num_classes: int, feature_dim: int = FEATURE_DIM):
        super().__init__()
        self.num_features = feature_dim  # torchmetrics reads this
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 14
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 7
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 3
            nn.Flatten(),
            nn.Linear(128 * 3 * 3, feature_dim), nn.ReLU(inplace=True),
        )
        self.head = nn.Linear(feature_dim, num_classes)

    @staticmethod
    def prepare(x: torch.Tensor) -> torch.Tensor:
        """Any N x C x H x W image batch in [-1, 1] -> N x 1 x 28 x 28."""
        if x.shape[1] == 3:
            x = x.mean(1, keepdim=True)
        if x.shape[-1] != 28 or x.shape[-2] != 28:
            x = F.interpolate(x, size=(28, 28), mode="bilinear", antialias=True, align_corners=False)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.prepare(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
