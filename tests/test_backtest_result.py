"""The research face of a result: `summary()` is the metrics as a Series — one row of `compare(...).summary()` — and the
text form reports use stays available as `summary_text()`."""
import numpy as np
import pandas as pd

from tradingview_scraper.backtest.engine import BacktestEngine
from tradingview_scraper.backtest.reference import synthetic_returns
from tradingview_scraper.backtest.research import compare
from tradingview_scraper.pipelines.allocation import HRP, EqualWeight

PANEL = synthetic_returns(600, 6, seed=11)


def test_summary_is_one_row_of_the_comparison():
    a, b = (BacktestEngine(126, 21, cost_bps=5).run(PANEL, alloc) for alloc in (HRP(), EqualWeight()))
    table = compare([a, b]).summary()
    for r in (a, b):
        pd.testing.assert_series_equal(r.summary(), table.loc[r.name].astype(float))
    assert list(a.summary().index) == list(a.metrics) and a.summary().dtype == np.float64


def test_undefined_metrics_read_as_nan_and_the_text_form_says_undefined():
    flat = BacktestEngine(126, 21).run(PANEL * 0.0, EqualWeight())       # no variance: every ratio undefined
    assert flat.metrics["sharpe"] is None and np.isnan(flat.summary()["sharpe"])
    text = flat.summary_text()
    assert "  sharpe        undefined" in text and text.startswith("metrics:\n") and "conventions:" in text
