"""The replay server plays the live chart service's behaviour on the wire (issue 13, §4).

Every check here reads the server's frames with a bare client that knows only the protocol (`Wire`: lengths in
UTF-16 code units, the JavaScript decoder's rule), not with the toolkit's `HistoryClient`, so what is asserted is
what the server sent: the deep-history rounds (`request_more_data`, negative indexes, `data_completed: "limit"`),
each `realism` behaviour alone and together, the records, the accounts, and every fault switch — old and new —
with and without realism. Two checks use `HistoryClient` itself: the client fetches exactly the served bars from a
realistic server.
"""
import re
import time

import httpx
import orjson
import pandas as pd
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tradingview_scraper.tradingview.replay import FAULTS, REALISM, ReplayServer, synthetic_market, wire_bars
from tradingview_scraper.tradingview.scanner import RetryPolicy
from tradingview_scraper.tradingview.stream import HistoryClient

TABLE, BARS = synthetic_market(n_symbols=6, n_bars=400, seed=5)
DEEP_TABLE, DEEP_BARS = synthetic_market(n_symbols=2, n_bars=12_000, seed=6)
SYM, OTHER = "NASDAQ:AAPL", "NASDAQ:MSFT"
TOKEN = "replay-fidelity-token-93b1"
GUARD_S = 30.0   # hang guards only: a healthy exchange finishes in milliseconds


def utf16_payloads(frame: str) -> list[str]:
    "Payloads of one frame, each declared length counted in UTF-16 code units; a short or cut message raises."
    b, out, i = frame.encode("utf-16-le", "surrogatepass"), [], 0
    while i < len(b):
        m = re.match(r"~m~(\d+)~m~", b[i:i + 40].decode("utf-16-le", "ignore"))
        assert m, f"no marker at unit {i // 2}"
        start, n = i + 2 * len(m.group(0)), 2 * int(m.group(1))
        assert start + n <= len(b), "the last message is shorter than its declared length"
        out.append(b[start:start + n].decode("utf-16-le"))
        i = start + n
    return out


def by_characters(frame: str) -> list[str]:
    "Payloads counted in Python characters: right only inside the Basic Multilingual Plane."
    out, i = [], 0
    while i < len(frame):
        m = re.match(r"~m~(\d+)~m~", frame[i:i + 40])
        start = i + len(m.group(0))
        out.append(frame[start:start + int(m.group(1))])
        i = start + int(m.group(1))
    return out


class Wire:
    "A bare chart-protocol client: setup as §2 orders it, one series at a time, every frame and message kept."
    def __init__(self, url, token="unauthorized_user_token", timezone="exchange", data_quality=None, cs="cs_fidelity0001"):
        self.ws = connect(url, additional_headers={"Origin": "https://www.tradingview.com"}, max_size=2**25, proxy=None,
                          ping_interval=None, legacy=True)
        self.cs, self.qs, self.frames, self.messages, self.pending, self.k = cs, "qs_fidelity0001", [], [], [], 0
        self.greeting = self.recv()
        setup = [("set_auth_token", token), ("set_locale", "en", "US"), ("chart_create_session", cs, ""), ("switch_timezone", cs, timezone)]
        if data_quality: setup.append(("set_data_quality", data_quality))
        for m, *p in setup + [("quote_create_session", self.qs), ("quote_set_fields", self.qs, "lp", "description")]: self.send(m, *p)

    def send(self, m, *p):
        payload = orjson.dumps({"m": m, "p": list(p)}).decode()
        self.ws.send(f"~m~{len(payload.encode('utf-16-le')) // 2}~m~{payload}")

    def recv(self):
        while not self.pending:
            frame = self.ws.recv(timeout=GUARD_S)
            self.frames.append(frame)
            for payload in utf16_payloads(frame):
                if payload.startswith("~h~"): self.ws.send(f"~m~{len(payload)}~m~{payload}")
                else: self.pending.append(orjson.loads(payload))
        self.messages.append(msg := self.pending.pop(0))
        return msg

    def answer(self, sds):
        "Messages up to this session's series_completed for `sds`, or an error."
        out = []
        while True:
            out.append(msg := self.recv())
            m, p = msg.get("m"), msg.get("p") or [None, None]
            if m in ("critical_error", "protocol_error") or (p[0] == self.cs and m in ("symbol_error", "series_error")): return out
            if m == "series_completed" and p[0] == self.cs and p[1] == sds: return out

    def request(self, symbol, n, adjustment="splits"):
        self.k += 1
        spec = {"symbol": symbol} if adjustment is None else {"adjustment": adjustment, "symbol": symbol}
        self.send("resolve_symbol", self.cs, f"sds_sym_{self.k}", "=" + orjson.dumps(spec).decode())
        self.send("create_series", self.cs, f"sds_{self.k}", f"s{self.k}", f"sds_sym_{self.k}", "1D", n, "")

    def series(self, symbol, n, adjustment="splits"):
        self.request(symbol, n, adjustment)
        return self.answer(f"sds_{self.k}")

    def more(self, n):
        self.send("request_more_data", self.cs, f"sds_{self.k}", n)
        return self.answer(f"sds_{self.k}")

    def close(self): self.ws.close()


def bars_of(msgs, cs, sds):
    return {it["i"]: it["v"] for m in msgs if m["m"] == "timescale_update" and m["p"][0] == cs
            for it in (m["p"][1].get(sds) or {}).get("s", [])}


def wire_of(bars, symbol, table=TABLE):
    return wire_bars(bars[symbol], "1D", table.loc[symbol, "timezone"], table.loc[symbol, "session"])


def wait_until(cond):
    "Wait for a condition the server reaches on its own (a hang guard, not a timing assumption)."
    deadline = time.monotonic() + GUARD_S
    while not cond():
        assert time.monotonic() < deadline, "the server never got there"
        time.sleep(0.005)


# --- deep history -------------------------------------------------------------------------------------------------
def test_depth_above_3000_is_reached_in_four_answers_with_negative_indexes():
    with ReplayServer(DEEP_TABLE, DEEP_BARS, depth=10_000, cap=3000) as srv:
        w = Wire(srv.websocket_url)
        answers = [w.series(SYM, 10_000)] + [w.more(n) for n in (7000, 4000, 1000, 500)]
        w.close()
        assert srv.settle()
        rec = srv.requests_
    got = [bars_of(a, w.cs, "sds_1") for a in answers]
    assert [len(g) for g in got] == [3000, 3000, 3000, 1000, 0]
    assert [sorted(g) for g in got[:4]] == [list(range(0, 3000)), list(range(-3000, 0)), list(range(-6000, -3000)), list(range(-7000, -6000))]
    wire = wire_of(DEEP_BARS, SYM, DEEP_TABLE)
    merged = {i: v for g in got for i, v in g.items()}
    assert [merged[i] for i in sorted(merged)] == wire[-10_000:]               # the latest 10,000, each bar once
    trailing = [a[-1]["p"][4] for a in answers]
    assert [t.get("data_completed") for t in trailing] == [None, None, None, "limit", "limit"]
    assert [m["m"] for m in answers[-1]] == ["series_completed"]               # at the depth: no bars, the mark
    assert [(r["kind"], r["n"], r["served"], r["total"], r["limit"]) for r in rec] == [
        ("create_series", 10_000, 3000, 3000, False), ("request_more_data", 7000, 3000, 6000, False),
        ("request_more_data", 4000, 3000, 9000, False), ("request_more_data", 1000, 1000, 10_000, True),
        ("request_more_data", 500, 0, 10_000, True)]


def test_without_older_bars_there_is_no_limit_and_series_completed_comes_alone():
    with ReplayServer(TABLE, BARS, cap=250, depth=400) as srv:       # the depth equals what exists: nothing older
        w = Wire(srv.websocket_url)
        answers = [w.series(SYM, 1000), w.more(1000), w.more(1000)]
        w.close()
    assert [len(bars_of(a, w.cs, "sds_1")) for a in answers] == [250, 150, 0]
    assert [m["m"] for m in answers[-1]] == ["series_completed"]
    assert all("data_completed" not in a[-1]["p"][4] for a in answers)


def test_a_short_request_within_the_depth_is_not_a_limit():
    with ReplayServer(TABLE, BARS, depth=100) as srv:
        w = Wire(srv.websocket_url)
        small, at_depth = w.series(SYM, 50), w.series(OTHER, 100)
        w.close()
    assert small[-1]["p"][4] == {"rt_update_period": 1}
    assert at_depth[-1]["p"][4] == {"rt_update_period": 1, "data_completed": "limit"}


# --- accounts -------------------------------------------------------------------------------------------------------
def test_an_account_token_reaches_its_depth_and_is_kept_nowhere():
    with ReplayServer(DEEP_TABLE, DEEP_BARS, depth=300, cap=3000, auth_tokens={TOKEN: 9000}) as srv:
        reached = {}
        for token in ("unauthorized_user_token", "not-a-known-token", TOKEN):
            w = Wire(srv.websocket_url, token=token)
            reached[token] = sum(len(bars_of(a, w.cs, "sds_1")) for a in [w.series(SYM, 9000), w.more(9000), w.more(9000), w.more(9000)])
            w.close()
        assert srv.settle()
        everything = repr(srv) + repr(vars(srv)) + repr(srv.requests_) + repr(srv.sessions_)
        rec = srv.requests_
    assert reached == {"unauthorized_user_token": 300, "not-a-known-token": 300, TOKEN: 9000}
    assert [r["authorized"] for r in rec] == [False] * 8 + [True] * 4
    assert TOKEN not in everything


# --- realism --------------------------------------------------------------------------------------------------------
def _marks(w, msgs):
    "Which realism behaviours show in these messages."
    foreign = lambda m: m["p"][0] not in (w.cs, w.qs)
    return {k for k, seen in {
        "quotes": any(m["m"] == "qsd" and m["p"][0] == w.qs for m in msgs) and any(m["m"] == "quote_completed" for m in msgs),
        "timestamps": all(isinstance(m.get("t"), int) and m.get("t_ms", -1) // 1000 == m["t"] for m in msgs),
        "empty_updates": any(m["m"] == u and m["p"][1] == {} for m in msgs for u in ("timescale_update", "du")),
        "studies": {"study_loading", "study_completed", "study_deleted", "series_timeframe"} <= {m["m"] for m in msgs},
        "foreign_session": any(foreign(m) and m["m"] == "timescale_update" and m["p"][1] for m in msgs),
        "unicode": any(m["m"] == "symbol_resolved" and all(x in m["p"][2]["description"] for x in ("삼성", "Сбербанк", "🚀")) for m in msgs),
    }.items() if seen}


@pytest.mark.parametrize("only", [None, *REALISM])
def test_each_realism_behaviour_alone_on_the_wire(only):
    with ReplayServer(TABLE, BARS, realism=() if only is None else {only}, chunk_bars=100) as srv:
        w = Wire(srv.websocket_url)
        first, more = w.series(SYM, 300), w.more(100)
        w.close()
    msgs = [m for m in w.messages if "m" in m]
    assert _marks(w, msgs) == (set() if only is None else {only})
    # whatever is played around them, the client's own bars are exactly the served ones
    wire = wire_of(BARS, SYM)
    assert list(bars_of(first, w.cs, "sds_1").values()) == wire[-300:]
    assert list(bars_of(more, w.cs, "sds_1").values()) == wire[-400:-300]
    assert sorted(bars_of(more, w.cs, "sds_1")) == list(range(-100, 0))


def test_full_realism_frames_count_utf16_units_and_pack_quotes_with_bars():
    with ReplayServer(TABLE, BARS, realism=True) as srv:
        w = Wire(srv.websocket_url)
        w.series(SYM, 300)
        w.close()
    assert _marks(w, [m for m in w.messages if "m" in m]) == set(REALISM)
    framed = [(f, [m for x in utf16_payloads(f) if not x.startswith("~h~") and "m" in (m := orjson.loads(x))]) for f in w.frames]
    packed = [f for f, ms in framed if any(m["m"] == "qsd" for m in ms) and bars_of(ms, w.cs, "sds_1")]
    assert packed and "📰" in packed[0]                       # emoji in the same frame as the client's bars
    assert len(utf16_payloads(packed[0])) >= 2
    with pytest.raises(Exception): [orjson.loads(p) for p in by_characters(packed[0])]   # a character count desynchronises


def test_foreign_session_bars_differ_and_fool_a_client_that_ignores_the_session_id():
    with ReplayServer(TABLE, BARS, realism={"foreign_session"}, chunk_bars=100) as srv:
        w = Wire(srv.websocket_url)
        msgs = w.series(SYM, 300)
        w.close()
    foreign = [m for m in msgs if m["p"][0] != w.cs]
    assert {m["m"] for m in foreign} == {"timescale_update", "du", "series_completed"}
    assert all(m["p"][1] == "sds_1" for m in foreign if m["m"] == "series_completed")         # the same series id
    ours, theirs = bars_of(msgs, w.cs, "sds_1"), bars_of(msgs, foreign[0]["p"][0], "sds_1")
    assert theirs and all(theirs[i][0] == ours[i][0] and theirs[i][1:5] != ours[i][1:5] for i in theirs)   # same stamps, other prices
    naive = {}
    for m in msgs:                                            # merge by timestamp, stop at the first completion of sds_1
        if m["m"] == "timescale_update": naive.update({it["v"][0]: it["v"] for it in (m["p"][1].get("sds_1") or {}).get("s", [])})
        if m["m"] == "series_completed" and m["p"][1] == "sds_1": break
    assert sorted(naive.values()) != wire_of(BARS, SYM)[-300:]


def test_records_say_kind_adjustment_account_timezone_and_data_quality():
    with ReplayServer(TABLE, BARS, cap=100, realism=True) as srv:
        w = Wire(srv.websocket_url, timezone="Etc/UTC", data_quality="low")
        w.series(SYM, 150, adjustment="dividends"), w.more(50), w.series(OTHER, 10, adjustment=None)
        w.close()
        assert srv.settle()
        rec, sessions = srv.requests_, srv.sessions_
    assert [(r["kind"], r["adjustment"], r["authorized"], r["timezone"], r["data_quality"]) for r in rec] == [
        ("create_series", "dividends", False, "Etc/UTC", "low"), ("request_more_data", "dividends", False, "Etc/UTC", "low"),
        ("create_series", "none", False, "Etc/UTC", "low")]
    assert sessions[0][:7] == ["set_auth_token", "set_locale", "chart_create_session", "switch_timezone", "set_data_quality",
                               "quote_create_session", "quote_set_fields"]


# --- the toolkit's own client against a realistic server ----------------------------------------------------------
def _fetch(srv, syms, bars=300):
    client = HistoryClient(srv.websocket_url, concurrency=2, timeout_s=GUARD_S, retry=RetryPolicy(max_attempts=1))
    return {r.symbol: r for r in client.fetch_many_sync(syms, "1d", bars=bars)}


def test_history_client_fetches_exactly_with_every_behaviour_but_the_foreign_session():
    with ReplayServer(TABLE, BARS, realism=set(REALISM) - {"foreign_session"}, chunk_bars=100) as srv:
        got = _fetch(srv, list(BARS))
    for s, r in got.items():
        assert r.ok, r
        pd.testing.assert_frame_equal(r.bars, BARS[s].tail(300).reset_index(drop=True), check_exact=True)


def test_history_client_fetches_exactly_with_full_realism():
    # NEEDS the client's session-id check (§2, helper STREAM): a client that merges other chart sessions' messages gets
    # the foreign bars (other prices) and stops at the foreign series_completed, so this fails for it — by design.
    with ReplayServer(TABLE, BARS, realism=True, chunk_bars=100) as srv:
        got = _fetch(srv, list(BARS))
    for s, r in got.items():
        assert r.ok, r
        pd.testing.assert_frame_equal(r.bars, BARS[s].tail(300).reset_index(drop=True), check_exact=True)


# --- every fault switch, with and without realism --------------------------------------------------------------------
WS_FAULTS = ["close_mid_stream", "truncated_frame", "marker_in_payload", "symbol_error", "series_error", "critical_error",
             "absent_heartbeats", "slow_heartbeats", "malformed_json"]
HTTP_FAULTS = ["http_429", "http_5xx", "http_malformed_json", "wrong_d_length", "http_error_body"]


def test_every_fault_is_covered_here():
    assert set(WS_FAULTS) | set(HTTP_FAULTS) | {"handshake_429"} == set(FAULTS)


def _raw_frames(w, until):
    "Frames as they come, undecoded, up to the first one for which `until(frame)` holds."
    out = [w.ws.recv(timeout=GUARD_S)]
    while not until(out[-1]): out.append(w.ws.recv(timeout=GUARD_S))
    return out


@pytest.mark.parametrize("realism", [(), True], ids=["plain", "realism"])
@pytest.mark.parametrize("fault", WS_FAULTS)
def test_websocket_faults_fire_as_before(fault, realism):
    with ReplayServer(TABLE, BARS, realism=realism) as srv:
        sw = srv.inject(fault, times=1, symbols=[SYM], **({"delay_s": 0.001} if fault == "slow_heartbeats" else {}))
        w = Wire(srv.websocket_url)
        if fault == "symbol_error":
            assert w.series(SYM, 50)[-1]["p"] == [w.cs, "sds_sym_1", "invalid symbol"]
        elif fault == "series_error":
            assert w.series(SYM, 50)[-1]["p"] == [w.cs, "sds_1", "s1", "custom_resolution"]
        elif fault == "critical_error":
            assert w.series(SYM, 50)[-1] == {"m": "critical_error", "p": [w.cs, "invalid_parameters", "create_series"]} | (
                {"t": w.messages[-1]["t"], "t_ms": w.messages[-1]["t_ms"]} if realism else {})
            with pytest.raises(ConnectionClosed): w.ws.recv(timeout=GUARD_S)
        elif fault == "marker_in_payload":
            msgs = w.series(SYM, 50)
            assert "~m~12~m~" in next(m for m in msgs if m["m"] == "symbol_resolved")["p"][2]["description"]
            assert list(bars_of(msgs, w.cs, "sds_1").values()) == wire_of(BARS, SYM)[-50:]
        elif fault == "slow_heartbeats":
            msgs = w.series(SYM, 50)
            assert list(bars_of(msgs, w.cs, "sds_1").values()) == wire_of(BARS, SYM)[-50:]
            beats = [f for f in w.frames if f.startswith("~m~") and utf16_payloads(f)[0].startswith("~h~")]
            assert len(beats) >= len([m for m in msgs if m["m"] != "symbol_resolved"]) - 1   # a heartbeat before each message
        elif fault == "absent_heartbeats":
            w.request(SYM, 50)
            wait_until(lambda: sw.fired_ == 1)
            w.close()
            assert srv.settle() and srv.requests_ == []                       # silent: nothing was served
        else:
            w.request(SYM, 50)
            answer = _raw_frames(w, lambda f: '"series_loading"' in f)[-1]     # the answer's first frame
            if fault == "close_mid_stream":
                msgs = [orjson.loads(p) for p in utf16_payloads(answer)]
                assert [m["m"] for m in msgs] == ["series_loading", "timescale_update"] and len(bars_of(msgs, w.cs, "sds_1")) == 25
                with pytest.raises(ConnectionClosed): w.ws.recv(timeout=GUARD_S)
            elif fault == "truncated_frame":
                with pytest.raises(AssertionError, match="shorter than its declared length"): utf16_payloads(answer)
            elif fault == "malformed_json":
                with pytest.raises(orjson.JSONDecodeError): [orjson.loads(p) for p in utf16_payloads(answer)]
        w.close()
    assert sw.fired_ == 1


def test_handshake_429_refuses_the_upgrade_with_retry_after():
    with ReplayServer(TABLE, BARS) as srv:
        srv.inject("handshake_429", times=1, retry_after=7)
        with pytest.raises(InvalidStatus) as e: Wire(srv.websocket_url)
        assert e.value.response.status_code == 429 and e.value.response.headers["Retry-After"] == "7"
        Wire(srv.websocket_url).close()                                    # once only
        assert srv.settle() and len(srv.sessions_) == 1


@pytest.mark.parametrize("fault", HTTP_FAULTS)
def test_http_faults_fire_as_before(fault):
    body = {"columns": ["name", "close"]}
    with ReplayServer(TABLE, BARS) as srv, httpx.Client(base_url=srv.scanner_url, trust_env=False) as http:
        srv.inject(fault, times=1)
        r = http.post("/america/scan", json=body)
        if fault == "http_429": assert (r.status_code, r.headers["Retry-After"]) == (429, "1")
        elif fault == "http_5xx": assert r.status_code == 503
        elif fault == "http_malformed_json":
            assert r.status_code == 200
            with pytest.raises(ValueError): r.json()
        elif fault == "wrong_d_length": assert {len(row["d"]) for row in r.json()["data"]} == {1}
        elif fault == "http_error_body": assert (r.status_code, r.json()) == (200, {"totalCount": 0, "data": None, "error": 'Unknown field "foo"'})
        again = http.post("/america/scan", json=body)
        assert again.status_code == 200 and {len(row["d"]) for row in again.json()["data"]} == {2}


def test_http_error_body_on_the_symbol_endpoint_with_a_status():
    with ReplayServer(TABLE, BARS) as srv, httpx.Client(base_url=srv.scanner_url, trust_env=False) as http:
        srv.inject("http_error_body", times=1, symbols=[SYM], status=400, text="incompatible types")
        r = http.get("/symbol", params={"symbol": SYM, "fields": "close"})
        assert (r.status_code, r.json()["error"], r.json()["data"]) == (400, "incompatible types", None)
        assert http.get("/symbol", params={"symbol": SYM, "fields": "close"}).json() == {"close": TABLE.loc[SYM, "close"]}
