"""Today's portfolio for 500 symbols (issue 12: under 1 s), against baselines measured in the same run:

1. today's path: `decide_today` (one allocator) + the previous target drifted (`carried_holdings`) + `trade_list` with
   capital, prices and lot sizes — and the same plus `write_portfolio` (Parquet + CSV + JSON, atomic);
2. baseline A: the same decision through a full `engine.run` of ONE fold (the last `train` rows, then `test` placeholder
   rows after t) — what one would do without `decide_today`; its weights must be bitwise today's;
3. baseline B: the full walk-forward backtest over the history, whose last row is what a run showed before this step
   (up to a test window old, and much slower);
4. `drift` (vectorized) against its loop twin `drift_reference` over one test window.

Minimum variance (Ledoit–Wolf) and HRP, 500 synthetic assets, 1,500 days, train 252 / test 21."""
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from _common import best_of, peak_rss_mb, write_results
from tradingview_scraper import portfolio as P
from tradingview_scraper.backtest.engine import BacktestEngine
from tradingview_scraper.backtest.reference import synthetic_returns
from tradingview_scraper.pipelines.allocation import HRP, LedoitWolf, MinVariance

warnings.filterwarnings("ignore")

N_ASSETS, N_ROWS, TRAIN, TEST = 500, 1500, 252, 21


def one_fold_baseline(engine, past, alloc, t):
    "Baseline A: a one-fold engine.run whose first test row is at t (test rows after t are NaN placeholders)."
    future = pd.date_range(t, periods=engine.test, freq="D")
    frame = pd.concat([past.iloc[-engine.train:], pd.DataFrame(np.nan, index=future, columns=past.columns)])
    return engine.run(frame, alloc).weights.iloc[0]


def main():
    returns = synthetic_returns(N_ROWS, N_ASSETS, n_clusters=8, seed=3, gap_share=0.01)
    t = returns.index[-1] + pd.Timedelta(days=1)
    engine = BacktestEngine(train=TRAIN, test=TEST, cost_bps=5)
    rng = np.random.default_rng(0)
    prices = pd.Series(rng.uniform(5, 500, N_ASSETS), index=returns.columns)
    lots = pd.DataFrame({"symbol": returns.columns, "lot_size": rng.choice([1.0, 10.0, 100.0, np.nan], N_ASSETS)})
    t_prev = returns.index[-TEST]
    print(f"{N_ASSETS} assets × {N_ROWS} days, train {TRAIN} / test {TEST}; today's decision at {t:%Y-%m-%d}")
    figures = {"assets": N_ASSETS, "days": N_ROWS, "train": TRAIN, "test": TEST}
    tmp = Path(tempfile.mkdtemp())
    try:
        for name, alloc in (("min_variance", MinVariance(covariance=LedoitWolf())), ("hrp", HRP())):
            previous = ("yesterday", {name: {"t": t_prev, "target": P.decide_today(engine, returns[returns.index < t_prev], alloc, t=t_prev).weights}})
            out = {}
            def today():
                target = P.decide_today(engine, returns, alloc, t=t)
                held = P.carried_holdings(previous, name, returns, t)
                out["trades"] = P.trade_list(held, target, allocator=name, t=t, cost_bps=5, band=0.0, capital=1e6, prices=prices, lots=lots)
                out["target"] = target
            def today_written():
                today()
                run_dir = tmp / f"run-{time.perf_counter_ns()}"
                run_dir.mkdir()
                P.write_portfolio(run_dir, out["target"], out["trades"])
            today()                                           # warm-up
            s_today = best_of(today, 9)
            s_written = best_of(today_written, 9)
            s_fold = best_of(lambda: one_fold_baseline(engine, returns, alloc, t), 9)
            same = one_fold_baseline(engine, returns, alloc, t).to_numpy().tobytes() == out["target"].weights.to_numpy().tobytes()
            s_full = best_of(lambda: engine.run(returns, alloc), 1)
            print(f"  {name:<13} today's portfolio {1e3 * s_today:7.1f} ms (with write_portfolio {1e3 * s_written:7.1f} ms; budget 1000 ms)"
                  f"  | one-fold engine.run {1e3 * s_fold:7.1f} ms ({s_fold / s_today:.2f}x), same weights bitwise: {same}"
                  f"  | full backtest {s_full:6.2f} s ({s_full / s_today:.0f}x)")
            figures[name] = {"today_ms": round(1e3 * s_today, 2), "today_with_write_ms": round(1e3 * s_written, 2),
                             "baseline_one_fold_run_ms": round(1e3 * s_fold, 2), "baseline_full_backtest_s": round(s_full, 3),
                             "ratio_one_fold": round(s_fold / s_today, 2), "ratio_full_backtest": round(s_full / s_today, 1),
                             "bitwise_equal_to_one_fold_run": bool(same), "under_1s": bool(s_written < 1.0),
                             "trades": len(out["trades"].table)}
        w = previous[1]["hrp"]["target"]
        s_vec = best_of(lambda: P.drift(w, returns, t_prev, t), 7)
        s_loop = best_of(lambda: P.drift_reference(w, returns, t_prev, t), 2)
        gap = float(np.abs(P.drift(w, returns, t_prev, t).to_numpy() - P.drift_reference(w, returns, t_prev, t).to_numpy()).max())
        print(f"  drift over {TEST} rows: vectorized {1e3 * s_vec:.2f} ms, loop twin {1e3 * s_loop:.1f} ms ({s_loop / s_vec:.0f}x), max |Δ| {gap:.1e}")
        figures["drift"] = {"vectorized_ms": round(1e3 * s_vec, 3), "reference_loop_ms": round(1e3 * s_loop, 2),
                            "ratio": round(s_loop / s_vec, 1), "max_abs_gap": gap}
        figures["peak_rss_mb"] = round(peak_rss_mb(), 1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_results("portfolio", figures)


if __name__ == "__main__":
    main()
