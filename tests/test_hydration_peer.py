"""The chart-history client against an *independent* peer.

The peer below is written from the protocol notes (shared/tradingview-protocol.md §2) without any project code:
its own framing, its own message shapes, realistic extras (greeting, symbol_resolved, series_loading, quote noise,
timescale_update with extra keys, overlapping and out-of-order updates, du, updates of other series, heartbeats
inside frames, `~m~` inside strings, several messages per frame). The client must return exactly the bars served,
with the daily session-open stamps converted to session dates.
"""
import asyncio
import json
import re
import threading
import zoneinfo
from datetime import date, datetime, time as dtime, timezone

import numpy as np
import pandas as pd
import pytest
from websockets.asyncio.server import serve

from tradingview_scraper.tradingview.scanner import RetryPolicy
from tradingview_scraper.tradingview.stream import HistoryClient, SeriesError, SymbolError

_LEN = re.compile(r"~m~(\d+)~m~")


def frame(*payloads) -> str:
    out = []
    for p in payloads:
        s = p if isinstance(p, str) else json.dumps(p)
        out.append(f"~m~{len(s)}~m~{s}")
    return "".join(out)


def unframe(text: str) -> list:
    out, i = [], 0
    while i < len(text):
        m = _LEN.match(text, i)
        assert m, f"client sent a badly framed message: {text[i:i + 40]!r}"
        start = m.end()
        out.append(text[start:start + int(m.group(1))])
        i = start + int(m.group(1))
    return out


def stamp(d: date, tz: str, hhmm: str) -> int:
    "Session-open stamp of session date `d` in exchange time zone `tz`."
    local = datetime.combine(d, dtime(int(hhmm[:2]), int(hhmm[2:])), tzinfo=zoneinfo.ZoneInfo(tz))
    return int(local.astimezone(timezone.utc).timestamp())


def make_bars(dates, tz, hhmm, seed, volume=True):
    rng = np.random.default_rng(seed)
    px = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.02, len(dates)))), 2)
    rows = []
    for d, c in zip(dates, px):
        o = round(float(c) * 0.995, 2)
        v = [stamp(d, tz, hhmm) if hhmm else int(datetime.combine(d, dtime(), timezone.utc).timestamp()),
             o, round(float(c) * 1.01, 2), round(float(c) * 0.98, 2), float(c)]
        if volume: v.append(float(rng.integers(1_000, 1_000_000)))
        rows.append(v)
    return rows


NY_DATES = [d.date() for d in pd.bdate_range("2024-02-26", "2024-03-15")]      # spans the US DST switch (2024-03-10)
SYMBOLS = {
    "NASDAQ:AAPL": {"tz": "America/New_York", "session": "0930-1600", "bars": make_bars(NY_DATES, "America/New_York", "0930", 1)},
    "SP:SPX": {"tz": "America/New_York", "session": "0930-1600", "bars": make_bars(NY_DATES, "America/New_York", "0930", 2, volume=False)},
    # the ASX opens at 10:00 Sydney, i.e. 23:00 or 00:00 UTC of the day *before* the session date (DST ends 2024-04-07)
    "ASX:BHP": {"tz": "Australia/Sydney", "session": "1000-1600",
                "bars": make_bars([d.date() for d in pd.bdate_range("2024-03-25", "2024-04-12")], "Australia/Sydney", "1000", 4)},
    "BINANCE:BTCUSDT": {"tz": "Etc/UTC", "session": "24x7",
                        "bars": make_bars([d.date() for d in pd.date_range("2024-03-01", periods=30)], "Etc/UTC", "0000", 3)},
}
DU_CLOSE = 4242.42  # the live update changes the last bar's close: the client must keep the update


class Peer:
    "A minimal TradingView-like chart server on 127.0.0.1 (background thread)."

    def __init__(self):
        self.methods, self.params, self.headers, self.echoes = [], [], [], []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def main():
            self.server = await serve(self.handler, "127.0.0.1", 0, ping_interval=None)
            self.port = self.server.sockets[0].getsockname()[1]
            self.stop_event = asyncio.Event()
            ready.set()
            await self.stop_event.wait()
            self.server.close()
            await self.server.wait_closed()

        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(main(),), daemon=True)
        self.thread.start()
        assert ready.wait(60), "the peer server did not start"   # a hang guard: start-up sets the event
        self.url = f"ws://127.0.0.1:{self.port}/socket.io/websocket?from=chart/&type=chart"

    def stop(self):
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(10)

    async def handler(self, ws):
        self.headers.append(ws.request.headers)
        inbox: asyncio.Queue = asyncio.Queue()
        hb = 0

        async def reader():
            try:
                async for text in ws:
                    for p in unframe(text):
                        if p.startswith("~h~"): self.echoes.append(p); inbox.put_nowait(("echo", p)); continue
                        msg = json.loads(p)
                        self.methods.append(msg["m"]); self.params.append(msg["p"])
                        inbox.put_nowait((msg["m"], msg["p"]))
            finally:
                inbox.put_nowait(("closed", None))

        task = asyncio.create_task(reader())
        greeting = {"session_id": "<0.17.42>_ams1-charts-free-4-webchart-7@ams1-compute-7_x", "timestamp": 1710000000,
                    "timestampMs": 1710000000123, "release": "registry.tradingview.com:5000/charts/data:dev-55-g1", "protocol": "json",
                    "studies_metadata_hash": "a" * 40, "auth_scheme_vsn": 2, "via": "10.0.0.1:443", "javastudies": ["3.66"]}
        hb += 1
        await ws.send(frame(greeting, f"~h~{hb}"))          # greeting and a heartbeat in one frame
        resolved = {}
        try:
            while True:
                m, p = await inbox.get()
                if m == "closed": return
                if m == "resolve_symbol":
                    spec = json.loads(p[2][1:])
                    sym = spec["symbol"]
                    if sym not in SYMBOLS:
                        await ws.send(frame({"m": "symbol_error", "p": [p[0], p[1], "invalid symbol"]}))
                        continue
                    resolved[p[1]] = sym
                    info = SYMBOLS[sym]
                    await ws.send(frame({"m": "symbol_resolved", "p": [p[0], p[1], {
                        "name": sym.split(":")[1], "full_name": sym, "exchange": sym.split(":")[0], "timezone": info["tz"],
                        "session": info["session"], "pricescale": 100, "minmov": 1, "type": "stock",
                        "description": "Odd ~m~14~m~ name with ~h~3 and ~m~ markers", "has_intraday": True}]}))
                elif m == "create_series":
                    cs, sds, sid, sym_id, res, n = p[:6]
                    if sym_id not in resolved or res not in ("1D", "60"):
                        await ws.send(frame({"m": "series_error", "p": [cs, sds, sid, "resolution_not_entitled"]}))
                        continue
                    bars = SYMBOLS[resolved[sym_id]]["bars"][-n:]
                    half = len(bars) // 2
                    first, second = bars[:half + 2], bars[half:]               # overlapping updates
                    upd = lambda rows: {"m": "timescale_update", "p": [cs, {sds: {
                        "node": "ams1-compute-7", "s": [{"i": i, "v": v} for i, v in enumerate(rows)],
                        "ns": {"d": "", "indexes": []}, "t": sid, "lbs": {"bar_close_time": rows[-1][0], "note": "~m~12~m~ {\"m\":1}"}}},
                        {"index": len(rows) - 1, "zoffset": 0, "changes": [], "marks": [], "index_diff": []}]}
                    noise = {"m": "qsd", "p": ["qs_x", {"n": "NASDAQ:AAPL", "s": "ok", "v": {"lp": 1.0}}]}
                    other = {"m": "du", "p": [cs, {"sds_999": {"s": [{"i": 0, "v": [1, 2.0, 2.0, 2.0, 2.0, 2.0]}]}}]}
                    await ws.send(frame({"m": "series_loading", "p": [cs, sds, sid]}, noise, upd(second[::-1])))
                    hb += 1
                    await ws.send(frame(f"~h~{hb}", upd(first), other))
                    while True:                                                # no completion before the echo
                        kind, payload = await inbox.get()
                        if kind == "closed": return
                        if kind == "echo" and payload == f"~h~{hb}": break
                    last = list(bars[-1]); last[4] = DU_CLOSE; last[2] = max(last[2], DU_CLOSE)
                    du = {"m": "du", "p": [cs, {sds: {"s": [{"i": len(bars) - 1, "v": last}], "ns": {"d": "", "indexes": "nochange"},
                                                      "t": sid, "lbs": {}}}]}
                    await ws.send(frame(du, {"m": "series_completed", "p": [cs, sds, "streaming", sid, {"rt_update_period": 1}]},
                                        {"m": "quote_completed", "p": ["qs_x", "NASDAQ:AAPL"]}))
        finally:
            task.cancel()


def expected(sym, n, resolution="1D"):
    info = SYMBOLS[sym]
    rows = [list(v) for v in info["bars"][-n:]]
    rows[-1][4] = DU_CLOSE; rows[-1][2] = max(rows[-1][2], DU_CLOSE)
    zone = zoneinfo.ZoneInfo(info["tz"])
    if resolution == "1D":
        ts = [pd.Timestamp(datetime.fromtimestamp(v[0], zone).date(), tz="UTC") for v in rows]
    else:
        ts = [pd.Timestamp(v[0], unit="s", tz="UTC") for v in rows]
    return pd.DataFrame({"ts": pd.DatetimeIndex(ts).as_unit("ns"), "open": [float(v[1]) for v in rows], "high": [float(v[2]) for v in rows],
                         "low": [float(v[3]) for v in rows], "close": [float(v[4]) for v in rows],
                         "volume": [float(v[5]) if len(v) > 5 else np.nan for v in rows]})


@pytest.fixture(scope="module")
def peer():
    p = Peer()
    yield p
    p.stop()


def test_client_returns_exactly_the_bars_served(peer):
    client = HistoryClient(peer.url, concurrency=1, timeout_s=10, retry=RetryPolicy(max_attempts=2, initial_s=0.01))
    results = client.fetch_many_sync(["NASDAQ:AAPL", "SP:SPX", "BINANCE:BTCUSDT", "NASDAQ:NOPE"], "1d", bars=12)
    for r, sym in zip(results[:3], ["NASDAQ:AAPL", "SP:SPX", "BINANCE:BTCUSDT"]):
        assert r.ok, r
        pd.testing.assert_frame_equal(r.bars, expected(sym, 12), check_exact=True)
        assert r.info["timezone"] == SYMBOLS[sym]["tz"] and "~m~14~m~" in r.info["description"]
    assert isinstance(results[3].error, SymbolError) and results[3].attempts == 1
    # NY daily bars across the DST switch land on their session dates (09:30 NY is 14:30 or 13:30 UTC)
    assert results[0].bars["ts"].dt.strftime("%Y-%m-%d").tolist() == [d.isoformat() for d in NY_DATES[-12:]]
    assert results[1].bars["volume"].isna().all()        # an index without volume


def test_session_dates_east_of_utc(peer):
    bars = HistoryClient(peer.url).fetch_sync("ASX:BHP", "1d", bars=15)
    pd.testing.assert_frame_equal(bars, expected("ASX:BHP", 15), check_exact=True)
    assert bars["ts"].dt.day_of_week.max() <= 4, "session dates are week days, never the UTC date of the open"


def test_protocol_order_and_headers(peer):
    n0 = len(peer.methods)
    HistoryClient(peer.url, concurrency=1).fetch_sync("NASDAQ:AAPL", "1D", bars=5)
    seq = peer.methods[n0:]
    assert seq == ["set_auth_token", "set_locale", "chart_create_session", "switch_timezone", "quote_create_session",
                   "quote_set_fields", "resolve_symbol", "create_series", "remove_series"]
    params = dict(zip(seq, peer.params[n0:]))
    assert params["set_auth_token"] == ["unauthorized_user_token"] and params["set_locale"] == ["en", "US"]
    cs = params["chart_create_session"][0]
    assert re.fullmatch(r"cs_[a-z0-9]{12}", cs) and re.fullmatch(r"qs_[a-z0-9]{12}", params["quote_create_session"][0])
    assert params["switch_timezone"] == [cs, "exchange"]           # sent always: the chart's zone is explicit (Step 9)
    sym_id = params["resolve_symbol"][1]
    assert params["resolve_symbol"][0] == cs and json.loads(params["resolve_symbol"][2][1:]) == {"adjustment": "splits", "symbol": "NASDAQ:AAPL"}
    assert params["create_series"][0] == cs and params["create_series"][3] == sym_id and params["create_series"][4:] == ["1D", 5, ""]
    assert params["remove_series"] == [cs, params["create_series"][1]]
    h = peer.headers[-1]
    assert h.get("Origin") == "https://www.tradingview.com" and h.get("User-Agent", "").startswith("tradingview_scraper/")
    assert "~h~1" in peer.echoes and "~h~2" in peer.echoes      # heartbeats echoed unchanged


def test_several_symbols_share_one_connection(peer):
    n_conn = len(peer.headers)
    client = HistoryClient(peer.url, concurrency=1)
    results = client.fetch_many_sync(["NASDAQ:AAPL", "BINANCE:BTCUSDT", "NASDAQ:AAPL"], "1d", bars=3)
    assert all(r.ok for r in results) and len(peer.headers) == n_conn + 1
    pd.testing.assert_frame_equal(results[2].bars, expected("NASDAQ:AAPL", 3))


def test_intraday_stamps_are_kept(peer):
    bars = HistoryClient(peer.url).fetch_sync("BINANCE:BTCUSDT", "60", bars=7)
    pd.testing.assert_frame_equal(bars, expected("BINANCE:BTCUSDT", 7, "60"))


def test_series_error_is_typed(peer):
    r = HistoryClient(peer.url).fetch_many_sync(["NASDAQ:AAPL"], "1W", bars=3)[0]
    assert isinstance(r.error, SeriesError) and r.attempts == 1 and r.bars is None
