"""Synthesis of 500 assets × 2,520 days × 4 logics (2,000 atoms, half of them SHORT): the vectorized kernel
against the plain-loop reference twin, measured in the same run on the same data, with their parity."""
import time

import numpy as np

from _common import best_of, peak_rss_mb, write_results
from tradingview_scraper.pipelines.base import toy_market
from tradingview_scraper.pipelines.synthesis import LOGICS, parity, synthesize, synthesize_reference

N_ASSETS, N_DAYS, LOOKBACK, MA = 500, 2520, 63, 20


def main():
    returns = toy_market(n_assets=N_ASSETS, n_days=N_DAYS, n_clusters=10, seed=42).to_numpy()
    returns.flags.writeable = False                         # kernels must accept read-only inputs
    atoms = [(c, logic, "SHORT" if c % 2 else "LONG") for c in range(N_ASSETS) for logic in LOGICS]
    kw = dict(momentum_lookback=LOOKBACK, ma_window=MA)
    fast = synthesize(returns, atoms, **kw)                 # warm-up (page faults, imports)
    vec_s = best_of(lambda: synthesize(returns, atoms, **kw), repeat=5)
    t0 = time.perf_counter()
    slow = synthesize_reference(returns, atoms, **kw)
    ref_s = time.perf_counter() - t0
    par = parity(fast, slow)
    ok = all(v["same_nan"] and v["max_abs_diff"] <= 1e-6 for v in par.values())
    ratio = ref_s / vec_s
    print(f"{N_ASSETS} assets × {N_DAYS} days × {len(LOGICS)} logics = {len(atoms)} atoms (k={LOOKBACK}, w={MA})")
    print(f"vectorized synthesize:     {vec_s * 1e3:9.1f} ms (best of 5)")
    print(f"loop synthesize_reference: {ref_s * 1e3:9.1f} ms (one run)")
    print(f"speed-up: {ratio:.0f}x (target >= 100x)")
    print(f"parity: {'OK' if ok else 'MISMATCH'} {par}")
    print(f"peak RSS: {peak_rss_mb():.0f} MiB")
    write_results("synthesis", {"assets": N_ASSETS, "days": N_DAYS, "logics": len(LOGICS), "atoms": len(atoms),
                                "vectorized_ms": round(vec_s * 1e3, 1), "reference_ms": round(ref_s * 1e3, 1),
                                "speedup": round(ratio, 1), "parity_ok": ok,
                                "max_abs_diff": max(v["max_abs_diff"] for v in par.values()),
                                "peak_rss_mb": round(peak_rss_mb(), 1)})
    if not ok: raise SystemExit("parity failed")


if __name__ == "__main__":
    main()
