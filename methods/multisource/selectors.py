"""Consistent estimators of the shares p_i of a target that is a mixture of N fixed components.

Multi-source MineGAN's critic selector (``maths.selector_shares``) counts which source wins each
row; the estimators here instead read the shares off the sources' unmined samples, each a pure
function of tensors:

* :func:`em_shares`: Saerens, Latinne & Decaestecker (2002), EM for a shift of class priors under a
  calibrated classifier of "which source made x";
* :func:`bbse_shares`: Lipton, Wang & Smola (2018), black-box shift estimation from a confusion
  matrix on held-out source samples;
* :func:`mixture_fit`: kernel mean matching (Iyer, Nath & Sarawagi 2014), the shares whose mixture
  of the sources' kernel mean embeddings is nearest the target's (least squared MMD), with
  :func:`tie_break` to choose, among near-optimal shares, the one nearest a preferred vector when
  sources overlap and the optimum is flat.

:func:`project_to_simplex` is the Euclidean projection onto the probability simplex (Duchi,
Shalev-Shwartz, Singer & Chandra 2008) that the quadratic programmes step through.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

__all__ = ["MixtureFit", "bbse_shares", "em_shares", "mixture_fit", "project_to_simplex", "tie_break"]


def project_to_simplex(v: torch.Tensor) -> torch.Tensor:
    """The Euclidean projection of v onto the probability simplex {p : p >= 0, sum p = 1}.

    Duchi et al. (2008), Fig. 1: sort v in decreasing order as u, let rho be the largest j with
    u_j - (sum_{r<=j} u_r - 1) / j > 0 and theta = (sum_{r<=rho} u_r - 1) / rho; then
    p = max(v - theta, 0). Acts on the last dimension, so a batch of vectors projects row by row.
    """
    if v.dim() == 0 or v.shape[-1] == 0:
        raise ValueError(f"v must have a non-empty last dimension, got shape {tuple(v.shape)}")
    if not torch.isfinite(v).all():
        raise ValueError("v must be finite")
    n = v.shape[-1]
    u = torch.sort(v, dim=-1, descending=True).values
    css = u.cumsum(-1) - 1.0
    j = torch.arange(1, n + 1, dtype=v.dtype, device=v.device)
    rho = ((u - css / j) > 0).to(v.dtype).mul(j).argmax(-1, keepdim=True)  # the last j that holds
    theta = css.gather(-1, rho) / (rho + 1).to(v.dtype)
    return (v - theta).clamp_min(0.0)


def em_shares(probs: torch.Tensor, prior: torch.Tensor | None = None, iters: int = 1000,
              tol: float = 1e-10) -> tuple[torch.Tensor, torch.Tensor]:
    """Shares of the target by EM under a shift of priors (Saerens et al. 2002), and responsibilities.

    ``probs[m, i]`` is a calibrated posterior P_s(source i | x_m) of a classifier trained under the
    prior ``prior`` (uniform if None), evaluated on target image x_m. The target's shares p solve
    the fixed point, started at p = prior:

        E-step: w_i = p_i / prior_i,   r_mi = probs_mi w_i / sum_j probs_mj w_j;
        M-step: p_i = (1 / M) sum_m r_mi,

    which is the maximum-likelihood estimate of the target's priors. Stops when no share moves by
    more than ``tol`` or after ``iters`` steps. Returns (p, r): r[m, i] is the posterior, under the
    target's shares, that x_m came from source i (which target images each source covers); its
    rows sum to 1 and p is the mean of its rows.
    """
    if probs.dim() != 2 or probs.shape[0] == 0 or probs.shape[1] == 0:
        raise ValueError(f"probs must be a non-empty M x N matrix, got shape {tuple(probs.shape)}")
    if not torch.isfinite(probs).all() or (probs < 0).any():
        raise ValueError("probs must be finite and non-negative")
    if iters < 1 or not tol >= 0:
        raise ValueError(f"iters must be >= 1 and tol >= 0, got iters={iters}, tol={tol}")
    n = probs.shape[1]
    q = probs.double()
    if (q.sum(1) <= 0).any():
        raise ValueError("every row of probs must have positive mass")
    q = q / q.sum(1, keepdim=True)
    if prior is None:
        pi = torch.full((n,), 1.0 / n, dtype=torch.float64, device=probs.device)
    else:
        if prior.shape != (n,) or not torch.isfinite(prior).all() or (prior <= 0).any():
            raise ValueError(f"prior must be {n} positive numbers, got shape {tuple(prior.shape)}")
        pi = prior.double() / prior.double().sum()
    p = pi.clone()
    r = q
    for _ in range(iters):
        r = q * (p / pi)
        r = r / r.sum(1, keepdim=True)
        p_next = r.mean(0)
        moved = (p_next - p).abs().max().item()
        p = p_next
        if moved <= tol:
            break
    return p.to(probs.dtype), r.to(probs.dtype)


def bbse_shares(confusion: torch.Tensor, target_pred_freq: torch.Tensor) -> torch.Tensor:
    """Shares of the target by black-box shift estimation (Lipton et al. 2018).

    ``confusion[i, j]`` is the joint P_s(prediction = i, source = j) of a fixed classifier on held-out
    source samples (counts are normalised), and ``target_pred_freq[i]`` the frequency mu_i of
    prediction i on the target. Under label shift mu = C w with importance weights
    w_j = p_j / prior_j, prior_j = sum_i C_ij, so w = C^{-1} mu and p = prior * w, clipped at 0
    and renormalised (the clip only acts where sampling noise makes an estimate negative). A
    singular (or numerically singular) C cannot identify the shares and is an error.
    """
    if confusion.dim() != 2 or confusion.shape[0] != confusion.shape[1] or confusion.shape[0] == 0:
        raise ValueError(f"confusion must be a non-empty N x N matrix, got shape {tuple(confusion.shape)}")
    n = confusion.shape[0]
    if target_pred_freq.shape != (n,):
        raise ValueError(f"target_pred_freq must have {n} entries, got shape {tuple(target_pred_freq.shape)}")
    c = confusion.double()
    mu = target_pred_freq.double()
    if not (torch.isfinite(c).all() and torch.isfinite(mu).all()) or (c < 0).any() or (mu < 0).any():
        raise ValueError("confusion and target_pred_freq must be finite and non-negative")
    if c.sum() <= 0 or mu.sum() <= 0:
        raise ValueError("confusion and target_pred_freq must have positive mass")
    c = c / c.sum()
    mu = mu / mu.sum()
    sv = torch.linalg.svdvals(c)
    if sv[-1] <= sv[0] * n * torch.finfo(torch.float64).eps * 1e3:
        raise ValueError(f"the confusion matrix is singular (condition number {(sv[0] / sv[-1]).item():.3g}), so it cannot identify the shares")
    w = torch.linalg.solve(c, mu)
    p = (c.sum(0) * w).clamp_min(0.0)
    if p.sum() <= 0:
        raise ValueError("every estimated share is non-positive; the target does not fit the confusion matrix")
    return (p / p.sum()).to(confusion.dtype)


@dataclass(frozen=True)
class MixtureFit:
    """A kernel mean matching fit of the target as a mixture of N components (float64 tensors).

    The squared MMD of the mixture with shares p is the quadratic form
    f(p) = p^T K p - 2 p^T k + c (:meth:`objective`), with K = ``gram``, k = ``target_mean`` and
    c = ``target_norm``.

    ``flatness`` is how far the shares can move at almost no cost in fit: the largest change
    max_i |p_i - p*_i| among the simplex points p* + t u with f(p* + t u) <= (1 + flat_tol) f(p*) (MMD²
    within 1% of the optimum by default), where u runs over the unit eigenvectors of K restricted to the
    sum-zero subspace (the quadratic form's principal curvatures along the simplex) and t over
    both signs. Along each such line f is an exact 1-D quadratic, f* + t g.u + t^2 u^T K u with
    g = 2 (K p* - k), so the largest t is closed-form and then clipped to the simplex. It is near 0
    when the optimum is sharp, and as large as the simplex allows (up to 1) along a direction of
    zero curvature, e.g. the difference of two identical components; 0 when N = 1.
    """

    shares: torch.Tensor  # N, on the simplex
    mmd2: float  # f(shares), the fitted squared MMD (>= 0)
    flatness: float
    gram: torch.Tensor  # N x N, K_ij = mean k(X_i, X_j)
    target_mean: torch.Tensor  # N, k_i = mean k(X_i, Y)
    target_norm: float  # c = mean k(Y, Y)
    bandwidth: float

    def objective(self, p: torch.Tensor) -> float:
        """The squared MMD f(p) = p^T K p - 2 p^T k + c of the mixture with shares p."""
        p = p.to(self.gram)
        return float(p @ self.gram @ p - 2.0 * p @ self.target_mean + self.target_norm)


def _gaussian_mean(a: torch.Tensor, b: torch.Tensor, bandwidth: float) -> float:
    """mean_{x in a, y in b} exp(-|x - y|^2 / (2 bandwidth^2)) (a V-statistic: diagonal included)."""
    d2 = torch.cdist(a, b).square()
    return float(torch.exp(d2 / (-2.0 * bandwidth * bandwidth)).mean())


def _median_distance(y: torch.Tensor) -> float:
    """The median distance between distinct rows of y (pairs i < j)."""
    d = torch.cdist(y, y)
    i, j = torch.triu_indices(y.shape[0], y.shape[0], offset=1)
    return float(d[i, j].median())


def _simplex_rows(v: np.ndarray) -> np.ndarray:
    """:func:`project_to_simplex` in numpy, for the inner loops of the small QPs (no per-op dispatch cost)."""
    u = -np.sort(-v)
    css = np.cumsum(u) - 1.0
    j = np.arange(1, v.shape[-1] + 1)
    rho = int(np.nonzero(u - css / j > 0)[0][-1])
    return np.maximum(v - css[rho] / (rho + 1), 0.0)


def _simplex_qp(a: torch.Tensor, b: torch.Tensor, x0: torch.Tensor, iters: int, tol: float = 1e-14) -> torch.Tensor:
    """argmin_{x on the simplex} x^T A x - 2 b^T x for a symmetric PSD A, by accelerated projected
    gradient (FISTA, Beck & Teboulle 2009, restarted on ascent, O'Donoghue & Candes 2015) with step
    1 / (2 lambda_max(A)); stops after ``iters`` steps or when no coordinate moves by more than
    ``tol``, and returns the iterate of least value (float64)."""
    am, bm = a.double().cpu().numpy(), b.double().cpu().numpy()
    step = 0.5 / max(float(np.linalg.eigvalsh(am)[-1]), 1e-300)

    def value(x: np.ndarray) -> float:
        return float(x @ am @ x - 2.0 * x @ bm)

    x = _simplex_rows(x0.double().cpu().numpy())
    y, t, fx = x, 1.0, value(x)
    best, fbest = x, fx
    for _ in range(iters):
        x_next = _simplex_rows(y - step * 2.0 * (am @ y - bm))
        f_next = value(x_next)
        if f_next > fx:  # restart the momentum
            y, t = x, 1.0
            continue
        t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        y = x_next + ((t - 1.0) / t_next) * (x_next - x)
        moved = float(np.abs(x_next - x).max())
        x, fx, t = x_next, f_next, t_next
        if fx <= fbest:
            best, fbest = x, fx
        if moved <= tol:
            break
    return torch.from_numpy(best.copy())


def _line_reach(p: torch.Tensor, u: torch.Tensor, slope: float, curve: float, budget: float) -> float:
    """max_t |t| ||u||_inf over t with p + t u on the simplex and t slope + t^2 curve <= budget."""
    reach = 0.0
    for sign in (1.0, -1.0):
        d = sign * u
        neg = d < -1e-15
        t_simplex = float((p[neg] / -d[neg]).min()) if neg.any() else math.inf  # p + t d >= 0
        s = sign * slope
        if curve > 1e-14:
            t_fit = (-s + math.sqrt(max(s * s + 4.0 * curve * budget, 0.0))) / (2.0 * curve)
        elif s > 0:
            t_fit = budget / s
        else:
            t_fit = math.inf
        t = min(t_simplex, t_fit)
        if math.isfinite(t):
            reach = max(reach, t * float(d.abs().max()))
    return min(reach, 1.0)


def _flatness(gram: torch.Tensor, kvec: torch.Tensor, p: torch.Tensor, mmd2: float, rel: float) -> float:
    """See :class:`MixtureFit`: the largest share change within (1 + rel) of the optimum along the
    principal axes of K on the sum-zero subspace."""
    n = gram.shape[0]
    if n == 1:
        return 0.0
    basis = torch.linalg.qr(torch.eye(n, dtype=gram.dtype) - 1.0 / n).Q[:, : n - 1]  # sum-zero subspace
    evals, evecs = torch.linalg.eigh(basis.T @ gram @ basis)
    grad = 2.0 * (gram @ p - kvec)
    reach = 0.0
    for lam, v in zip(evals.tolist(), (basis @ evecs).T):
        reach = max(reach, _line_reach(p, v, float(grad @ v), max(lam, 0.0), rel * max(mmd2, 0.0)))
    return reach


def mixture_fit(component_feats: Sequence[torch.Tensor], target_feats: torch.Tensor, bandwidth: float | None = None,
                iters: int = 2000, flat_tol: float = 0.01) -> MixtureFit:
    """Shares of the target by kernel mean matching (Iyer et al. 2014).

    With samples X_i (n_i x d) of component Q_i, target samples Y (M x d) and a Gaussian kernel
    k(x, y) = exp(-|x - y|^2 / (2 h^2)) (h = ``bandwidth``; the median distance between target
    samples if None), the squared MMD between the mixture sum_i p_i Q_i and the target is

        MMD^2(p) = p^T K p - 2 p^T k + c,  K_ij = mean k(X_i, X_j), k_i = mean k(X_i, Y), c = mean k(Y, Y),

    with every mean over all pairs (the V-statistic, so MMD^2(p) is the squared RKHS distance of
    two empirical mean embeddings and >= 0). K is positive semi-definite, so minimising over the
    simplex is a convex QP, solved by accelerated projected gradient (step 1 / (2 lambda_max(K)),
    projection :func:`project_to_simplex`, ``iters`` steps at most) from the uniform shares.
    ``flat_tol`` is the relative slack in MMD² that ``flatness`` measures (see :class:`MixtureFit`).
    """
    feats = list(component_feats)
    if not feats:
        raise ValueError("component_feats must hold at least one component")
    if target_feats.dim() != 2 or target_feats.shape[0] < 2:
        raise ValueError(f"target_feats must be M x d with M >= 2, got shape {tuple(target_feats.shape)}")
    dim = target_feats.shape[1]
    for i, x in enumerate(feats):
        if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] != dim:
            raise ValueError(f"component {i} must be n_i x {dim} with n_i >= 1, got shape {tuple(x.shape)}")
    if iters < 1 or not flat_tol >= 0:
        raise ValueError(f"iters must be >= 1 and flat_tol >= 0, got iters={iters}, flat_tol={flat_tol}")
    y = target_feats.detach().double()
    xs = [x.detach().double().to(y.device) for x in feats]
    if not torch.isfinite(y).all() or not all(torch.isfinite(x).all() for x in xs):
        raise ValueError("component and target features must be finite")
    h = _median_distance(y) if bandwidth is None else float(bandwidth)
    if not (h > 0 and math.isfinite(h)):
        raise ValueError(f"the kernel bandwidth must be positive and finite, got {h}")
    n = len(xs)
    gram = torch.empty(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(i, n):
            gram[i, j] = gram[j, i] = _gaussian_mean(xs[i], xs[j], h)
    kvec = torch.tensor([_gaussian_mean(x, y, h) for x in xs], dtype=torch.float64)
    c = _gaussian_mean(y, y, h)

    p = _simplex_qp(gram, kvec, torch.full((n,), 1.0 / n, dtype=torch.float64), iters)
    mmd2 = max(float(p @ gram @ p - 2.0 * p @ kvec + c), 0.0)
    return MixtureFit(shares=p, mmd2=mmd2, flatness=_flatness(gram, kvec, p, mmd2, flat_tol), gram=gram,
                      target_mean=kvec, target_norm=c, bandwidth=h)


def tie_break(fit: MixtureFit, toward: torch.Tensor, tol: float, iters: int = 2000) -> torch.Tensor:
    """Among shares whose squared MMD is within ``tol`` of the fit's, the one nearest ``toward``.

    Solves min_p |p - toward|^2 s.t. f(p) <= f* + tol, p on the simplex (f = :meth:`MixtureFit.objective`,
    f* = ``fit.mmd2``), a convex programme, through its Lagrangian: for a multiplier lam >= 0,
    p(lam) = argmin_simplex |p - toward|^2 + lam f(p) (accelerated projected gradient), and lam is
    found by bisection (in log scale) so that f(p(lam)) = f* + tol; the KKT point is p(lam). If the
    projection of ``toward`` already fits within tol it is the answer. The result is finally pulled
    along the segment to ``fit.shares`` (closed form, f is quadratic on it) as far as needed for
    f(p) <= f* + tol to hold exactly despite a finite inner solve. Used to break ties toward the
    coverage shares when sources overlap and the optimum is flat.
    """
    n = fit.gram.shape[0]
    if toward.shape != (n,) or not torch.isfinite(toward).all():
        raise ValueError(f"toward must be {n} finite numbers, got shape {tuple(toward.shape)}")
    if not (tol >= 0 and math.isfinite(tol)):
        raise ValueError(f"tol must be finite and >= 0, got {tol}")
    gram, kvec = fit.gram, fit.target_mean
    t = toward.detach().double()
    p_star = fit.shares.double()
    limit = fit.objective(p_star) + tol
    eye = torch.eye(n, dtype=torch.float64)

    def solve(lam: float, x0: torch.Tensor) -> torch.Tensor:  # argmin |p - t|^2 + lam f(p)
        return _simplex_qp(eye + lam * gram, t + lam * kvec, x0, iters)

    p = project_to_simplex(t)
    if fit.objective(p) > limit:
        lo, hi = 0.0, 1.0
        p_hi = solve(hi, p_star)
        while fit.objective(p_hi) > limit and hi < 1e12:
            lo, hi = hi, hi * 10.0
            p_hi = solve(hi, p_hi)
        for _ in range(40):
            if hi / max(lo, 1e-12) < 1.0 + 1e-4:
                break
            mid = math.sqrt(max(lo, hi * 1e-6) * hi)
            p_mid = solve(mid, p_hi)
            if fit.objective(p_mid) > limit:
                lo = mid
            else:
                hi, p_hi = mid, p_mid
        p = p_hi
    # f(p* + s (p - p*)) = f* + s a + s^2 b: keep the largest s in [0, 1] within the limit.
    d = p - p_star
    b = float(d @ gram @ d)
    a = float(2.0 * d @ (gram @ p_star - kvec))
    if fit.objective(p) > limit:
        s = (-a + math.sqrt(max(a * a + 4.0 * b * tol, 0.0))) / (2.0 * b) if b > 1e-300 else tol / max(a, 1e-300)
        p = p_star + min(max(s, 0.0), 1.0) * d
    return project_to_simplex(p)
