"""Share estimators (methods/multisource/selectors.py): closed forms and invariants."""

from __future__ import annotations

import itertools

import pytest
import torch

from ganlode.methods.multisource.selectors import (
    MixtureFit,
    bbse_shares,
    em_shares,
    mixture_fit,
    project_to_simplex,
    tie_break,
)


@pytest.fixture(autouse=True)
def one_thread():
    """Pin one torch thread (tiny ops stall in a pool on a busy box) and restore the count after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def on_simplex(p: torch.Tensor, atol: float = 1e-9) -> bool:
    return bool((p >= -atol).all()) and abs(float(p.sum()) - 1.0) <= atol


# --- project_to_simplex -------------------------------------------------------------------------------


def test_projection_hand_cases():
    d = torch.float64
    assert torch.allclose(project_to_simplex(torch.tensor([0.5, 0.5, 0.5], dtype=d)), torch.full((3,), 1 / 3, dtype=d))
    assert torch.equal(project_to_simplex(torch.tensor([2.0, 0.0], dtype=d)), torch.tensor([1.0, 0.0], dtype=d))
    assert torch.allclose(project_to_simplex(torch.tensor([1.0, 0.5, -3.0], dtype=d)), torch.tensor([0.75, 0.25, 0.0], dtype=d))


def test_projection_is_identity_on_the_simplex_and_lands_on_it():
    g = torch.Generator().manual_seed(0)
    p = torch.distributions.Dirichlet(torch.ones(5, dtype=torch.float64)).sample((50,))
    p[:5] = torch.eye(5, dtype=torch.float64)  # vertices too
    assert torch.allclose(project_to_simplex(p), p, atol=1e-14)
    v = 3.0 * torch.randn(200, 6, generator=g, dtype=torch.float64)
    q = project_to_simplex(v)
    assert (q >= 0).all()
    assert torch.allclose(q.sum(-1), torch.ones(200, dtype=torch.float64), atol=1e-12)


def test_projection_is_the_nearest_point_by_brute_force():
    """On a 1/200 grid of the 3-simplex no point is nearer v than the projection."""
    k = 200
    grid = torch.tensor([(a, b, k - a - b) for a in range(k + 1) for b in range(k + 1 - a)], dtype=torch.float64) / k
    g = torch.Generator().manual_seed(1)
    for v in 2.0 * torch.randn(20, 3, generator=g, dtype=torch.float64):
        p = project_to_simplex(v)
        best = (grid - v).norm(dim=1).min()
        assert (p - v).norm() <= best + 1e-12
        assert (grid - p).norm(dim=1).min() <= 1.0 / k  # and it is where the grid's best point is


def test_the_solvers_numpy_projection_agrees():
    from ganlode.methods.multisource.selectors import _simplex_rows

    g = torch.Generator().manual_seed(7)
    for v in 3.0 * torch.randn(50, 4, generator=g, dtype=torch.float64):
        assert torch.allclose(torch.from_numpy(_simplex_rows(v.numpy())), project_to_simplex(v), atol=1e-15)


def test_projection_rejects_bad_input():
    for bad in (torch.tensor(1.0), torch.empty(0), torch.tensor([1.0, float("nan")])):
        with pytest.raises(ValueError) as err:
            project_to_simplex(bad)
        assert "\n" not in str(err.value)


# --- em_shares ----------------------------------------------------------------------------------------


def test_em_with_one_hot_posteriors_gives_the_label_frequencies():
    g = torch.Generator().manual_seed(2)
    labels = torch.multinomial(torch.tensor([0.2, 0.5, 0.3]), 999, replacement=True, generator=g)
    probs = torch.nn.functional.one_hot(labels, 3).double()
    shares, resp = em_shares(probs)
    freq = torch.bincount(labels, minlength=3).double() / labels.numel()
    assert torch.allclose(shares, freq, rtol=1e-12, atol=0)
    assert torch.equal(resp, probs)


@pytest.mark.parametrize("train_prior", [(0.5, 0.5), (0.8, 0.2)])
def test_em_recovers_a_prior_shift_of_a_calibrated_gaussian_posterior(train_prior):
    """x | y=0 ~ N(-1, 1), x | y=1 ~ N(1, 1); the calibrated posterior under prior pi is
    sigmoid(2x + log(pi_1 / pi_0)). The target draws y=1 with probability 0.7."""
    g = torch.Generator().manual_seed(3)
    truth = torch.tensor([0.3, 0.7], dtype=torch.float64)
    y = (torch.rand(20_000, generator=g, dtype=torch.float64) < truth[1]).double()
    x = 2.0 * y - 1.0 + torch.randn(20_000, generator=g, dtype=torch.float64)
    pi = torch.tensor(train_prior, dtype=torch.float64)
    p1 = torch.sigmoid(2.0 * x + torch.log(pi[1] / pi[0]))
    probs = torch.stack([1.0 - p1, p1], dim=1)
    shares, resp = em_shares(probs, prior=pi)
    assert (shares - truth).abs().max() < 0.02
    assert torch.allclose(resp.sum(1), torch.ones(20_000, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(shares, resp.mean(0), atol=1e-9)  # a fixed point of the M-step


def test_em_rejects_bad_input():
    for args in ((torch.ones(3),), (-torch.ones(3, 2),), (torch.ones(3, 2), torch.tensor([1.0, 0.0])), (torch.ones(3, 2), torch.ones(3))):
        with pytest.raises(ValueError) as err:
            em_shares(*args)
        assert "\n" not in str(err.value)


# --- bbse_shares --------------------------------------------------------------------------------------


def test_bbse_with_an_identity_confusion_gives_the_predicted_frequencies():
    mu = torch.tensor([3.0, 1.0, 4.0], dtype=torch.float64)
    assert torch.allclose(bbse_shares(torch.eye(3, dtype=torch.float64), mu), mu / mu.sum(), atol=1e-14)


def test_bbse_on_a_hand_2x2_case_is_the_closed_form_inverse():
    c = torch.tensor([[0.3, 0.1], [0.2, 0.4]], dtype=torch.float64)  # P(pred=i, y=j); prior = (0.5, 0.5)
    mu = torch.tensor([0.35, 0.65], dtype=torch.float64)
    det = 0.3 * 0.4 - 0.1 * 0.2
    w = torch.tensor([(0.4 * 0.35 - 0.1 * 0.65) / det, (-0.2 * 0.35 + 0.3 * 0.65) / det], dtype=torch.float64)
    p = torch.tensor([0.5, 0.5], dtype=torch.float64) * w
    assert torch.allclose(bbse_shares(c, mu), p / p.sum(), atol=1e-14)
    assert torch.allclose(bbse_shares(c, mu), torch.tensor([0.375, 0.625], dtype=torch.float64), atol=1e-14)
    # the shares it returns reproduce the target's prediction frequencies: mu = C diag(1/prior) p
    assert torch.allclose((c / c.sum(0)) @ bbse_shares(c, mu), mu, atol=1e-14)


def test_bbse_clips_negative_shares():
    c = torch.tensor([[0.4, 0.1], [0.1, 0.4]], dtype=torch.float64)
    assert torch.allclose(bbse_shares(c, torch.tensor([0.95, 0.05], dtype=torch.float64)), torch.tensor([1.0, 0.0], dtype=torch.float64))


def test_bbse_singular_confusion_is_a_one_line_value_error():
    with pytest.raises(ValueError, match="singular") as err:
        bbse_shares(torch.tensor([[0.25, 0.25], [0.25, 0.25]]), torch.tensor([0.5, 0.5]))
    assert "\n" not in str(err.value)


# --- mixture_fit and tie_break ------------------------------------------------------------------------


def blobs(seed: int = 4, n: int = 400, m: int = 1000, shares=(0.3, 0.7)) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Disjoint 2-D Gaussian components (centres 4 apart) and a target drawn from them at ``shares``."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]], dtype=torch.float64)[: len(shares)]
    comps = [c + 0.5 * torch.randn(n, 2, generator=g, dtype=torch.float64) for c in centres]
    counts = torch.tensor([round(s * m) for s in shares])
    target = torch.cat([c + 0.5 * torch.randn(int(k), 2, generator=g, dtype=torch.float64) for c, k in zip(centres, counts)])
    return comps, target, torch.tensor(shares, dtype=torch.float64)


@pytest.fixture(scope="module")
def disjoint_fit() -> tuple[MixtureFit, torch.Tensor]:
    comps, target, truth = blobs()
    return mixture_fit(comps, target), truth


@pytest.fixture(scope="module")
def twin_fit() -> MixtureFit:
    """Components A, A, B (the first two identical) and a target 0.4 A + 0.6 B."""
    comps, target, _ = blobs(seed=5, shares=(0.4, 0.6))
    return mixture_fit([comps[0], comps[0].clone(), comps[1]], target)


def test_mixture_fit_recovers_disjoint_shares(disjoint_fit):
    fit, truth = disjoint_fit
    assert on_simplex(fit.shares)
    assert (fit.shares - truth).abs().max() < 0.03
    assert fit.mmd2 >= 0
    assert fit.mmd2 <= fit.objective(torch.full((2,), 0.5, dtype=torch.float64))
    assert fit.gram.shape == (2, 2) and torch.allclose(fit.gram, fit.gram.T)
    assert abs(fit.objective(fit.shares) - fit.mmd2) < 1e-12


def test_mixture_fit_is_the_minimum_on_a_simplex_grid(disjoint_fit):
    fit, _ = disjoint_fit
    grid = [torch.tensor([a, 1 - a], dtype=torch.float64) for a in torch.linspace(0, 1, 201).tolist()]
    assert fit.mmd2 <= min(fit.objective(p) for p in grid) + 1e-12


def test_mixture_fit_three_disjoint_components_and_bandwidth():
    comps, target, truth = blobs(seed=6, shares=(0.2, 0.5, 0.3))
    fit = mixture_fit(comps, target, bandwidth=1.0)
    assert fit.bandwidth == 1.0 and on_simplex(fit.shares)
    assert (fit.shares - truth).abs().max() < 0.03
    grid = [torch.tensor([a / 50, b / 50, (50 - a - b) / 50], dtype=torch.float64) for a, b in itertools.product(range(51), range(51)) if a + b <= 50]
    assert fit.mmd2 <= min(fit.objective(p) for p in grid) + 1e-12


def test_flatness_is_large_for_identical_components_and_small_for_disjoint(disjoint_fit, twin_fit):
    fit, _ = disjoint_fit
    assert fit.flatness < 0.05
    # the A-A difference costs nothing, so the shares can move along it until one of the twins hits 0
    assert twin_fit.flatness >= float(twin_fit.shares[:2].min()) - 1e-9
    assert twin_fit.flatness > 0.15
    assert on_simplex(twin_fit.shares)
    assert abs(float(twin_fit.shares[:2].sum()) - 0.4) < 0.03  # the identified part is still right


def test_tie_break_moves_toward_the_preference_within_tol(twin_fit):
    toward = torch.tensor([0.9, 0.1, 0.0], dtype=torch.float64)
    tol = 1e-3
    p = tie_break(twin_fit, toward, tol)
    assert on_simplex(p)
    assert twin_fit.objective(p) <= twin_fit.mmd2 + tol + 1e-12
    assert (p - toward).norm() < (twin_fit.shares - toward).norm()
    assert p[0] > p[1]  # the free A-A split went toward the preference
    # with no slack it keeps the optimal MMD^2 yet still takes the free split
    p0 = tie_break(twin_fit, toward, 0.0)
    assert twin_fit.objective(p0) <= twin_fit.mmd2 + 1e-12
    assert (p0 - toward).norm() < (twin_fit.shares - toward).norm()


def test_tie_break_returns_a_feasible_preference_unchanged(disjoint_fit):
    fit, _ = disjoint_fit
    assert torch.allclose(tie_break(fit, fit.shares, 1e-3), fit.shares, atol=1e-12)


def test_mixture_fit_rejects_bad_input():
    x = torch.randn(10, 2)
    for args in (([], x), ([x], x[:, :1]), ([torch.randn(5, 3)], x), ([x], torch.zeros(10, 2))):
        with pytest.raises(ValueError) as err:
            mixture_fit(*args)
        assert "\n" not in str(err.value)
