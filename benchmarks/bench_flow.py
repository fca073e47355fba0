"""Production flow: the canary run end to end (serial and Ray), a grid of 8 (profile × allocator) backtest
cells serial vs Ray on this machine, and Ray's start-up cost reported separately.

    .venv/bin/python benchmarks/bench_flow.py [--skip-canary]
"""
import argparse
import os
import tempfile
import time
from functools import partial
from pathlib import Path

import psutil

from _common import write_results

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def rss_mb() -> float:
    "Resident memory of this process and its children (Ray workers included), MiB."
    p = psutil.Process()
    return (p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))) / 2**20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-canary", action="store_true")
    a = ap.parse_args()
    from tradingview_scraper.profile import load_profile
    from tradingview_scraper.data.loader import DataLoader
    from tradingview_scraper.data.sample import sample_lakehouse
    from tradingview_scraper.orchestration.flow import _backtest_cell, run_flow
    from tradingview_scraper.orchestration.runner import RayExecutor, SerialExecutor
    out = {}
    tmp = Path(tempfile.mkdtemp(prefix="tvs-bench-flow-"))
    # Ray start-up, measured alone
    t0 = time.perf_counter()
    ex = RayExecutor(num_cpus=os.cpu_count())
    ex.map(abs, [-1])
    out["ray_startup_s"] = round(time.perf_counter() - t0, 2)
    print(f"ray start-up (init + first task): {out['ray_startup_s']:.2f}s")
    # grid: 2 profiles × 4 allocators on the shipped sample (selection + synthesis in every window)
    lake = sample_lakehouse(tmp / "lake")
    returns = DataLoader(lake, record_quarantine=False).load().returns
    cells = [(prof, name) for prof in ("canary", "development") for name in ("equal_weight", "inverse_volatility", "min_variance", "hrp")]
    profiles = {p: load_profile(p, env={}, overrides={"data.start": "2008-01-01"}) for p in ("canary", "development")}
    def run_cell(cell):
        prof, name = cell
        return _backtest_cell(name, returns=returns.loc["2008":], profile=profiles[prof], universe=None)
    t0 = time.perf_counter(); serial = SerialExecutor().map(run_cell, cells); ts = time.perf_counter() - t0
    t0 = time.perf_counter(); ray_res = ex.map(run_cell, cells); tr = time.perf_counter() - t0
    same = all(a["returns"].equals(b["returns"]) and a["weights"].equals(b["weights"]) for a, b in zip(serial, ray_res))
    out["grid"] = {"cells": len(cells), "serial_s": round(ts, 2), "ray_s": round(tr, 2), "speedup": round(ts / tr, 2),
                   "identical": same, "peak_rss_mb_with_workers": round(rss_mb())}
    print(f"grid of {len(cells)} cells: serial {ts:.1f}s, ray {tr:.1f}s ({ts / tr:.2f}x), identical results: {same}")
    ex.close()
    if not a.skip_canary:
        for kind in ("serial", "ray"):
            t0 = time.perf_counter()
            r = run_flow("canary", runs_root=tmp / "runs", lakehouse_root=tmp / "lake", executor=kind, env={})
            secs = time.perf_counter() - t0
            out[f"canary_{kind}_s"] = round(secs, 1)
            out[f"canary_{kind}_steps_s"] = {k: v.get("seconds") for k, v in r.status["steps"].items()}
            print(f"canary flow ({kind}): {secs:.1f}s end to end; steps {out[f'canary_{kind}_steps_s']}")
    out["load_average"] = round(os.getloadavg()[0], 2)
    write_results("flow", out)


if __name__ == "__main__":
    main()
