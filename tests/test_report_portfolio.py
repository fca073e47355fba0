"""Today's portfolio as the portfolio module writes it reaches the top of the report: `write_portfolio` →
`load_portfolio` (the flow's shape) → `ReportInputs.portfolio` → report.html and summary.md open, right after the
warnings banner, with each allocator's decision time, target weights, trade list (weights, deltas, notionals and
lot-rounded quantities), drift, band, estimated cost, holdings source and adjustments; an allocator inside its
no-trade band says so instead of listing trades."""
import re

import numpy as np
import pandas as pd
import pytest

from tradingview_scraper.backtest.metrics import compute_metrics
from tradingview_scraper.portfolio import Decision, Holdings, load_portfolio, trade_list, write_portfolio
from tradingview_scraper.reports import ReportInputs, StrategyResult, format_value, write_report

T = pd.Timestamp("2024-03-01", tz="UTC")
SYMS = ["NASDAQ:AAPL", "NYSE:JPM", "NYSE:KO", "NYSE:XOM"]


@pytest.fixture()
def run(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    current = Holdings(pd.Series([0.30, 0.30, 0.20, 0.15], index=SYMS), as_of=T - pd.Timedelta(days=1), source="file:/data/holdings.csv",
                       adjustments=("holdings weights sum to 0.95: the other 5% taken as cash",))
    prices, lots = pd.Series([180.0, 190.0, 60.0, 110.0], index=SYMS), pd.DataFrame({"symbol": SYMS, "lot_size": [1.0] * 4})
    moving = Decision(T, pd.Series([0.40, 0.20, 0.20, 0.10], index=SYMS), fallbacks=[("allocation", "MinVariance: singular covariance")])
    still = Decision(T, pd.Series([0.31, 0.30, 0.20, 0.14], index=SYMS))
    lists = {"min_variance": trade_list(current, moving, allocator="min_variance", t=T, cost_bps=5.0, band=0.02, capital=100_000.0,
                                        prices=prices, lots=lots),
             "hrp": trade_list(current, still, allocator="hrp", t=T, cost_bps=5.0, band=0.02)}
    write_portfolio(run_dir, moving, lists["min_variance"])
    write_portfolio(run_dir, still, lists["hrp"])
    idx = pd.bdate_range(pd.Timestamp("2023-01-02", tz="UTC"), T - pd.Timedelta(days=1))
    rng = np.random.default_rng(3)
    strategies = []
    for name in lists:
        r = pd.Series(rng.normal(3e-4, 0.01, len(idx)), index=idx)
        strategies.append(StrategyResult(name, r, pd.DataFrame(0.25, index=idx[::21], columns=SYMS), pd.Series(0.1, index=idx[::21]),
                                         pd.Series(0.1 * 5e-4, index=idx[::21]), compute_metrics(r, 252)))
    inp = ReportInputs(run={"run_id": "today", "profile": "production", "status": "succeeded"}, strategies=strategies,
                       warnings=["the universe is survivorship-biased"], last_bar=idx[-1], portfolio=load_portfolio(run_dir), universe_size=4)
    paths = write_report(inp, run_dir / "reports")
    return lists, paths["html"].read_text(encoding="utf-8"), paths["markdown"].read_text(encoding="utf-8")


def test_portfolio_opens_the_report_after_the_banner(run):
    lists, html, md = run
    assert html.index("Read this first") < html.index("<h2>Today's portfolio") < html.index("<h2>Performance")
    assert md.index("> **Warning:**") < md.index("## Today's portfolio") < md.index("## Metrics")
    section = md[md.index("## Today's portfolio"):md.index("## Metrics")]
    assert section.index("### min_variance") < section.index("### hrp")
    assert "- decision at 2024-03-01: the target to hold from the next session" in section


def test_trade_list_rows_are_the_module_s_trades(run):
    lists, html, md = run
    tl = lists["min_variance"]
    assert tl.traded and len(tl.table) == 3                                   # NYSE:KO stays at 20%: no trade
    section = md[md.index("### min_variance"):md.index("### hrp")]
    rows = [[c.strip() for c in line.strip().strip("|").split(" | ")] for line in section.splitlines() if line.startswith("| ")]
    trades = rows[rows.index(next(r for r in rows if r[:2] == ["symbol", "current"])):]
    assert trades[0] == ["symbol", "current", "target", "delta", "price", "notional", "quantity", "lot size", "residual"]
    body = {r[0]: dict(zip(trades[0], r)) for r in trades[1:]}
    assert set(body) == set(tl.table["symbol"])
    for rec in tl.table.itertuples():
        row = body[rec.symbol]
        assert row["current"] == format_value(rec.current_weight, "weight") and row["target"] == format_value(rec.target_weight, "weight")
        assert float(row["delta"].rstrip("%")) / 100 == pytest.approx(rec.delta, abs=5e-5) and row["delta"][0] in "+-"
        assert float(row["notional"].replace(",", "")) == pytest.approx(rec.notional, abs=0.005)
        assert float(row["quantity"].replace(",", "")) == rec.quantity and rec.quantity == int(rec.quantity)    # whole lots
    assert f"drift ½Σ|target − current| = {tl.drift:.2%} · no-trade band 2.00%" in section
    assert f"estimated cost {tl.est_cost * 1e4:.1f} bps of equity ({tl.est_cost_ccy:,.2f} at capital 100,000)" in section
    assert "holdings: file:/data/holdings.csv; adjustments: holdings weights sum to 0.95: the other 5% taken as cash" in section
    assert "the decision fell back: allocation: MinVariance: singular covariance" in section
    targets = rows[:rows.index(trades[0])]
    assert targets[0] == ["symbol", "weight"] and targets[1] == ["NASDAQ:AAPL", "40.00%"] and targets[-1] == ["cash", "10.00%"]
    assert html.count("<td>NASDAQ:AAPL</td>") >= 2                                     # in the target table and the trade list


def test_inside_the_band_says_why(run):
    lists, html, md = run
    tl = lists["hrp"]
    assert not tl.traded and len(tl.table) == 0 and tl.reason.startswith("inside the no-trade band")
    section = md[md.index("### hrp"):md.index("## Metrics")]
    assert f"- no trades: {tl.reason}" in section and "| symbol | current |" not in section
    block = html[html.index("<h3>hrp</h3>"):html.index("<h2>Performance")]
    assert re.search(r"<p class='muted'>no trades: inside the no-trade band", block)


def test_reality_section_opens_the_report_or_says_why_not(run):
    "Without a reality check the section still sits first after the banner, saying why there is none."
    lists, html, md = run
    assert html.index("Read this first") < html.index("<h2>Is it real?") < html.index("<h2>Today's portfolio")
    assert md.index("> **Warning:**") < md.index("## Is it real?") < md.index("## Today's portfolio")
    assert "## Is it real?\n\nNo reality check for this run (its assess step did not run" in md
