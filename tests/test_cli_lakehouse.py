"""`tvs lakehouse status` judges bar files by the loader's own validity rule: a file the loader would exclude is never
reported as healthy."""
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tradingview_scraper.data.lakehouse import Lakehouse
from tradingview_scraper.data.loader import DataLoader


def good_bars(n=30):
    ts = pd.date_range("2024-01-01", periods=n, freq="D", tz="UTC")
    px = pd.Series(range(100, 100 + n), dtype="float64")
    return pd.DataFrame({"ts": ts, "open": px, "high": px, "low": px, "close": px, "volume": 1.0})


BAD = {
    "integer ts": lambda b: b.assign(ts=b["ts"].astype("int64")),
    "naive ts": lambda b: b.assign(ts=b["ts"].dt.tz_localize(None)),
    "string prices": lambda b: b.assign(close=b["close"].astype(str)),
}


@pytest.mark.parametrize("damage", sorted(BAD))
def test_status_counts_what_the_loader_refuses(tmp_path, tvs, damage):
    lh = Lakehouse(tmp_path / "lake")
    lh.write_ohlcv("NASDAQ:GOOD", good_bars())
    lh.write_ohlcv("NASDAQ:BAD", good_bars())
    pq.write_table(pa.Table.from_pandas(BAD[damage](good_bars()), preserve_index=False), lh.ohlcv_path("NASDAQ:BAD"))
    r = tvs("lakehouse", "status", "--root", str(tmp_path / "lake"))
    assert r.returncode == 0, r.stderr
    assert "2 symbols" in r.stdout and "1 unusable" in r.stdout, r.stdout
    bad_line = next(line for line in r.stdout.splitlines() if "NASDAQ:BAD" in line)
    assert "None" not in bad_line, bad_line
    loaded = DataLoader(lh, record_quarantine=False).load()
    assert "NASDAQ:BAD" not in loaded.returns.columns and "NASDAQ:GOOD" in loaded.returns.columns   # the same verdict


def test_status_of_a_healthy_lakehouse(tmp_path, tvs):
    lh = Lakehouse(tmp_path / "lake")
    lh.write_ohlcv("NASDAQ:GOOD", good_bars())
    r = tvs("lakehouse", "status", "--root", str(tmp_path / "lake"))
    assert r.returncode == 0 and "1 symbols, 30 bars, 0 unusable" in r.stdout, r.stdout
