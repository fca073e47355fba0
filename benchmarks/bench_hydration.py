"""Hydration throughput: 500 symbols × 3,000 daily bars from the loopback replay server.

The replay server runs in its own process (client and server do not share one interpreter lock; on this
2-core machine they do share the CPUs). Measured in the same run, on the same data:

- pool: `HistoryClient` with the profile's concurrency (8 connections), all 500 symbols;
- baseline: the same symbols one at a time, a new connection per symbol, no concurrency;
- the same pair with 50 ms of simulated network latency per history request (server side), on 100 symbols:
  on loopback the client is CPU-bound (JSON parsing), so concurrency pays where the network is slow;
- the full `IngestionService` into an empty lakehouse (fetch + validate + upsert + catalog refresh);
- peak RSS of the client process.
"""
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

from _common import peak_rss_mb, write_results
from tradingview_scraper.data.hydration import IngestionService
from tradingview_scraper.data.lakehouse import Lakehouse
from tradingview_scraper.tradingview.replay import ReplayServer
from tradingview_scraper.tradingview.scanner import RateLimiter, RetryPolicy, ScannerClient
from tradingview_scraper.tradingview.stream import HistoryClient

N_SYMBOLS, N_BARS, CONCURRENCY, LATENCY_S, N_LATENCY = 500, 3000, 8, 0.05, 100


def serve(conn):
    "Child process: a replay server over a synthetic market; obeys ('latency', s) and ('stop',)."
    srv = ReplayServer.synthetic(n_symbols=N_SYMBOLS, n_bars=N_BARS, seed=0, heartbeat_s=10).start()
    conn.send((srv.scanner_url, srv.websocket_url, list(srv.bars)))
    while True:
        cmd = conn.recv()
        if cmd[0] == "latency": srv.latency_s = cmd[1]; conn.send("ok")
        else: break
    srv.stop()


def timed(fn):
    t0 = time.perf_counter(); out = fn(); return time.perf_counter() - t0, out


def pool_fetch(url, syms, concurrency=CONCURRENCY):
    res = HistoryClient(url, concurrency=concurrency).fetch_many_sync(syms, "1d", bars=N_BARS)
    assert all(r.ok and len(r.bars) == N_BARS for r in res), [r for r in res if not r.ok][:3]
    return res


def one_at_a_time(url, syms):
    client = HistoryClient(url, concurrency=1)
    out = [client.fetch_sync(s, "1d", bars=N_BARS) for s in syms]   # a new connection per call
    assert all(len(b) == N_BARS for b in out)
    return out


def main():
    parent, child = mp.Pipe()
    proc = mp.Process(target=serve, args=(child,), daemon=True)
    proc.start()
    scanner_url, ws_url, syms = parent.recv()
    try:
        HistoryClient(ws_url, concurrency=CONCURRENCY).fetch_many_sync(syms, "1d", bars=1)   # warm the server's wire cache
        figures = {"symbols": N_SYMBOLS, "bars_per_symbol": N_BARS, "concurrency": CONCURRENCY}
        t_pool, res = timed(lambda: pool_fetch(ws_url, syms))
        del res
        t_seq, res = timed(lambda: one_at_a_time(ws_url, syms))
        del res
        bars = N_SYMBOLS * N_BARS
        figures["loopback"] = {"pool_s": round(t_pool, 2), "pool_symbols_per_s": round(N_SYMBOLS / t_pool, 1),
                               "pool_bars_per_s": round(bars / t_pool), "one_at_a_time_s": round(t_seq, 2),
                               "one_at_a_time_symbols_per_s": round(N_SYMBOLS / t_seq, 1), "speedup": round(t_seq / t_pool, 2)}
        print(f"loopback, {N_SYMBOLS} symbols × {N_BARS} bars: pool({CONCURRENCY}) {t_pool:.2f}s = {N_SYMBOLS / t_pool:.1f} symbols/s, "
              f"{bars / t_pool:,.0f} bars/s; one at a time {t_seq:.2f}s; ratio {t_seq / t_pool:.2f}x")

        parent.send(("latency", LATENCY_S)); parent.recv()
        sub = syms[:N_LATENCY]
        t_pool_l, _ = timed(lambda: pool_fetch(ws_url, sub))
        t_seq_l, _ = timed(lambda: one_at_a_time(ws_url, sub))
        parent.send(("latency", 0.0)); parent.recv()
        figures["latency_50ms"] = {"symbols": N_LATENCY, "pool_s": round(t_pool_l, 2), "pool_symbols_per_s": round(N_LATENCY / t_pool_l, 1),
                                   "one_at_a_time_s": round(t_seq_l, 2), "speedup": round(t_seq_l / t_pool_l, 2)}
        print(f"{LATENCY_S * 1000:.0f} ms latency, {N_LATENCY} symbols: pool {t_pool_l:.2f}s, one at a time {t_seq_l:.2f}s, "
              f"ratio {t_seq_l / t_pool_l:.2f}x")

        root = Path(tempfile.mkdtemp()) / "lakehouse"
        retry = RetryPolicy(max_attempts=3, initial_s=0.1)
        svc = IngestionService(Lakehouse(root), HistoryClient(ws_url, concurrency=CONCURRENCY, retry=retry),
                               ScannerClient(scanner_url, retry=retry, limiter=RateLimiter(rate=1000, burst=100)),
                               history_bars=N_BARS, progress=False)
        t_svc, rep = timed(lambda: svc.run(syms, now="2024-06-28 12:00"))
        s = rep.summary
        assert s["fetched"] == N_SYMBOLS and s["bars_added"] + s["quarantined"] == bars, s
        figures["ingestion_service"] = {"seconds": round(t_svc, 2), "symbols_per_s": round(N_SYMBOLS / t_svc, 1),
                                        "bars_per_s": round(bars / t_svc), "bars_stored": s["bars_added"], "quarantined": s["quarantined"]}
        print(f"IngestionService (fetch + validate + upsert + catalog) into an empty lakehouse: {t_svc:.2f}s = "
              f"{N_SYMBOLS / t_svc:.1f} symbols/s, {bars / t_svc:,.0f} bars/s")
        figures["peak_rss_mb"] = round(peak_rss_mb(), 1)
        print(f"peak RSS of the client process: {figures['peak_rss_mb']:.0f} MiB")
        write_results("hydration", figures)
    finally:
        parent.send(("stop",)); proc.join(30)
        if proc.is_alive(): proc.terminate()


if __name__ == "__main__":
    sys.exit(main())
