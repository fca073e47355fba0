"""The lakehouse under real processes: SIGKILL mid-write, concurrent writers, isolated run metadata,
and toxic data injected into one symbol of a synthetic market."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from tradingview_scraper.data.lakehouse import Lakehouse, MetadataSnapshot
from tradingview_scraper.data.loader import DataLoader
from tradingview_scraper.data.sample import SyntheticMarket

WRITER = """
import sys, numpy as np, pandas as pd
from tradingview_scraper.data.lakehouse import Lakehouse
lh, sym, n = Lakehouse(sys.argv[1]), sys.argv[2], int(sys.argv[3])
k = 0
print("ready", flush=True)
while True:   # rewrite the whole history with a new version number until killed
    k += 1
    ts = pd.date_range("2015-01-01", periods=n, freq="D", tz="UTC")
    px = np.full(n, float(k))
    lh.write_ohlcv(sym, pd.DataFrame({"ts": ts, "open": px, "high": px, "low": px, "close": px, "volume": px}))
"""


def test_sigkill_mid_write_never_leaves_a_partial_file(tmp_path):
    lh = Lakehouse(tmp_path)
    sym, n = "BINANCE:BTCUSDT", 20_000   # ~20k rows: each write takes long enough to be killed inside it
    seen = set()
    for attempt in range(25):
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), sym, str(n)], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        time.sleep(0.05 + 0.37 * np.random.default_rng(attempt).random())
        p.send_signal(signal.SIGKILL); p.wait()
        path = lh.ohlcv_path(sym)
        if not path.exists(): continue
        bars = lh.read_ohlcv(sym)                    # must read: old or new, never partial
        assert len(bars) == n
        versions = set(bars["close"].unique())
        assert len(versions) == 1, "a file mixes two writes"
        seen |= versions
    assert len(seen) >= 5, f"the writer was never killed between writes often enough to test anything: {seen}"
    leftovers = [f for f in os.listdir(lh.ohlcv_path(sym).parent) if f.endswith(".tmp")]
    # killed writers may leave temp files; they are never read and never named like data files
    assert all(f.startswith(".") for f in leftovers)
    assert lh.symbols() == [lh.symbols()[0]] and str(lh.symbols()[0]) == sym


OVERLAP = """
import sys, numpy as np, pandas as pd
from tradingview_scraper.data.lakehouse import Lakehouse
lh = Lakehouse(sys.argv[1]); start = sys.argv[2]
for k in range(30):          # 30 small upserts, each adding one new day
    ts = pd.date_range(start, periods=1, freq="D", tz="UTC") + pd.Timedelta(days=2 * k)
    lh.write_ohlcv("NASDAQ:AAPL", pd.DataFrame({"ts": ts, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0}))
"""


def test_concurrent_writers_never_lose_each_others_bars(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", OVERLAP, str(tmp_path), d]) for d in ("2024-01-01", "2024-01-02")]
    for p in procs: assert p.wait(timeout=120) == 0
    bars = Lakehouse(tmp_path).read_ohlcv("NASDAQ:AAPL")
    assert len(bars) == 60 and bars["ts"].is_unique


RUN = """
import sys, json, time
from tradingview_scraper.data.lakehouse import Lakehouse
lh = Lakehouse(sys.argv[1])
snap = lh.snapshot_metadata(sys.argv[2])
print("snapshotted", flush=True)
sys.stdin.readline()                          # the catalog changes while this run is in flight
print(json.dumps({"sector": snap.get("NASDAQ:AAPL", "sector"),
                  "reopened": __import__("tradingview_scraper.data.lakehouse", fromlist=["x"]).MetadataSnapshot.open(sys.argv[2]).get("NASDAQ:AAPL", "sector")}))
"""


def _catalog(sector):
    return pd.DataFrame({"symbol": ["NASDAQ:AAPL"], "exchange": ["NASDAQ"], "sector": [sector], "session": ["0930-1600"]})


def test_concurrent_runs_see_only_their_own_metadata(tmp_path):
    import json
    lh = Lakehouse(tmp_path / "lake")
    lh.upsert_catalog(_catalog("Electronic Technology"), as_of="2024-01-01")
    a = subprocess.Popen([sys.executable, "-c", RUN, str(lh.root), str(tmp_path / "runs/a/metadata.parquet")],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert a.stdout.readline().strip() == "snapshotted"
    lh.upsert_catalog(_catalog("Technology Services"), as_of="2024-06-01")
    b = subprocess.Popen([sys.executable, "-c", RUN, str(lh.root), str(tmp_path / "runs/b/metadata.parquet")],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert b.stdout.readline().strip() == "snapshotted"
    lh.upsert_catalog(_catalog("Consumer Durables"), as_of="2024-09-01")
    out = {}
    for name, p in (("a", a), ("b", b)):
        so, _ = p.communicate("go\n", timeout=60)
        out[name] = json.loads(so.strip().splitlines()[-1])
    assert out["a"] == {"sector": "Electronic Technology", "reopened": "Electronic Technology"}
    assert out["b"] == {"sector": "Technology Services", "reopened": "Technology Services"}
    assert lh.catalog().loc["NASDAQ:AAPL", "sector"] == "Consumer Durables"


def test_toxic_bar_quarantines_one_symbol_and_leaves_others_identical(tmp_path):
    data = SyntheticMarket(n_equities=12, n_crypto=4, n_days=400, seed=9).generate()
    lh = data.write(Lakehouse(tmp_path / "lake"))
    meta = MetadataSnapshot(lh.catalog(versions=True))
    before = DataLoader(lh, meta).load()
    manifest_before = lh.content_manifest().set_index("path")
    victim = "NYSE:EQ00004"
    bars = lh.read_ohlcv(victim)
    i = len(bars) // 2
    bad_ts = bars["ts"].iloc[i]
    spike = bars.iloc[[i]].copy()
    spike[["open", "high", "low", "close"]] = bars["close"].iloc[i - 1] * 16.0   # +1500%
    lh.write_ohlcv(victim, spike)
    after = DataLoader(lh, meta).load()
    assert victim in before.returns.columns and victim not in after.returns.columns
    assert after.report.excluded[victim] == "quarantined by toxic_move"
    q = lh.quarantined(victim)
    assert list(q["rule_id"]) == ["toxic_move"] and q["ts"].iloc[0] == bad_ts and q["value"].iloc[0] > 14.9
    pd.testing.assert_frame_equal(after.returns, before.returns.drop(columns=victim))
    manifest_after = lh.content_manifest().set_index("path")
    changed = [p for p in manifest_before.index if manifest_before.at[p, "sha256"] != manifest_after.at[p, "sha256"]]
    assert changed == [str(lh.ohlcv_path(victim).relative_to(lh.root))]
    assert len(lh.read_ohlcv(victim)) == len(bars)      # the stored history was not deleted
