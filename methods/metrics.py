"""The evaluation protocol's metrics, as pure functions of feature matrices (N x d).

- FID: Frechet distance between Gaussians fitted to the two feature sets (torchmetrics'
  implementation, fed our feature vectors through a pass-through module).
- KMMD: squared maximum mean discrepancy, biased (V-statistic) estimate, Gaussian kernel
  k(a, b) = exp(-||a - b||^2 / (2 sigma^2)), with sigma fixed from the reference features as
  the median pairwise distance among them (``kmmd_bandwidth``). It is 0 for identical sets.
- MV (mean variance): the mean per-dimension variance of the samples' features divided by
  that of the reference, tr(Cov_x) / tr(Cov_ref). 1 means the samples are as diverse as the
  reference; below 1, mode dropping; above 1, spread beyond the target.
- Intra-cluster diversity (``intra_div``; Ojha et al. 2021's intra-LPIPS, on the protocol's
  features because no LPIPS weights install offline here): every sample joins the cluster of
  its nearest training image; the mean pairwise distance among a cluster's members, averaged
  over the clusters with two members or more, divided by the reference's median pairwise
  distance (the KMMD bandwidth) so that about 1 is "as varied as the target itself" and 0 is
  "every sample a copy of its training image".
"""

from __future__ import annotations

import torch
from torch import nn

FID, KMMD, MV, DIVERSITY = "fid", "kmmd", "mv", "intra_div"
METRICS = (FID, KMMD, MV)  # every score has these; DIVERSITY where the training images are known


class _PassThrough(nn.Module):
    """Lets torchmetrics' FID consume precomputed feature vectors."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _check(x: torch.Tensor, ref: torch.Tensor) -> None:
    if x.dim() != 2 or ref.dim() != 2 or x.shape[1] != ref.shape[1]:
        raise ValueError(f"feature sets must be N x d with equal d, got {tuple(x.shape)} and {tuple(ref.shape)}")
    if len(x) < 2 or len(ref) < 2:
        raise ValueError("each feature set needs at least 2 rows")


def fid_low_rank(x: torch.Tensor, ref: torch.Tensor) -> float:
    """The same Frechet distance through the rows, for feature sets with fewer rows than features.

    With A, B the centred rows (d x n, d x m) and S_x = A A^T / (n - 1), S_ref = B B^T / (m - 1),
    the non-zero eigenvalues of S_x S_ref are those of (A^T B)(A^T B)^T / ((n - 1)(m - 1)), so
    ``tr sqrt(S_x S_ref)`` is the nuclear norm of A^T B over sqrt((n - 1)(m - 1)): an n x m SVD
    instead of the eigenvalues of a d x d product (2048 x 2048 for the Inception's features).
    """
    _check(x, ref)
    a, b = x.double(), ref.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = a - mu_a, b - mu_b
    scale = ((len(a) - 1) * (len(b) - 1)) ** 0.5
    trace_sqrt = torch.linalg.svdvals(ca @ cb.T).sum() / scale
    tr_a = ca.pow(2).sum() / (len(a) - 1)
    tr_b = cb.pow(2).sum() / (len(b) - 1)
    return max(0.0, float((mu_a - mu_b).pow(2).sum() + tr_a + tr_b - 2 * trace_sqrt))


def fid(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Frechet distance between N(mu_x, S_x) and N(mu_ref, S_ref), computed in float64 (torchmetrics';
    :func:`fid_low_rank`, the same quantity, when either set has fewer rows than features)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    _check(x, ref)
    if min(len(x), len(ref)) < x.shape[1]:
        return fid_low_rank(x, ref)
    metric = FrechetInceptionDistance(feature=_PassThrough(x.shape[1]), normalize=False)
    metric.update(ref.double(), real=True)
    metric.update(x.double(), real=False)
    return max(0.0, float(metric.compute()))


def kmmd_bandwidth(ref: torch.Tensor) -> float:
    """Median pairwise Euclidean distance among the reference features."""
    d = torch.cdist(ref.double(), ref.double())
    off = d[~torch.eye(len(ref), dtype=torch.bool)]
    return float(off.median().clamp_min(1e-12))


def kmmd(x: torch.Tensor, ref: torch.Tensor, bandwidth: float | None = None) -> float:
    """Biased MMD^2 with a Gaussian kernel of the given (or reference-derived) bandwidth."""
    _check(x, ref)
    sigma = kmmd_bandwidth(ref) if bandwidth is None else bandwidth
    x, ref = x.double(), ref.double()

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.exp(-torch.cdist(a, b).pow(2) / (2 * sigma**2))

    return float(k(x, x).mean() + k(ref, ref).mean() - 2 * k(x, ref).mean())


def mv(x: torch.Tensor, ref: torch.Tensor) -> float:
    """tr(Cov_x) / tr(Cov_ref): sample diversity relative to the reference."""
    _check(x, ref)
    return float(x.double().var(0).sum() / ref.double().var(0).sum().clamp_min(1e-12))


def all_metrics(x: torch.Tensor, ref: torch.Tensor, bandwidth: float | None = None) -> dict[str, float]:
    sigma = kmmd_bandwidth(ref) if bandwidth is None else bandwidth
    return {FID: fid(x, ref), KMMD: kmmd(x, ref, sigma), MV: mv(x, ref), "kmmd_bandwidth": sigma}


def intra_cluster_diversity(x: torch.Tensor, train: torch.Tensor) -> float:
    """Mean pairwise distance within the clusters of ``x`` around their nearest ``train`` rows (clusters of
    one sample left out; 0 when no cluster has two). Raw feature distances: divide by a scale to compare."""
    if x.dim() != 2 or train.dim() != 2 or x.shape[1] != train.shape[1] or not len(train):
        raise ValueError(f"feature sets must be N x d with equal d, got {tuple(x.shape)} and {tuple(train.shape)}")
    x, train = x.double(), train.double()
    cluster = torch.cdist(x, train).argmin(1)
    spreads = [torch.pdist(x[cluster == c]).mean() for c in cluster.unique() if int((cluster == c).sum()) >= 2]
    return float(torch.stack(spreads).mean()) if spreads else 0.0
