"""The full cost model end to end: the research flow (development profile) on a synthetic 24/7 crypto market with
volumes — spot and perpetuals, one symbol that stops trading — with every cost kind switched on (a commission per
asset class, half-spread, square-root impact on the lakehouse's volumes, short borrow, perpetual funding) and a sweep
over the holding mode. Every kind is paid somewhere, the fixed-weight cells pay for their daily re-levering (drift
cells pay nothing between trades), the delisted holding is closed and recorded, and the run's artifacts, its research
objects (`run.results()`, `run.cells()`) and its report (the "Costs" section, `summary.md`) all say the same."""
import numpy as np
import pandas as pd
import pytest

from tradingview_scraper.backtest.costs import COST_KINDS
from tradingview_scraper.data.lakehouse import Lakehouse
from tradingview_scraper.data.sample import SyntheticMarket
from tradingview_scraper.orchestration.flow import BACKTEST, INGEST, PORTFOLIO, run_flow

PPY = 365
TWO = ["equal_weight", "min_variance_long_short"]          # a long-only book and a long/short one (shorts pay borrow)
SETTINGS = {"data.source": "lakehouse", "data.start": None, "discovery.screens": [], "backtest.periods_per_year": PPY,
            "allocation.optimizers": TWO, "allocation.benchmark": None, "backtest.train": 126, "backtest.test": 21,
            "selection.enabled": False, "backtest.cost_bps": 5.0,
            "costs.commission_by_class": {"swap": 2.0}, "costs.half_spread_bps": 4.0, "costs.impact": "power",
            "costs.impact_coef": 1.0, "costs.impact_exponent": 1.5, "costs.capital": 5e7, "costs.borrow_bps": 800.0,
            "costs.funding_bps": 1095.0, "delisting.returns": -0.3, "delisting.grace": 5}
SWEEP = {"backtest.holding": ["drift", "fixed"]}


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    root = tmp_path_factory.mktemp("costs")
    data = SyntheticMarket(n_equities=0, n_crypto=6, n_perpetual=2, n_delisted=1, n_days=480, listing_share=0.0, gap_share=0.0,
                           seed=5).generate()
    data.write(Lakehouse(root / "lake"))
    return root, data


@pytest.fixture(scope="module")
def run(market):
    root, _ = market
    return run_flow("development", run_id="costs", runs_root=root / "runs", lakehouse_root=root / "lake", env={}, progress=False,
                    overrides=SETTINGS, sweep=SWEEP)


def trading_rows(run, cell):
    "The days a cell traded at its decisions (its trade dates), and its days."
    days = run.load(BACKTEST.cost_kinds).xs(cell, level="cell").index
    traded = pd.DatetimeIndex(run.load(BACKTEST.trade_dates)[cell].dropna())
    return days, traded


def test_every_cost_kind_is_paid_somewhere(run):
    assert run.status["status"] == "succeeded"
    kinds = run.load(BACKTEST.cost_kinds)
    assert list(kinds.columns) == list(COST_KINDS) and kinds.index.names[0] == "cell"
    assert np.isfinite(kinds.to_numpy()).all()
    paid = kinds.abs().groupby(level="cell").sum()
    for k in COST_KINDS: assert (paid[k] > 0).any(), (k, paid)
    assert (paid.loc[[c for c in paid.index if c.startswith("min_variance_long_short")], "borrow"] > 0).all()   # shorts pay borrow
    assert (paid.loc[[c for c in paid.index if c.startswith("equal_weight")], "borrow"] == 0).all()             # a long-only book does not
    cells = run.cells().set_index("cell")
    for k in COST_KINDS:                                                 # the cells table: Σ of each kind over the cell's days
        np.testing.assert_allclose(cells[f"cost_{k}"].to_numpy(), kinds[k].groupby(level="cell").sum().reindex(cells.index).to_numpy(),
                                   rtol=1e-12, atol=0)


def test_fixed_holding_pays_its_daily_rebalancing(run):
    kinds = run.load(BACKTEST.cost_kinds)
    trade = ["commission", "spread", "impact"]
    for cell in [c for c in kinds.index.get_level_values("cell").unique() if "holding=" in c]:
        days, traded = trading_rows(run, cell)
        between = kinds.xs(cell, level="cell").loc[~days.isin(traded), trade].to_numpy()
        if "holding=fixed" in cell:
            assert (between > 0).any(axis=0).all(), cell                 # re-levering to the target every day is paid, every trade kind
        else:
            assert (between == 0).all(), cell                            # drift: trade costs only at the decisions' trades


def test_a_delisted_holding_is_closed_and_recorded(run, market):
    _, data = market
    gone = set(data.delisted.index)
    events = run.load(BACKTEST.delistings)
    assert {"cell", "symbol", "last_price", "closed", "weight", "delisting_return", "contribution"} <= set(events.columns)
    ew = events[events["cell"] == "equal_weight[holding=drift]"]
    assert len(ew) >= 1 and set(ew["symbol"]) <= gone, events
    e = ew.iloc[0]
    assert e["weight"] > 0 and e["delisting_return"] == pytest.approx(-0.3)
    assert e["contribution"] == pytest.approx(e["weight"] * e["delisting_return"], rel=1e-9)
    assert e["closed"] > e["last_price"]
    w = run.load(BACKTEST.weights("equal_weight[holding=drift]"))
    assert (w.loc[w.index > e["closed"], e["symbol"]] == 0).all()       # never traded again after it was closed
    conv = run.load(BACKTEST.conventions)
    assert any(k.startswith("delisting") for k in conv) and any(k.startswith("cost_") for k in conv), sorted(conv)
    assert "price_adjustment" in conv and conv["mixed_adjustments"] is False


def test_the_research_objects_and_the_report_say_the_same(run):
    results = run.results().results
    kinds = run.load(BACKTEST.cost_kinds)
    for cell, res in results.items():
        pd.testing.assert_frame_equal(res.cost_kinds, kinds.xs(cell, level="cell"), check_exact=True)
        pd.testing.assert_index_equal(res.cost_kinds.index, res.returns.index)
    html = (run.run_dir / "reports" / "report.html").read_text()
    section = html[html.index("<section id='costs'>"):html.index("<h2>Monthly returns")]
    assert 'Plotly.newPlot("fig-costs",' in section and "<h3>Delistings</h3>" in section
    for k in COST_KINDS: assert f"<td>{k}</td>" in section, k
    md = (run.run_dir / "reports" / "summary.md").read_text()
    costs = md[md.index("## Costs"):md.index("## Conventions")]
    for k in COST_KINDS: assert f"| {k} |" in costs, k
    assert "Delistings: 0" not in costs and "closed" in costs
    dv = run.load(INGEST.dollar_volume)
    returns = run.load(INGEST.returns)
    assert dv.shape == returns.shape and (dv.to_numpy()[np.isfinite(dv.to_numpy())] > 0).all()


def test_todays_portfolio_trades_from_the_holdings_within_the_turnover_budget(market):
    """Today's decision of a turnover-aware allocator is the backtest's in-order decision given the current book (a
    holdings file): the target is within the budget of that book — not of cash — and the trade list trades exactly it."""
    root, data = market
    spot = sorted(s for s in data.bars if not s.endswith(".P") and s not in set(data.delisted.index))[0]
    book = root / "book.csv"
    pd.DataFrame({"symbol": [spot], "weight": [0.5]}).to_csv(book, index=False)
    settings = {**SETTINGS, "allocation.optimizers": ["min_variance"], "allocation.turnover": 0.2}
    run = run_flow("development", run_id="budget", runs_root=root / "runs", lakehouse_root=root / "lake", env={}, progress=False,
                   overrides=settings, holdings=book)
    assert run.status["status"] == "succeeded"
    assert run.load(BACKTEST.conventions)["decisions"] == "in order"            # the backtest's first cell: min_variance
    target = run.load(PORTFOLIO.target("min_variance"))
    held = pd.Series({spot: 0.5}).reindex(target.index.union([spot]), fill_value=0.0)
    moved = float((target.reindex(held.index, fill_value=0.0) - held).abs().sum())
    assert moved <= 0.2 + 1e-6, moved                                     # from the book, within the budget
    assert moved > 0.1, moved                                             # ... and it does trade
    trades = run.load(PORTFOLIO.trades("min_variance"))
    np.testing.assert_allclose(float(trades["delta"].abs().sum()), moved, atol=1e-9)
    est = run.load(PORTFOLIO.summary)["min_variance"]                      # priced by the run's cost model, kind by kind
    assert set(est["est_costs"]) == {"commission", "spread", "impact"} and all(v > 0 for v in est["est_costs"].values()), est
    np.testing.assert_allclose(est["est_cost"], sum(est["est_costs"].values()), rtol=1e-12)
    assert est["est_costs"]["spread"] == pytest.approx(4.0 / 1e4 * moved, rel=1e-12)   # costs.half_spread_bps on the traded weight
