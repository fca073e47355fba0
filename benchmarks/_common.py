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
