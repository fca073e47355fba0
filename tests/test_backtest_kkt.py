"""Exactness of the optimizers: long-only minimum variance satisfies the KKT conditions to rounding (with and without caps,
PDAS, the primal active set and the batched path), the long/short closed form, the tangency portfolio and ERC."""
import numpy as np
import pytest

from tradingview_scraper.backtest.reference import synthetic_returns
from tradingview_scraper.pipelines import allocation as A
from tradingview_scraper.pipelines import covariance as C
from tradingview_scraper.pipelines import solvers as S


def kkt_violation(w, cov, cap=np.inf):
    "Largest relative violation of the KKT conditions of min w'Σw s.t. Σw = 1, 0 ≤ w ≤ cap."
    g = cov @ w
    free = (w > 0) & (w < cap)
    nu = g[free].mean() if free.any() else g[w > 0].max()
    scale = abs(nu)
    v = [abs(w.sum() - 1), max(0.0, -w.min()), max(0.0, (w - cap).max())]
    if free.any(): v.append(np.abs(g[free] - nu).max() / scale)          # stationarity on free assets
    v.append(max(0.0, (nu - g[w == 0]).max(initial=-1)) / scale)          # at 0: gradient ≥ ν
    v.append(max(0.0, (g[w == cap] - nu).max(initial=-1)) / scale)        # at the cap: gradient ≤ ν
    return max(v)


def problems(n_problems=40):
    rng = np.random.default_rng(0)
    for i in range(n_problems):
        n = int(rng.integers(3, 60)); T = int(rng.integers(n + 20, 400))
        X = synthetic_returns(T, n, n_clusters=int(rng.integers(1, 6)), seed=1000 + i, dof=float(rng.uniform(2.5, 8)))
        yield X.to_numpy()


@pytest.mark.parametrize("cap", [None, 0.35, 0.1])
def test_min_variance_is_a_kkt_point(cap):
    for X in problems():
        n = X.shape[1]
        if cap is not None and cap * n < 1: continue
        cov = np.cov(X, rowvar=False)
        w = A.MinVariance(max_weight=cap).allocate(X).weights
        assert kkt_violation(w, cov, np.inf if cap is None else cap) < 1e-10
        # the primal active set from a feasible vertex reaches the same point
        u = np.full(n, 1.0 if cap is None else cap)
        x0, st = S._greedy_vertex(np.diag(cov), u, 1.0)
        primal = S._active_set_qp(cov, np.ones(n), 1.0, u, x0, st, A.FreshBuffers())[0]
        assert np.abs(primal - w).max() < 1e-10


def test_batched_path_equals_single_windows_and_is_exact():
    P = synthetic_returns(2000, 25, n_clusters=4, seed=9).to_numpy()
    wins = [P[i * 21:i * 21 + 252] for i in range(80)]
    many = A.MinVariance().allocate_many(lambda i: wins[i], len(wins))
    for X, r in zip(wins, many):
        one = A.MinVariance().allocate(X).weights
        assert np.abs(r.weights - one).max() < 1e-12
        assert kkt_violation(r.weights, np.cov(X, rowvar=False)) < 1e-10


def test_long_short_closed_form_and_tangency():
    for X in problems(15):
        cov, mu = np.cov(X, rowvar=False), X.mean(0)
        w = A.MinVariance(long_only=False).allocate(X).weights
        g = cov @ w
        assert abs(w.sum() - 1) < 1e-12 and np.abs(g / g.mean() - 1).max() < 1e-9
        if (mu > 0).any():
            y = A.MaxSharpe().allocate(X).weights
            g = cov @ y
            held = y > 0
            k = g[held] / mu[held]                         # ∇(w'Σw) ∝ μ on the support …
            assert np.abs(k / k.mean() - 1).max() < 1e-9
            assert (g[~held] - k.mean() * mu[~held] >= -1e-12 * np.abs(g).max()).all()   # … and ≥ on the rest


def test_erc_risk_contributions_equal():
    for X in problems(15):
        cov = np.cov(X, rowvar=False)
        w = A.ERC().allocate(X).weights
        rc = w * (cov @ w)
        assert (w > 0).all() and (rc.max() - rc.min()) / rc.mean() < 1e-12


def test_near_singular_covariances_are_detected_and_shrunk():
    X = synthetic_returns(252, 8, seed=3).to_numpy(copy=True)
    X = np.column_stack([X, X[:, 0] + 1e-10 * np.random.default_rng(1).normal(size=252)])
    r = A.MinVariance().allocate(X)
    assert r.method == "shrinkage" and "singular" in r.fallbacks[0][1]
    shrunk = C._shrink(np.cov(X, rowvar=False), A.FALLBACK_SHRINKAGE, A.FreshBuffers())
    assert kkt_violation(r.weights, shrunk) < 1e-10
