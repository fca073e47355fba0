"""Helpers shared by the benchmark scripts: timing, peak memory, and the results file."""
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import tradingview_scraper
from tradingview_scraper.core import utc_iso

RESULTS = Path(__file__).resolve().parent / "results"


def best_of(fn, repeat: int = 5) -> float:
    "Best wall time of `repeat` calls, in seconds."
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    return min(times)


def median_of(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_rss_mb() -> float:
    "Peak resident set size of this process so far, in MiB (Linux reports KiB)."
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_results(name: str, figures: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    doc = {"benchmark": name, "date": utc_iso(), "package_version": tradingview_scraper.__version__,
           "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
           "figures": figures}
    out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    print(f"results written to {out.relative_to(RESULTS.parent.parent)}")
    return out


# ---------------------------------------------------------------------------------------------------------------------
# The machine floor: what this machine can stream and multiply, and how far a measured time is from it.
# ---------------------------------------------------------------------------------------------------------------------

RESEARCH_FLOOR = {"bandwidth_gbs": 21.0, "dgemm_gflops": 118.0}   # the research notes' figures for a 2-core box


def _blas_threads(n: int):
    "A context limiting BLAS to `n` threads (threadpoolctl when installed; otherwise a no-op)."
    try:
        from threadpoolctl import threadpool_limits
        return threadpool_limits(limits=n, user_api="blas")
    except ImportError:
        import contextlib
        return contextlib.nullcontext()


def machine_floor(mib: int = 384, n: int = 2500, repeat: int = 3, threads: int = 2) -> dict:
    """Streaming bandwidth (GB/s: `np.add(a, b, out=c)` on `mib`-MiB float64 arrays, 2 reads + 1 write per element,
    best of `repeat`) and dgemm speed (GFLOP/s: 2·n³ for an n×n float64 matmul on `threads` BLAS threads, best of
    `repeat`), measured in this process; with the research notes' figures for comparison."""
    import numpy as np
    m = mib * 2**20 // 8
    a, b, c = np.ones(m), np.full(m, 2.0), np.empty(m)
    np.add(a, b, out=c)                                          # touch every page first
    bw = 3 * m * 8 / best_of(lambda: np.add(a, b, out=c), repeat) / 1e9
    del a, b, c
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    with _blas_threads(threads):
        x @ y
        gf = 2 * n**3 / best_of(lambda: x @ y, repeat) / 1e9
    return {"bandwidth_gbs": round(bw, 2), "dgemm_gflops": round(gf, 1), "array_mib": mib, "dgemm_n": n,
            "threads": threads, "research": dict(RESEARCH_FLOOR)}


def floor_seconds(bytes_: float, flops: float, floor: dict) -> tuple:
    "(seconds, bound): the least time to move `bytes_` and do `flops` at `floor`'s figures, and which of the two binds."
    t_mem = bytes_ / (floor["bandwidth_gbs"] * 1e9)
    t_cpu = flops / (floor["dgemm_gflops"] * 1e9)
    return (max(t_mem, t_cpu), "bandwidth" if t_mem >= t_cpu else "flops")


def gap(measured: float, floor_s: float) -> float:
    "How many times the floor a measured time is (inf when the floor is 0)."
    return float("inf") if floor_s <= 0 else measured / floor_s


_BIG_LIBRARIES = ("numpy", "pandas", "scipy", "pyarrow", "clarabel", "cvxpy", "sklearn", "numba", "polars", "duckdb")


def profile_summary(prof, top: int = 15, everything: bool = False) -> list:
    """The `top` functions by own time of a `cProfile.Profile` (or of calling `prof()` under a new one): ours
    (tradingview_scraper), the big libraries' and built-ins (`{method ...}`), as
    {"function": "file:line(name)", "tottime_s", "cumtime_s", "calls"}; `everything`: every function."""
    import cProfile
    import pstats
    if not isinstance(prof, cProfile.Profile):
        fn, prof = prof, cProfile.Profile()
        prof.enable()
        try: fn()
        finally: prof.disable()
    rows = []
    for (file, line, name), (cc, nc, tt, ct, _) in pstats.Stats(prof).stats.items():
        keep = everything or "tradingview_scraper" in file or file == "~" or any(f"/{lib}/" in file for lib in _BIG_LIBRARIES)
        if not keep: continue
        short = file.split("site-packages/")[-1].split("tradingview_scraper/")[-1] if file != "~" else "~"
        if "tradingview_scraper" in file: short = "tradingview_scraper/" + short
        rows.append({"function": f"{short}:{line}({name})", "tottime_s": round(tt, 3), "cumtime_s": round(ct, 3), "calls": nc})
    return sorted(rows, key=lambda r: -r["tottime_s"])[:top]
