"""Today's portfolio carried day to day reproduces the backtest: at the engine's own decision dates, the target is the
backtest's row bitwise, the current holdings are the previous run's target drifted (found by `previous_portfolio` through
the runs' status records), and the trade list's turnover and estimated cost are the engine's turnover and costs."""
import json

import numpy as np
import pandas as pd
import pytest

from tradingview_scraper import portfolio as P
from tradingview_scraper.backtest.engine import BacktestEngine, simulate
from tradingview_scraper.data.sample import load_sample_prices
from tradingview_scraper.orchestration.runner import STATUS_FILE
from tradingview_scraper.pipelines.allocation import HRP, MinVariance

RET = load_sample_prices().pct_change().iloc[1:].loc["2012":"2014"]
_gaps = np.random.default_rng(5).random(RET.shape) < 0.02          # missing bars: a held position earns 0 on them
RET = RET.mask(_gaps)


def _status(run_dir, status="succeeded", profile="canary", ended="2030-01-01T00:00:00+00:00"):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / STATUS_FILE).write_text(json.dumps({"run_id": run_dir.name, "profile": profile, "status": status, "ended_at": ended, "steps": {}}))


@pytest.mark.parametrize("alloc", [MinVariance(budget=0.8), HRP()], ids=["min_variance_80pct", "hrp"])
def test_daily_cycle_reproduces_the_backtest(tmp_path, alloc):
    engine = BacktestEngine(train=252, test=21, cost_bps=7.5)
    run = engine.run(RET, alloc)
    dates = run.weights.index[:10]
    runs = tmp_path / "runs"
    for k, t in enumerate(dates):
        past = RET[RET.index < t]
        prev = P.previous_portfolio(runs, "canary", before=t)
        assert (prev is None) == (k == 0) and (k == 0 or prev[0] == f"day-{k - 1:02d}")
        held = P.carried_holdings(prev, "alloc", RET, t)           # the whole history: only rows before t apply
        target = P.decide_today(engine, past, alloc, t=t)
        assert target.weights.to_numpy().tobytes() == run.weights.loc[t].to_numpy().tobytes()
        trades = P.trade_list(held, target, allocator="alloc", t=t, cost_bps=engine.cost_bps)
        # the trade list is exactly target − drifted holdings, row by row
        tab = trades.table.set_index("symbol")
        cur = held.weights.reindex(tab.index, fill_value=0.0)
        assert (tab["current_weight"] == cur).all() and (tab["delta"] == tab["target_weight"] - tab["current_weight"]).all()
        assert (tab["target_weight"] == target.weights.reindex(tab.index, fill_value=0.0)).all()
        # and costs what the backtest charged on that day
        assert abs(trades.turnover - run.turnover.loc[t]) < 1e-12, (k, trades.turnover, run.turnover.loc[t])
        assert abs(trades.est_cost - run.costs.loc[t]) < 1e-15
        if k:      # the drifted holdings are the engine's: one holding period of `simulate`
            i0, i1 = RET.index.get_loc(dates[k - 1]), RET.index.get_loc(t)
            w0 = run.weights.loc[dates[k - 1]].to_numpy()
            paid = run.costs.loc[dates[k - 1]] / np.abs(w0).sum() * 1e4     # the rate that charges, from cash, what that trade paid
            sim = simulate(RET.to_numpy(), np.array([i0]), w0[None, :], i0, i1, "drift", paid)   # costs are paid from cash
            assert np.abs(held.weights.reindex(RET.columns, fill_value=0.0).to_numpy() - sim.holdings).max() < 1e-12
            assert held.source == f"previous_run:day-{k - 1:02d}"
        # the runs end in reverse order of their decision times: ordering is by the data's time, not the clock
        _status(runs / f"day-{k:02d}", ended=f"2030-01-{28 - k:02d}T00:00:00+00:00")
        P.write_portfolio(runs / f"day-{k:02d}", target, trades)


def test_previous_portfolio_skips_what_cannot_be_trusted(tmp_path, caplog):
    runs = tmp_path / "runs"
    t0, t1 = RET.index[300], RET.index[310]
    w = pd.Series({"NYSE:KO": 0.5})
    def write(name, t, **status):
        _status(runs / name, **status)
        P.write_portfolio(runs / name, P.Decision(t, w), P.trade_list(P.cash_holdings(), w, allocator="erc", t=t, cost_bps=0))
    write("good", t0)
    write("interrupted", t1, status="running")          # no lock held: read_status says failed (interrupted)
    write("failed", t1, status="failed")
    write("other-profile", t1, profile="production")
    write("damaged-status", t1)
    (runs / "damaged-status" / STATUS_FILE).write_text("{not json")
    write("damaged-target", t1)
    (runs / "damaged-target" / "portfolio" / "target_erc.parquet").write_bytes(b"garbage")
    write("later", t1 + pd.Timedelta(days=30))
    (runs / "link").symlink_to(runs / "later")
    (runs / "stray-file").write_text("x")
    (runs / "no-portfolio").mkdir()
    _status(runs / "no-portfolio")
    with caplog.at_level("WARNING", logger="tradingview_scraper.portfolio"):
        found = P.previous_portfolio(runs, "canary", before=t1)
    assert found[0] == "good" and found[1]["erc"]["t"] == t0
    assert "damaged-status" in caplog.text and "damaged-target" in caplog.text         # skipped, and said so
    assert P.previous_portfolio(runs, "canary")[0] == "later"
    assert P.previous_portfolio(runs, "canary", before=t1, exclude_run="good") is None


def test_pending_bars_are_held_as_in_the_backtest():
    "A suspect bar confirmed only at or after a decision date is NaN in that decision, in the backtest and today alike."
    engine = BacktestEngine(train=252, test=21)
    clean = RET.fillna(0.0)
    run = engine.run(clean, MinVariance())
    t = run.weights.index[5]
    i = clean.index.get_loc(t)
    confirmed = pd.DataFrame({"symbol": ["NYSE:KO", "NYSE:XOM"], "ts": clean.index[[i - 1, i - 3]], "value": [0.3, -0.25],
                              "confirmed_at": clean.index[[i, i + 1]]})
    held = engine.run(clean, MinVariance(), confirmed=confirmed)
    today = P.decide_today(engine, clean[clean.index < t], MinVariance(), t=t, confirmed=confirmed)
    assert today.weights.to_numpy().tobytes() == held.weights.loc[t].to_numpy().tobytes()
    assert today.weights.to_numpy().tobytes() != run.weights.loc[t].to_numpy().tobytes()      # holding the bars matters here
