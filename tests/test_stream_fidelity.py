"""The chart-history client against the loopback replay server playing the live service's behaviour (issue 13).

Deep history over several answers (`create_series`, then `request_more_data` with negative indexes) until the
requested depth, the account's limit or the start of the history; an account token that reaches deeper and never
shows; null bars and five-value bars; the real server's other traffic (`realism=True`); the real error shapes; the
price adjustment; overnight and 24-hour sessions dated to their trading day across a DST switch. Every check is a
real WebSocket conversation with a `ReplayServer` on 127.0.0.1 started by the test; nothing waits on a clock.
"""
import logging

import numpy as np
import pandas as pd
import pytest

from tradingview_scraper.tradingview.replay import ReplayServer, synthetic_market, wire_bars
from tradingview_scraper.tradingview.scanner import RetryPolicy
from tradingview_scraper.tradingview.stream import (CriticalError, HistoryClient, SeriesError, StreamError, SymbolError,
                                                    bars_to_frame)

TABLE, BARS = synthetic_market(n_symbols=4, n_bars=450, seed=5)
BTC, AAPL, MSFT, JPM = "BINANCE:BTCUSDT", "NASDAQ:AAPL", "NASDAQ:MSFT", "NYSE:JPM"
HOLES = [440, 439, 20]                                      # sessions without trades in AAPL (positions in its 450 bars)
BARS[AAPL] = BARS[AAPL].copy()
BARS[AAPL].loc[HOLES, ["open", "high", "low", "close"]] = np.nan
BARS[AAPL].loc[HOLES, "volume"] = 0.0
BARS[MSFT] = BARS[MSFT].assign(volume=np.nan)              # no volume: five-value bars on the wire
BARS[JPM] = BARS[JPM].tail(150).reset_index(drop=True)     # a young symbol
TOKEN = "tvs-fidelity-token-5e1d77"
ASKED, CAP, DEPTH, TOKEN_DEPTH = 400, 100, 250, 400
GUARD_S = 60                                                # hang guards only


def client(server, **kw):
    opts = dict(concurrency=2, timeout_s=GUARD_S, idle_timeout_s=GUARD_S,
                retry=RetryPolicy(max_attempts=2, initial_s=0.01, jitter_s=0, sleep=lambda s: None))
    return HistoryClient(server.websocket_url, **{**opts, **kw})


def served(sym, n):
    "What the client must return for `sym` when it gets its latest `n` served bars: the fixture minus null bars."
    b = BARS[sym].tail(n)
    return b[b["close"].notna()].reset_index(drop=True)


@pytest.fixture(scope="module")
def deep():
    with ReplayServer(TABLE, BARS, cap=CAP, heartbeat_s=0.05, echo_timeout_s=GUARD_S, chunk_bars=64) as srv:
        yield srv


@pytest.fixture(scope="module")
def limited():
    with ReplayServer(TABLE, BARS, cap=CAP, depth=DEPTH, auth_tokens={TOKEN: TOKEN_DEPTH}, heartbeat_s=0.05,
                      echo_timeout_s=GUARD_S) as srv:
        yield srv


@pytest.fixture(autouse=True)
def clean(request):
    for name in ("deep", "limited"):
        if name in request.fixturenames:
            srv = request.getfixturevalue(name)
            srv.clear_faults()
            srv.reset_records()
    yield


# --- deep history -------------------------------------------------------------------------------------------------
def test_deep_history_asks_for_more_until_complete(deep):
    r = client(deep).fetch_history_sync(BTC, "1d", bars=ASKED)
    assert (r.ok, r.stop, r.rounds, r.received, len(r.bars)) == (True, "complete", 4, ASKED, ASKED), r
    pd.testing.assert_frame_equal(r.bars, served(BTC, ASKED), check_exact=True)
    reqs = deep.requests_
    assert [q["kind"] for q in reqs] == ["create_series"] + ["request_more_data"] * 3
    assert [q["n"] for q in reqs] == [400, 300, 200, 100], "each request_more_data asks for exactly the bars still missing"
    assert [q["served"] for q in reqs] == [CAP] * 4 and not any(q["limit"] for q in reqs)


def test_the_start_of_history_stops_with_no_more_history(deep):
    r = client(deep).fetch_history_sync(JPM, "1d", bars=ASKED)
    assert (r.ok, r.stop, r.rounds, r.received) == (True, "no_more_history", 3, 150), r
    pd.testing.assert_frame_equal(r.bars, served(JPM, 150), check_exact=True)
    assert [(q["kind"], q["n"], q["served"]) for q in deep.requests_] == [
        ("create_series", 400, 100), ("request_more_data", 300, 50), ("request_more_data", 250, 0)]


def test_a_server_that_never_finishes_is_an_error_not_a_silent_stop(deep):
    r = client(deep, max_rounds=3).fetch_history_sync(BTC, "1d", bars=ASKED)
    assert isinstance(r.error, StreamError) and r.error.kind == "too_many_rounds" and r.attempts == 1, r
    assert (r.bars, r.stop) == (None, None)
    assert len(deep.requests_) == 3


def test_one_answer_is_enough_when_the_server_sends_all(deep):
    r = client(deep).fetch_history_sync(BTC, "1d", bars=80)
    assert (r.stop, r.rounds, r.received) == ("complete", 1, 80)
    assert [q["kind"] for q in deep.requests_] == ["create_series"]


# --- the account's depth and its token ----------------------------------------------------------------------------
def test_without_a_token_history_stops_at_the_account_limit(limited):
    r = client(limited).fetch_history_sync(BTC, "1d", bars=ASKED)
    assert (r.ok, r.stop, r.rounds, r.received) == (True, "limit", 3, DEPTH), r
    pd.testing.assert_frame_equal(r.bars, served(BTC, DEPTH), check_exact=True)
    reqs = limited.requests_
    assert [q["served"] for q in reqs] == [100, 100, 50] and reqs[-1]["limit"] and not any(q["authorized"] for q in reqs)


def test_a_token_reaches_its_depth_and_appears_nowhere(limited, caplog):
    caplog.set_level(logging.DEBUG)
    c = client(limited, auth_token=TOKEN)
    results = c.fetch_many_sync([BTC, "NASDAQ:NOPE"], "1d", bars=ASKED)
    limited.inject("critical_error", symbols=[MSFT])
    crit = c.fetch_history_sync(MSFT, "1d", bars=ASKED)
    ok, nope = results
    assert (ok.stop, ok.received) == ("complete", ASKED)
    pd.testing.assert_frame_equal(ok.bars, served(BTC, ASKED), check_exact=True)
    assert all(q["authorized"] for q in limited.requests_)
    assert isinstance(nope.error, SymbolError) and isinstance(crit.error, CriticalError)
    client_logs = [caplog.handler.format(r) for r in caplog.records if not r.name.startswith("websockets.server")]  # the server's are its own
    assert any("failed after" in line for line in client_logs), "the client's own log lines were captured"
    shown = [repr(c), str(vars(c)), *client_logs, *(repr(x) for x in (ok, nope, crit))]
    for e in (nope.error, crit.error):
        shown += [str(e), repr(e.args), str(e.server_words), str(getattr(e, "server_description", ""))]
    assert (crit.error.server_name, crit.error.server_description) == ("invalid_parameters", "create_series")
    for text in shown: assert TOKEN not in text


# --- what the live service sends ----------------------------------------------------------------------------------
def test_null_bars_are_skipped_and_recorded(deep):
    r = client(deep).fetch_history_sync(AAPL, "1d", bars=ASKED)
    assert (r.stop, r.null_bars, r.received) == ("complete", 2, ASKED - 2), r   # hole 20 is older than the 400 asked
    assert r.null_bar_ts == [BARS[AAPL]["ts"].iloc[k].isoformat() for k in sorted(HOLES[:2])]
    pd.testing.assert_frame_equal(r.bars, served(AAPL, ASKED), check_exact=True)
    deeper = client(deep).fetch_history_sync(AAPL, "1d", bars=450)
    assert (deeper.stop, deeper.null_bars, len(deeper.bars)) == ("complete", 3, 447)


def test_five_value_bars_have_missing_volume(deep):
    r = client(deep).fetch_history_sync(MSFT, "1d", bars=ASKED)
    assert r.ok and r.bars["volume"].isna().all() and r.bars["close"].notna().all() and len(r.bars) == ASKED


def test_the_live_services_other_traffic_changes_nothing(deep):
    plain = client(deep).fetch_many_sync(list(BARS), "1d", bars=ASKED)
    with ReplayServer(TABLE, BARS, cap=CAP, realism=True, heartbeat_s=0.05, echo_timeout_s=GUARD_S, chunk_bars=64) as srv:
        real = client(srv).fetch_many_sync(list(BARS), "1d", bars=ASKED)
    for a, b in zip(plain, real):
        assert b.ok, b
        pd.testing.assert_frame_equal(a.bars, b.bars, check_exact=True)
        assert (a.stop, a.rounds, a.null_bars, a.received) == (b.stop, b.rounds, b.null_bars, b.received)
    assert any(ord(ch) > 0xFFFF for r in real for ch in r.info["description"]), "the unicode descriptions (with emoji) arrived"


def test_server_errors_are_typed_with_the_servers_words(deep):
    deep.inject("series_error", symbols=[BTC], text="study_not_auth:Script@tv-scripting-101!")
    deep.inject("critical_error", symbols=[MSFT])   # the real shape [cs, name, description] (the fault's default words)
    r = client(deep).fetch_many_sync([BTC, MSFT, "NASDAQ:NOPE"], "1d", bars=10)
    series, crit, sym = (x.error for x in r)
    assert isinstance(series, SeriesError) and series.server_words == "study_not_auth:Script@tv-scripting-101!"
    assert str(series).startswith(BTC) and "study_not_auth" in str(series)
    assert isinstance(crit, CriticalError) and (crit.server_name, crit.server_description) == ("invalid_parameters", "create_series")
    assert crit.server_words == "invalid_parameters: create_series" and str(crit).startswith(MSFT)
    assert isinstance(sym, SymbolError) and sym.server_words == "invalid symbol" and str(sym).startswith("NASDAQ:NOPE")


# --- session settings ---------------------------------------------------------------------------------------------
def test_adjustment_timezone_and_quality_reach_the_server():
    dividends = {BTC: BARS[BTC].assign(**{c: BARS[BTC][c] * 0.5 for c in ("open", "high", "low", "close")})}
    with ReplayServer(TABLE, BARS, dividend_bars=dividends, heartbeat_s=0.05, echo_timeout_s=GUARD_S) as srv:
        splits = client(srv).fetch_history_sync(BTC, bars=20)
        div = client(srv, adjustment="dividends", timezone="Etc/UTC", data_quality="low").fetch_history_sync(BTC, bars=20)
        none = client(srv, adjustment="none").fetch_history_sync(BTC, bars=20)
        reqs = srv.requests_
    pd.testing.assert_frame_equal(splits.bars, BARS[BTC].tail(20).reset_index(drop=True), check_exact=True)
    pd.testing.assert_frame_equal(div.bars, dividends[BTC].tail(20).reset_index(drop=True), check_exact=True)
    pd.testing.assert_frame_equal(none.bars, splits.bars, check_exact=True)
    assert [(q["adjustment"], q["timezone"], q["data_quality"]) for q in reqs] == [
        ("splits", "exchange", None), ("dividends", "Etc/UTC", "low"), ("none", "exchange", None)]


@pytest.mark.parametrize("session", ["1700-1700", "1800-1700"])
def test_overnight_sessions_are_dated_to_their_trading_day_across_dst(session):
    """Forex (24 hours from 17:00 New York) and CME-style futures (18:00 to 17:00): the bar of Monday 2024-03-11 opens
    on Sunday evening New York time, after the switch to daylight saving time; the client dates it Monday."""
    sym = "FX:EURUSD"
    days = pd.bdate_range("2024-02-26", "2024-03-22", tz="UTC")
    n = len(days)
    fx = pd.DataFrame({"ts": days.as_unit("ns"), "open": np.linspace(1.08, 1.09, n), "high": np.linspace(1.085, 1.095, n),
                       "low": np.linspace(1.075, 1.085, n), "close": np.linspace(1.081, 1.091, n), "volume": np.arange(n) + 1.0})
    table = pd.DataFrame([{"symbol": sym, "name": "EURUSD", "exchange": "FX", "type": "forex", "timezone": "America/New_York",
                           "session": session, "description": "Euro / U.S. Dollar 💶"}]).set_index("symbol")
    wire = wire_bars(fx, "1D", "America/New_York", session)
    monday = days.get_loc(pd.Timestamp("2024-03-11", tz="UTC"))
    opens_at = "2024-03-10 21:00" if session == "1700-1700" else "2024-03-10 22:00"     # Sunday, EDT (UTC−4)
    assert pd.Timestamp(wire[monday][0], unit="s", tz="UTC") == pd.Timestamp(opens_at, tz="UTC")
    assert pd.Timestamp(wire[monday - 1][0], unit="s", tz="UTC").hour == int(opens_at[11:13]) + 1   # the Thursday, EST (UTC−5)
    with ReplayServer(table, {sym: fx}, heartbeat_s=0.05, echo_timeout_s=GUARD_S) as srv:
        r = client(srv).fetch_history_sync(sym, "1d", bars=n)
    assert r.ok, r
    pd.testing.assert_frame_equal(r.bars, fx, check_exact=True)
    assert r.bars["ts"].dt.day_of_week.max() <= 4, "trading days are week days"
    pd.testing.assert_frame_equal(bars_to_frame(wire, "1D", "America/New_York", session), fx, check_exact=True)
