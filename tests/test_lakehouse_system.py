"""The lakehouse under real processes: SIGKILL mid-write, concurrent writers, isolated run metadata,
and toxic data injected into one symbol of a synthetic market."""
import os
import signal
import subprocess
import sys

import numpy as np
import pandas as pd

from tradingview_scraper.data.lakehouse import Lakehouse, MetadataSnapshot
from tradingview_scraper.data.loader import DataLoader
from tradingview_scraper.data.sample import SyntheticMarket

# A lakehouse writer the test drives over pipes. `write V` rewrites the whole history with every price = V;
# `add DAY` upserts one bar. Prefix a command with a stop point and the writer reports that point and waits there
# (holding the lakehouse lock) until the test says `go` — or kills it (the points are in the write of the bar file;
# the revisions file written just before it is not stopped in):
#   mid-write      — half of the new file's bytes are written (inside the write itself)
#   before-rename  — the new file is complete and synced, not yet renamed over the stored one
#   after-rename   — the new file has replaced the stored one; the directory is not yet synced, the lock is held
#   probe          — first try the lock without blocking and report `blocked` (or `free`), then wait for it
WRITER = r"""
import fcntl, os, sys
import pandas as pd
from tradingview_scraper.data.lakehouse import Lakehouse
lh, sym, n = Lakehouse(sys.argv[1]), sys.argv[2], int(sys.argv[3])
real_fdopen, real_replace, real_flock, armed = os.fdopen, os.replace, fcntl.flock, set()

def say(word): print(word, flush=True)

def stop(point):
    say(point)
    if sys.stdin.readline() != "go\n": os._exit(3)

class HalfThenStop:
    def __init__(self, f): self.f = f
    def __enter__(self): return self
    def __exit__(self, *exc): self.f.close()
    def write(self, data):
        self.f.write(data[:len(data) // 2]); self.f.flush(); os.fsync(self.f.fileno())
        stop("mid-write")
        return self.f.write(data[len(data) // 2:])
    def __getattr__(self, name): return getattr(self.f, name)

def bars_file(path): return os.path.basename(os.path.dirname(path)).startswith("interval=") and "/ohlcv/" in path

def fdopen(fd, mode="r", *a, **k):
    f = real_fdopen(fd, mode, *a, **k)
    if "mid-write" in armed and "w" in mode and bars_file(os.readlink(f"/proc/self/fd/{fd}")):
        armed.discard("mid-write"); return HalfThenStop(f)
    return f

def replace(src, dst):
    if "before-rename" in armed and bars_file(str(dst)): armed.discard("before-rename"); stop("before-rename")
    real_replace(src, dst)
    if "after-rename" in armed and bars_file(str(dst)): armed.discard("after-rename"); stop("after-rename")

def flock(fd, op):
    if "probe" in armed and op == fcntl.LOCK_EX:
        armed.discard("probe")
        try: real_flock(fd, op | fcntl.LOCK_NB); say("free"); return
        except BlockingIOError: say("blocked")
    real_flock(fd, op)

os.fdopen, os.replace, fcntl.flock = fdopen, replace, flock
while line := sys.stdin.readline():
    *points, cmd, arg = line.split()
    armed.update(points)
    if cmd == "write": ts, px = pd.date_range("2015-01-01", periods=n, freq="D", tz="UTC"), float(arg)
    else: ts, px = pd.DatetimeIndex([pd.Timestamp(arg, tz="UTC")]), 1.0
    lh.write_ohlcv(sym, pd.DataFrame({"ts": ts, "open": px, "high": px, "low": px, "close": px, "volume": px}))
    say("ok")
"""

SYM, N = "BINANCE:BTCUSDT", 2_000


def test_sigkill_mid_write_never_leaves_a_partial_file(tmp_path, child):
    """SIGKILL a writer stopped at each point of an atomic write (the writer reports where it is; no sleeps):
    readers see the old file byte for byte until the rename and the new one after it, never a partial file."""
    lh = Lakehouse(tmp_path)
    path = lh.ohlcv_path(SYM)
    w = child(WRITER, tmp_path, SYM, N)
    w.send("write 1")
    w.expect("ok")
    assert w.finish() == 0
    stored, version = path.read_bytes(), 1.0
    for v, point in enumerate(["mid-write", "before-rename", "after-rename", "mid-write", "after-rename", "before-rename"], 2):
        w = child(WRITER, tmp_path, SYM, N)
        w.send(f"{point} write {v}")
        w.expect(point)                                  # the writer is stopped exactly there, holding the lock
        if point != "after-rename": assert path.read_bytes() == stored, "a reader saw the file change before the rename"
        assert w.kill() == -signal.SIGKILL
        if point == "after-rename": stored, version = path.read_bytes(), float(v)
        assert path.read_bytes() == stored
        bars = lh.read_ohlcv(SYM)                        # reads: the old version or the new one, whole
        assert len(bars) == N and set(bars["close"]) == {version}, (point, v)
    # a killed writer leaves its temp file: hidden, never read, never taken for data; the next writer (it holds the
    # lock, so no live writer owns a temp file) removes it: only the last killed writer's temp file is left
    names = os.listdir(path.parent)
    assert [f for f in names if not f.startswith(".")] == [path.name]
    assert sum(f.endswith(".tmp") for f in names) == 1 and all(f.startswith(f".{path.name}.") for f in names if f.endswith(".tmp"))
    assert [str(s) for s in lh.symbols()] == [SYM] and lh.stray_files() == []
    w = child(WRITER, tmp_path, SYM, N)                  # the kills released the lock: the next write goes through
    w.send("write 99")
    w.expect("ok")
    assert w.finish() == 0 and set(lh.read_ohlcv(SYM)["close"]) == {99.0}
    assert [f for f in os.listdir(path.parent) if f.endswith(".tmp")] == []


def test_concurrent_writers_never_lose_each_others_bars(tmp_path, child):
    """Forced lost-update race: writer A has read the stored bars and is stopped just before its rename (lock held)
    when writer B tries to upsert; B must wait for A and merge on top of A's bars. Then both upsert freely."""
    a, b = child(WRITER, tmp_path, "NASDAQ:AAPL", 1), child(WRITER, tmp_path, "NASDAQ:AAPL", 1)
    days = pd.date_range("2024-01-01", periods=30, freq="D").strftime("%Y-%m-%d")
    for k in range(5):
        first, second = (a, b) if k % 2 == 0 else (b, a)
        first.send(f"before-rename add {days[2 * k]}")
        first.expect("before-rename")
        second.send(f"probe add {days[2 * k + 1]}")
        second.expect("blocked")                         # the upsert could not start while the other one was in flight
        first.send("go")
        first.expect("ok")
        second.expect("ok")
    for k in range(5, 15):                               # free-running: both upsert as fast as they can
        a.send(f"add {days[2 * k]}")
        b.send(f"add {days[2 * k + 1]}")
    for _ in range(10): a.expect("ok"); b.expect("ok")
    assert (a.finish(), b.finish()) == (0, 0)
    bars = Lakehouse(tmp_path).read_ohlcv("NASDAQ:AAPL")
    assert bars["ts"].dt.strftime("%Y-%m-%d").tolist() == list(days) and bars["ts"].is_unique


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
    jump = bars.iloc[i:].copy()       # a lasting +1500% jump (a one-bar spike that reverts is a print error instead)
    jump[["open", "high", "low", "close"]] *= 16.0
    lh.write_ohlcv(victim, jump)
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


def test_single_bar_print_costs_one_bar_not_the_symbol(tmp_path):
    data = SyntheticMarket(n_equities=12, n_crypto=4, n_days=400, seed=9).generate()
    lh = data.write(Lakehouse(tmp_path / "lake"))
    meta = MetadataSnapshot(lh.catalog(versions=True))
    before = DataLoader(lh, meta).load()
    victim = "NYSE:EQ00004"
    bars = lh.read_ohlcv(victim)
    i = len(bars) // 2
    bad_ts = bars["ts"].iloc[i]
    for factor in (16.0, 0.06):        # +1500% and −94% prints, each back the next bar
        spike = bars.iloc[[i]].copy()
        spike[["open", "high", "low", "close"]] = bars["close"].iloc[i - 1] * factor
        lh.write_ohlcv(victim, spike)
        after = DataLoader(lh, meta, record_quarantine=False).load()
        assert victim in after.returns.columns and after.report.excluded == before.report.excluded
        assert np.isnan(after.returns.at[bad_ts, victim])
        nxt = bars["ts"].iloc[i + 1]
        assert np.isclose(after.returns.at[nxt, victim], bars["close"].iloc[i + 1] / bars["close"].iloc[i - 1] - 1)
        q = after.report.quarantine
        assert list(q.loc[q.symbol == victim, "rule_id"]) == ["print_error"] and q.loc[q.symbol == victim, "ts"].iloc[0] == bad_ts
        pd.testing.assert_frame_equal(after.returns.drop(columns=victim), before.returns.drop(columns=victim))
