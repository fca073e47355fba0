"""Every fault switch of the replay server, against the toolkit's clients on loopback.

Each switch is run twice: transient (fires once for one symbol: the retry must succeed and return exactly the
stored bars) and persistent (fires on every attempt: that symbol ends in a typed error, the rest of the batch is
exact). The server runs in-process on 127.0.0.1 with ephemeral ports, started by the tests.
"""
import asyncio

import httpx
import pandas as pd
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tradingview_scraper.core import DataNotFoundError
from tradingview_scraper.tradingview.replay import ReplayServer, synthetic_market
from tradingview_scraper.tradingview.scanner import RateLimiter, RemoteError, RetryPolicy, ScannerClient
from tradingview_scraper.tradingview.stream import (ConnectionLostError, CriticalError, DeadlineError, HandshakeError,
                                                    HistoryClient, MalformedFrameError, SeriesError, SymbolError,
                                                    decode_frame, encode_frame)

TABLE, BARS = synthetic_market(n_symbols=6, n_bars=240, seed=11)
SYMS = list(BARS)
TARGET, N = "NASDAQ:MSFT", 200
# No test waits on a clock to see something happen. Timeouts on healthy links are hang guards only, far beyond what a
# busy machine needs; a short one is used only where a test *injects* silence and the client must give up on it.
GUARD_S = 60
SILENCE_IDLE_S = 2.0     # idle timeout when silence is injected: 40 heartbeats long, so a healthy link never trips it


@pytest.fixture(scope="module")
def server():
    with ReplayServer(TABLE, BARS, heartbeat_s=0.05, echo_timeout_s=GUARD_S, chunk_bars=64) as srv:
        yield srv


@pytest.fixture(autouse=True)
def clean(server):
    server.clear_faults(); server.reset_records()
    yield
    server.clear_faults()


def history(server, **kw):
    opts = dict(concurrency=2, timeout_s=2 * GUARD_S, idle_timeout_s=GUARD_S,
                retry=RetryPolicy(max_attempts=3, initial_s=0.01, jitter_s=0.01, sleep=lambda s: None))
    return HistoryClient(server.websocket_url, **{**opts, **kw})


def scanner(server, waits=None, attempts=3):
    retry = RetryPolicy(max_attempts=attempts, initial_s=0.01, jitter_s=0, sleep=(waits.append if waits is not None else lambda s: None))
    return ScannerClient(server.scanner_url, retry=retry, limiter=RateLimiter(rate=1000, burst=100), page_size=3)


def assert_exact(result, n=N):
    assert result.ok, result
    pd.testing.assert_frame_equal(result.bars, BARS[result.symbol].tail(n).reset_index(drop=True), check_exact=True)


# --- WebSocket faults ---------------------------------------------------------------------------------------------
RETRYABLE = {"close_mid_stream": ConnectionLostError, "truncated_frame": MalformedFrameError,
             "malformed_json": MalformedFrameError, "absent_heartbeats": ConnectionLostError}
FINAL = {"symbol_error": SymbolError, "series_error": SeriesError, "critical_error": CriticalError}
HARMLESS = {"marker_in_payload": {}, "slow_heartbeats": {"delay_s": 0.05}}
CLIENT = {"absent_heartbeats": {"idle_timeout_s": SILENCE_IDLE_S}}   # per fault: client settings the fault needs


@pytest.mark.parametrize("fault", sorted(RETRYABLE))
def test_ws_fault_transient_is_retried(server, fault):
    sw = server.inject(fault, times=1, symbols=[TARGET])
    results = history(server, **CLIENT.get(fault, {})).fetch_many_sync(SYMS, "1d", bars=N)
    assert sw.fired_ == 1
    for r in results: assert_exact(r)
    assert {r.symbol: r.attempts for r in results}[TARGET] == 2
    assert all(r.attempts == 1 for r in results if r.symbol != TARGET)


@pytest.mark.parametrize("fault", sorted(RETRYABLE))
def test_ws_fault_persistent_is_typed_and_batch_goes_on(server, fault):
    server.inject(fault, symbols=[TARGET])
    results = history(server, **CLIENT.get(fault, {})).fetch_many_sync(SYMS, "1d", bars=N)
    bad = {r.symbol: r for r in results}[TARGET]
    assert isinstance(bad.error, RETRYABLE[fault]) and bad.attempts == 3 and bad.bars is None
    for r in results:
        if r.symbol != TARGET: assert_exact(r)


@pytest.mark.parametrize("fault", sorted(FINAL))
def test_ws_fault_answers_are_not_retried(server, fault):
    server.inject(fault, symbols=[TARGET])
    results = history(server).fetch_many_sync(SYMS, "1d", bars=N)
    bad = {r.symbol: r for r in results}[TARGET]
    assert isinstance(bad.error, FINAL[fault]) and bad.attempts == 1, bad
    for r in results:
        if r.symbol != TARGET: assert_exact(r)


@pytest.mark.parametrize("fault", sorted(HARMLESS))
def test_ws_fault_that_a_correct_client_absorbs(server, fault):
    sw = server.inject(fault, symbols=[TARGET], **HARMLESS[fault])
    results = history(server).fetch_many_sync(SYMS, "1d", bars=N)
    assert sw.fired_ == 1
    for r in results: assert_exact(r); assert r.attempts == 1


def test_marker_in_payload_reaches_the_caller_intact(server):
    server.inject("marker_in_payload", symbols=[TARGET])
    r = history(server).fetch_many_sync([TARGET], bars=10)[0]
    assert_exact(r, 10)
    assert "~m~12~m~" in r.info["description"]


def test_handshake_429_honours_retry_after(server):
    waits = []
    async def rec(s): waits.append(s)
    sw = server.inject("handshake_429", times=2, retry_after=1)
    client = history(server, concurrency=1, retry=RetryPolicy(max_attempts=4, initial_s=0.01, jitter_s=0, async_sleep=rec))
    r = client.fetch_many_sync([TARGET], bars=N)[0]
    assert_exact(r)
    assert (sw.fired_, r.attempts) == (2, 3) and waits == [1.0, 1.0]
    assert server.settle() and len(server.sessions_) == 1      # refused upgrades never became sessions


def test_handshake_429_persistent_fails_every_symbol_typed(server):
    server.inject("handshake_429", retry_after=0)
    results = history(server).fetch_many_sync(SYMS[:3], bars=N)
    for r in results:
        assert isinstance(r.error, HandshakeError) and r.error.status == 429 and r.attempts == 3


def test_deadline_bounds_a_silent_server(server):
    """A server that never answers (silent from the request on, heartbeats too) ends in the typed `DeadlineError`,
    whatever the machine's speed: nothing arrives, so the deadline must fire (the idle timeout is far beyond it).
    The deadline is per symbol, so a healthy symbol in the same batch still gets its whole budget."""
    server.inject("absent_heartbeats", symbols=[TARGET])
    r = history(server, timeout_s=5).fetch_many_sync([TARGET, SYMS[0]], bars=N)
    assert isinstance(r[0].error, DeadlineError) and r[0].attempts == 1 and "5s deadline" in str(r[0].error)
    assert_exact(r[1])


def test_unreachable_server_is_a_typed_error():
    client = HistoryClient("ws://127.0.0.1:9/socket.io/websocket", retry=RetryPolicy(max_attempts=2, initial_s=0.01, jitter_s=0))
    r = client.fetch_many_sync(["NASDAQ:AAPL"], bars=5)[0]
    assert isinstance(r.error, ConnectionLostError) and r.attempts == 2


# --- protocol order, pool bound, heartbeats ----------------------------------------------------------------------
def test_method_sequence_and_connection_pool(server):
    results = history(server, concurrency=3).fetch_many_sync(SYMS, "1d", bars=50)
    assert all(r.ok for r in results) and server.settle()
    sessions = server.sessions_
    assert len(sessions) == 3, "concurrency=3 opens three connections that serve all symbols"
    setup = ["set_auth_token", "set_locale", "chart_create_session", "switch_timezone", "quote_create_session", "quote_set_fields"]
    for seq in sessions:
        assert seq[:6] == setup                       # switch_timezone is sent always (Step 9); set_data_quality only when set
        body = seq[6:]
        assert len(body) % 3 == 0 and body == ["resolve_symbol", "create_series", "remove_series"] * (len(body) // 3)
    assert sorted(r["symbol"] for r in server.requests_) == sorted(SYMS)
    assert {r["n"] for r in server.requests_} == {50}


def test_series_per_connection_reconnects(server):
    history(server, concurrency=1, series_per_connection=2).fetch_many_sync(SYMS, bars=5)
    assert server.settle()
    assert [s.count("create_series") for s in server.sessions_] == [2, 2, 2]


def test_server_closes_a_connection_that_does_not_echo():
    async def silent_client(url):
        async with connect(url) as ws:
            got = []
            try:
                while True: got += decode_frame(await asyncio.wait_for(ws.recv(), GUARD_S))
            except ConnectionClosed as e: return got, e.rcvd.code if e.rcvd else None
    async def echoing_client(url):
        async with connect(url) as ws:
            beats = 0
            while beats < 8:
                for p in decode_frame(await asyncio.wait_for(ws.recv(), GUARD_S)):
                    if p.startswith("~h~"):
                        beats += 1
                        await ws.send(encode_frame(p))
            return beats
    # the server sleeps a full heartbeat_s between beats, so 8 beats take at least 1.6 s: past the 1 s echo timeout
    # by construction, while each echo has the whole second to arrive
    with ReplayServer(TABLE, BARS, heartbeat_s=0.2, echo_timeout_s=1.0) as srv:
        got, code = asyncio.run(silent_client(srv.websocket_url))
        assert got[0].startswith("{") and "~h~1" in got and code == 1008
        assert asyncio.run(echoing_client(srv.websocket_url)) == 8


# --- HTTP faults ----------------------------------------------------------------------------------------------------
COLS = ["name", "close", "Value.Traded"]


def full_scan(server):
    with scanner(server) as sc: return sc.scan("america", COLS)


@pytest.mark.parametrize("fault,params", [("http_429", {"retry_after": 0}), ("http_5xx", {"status": 502}),
                                          ("http_malformed_json", {}), ("wrong_d_length", {})])
def test_http_fault_transient_is_retried(server, fault, params):
    want = full_scan(server)
    server.reset_records()
    server.inject(fault, times=1, **params)
    got = full_scan(server)
    pd.testing.assert_frame_equal(got, want)
    assert len(server.http_log_) == 3      # two pages + one retry


@pytest.mark.parametrize("fault,kind", [("http_5xx", "http_503"), ("http_malformed_json", "malformed"), ("wrong_d_length", "malformed")])
def test_http_fault_persistent_is_typed(server, fault, kind):
    server.inject(fault)
    with pytest.raises(RemoteError) as e: full_scan(server)
    assert e.value.kind == kind and len(server.http_log_) == 3


def test_http_429_honours_retry_after_and_other_4xx_fail_fast(server):
    waits = []
    server.inject("http_429", times=1, retry_after=1)
    with scanner(server, waits) as sc:
        assert len(sc.scan("crypto", COLS)) == (TABLE["market"] == "crypto").sum()
        assert waits == [1.0]
        server.reset_records()
        with pytest.raises(RemoteError, match="HTTP 400"): sc.scan("america", COLS, [{"left": "nope", "operation": "equal", "right": 1}])
        assert len(server.http_log_) == 1


def test_symbol_fields_faults_are_per_symbol(server):
    server.inject("http_5xx", symbols=[TARGET])
    with scanner(server) as sc:
        with pytest.raises(RemoteError): sc.metadata(TARGET)
        assert sc.metadata("NASDAQ:AAPL")["tick_size"] == 1 / TABLE.loc["NASDAQ:AAPL", "pricescale"]
        with pytest.raises(DataNotFoundError): sc.metadata("NASDAQ:NOPE")
    server.clear_faults()
    server.inject("http_malformed_json", times=1, symbols=[TARGET])
    with scanner(server) as sc: assert sc.metadata(TARGET)["exchange"] == "NASDAQ"


def test_scan_semantics_over_http(server):
    with scanner(server) as sc:
        got = sc.scan("america", ["name", "close", "RSI|60"], [{"left": "close", "operation": "greater", "right": 20},
                                                               {"left": "exchange", "operation": "in_range", "right": ["NASDAQ", "NYSE"]}],
                      sort_by="close", sort_order="asc", limit=3)
    t = TABLE[(TABLE["market"] == "america") & (TABLE["close"] > 20)].sort_values("close")
    assert got["symbol"].tolist() == t.index[:3].tolist() and got["RSI|60"].isna().all()
    assert got.attrs["total_count"] == len(t)


# --- an `error` key is an error, whatever the HTTP status (the service answers unknown fields that way) ----------------
@pytest.mark.parametrize("status", [200, 400])
def test_an_error_body_is_an_error_not_an_empty_screen(server, status):
    server.inject("http_error_body", status=status, text='Unknown field "foo"')
    with scanner(server) as sc:
        with pytest.raises(RemoteError) as e: sc.scan("america", COLS)
    assert (e.value.kind, e.value.status, e.value.retryable) == ("server_error", status, False)
    assert 'the server says \'Unknown field "foo"\'' in str(e.value) and e.value.server_words == '\'Unknown field "foo"\''
    assert len(server.http_log_) == 1, "a refusal is not asked again"


def test_an_error_body_on_the_symbol_endpoint_fails_that_symbol_only(server):
    server.inject("http_error_body", symbols=[TARGET], status=400, text="incompatible types")
    with scanner(server) as sc:
        with pytest.raises(RemoteError, match="the server says 'incompatible types'") as e: sc.metadata(TARGET)
        assert e.value.kind == "server_error"
        assert sc.metadata("NASDAQ:AAPL")["exchange"] == "NASDAQ"


def test_a_huge_error_text_is_bounded_in_the_message(server):
    server.inject("http_error_body", text="E" * 200_000 + "\n\x1b[31m")
    with scanner(server) as sc:
        with pytest.raises(RemoteError) as e: sc.scan("crypto", COLS)
    assert len(str(e.value)) < 500 and "\x1b" not in str(e.value)


def test_an_error_body_stores_no_universe_snapshot(server, tmp_path):
    from tradingview_scraper.profile import load_profile
    from tradingview_scraper.data.hydration import HydrationError, store_screens
    from tradingview_scraper.data.lakehouse import Lakehouse
    lake = Lakehouse(tmp_path / "lake")
    server.inject("http_error_body")
    with pytest.raises(HydrationError, match="server_error: .*Unknown field"):
        store_screens(load_profile("production", env={}), lake, endpoint=server, now="2024-06-28")
    assert not lake.root.exists()
