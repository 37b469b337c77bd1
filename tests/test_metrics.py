"""The protocol's metrics against their closed forms (pure functions of feature matrices)."""

from __future__ import annotations

import pytest
import torch

from ganlode.methods import metrics as M


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _features(n: int = 200, d: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64)
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ mix  # correlated, full rank


def test_fid_is_zero_for_identical_feature_sets():
    x = _features()
    assert M.fid(x, x) == pytest.approx(0.0, abs=1e-6)


def test_fid_equals_squared_mean_distance_for_equal_covariances():
    """x and x + c have the same covariance, so FID = ||c||^2 (the trace term vanishes)."""
    x = _features()
    c = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0, 0.25, -1.0, 2.0], dtype=torch.float64)
    assert M.fid(x + c, x) == pytest.approx(float(c.pow(2).sum()), rel=1e-5)


def test_kmmd_is_zero_for_identical_sets_and_grows_with_a_shift():
    x = _features()
    sigma = M.kmmd_bandwidth(x)
    assert M.kmmd(x, x, sigma) == pytest.approx(0.0, abs=1e-12)
    direction = torch.ones(x.shape[1], dtype=torch.float64) / x.shape[1] ** 0.5
    values = [M.kmmd(x + s * sigma * direction, x, sigma) for s in (0.25, 0.5, 1.0, 2.0, 4.0)]
    assert all(a < b for a, b in zip(values, values[1:])), values
    assert values[0] > 0


def test_kmmd_bandwidth_is_the_median_pairwise_distance():
    ref = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)  # distances 1, 2, 3
    assert M.kmmd_bandwidth(ref) == pytest.approx(2.0)


def test_mv_closed_forms():
    """tr(Cov) ratio: 1 for the same features (also shifted), 4 for features scaled by 2."""
    x = _features()
    assert M.mv(x, x) == pytest.approx(1.0)
    assert M.mv(x + 5.0, x) == pytest.approx(1.0)
    assert M.mv(2 * x, x) == pytest.approx(4.0)
    assert M.mv(x, 2 * x) == pytest.approx(0.25)


def test_all_metrics_reports_the_bandwidth_it_used():
    x, y = _features(seed=0), _features(seed=1)
    out = M.all_metrics(x, y, bandwidth=3.0)
    assert out["kmmd_bandwidth"] == 3.0 and out["kmmd"] == pytest.approx(M.kmmd(x, y, 3.0))
    assert set(M.METRICS) <= set(out)


def test_mismatched_feature_sets_are_rejected():
    with pytest.raises(ValueError, match="equal d"):
        M.fid(torch.zeros(4, 3), torch.zeros(4, 2))


@pytest.mark.parametrize("n,m,d", [(4, 6, 256), (40, 30, 64), (9, 9, 16)])
def test_fid_through_the_rows_equals_torchmetrics_fid(n, m, d):
    """Fewer rows than features: the nuclear-norm form equals torchmetrics' d x d eigenvalue form."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    g = torch.Generator().manual_seed(n + m + d)
    x, ref = torch.randn(n, d, generator=g) * 1.5 + 0.3, torch.randn(m, d, generator=g)
    metric = FrechetInceptionDistance(feature=M._PassThrough(d), normalize=False)
    metric.update(ref.double(), real=True)
    metric.update(x.double(), real=False)
    assert M.fid_low_rank(x, ref) == pytest.approx(float(metric.compute()), rel=1e-6)
    assert M.fid(x, ref) == M.fid_low_rank(x, ref)  # fid takes this path when n or m < d


def test_intra_cluster_diversity_is_the_mean_spread_of_each_training_images_cluster():
    train = torch.tensor([[0.0, 0.0], [10.0, 0.0], [50.0, 50.0]], dtype=torch.float64)
    x = torch.tensor([[0.0, 1.0], [0.0, -1.0], [0.2, 0.0], [10.0, 0.0], [10.0, 3.0], [10.0, 4.0], [49.0, 50.0]], dtype=torch.float64)
    near0 = (2.0 + 2 * (0.04 + 1.0) ** 0.5) / 3  # the three pairs around (0, 0)
    near1 = (3.0 + 4.0 + 1.0) / 3  # around (10, 0); the lone sample near (50, 50) is no cluster
    assert M.intra_cluster_diversity(x, train) == pytest.approx((near0 + near1) / 2, rel=1e-12)
    copies = torch.cat([train, train])  # two exact copies of every training image: no diversity at all
    assert M.intra_cluster_diversity(copies, train) == 0.0
    assert M.intra_cluster_diversity(train, train) == 0.0  # one sample per cluster: none counts
