"""Which source covers which target image: a calibrated "which source made x" classifier, and
the target's shares from it by EM (the ``coverage`` selector), as pure functions of features.

1. :func:`fit_source_classifier`: multinomial logistic regression on features of samples from
   each (unmined) source, standardised, with an L2 penalty, fitted by L-BFGS on one half of the
   samples; then bias-corrected temperature scaling (BCTS, Alexandari, Kundaje & Shrikumar 2020:
   softmax(z / T + b)) fitted on the other half, so its posteriors are calibrated under the prior
   of the held-out half (uniform for equal sample counts).
2. :func:`coverage`: the classifier's posteriors on the target images, then EM for the shift of
   priors (:func:`~.selectors.em_shares`, Saerens et al. 2002): the shares p, and r[m, i], the
   posterior that target image m came from source i (what each source covers). BBSE (Lipton et
   al. 2018) from the held-out confusion matrix is the cross-check.

Everything is float64 and deterministic for a given seed (the half split is a seeded permutation;
L-BFGS is deterministic).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .selectors import bbse_shares, em_shares

__all__ = ["Coverage", "SourceClassifier", "coverage", "fit_source_classifier", "route_images"]


@dataclass(frozen=True)
class SourceClassifier:
    """softmax(((x - mean) / scale) W + c) / T + b): a calibrated posterior over the N sources."""

    mean: torch.Tensor  # d
    scale: torch.Tensor  # d
    weight: torch.Tensor  # d x N
    bias: torch.Tensor  # N
    temperature: float
    calib_bias: torch.Tensor  # N
    prior: torch.Tensor  # N: the source shares of the calibration half
    confusion: torch.Tensor  # N x N: joint P(prediction i, source j) on the calibration half
    accuracy: float  # on the calibration half

    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        z = ((feats.double() - self.mean) / self.scale) @ self.weight + self.bias
        return z / self.temperature + self.calib_bias

    def probs(self, feats: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(feats), dim=1)


@dataclass(frozen=True)
class Coverage:
    """The coverage estimate of a target's shares (float64 tensors)."""

    shares: torch.Tensor  # N: EM under the classifier's calibrated posteriors
    responsibilities: torch.Tensor  # M x N: P(source i | target image m) under those shares
    bbse: torch.Tensor | None  # N: black-box shift estimation (None where the confusion is singular)
    accuracy: float  # the classifier's held-out accuracy at telling the sources apart


def _lbfgs(params: list[torch.Tensor], loss_fn, iters: int) -> None:
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=iters, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    opt.step(closure)


def fit_source_classifier(source_feats: Sequence[torch.Tensor], seed: int = 0, l2: float = 1e-3,
                          iters: int = 200) -> SourceClassifier:
    """Fit and calibrate a classifier of which of N sources made a feature vector.

    ``source_feats[i]`` is an n_i x d matrix of features of source i's samples (n_i >= 4). Each
    source's rows are split in half by a permutation seeded with ``seed``: the first halves fit
    the logistic regression (mean cross-entropy + ``l2`` |W|^2), the second halves the BCTS
    calibration (temperature and per-class bias by least cross-entropy) and the held-out
    accuracy and confusion matrix.
    """
    feats = [f.detach().double().cpu() for f in source_feats]
    if len(feats) < 2:
        raise ValueError(f"a source classifier needs two or more sources, got {len(feats)}")
    dim = feats[0].shape[1] if feats[0].dim() == 2 else -1
    for i, f in enumerate(feats):
        if f.dim() != 2 or f.shape[1] != dim or f.shape[0] < 4:
            raise ValueError(f"source {i}'s features must be n x {dim} with n >= 4, got shape {tuple(f.shape)}")
        if not torch.isfinite(f).all():
            raise ValueError(f"source {i}'s features are not finite")
    gen = torch.Generator().manual_seed(seed)
    fit_x, fit_y, cal_x, cal_y = [], [], [], []
    for i, f in enumerate(feats):
        perm = torch.randperm(f.shape[0], generator=gen)
        half = f.shape[0] // 2
        fit_x.append(f[perm[:half]])
        cal_x.append(f[perm[half:]])
        fit_y.append(torch.full((half,), i, dtype=torch.int64))
        cal_y.append(torch.full((f.shape[0] - half,), i, dtype=torch.int64))
    xf, yf, xc, yc = torch.cat(fit_x), torch.cat(fit_y), torch.cat(cal_x), torch.cat(cal_y)
    n = len(feats)
    mean = xf.mean(0)
    scale = xf.std(0).clamp_min(1e-6)
    zf = (xf - mean) / scale
    weight = torch.zeros(dim, n, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    ce = torch.nn.functional.cross_entropy
    _lbfgs([weight, bias], lambda: ce(zf @ weight + bias, yf) + l2 * weight.square().sum(), iters)
    weight, bias = weight.detach(), bias.detach()

    zc = ((xc - mean) / scale) @ weight + bias
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    cbias = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    _lbfgs([log_t, cbias], lambda: ce(zc / log_t.exp() + cbias, yc), iters)
    temperature = float(log_t.detach().exp())
    calib_bias = cbias.detach()
    pred = (zc / temperature + calib_bias).argmax(1)
    confusion = torch.zeros(n, n, dtype=torch.float64)
    confusion.index_put_((pred, yc), torch.ones(len(yc), dtype=torch.float64), accumulate=True)
    confusion /= len(yc)
    prior = torch.bincount(yc, minlength=n).double() / len(yc)
    return SourceClassifier(mean, scale, weight, bias, temperature, calib_bias, prior, confusion,
                            float((pred == yc).double().mean()))


def _log_likelihood(probs: torch.Tensor, prior: torch.Tensor, shares: torch.Tensor) -> torch.Tensor:
    """log sum_i p_i P(x_m | i) per target image, up to a constant per image: with calibrated
    posteriors q_mi under the prior pi, P(x_m | i) is proportional to q_mi / pi_i."""
    return torch.log((probs * (shares / prior)).sum(1).clamp_min(1e-300))


def _fit(probs: torch.Tensor, prior: torch.Tensor, active: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """EM over the ``active`` sources only; (shares, responsibilities) over all of them (0 elsewhere)."""
    sub, resp_sub = em_shares(probs[:, active], prior=prior[active])
    shares = torch.zeros(probs.shape[1], dtype=torch.float64)
    shares[active] = sub.double()
    resp = torch.zeros(probs.shape, dtype=torch.float64)
    resp[:, active] = resp_sub.double()
    return shares, resp


def coverage(classifier: SourceClassifier, target_feats: torch.Tensor, min_share: float = 0.0,
             min_gain: float = 0.0) -> Coverage:
    """The target's shares by EM over the classifier's posteriors, with BBSE beside them.

    Backward elimination, one source at a time. With EM's shares p over the sources still in,
    a source j fails when its share is below ``min_share``, or when its **gain** is below
    ``min_gain``: the drop in the target's log-likelihood sum_m log sum_i p_i P(x_m | i) when j is
    left out (and EM re-run on the rest), per target image j covers (M p_j), in nats. A source
    whose images the others explain almost as well (a digit GAN that makes a few 3-like 8s, beside
    the digit GAN trained on 3s) has a small gain; one that alone explains its part of the target
    has a large one. While any source fails (and two or more are in), the failing one of least
    gain is dropped and EM re-run. Dropped sources get share 0 and responsibility 0; posteriors and
    prior are restricted to the rest (P(i | x, i in S) = P(i | x) / sum_S P(j | x)).
    """
    if target_feats.dim() != 2 or target_feats.shape[0] == 0 or target_feats.shape[1] != classifier.mean.shape[0]:
        raise ValueError(f"target_feats must be M x {classifier.mean.shape[0]} with M >= 1, "
                         f"got shape {tuple(target_feats.shape)}")
    if not 0.0 <= min_share < 1.0 or not min_gain >= 0.0:
        raise ValueError(f"min_share must be in [0, 1) and min_gain >= 0, got {min_share} and {min_gain}")
    probs = classifier.probs(target_feats.detach().cpu())
    prior = classifier.prior
    m, n = probs.shape
    active = list(range(n))
    while True:
        shares, resp = _fit(probs, prior, active)
        if len(active) == 1:
            break
        base = _log_likelihood(probs, prior, shares).sum()
        gains = {}
        for j in active:
            without, _ = _fit(probs, prior, [i for i in active if i != j])
            covered = m * float(shares[j])
            gains[j] = float(base - _log_likelihood(probs, prior, without).sum()) / covered if covered > 0 else 0.0
        failing = [j for j in active if float(shares[j]) < min_share or gains[j] < min_gain]
        if not failing:
            break
        active.remove(min(failing, key=lambda j: (gains[j], float(shares[j]))))
    freq = torch.bincount(probs.argmax(1), minlength=n).double()
    try:
        bbse = bbse_shares(classifier.confusion, freq)
    except ValueError:
        bbse = None
    return Coverage(shares, resp, bbse, classifier.accuracy)


def route_images(resp: torch.Tensor, shares: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    """Routing: (the kept sources, the kept source each target image goes to).

    Kept are the sources with a positive share that are the likeliest source (largest r[m, i])
    of at least one target image; each image m goes to the kept source of largest r[m, i].
    Returns the kept indices in ascending order and an M-vector of positions into that list.
    """
    if resp.dim() != 2 or shares.shape != (resp.shape[1],):
        raise ValueError(f"resp must be M x N and shares N, got {tuple(resp.shape)} and {tuple(shares.shape)}")
    kept = [i for i, p in enumerate(shares.tolist()) if p > 0]
    if not kept:
        raise ValueError("every share is 0: nothing to route to")
    while True:
        assign = resp[:, kept].argmax(1)
        counts = torch.bincount(assign, minlength=len(kept))
        if bool((counts > 0).all()):
            return kept, assign
        kept = [i for i, c in zip(kept, counts.tolist()) if c > 0]
