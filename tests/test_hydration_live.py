"""Opt-in checks against the real TradingView service (network required). Skipped unless selected with
`pytest -m live tests/test_hydration_live.py`; never part of CI. They check the protocol assumptions of
shared/tradingview-protocol.md against the live endpoints, with tiny requests."""
import pandas as pd
import pytest

from tradingview_scraper.core import DataNotFoundError, utc_now
from tradingview_scraper.tradingview.scanner import RetryPolicy, ScannerClient
from tradingview_scraper.tradingview.stream import HistoryClient, SymbolError

pytestmark = pytest.mark.live


@pytest.fixture(autouse=True)
def _only_when_selected(request):
    if "live" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("talks to tradingview.com: run with `pytest -m live`")


def test_live_scan_pages_and_types():
    with ScannerClient(page_size=3, retry=RetryPolicy(max_attempts=2)) as sc:
        df = sc.scan("america", ["name", "close", "volume", "market_cap_calc"], [{"left": "market_cap_calc", "operation": "greater", "right": 1e11}],
                     sort_by="market_cap_calc", limit=5)
    assert len(df) == 5 and df["symbol"].str.contains(":").all() and str(df["close"].dtype) == "float64"
    assert df["market_cap_calc"].is_monotonic_decreasing and df.attrs["total_count"] >= 5


def test_live_symbol_fields():
    with ScannerClient(retry=RetryPolicy(max_attempts=2)) as sc:
        meta = sc.metadata("NASDAQ:AAPL")
        assert meta["tick_size"] == 0.01 and meta["exchange"] == "NASDAQ"
        with pytest.raises(DataNotFoundError): sc.metadata("NASDAQ:ZZZZZZZZQ")


def test_live_daily_history():
    client = HistoryClient(concurrency=2, timeout_s=30, retry=RetryPolicy(max_attempts=2))
    btc, aapl, bad = client.fetch_many_sync(["BINANCE:BTCUSDT", "NASDAQ:AAPL", "NASDAQ:ZZZZZZZZQ"], "1d", bars=10)
    assert btc.ok and len(btc.bars) == 10 and (utc_now() - btc.bars["ts"].iloc[-1]) < pd.Timedelta(days=3)
    assert (btc.bars["ts"] == btc.bars["ts"].dt.normalize()).all()
    assert aapl.ok and aapl.bars["ts"].dt.day_of_week.max() <= 4 and aapl.info.get("timezone") == "America/New_York"
    assert isinstance(bad.error, SymbolError)
