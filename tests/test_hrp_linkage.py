"""The lean linkage path of HRP (scipy's compiled routines called directly and our own optimal-leaf-ordering kernel,
nbs/34_solvers.ipynb) against scipy's public `linkage`: the same linkage matrix bit for bit for every method, with and
without optimal leaf ordering, on random correlation distances with and without ties; the ordering kernel deciding
most windows itself and leaving close calls to scipy; the same HRP weights bit for bit as the public path
(monkeypatched in); the fallback to the public API; and the cached bisection plan against the textbook recursion."""
import numpy as np
import pytest
from scipy.cluster import hierarchy as sch
from scipy.spatial.distance import squareform

from tradingview_scraper.backtest.engine import BacktestEngine
from tradingview_scraper.backtest.reference import synthetic_returns
from tradingview_scraper.core import ValidationError
from tradingview_scraper.pipelines import solvers
from tradingview_scraper.pipelines.allocation import HRP
from tradingview_scraper.pipelines.solvers import (LINKAGES, _hrp_bisection, _hrp_distance, _hrp_order, _leaves,
                                                   linkage_matrix)


def distances(n, seed, ties):
    "Condensed Pearson distances of n random assets; `ties`: duplicated columns and distances rounded to a coarse grid."
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((40 + 3 * n, n)) + rng.standard_normal((40 + 3 * n, 1))
    if ties and n >= 4: X[:, n // 2:n // 2 + 2] = X[:, :2]
    y = _hrp_distance(np.corrcoef(X.T), "pearson")[np.triu_indices(n, 1)]
    return np.round(y, 2) if ties else y


@pytest.mark.parametrize("method", LINKAGES)
@pytest.mark.parametrize("ordering", [False, True])
@pytest.mark.parametrize("ties", [False, True])
def test_linkage_matrix_is_scipys_bit_for_bit(method, ordering, ties):
    for seed, n in enumerate([2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 16, 20, 21, 31, 32, 33, 50, 64, 97, 150]):
        y = distances(n, seed, ties)
        ours = linkage_matrix(y, n, method, ordering)
        ref = sch.linkage(y, method=method, optimal_ordering=ordering)
        assert ours.dtype == ref.dtype and ours.shape == ref.shape
        assert ours.tobytes() == ref.tobytes(), (method, ordering, ties, n)
        assert (_leaves(ours, n) == sch.leaves_list(ref)).all()


def test_inputs_are_not_written_and_other_layouts_are_accepted():
    y = distances(12, 1, False)
    y.flags.writeable = False
    ref = sch.linkage(y.copy(), method="ward", optimal_ordering=True)
    assert linkage_matrix(y, 12, "ward", True).tobytes() == ref.tobytes()
    strided = np.repeat(y, 2)[::2]                          # not contiguous, and a list
    assert linkage_matrix(strided, 12, "ward", True).tobytes() == ref.tobytes()
    assert linkage_matrix(y.tolist(), 12, "ward", True).tobytes() == ref.tobytes()


@pytest.mark.parametrize("bad, n, match", [(np.array([0.1, np.nan, 0.3]), 3, "finite"), (np.array([0.1, np.inf, 0.3]), 3, "finite"),
                                           (np.ones(4), 3, r"\(3,\) for n = 3"), (np.ones((3, 1)), 3, r"\(3,\)"),
                                           (np.ones(0), 1, "at least 2"), (np.ones(1), True, "at least 2")])
def test_bad_input_is_refused(bad, n, match):
    with pytest.raises(ValidationError, match=match):
        linkage_matrix(bad, n, "ward", True)
    with pytest.raises(ValidationError, match="single, average, complete, ward"):
        linkage_matrix(np.ones(3), 3, "centroid")


@pytest.mark.parametrize("distance", ["pearson", "absolute", "squared"])
def test_order_is_the_public_scipy_leaf_order(distance):
    "The seriation from a correlation matrix: the upper triangle's distances, clustered and walked as scipy does."
    for seed, n in enumerate([2, 3, 5, 8, 20, 33]):
        rng = np.random.default_rng(100 + seed)
        X = rng.standard_normal((120, n)) + rng.standard_normal((120, 1))
        if n >= 5: X[:, -1] = X[:, 1]
        corr = np.corrcoef(X.T)
        d = _hrp_distance(corr, distance)
        for method in LINKAGES:
            for ordering in (False, True):
                ref = sch.leaves_list(sch.linkage(squareform(d, checks=False), method=method, optimal_ordering=ordering))
                assert (_hrp_order(corr, method, distance, ordering) == ref).all(), (n, method, ordering)


def test_the_lean_path_does_not_go_through_the_public_api(monkeypatch):
    def refuse(*a, **k): raise AssertionError("public scipy API called")
    for name in ("linkage", "optimal_leaf_ordering"): monkeypatch.setattr(sch, name, refuse)
    y = distances(20, 5, False)
    for method in LINKAGES:
        for ordering in (False, True):
            assert linkage_matrix(y, 20, method, ordering).shape == (19, 4)


def test_fallback_to_the_public_api(monkeypatch):
    monkeypatch.setattr(solvers, "_COMPILED", None)
    called = []
    public = solvers._linkage_public
    monkeypatch.setattr(solvers, "_linkage_public", lambda *a: called.append(a[1]) or public(*a))
    for method in LINKAGES:
        y = distances(9, 3, True)
        assert linkage_matrix(y, 9, method, True).tobytes() == sch.linkage(y, method=method, optimal_ordering=True).tobytes()
    assert called == [9] * len(LINKAGES)
    assert solvers._compiled_linkage() is not None          # this scipy has the compiled routines


class _CountingOrdering:
    "Stands in for scipy's compiled ordering module: counts the calls and answers with scipy's public ordering."
    def __init__(self): self.calls = 0
    def optimal_leaf_ordering(self, Z, y):
        self.calls += 1
        return sch.optimal_leaf_ordering(Z, y)


def counting_ordering(monkeypatch):
    counter = _CountingOrdering()
    h, _, codes = solvers._COMPILED
    monkeypatch.setattr(solvers, "_COMPILED", (h, counter, codes))
    return counter


@pytest.mark.parametrize("method", LINKAGES)
def test_the_ordering_kernel_decides_most_windows_itself_and_is_scipys_bit_for_bit(method, monkeypatch):
    counter = counting_ordering(monkeypatch)
    rng, windows = np.random.default_rng(17), 0
    for n in list(range(2, 41)) + [48, 57, 64]:
        for _ in range(3):
            X = rng.standard_normal((60 + 3 * n, n)) + rng.standard_normal((60 + 3 * n, 1)) * rng.random()
            y = _hrp_distance(np.corrcoef(X.T), "pearson")[np.triu_indices(n, 1)]
            Z = sch.linkage(y, method)
            assert solvers._optimal_ordering(Z, y, n).tobytes() == sch.optimal_leaf_ordering(Z, y).tobytes(), (method, n)
            windows += 1
    assert counter.calls <= windows // 10, (counter.calls, windows)   # scipy decided at most one window in ten


def test_close_calls_and_odd_distances_are_left_to_scipy(monkeypatch):
    counter = counting_ordering(monkeypatch)
    y = distances(12, 4, True)                              # duplicated assets, distances on a 0.01 grid: ties
    Z = sch.linkage(y, "ward")
    assert solvers._olo_flips(Z, y, 12) is None
    assert linkage_matrix(y, 12, "ward", True).tobytes() == sch.linkage(y, "ward", optimal_ordering=True).tobytes()
    assert counter.calls == 1
    y = distances(12, 5, False)
    Z = sch.linkage(y, "average")
    assert solvers._olo_flips(Z, y, 12) is not None
    assert solvers._olo_flips(Z, y - 1.0, 12) is None       # negative distances
    assert solvers._olo_flips(Z, y * 2.0 ** 27, 12) is None  # paths near scipy's 2^30 start value
    big = distances(solvers._OLO_MAX + 1, 6, False)         # beyond the kernel's size: scipy orders it
    n = solvers._OLO_MAX + 1
    assert linkage_matrix(big, n, "ward", True).tobytes() == sch.linkage(big, "ward", optimal_ordering=True).tobytes()
    assert counter.calls == 2


def four_leaves(d12):
    "Pairs (0, 1) and (2, 3) at 0.1; the root's best path 1-0-2-3 costs 0.5, the path 0-1-2-3 costs 0.2 + d12."
    D = np.array([[0, 0.1, 0.3, 0.6], [0.1, 0, d12, 0.9], [0.3, d12, 0, 0.1], [0.6, 0.9, 0.1, 0]])
    return squareform(D, checks=False)


@pytest.mark.parametrize("gap, decided", [(0.2, True), (1e-4, True), (1e-6, False), (0.0, False)])
def test_a_close_call_is_refused_not_guessed(gap, decided):
    "The root's two best end pairs differ by `gap`: below the kernel's error bound (~4e-6 here) it leaves the call to scipy."
    y = four_leaves(0.3 + gap)
    Z = sch.linkage(y, "average")
    assert Z[:, :2].tolist() == [[0, 1], [2, 3], [4, 5]]
    flips = solvers._olo_flips(Z, y, 4)
    assert (flips is not None) == decided
    assert solvers._optimal_ordering(Z, y, 4).tobytes() == sch.optimal_leaf_ordering(Z, y).tobytes()
    if decided: assert flips.tolist() == [True, False, False]          # 1-0 | 2-3: only the pair (0, 1) turns


@pytest.mark.parametrize("linkage", LINKAGES)
@pytest.mark.parametrize("ordering", [False, True])
def test_hrp_weights_equal_the_public_scipy_path_bit_for_bit(linkage, ordering, monkeypatch):
    Xs = [synthetic_returns(252, n, n_clusters=3, seed=n) for n in (2, 3, 7, 20, 45)]
    Xs.append(Xs[3].assign(dup=Xs[3].iloc[:, 0]))           # a duplicated asset: tied distances
    alloc = HRP(linkage=linkage, optimal_ordering=ordering)
    lean = [alloc.fit(X).weights_.to_numpy() for X in Xs]
    monkeypatch.setattr(solvers, "_linkage", solvers._linkage_public)
    public = [alloc.fit(X).weights_.to_numpy() for X in Xs]
    for a, b in zip(lean, public): assert a.tobytes() == b.tobytes()


def test_walk_forward_hrp_equals_the_public_scipy_path_bit_for_bit(monkeypatch):
    X = synthetic_returns(1500, 20, n_clusters=4, seed=11)
    engine, alloc = BacktestEngine(252, 21, holding="fixed"), HRP(linkage="ward", optimal_ordering=True)
    lean = engine.run(X, alloc)
    monkeypatch.setattr(solvers, "_linkage", solvers._linkage_public)
    public = engine.run(X, alloc)
    assert len(lean.weights) == 59
    assert lean.weights.to_numpy().tobytes() == public.weights.to_numpy().tobytes()
    assert lean.returns.to_numpy().tobytes() == public.returns.to_numpy().tobytes()


def bisection_reference(Q, items):
    "Textbook recursive bisection (left half = first ⌊n/2⌋ items): {asset: weight}."
    if len(items) == 1: return {items[0]: 1.0}
    left, right = items[:len(items) // 2], items[len(items) // 2:]
    def cluster_var(c):
        iv = 1 / np.diag(Q)[c]
        v = iv / iv.sum()
        return v @ Q[np.ix_(c, c)] @ v
    vl, vr = cluster_var(left), cluster_var(right)
    out = {k: x * (1 - vl / (vl + vr)) for k, x in bisection_reference(Q, left).items()}
    return out | {k: x * vl / (vl + vr) for k, x in bisection_reference(Q, right).items()}


def test_bisection_equals_the_textbook_recursion():
    for n in [1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 40, 63, 64, 65, 100]:
        rng = np.random.default_rng(n)
        X = synthetic_returns(300, n, n_clusters=3, seed=n).to_numpy()
        Q = np.cov(X, rowvar=False).reshape(n, n)
        order = rng.permutation(n)
        ref = bisection_reference(Q, list(order))
        ours = _hrp_bisection(Q, order)
        assert np.abs(ours - [ref[i] for i in range(n)]).max() < 1e-14
        assert abs(ours.sum() - 1) < 1e-14


def test_bisection_refuses_a_zero_variance():
    with np.errstate(all="ignore"), pytest.raises(solvers._Failed, match="not positive"):
        _hrp_bisection(np.zeros((3, 3)), np.arange(3))


def test_order_refuses_non_finite_correlations():
    with pytest.raises(solvers._Failed, match="non-finite"):
        _hrp_order(np.array([[1.0, np.nan, 0.0], [np.nan, 1.0, 0.0], [0.0, 0.0, 1.0]]), "ward", "pearson", True)
