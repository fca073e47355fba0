"""Independent implementations (skfolio, scikit-learn; test-only dependencies): HRP weights to 1e-12 under the same linkage,
distance and leaf ordering, Ledoit–Wolf to 1e-12, the walk-forward folds, and whole out-of-sample runs under the same
conventions (fixed weights, no costs, no lag); the purged walk-forward folds and the combinatorial purged cross-validation
folds, path ids and paths."""
import warnings

import numpy as np
import pandas as pd
import pytest

from sklearn.covariance import ledoit_wolf
from skfolio.cluster import HierarchicalClustering, LinkageMethod
from skfolio.datasets import load_sp500_dataset
from skfolio.distance import PearsonDistance
from skfolio.model_selection import CombinatorialPurgedCV as SkCPCV
from skfolio.model_selection import WalkForward, cross_val_predict
from skfolio.optimization import HierarchicalRiskParity, MeanRisk, ObjectiveFunction, RiskBudgeting
from skfolio.preprocessing import prices_to_returns
from skfolio.seriation import HierarchicalSeriation

from tradingview_scraper.backtest.cpcv import CombinatorialPurgedCV
from tradingview_scraper.backtest.engine import BacktestEngine
from tradingview_scraper.backtest.reference import synthetic_returns
from tradingview_scraper.core import ValidationError
from tradingview_scraper.pipelines.allocation import ERC, HRP, LedoitWolf, MaxSharpe, MinVariance, FreshBuffers
from tradingview_scraper.pipelines.covariance import _prepare, _Window

warnings.filterwarnings("ignore", module="skfolio")
DISTANCES = {"pearson": PearsonDistance(), "absolute": PearsonDistance(absolute=True), "squared": PearsonDistance(power=2)}


def sk_hrp(linkage, ordering, distance):
    return HierarchicalRiskParity(distance_estimator=DISTANCES[distance], seriation_estimator=HierarchicalSeriation(
        hierarchical_clustering_estimator=HierarchicalClustering(linkage_method=LinkageMethod(linkage)), optimal_ordering=ordering))


@pytest.mark.parametrize("linkage", ["single", "average", "complete", "ward"])
@pytest.mark.parametrize("ordering", [False, True])
@pytest.mark.parametrize("distance", list(DISTANCES))
def test_hrp_equals_skfolio(linkage, ordering, distance):
    for seed, n in enumerate((4, 11, 25, 70)):
        X = synthetic_returns(252, n, n_clusters=3, seed=seed)
        ours = HRP(linkage=linkage, optimal_ordering=ordering, distance=distance).fit(X).weights_.to_numpy()
        theirs = sk_hrp(linkage, ordering, distance).fit(X).weights_
        assert np.abs(ours - theirs).max() < 1e-12


def test_ledoit_wolf_equals_sklearn():
    for seed in range(5):                                   # 30 to 150 assets: both Gram kernels (gemm below 64 columns, syrk above)
        X = synthetic_returns(100 + 50 * seed, 30 + 30 * seed, seed=seed).to_numpy()
        keep, clean, _ = _prepare(X, 0.5, FreshBuffers())
        ours = LedoitWolf().estimate(_Window(clean, FreshBuffers()))
        assert np.abs(ours - ledoit_wolf(clean)[0]).max() < 1e-12 * np.abs(ours).max()


def test_folds_equal_walk_forward():
    for n, L, H in [(8312, 252, 21), (500, 100, 30), (130, 100, 30), (129, 100, 30)]:
        ours = BacktestEngine(L, H).folds(n)
        theirs = list(WalkForward(test_size=H, train_size=L).split(np.zeros((n, 1))))
        assert len(ours) == len(theirs)
        for (a, b, s, e), (tr, te) in zip(ours, theirs):
            assert (a, b, s, e) == (tr[0], tr[-1] + 1, te[0], te[-1] + 1)
        anchored = BacktestEngine(L, H, anchored=True).folds(n)
        theirs = list(WalkForward(test_size=H, train_size=L, expand_train=True).split(np.zeros((n, 1))))
        assert [(a, b) for a, b, _, _ in anchored] == [(tr[0], tr[-1] + 1) for tr, _ in theirs]


@pytest.fixture(scope="module")
def sp500():
    X = prices_to_returns(load_sp500_dataset()).iloc[:2600]
    return X, X.set_axis(X.index.tz_localize("UTC"))


def test_out_of_sample_hrp_equals_skfolio_walk_forward(sp500):
    X, Xu = sp500
    pred = cross_val_predict(sk_hrp("ward", True, "pearson"), X, cv=WalkForward(test_size=21, train_size=252))
    ours = BacktestEngine(252, 21, holding="fixed").run(Xu, HRP(linkage="ward", optimal_ordering=True))
    assert len(ours.returns) == len(pred.returns)
    assert np.abs(ours.returns.to_numpy() - np.asarray(pred.returns)).max() < 1e-12
    w = np.vstack([p.weights for p in pred.portfolios])
    assert np.abs(ours.weights.to_numpy() - w).max() < 1e-12


def test_hrp_ward_ordered_weights_equal_skfolio_on_the_whole_panel():
    "The whole 20-stock panel (383 rebalances, the benchmark's job): HRP ward + optimal leaf ordering on the lean linkage path."
    X = prices_to_returns(load_sp500_dataset())
    pred = cross_val_predict(sk_hrp("ward", True, "pearson"), X, cv=WalkForward(test_size=21, train_size=252))
    ours = BacktestEngine(252, 21, holding="fixed").run(X.set_axis(X.index.tz_localize("UTC")), HRP(linkage="ward", optimal_ordering=True))
    w = np.vstack([p.weights for p in pred.portfolios])
    assert ours.weights.shape == w.shape == (383, 20)
    assert np.abs(ours.weights.to_numpy() - w).max() < 1e-12
    assert np.abs(ours.returns.to_numpy() - np.asarray(pred.returns)).max() < 1e-12


def test_out_of_sample_min_variance_at_least_as_good_as_skfolio(sp500):
    "skfolio solves with an interior-point solver (tolerance ~1e-8); the exact active set is never worse, per window."
    X, Xu = sp500
    pred = cross_val_predict(MeanRisk(), X, cv=WalkForward(test_size=21, train_size=252))
    ours = BacktestEngine(252, 21, holding="fixed").run(Xu, MinVariance())
    for f, p in enumerate(pred.portfolios):
        a, b, _, _ = BacktestEngine(252, 21).folds(len(X))[f]
        cov = np.cov(X.iloc[a:b].to_numpy(), rowvar=False)
        w = ours.weights.iloc[f].to_numpy()
        assert w @ cov @ w <= p.weights @ cov @ p.weights * (1 + 1e-9)
        assert np.abs(w - p.weights).max() < 1e-3
    assert np.abs(ours.returns.to_numpy() - np.asarray(pred.returns)).max() < 1e-4


def test_max_sharpe_and_erc_against_skfolio():
    for seed in range(6):
        X = synthetic_returns(252, 15, n_clusters=3, seed=50 + seed, drift=0.0008)
        mu, cov = X.mean().to_numpy(), X.cov().to_numpy()
        sr = lambda w: w @ mu / np.sqrt(w @ cov @ w)
        ours = MaxSharpe().fit(X).weights_.to_numpy()
        theirs = MeanRisk(objective_function=ObjectiveFunction.MAXIMIZE_RATIO).fit(X).weights_
        assert sr(ours) >= sr(theirs) - 1e-10
        e = ERC().fit(X).weights_.to_numpy()
        rc = e * (cov @ e)
        assert (rc.max() - rc.min()) / rc.mean() < 1e-12
        assert np.abs(e - RiskBudgeting().fit(X).weights_).max() < 1e-4


def _same_rows(ours, theirs):
    "Bitwise: the same positions, the same dtype."
    return ours.dtype == theirs.dtype and ours.tobytes() == theirs.tobytes()


@pytest.mark.parametrize("n, L, H, P", [(8312, 252, 21, 1), (8312, 252, 21, 5), (500, 100, 30, 7), (137, 100, 30, 7),
                                        (136, 100, 30, 7), (600, 60, 1, 59), (131, 100, 30, 1)])
def test_purged_folds_equal_walk_forward(n, L, H, P):
    "BacktestEngine(purge=P) is skfolio's WalkForward(purged_size=P): the same training and test rows, fold for fold."
    for anchored in (False, True):
        ours = BacktestEngine(L, H, purge=P, anchored=anchored).folds(n)
        theirs = list(WalkForward(test_size=H, train_size=L, purged_size=P, expand_train=anchored).split(np.zeros((n, 1))))
        assert len(ours) == len(theirs) == max(0, (n - L - P - H) // H + 1)
        for (a, b, s, e), (tr, te) in zip(ours, theirs):
            assert _same_rows(np.arange(a, b), tr) and _same_rows(np.arange(s, e), te)
            assert s - b == P


def test_purge_zero_is_the_unpurged_walk_forward():
    "purge=0 (the default) is WalkForward(purged_size=0): the same rows, bitwise, and the same number of splits."
    for n, L, H in [(8312, 252, 21), (500, 100, 30)]:
        ours = BacktestEngine(L, H, purge=0).folds(n)
        cv = WalkForward(test_size=H, train_size=L, purged_size=0)
        assert ours == BacktestEngine(L, H).folds(n) and len(ours) == cv.get_n_splits(np.zeros((n, 1)))
        for (a, b, s, e), (tr, te) in zip(ours, cv.split(np.zeros((n, 1)))):
            assert _same_rows(np.arange(a, b), tr) and _same_rows(np.arange(s, e), te)


CPCV_PARAMS = [(12, 3, 2, 0, 0), (12, 3, 2, 1, 0), (12, 3, 2, 0, 1), (14, 3, 2, 1, 1), (100, 6, 2, 3, 4), (101, 6, 3, 0, 5),
               (257, 10, 8, 4, 2), (1000, 10, 8, 0, 0), (64, 5, 2, 5, 0), (90, 7, 4, 2, 3), (2520, 8, 4, 21, 5),
               (8000, 12, 3, 10, 10), (37, 4, 3, 1, 5), (50, 16, 15, 0, 0)]


@pytest.mark.parametrize("n, N, k, P, E", CPCV_PARAMS)
def test_cpcv_folds_equal_skfolio(n, N, k, P, E):
    "Every split's training rows and test groups, and the path ids, are skfolio's CombinatorialPurgedCV's, bitwise."
    ours = CombinatorialPurgedCV(N, k, purged_size=P, embargo_size=E)
    theirs = SkCPCV(n_folds=N, n_test_folds=k, purged_size=P, embargo_size=E)
    assert (ours.n_splits, ours.n_test_paths) == (theirs.n_splits, theirs.n_test_paths)
    assert _same_rows(ours.path_ids(), theirs.get_path_ids())
    splits = list(theirs.split(np.zeros((n, 1))))
    assert len(splits) == ours.n_splits
    for (tr, tests), (str_, stests) in zip(ours.split(n), splits):
        assert _same_rows(tr, str_)
        assert len(tests) == len(stests) and all(_same_rows(a, b) for a, b in zip(tests, stests))
    labels = ours.labels(n).to_numpy()
    assert (labels == theirs.index_train_test_).all()


@pytest.mark.parametrize("n, N, k, P, E", [(12, 3, 2, 2, 1), (12, 3, 2, 3, 0), (20, 4, 2, 0, 4), (5, 6, 2, 0, 0)])
def test_cpcv_refuses_what_skfolio_refuses(n, N, k, P, E):
    "Folds no longer than purged_size + embargo_size + 1 rows: skfolio raises ValueError, we a ValidationError naming n_rows."
    with pytest.raises(ValueError, match="must be smaller than"):
        next(SkCPCV(n_folds=N, n_test_folds=k, purged_size=P, embargo_size=E).split(np.zeros((n, 1))))
    with pytest.raises(ValidationError, match=f"invalid n_rows {n}"):
        next(CombinatorialPurgedCV(N, k, purged_size=P, embargo_size=E).split(n))


@pytest.mark.parametrize("N, k, P, E", [(6, 2, 0, 0), (5, 3, 3, 2)])
def test_cpcv_paths_equal_skfolio_cross_val_predict(sp500, N, k, P, E):
    "Whole CPCV runs: HRP on every split's training rows, each path held fixed without costs, equals skfolio's paths."
    X, Xu = sp500
    X, Xu = X.iloc[:1300, :12], Xu.iloc[:1300, :12]
    cv = SkCPCV(n_folds=N, n_test_folds=k, purged_size=P, embargo_size=E)
    pred = cross_val_predict(sk_hrp("ward", True, "pearson"), X, cv=cv)
    ours = BacktestEngine(holding="fixed").run_cpcv(Xu, HRP(linkage="ward", optimal_ordering=True), CombinatorialPurgedCV(N, k, P, E))
    assert len(pred) == ours.paths.shape[1]
    for p, path in enumerate(pred):
        assert np.abs(ours.paths[p].to_numpy() - np.asarray(path.returns)).max() < 1e-12
