"""One annualization everywhere: a 24/7 market run with `backtest.periods_per_year=365` — every number of the
report's metrics table (allocators and benchmark, in report.html and summary.md), read back from its formatted text
(percentages, negative drawdowns, ratios, bps), equals `compute_metrics` with 365 to the shown precision, every point
of its rolling Sharpe equals the rolling formula with 365, and Selection is configured with 365 too."""
import base64
import json
import math
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from tradingview_scraper.backtest.metrics import compute_metrics
from tradingview_scraper.data.lakehouse import Lakehouse
from tradingview_scraper.data.sample import SyntheticMarket
from tradingview_scraper.orchestration.flow import run_flow
from tradingview_scraper.reports import METRIC_COLUMNS

METRICS = list(METRIC_COLUMNS)          # cagr, total_return, ann_return, ann_vol, sharpe, sortino, calmar, max_drawdown, turnover, costs_bps
LABELS = [label for label, _ in METRIC_COLUMNS.values()]
PPY = 365
SPIKE = "BINANCE:CR00003USDT"
SETTINGS = {"data.source": "lakehouse", "data.start": None, "discovery.screens": [], "backtest.periods_per_year": PPY,
            "allocation.optimizers": ["equal_weight", "min_variance"], "allocation.benchmark": None,
            "backtest.train": 126, "selection.vetoes.min_history": 60}


class Tables(HTMLParser):
    "Every <table> of a document as rows of cell texts."
    def __init__(self):
        super().__init__()
        self.tables, self._cell = [], None
    def handle_starttag(self, tag, attrs):
        if tag == "table": self.tables.append([])
        elif tag == "tr" and self.tables: self.tables[-1].append([])
        elif tag in ("td", "th") and self.tables: self._cell = ""
    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(self._cell.strip())
            self._cell = None
    def handle_data(self, data):
        if self._cell is not None: self._cell += data


def figures(html: str) -> list:
    "(data, layout) of every Plotly.newPlot call in the document."
    out, dec = [], json.JSONDecoder()
    for m in re.finditer(r"Plotly\.newPlot\(\s*\"[^\"]+\",\s*", html):
        data, end = dec.raw_decode(html, m.end())
        layout, _ = dec.raw_decode(html, html.index("{", end))
        out.append((data, layout))
    return out


def values(y) -> np.ndarray:
    "A plotly array: a plain list (None for NaN) or a typed array {dtype, bdata}."
    if isinstance(y, dict): return np.frombuffer(base64.b64decode(y["bdata"]), dtype=np.dtype(y["dtype"])).astype(float)
    return np.array([np.nan if v is None else v for v in y], dtype=float)


def shown(cell: str, kind: str):
    """The number a formatted cell shows, in the metric's own convention, and half a unit of its last digit:
    "12.34%" → (0.1234, 5e-5); a drawdown "-47.77%" → (0.4777, 5e-5) (shown negative, stored as a positive fall);
    "1.00" → (1.0, 0.005); bps "21.1" → (21.1, 0.05); "—" → (None, 0)."""
    if cell == "—": return None, 0.0
    if kind in ("pct", "drawdown"):
        assert re.fullmatch(r"-?[\d,]+\.\d\d%", cell), cell
        v = float(cell[:-1].replace(",", "")) / 100
        if kind == "drawdown":
            assert v <= 0 and (v < 0 or cell == "0.00%"), cell                   # a drawdown is shown negative
            v = -v
        return v, 0.5e-4
    pattern, half = {"ratio": (r"-?[\d,]+\.\d\d", 0.005), "bps": (r"-?[\d,]+\.\d", 0.05)}[kind]
    assert re.fullmatch(pattern, cell), (kind, cell)
    return float(cell.replace(",", "")), half


def expected_value(m: dict, key: str, ppy: int):
    if key == "costs_bps": return m["total_costs"] / (m["n_periods"] / ppy) * 1e4
    return m[key]


def check_row(cells: list, m: dict, ppy: int, name: str):
    "Every formatted cell of one table row shows the metric of `m` (to its precision)."
    assert len(cells) == len(METRICS), (name, cells)
    for cell, (key, (_, kind)) in zip(cells, METRIC_COLUMNS.items()):
        v, half = shown(cell, kind)
        want = expected_value(m, key, ppy)
        if want is None: assert v is None, (name, key, cell)
        else: assert v is not None and abs(v - want) <= half + 1e-12 * abs(want), (name, key, cell, want)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("crypto")
    lake = SyntheticMarket(n_equities=0, n_crypto=8, n_days=500, seed=4).generate().write(Lakehouse(root / "lake"))
    bars = lake.read_ohlcv(SPIKE)                       # its last bar quadruples: unconfirmed until a next bar says otherwise
    bars.loc[bars.index[-1], ["close", "high"]] = bars["close"].iloc[-2] * 4
    lake.write_ohlcv(SPIKE, bars.tail(1))
    return run_flow("development", run_id="crypto", runs_root=root / "runs", lakehouse_root=root / "lake", env={}, overrides=SETTINGS)


def test_every_report_number_uses_365(run):
    assert run.status["status"] == "succeeded"
    returns = run.load("ingest", "returns")
    assert (returns.index.day_of_week >= 5).any() and len(returns) > 490            # a 24/7 calendar
    oos, metrics = run.load("backtest", "oos_returns"), run.load("backtest", "metrics")
    turnover, costs = run.load("backtest", "turnover"), run.load("backtest", "costs")
    assert run.load("backtest", "conventions")["periods_per_year"] == PPY
    expected = {n: compute_metrics(oos[n], PPY, turnover[n].dropna(), costs[n].dropna()) for n in ("equal_weight", "min_variance")}
    expected["equal weight (benchmark)"] = compute_metrics(oos["benchmark"].dropna().to_numpy(), PPY)
    for n in ("equal_weight", "min_variance"):
        for k in [*METRICS[:-1], "total_costs", "n_periods"]: assert metrics[n][k] == pytest.approx(expected[n][k], rel=1e-12, abs=1e-15), (n, k)
    html = (run.run_dir / "reports" / "report.html").read_text()
    parser = Tables()
    parser.feed(html[html.index("<h2>Performance"):])
    table = parser.tables[0]
    assert table[0] == ["allocator"] + LABELS
    rows = {r[0]: r[1:] for r in table[1:]}
    assert set(rows) == set(expected)
    for name, cells in rows.items(): check_row(cells, expected[name], PPY, name)
    shown_mv = dict(zip(LABELS, rows["min_variance"]))
    assert all(shown_mv[k].endswith("%") for k in ("CAGR", "total return", "ann. return", "ann. volatility", "turnover / yr"))
    assert shown_mv["max drawdown"].startswith("-")                                   # a drawdown reads negative
    bench_252 = compute_metrics(oos["benchmark"].dropna().to_numpy(), 252)
    with pytest.raises(AssertionError):                                                # the check can tell 365 from 252
        check_row(rows["equal weight (benchmark)"], bench_252, 252, "benchmark at 252")
    md = (run.run_dir / "reports" / "summary.md").read_text()
    section = md[md.index("## Metrics"):md.index("## Data health")]
    md_rows = [[c.strip() for c in line.strip().strip("|").split(" | ")] for line in section.splitlines() if line.startswith("| ")]
    assert md_rows[0] == ["allocator"] + LABELS
    md_rows = {r[0]: r[1:] for r in md_rows[1:]}
    assert md_rows == rows                                                             # the summary shows the same cells
    assert f"- periods_per_year: {PPY}" in md
    rolling = [(d, l) for d, l in figures(html) if "Rolling Sharpe" in json.dumps(l.get("title"))]
    assert len(rolling) == 1 and f"√{PPY}" in rolling[0][1]["title"]["text"]
    curves = {"equal_weight": oos["equal_weight"], "min_variance": oos["min_variance"], "equal weight (benchmark)": oos["benchmark"]}
    traces = {t["name"]: t for t in rolling[0][0]}
    assert set(traces) == set(curves)
    for name, r in curves.items():
        roll = r.rolling(126)
        np.testing.assert_allclose(values(traces[name]["y"]), (roll.mean() / roll.std(ddof=1) * np.sqrt(PPY)).to_numpy(), rtol=1e-12, equal_nan=True)


def test_selection_annualizes_with_the_same_setting(run):
    "The run's ledger records the parameters of every Selection features stage: volatility annualized with 365."
    from tradingview_scraper.ledger import AuditLedger
    recs = [r for r in AuditLedger.for_run(run.run_dir).records() if r["kind"] == "intent" and r["data"].get("step") == "selection.features@1"]
    assert recs and {r["data"]["params"]["periods_per_year"] for r in recs} == {PPY}


def test_unconfirmed_last_bars_reach_the_report(run):
    held = run.load("ingest", "unconfirmed")
    assert list(held.columns) == ["symbol", "ts", "value", "detail"] and held["symbol"].tolist() == [SPIKE]
    assert held["value"].iloc[0] == pytest.approx(math.log(4))
    html = (run.run_dir / "reports" / "report.html").read_text()
    section = html[html.index("<h3>Unconfirmed last bars"):html.index("<h2>Conventions")]
    assert SPIKE in section and f"{held['ts'].iloc[0]:%Y-%m-%d}" in section
    assert "- unconfirmed last bars: 1" in (run.run_dir / "reports" / "summary.md").read_text()
