"""Lakehouse at scale: write 5,000 synthetic symbols (~2,520 daily bars each), build the full returns
matrix, and upsert one symbol. Targets on 2 cores: matrix < 10 s with peak RSS < 2 GB; upsert < 20 ms.
The baseline is a naive pandas build (pd.read_parquet per file, pct_change, pd.concat) measured in the
same run. Each build runs in a fresh process so its peak RSS is its own.

    .venv/bin/python benchmarks/bench_lakehouse.py [--symbols 5000]
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _common import best_of, write_results


def build(mode: str, root: str) -> dict:
    from tradingview_scraper.data.lakehouse import Lakehouse
    from tradingview_scraper.data.loader import DataLoader
    lh = Lakehouse(root)
    t0 = time.perf_counter()
    if mode == "ours":
        res = DataLoader(lh, record_quarantine=False).load()
        shape = res.returns.shape
    else:   # naive baseline: what a first version would do, with no validation at all
        files = sorted((lh.root / "ohlcv" / "interval=1d").glob("*.parquet"))
        cols = {f.stem: pd.read_parquet(f).set_index("ts")["close"].pct_change() for f in files}
        shape = pd.concat(cols, axis=1).sort_index().shape
    secs = time.perf_counter() - t0
    return {"seconds": secs, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "shape": list(shape)}


def write_lake(symbols: int, root: str) -> dict:
    from tradingview_scraper.data.lakehouse import Lakehouse
    from tradingview_scraper.data.sample import SyntheticMarket
    n_eq = int(symbols * 0.8)        # equities on weekdays (~2,520 bars over 3,528 days) and 24/7 crypto
    t0 = time.perf_counter()
    data = SyntheticMarket(n_equities=n_eq, n_crypto=symbols - n_eq, n_days=3528, seed=1).generate()
    gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    data.write(Lakehouse(root))
    return {"generate_seconds": gen, "write_seconds": time.perf_counter() - t0, "bars": sum(len(b) for b in data.bars.values())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", type=int, default=5000)
    ap.add_argument("--build", choices=["ours", "naive"])
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--root")
    a = ap.parse_args()
    if a.build:
        print(json.dumps(build(a.build, a.root))); return
    if a.write:
        print(json.dumps(write_lake(a.symbols, a.root))); return
    # the parent stays small: children inherit its peak RSS on Linux, so the heavy work runs in children
    from tradingview_scraper.data.lakehouse import Lakehouse
    root = tempfile.mkdtemp(prefix="tvs-bench-lake-")
    load_before = os.getloadavg()[0]
    out = subprocess.run([sys.executable, __file__, "--write", "--symbols", str(a.symbols), "--root", root],
                         capture_output=True, text=True, check=True)
    w = json.loads(out.stdout.strip().splitlines()[-1])
    gen, write, bars_total = w["generate_seconds"], w["write_seconds"], w["bars"]
    print(f"generated {a.symbols} symbols, {bars_total:,} bars in {gen:.1f}s; wrote the lakehouse in {write:.1f}s "
          f"({write / a.symbols * 1e3:.1f} ms/symbol)")
    lh = Lakehouse(root)
    sym = lh.symbols()[0]
    last = lh.read_ohlcv(sym).iloc[[-1]].copy()
    upd = [0]
    def upsert():
        upd[0] += 1
        b = last.copy(); b["ts"] = b["ts"] + pd.Timedelta(days=upd[0]); lh.write_ohlcv(sym, b)
    ups = best_of(upsert, 20)
    runs = {}
    for mode in ("ours", "naive"):
        out = subprocess.run([sys.executable, __file__, "--build", mode, "--root", root], capture_output=True, text=True, check=True)
        runs[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    ours, naive = runs["ours"], runs["naive"]
    print(f"returns matrix {ours['shape']}: ours {ours['seconds']:.2f}s (peak RSS {ours['peak_rss_mb']:.0f} MB), "
          f"naive pandas {naive['seconds']:.2f}s (peak RSS {naive['peak_rss_mb']:.0f} MB): {naive['seconds'] / ours['seconds']:.2f}x")
    print(f"one-symbol upsert ({len(lh.read_ohlcv(sym))} bars stored): {ups * 1e3:.1f} ms")
    print(f"machine load average before the run: {load_before:.2f} (2 cores); results are noisy when it is high")
    write_results("lakehouse", {"symbols": a.symbols, "bars": bars_total, "write_seconds": round(write, 2),
                                "matrix_seconds": round(ours["seconds"], 3), "matrix_peak_rss_mb": round(ours["peak_rss_mb"]),
                                "naive_seconds": round(naive["seconds"], 3), "naive_peak_rss_mb": round(naive["peak_rss_mb"]),
                                "speedup_vs_naive": round(naive["seconds"] / ours["seconds"], 2),
                                "upsert_ms": round(ups * 1e3, 2), "matrix_shape": ours["shape"], "load_average": round(load_before, 2),
                                "note": "ours also validates every bar (contracts, quarantine rules, density); the naive baseline validates nothing"})
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
