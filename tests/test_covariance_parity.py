"""The covariance estimators OAS, EWMA and Denoised against independent implementations (test-only dependencies),
to 1e-10 relative (max abs difference / max abs entry), on windows cleaned by the missing-data policy:

| ours                                  | theirs                                                                   |
|---------------------------------------|--------------------------------------------------------------------------|
| OAS()                                 | scikit-learn `OAS` (estimate and `shrinkage_`); skfolio `OAS(nearest=False)` |
| EWMA(h) (zero mean, λ = 2^(−1/h))     | skfolio `EWCovariance(half_life=h, min_observations=1, nearest=False)`    |
| EWMA(h, mean="weighted")              | pandas `DataFrame.ewm(halflife=h, adjust=True).cov(bias=True)` (last row) |
| Denoised(base)                        | skfolio `DenoiseCovariance(covariance_estimator=<same base>, nearest=False)` |

skfolio's `min_observations` (default int(h): NaN entries before that many rows) and `nearest` (default True: clip a
non-positive-definite result) are switched off: a clean window has every row, and the comparison is of the estimators,
not of skfolio's repair step. The same λ = 2^(−1/h) is used by all three EWMA implementations (pandas: 1 − α)."""
import warnings

import numpy as np
import pandas as pd
import pytest

from sklearn.covariance import OAS as SkOAS
from skfolio.moments import OAS as SkfOAS
from skfolio.moments import DenoiseCovariance, EmpiricalCovariance, EWCovariance
from skfolio.moments import LedoitWolf as SkfLedoitWolf

from tradingview_scraper.backtest.reference import synthetic_returns
from tradingview_scraper.pipelines.allocation import ERC, HRP, MinVariance
from tradingview_scraper.pipelines.covariance import (EWMA, OAS, Denoised, LedoitWolf, SampleCovariance, _prepare,
                                                      _Window)
from tradingview_scraper.pipelines.solvers import FreshBuffers

warnings.filterwarnings("ignore", module="skfolio")
WS = FreshBuffers()
TOL = 1e-10

# (rows, columns, seed, messy): more rows than columns, about as many, more columns than rows; messy windows have
# listings, delistings and gaps, so the estimators see the policy's clean matrix (listwise deletion)
SHAPES = [(300, 6, 7, True), (252, 20, 1, True), (60, 40, 2, False), (30, 60, 3, False), (504, 100, 4, True)]


def clean_window(T, n, seed, messy):
    kw = dict(listings={"EX:A1": T // 3}, delistings={"EX:A2": T - 2}, gap_share=0.01) if messy else {}
    X = synthetic_returns(T, n, n_clusters=3, seed=seed, **kw).to_numpy()
    keep, clean, excluded = _prepare(X, 0.5, WS)
    assert (len(excluded) > 0) == messy and np.isfinite(clean).all()
    return np.array(clean)


def rel(ours, theirs):
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


@pytest.fixture(scope="module", params=SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def window(request):
    return clean_window(*request.param)


def test_oas_equals_sklearn_and_skfolio(window):
    sk = SkOAS().fit(window)
    ours = OAS().estimate(_Window(window, WS))
    assert rel(ours, sk.covariance_) < TOL
    assert abs(OAS().intensity(_Window(window, WS)) - sk.shrinkage_) < TOL
    assert rel(ours, SkfOAS(nearest=False).fit(window).covariance_) < TOL


@pytest.mark.parametrize("half_life", [2.0, 11.2, 40.0, 500.0])
def test_ewma_equals_skfolio_and_pandas(window, half_life):
    theirs = EWCovariance(half_life=half_life, min_observations=1, nearest=False).fit(window).covariance_
    assert rel(EWMA(half_life).estimate(_Window(window, WS)), theirs) < TOL
    k = window.shape[1]
    pd_cov = pd.DataFrame(window).ewm(halflife=half_life, adjust=True).cov(bias=True).iloc[-k:].to_numpy()
    assert rel(EWMA(half_life, "weighted").estimate(_Window(window, WS)), pd_cov) < TOL


def test_ewma_streaming_skfolio_agrees():
    """skfolio's partial_fit over chunks is the same recursion: the whole window at once equals it too."""
    X = clean_window(400, 12, 9, False)
    sk = EWCovariance(half_life=30, min_observations=1, nearest=False)
    for chunk in np.array_split(X, 4): sk.partial_fit(chunk)
    assert rel(EWMA(30).estimate(_Window(X, WS)), sk.covariance_) < TOL


BASES = [(SampleCovariance(), lambda: EmpiricalCovariance(nearest=False)),
         (SampleCovariance(0), lambda: EmpiricalCovariance(ddof=0, nearest=False)),
         (LedoitWolf(), lambda: SkfLedoitWolf(nearest=False)),
         (OAS(), lambda: SkfOAS(nearest=False)),
         (EWMA(40), lambda: EWCovariance(half_life=40, min_observations=1, nearest=False))]


@pytest.mark.parametrize("base", BASES, ids=lambda b: repr(b[0]))
def test_denoised_equals_skfolio(window, base):
    ours_base, theirs_base = base
    theirs = DenoiseCovariance(covariance_estimator=theirs_base(), nearest=False).fit(window).covariance_
    assert rel(Denoised(ours_base).estimate(_Window(window, WS)), theirs) < TOL


def test_denoising_has_something_to_do():
    """On the parity windows, the fit finds signal and noise (0 < k < n) in most of them, so parity is not trivial."""
    counts = []
    for shape in SHAPES:
        X = clean_window(*shape)
        corr = np.corrcoef(X.T)
        vals = np.linalg.eigvalsh(corr)[::-1]
        counts.append((Denoised().n_factors(vals, X.shape[0]), X.shape[1]))
    assert sum(0 < k < n for k, n in counts) >= 4, counts


@pytest.mark.parametrize("covariance", ["oas", {"kind": "ewma", "half_life": 20}, "denoised",
                                        {"kind": "denoised", "base": {"kind": "ewma", "half_life": 30}}])
def test_allocators_take_the_new_estimators(covariance):
    X = synthetic_returns(252, 15, n_clusters=3, seed=11, listings={"EX:A3": 100}, gap_share=0.01)
    for allocator in (MinVariance(covariance=covariance), ERC(covariance=covariance), HRP(covariance=covariance)):
        w = allocator.fit(X).weights_
        assert abs(w.sum() - 1.0) < 1e-9 and (w >= -1e-12).all() and allocator.method_ == "requested"   # no fallback
