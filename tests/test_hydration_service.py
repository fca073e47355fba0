"""IngestionService end to end on loopback: an empty lakehouse filled from the replay server, incremental runs,
every fault switch in one batch without losing or corrupting stored data, contract quarantine, outage failure."""
import json

import numpy as np
import pandas as pd
import pytest

from tradingview_scraper.profile import load_profile
from tradingview_scraper.core import ProtocolError
from tradingview_scraper.data.hydration import HydrationError, IngestionService, hydrate
from tradingview_scraper.data.lakehouse import Lakehouse
from tradingview_scraper.data.sample import sample_lakehouse
from tradingview_scraper.ledger import AuditLedger
from tradingview_scraper.tradingview.replay import ReplayServer, synthetic_market
from tradingview_scraper.tradingview.scanner import RetryPolicy, ScannerClient
from tradingview_scraper.tradingview.stream import HistoryClient


def profile(**over):
    base = {"data.history_bars": 100_000, "hydration.concurrency": 4, "hydration.max_attempts": 3, "hydration.timeout_s": 20}
    return load_profile("development", env={}, overrides={**base, **over})


GUARD_S = 60   # timeouts on healthy links are hang guards only (a busy machine never needs them)


def service(lh, srv, concurrency=4, attempts=3, idle_timeout_s=GUARD_S, **kw):
    "A service on the replay server; pass a short `idle_timeout_s` only where a test injects silence."
    retry = RetryPolicy(max_attempts=attempts, initial_s=0.01, jitter_s=0.01)
    client = HistoryClient(srv.websocket_url, concurrency=concurrency, timeout_s=2 * GUARD_S, idle_timeout_s=idle_timeout_s, retry=retry)
    return IngestionService(lh, client, ScannerClient(srv.scanner_url, retry=retry), progress=False, **kw)


def test_local_endpoint_fills_an_empty_lakehouse_and_a_second_run_fetches_nothing(tmp_path):
    source = sample_lakehouse(tmp_path / "source")
    target = Lakehouse(tmp_path / "target")
    with ReplayServer.from_lakehouse(source, cap=100_000, heartbeat_s=0.1, echo_timeout_s=GUARD_S) as srv:
        syms = [str(s) for s in source.symbols()]
        first = hydrate(syms, target, profile(), endpoint=srv, now="2022-12-28 22:00", progress=False, run_dir=tmp_path / "run1")
        assert first.summary["fetched"] == len(syms) and first.summary["failed"] == 0
        for s in syms:  # stored = served minus what the contracts quarantined (the sample's NYSE:RRC has stale runs)
            src, q = source.read_ohlcv(s), target.quarantined(s)
            keep = ~src["ts"].isin(q["ts"])
            pd.testing.assert_frame_equal(target.read_ohlcv(s), src[keep].reset_index(drop=True), check_exact=True)
            assert first.outcomes.set_index("symbol").loc[s, "quarantined"] == len(q) == (~keep).sum()
        assert len(target.quarantined("NYSE:RRC")) > 0 and set(target.quarantined()["rule_id"]) == {"stale"}
        cat_t, cat_s = target.catalog(), source.catalog()
        for col in ("exchange", "type", "currency", "tick_size", "timezone", "session", "description", "sector"):
            assert cat_t[col].sort_index().tolist() == cat_s[col].sort_index().tolist(), col
        manifest = target.content_manifest()
        n_requests = len(srv.requests_)
        second = hydrate(syms, target, profile(), endpoint=srv, now="2022-12-28 23:00", progress=False, run_dir=tmp_path / "run2")
        assert second.summary["up_to_date"] == len(syms) and second.summary["bars_requested"] == 0
        assert len(srv.requests_) == n_requests, "an up-to-date lakehouse asks the chart service for nothing"
        pd.testing.assert_frame_equal(target.content_manifest(), manifest)
        # days later, with no new data on the server: only the gap is asked for, and nothing stored changes
        third = hydrate(syms, target, profile(), endpoint=srv, now="2023-01-03 12:00", progress=False)
        assert {r["n"] for r in srv.requests_[n_requests:]} == {7}
        assert third.summary["fetched"] == len(syms) and third.summary["bars_added"] == third.summary["bars_replaced"] == 0
        pd.testing.assert_frame_equal(target.content_manifest(), manifest)
    cov = json.loads((tmp_path / "run1" / "hydration" / "coverage.json").read_text())
    assert cov["summary"]["fetched"] == len(syms) and len(cov["outcomes"]) == len(syms)


def test_incremental_run_requests_only_the_gap(tmp_path):
    table, daily = synthetic_market(n_symbols=6, n_bars=400, seed=5)
    lh = Lakehouse(tmp_path / "lh")
    with ReplayServer(table, {s: b.iloc[:-10] for s, b in daily.items()}) as srv:
        service(lh, srv, history_bars=300).run(list(daily), now="2024-06-18 06:00")
    with ReplayServer(table, daily) as srv:
        rep = service(lh, srv, history_bars=300).run(list(daily), now="2024-06-28 06:00")
        asked = {r["symbol"]: r["n"] for r in srv.requests_}
    for s, b in daily.items():
        last_before = b.iloc[:-10]["ts"].iloc[-1]
        gap_days = (pd.Timestamp("2024-06-28 06:00", tz="UTC") - last_before).days
        assert asked[s] == gap_days + 1
        pd.testing.assert_frame_equal(lh.read_ohlcv(s), b.iloc[-310:].reset_index(drop=True), check_exact=True)
    out = rep.outcomes.set_index("symbol")
    assert (out["added"] == 10).all()


def test_every_fault_in_one_batch_loses_nothing(tmp_path):
    table, daily = synthetic_market(n_symbols=16, n_bars=200, seed=9)
    syms = list(daily)
    lh = Lakehouse(tmp_path / "lh")
    with ReplayServer(table, {s: b.iloc[:-20] for s, b in daily.items()}) as srv:
        service(lh, srv).run(syms, now="2024-06-01")
    before = lh.content_manifest().set_index("path")
    persistent = {"close_mid_stream": syms[0], "truncated_frame": syms[1], "malformed_json": syms[2], "symbol_error": syms[3],
                  "series_error": syms[4], "critical_error": syms[5], "absent_heartbeats": syms[6]}
    transient = {"close_mid_stream": syms[7], "truncated_frame": syms[8], "malformed_json": syms[9], "absent_heartbeats": syms[10]}
    harmless = {"marker_in_payload": syms[11], "slow_heartbeats": syms[12]}
    run_dir = tmp_path / "run"
    ledger = AuditLedger.for_run(run_dir); ledger.genesis("run", "development", "0" * 64)
    with ReplayServer(table, daily, heartbeat_s=0.05, echo_timeout_s=GUARD_S) as srv:
        # one switch per name at a time: the persistent ones (and the harmless ones) in a first run, the transient ones
        # (fire once, then the retry succeeds) in a second run
        for name, s in persistent.items(): srv.inject(name, symbols=[s])
        svc = service(lh, srv, concurrency=4, idle_timeout_s=2.0)   # absent_heartbeats: 2 s of silence is a dead link
        srv.inject("http_5xx", times=2)                      # the catalog refresh retries through these
        srv.inject("handshake_429", times=2, retry_after=0)  # and the chart pool through these
        for name, s in harmless.items(): srv.inject(name, symbols=[s], **({"delay_s": 0.05} if name == "slow_heartbeats" else {}))
        rep1 = svc.run(syms[:7] + syms[11:], run_dir=run_dir, ledger=ledger, now="2024-06-30")
        srv.clear_faults()
        for name, s in transient.items(): srv.inject(name, times=1, symbols=[s])
        rep2 = svc.run(syms[7:11], now="2024-06-30")
    o1, o2 = rep1.outcomes.set_index("symbol"), rep2.outcomes.set_index("symbol")
    kinds = {"close_mid_stream": "connection_lost", "truncated_frame": "malformed_frame", "malformed_json": "malformed_frame",
             "symbol_error": "symbol_error", "series_error": "series_error", "critical_error": "critical_error",
             "absent_heartbeats": "connection_lost"}
    after = lh.content_manifest().set_index("path")
    for name, s in persistent.items():
        assert o1.loc[s, "status"] == "failed" and o1.loc[s, "reason"].startswith(kinds[name]), (name, o1.loc[s, "reason"])
        path = f"ohlcv/interval=1d/{Lakehouse(tmp_path).ohlcv_path(s).name}"
        assert after.loc[path, "sha256"] == before.loc[path, "sha256"], f"{name}: stored data of {s} changed"
    for s in list(harmless.values()) + [x for x in syms[7:11]] + syms[13:]:
        pd.testing.assert_frame_equal(lh.read_ohlcv(s), daily[s].reset_index(drop=True), check_exact=True)
    assert (o2["attempts"] == 2).all() and (o2["status"] == "fetched").all()
    assert rep1.summary["metadata_failed"] == 0
    assert ledger.verify().ok and ledger.records()[-1]["data"]["status"] == "succeeded"
    assert ledger.records()[-1]["data"]["summary"]["failed"] == len(persistent)


def test_contracts_quarantine_bad_rows_instead_of_storing_them(tmp_path):
    table, daily = synthetic_market(n_symbols=2, n_bars=60, seed=2)
    bad = daily["NASDAQ:AAPL"].copy()
    bad.loc[30, "high"] = bad.loc[30, "low"] / 2                     # high < low: inconsistent bar
    lh = Lakehouse(tmp_path / "lh")
    with ReplayServer(table, {**daily, "NASDAQ:AAPL": bad}) as srv:
        rep = service(lh, srv).run(list(daily), now="2024-06-28 12:00")
    stored = lh.read_ohlcv("NASDAQ:AAPL")
    assert len(stored) == 59 and bad.loc[30, "ts"] not in set(stored["ts"])
    q = lh.quarantined("NASDAQ:AAPL")
    assert q["rule_id"].tolist() == ["ohlc_inconsistent"] and q["ts"].iloc[0] == bad.loc[30, "ts"]
    assert rep.outcomes.set_index("symbol").loc["NASDAQ:AAPL", "quarantined"] == 1


def test_outage_is_a_failure_with_a_clear_message(tmp_path):
    table, daily = synthetic_market(n_symbols=3, n_bars=30)
    with ReplayServer(table, daily) as srv:
        srv.inject("critical_error")
        with pytest.raises(HydrationError, match="hydration fetched no symbol: all 3 failed") as e:
            service(Lakehouse(tmp_path / "lh"), srv).run(list(daily), run_dir=tmp_path / "run")
    assert e.value.report.summary["failed"] == 3
    assert (tmp_path / "run" / "hydration" / "coverage.json").exists()
    assert not (tmp_path / "lh" / "ohlcv").exists()


def test_pool_is_bounded(tmp_path):
    table, daily = synthetic_market(n_symbols=12, n_bars=50)
    with ReplayServer(table, daily) as srv:
        service(Lakehouse(tmp_path / "lh"), srv, concurrency=3).run(list(daily), refresh_metadata=False)
        assert srv.settle() and len(srv.sessions_) == 3 and sum(s.count("create_series") for s in srv.sessions_) == 12
        assert not any(p == "/symbol" for _, p, _ in srv.http_log_)


def test_demo_endpoint_serves_only_synthetic_symbols_and_never_touches_real_ones(tmp_path, tvs):
    """`tvs hydrate --endpoint local` into a lakehouse that holds real NASDAQ:AAPL bars: the demo's made-up prices
    go under SYNTH: symbols, the real bar file stays byte-identical and its catalog versions unchanged (the demo used to overwrite them)."""
    lh = Lakehouse(tmp_path / "lake")
    ts = pd.bdate_range(end=pd.Timestamp.now(tz="UTC").normalize() - pd.Timedelta(days=3), periods=20)
    px = np.linspace(180.0, 190.0, 20)
    lh.write_ohlcv("NASDAQ:AAPL", pd.DataFrame({"ts": ts, "open": px, "high": px + 1, "low": px - 1, "close": px, "volume": 1e6}))
    lh.upsert_catalog(pd.DataFrame({"symbol": ["NASDAQ:AAPL"], "exchange": ["NASDAQ"], "description": ["Apple Inc"]}), as_of="2024-01-01")
    def aapl():
        v = lh.catalog(versions=True).query("symbol == 'NASDAQ:AAPL'").astype(object)
        return v.where(v.notna(), None).to_dict("records")
    real, real_catalog = lh.ohlcv_path("NASDAQ:AAPL").read_bytes(), aapl()
    r = tvs("hydrate", "--endpoint", "local", "--profile", "development", "--lakehouse", str(lh.root),
            "--local-symbols", "8", "--local-bars", "30")
    assert r.returncode == 0, r.stderr
    assert lh.ohlcv_path("NASDAQ:AAPL").read_bytes() == real
    assert aapl() == real_catalog and len(real_catalog) == 1
    stored = {str(s) for s in lh.symbols()}
    assert "NASDAQ:AAPL" in stored and len(stored) == 9 and all(s.startswith("SYNTH:") for s in stored - {"NASDAQ:AAPL"})
    assert lh.revisions().empty and "8 fetched" in r.stdout


def test_a_source_that_rewrites_history_is_recorded_and_reported(tmp_path):
    """Stocks stored through Fri 06-21, hydrated at Fri 06-28: the 8 bars asked for overlap 3 stored ones. The source
    changed all three: the last stored bar is the live bar (normal), the two before it are history revisions; each
    keeps its previous values in `Lakehouse.revisions` and the report counts them apart from added bars."""
    table, daily = synthetic_market(n_symbols=2, n_bars=60, seed=4)
    sym = "NASDAQ:AAPL"
    lh = Lakehouse(tmp_path / "lh")
    stored = daily[sym][daily[sym]["ts"] <= "2024-06-21"].reset_index(drop=True)
    lh.write_ohlcv(sym, stored)
    served = daily[sym].copy()
    rewritten = served["ts"].isin(pd.to_datetime(["2024-06-19", "2024-06-20", "2024-06-21"], utc=True))
    served.loc[rewritten, ["open", "high", "low", "close"]] *= 1.01
    with ReplayServer(table, {**daily, sym: served}) as srv:
        rep = service(lh, srv).run([sym], now="2024-06-28 12:00", refresh_metadata=False)
    o = rep.outcomes.set_index("symbol").loc[sym]
    assert (o["requested"], o["added"], o["replaced"], o["history_revised"]) == (8, 5, 3, 2)
    assert rep.summary["bars_history_revised"] == 2 and "3 replaced (2 in history)" in repr(rep)
    rv = lh.revisions(sym)
    assert rv["kind"].tolist() == ["history", "history", "live"]
    assert rv["old_close"].tolist() == stored["close"].tail(3).tolist()
    assert rv["new_close"].tolist() == served.loc[rewritten, "close"].tolist()
    pd.testing.assert_frame_equal(lh.read_ohlcv(sym), served.reset_index(drop=True))
