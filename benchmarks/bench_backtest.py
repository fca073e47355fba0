"""Walk-forward backtest speed and memory, against baselines measured in the same run:

1. real data (skfolio's 20-stock S&P 500 panel, ~8,300 days), train 252 / test 21 (383 rebalances), decide + simulate:
   equal weight, minimum variance, HRP — and skfolio's WalkForward + cross_val_predict on the same job (same results);
2. 500 synthetic assets over the same horizon, minimum variance (Ledoit–Wolf): time and peak memory (own process);
3. simulation alone (fixed targets) against a vectorized numpy day-by-day drift loop;
4. NumericalWorkspace against fresh arrays per window: buffer allocations and time.

skfolio is a dev dependency; the library never imports it.

BLAS threads: a walk-forward decides hundreds of small problems, so each worker should run single-threaded BLAS and
parallelism should come from workers (Ray does this for its workers). The script therefore sets OPENBLAS/OMP/MKL
_NUM_THREADS=1 unless run with --blas-default; the 500-asset case is measured both ways."""
import os
import sys

_BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
if "--blas-default" not in sys.argv:
    for _k in _BLAS_ENV: os.environ.setdefault(_k, "1")

import json
import subprocess
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from _common import best_of, peak_rss_mb, write_results
from tradingview_scraper.backtest.engine import BacktestEngine, NumericalWorkspace, simulate
from tradingview_scraper.backtest.reference import synthetic_returns
from tradingview_scraper.pipelines.allocation import (ERC, HRP, AllocationPipeline, EqualWeight, FreshBuffers, LedoitWolf,
                                                      MaxSharpe, MinVariance)

warnings.filterwarnings("ignore")


def sp500():
    from skfolio.datasets import load_sp500_dataset
    from skfolio.preprocessing import prices_to_returns
    return prices_to_returns(load_sp500_dataset())


def skfolio_seconds(X, estimator, repeat=2):
    from skfolio.model_selection import WalkForward, cross_val_predict
    out = {}
    def run(): out["p"] = cross_val_predict(estimator, X, cv=WalkForward(test_size=21, train_size=252))
    return best_of(run, repeat), out["p"]


def real_data(figures):
    from skfolio.optimization import HierarchicalRiskParity, MeanRisk
    X = sp500(); Xu = X.set_axis(X.index.tz_localize("UTC"))
    engine = BacktestEngine(252, 21, holding="fixed")      # skfolio's convention: fixed weights, no costs, no lag
    print(f"real data: {X.shape[1]} assets × {len(X)} days, train 252 / test 21, {len(engine.folds(len(X)))} rebalances")
    ours = {}
    for name, alloc in [("equal_weight", EqualWeight()), ("min_variance", MinVariance()), ("hrp", HRP()),
                        ("hrp_ward_ordered", HRP(linkage="ward", optimal_ordering=True)), ("erc", ERC()), ("max_sharpe", MaxSharpe())]:
        engine.run(Xu, alloc)                                # warm-up
        ours[name] = best_of(lambda: engine.run(Xu, alloc), 7)
        print(f"  {name:<18} {1e3 * ours[name]:8.1f} ms  decide + simulate")
    with ThreadPoolExecutor(2) as pool:
        two = BacktestEngine(252, 21, holding="fixed", map_fn=pool.map, n_batches=2)
        ours["min_variance_2_threads"] = best_of(lambda: two.run(Xu, MinVariance()), 7)
        ours["hrp_2_threads"] = best_of(lambda: two.run(Xu, HRP()), 7)
    print(f"  (2 decision batches on a thread pool: min variance {1e3 * ours['min_variance_2_threads']:.1f} ms, "
          f"HRP {1e3 * ours['hrp_2_threads']:.1f} ms)")
    sk_mv, p_mv = skfolio_seconds(X, MeanRisk())
    sk_hrp, p_hrp = skfolio_seconds(X, HierarchicalRiskParity())       # skfolio default: ward linkage, optimal leaf ordering
    r_mv = engine.run(Xu, MinVariance()).returns.to_numpy(); r_hrp = engine.run(Xu, HRP(linkage="ward", optimal_ordering=True)).returns.to_numpy()
    gap_mv, gap_hrp = float(np.abs(r_mv - np.asarray(p_mv.returns)).max()), float(np.abs(r_hrp - np.asarray(p_hrp.returns)).max())
    print(f"  skfolio WalkForward + cross_val_predict: min variance {sk_mv:.2f} s, HRP (ward, optimal ordering) {sk_hrp:.2f} s")
    print(f"  ratio min variance {sk_mv / ours['min_variance']:.1f}x (aim 40x), HRP same settings {sk_hrp / ours['hrp_ward_ordered']:.1f}x, "
          f"HRP single linkage {sk_hrp / ours['hrp']:.1f}x (aim 15x)")
    print(f"  same out-of-sample returns: max |Δ| min variance {gap_mv:.1e} (skfolio's solver tolerance), HRP {gap_hrp:.1e}")
    figures["real_data"] = {"assets": X.shape[1], "days": len(X), "rebalances": len(engine.folds(len(X))),
                            "ours_ms": {k: round(1e3 * v, 1) for k, v in ours.items()},
                            "skfolio_s": {"min_variance": round(sk_mv, 3), "hrp_ward_ordered": round(sk_hrp, 3)},
                            "ratio": {"min_variance": round(sk_mv / ours["min_variance"], 1),
                                      "hrp_same_settings": round(sk_hrp / ours["hrp_ward_ordered"], 1),
                                      "hrp_single_linkage": round(sk_hrp / ours["hrp"], 1)},
                            "max_abs_return_gap_vs_skfolio": {"min_variance": gap_mv, "hrp_ward_ordered": gap_hrp}}
    return X


def _vm(field):
    "A memory figure of this process from /proc/self/status, in MiB (None where unavailable)."
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"): return int(line.split()[1]) / 1024
    except OSError: return None

def big_case():
    "Runs in its own process (peak memory of this case alone): 500 synthetic assets, ~8,300 days, minimum variance (Ledoit–Wolf)."
    X = synthetic_returns(8312, 500, n_clusters=12, seed=0, gap_share=0.001)
    try:                                                   # reset the kernel's peak-RSS mark (Linux): measure the run alone
        with open("/proc/self/clear_refs", "w") as f: f.write("5")
    except OSError: pass
    rss0 = _vm("VmRSS")
    t0 = time.perf_counter()
    res = BacktestEngine(252, 21).run(X, MinVariance(covariance=LedoitWolf()))
    dt = time.perf_counter() - t0
    print(json.dumps({"seconds": dt, "peak_rss_mb": _vm("VmHWM") or peak_rss_mb(), "rss_before_mb": rss0, "rebalances": len(res.weights),
                      "decide_s": res.timings["decide_s"], "simulate_s": res.timings["simulate_s"],
                      "held_assets_median": float((res.weights > 0).sum(axis=1).median())}))


def large_universe(figures):
    figures["large_universe"] = {}
    for label, extra, env in (("blas_1_thread", [], {**os.environ, **{k: "1" for k in _BLAS_ENV}}),
                              ("blas_default_threads", ["--blas-default"], {k: v for k, v in os.environ.items() if k not in _BLAS_ENV})):
        out = subprocess.run([sys.executable, __file__, "--big", *extra], capture_output=True, text=True, check=True, env=env)
        big = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"500 synthetic assets × 8312 days, min variance (Ledoit–Wolf), {label}: {big['seconds']:.1f} s "
              f"(decide {big['decide_s']:.1f} s, simulate {big['simulate_s']:.2f} s), peak RSS {big['peak_rss_mb']:.0f} MiB "
              f"(the process held {big['rss_before_mb']:.0f} MiB with the panel loaded before the run), "
              f"median {big['held_assets_median']:.0f} assets held")
        figures["large_universe"][label] = {k: round(v, 3) if isinstance(v, float) else v for k, v in big.items()}


def numpy_drift_loop(values, trade_rows, targets, start, end):
    "Baseline: the usual vectorized-per-day numpy loop (one numpy step per day)."
    h = np.zeros(values.shape[1]); net = np.zeros(end - start)
    R = np.nan_to_num(values)
    trade = dict(zip(trade_rows.tolist(), range(len(trade_rows))))
    for d in range(start, end):
        if d in trade: h = targets[trade[d]].copy()
        port = h @ R[d]
        net[d - start] = port
        h = h * (1.0 + R[d]) / (1.0 + port)
    return net


def simulation_alone(X, figures):
    values = X.to_numpy(); engine = BacktestEngine(252, 21)
    folds = engine.folds(len(X))
    trade_rows = np.array([s for _, _, s, _ in folds]); targets = np.full((len(folds), X.shape[1]), 1.0 / X.shape[1])
    start, end = folds[0][2], folds[-1][3]
    ours = simulate(values, trade_rows, targets, start, end, "drift").net
    base = numpy_drift_loop(values, trade_rows, targets, start, end)
    gap = float(np.abs(ours - base).max())
    with NumericalWorkspace(X.shape[1], 1, preallocate=False) as ws:
        t_ours = best_of(lambda: simulate(values, trade_rows, targets, start, end, "drift", ws=ws), 9)
    t_base = best_of(lambda: numpy_drift_loop(values, trade_rows, targets, start, end), 5)
    print(f"simulation alone ({end - start} days, {len(folds)} trades, drift): {1e3 * t_ours:.1f} ms vs numpy day loop "
          f"{1e3 * t_base:.1f} ms → {t_base / t_ours:.1f}x (same returns to {gap:.1e})")
    figures["simulation"] = {"ours_ms": round(1e3 * t_ours, 2), "numpy_day_loop_ms": round(1e3 * t_base, 2),
                             "speedup": round(t_base / t_ours, 1), "max_abs_gap": gap}


class CountingFresh(FreshBuffers):
    "FreshBuffers that counts what it allocates (the per-window baseline)."
    def __init__(self): self.allocations, self.bytes = 0, 0
    def buf(self, name, shape, dtype=np.float64):
        a = super().buf(name, shape, dtype); self.allocations += 1; self.bytes += a.nbytes; return a


def workspace_vs_fresh(figures):
    rows = {}
    for n_assets in (20, 200):
        X = synthetic_returns(3000, n_assets, n_clusters=6, seed=1)
        vals, folds = X.to_numpy(), BacktestEngine(252, 21).folds(len(X))
        for name, alloc in (("min_variance_lw", MinVariance(covariance=LedoitWolf())), ("hrp", HRP())):
            pipe = AllocationPipeline(alloc)
            ws = NumericalWorkspace(n_assets, 252)
            before = ws.stats["allocations"]
            def window_ws(i):
                a, b, _, _ = folds[i]; ws.reset(); return vals[a:b]
            pipe.run_many(window_ws, len(folds), X.columns, ws=ws)
            grown = ws.stats["allocations"] - before
            fresh = CountingFresh()
            pipe.run_many(lambda i: vals[folds[i][0]:folds[i][1]], len(folds), X.columns, ws=fresh)
            t_ws = best_of(lambda: BacktestEngine(252, 21).run(X, alloc), 3)
            t_fresh = best_of(lambda: BacktestEngine(252, 21, workspace=False).run(X, alloc), 3)
            key = f"{name}_{n_assets}"
            rows[key] = {"windows": len(folds), "workspace_buffers": before, "workspace_allocations_during_windows": grown,
                         "workspace_mib": round(ws.nbytes / 2**20, 2), "fresh_allocations": fresh.allocations,
                         "fresh_mib_allocated": round(fresh.bytes / 2**20, 1), "engine_ms_workspace": round(1e3 * t_ws, 1),
                         "engine_ms_fresh": round(1e3 * t_fresh, 1)}
            print(f"{key:<22} {len(folds)} windows: workspace {before} buffers ({ws.nbytes / 2**20:.2f} MiB) + {grown} during windows; "
                  f"fresh arrays {fresh.allocations} allocations ({fresh.bytes / 2**20:.0f} MiB); engine {1e3 * t_ws:.0f} ms vs "
                  f"{1e3 * t_fresh:.0f} ms")
            ws.release()
    figures["workspace"] = rows


def main():
    if "--big" in sys.argv: return big_case()
    figures = {"load_average_at_start": os.getloadavg()[0], "blas_threads": {k: os.environ.get(k) for k in _BLAS_ENV}}
    print(f"load average at start: {figures['load_average_at_start']:.2f} (timings are wall clock; other processes slow them down); "
          f"BLAS threads: {figures['blas_threads']}")
    X = real_data(figures)
    simulation_alone(X, figures)
    workspace_vs_fresh(figures)
    large_universe(figures)
    write_results("backtest", figures)


if __name__ == "__main__":
    main()
