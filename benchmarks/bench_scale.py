"""Production scale: the whole research flow (`run_flow("lakehouse")`: hydrate (off) → ingest → discover → select →
synthesize → backtest of the profile's 6 allocators and its benchmark cell → assess → portfolio → report → validate) on a
synthetic lakehouse written once beforehand (not timed: that is hydration's job), at two sizes:

- `small`: 500 equities over a history whose walk-forward (train 252, test 21) has 383 folds (8,295+ trading rows);
  target < 60 s end to end on 2 cores.
- `large`: 5,000 equities × ~2,520 trading rows; target < 300 s and peak memory < 4 GB.

Every measurement runs in a fresh subprocess (this script with `--worker`), so its peak RSS is that run's own. The
baseline is today's code (git rev 3cf5fbc, `git archive` into a temporary directory, put first on `PYTHONPATH`), run in
the same invocation on the same lakehouse; the worker prints where it imported the package from.

The floor (what the job must do at least, at this machine's `machine_floor()` and at the research notes' figures):

    bytes = lakehouse Parquet bytes on disk (read once)
          + folds · (train + warmup) · N · 8            (selection streams its fold window of the returns matrix)
    flops = folds · [ c_feat · (train + warmup) · N     (features over the window, c_feat ≈ 50 per value)
                     + A · (2 · train · k²              (a k×k covariance per allocator, k = the selection's max)
                        + c_solve · k³)                  (one factorisation / solve per allocator, c_solve ≈ 10)
                     + (A + 1) · 2 · test · k ]          (the out-of-sample days of each cell and the benchmark)

with N the returns' columns, A the profile's allocators. The floor seconds are max(bytes / bandwidth, flops / dgemm),
and the gap is measured / floor; where the gap is above 10×, the cProfile summary of our run (top 15 by own time) goes
into the results (with `--profile`: collected by one more run of ours under cProfile, so the timed run is not slowed).
Peak memory is the worker's `VmHWM` (its own address space; `ru_maxrss` carries the parent's peak across fork + exec).

    .venv/bin/python benchmarks/bench_scale.py [--size small|large|both] [--no-baseline] [--profile] [--quick]

`--quick` (development): 60 equities and a short history; figures are written to `scale_quick.json`, not `scale.json`.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BASELINE_REV = "3cf5fbc"
TRAIN, TEST = 252, 21
C_FEAT, C_SOLVE = 50, 10

SIZES = {   # equities, trading rows wanted, first calendar day, target seconds, target peak MiB (None: no target)
    "small": {"n_equities": 500, "rows": 8305, "start": "1990-01-01", "folds": 383, "target_s": 60, "target_mib": None},
    "large": {"n_equities": 5000, "rows": 2530, "start": "2012-01-02", "folds": None, "target_s": 300, "target_mib": 4096},
    "quick": {"n_equities": 60, "rows": 800, "start": "2015-01-01", "folds": None, "target_s": None, "target_mib": None},
}


def calendar_days(rows: int, start: str) -> int:
    "The calendar `n_days` from `start` holding `rows` weekdays that are not 1 January or 25 December (the synthetic equities' calendar)."
    import pandas as pd
    days = pd.date_range(start, periods=rows * 2, freq="D")
    ok = (days.day_of_week < 5) & ~((days.month == 1) & (days.day == 1)) & ~((days.month == 12) & (days.day == 25))
    import numpy as np
    return int(np.flatnonzero(ok)[rows - 1] + 1)


def write_lakehouse(root: Path, size: dict) -> dict:
    "The synthetic lakehouse of one size (not timed as part of the flow)."
    from tradingview_scraper.data.lakehouse import Lakehouse
    from tradingview_scraper.data.sample import SyntheticMarket
    t0 = time.perf_counter()
    n_days = calendar_days(size["rows"], size["start"])
    SyntheticMarket(n_equities=size["n_equities"], n_crypto=0, n_days=n_days, start=size["start"], seed=13).generate().write(Lakehouse(root))
    nbytes = sum(p.stat().st_size for p in root.rglob("*.parquet"))
    return {"n_days": n_days, "seconds": round(time.perf_counter() - t0, 1), "parquet_bytes": nbytes}


# ---------------------------------------------------------------------------------------------------------------------
# the worker: one run of the flow in this (fresh) process; its figures as JSON on the last line
# ---------------------------------------------------------------------------------------------------------------------

def _vm_hwm_kib() -> int:
    """This process's peak RSS in KiB (`VmHWM`: its own address space's high-water mark; `ru_maxrss` would also carry the
    parent's peak across fork + exec on Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"): return int(line.split()[1])
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def worker(lake: str, runs: str, profile_it: bool) -> None:
    import resource
    import tradingview_scraper
    from tradingview_scraper.orchestration.flow import BACKTEST, run_flow
    sys.path.insert(0, str(HERE))
    from _common import profile_summary
    prof = None
    t0 = time.perf_counter()
    if profile_it:
        import cProfile
        prof = cProfile.Profile()
        prof.enable()
    run = run_flow("lakehouse", runs_root=runs, lakehouse_root=lake, env={}, progress=False)
    if prof is not None: prof.disable()
    secs = time.perf_counter() - t0
    steps = {k: v.get("seconds") for k, v in run.status["steps"].items()}
    folds = run.load(BACKTEST.folds)
    returns = run.load("ingest", "returns")
    conv = run.load(BACKTEST.conventions)
    try:
        cells = run.cells()
        cells_s = {str(r.cell): (None if r.seconds is None else round(float(r.seconds), 3)) for r in cells.itertuples()}
    except Exception as e:                        # an engine without the cells table
        cells_s = {"error": repr(e)}
    timings = {k: v for k, v in run.load(BACKTEST.timings).items()}
    out = {"package": tradingview_scraper.__file__, "run_id": run.run_id, "seconds": round(secs, 2),
           "steps_s": steps, "folds": len(folds), "rows": int(returns.shape[0]), "assets": int(returns.shape[1]),
           "allocators": list(conv.get("allocations", {})), "cells_s": cells_s, "timings": timings,
           "per_fold_s": round(steps["backtest"] / max(1, len(folds)), 4),
           "peak_rss_mib": round(_vm_hwm_kib() / 1024, 1),
           "ru_maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if prof is not None: out["profile"] = profile_summary(prof, top=15)
    print(json.dumps(out, default=str))


def run_worker(lake: Path, runs: Path, pythonpath: str | None, profile_it: bool) -> dict:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    if pythonpath: env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    else: env.pop("PYTHONPATH", None)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--lake", str(lake), "--runs", str(runs)] + (["--profile"] if profile_it else [])
    p = subprocess.run(cmd, env=env, cwd=str(REPO), capture_output=True, text=True)
    if p.returncode != 0:
        return {"error": f"exit {p.returncode}", "stderr": p.stderr[-3000:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def baseline_tree(tmp: Path) -> Path:
    "Today's code (git rev 3cf5fbc) extracted into `tmp`."
    tmp.mkdir(parents=True, exist_ok=True)
    arch = subprocess.run(["git", "-C", str(REPO), "archive", BASELINE_REV, "tradingview_scraper"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=arch, check=True)
    return tmp


def floor_model(size_fig: dict, lake_bytes: int, fig: dict, max_selected: int, floor: dict) -> dict:
    "Bytes and FLOPs the job must move and do (see the module's docstring), the floor seconds at `floor`, and the gap."
    from _common import floor_seconds, gap
    N, F, A, k = fig["assets"], fig["folds"], max(1, len(fig["allocators"])), max_selected
    window = TRAIN   # warmup 0 in the lakehouse profile
    bytes_ = lake_bytes + F * window * N * 8
    flops = F * (C_FEAT * window * N + A * (2 * TRAIN * k * k + C_SOLVE * k**3) + (A + 1) * 2 * TEST * k)
    s, bound = floor_seconds(bytes_, flops, floor)
    return {"bytes": int(bytes_), "flops": float(flops), "floor_s": round(s, 4), "bound": bound, "gap": round(gap(fig["seconds"], s), 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=["small", "large", "both"], default="both")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--lake")
    ap.add_argument("--runs")
    ap.add_argument("--keep", action="store_true", help="keep the temporary lakehouses and runs")
    a = ap.parse_args()
    if a.worker:
        return worker(a.lake, a.runs, a.profile)
    sys.path.insert(0, str(HERE))
    from _common import machine_floor, profile_summary, write_results
    from tradingview_scraper.profile import load_profile
    max_selected = load_profile("lakehouse", env={}).selection.htr.max_selected
    sizes = ["quick"] if a.quick else (["small", "large"] if a.size == "both" else [a.size])
    tmp = Path(tempfile.mkdtemp(prefix="tvs-bench-scale-"))
    out = {"model": {"train": TRAIN, "test": TEST, "c_feat": C_FEAT, "c_solve": C_SOLVE, "max_selected": max_selected,
                     "bytes": "parquet on disk + folds·(train+warmup)·N·8",
                     "flops": "folds·[c_feat·window·N + A·(2·train·k² + c_solve·k³) + (A+1)·2·test·k]"}}
    floor = machine_floor()
    out["machine_floor"] = floor
    print(f"machine floor: {floor['bandwidth_gbs']} GB/s, {floor['dgemm_gflops']} GFLOP/s (research: 21 GB/s, 118 GFLOP/s)")
    base_tree = None if a.no_baseline else baseline_tree(tmp / "baseline")
    for name in sizes:
        size = SIZES[name]
        lake = tmp / f"lake-{name}"
        written = write_lakehouse(lake, size)
        print(f"[{name}] lakehouse: {size['n_equities']} equities, n_days {written['n_days']}, "
              f"{written['parquet_bytes'] / 2**20:.0f} MiB Parquet, written in {written['seconds']}s (not timed)")
        res = {"size": {k: v for k, v in size.items()}, "lakehouse": written, "machine_floor": floor,
               "load_average_at_start": round(os.getloadavg()[0], 2)}
        res["ours"] = ours = run_worker(lake, tmp / f"runs-{name}-ours", None, False)
        if "error" in ours:
            print(f"[{name}] ours FAILED: {ours['stderr']}")
        else:
            print(f"[{name}] ours from {ours['package']}: {ours['seconds']}s, {ours['folds']} folds, {ours['rows']}×{ours['assets']}, peak {ours['peak_rss_mib']} MiB")
            if size["folds"] is not None:
                assert ours["folds"] == size["folds"], f"{name}: {ours['folds']} folds, wanted {size['folds']}"
        if base_tree is not None:
            res["baseline"] = base = run_worker(lake, tmp / f"runs-{name}-base", str(base_tree), False)
            if "error" in base:
                print(f"[{name}] baseline FAILED: {base['stderr']}")
            else:
                assert base["package"].startswith(str(base_tree)), f"baseline imported from {base['package']}"
                print(f"[{name}] baseline from {base['package']}: {base['seconds']}s, peak {base['peak_rss_mib']} MiB")
        base = res.get("baseline") if base_tree is not None and "error" not in res.get("baseline", {"error": 1}) else None
        if "error" in ours:
            out[name] = res
            continue
        print(f"\n{'step':<12}{'ours s':>10}{'baseline s':>12}{'ratio':>8}")
        ratio = {}
        for step, s in list(ours["steps_s"].items()) + [("end to end", ours["seconds"]), ("per fold", ours["per_fold_s"])]:
            b = None if base is None else (base["seconds"] if step == "end to end" else base["per_fold_s"] if step == "per fold" else base["steps_s"].get(step))
            r = None if not b or s is None else round(s / b, 3)
            ratio[step] = r
            print(f"{step:<12}{s if s is not None else float('nan'):>10.3f}{b if b is not None else float('nan'):>12.3f}{r if r is not None else float('nan'):>8.3f}")
        res["ratio_ours_to_baseline"] = ratio
        res["floor"] = {"machine": floor_model(size, written["parquet_bytes"], ours, max_selected, floor),
                        "research": floor_model(size, written["parquet_bytes"], ours, max_selected, floor["research"])}
        fm, fr = res["floor"]["machine"], res["floor"]["research"]
        print(f"\n[{name}] floor: {fm['bytes'] / 1e9:.2f} GB, {fm['flops'] / 1e9:.1f} GFLOP → {fm['floor_s']}s here ({fm['bound']}), "
              f"{fr['floor_s']}s at the research figures; gap {fm['gap']}× / {fr['gap']}×")
        if size["target_s"] is not None:
            res["targets"] = {"seconds": size["target_s"], "peak_mib": size["target_mib"]}
            res["met"] = {"seconds": ours["seconds"] < size["target_s"],
                          "peak_mib": None if size["target_mib"] is None else ours["peak_rss_mib"] < size["target_mib"]}
            print(f"[{name}] target < {size['target_s']}s: {'met' if res['met']['seconds'] else 'NOT met'}"
                  + ("" if size["target_mib"] is None else f"; peak < {size['target_mib']} MiB: {'met' if res['met']['peak_mib'] else 'NOT met'}"))
        if fm["gap"] > 10:
            if a.profile:   # a run of its own: profiling slows the run it watches
                prof = run_worker(lake, tmp / f"runs-{name}-prof", None, True)
                ours["profile"] = prof.get("profile", prof.get("stderr"))
                ours["profiled_run_s"] = prof.get("seconds")
            if "profile" in ours:
                res["profile"] = ours["profile"]
                print(f"[{name}] gap > 10×: top {len(ours['profile'])} by own time")
                for r in ours["profile"]:
                    print(f"  {r['tottime_s']:>9.2f}s own {r['cumtime_s']:>9.2f}s cum {r['calls']:>9} calls  {r['function']}")
            else:
                print(f"[{name}] gap > 10×: rerun with --profile for the cProfile summary")
        out[name] = res
        print()
    out["load_average"] = round(os.getloadavg()[0], 2)
    label = "scale_quick" if a.quick else "scale"
    previous = HERE / "results" / f"{label}.json"
    if a.size != "both" and previous.exists():   # keep the other size's figures from an earlier run
        kept = json.loads(previous.read_text()).get("figures", {})
        out = {**{k: v for k, v in kept.items() if k in SIZES and k not in sizes}, **out}
    write_results(label, out)
    if not a.keep: shutil.rmtree(tmp, ignore_errors=True)
    else: print(f"kept {tmp}")


if __name__ == "__main__":
    main()
