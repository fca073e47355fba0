"""Bad holdings input, end to end: every case of issue 12 §7 is a typed `HoldingsError` (naming the value and what was
expected, in a bounded message) or a success whose adjustment is recorded in the run's portfolio/summary.json — and a
refusal writes nothing: the run directory and the user's file stay byte-identical."""
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from helpers import tree_digest
from tradingview_scraper import holdings as H
from tradingview_scraper import portfolio as P
from tradingview_scraper.backtest.engine import BacktestEngine
from tradingview_scraper.config import PortfolioConfig
from tradingview_scraper.core import TVSError
from tradingview_scraper.data.sample import load_sample_prices
from tradingview_scraper.pipelines.allocation import MinVariance

RETURNS = load_sample_prices().pct_change().iloc[1:].loc["2020":]
T = RETURNS.index[-1] + pd.Timedelta(days=1)
PRICES = load_sample_prices().iloc[-1]
SYMS = list(RETURNS.columns)
ENGINE = BacktestEngine(train=252, test=21, cost_bps=5)


def portfolio_step(run_dir, holdings_path, settings=PortfolioConfig(), capital=None):
    "What the flow's portfolio step does with a holdings file: read, decide, trade, write."
    held = P.read_holdings(holdings_path, prices=PRICES, symbols=SYMS, decision_time=T, settings=settings)
    target = P.decide_today(ENGINE, RETURNS, MinVariance(), t=T)
    trades = P.trade_list(held, target, allocator="min_variance", t=T, cost_bps=ENGINE.cost_bps, band=settings.no_trade_band,
                          capital=capital, prices=PRICES)
    return P.write_portfolio(run_dir, target, trades)


@pytest.fixture
def tree(tmp_path):
    "A run directory with an earlier allocator's portfolio already written, and a directory for the user's file."
    run = tmp_path / "runs" / "run-1"
    run.mkdir(parents=True)
    (run / "status.json").write_text('{"status": "running"}\n')
    cash_target = P.Decision(T, pd.Series(0.0, index=RETURNS.columns))
    P.write_portfolio(run, cash_target, P.trade_list(P.cash_holdings(), cash_target, allocator="hrp", t=T, cost_bps=5))
    (tmp_path / "user").mkdir()
    return tmp_path, run


def _file(dirpath, name, frame=None, text=None, raw=None):
    p = dirpath / name
    if raw is not None: p.write_bytes(raw)
    elif text is not None: p.write_text(text)
    elif name.endswith(".csv"): frame.to_csv(p, index=False)
    else: frame.to_parquet(p)
    return p


W = lambda syms, ws, **cols: pd.DataFrame({"symbol": syms, "weight": ws, **cols})
Q = lambda syms, qs: pd.DataFrame({"symbol": syms, "quantity": qs})
AS_OF = str((T - pd.Timedelta(days=1)).date())

REFUSED = {   # name: (frame | csv text | raw bytes, settings, what the message must contain)
    "unknown symbol": (W(["NASDAQ:AAPL", "NASDAQ:TSLA"], [0.5, 0.5]), {}, ["'NASDAQ:TSLA'", "expected symbols of the run's data"]),
    "duplicate rows": (W(["NYSE:KO", "NYSE:KO"], [0.5, 0.5]), {}, ["'NYSE:KO'", "one row per symbol", "rows [1, 2]"]),
    "duplicate after normalization": (W(["NYSE:KO", " nyse:ko "], [0.5, 0.5]), {}, ["'NYSE:KO'", "one row per symbol"]),
    "sum below one, weight_sum error": (W(["NYSE:KO"], [0.6]), {"weight_sum": "error"}, ["sum 0.6", "portfolio.weight_sum: error"]),
    "sum above one (leverage), long-only": (W(["NYSE:KO", "NYSE:PG"], [0.7, 0.6]), {}, ["sum 1.3", "leverage", "allow_short"]),
    "percent units, even with shorts allowed": (W(["NYSE:KO", "NYSE:PG"], [60, 40]), {"allow_short": True}, ["gross exposure", "100", "percent units"]),
    "cash row making leverage": (W(["NYSE:KO", "CASH"], [1.0, 0.5]), {}, ["sum 1.5", "at most 1"]),
    "negative weight, long-only": (W(["NYSE:KO", "NYSE:PG"], [1.2, -0.2]), {}, ["NYSE:PG", "-0.2", "long-only"]),
    "negative cash, long-only": (W(["NYSE:KO", "CASH"], [1.0, -0.0001]), {}, ["CASH", "long-only"]),
    "negative quantity, long-only": (Q(["NYSE:KO", "NYSE:PG"], [10, -5]), {}, ["quantity of NYSE:PG", "-5", "long-only"]),
    "stale as_of": (W(["NYSE:KO"], [1.0], as_of="2020-01-02"), {}, ["2020-01-02", "max_holdings_age_days = 7"]),
    "stale as_of, stricter profile": (W(["NYSE:KO"], [1.0], as_of=str((T - pd.Timedelta(days=2)).date())), {"max_holdings_age_days": 1},
                                      ["max_holdings_age_days = 1", "2.0 days old"]),
    "as_of after the decision": (W(["NYSE:KO"], [1.0], as_of=str((T + pd.Timedelta(days=3)).date())), {}, ["holdings from the future"]),
    "mixed as_of": (W(["NYSE:KO", "NYSE:PG"], [0.5, 0.5], as_of=[AS_OF, "2022-12-01"]), {}, ["one time for every row"]),
    "unparsable as_of": (W(["NYSE:KO"], [1.0], as_of="last friday"), {}, ["'last friday'", "a date/time"]),
    "NaN weight": (W(["NYSE:KO", "NYSE:PG"], [0.5, np.nan]), {}, ["weight of NYSE:PG (holdings row 2)", "a finite number"]),
    "inf quantity": (Q(["NYSE:KO"], [np.inf]), {}, ["quantity of NYSE:KO", "inf", "a finite number"]),
    "text weight": ("symbol,weight\nNYSE:KO,0.5\nNYSE:PG,50%\n", {}, ["'50%'", "a finite number"]),
    "empty weight cell": ("symbol,weight\nNYSE:KO,0.5\nNYSE:PG,\n", {}, ["weight of NYSE:PG (holdings row 2) ''", "a finite number"]),
    "decimal comma": ("symbol,weight\nNYSE:KO,\"0,5\"\n", {}, ["'0,5'"]),
    "path traversal symbol": (W(["../../etc/passwd"], [1.0]), {}, ["holdings row 1", "invalid symbol", "EXCHANGE:TICKER"]),
    "NUL in symbol": (W(["NYSE:KO\x00"], [1.0]), {}, ["holdings row 1", "invalid symbol"]),
    "zero-width space": (W(["NYSE:K\u200bO"], [1.0]), {}, ["U+200B ZERO WIDTH SPACE", "holdings row 1"]),
    "right-to-left override": (W(["NYSE:\u202eOK"], [1.0]), {}, ["U+202E", "invalid symbol"]),
    "look-alike letter": (W(["NYSE:K\u039f"], [1.0]), {}, ["U+039F GREEK CAPITAL LETTER OMICRON"]),
    "megabyte symbol": (W(["EX:" + "A" * 2**20], [1.0]), {}, ["holdings row 1", "invalid symbol"]),
    "no exchange": (W(["KO"], [1.0]), {}, ["'KO'", "EXCHANGE:TICKER"]),
    "symbol not text": (pd.DataFrame({"symbol": [42], "weight": [1.0]}), {}, ["symbol in holdings row 1 42", "text"]),
    "weight and quantity": (pd.DataFrame({"symbol": ["NYSE:KO"], "weight": [1.0], "quantity": [3]}), {}, ["exactly one of weight or quantity"]),
    "no symbol column": (pd.DataFrame({"ticker": ["NYSE:KO"], "weight": [1.0]}), {}, ["symbol and exactly one of weight or quantity"]),
    "same column twice": ("symbol,weight,Weight\nNYSE:KO,1,1\n", {}, ["unique column names"]),
    "quantity of a symbol without a price": (Q(["NYSE:KO", "BINANCE:BTCUSDT"], [10, 1]), {}, ["symbols of the run's data"]),
    "boolean weights": (pd.DataFrame({"symbol": ["NYSE:KO"], "weight": [True]}), {}, ["booleans", "numbers"]),
    "not UTF-8": (b"symbol,weight\nNYSE:K\xd6,1\n", {}, ["UTF-8 text"]),
    "empty file": (b"", {}, ["CSV with a header row"]),
    "scale an empty book": ("symbol,weight\n", {"weight_sum": "scale"}, ["sum 0", "> 0 to scale"]),
}


PARQUET_ONLY = {"symbol not text", "boolean weights"}      # typed columns: in a CSV they are text (refused as text)


def _kinds(name, data):
    if not isinstance(data, pd.DataFrame): yield "csv"
    else:
        if name not in PARQUET_ONLY: yield "csv"
        yield "parquet"


CASES = [(name, kind) for name, (data, _, _) in REFUSED.items() for kind in _kinds(name, data)]


@pytest.mark.parametrize("name,kind", CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_refused_and_nothing_written(tree, name, kind):
    root, run = tree
    data, settings, fragments = REFUSED[name]
    fname = f"holdings.{kind}"
    if isinstance(data, pd.DataFrame): path = _file(root / "user", fname, frame=data)
    elif isinstance(data, bytes): path = _file(root / "user", fname, raw=data)
    else: path = _file(root / "user", fname, text=data)
    before = tree_digest(root)
    with pytest.raises(P.HoldingsError) as err:
        portfolio_step(run, path, PortfolioConfig(**settings))
    msg = str(err.value)
    for f in fragments: assert f in msg, (f, msg[:300])
    assert len(msg) < 1200, len(msg)                      # never the whole input
    assert isinstance(err.value, TVSError) and isinstance(err.value, ValueError)
    assert tree_digest(root) == before                    # nothing written, the user's file untouched


ADJUSTED = {  # name: (frame | csv text, settings, capital, the adjustment recorded, check of the holdings)
    "sum below one → cash": (W(["NYSE:KO", "NYSE:PG"], [0.3, 0.3], as_of=AS_OF), {"weight_sum": "cash"}, None,
                             "weights sum to 0.6: the remaining 0.4 is cash (portfolio.weight_sum: cash)", {"NYSE:KO": 0.3, "NYSE:PG": 0.3}),
    "sum below one → scale": (W(["NYSE:KO", "NYSE:PG"], [0.3, 0.3], as_of=AS_OF), {"weight_sum": "scale"}, None,
                              "weights sum to 0.6: scaled by 1.66667 to sum to 1 (portfolio.weight_sum: scale)", {"NYSE:KO": 0.5, "NYSE:PG": 0.5}),
    "leverage with allow_short": (W(["NYSE:KO", "NYSE:PG"], [0.7, 0.6], as_of=AS_OF), {"allow_short": True}, None,
                                  "weights sum to 1.3: cash -0.3 (borrowed)", {"NYSE:KO": 0.7, "NYSE:PG": 0.6}),
    "lowercase symbols": (W(["nyse:ko", " NYSE:PG"], [0.5, 0.5], as_of=AS_OF), {}, None,
                          "2 symbols normalized (row 1: 'nyse:ko' → 'NYSE:KO')", {"NYSE:KO": 0.5, "NYSE:PG": 0.5}),
    "extra columns": (W(["NYSE:KO"], [1.0], as_of=AS_OF, name=["Coca-Cola"]), {}, None, "ignored columns ['name']", {"NYSE:KO": 1.0}),
    "no as_of": (W(["NYSE:KO"], [1.0]), {}, None, "no as_of in the holdings: their age was not checked (portfolio.max_holdings_age_days)",
                 {"NYSE:KO": 1.0}),
    "quantities with cash": (pd.DataFrame({"symbol": ["NYSE:KO", "CASH"], "quantity": [100, 1000.0], "as_of": AS_OF}), {}, 5e4,
                             f"weights = quantity × last close / capital {100 * PRICES['NYSE:KO'] + 1000:,.2f} (cash 1,000.00)",
                             {"NYSE:KO": 100 * PRICES["NYSE:KO"] / (100 * PRICES["NYSE:KO"] + 1000)}),
    "header only → all cash": ("symbol,weight\n", {"weight_sum": "cash"}, None, "weights sum to 0: the remaining 1 is cash (portfolio.weight_sum: cash)", {}),
}


@pytest.mark.parametrize("kind", ["csv", "parquet"])
@pytest.mark.parametrize("name", list(ADJUSTED))
def test_adjusted_and_recorded(tree, name, kind):
    root, run = tree
    data, settings, capital, note, expected = ADJUSTED[name]
    if not isinstance(data, pd.DataFrame) and kind == "parquet": pytest.skip("a CSV-only case")
    path = _file(root / "user", f"holdings.{kind}", frame=data) if isinstance(data, pd.DataFrame) else _file(root / "user", "holdings.csv", text=data)
    user_before = tree_digest(root / "user")
    held = P.read_holdings(path, prices=PRICES, symbols=SYMS, decision_time=T, settings=PortfolioConfig(**settings))
    assert note in held.adjustments, held.adjustments
    assert held.weights.round(12).to_dict() == {k: round(v, 12) for k, v in expected.items()}
    paths = portfolio_step(run, path, PortfolioConfig(**settings), capital=capital)
    summary = json.loads(paths["summary"].read_text())
    assert note in summary["min_variance"]["adjustments"]                     # recorded in the run
    assert summary["min_variance"]["holdings_source"] == f"file:{path}"
    assert "hrp" in summary                                                   # the earlier entry kept
    trades = pd.read_parquet(paths["trades"])
    assert (trades["delta"] == trades["target_weight"] - trades["current_weight"]).all()
    assert tree_digest(root / "user") == user_before                          # the user's file is never touched


def test_size_guard_refuses_before_reading(tree, monkeypatch):
    root, run = tree
    path = _file(root / "user", "h.csv", text="symbol,weight\n" + "NYSE:KO,0.001\n" * 200)
    monkeypatch.setattr(H, "MAX_HOLDINGS_BYTES", 1000)
    monkeypatch.setattr(pd, "read_csv", lambda *a, **k: pytest.fail("parsed a file over the size limit"))
    monkeypatch.setattr(H, "open", lambda *a, **k: pytest.fail("opened a file over the size limit"), raising=False)
    before = tree_digest(root)
    with pytest.raises(P.HoldingsError, match="at most 1000 bytes"): portfolio_step(run, path)
    assert tree_digest(root) == before


def test_row_guard_reads_only_the_parquet_footer(tree, monkeypatch):
    root, run = tree
    path = _file(root / "user", "h.parquet", frame=W([f"EX:A{i}" for i in range(50)], [0.02] * 50))
    monkeypatch.setattr(H, "MAX_HOLDINGS_ROWS", 10)
    monkeypatch.setattr(pq.ParquetFile, "read", lambda *a, **k: pytest.fail("read the rows of a file over the row limit"))
    with pytest.raises(P.HoldingsError, match="invalid holdings rows 50: expected at most 10"): portfolio_step(run, path)


def test_row_guard_csv(tree, monkeypatch):
    root, run = tree
    path = _file(root / "user", "h.csv", text="symbol,weight\n" + "NYSE:KO,0\n" * 11)
    monkeypatch.setattr(H, "MAX_HOLDINGS_ROWS", 10)
    monkeypatch.setattr(pd, "read_csv", lambda *a, **k: pytest.fail("parsed a file over the row limit"))
    with pytest.raises(P.HoldingsError, match="at most 10 rows"): portfolio_step(run, path)


@pytest.mark.parametrize("bad", ["h.xlsx", "missing.csv", "dir.csv", "h\x00.csv", "../" * 3 + "\u202e.csv"])
def test_bad_paths(tree, bad):
    root, run = tree
    (root / "user" / "dir.csv").mkdir()
    before = tree_digest(root)
    with pytest.raises(TVSError):
        portfolio_step(run, str(root / "user" / bad))
    assert tree_digest(root) == before


def test_refused_write_changes_nothing(tree):
    "write_portfolio refuses a hostile allocator name or a trade list of another time before writing anything."
    root, run = tree
    target = P.decide_today(ENGINE, RETURNS, MinVariance(), t=T)
    ok = P.trade_list(P.cash_holdings(), target, allocator="min_variance", t=T, cost_bps=5)
    before = tree_digest(root)
    with pytest.raises(TVSError, match="trade list time"):
        P.write_portfolio(run, target, P.trade_list(P.cash_holdings(), target, allocator="min_variance", t=T + pd.Timedelta(days=1), cost_bps=5))
    import dataclasses
    for name in ("../escape", "a/b", "x\x00", ".."):
        with pytest.raises(TVSError): P.write_portfolio(run, target, dataclasses.replace(ok, allocator=name))
    with pytest.raises(TVSError, match="an existing directory"): P.write_portfolio(root / "nowhere", target, ok)
    assert tree_digest(root) == before


def test_damaged_summary_is_not_overwritten(tree):
    root, run = tree
    summary = run / "portfolio" / "summary.json"
    summary.write_text("{damaged")
    before = tree_digest(root)
    target = P.decide_today(ENGINE, RETURNS, MinVariance(), t=T)
    with pytest.raises(TVSError, match="damaged"):
        P.write_portfolio(run, target, P.trade_list(P.cash_holdings(), target, allocator="min_variance", t=T, cost_bps=5))
    digest = tree_digest(root)
    assert digest[str(summary.relative_to(root))] == before[str(summary.relative_to(root))]   # what the user had is kept
