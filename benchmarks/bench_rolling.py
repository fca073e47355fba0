"""Rolling selection features of a walk-forward: 500 columns × 8,295 daily rows, 383 decisions every 21 rows, a
252-row training window. Computed once over the panel (`FeaturePanel`: LONG and SHORT streams of every column)
against the baseline in the same run: `compute_features` on every fold's window (what each fold does without a
panel). Also the per-fold remainder with a panel (CVaR, skew, kurtosis from the window, `rolled=`), the worst gap
to the per-fold twin, the floor (bytes the passes over the panel move at the machine's bandwidth; FLOPs) and, when
the gap to the floor is above 10×, a cProfile top-10."""
import time

import numpy as np
import pandas as pd

from _common import floor_seconds, gap, machine_floor, peak_rss_mb, profile_summary, write_results
from tradingview_scraper.pipelines.features import (ROLLING_FEATURES, FeatureParams, FeaturePanel, compute_features,
                                                    rolling_features)

T, N, STEP, WINDOW = 8295, 500, 21, 252
K = 383
# passes over a T × N array per direction, counted in `rolling_features` (each reads and writes T × N float64 or int64):
# valid, x0, n, ruin, log1p + its cumsum, S1, |x0| + cumsum, x0² + cumsum (9 + 3 sums' temporaries ~ 12);
# constant windows ~ 10 (last/prev/before/change/next/cumsum); entropy m=3: 3 comparisons + code + 6 indicators and
# their cumsums ~ 16; Hurst 5 lags × (ok, inc, inc², 3 cumsums) = 30, plus P and G = 2.
PASSES_PER_DIRECTION = 12 + 10 + 16 + 30 + 2


def market(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_t(4, size=(T, N)) * rng.uniform(0.008, 0.03, N) + rng.normal(3e-4, 5e-4, N), -0.95)
    x[rng.random((T, N)) < 0.02] = np.nan                                # gaps
    listed = rng.integers(0, T // 2, N)
    x[np.arange(T)[:, None] < np.where(rng.random(N) < 0.3, listed, 0)] = np.nan   # late listings
    x[:, 7] = 0.0                                                        # a stale column
    idx = pd.date_range("1994-01-03", periods=T, freq="D", tz="UTC")
    return pd.DataFrame(x, index=idx, columns=[f"BENCH:A{i:04d}" for i in range(N)])


def main():
    frame = market()
    x = frame.to_numpy()
    ends = WINDOW + STEP * np.arange(K)
    assert ends[-1] < T
    times = frame.index[ends + 1]                                        # the decision right after each window's end
    p = FeatureParams()
    t0 = time.perf_counter(); panel = FeaturePanel(frame, times, WINDOW, p); rolled_s = time.perf_counter() - t0
    t0 = time.perf_counter(); long_only = rolling_features(x, ends, WINDOW, p); long_s = time.perf_counter() - t0
    # baseline, same run: compute_features on every fold's window (LONG streams: one direction per column)
    t0 = time.perf_counter()
    base = [compute_features(x[e - WINDOW + 1:e + 1], p) for e in ends]
    base_s = time.perf_counter() - t0
    # the per-fold remainder with a panel: cvar/skew/kurtosis (and the contract of the window) from the window
    t0 = time.perf_counter()
    for k, e in enumerate(ends):
        compute_features(x[e - WINDOW + 1:e + 1], p, rolled={f: long_only[f][k] for f in ROLLING_FEATURES})
    rest_s = time.perf_counter() - t0
    worst = 0.0
    for k, b in enumerate(base):
        for f in ROLLING_FEATURES:
            want, got = b[f].to_numpy(), long_only[f][k]
            assert np.array_equal(np.isnan(want), np.isnan(got)), (k, f)
            ok = ~np.isnan(want)
            worst = max(worst, float((np.abs(got - want)[ok] / np.maximum(1.0, np.abs(want[ok]))).max(initial=0.0)))
    fl = machine_floor()
    pass_bytes = 2 * 8 * T * N                                           # read + write one T × N array of 8-byte cells
    bytes_ = 2 * PASSES_PER_DIRECTION * pass_bytes
    flops = 2 * PASSES_PER_DIRECTION * T * N
    floor_s, bound = floor_seconds(bytes_, flops, fl)
    g = gap(rolled_s, floor_s)
    research_s, _ = floor_seconds(bytes_, flops, fl["research"])
    g_research = gap(rolled_s, research_s)
    prof = profile_summary(lambda: FeaturePanel(frame, times, WINDOW, p), top=10) if max(g, g_research) > 10 else None
    per_fold_base = base_s / K
    print(f"{N} columns × {T} rows, {K} decisions every {STEP} rows, window {WINDOW}")
    print(f"rolling once (LONG+SHORT FeaturePanel): {rolled_s:.2f} s; LONG only {long_s:.2f} s")
    print(f"baseline per-fold compute_features: {base_s:.2f} s ({per_fold_base * 1e3:.1f} ms/fold)")
    print(f"ratio baseline / rolling (LONG+SHORT): {base_s / rolled_s:.1f}x; per LONG only: {base_s / long_s:.1f}x")
    print(f"per-fold remainder with a panel (cvar, skew, kurtosis): {rest_s:.2f} s; "
          f"panel + remainder vs baseline: {base_s / (rolled_s + rest_s):.1f}x")
    print(f"worst gap to the per-fold twin: {worst:.2e}")
    print(f"floor: {bytes_ / 1e9:.1f} GB at {fl['bandwidth_gbs']} GB/s, {flops / 1e9:.2f} GFLOP -> {floor_s:.3f} s ({bound}); "
          f"gap {g:.1f}x; at the research figures {research_s:.3f} s, gap {g_research:.1f}x")
    if prof:
        for r in prof: print(f"  {r['tottime_s']:7.3f} s  {r['calls']:>7}  {r['function']}")
    write_results("rolling", {
        "columns": N, "rows": T, "decisions": K, "step": STEP, "window": WINDOW,
        "rolling_once_long_short_s": round(rolled_s, 3), "rolling_once_long_s": round(long_s, 3),
        "baseline_per_fold_s": round(base_s, 3), "baseline_ms_per_fold": round(per_fold_base * 1e3, 2),
        "ratio_baseline_over_rolling": round(base_s / rolled_s, 2), "ratio_baseline_over_rolling_long": round(base_s / long_s, 2),
        "per_fold_remainder_s": round(rest_s, 3), "ratio_baseline_over_panel_plus_remainder": round(base_s / (rolled_s + rest_s), 2),
        "worst_gap_abs_rel": worst, "floor": {"machine": fl, "passes_per_direction": PASSES_PER_DIRECTION,
                                              "bytes": bytes_, "flops": flops, "seconds": round(floor_s, 4), "bound": bound},
        "gap_to_floor": round(g, 1), "research_floor_s": round(research_s, 4), "gap_to_research_floor": round(g_research, 1), "profile_top10": prof, "peak_rss_mib": round(peak_rss_mb())})


if __name__ == "__main__":
    main()
