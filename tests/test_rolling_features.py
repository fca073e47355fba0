"""Rolling features computed once over a panel equal the per-window `compute_features` (the plain twin), never read a
row after a window's end, and serve a whole Selection run only when the view's rows are the panel's rows."""
import numpy as np
import pandas as pd
import pytest

from tradingview_scraper.core import LookAheadError
from tradingview_scraper.data.loader import PointInTimeView, hold_pending
from tradingview_scraper.pipelines.base import position_returns, toy_market
from tradingview_scraper.pipelines.features import (ROLLING_FEATURES, FeatureParams, FeaturePanel, rolling_features,
                                                    rolling_features_reference)
from tradingview_scraper.pipelines.selection import SelectionPipeline

from helpers import CountingPanel

TOL = 1e-9


def _panel(seed: int, T: int = 420, N: int = 24) -> np.ndarray:
    "Fat-tailed returns with gaps, late listings, delistings, −100% bars, returns > 1, constant and all-zero columns."
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_t(3, size=(T, N)) * rng.uniform(0.005, 0.04, N), -0.95)
    x[rng.random((T, N)) < rng.uniform(0, 0.15, N)] = np.nan                  # gaps, a different density per column
    x[:rng.integers(T // 4, T), 0] = np.nan                                      # late listing
    x[:T - 30, 1] = np.nan                                                       # listed 30 rows before the end
    x[rng.integers(T // 2, T):, 2] = np.nan                                      # delisting
    x[rng.integers(0, T, 3), 3] = -1.0                                           # ruin bars
    x[rng.integers(0, T, 4), 4] = rng.uniform(1.0, 3.0, 4)                       # > +100%: the SHORT stream clips at 1
    x[:, 5] = 0.0                                                                # all zeros
    x[:, 6] = 0.03125                                                            # constant (dyadic: the reference is exact)
    x[100:300, 7] = 0.0                                                          # a stale stretch
    x[:, 8] = np.nan                                                             # empty
    return x


def _ends(T: int, rng) -> np.ndarray:
    return np.unique(np.r_[-1, 0, 1, 2, 3, rng.integers(0, T, 40), T - 1])


def _gap(got: dict, want: dict) -> float:
    worst = 0.0
    for f in ROLLING_FEATURES:
        a, b = got[f], want[f]
        assert a.shape == b.shape and a.dtype == np.float64, f
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f)
        ok = ~np.isnan(b)
        worst = max(worst, float((np.abs(a - b)[ok] / np.maximum(1.0, np.abs(b[ok]))).max(initial=0.0)))
    return worst


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("window", [252, 40, 5, 2000])
def test_rolling_equals_reference(seed, window):
    x = _panel(seed)
    rng = np.random.default_rng(seed + 100)
    ends = _ends(len(x), rng)
    params = FeatureParams(entropy_order=int(rng.integers(2, 5)))
    for short in (False, True):
        xs = position_returns(x, short)
        assert _gap(rolling_features(xs, ends, window, params), rolling_features_reference(xs, ends, window, params)) <= TOL


def test_exact_cases():
    x = _panel(1)
    x[:, 9] = 0.001                                                              # constant, not dyadic
    x[200:300, 10] = 0.007                                                       # a constant stretch
    ends = np.arange(-1, len(x), 17)
    r = rolling_features(x, ends, 60)
    live = ends >= 0
    for j in (5, 6, 9):
        assert set(r["volatility"][live, j]) == {0.0}                            # constant: exactly 0, as min == max
    inside = (ends - 59 >= 200) & (ends < 300)
    assert inside.any() and set(r["volatility"][inside, 10]) == {0.0}
    assert (r["volatility"][~inside & live, 10] > 0).all()
    assert np.isnan(r["momentum"][:, 8]).all() and (r["history"][:, 8] == 0).all()
    assert not any(np.signbit(r[f][r[f] == 0]).any() for f in ROLLING_FEATURES)                # never −0.0
    with_ruin = [k for k, e in enumerate(ends) if np.any(x[max(0, e - 59):e + 1, 3] == -1.0)]
    assert with_ruin and (r["momentum"][with_ruin, 3] == -1.0).all()


@pytest.mark.parametrize("garbage", ["nan", "inf", "huge", "mixed"])
def test_causality_bitwise(garbage):
    x = _panel(2)
    rng = np.random.default_rng(7)
    ends = np.arange(-1, len(x), 11)
    clean = {d: rolling_features(position_returns(x, d), ends, 60) for d in (False, True)}
    for k in rng.choice(len(ends), 8, replace=False):
        dirty = x.copy()
        tail = dirty[ends[k] + 1:]
        pick = {"nan": [np.nan], "inf": [np.inf, -np.inf], "huge": [1e300, -1e300], "mixed": [np.nan, np.inf, -7.0, 1e12]}
        tail[:] = rng.choice(pick[garbage], size=tail.shape)
        for d in (False, True):
            got = rolling_features(position_returns(dirty, d), ends, 60)
            for f in ROLLING_FEATURES:
                assert got[f][:k + 1].tobytes() == clean[d][f][:k + 1].tobytes(), (k, f, d)


class PoisonedPanel(CountingPanel):
    "A panel whose served momentum is off by +1: a run that reads it shows it, a run that falls back does not."
    def at(self, *args, **kwargs):
        r = super().at(*args, **kwargs)
        return None if r is None else {**r, "momentum": r["momentum"] + 1.0}


@pytest.fixture(scope="module")
def market():
    m = toy_market(n_assets=40, n_days=700, n_clusters=4, seed=21)
    cands = pd.DataFrame({"symbol": list(m.columns), "direction": np.where(np.arange(40) % 3 == 0, "SHORT", "LONG"),
                          "logic": "hold", "value_traded": np.geomspace(1e5, 1e9, 40)})
    return m, cands


def _same_run(a, b):
    assert (a.winners, a.stage, a.reason, a.directions, a.logics) == (b.winners, b.stage, b.reason, b.directions, b.logics)
    assert list(a.features.index) == list(b.features.index) and a.features.dtypes.equals(b.features.dtypes)
    np.testing.assert_allclose(a.features.to_numpy(), b.features.to_numpy(), rtol=TOL, atol=1e-12, equal_nan=True)
    assert a.clusters.equals(b.clusters)


def test_selection_with_panel_matches_per_fold(market):
    m, cands = market
    sel = SelectionPipeline(universe={"window": 126}, vetoes={"min_history": 60, "min_value_traded": 1e6},
                            htr={"floor": 6, "max_selected": 10})
    times = m.index[np.arange(130, 700, 21)]
    panel = CountingPanel(m, times, 126, sel.params.features)
    shorts = 0
    for t in times:
        fast = sel.run(PointInTimeView(m, t, name="returns", features=panel), cands)
        _same_run(fast, sel.run(PointInTimeView(m, t, name="returns"), cands))
        shorts += sum(d == "SHORT" for d in fast.directions.values())
    assert panel.served == len(times) and shorts > 0
    poisoned = PoisonedPanel(m, times[:3], 126, sel.params.features)           # the stage really reads the panel
    for t in times[:3]:
        plain = sel.run(PointInTimeView(m, t, name="returns"), cands).features
        read = sel.run(PointInTimeView(m, t, name="returns", features=poisoned), cands).features
        np.testing.assert_allclose(read["momentum"], plain["momentum"] + 1.0, rtol=TOL, atol=1e-12)
    # a fold view that starts later but holds the whole window is served too (the engine's warm-up ≥ window)
    a = int(m.index.searchsorted(times[10]))
    sel.run(PointInTimeView(m.iloc[a - 126:], times[10], features=panel), cands)
    assert panel.served == len(times) + 1


def test_fallbacks_are_not_served(market):
    m, cands = market
    sel = SelectionPipeline(htr={"floor": 5})
    t = m.index[500]
    panel = PoisonedPanel(m, [t], 252, sel.params.features)                    # served values would show (+1)
    confirmed = pd.DataFrame({"symbol": [m.columns[4]], "ts": [m.index[480]], "confirmed_at": [m.index[520]]})
    held = hold_pending(m, confirmed, t)                                       # one bar held pending at t
    for view in (PointInTimeView(held, t, features=panel),                     # other values
                 PointInTimeView(m.iloc[300:], t, features=panel),             # fewer rows than the window
                 PointInTimeView(m, m.index[501], features=panel),             # not a panel time
                 PointInTimeView(m.set_axis(m.index + pd.Timedelta(hours=1)), t, features=panel)):  # other timestamps
        plain = PointInTimeView(view.frame, view.t)
        _same_run(sel.run(view, cands), sel.run(plain, cands))
    assert panel.served == 0
    other = SelectionPipeline(features={"entropy_order": 4}, htr={"floor": 5})  # other parameters: not served
    other.run(PointInTimeView(m, t, features=panel), cands)
    assert panel.served == 0
    served = sel.run(PointInTimeView(m, t, features=panel), cands).features
    assert panel.served == 1
    plain = sel.run(PointInTimeView(m, t), cands).features
    np.testing.assert_allclose(served["momentum"], plain["momentum"] + 1.0, rtol=TOL, atol=1e-12)


def test_panel_refuses_the_future(market):
    m, _ = market
    panel = FeaturePanel(m, m.index[[300, 400]], 252)
    view = PointInTimeView(m, m.index[300])
    with pytest.raises(LookAheadError, match="at or after the decision time"):
        panel.at(view, list(m.columns[:3]), False, t=m.index[400])
    assert panel.at(view, list(m.columns[:3]), False) is not None
