"""`tvs hydrate` against another endpoint (a replay server on loopback) with the run's clock: the profile's online screens
are stored as universe snapshots dated `--as-of`, history is fetched incrementally, and bad endpoint or clock arguments
are refused with one `tvs: error:` line before anything is written."""
import pandas as pd
import pytest

from helpers import tree_digest
from tradingview_scraper.data.lakehouse import Lakehouse
from tradingview_scraper.tradingview.replay import ReplayServer

DAY1, DAY2 = "2026-11-30T22:00:00Z", "2026-12-01T22:00:00Z"


@pytest.fixture(scope="module")
def server():
    with ReplayServer.synthetic(n_symbols=10, n_bars=300, end="2026-11-30") as srv:
        yield srv


def hydrate(tvs, lake, srv, *extra):
    return tvs("hydrate", "--profile", "production", "--lakehouse", str(lake), "--scanner-url", srv.scanner_url,
               "--websocket-url", srv.websocket_url, *extra)


def test_profile_screens_become_dated_snapshots_and_history_is_incremental(tmp_path, tvs, server):
    lake = tmp_path / "lake"
    r = hydrate(tvs, lake, server, "--as-of", DAY1)
    assert r.returncode == 0, r.stderr[-3000:]
    lh = Lakehouse(lake)
    screened = set()
    for name in ("binance_spot_liquid", "us_large_caps"):                 # the production profile's online screens
        assert lh.universe_dates(name) == [pd.Timestamp(DAY1)], name
        assert f"screen {name}: " in r.stdout and "as the universe snapshot of 2026-11-30T22:00:00" in r.stdout, r.stdout
        screened |= set(lh.universe_as_of(name, pd.Timestamp(DAY2))["symbol"])
    assert screened and set(map(str, lh.symbols("1d"))) == screened        # every screened symbol was hydrated, nothing else
    summary = next(l for l in r.stdout.splitlines() if " fetched, " in l)
    depth = r.stdout.strip().splitlines()[-1]                             # why each symbol's history stopped, counted
    assert depth.startswith("history depth: ") and sum(int(w.split()[0]) for w in depth[15:].split(", ")) == len(screened), depth
    assert summary.startswith(f"{len(screened)} fetched, 0 up to date, 0 failed") and " s" in summary, summary
    bars = {p.name: p.read_bytes() for p in (lake / "ohlcv").rglob("*.parquet")}
    r = hydrate(tvs, lake, server, "--as-of", DAY2)                     # the next day: a second snapshot, no bar fetched again
    assert r.returncode == 0, r.stderr[-3000:]
    assert lh.universe_dates("us_large_caps") == [pd.Timestamp(DAY1), pd.Timestamp(DAY2)]
    assert f"0 failed of {len(screened)} symbols; 0 bars added" in r.stdout, r.stdout   # the server has no newer session
    assert {p.name: p.read_bytes() for p in (lake / "ohlcv").rglob("*.parquet")} == bars
    assert "\r" not in r.stderr                                          # not a terminal: no progress bar


def test_symbols_given_are_the_only_history_fetched(tmp_path, tvs, server):
    lake = tmp_path / "lake"
    r = hydrate(tvs, lake, server, "--as-of", DAY1, "--symbol", "SYNTH:AAPL")
    assert r.returncode == 0, r.stderr[-3000:]
    assert [str(s) for s in Lakehouse(lake).symbols("1d")] == ["SYNTH:AAPL"]
    assert next(l for l in r.stdout.splitlines() if " fetched, " in l).startswith("1 fetched, 0 up to date, 0 failed of 1 symbols")


def test_the_local_endpoint_still_works(tmp_path, tvs):
    args = ["hydrate", "--endpoint", "local", "--profile", "development", "--lakehouse", str(tmp_path / "lake"),
            "--local-symbols", "2", "--local-bars", "30"]
    first, second = tvs(*args), tvs(*args)
    assert first.returncode == 0 and first.stdout.startswith("2 fetched, 0 up to date"), first.stdout + first.stderr[-2000:]
    assert second.returncode == 0 and second.stdout.startswith("0 fetched, 2 up to date"), second.stdout


@pytest.mark.parametrize("args, says", [
    (["--scanner-url", "http://127.0.0.1:1"], "both --scanner-url and --websocket-url"),
    (["--websocket-url", "ws://127.0.0.1:1"], "both --scanner-url and --websocket-url"),
    (["--endpoint", "local", "--scanner-url", "http://127.0.0.1:1", "--websocket-url", "ws://127.0.0.1:1"], "local starts its own server"),
    (["--scanner-url", "file:///etc/passwd", "--websocket-url", "ws://127.0.0.1:1"], "invalid --scanner-url"),
    (["--scanner-url", "http://127.0.0.1:1", "--websocket-url", "http://127.0.0.1:1"], "invalid --websocket-url"),
    (["--scanner-url", "http://a\x1b[2J", "--websocket-url", "ws://127.0.0.1:1"], "invalid --scanner-url"),
    (["--scanner-url", "http://" + "a" * 5000, "--websocket-url", "ws://127.0.0.1:1"], "invalid --scanner-url"),
    (["--as-of", "yesterday-ish"], "invalid --as-of"),
    (["--as-of", ""], "invalid --as-of"),
], ids=lambda v: v if isinstance(v, str) else " ".join(a[:20] for a in v))
def test_bad_endpoint_or_clock_is_refused_and_writes_nothing(tmp_path, tvs, args, says):
    lake = tmp_path / "lake"
    before = tree_digest(tmp_path)
    r = tvs("hydrate", "--profile", "production", "--lakehouse", str(lake), *args)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert r.stderr.startswith("tvs: error:") and says in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr[-2000:]
    assert "\x1b" not in r.stderr and len(r.stderr) < 1000
    assert tree_digest(tmp_path) == before and not lake.exists()


def test_an_endpoint_that_does_not_answer_fails_in_one_line(tmp_path, tvs):
    import socket
    with socket.socket() as s:                                           # a loopback port with nothing listening on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = tvs("hydrate", "--profile", "production", "--lakehouse", str(tmp_path / "lake"), "--as-of", DAY1,
            "--scanner-url", f"http://127.0.0.1:{port}", "--websocket-url", f"ws://127.0.0.1:{port}")
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    errors = [l for l in r.stderr.splitlines() if l.startswith("tvs: error:")]
    assert len(errors) == 1 and "Traceback" not in r.stderr and "screen" in errors[0], r.stderr[-2000:]
