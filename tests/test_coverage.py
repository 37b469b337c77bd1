"""The coverage selector (methods/multisource/coverage.py): a calibrated which-source classifier, EM
over its posteriors with backward elimination, and routing; on Gaussian features with known answers."""

from __future__ import annotations

import pytest
import torch

from ganlode.methods.multisource.coverage import SourceClassifier, coverage, fit_source_classifier, route_images


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def gaussians(means, n, seed):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, len(m), generator=gen, dtype=torch.float64) + torch.tensor(m, dtype=torch.float64)
            for m in means]


def target(means, counts, seed):
    parts = gaussians(means, max(counts), seed)
    return torch.cat([p[:c] for p, c in zip(parts, counts)])


MEANS = [[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0], [-3.0, -3.0, 0.0]]


@pytest.fixture(scope="module")
def clf():
    return fit_source_classifier(gaussians(MEANS, 800, seed=1), seed=0)


def test_classifier_is_calibrated_and_tells_separated_sources_apart(clf):
    assert clf.accuracy > 0.95
    assert clf.prior.tolist() == pytest.approx([0.25] * 4)  # equal sample counts: a uniform calibration prior
    assert float(clf.confusion.sum()) == pytest.approx(1.0)
    # calibrated: on fresh samples the mean posterior of each source's own class matches its hit rate
    fresh = gaussians(MEANS, 400, seed=9)
    for i, x in enumerate(fresh):
        probs = clf.probs(x)
        hit = float((probs.argmax(1) == i).double().mean())
        assert float(probs[:, i].mean()) == pytest.approx(hit, abs=0.03)


@pytest.mark.parametrize("counts", [(300, 100, 0, 0), (20, 0, 80, 100), (50, 50, 50, 50)])
def test_em_recovers_the_shares_of_a_mixture_of_the_sources(clf, counts):
    y = target(MEANS, counts, seed=5)
    cov = coverage(clf, y)
    truth = torch.tensor(counts, dtype=torch.float64) / sum(counts)
    assert torch.allclose(cov.shares, truth, atol=0.03), (cov.shares, truth)
    assert torch.allclose(cov.responsibilities.sum(1), torch.ones(len(y), dtype=torch.float64))
    assert torch.allclose(cov.responsibilities.mean(0), cov.shares, atol=1e-9)  # p is the mean responsibility


def test_backward_elimination_zeroes_the_sources_under_min_share(clf):
    y = target(MEANS, (190, 0, 0, 10), seed=6)  # source 3 holds 0.05 of the target, sources 1 and 2 none
    loose = coverage(clf, y, min_share=0.0)
    assert float(loose.shares[1]) < 0.02 and float(loose.shares[3]) > 0.0
    strict = coverage(clf, y, min_share=0.08)
    assert strict.shares.tolist()[1:] == [0.0, 0.0, 0.0] and float(strict.shares[0]) == 1.0
    assert float(strict.responsibilities[:, 1:].abs().sum()) == 0.0
    kept = coverage(clf, y, min_share=0.03)
    assert float(kept.shares[3]) == pytest.approx(0.05, abs=0.02) and kept.shares.tolist()[1:3] == [0.0, 0.0]


def test_routing_keeps_the_sources_with_shares_and_sends_each_image_to_its_likeliest(clf):
    y = target(MEANS, (60, 0, 40, 0), seed=7)
    cov = coverage(clf, y, min_share=0.05)
    kept, assign = route_images(cov.responsibilities, cov.shares)
    assert kept == [0, 2]
    assert assign.shape == (100,) and float((assign[:60] == 0).double().mean()) > 0.95
    assert float((assign[60:] == 1).double().mean()) > 0.95


def test_routing_drops_a_source_no_image_goes_to():
    resp = torch.tensor([[0.6, 0.4, 0.0], [0.7, 0.3, 0.0], [0.1, 0.2, 0.7]], dtype=torch.float64)
    kept, assign = route_images(resp, torch.tensor([0.5, 0.2, 0.3], dtype=torch.float64))
    assert kept == [0, 2] and assign.tolist() == [0, 0, 1]


def test_bad_input_is_a_value_error(clf):
    with pytest.raises(ValueError, match="two or more"):
        fit_source_classifier(gaussians(MEANS[:1], 10, seed=0))
    with pytest.raises(ValueError, match="n >= 4"):
        fit_source_classifier(gaussians(MEANS[:2], 3, seed=0))
    with pytest.raises(ValueError, match="M x 3"):
        coverage(clf, torch.zeros(5, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="min_share"):
        coverage(clf, torch.zeros(5, 3, dtype=torch.float64), min_share=1.0)


def _posterior_classifier(n: int) -> SourceClassifier:
    """A classifier whose posteriors are softmax(x): features are log-posteriors, set by hand."""
    eye = torch.eye(n, dtype=torch.float64)
    zero = torch.zeros(n, dtype=torch.float64)
    return SourceClassifier(zero, torch.ones(n, dtype=torch.float64), eye, zero, 1.0, zero,
                            torch.full((n,), 1.0 / n, dtype=torch.float64), eye / n, 1.0)


def test_min_gain_drops_a_source_that_only_makes_look_alikes_of_anothers_part():
    """Part A of the target is source 0's, but source 1 explains a fifth of those images
    better (a digit GAN's 3-like 8s beside the GAN trained on 3s): EM alone gives source 1 a share.
    Leaving it out costs little log-likelihood per image it covers, so min_gain drops it and the
    shares come out exact; source 2, alone in explaining part C, keeps its share."""
    clf = _posterior_classifier(3)
    rows = [[0.9, 0.1, 1e-6]] * 120 + [[0.1, 0.9, 1e-6]] * 30 + [[0.001, 0.001, 0.998]] * 50
    y = torch.tensor(rows, dtype=torch.float64).log()
    loose = coverage(clf, y)
    assert float(loose.shares[1]) > 0.05
    strict = coverage(clf, y, min_gain=1.0)
    assert strict.shares.tolist() == pytest.approx([0.75, 0.0, 0.25], abs=0.01)
    assert float(strict.responsibilities[:, 1].abs().sum()) == 0.0
    assert float(coverage(clf, y, min_gain=3.0).shares[2]) == pytest.approx(0.25, abs=0.01)
