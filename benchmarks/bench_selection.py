"""Selection of 5,000 candidates on a 252-day training window: universe + features + vetoes + ranking +
clustering + HTR, wall time per stage and peak memory. Baseline in the same run: the same features computed
asset by asset (one call per column) instead of vectorized over assets."""
import pathlib
import tempfile
import time
import tracemalloc

import numpy as np
import pandas as pd

from _common import best_of, peak_rss_mb, write_results
from tradingview_scraper.data.loader import PointInTimeView
from tradingview_scraper.ledger import AuditLedger
from tradingview_scraper.pipelines.base import toy_market
from tradingview_scraper.pipelines.selection import FeatureParams, SelectionPipeline, compute_features

N, DAYS, WINDOW = 5000, 300, 252

def main():
    mkt = toy_market(n_assets=N, n_days=DAYS, n_clusters=25, seed=1)
    rng = np.random.default_rng(1)
    cands = pd.DataFrame({"symbol": list(mkt.columns), "direction": np.where(rng.random(N) < 0.2, "SHORT", "LONG"),
                          "logic": "hold", "value_traded": np.exp(rng.normal(16, 2, N))})
    view = PointInTimeView(mkt, mkt.index[-1] + pd.Timedelta(days=1))
    pipe = SelectionPipeline(universe={"window": WINDOW}, vetoes={"min_value_traded": 1e5},
                             htr={"floor": 15, "max_selected": 40}, clustering={"max_clusters": 25})
    res = pipe.run(view, cands)                                           # warm-up
    wall = best_of(lambda: pipe.run(view, cands), repeat=3)
    tracemalloc.start()
    pipe.run(view, cands)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # per-stage durations: the same stages, called one by one
    arts, stages = {"view": view, "candidates": cands}, {}
    for sid, sec in pipe._SECTIONS.items():
        st = pipe.registry.get(sid)
        t0 = time.perf_counter()
        arts.update(st(getattr(pipe.params, sec), **{n: arts[n] for n in st.inputs if n in arts}))
        stages[sid] = round((time.perf_counter() - t0) * 1e3, 1)
    # the cost of auditing: the same run recorded to a ledger (content hashes of every input and output)
    led = AuditLedger(pathlib.Path(tempfile.mkdtemp()) / "audit.jsonl", durable=False)
    led.genesis("bench", "bench", "0" * 64)
    t0 = time.perf_counter(); pipe.run(view, cands, ledger=led); audited = time.perf_counter() - t0
    # baseline: features asset by asset
    x = view.tail(WINDOW).to_numpy()
    vec_f = best_of(lambda: compute_features(x), repeat=3)
    t0 = time.perf_counter()
    for j in range(N): compute_features(x[:, j:j + 1])
    loop_f = time.perf_counter() - t0
    eligible = int(res.trail["veto"].isna().sum())
    print(f"{N} candidates, {WINDOW}-row window: {eligible} eligible, {res.clusters.nunique()} clusters, "
          f"{len(res.winners)} winners at stage {res.stage!r}")
    print(f"selection wall time: {wall:.3f} s (best of 3; target < 2 s on 2 cores)")
    for k, v in stages.items(): print(f"  {k:28s} {v:8.1f} ms")
    print(f"with a ledger (hashing every input and output): {audited:.3f} s")
    print(f"peak traced memory during run: {peak / 2**20:.0f} MiB; process peak RSS: {peak_rss_mb():.0f} MiB")
    print(f"features vectorized {vec_f * 1e3:.0f} ms vs asset-by-asset {loop_f * 1e3:.0f} ms: {loop_f / vec_f:.0f}x")
    write_results("selection", {"candidates": N, "window": WINDOW, "eligible": eligible, "winners": len(res.winners),
                                "stage": res.stage, "wall_s": round(wall, 3), "stage_ms": stages, "with_ledger_s": round(audited, 3),
                                "peak_traced_mb": round(peak / 2**20, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
                                "features_vectorized_ms": round(vec_f * 1e3, 1), "features_per_asset_ms": round(loop_f * 1e3, 1),
                                "features_speedup": round(loop_f / vec_f, 1)})

if __name__ == "__main__":
    main()
