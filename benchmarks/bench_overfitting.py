"""CSCV (the Probability of Backtest Overfitting) with 16 partitions on 8,000 rows × 50 cells (issue 15: under 2 s
on 2 cores), against baselines measured in the same run:

1. `cscv`: per-block sums and the combination-indicator matrix (12,870 splits as a few matrix products);
2. baseline A, full size: the usual implementation (as in pypbo / RiskLabAI, but vectorized over the cells) — for
   each split, gather the IS and OOS rows and compute every cell's Sharpe with numpy;
3. baseline B, the plain twin `cscv_reference` (a loop over splits and cells with `compute_metrics`), at a stated
   smaller size: the same 8,000 × 50 matrix with 8 partitions (70 splits), against `cscv` at that size.

Every baseline must give the same PBO and chosen cells as `cscv`.

4. independent implementation, when importable (not a dependency: it pulls numba, llvmlite, sympy and `ta`):
   RiskLabAI's `probability_of_backtest_overfitting` on seeded grids whose rows S divides (it cuts blocks with
   `np.array_split` and ranks ordinally, so only then are the definitions the same). Without it the results file says
   "not installed"."""
import itertools
import math
import time

import numpy as np

from _common import best_of, peak_rss_mb, write_results
from tradingview_scraper.backtest.overfitting import cscv, cscv_reference, partition_bounds

N_ROWS, N_CELLS, S, S_TWIN = 8000, 50, 16, 8


def grid(seed: int = 0) -> np.ndarray:
    "50 noise cells with small edges on 5 of them (daily returns, 1% volatility)."
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.01, (N_ROWS, N_CELLS))
    x[:, :5] += np.linspace(0.0002, 0.0006, 5)
    return x


def per_split_numpy(x: np.ndarray, n_partitions: int) -> tuple[float, np.ndarray]:
    "Baseline A: for each split gather its rows and compute every cell's Sharpe (ranking only: √ppy omitted)."
    bounds = partition_bounds(len(x), n_partitions)
    chosen, logits = [], []
    for c in itertools.combinations(range(n_partitions), n_partitions // 2):
        is_rows = np.concatenate([np.arange(*bounds[s]) for s in c])
        oos_rows = np.concatenate([np.arange(*bounds[s]) for s in range(n_partitions) if s not in c])
        a, b = x[is_rows], x[oos_rows]
        r_is, r_oos = a.mean(0) / a.std(0, ddof=1), b.mean(0) / b.std(0, ddof=1)
        j = int(np.argmax(r_is))
        rank = 1 + (r_oos < r_oos[j]).sum() + ((r_oos == r_oos[j]).sum() - 1) / 2
        w = rank / (x.shape[1] + 1)
        chosen.append(j)
        logits.append(math.log(w / (1 - w)))
    logits = np.array(logits)
    return float(np.mean(logits <= 0)), np.array(chosen)


def risklabai_check() -> dict | str:
    "Item 4: RiskLabAI's PBO and logits against `cscv` on seeded grids (or 'not installed')."
    try:
        from RiskLabAI.backtest.probability_of_backtest_overfitting import probability_of_backtest_overfitting
    except ImportError:
        return "not installed"
    def sharpe(x, rf):                       # per-period Sharpe, ddof 1 as compute_metrics (ranks ignore √ppy)
        return (np.mean(x) - rf) / np.std(x, ddof=1)
    out = {}
    for seed, (t, n, s) in enumerate([(1000, 10, 8), (2000, 20, 10), (1596, 30, 12), (960, 7, 6)]):
        rng = np.random.default_rng(100 + seed)
        x = rng.normal(0.0, 0.01, (t, n))
        x[:, 0] += 0.0004 * seed
        t0 = time.perf_counter()
        pbo, logits = probability_of_backtest_overfitting(x, s, 0.0, sharpe)
        s_rl = time.perf_counter() - t0
        r = cscv(x, s)
        gap = float(np.abs(np.asarray(logits, dtype=float) - r.logits).max())
        print(f"  RiskLabAI on {t} × {n}, S = {s}: PBO {pbo:.6f} vs cscv {r.pbo:.6f}, max |Δ logit| {gap:.1e} ({s_rl:.2f} s)")
        out[f"{t}x{n}_S{s}"] = {"pbo_risklabai": float(pbo), "pbo_cscv": r.pbo, "max_abs_logit_gap": gap,
                                "risklabai_s": round(s_rl, 3)}
    return out


def main():
    x = grid()
    print(f"CSCV on {N_ROWS:,} rows × {N_CELLS} cells, S = {S} ({math.comb(S, S // 2):,} splits)")
    res = cscv(x, S)
    s_fast = best_of(lambda: cscv(x, S), 7)
    t0 = time.perf_counter()
    pbo_a, chosen_a = per_split_numpy(x, S)
    s_a = time.perf_counter() - t0
    same_a = pbo_a == res.pbo and np.array_equal(chosen_a, res.chosen)
    print(f"  cscv (block sums)             {1e3 * s_fast:8.1f} ms   (target < 2000 ms)   PBO {res.pbo:.4f}")
    print(f"  baseline A, per-split numpy   {1e3 * s_a:8.1f} ms   ({s_a / s_fast:.0f}x)   same PBO and winners: {same_a}")
    s_twin_fast = best_of(lambda: cscv(x, S_TWIN), 7)
    t0 = time.perf_counter()
    ref = cscv_reference(x, S_TWIN)
    s_twin = time.perf_counter() - t0
    small = cscv(x, S_TWIN)
    same_b = ref.pbo == small.pbo and np.array_equal(ref.chosen, small.chosen)
    gap = float(np.abs(ref.logits - small.logits).max())
    print(f"  at S = {S_TWIN} ({math.comb(S_TWIN, S_TWIN // 2)} splits): cscv {1e3 * s_twin_fast:.1f} ms, "
          f"reference twin {1e3 * s_twin:.0f} ms ({s_twin / s_twin_fast:.0f}x); same PBO and winners: {same_b}, "
          f"max |Δ logit| {gap:.1e}")
    figures = {"rows": N_ROWS, "cells": N_CELLS, "n_partitions": S, "n_combinations": res.n_combinations,
               "cscv_s": round(s_fast, 4), "target_s": 2.0, "under_target": bool(s_fast < 2.0), "pbo": res.pbo,
               "baseline_per_split_numpy_s": round(s_a, 3), "ratio_per_split_numpy": round(s_a / s_fast, 1),
               "baseline_same_result": bool(same_a),
               "twin": {"n_partitions": S_TWIN, "n_combinations": small.n_combinations, "cscv_s": round(s_twin_fast, 5),
                        "reference_s": round(s_twin, 3), "ratio": round(s_twin / s_twin_fast, 1),
                        "same_result": bool(same_b), "max_abs_logit_gap": gap},
               "independent_risklabai": risklabai_check(),
               "peak_rss_mb": round(peak_rss_mb(), 1)}
    write_results("overfitting", figures)


if __name__ == "__main__":
    main()
