"""Hydration throughput: 500 symbols × 3,000 daily bars from the loopback replay server (issue 13 §5: ≥ 100 symbols/s).

The replay servers run in their own process (client and server do not share one interpreter lock; on this 2-core
machine they do share the CPUs). Measured in the same run, on the same data:

- pool: `HistoryClient` with the profile's concurrency (8 connections), all 500 symbols — the target figure;
- baseline: the same pool with the decoder's plain reference twin (stdlib `json` and the per-bar array builder),
  i.e. the client's decoding as it was before orjson;
- realism: the same symbols from a server that plays the live service's extra traffic (quotes with emoji, `t`/`t_ms`,
  empty updates, study messages, another chart session's bars);
- deep: 100 symbols × 10,000 bars from a server that answers at most 3,000 bars at a time (`request_more_data` rounds);
- 50 ms of simulated network latency per history request, on 100 symbols: pool against one at a time;
- the full `IngestionService` into an empty lakehouse (fetch + validate + upsert + catalog refresh);
- the client's CPU seconds per symbol (the floor on this machine is the client's CPU: the wire is loopback), and its
  peak RSS.
"""
import json
import multiprocessing as mp
import sys
import tempfile
import time
import types
from contextlib import contextmanager
from pathlib import Path

from _common import peak_rss_mb, write_results
from tradingview_scraper.data.hydration import IngestionService
from tradingview_scraper.data.lakehouse import Lakehouse
from tradingview_scraper.tradingview import stream, wire
from tradingview_scraper.tradingview.replay import ReplayServer
from tradingview_scraper.tradingview.scanner import RateLimiter, RetryPolicy, ScannerClient
from tradingview_scraper.tradingview.stream import HistoryClient

N_SYMBOLS, N_BARS, CONCURRENCY, LATENCY_S, N_LATENCY = 500, 3000, 8, 0.05, 100
N_DEEP, DEEP_BARS, DEEP_CAP = 100, 10_000, 3000


def serve(conn):
    "Child process: plain, realistic and deep replay servers; obeys ('latency', s) and ('stop',)."
    plain = ReplayServer.synthetic(n_symbols=N_SYMBOLS, n_bars=N_BARS, seed=0, heartbeat_s=10).start()
    real = ReplayServer.synthetic(n_symbols=N_SYMBOLS, n_bars=N_BARS, seed=0, heartbeat_s=10, realism=True).start()
    deep = ReplayServer.synthetic(n_symbols=N_DEEP, n_bars=DEEP_BARS, seed=1, heartbeat_s=10, cap=DEEP_CAP).start()
    conn.send({"scanner_url": plain.scanner_url, "plain": plain.websocket_url, "real": real.websocket_url, "deep": deep.websocket_url,
               "symbols": list(plain.bars), "deep_symbols": list(deep.bars)})
    while True:
        cmd = conn.recv()
        if cmd[0] == "latency": plain.latency_s = cmd[1]; conn.send("ok")
        else: break
    for s in (plain, real, deep): s.stop()


def timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def pool_fetch(url, syms, bars=N_BARS, concurrency=CONCURRENCY):
    res = HistoryClient(url, concurrency=concurrency).fetch_many_sync(syms, "1d", bars=bars)
    assert all(r.ok and len(r.bars) == bars and r.stop == "complete" for r in res), [r for r in res if not r.ok or r.stop != "complete"][:3]
    return res


def one_at_a_time(url, syms):
    client = HistoryClient(url, concurrency=1)
    out = [client.fetch_sync(s, "1d", bars=N_BARS) for s in syms]   # a new connection per call
    assert all(len(b) == N_BARS for b in out)
    return out


@contextmanager
def reference_decoder():
    "The client's plain reference twin: stdlib json for the wire and the per-bar Python array builder."
    shim = types.SimpleNamespace(loads=json.loads, JSONDecodeError=json.JSONDecodeError,
                                 dumps=lambda o: json.dumps(o, separators=(",", ":"), ensure_ascii=False).encode())
    saved = wire.orjson, stream._bars_array
    wire.orjson, stream._bars_array = shim, stream._bars_array_reference
    try: yield
    finally:
        wire.orjson, stream._bars_array = saved


def rate(n, seconds): return round(n / seconds, 1)


def main():
    parent, child = mp.Pipe()
    proc = mp.Process(target=serve, args=(child,), daemon=True)
    proc.start()
    urls = parent.recv()
    syms, deep_syms = urls["symbols"], urls["deep_symbols"]
    try:
        for u in ("plain", "real"): HistoryClient(urls[u], concurrency=CONCURRENCY).fetch_many_sync(syms, "1d", bars=N_BARS)  # warm wire caches
        HistoryClient(urls["deep"], concurrency=CONCURRENCY).fetch_many_sync(deep_syms, "1d", bars=DEEP_BARS)
        figures = {"symbols": N_SYMBOLS, "bars_per_symbol": N_BARS, "concurrency": CONCURRENCY, "target_symbols_per_s": 100}
        bars = N_SYMBOLS * N_BARS

        t_pool, cpu_pool, res = timed(lambda: pool_fetch(urls["plain"], syms))
        del res
        with reference_decoder():
            t_ref, cpu_ref, res = timed(lambda: pool_fetch(urls["plain"], syms))
        del res
        t_real, cpu_real, res = timed(lambda: pool_fetch(urls["real"], syms))
        del res
        figures["loopback"] = {"pool_s": round(t_pool, 2), "pool_symbols_per_s": rate(N_SYMBOLS, t_pool), "pool_bars_per_s": round(bars / t_pool),
                               "client_cpu_ms_per_symbol": round(1000 * cpu_pool / N_SYMBOLS, 2),
                               "reference_decoder_s": round(t_ref, 2), "reference_decoder_symbols_per_s": rate(N_SYMBOLS, t_ref),
                               "reference_client_cpu_ms_per_symbol": round(1000 * cpu_ref / N_SYMBOLS, 2),
                               "speedup_vs_reference": round(t_ref / t_pool, 2),
                               "realism_s": round(t_real, 2), "realism_symbols_per_s": rate(N_SYMBOLS, t_real),
                               "meets_target": N_SYMBOLS / t_pool >= 100}
        print(f"loopback, {N_SYMBOLS} symbols × {N_BARS} bars, pool({CONCURRENCY}): {t_pool:.2f}s = {N_SYMBOLS / t_pool:.1f} symbols/s "
              f"(target 100), client CPU {1000 * cpu_pool / N_SYMBOLS:.1f} ms/symbol; reference decoder {t_ref:.2f}s = "
              f"{N_SYMBOLS / t_ref:.1f} symbols/s ({t_ref / t_pool:.2f}x slower); with the live service's extra traffic "
              f"{t_real:.2f}s = {N_SYMBOLS / t_real:.1f} symbols/s")

        t_deep, cpu_deep, res = timed(lambda: pool_fetch(urls["deep"], deep_syms, bars=DEEP_BARS))
        rounds = sorted({r.rounds for r in res})
        del res
        figures["deep_history"] = {"symbols": N_DEEP, "bars_per_symbol": DEEP_BARS, "cap_per_answer": DEEP_CAP, "rounds": rounds,
                                   "seconds": round(t_deep, 2), "symbols_per_s": rate(N_DEEP, t_deep),
                                   "bars_per_s": round(N_DEEP * DEEP_BARS / t_deep)}
        print(f"deep history, {N_DEEP} symbols × {DEEP_BARS} bars at most {DEEP_CAP} per answer ({rounds} rounds): {t_deep:.2f}s = "
              f"{N_DEEP * DEEP_BARS / t_deep:,.0f} bars/s")

        parent.send(("latency", LATENCY_S)); parent.recv()
        sub = syms[:N_LATENCY]
        t_pool_l, _, _ = timed(lambda: pool_fetch(urls["plain"], sub))
        t_seq_l, _, _ = timed(lambda: one_at_a_time(urls["plain"], sub))
        parent.send(("latency", 0.0)); parent.recv()
        figures["latency_50ms"] = {"symbols": N_LATENCY, "pool_s": round(t_pool_l, 2), "pool_symbols_per_s": rate(N_LATENCY, t_pool_l),
                                   "one_at_a_time_s": round(t_seq_l, 2), "speedup": round(t_seq_l / t_pool_l, 2)}
        print(f"{LATENCY_S * 1000:.0f} ms latency, {N_LATENCY} symbols: pool {t_pool_l:.2f}s, one at a time {t_seq_l:.2f}s, "
              f"ratio {t_seq_l / t_pool_l:.2f}x")

        root = Path(tempfile.mkdtemp()) / "lakehouse"
        retry = RetryPolicy(max_attempts=3, initial_s=0.1)
        svc = IngestionService(Lakehouse(root), HistoryClient(urls["plain"], concurrency=CONCURRENCY, retry=retry),
                               ScannerClient(urls["scanner_url"], retry=retry, limiter=RateLimiter(rate=1000, burst=100)),
                               history_bars=N_BARS, progress=False)
        t_svc, cpu_svc, rep = timed(lambda: svc.run(syms, now="2024-06-28 12:00"))
        s = rep.summary
        assert s["fetched"] == N_SYMBOLS and s["bars_added"] + s["quarantined"] == bars, s
        figures["ingestion_service"] = {"seconds": round(t_svc, 2), "symbols_per_s": rate(N_SYMBOLS, t_svc),
                                        "bars_per_s": round(bars / t_svc), "bars_stored": s["bars_added"], "quarantined": s["quarantined"],
                                        "client_cpu_ms_per_symbol": round(1000 * cpu_svc / N_SYMBOLS, 2)}
        print(f"IngestionService (fetch + validate + upsert + catalog) into an empty lakehouse: {t_svc:.2f}s = "
              f"{N_SYMBOLS / t_svc:.1f} symbols/s, {bars / t_svc:,.0f} bars/s, client CPU {1000 * cpu_svc / N_SYMBOLS:.1f} ms/symbol")
        figures["peak_rss_mb"] = round(peak_rss_mb(), 1)
        print(f"peak RSS of the client process: {figures['peak_rss_mb']:.0f} MiB")
        write_results("hydration", figures)
    finally:
        parent.send(("stop",)); proc.join(30)
        if proc.is_alive(): proc.terminate()


if __name__ == "__main__":
    sys.exit(main())
