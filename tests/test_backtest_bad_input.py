"""Bad input end to end: singular and near-singular covariances, NaN inside windows, listings and delistings mid-window,
zero-variance assets, a window longer than the history, caps that cannot hold the budget, garbage values. Every case has
an explicit outcome — recorded fallbacks or a typed error — and never NaN weights or a crash."""
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError as PydanticValidationError

from tradingview_scraper.backtest.engine import RETURNS_RULE, BacktestEngine, BacktestParams, NotReturnsError
from tradingview_scraper.backtest.metrics import prices_to_returns
from tradingview_scraper.backtest.reference import reference_backtest, synthetic_returns
from tradingview_scraper.core import ContractError, ValidationError
from tradingview_scraper.pipelines.allocation import (ERC, HRP, AllocationPipeline, EqualWeight, InverseVolatility, MaxSharpe,
                                                      MinVariance, NoUsableAssetsError)

ALLOCATORS = [EqualWeight(), InverseVolatility(), MinVariance(), MinVariance(long_only=False), MaxSharpe(), ERC(), HRP()]


def nasty_panel():
    p = synthetic_returns(700, 12, n_clusters=2, seed=31, gap_share=0.02, listings={"EX:A10": 300}, delistings={"EX:A11": 450}).copy()
    p["EX:A2"] = p["EX:A1"]                                   # duplicate: singular covariance
    p["EX:A3"] = p["EX:A0"] + 1e-11                           # near-duplicate
    p.iloc[:, 4] = 0.0                                        # zero variance (a stale series)
    p.iloc[200:260, 5] = np.nan                               # a long gap inside windows
    p.iloc[520:560] = np.nan                                  # a market-wide outage (no asset has values)
    return p


@pytest.mark.parametrize("alloc", ALLOCATORS, ids=repr)
def test_every_window_has_valid_weights_and_explicit_outcomes(alloc):
    p = nasty_panel()
    res = BacktestEngine(126, 21, cost_bps=5).run(p, alloc)
    w = res.weights.to_numpy()
    assert np.isfinite(w).all() and np.isfinite(res.returns).all()
    sums = w.sum(axis=1)
    cash = [d for d, s, _ in res.fallbacks if s == "decision"]
    for d, total in zip(res.weights.index, sums):
        if d in cash: assert total == 0.0                                             # nothing usable: cash, recorded
        elif alloc.long_only: assert abs(total - 1) < 1e-9 and (res.weights.loc[d] >= 0).all()
    assert cash, "the outage must make at least one window hold cash"
    assert all("NoUsableAssetsError" in why for d, s, why in res.fallbacks if s == "decision")
    assert (res.weights["EX:A4"] == 0).all() and any("zero variance" in e.get("EX:A4", "") for e in res.excluded.values())
    if alloc.__class__ in (MinVariance, MaxSharpe):
        assert any(s in ("requested", "shrinkage") and "singular" in why for _, s, why in res.fallbacks)
    ref = reference_backtest(p, alloc, train=126, test=21, cost_bps=5)
    assert np.abs(ref.weights.to_numpy() - w).max() < 1e-10 and np.abs(ref.returns.to_numpy() - res.returns.to_numpy()).max() < 1e-10


def test_window_longer_than_history():
    p = synthetic_returns(200, 4, seed=1)
    with pytest.raises(ValidationError, match="at least train \\+ test = 273 rows"): BacktestEngine(252, 21).run(p, EqualWeight())
    with pytest.raises(ValidationError, match="at least train"): reference_backtest(p, EqualWeight(), train=252, test=21)


def test_caps_that_cannot_hold_the_budget_leave_cash():
    p = synthetic_returns(400, 3, seed=2)
    res = BacktestEngine(126, 21).run(p, AllocationPipeline(ERC(), max_weight=0.25))
    assert np.allclose(res.weights.sum(axis=1), 0.75) and (res.weights.to_numpy() <= 0.25 + 1e-12).all()
    assert all(s == "caps" and "cash" in why for _, s, why in res.fallbacks)
    mv = BacktestEngine(126, 21).run(p, MinVariance(max_weight=0.25))
    assert np.allclose(mv.weights.to_numpy(), 0.25) and all("cash" in why for _, _, why in mv.fallbacks)


def test_garbage_values_do_not_crash():
    p = synthetic_returns(400, 5, seed=4).copy()
    p.iloc[250:260, 1] = 1e12; p.iloc[300, 2] = np.inf; p.iloc[301, 3] = -np.inf
    for alloc in ALLOCATORS:
        res = BacktestEngine(126, 21).run(p, alloc)
        assert np.isfinite(res.weights.to_numpy()).all()


def test_malformed_inputs_are_refused_with_typed_errors():
    p = synthetic_returns(300, 3, seed=0)
    eng = BacktestEngine(126, 21)
    with pytest.raises(ContractError, match=r'without a time zone.*\.tz_localize\("UTC"\)'): eng.run(p.tz_localize(None), EqualWeight())
    with pytest.raises(ContractError, match=r'Asia/Tokyo.*\.tz_convert\("UTC"\)'): eng.run(p.tz_convert("Asia/Tokyo"), EqualWeight())
    with pytest.raises(ContractError, match="strictly increasing"): eng.run(p.iloc[::-1], EqualWeight())
    with pytest.raises(ContractError, match="unique asset names"): eng.run(p.set_axis(["EX:A", "EX:A", "EX:B"], axis=1), EqualWeight())
    with pytest.raises(ContractError, match="numeric"): eng.run(p.assign(**{"EX:A0": "x"}), EqualWeight())
    with pytest.raises(ValidationError, match="an Allocator"): eng.run(p, "min_variance")
    with pytest.raises(NoUsableAssetsError): EqualWeight().fit(p.iloc[:50] * np.nan)
    for bad in (dict(train=1), dict(test=0), dict(lag=-1), dict(cost_bps=-1), dict(holding="hold"), dict(step=0), dict(n_batches=0)):
        with pytest.raises(ValidationError): BacktestEngine(**bad)


def test_prices_are_refused_and_the_fix_is_named():
    "Prices passed as returns once reported a Sharpe of 14.7 and an annual return of 32,836: now a typed error, input untouched."
    p = synthetic_returns(400, 4, seed=6)
    prices = 100 * (1 + p).cumprod()
    before = prices.copy()
    with pytest.raises(NotReturnsError, match=r"invalid returns columns \(median\) \{'EX:A0': .*prices_to_returns\(prices\)"):
        BacktestEngine(126, 21).run(prices, EqualWeight())
    assert prices.equals(before)
    fixed = BacktestEngine(126, 21).run(prices_to_returns(prices), EqualWeight())
    direct = BacktestEngine(126, 21).run(p.iloc[1:], EqualWeight())
    assert np.abs(fixed.returns.to_numpy() - direct.returns.to_numpy()).max() < 1e-12
    assert abs(fixed.metrics["sharpe"]) < 5


@pytest.mark.parametrize("make, where", [
    (lambda p: p * 100, "percent units"),                                        # −3.2 meaning −3.2%
    (lambda p: np.log1p(p).assign(**{"EX:A1": np.log(0.2)}), "log returns"),     # log returns fall below −1 (−80% is −1.61)
    (lambda p: p.assign(**{"EX:A2": -np.minimum(p["EX:A2"] * 300, 1e6)}), "below −1"),   # a stream inverted with no cap
])
def test_values_below_minus_one_are_refused(make, where):
    p = synthetic_returns(300, 3, seed=7)
    with pytest.raises(NotReturnsError, match=f"return of 'EX:A.' at .*expected a simple return ≥ −1.*{where}"):
        BacktestEngine(126, 21).run(make(p), EqualWeight())


def test_legitimate_returns_are_never_refused():
    "The other side of every boundary of RETURNS_RULE."
    p = synthetic_returns(300, 3, seed=8)
    run = lambda frame: BacktestEngine(126, 21).run(frame, EqualWeight())
    shorts = -np.minimum(p + 0.6 * (np.arange(300) % 50 == 0)[:, None] * 5, 1.0)      # SHORT streams −min(R, 1), some exactly −1
    assert (shorts == -1.0).any().any()
    run(shorts)
    run(p.assign(**{"EX:A0": np.where(np.arange(300) % 7 == 0, -1.0, 0.01)}))          # total losses
    crypto = synthetic_returns(300, 3, seed=9, vol=0.15, dof=2.2).copy()
    crypto.iloc[150, 1] = 24.0                                                          # +2400% in a day
    assert crypto.min().min() >= -1.0 and crypto.max().max() > 1
    run(crypto)
    run(p.assign(**{"EX:A2": 0.0002}))                                                  # cash-like: all positive, tiny
    run(p.assign(**{"EX:A2": 1.0}))                                                     # median exactly 1
    run(p.assign(**{"EX:A2": [np.nan] * 291 + [4.0] * 9}))                              # too few values to call prices
    run(p.assign(**{"EX:A2": np.where(np.arange(300) == 5, -0.01, 50.0)}))              # one loss: not prices
    run(p.assign(**{"EX:A1": [np.inf, -np.inf] + [np.nan] * 298}))                       # ±inf are missing values
    with pytest.raises(NotReturnsError): run(p.assign(**{"EX:A0": np.where(np.arange(300) == 9, np.nextafter(-1.0, -2.0), 0.01)}))
    with pytest.raises(NotReturnsError): run(p.assign(**{"EX:A2": [np.nan] * 290 + [4.0] * 10}))
    with pytest.raises(NotReturnsError): run(p.assign(**{"EX:A2": np.nextafter(1.0, 2.0)}))
    assert "≥ −1" in RETURNS_RULE and "median above 1" in RETURNS_RULE


@pytest.mark.parametrize("name", ["train", "test", "step", "purge", "warmup", "periods_per_year", "n_batches"])
def test_absurd_counts_are_refused_by_name(name):
    "A count numpy cannot hold (10**30 once escaped as OverflowError from the fold arithmetic) is a ValidationError naming it."
    with pytest.raises(ValidationError, match=f"invalid {name} 1000000000000000000000000000000: expected an integer ≥ . and ≤ 2147483647"):
        BacktestEngine(**{name: 10**30})
    with pytest.raises(ValidationError, match=f"invalid {name} 2147483648"): BacktestEngine(**{name: 2**31})


def test_bars_before_1677_run_like_any_others():
    "Timestamps outside the nanosecond range (a seconds-unit index) go through the whole engine path, bitwise as modern dates."
    p = synthetic_returns(300, 4, seed=10)
    old = p.set_axis(pd.date_range("1500-01-01", periods=300, freq="D", tz="UTC", unit="s"))
    a, b = BacktestEngine(126, 21, cost_bps=5).run(old, HRP()), BacktestEngine(126, 21, cost_bps=5).run(p, HRP())
    assert a.returns.index[0] == old.index[126] and a.returns.to_numpy().tobytes() == b.returns.to_numpy().tobytes()
    assert reference_backtest(old, HRP(), train=126, test=21, cost_bps=5).returns.to_numpy().tobytes() == \
        reference_backtest(p, HRP(), train=126, test=21, cost_bps=5).returns.to_numpy().tobytes()


BOUNDED = [n for n, f in BacktestParams.model_fields.items() if n != "lag" and any(hasattr(m, "le") for m in f.metadata)]


def _bounds(name):
    meta = BacktestParams.model_fields[name].metadata
    return next(m.ge for m in meta if hasattr(m, "ge")), next(m.le for m in meta if hasattr(m, "le"))


@pytest.mark.parametrize("name", BOUNDED)
def test_engine_and_params_share_every_bound(name):
    "One declaration: the engine accepts and refuses exactly what BacktestParams does, on both sides of every bound."
    lo, hi = _bounds(name)
    step = 1e-9 if isinstance(hi, float) or name == "cost_bps" else 1
    extra = {"test": 2**31 - 1} if name == "step" else {}          # a step beyond test would not change the lag bound
    for value, ok in ((lo, True), (hi, True), (lo - step, False), (hi + step, False)):
        kw = {name: value, **extra}
        if ok:
            assert getattr(BacktestParams(**kw), name) == value
            assert getattr(BacktestEngine(**kw).params, name) == value
        else:
            with pytest.raises(PydanticValidationError): BacktestParams(**kw)
            with pytest.raises(ValidationError, match=f"invalid {name} "): BacktestEngine(**kw)


@pytest.mark.parametrize("test, step", [(21, None), (21, 5), (5, 21), (1, None)])
def test_the_lag_rule_is_stated_once(test, step):
    "lag < min(step, test): the model, the engine and the reference refuse the same first lag, and accept the one before."
    limit = min(step or test, test)
    assert BacktestParams(test=test, step=step).max_lag == limit - 1
    p = synthetic_returns(60, 2, seed=0)
    BacktestParams(test=test, step=step, lag=limit - 1)
    BacktestEngine(10, test, step=step, lag=limit - 1)
    reference_backtest(p, EqualWeight(), train=10, test=test, step=step, lag=limit - 1)
    with pytest.raises(PydanticValidationError, match="must be smaller than min"): BacktestParams(test=test, step=step, lag=limit)
    with pytest.raises(ValidationError, match=f"invalid lag {limit}: expected an integer ≥ 0 and ≤ {limit - 1}"):
        BacktestEngine(10, test, step=step, lag=limit)
    with pytest.raises(ValidationError, match=f"invalid lag {limit}"):
        reference_backtest(p, EqualWeight(), train=10, test=test, step=step, lag=limit)


def test_from_config_builds_the_engine_of_a_profile_section():
    "A profile's backtest section (strings from TVS_* included) builds the engine the keywords build; get_params rebuilds it."
    section = BacktestParams(train="126", test=21, cost_bps="5", lag=1, periods_per_year=252, holding="fixed")
    eng = BacktestEngine.from_config(section)
    assert eng.params == section and eng.get_params() == BacktestEngine(126, 21, cost_bps=5.0, lag=1, holding="fixed").get_params()
    p = synthetic_returns(400, 4, seed=3)
    a, b = eng.run(p, HRP()), BacktestEngine(**eng.get_params()).run(p, HRP())
    assert a.returns.to_numpy().tobytes() == b.returns.to_numpy().tobytes()
    with pytest.raises(ValidationError, match="periods_per_year None.*read it from the data's calendar"):
        BacktestEngine.from_config(BacktestParams())
