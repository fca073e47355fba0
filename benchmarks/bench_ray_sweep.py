"""A 12-cell sweep on 2 Ray workers against the serial run of the same sweep: the canary flow with
`sweep={"backtest.cost_bps": [0, 10, 25]}` (3 variants × the canary's 4 allocators = 12 cells) on the sample lakehouse,
seeded once beforehand (`until="ingest"`, not timed).

- Ray's start (init + one task per CPU slot, which imports the package in every worker process) is timed on its own; the started `RayExecutor(num_cpus=2)` is then passed as
  `executor=`, so the sweep is measured "once the cluster is up".
- Figures: the backtest step's seconds and end to end, serial and Ray, the best of `ROUNDS` rounds in which the two
  alternate (every round is in `rounds`); speed-up = serial / Ray (target ≥ 1.6× for the
  backtest step). The one started executor serves every Ray round (the runner closes only an executor it made), so
  every round runs on the same warm worker processes.
- Identical results: every cell's daily returns (net and gross) and its weights, read back from the two runs' artifacts
  (`BACKTEST.oos_returns`, `BACKTEST.gross_returns`, `BACKTEST.weights(cell)`), equal bit for bit.
- The object store: `ray.put` is wrapped in this driver to count calls and the pickled size of what was put; the
  pickled size of every task's arguments (`RayExecutor.map` items; Ray puts an argument above 100 KiB in the store
  itself) is recorded too, so the note can say how often the returns matrix is shipped.
- Floor: the same model as `bench_scale.py` (its docstring) for the 12 cells, at this machine's `machine_floor()`.

    .venv/bin/python benchmarks/bench_ray_sweep.py
    cd /tmp && PYTHONPATH=<a tree with tradingview_scraper/> .venv/bin/python benchmarks/bench_ray_sweep.py   # other code (e.g. git
                                                  # archive 3cf5fbc): the driver and the Ray workers print where they import from
"""
import os
import pickle
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import machine_floor, write_results   # noqa: E402

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
SWEEP = {"backtest.cost_bps": [0, 10, 25]}
ROUNDS = 3


def _pickled_size(obj) -> int:
    try:
        import cloudpickle
        return len(cloudpickle.dumps(obj))
    except Exception:
        try: return len(pickle.dumps(obj))
        except Exception: return -1


def count_object_store(ex) -> dict:
    """Wrap `ray.put` and `ex.map` so every put and every task argument is kept, to be sized (pickled bytes) after the
    timed runs (`sized`): sizing them inside would add a second pickling of every put to the Ray run's time."""
    import ray
    real_put, real_map = ray.put, ex.map
    seen = {"puts": [], "maps": [], "restore": lambda: setattr(ray, "put", real_put)}

    def put(obj, *a, **kw):
        seen["puts"].append(obj)
        return real_put(obj, *a, **kw)

    def mapped(fn, items):
        items = list(items)
        seen["maps"].append(items)
        return real_map(fn, items)
    ray.put = put
    ex.map = mapped
    return seen


def sized(seen:dict) -> tuple[list, list]:
    "The kept puts as `{type, bytes}` and the kept maps as `{items, item_bytes}` (pickled sizes)."
    puts = [{"type": type(o).__name__, "bytes": _pickled_size(o)} for o in seen["puts"]]
    maps = [{"items": len(items), "item_bytes": [_pickled_size(x) for x in items]} for items in seen["maps"]]
    return puts, maps


def _package_file(_) -> str:
    "Where a Ray worker imports the package from (it should be where the driver does)."
    import tradingview_scraper
    return tradingview_scraper.__file__


def same_bits(a, b) -> bool:
    "Two frames (or series) with the same index, columns and float64 bits."
    import pandas as pd
    if type(a) is not type(b) or not a.index.equals(b.index): return False
    if isinstance(a, pd.DataFrame) and not a.columns.equals(b.columns): return False
    x, y = np.ascontiguousarray(a.to_numpy(dtype=np.float64)), np.ascontiguousarray(b.to_numpy(dtype=np.float64))
    return x.shape == y.shape and x.tobytes() == y.tobytes()


def compare_runs(serial, ray_run) -> dict:
    "Every cell's net and gross returns and its weights, bit for bit, between the two runs."
    from tradingview_scraper.orchestration.flow import BACKTEST
    cells = serial.load(BACKTEST.cells)
    out, bad = {}, []
    for key in ("oos_returns", "gross_returns"):
        a, b = serial.load(getattr(BACKTEST, key)), ray_run.load(getattr(BACKTEST, key))
        for c in cells["cell"]:
            if not same_bits(a[c], b[c]): bad.append(f"{key}[{c}]")
    n_weights = 0
    for r in cells.itertuples():
        if r.is_benchmark: continue
        n_weights += 1
        if not same_bits(serial.load(BACKTEST.weights(r.cell)), ray_run.load(BACKTEST.weights(r.cell))): bad.append(f"weights[{r.cell}]")
    out.update(cells=len(cells), weights_compared=n_weights, differing=bad, identical=not bad)
    return out


def main():
    import ray
    from tradingview_scraper.orchestration.flow import BACKTEST, run_flow
    from tradingview_scraper.orchestration.runner import RayExecutor
    from tradingview_scraper.profile import load_profile
    from bench_scale import floor_model
    tmp = Path(tempfile.mkdtemp(prefix="tvs-bench-ray-sweep-"))
    lake, runs = tmp / "lake", tmp / "runs"
    out = {"sweep": SWEEP, "target": "backtest step on 2 Ray workers >= 1.6x faster than serial, results identical"}
    run_flow("canary", runs_root=runs, lakehouse_root=lake, env={}, progress=False, until="ingest")   # seeds the lakehouse
    t0 = time.perf_counter()
    ex = RayExecutor(num_cpus=2)
    workers = ex.map(_package_file, range(ex.parallelism()))     # every worker process up, the package imported in each
    out["ray_start_s"] = round(time.perf_counter() - t0, 2)
    print(f"ray start (init + every worker importing the package): {out['ray_start_s']:.2f}s")
    import tradingview_scraper
    out["package"] = tradingview_scraper.__file__
    out["worker_package"] = workers[0] if len(set(workers)) == 1 else sorted(set(workers))
    print(f"package: driver {out['package']}, Ray worker {out['worker_package']}")
    if out["package"] != out["worker_package"]:   # Ray puts the driver's working directory first on its workers' path
        raise SystemExit("the Ray workers import another copy of the package: run from a directory without tradingview_scraper/ in it")
    seen = count_object_store(ex)
    figures, result, rounds = {}, {}, {"serial": [], "ray": []}
    for k in range(ROUNDS):            # serial and Ray alternate: a slow spell of the machine hits both; the best round of each counts
        for label, executor in (("serial", "serial"), ("ray", ex)):
            if label == "ray":                 # the last Ray round's puts and maps are reported
                seen["puts"].clear()
                seen["maps"].clear()
            t0 = time.perf_counter()
            run = run_flow("canary", runs_root=runs, lakehouse_root=lake, env={}, progress=False, sweep=SWEEP, executor=executor)
            secs = time.perf_counter() - t0
            steps = {name: v.get("seconds") for name, v in run.status["steps"].items()}
            rounds[label].append({"seconds": round(secs, 2), "backtest_s": steps["backtest"]})
            print(f"{label} round {k + 1}: {secs:.1f}s end to end, backtest {steps['backtest']:.1f}s")
            if label in figures and figures[label]["backtest_s"] <= steps["backtest"]: continue
            cells = run.cells()
            allocator_cells = [str(c) for c in cells.loc[~cells["is_benchmark"].astype(bool), "cell"]]
            figures[label] = {"allocator_cells": len(allocator_cells), "seconds": round(secs, 2), "backtest_s": steps["backtest"], "steps_s": steps, "cells": len(cells),
                              "cells_s": round(float(cells["seconds"].fillna(0).sum()), 2),
                              "nodes": sorted({str(n) for n in cells["node"]})}
            result[label] = run
    seen["restore"]()
    out["rounds"] = rounds
    s, r = figures["serial"], figures["ray"]
    out["serial"], out["ray"] = s, r
    out["speedup_backtest"] = round(s["backtest_s"] / r["backtest_s"], 2)
    out["speedup_end_to_end"] = round(s["seconds"] / r["seconds"], 2)
    out["met"] = out["speedup_backtest"] >= 1.6
    out["results"] = compare_runs(result["serial"], result["ray"])
    puts, maps = sized(seen)
    out["object_store"] = {"ray_put_calls": len(puts), "ray_put_bytes": sum(p["bytes"] for p in puts), "puts": puts,
                           "maps": [{"items": m["items"], "item_bytes_total": sum(m["item_bytes"]), "item_bytes_max": max(m["item_bytes"], default=0)}
                                    for m in maps],
                           "note": "driver-side ray.put calls (pickled sizes) and each map's task arguments; Ray stores an argument above 100 KiB itself"}
    returns = result["serial"].load("ingest", "returns")
    out["returns_matrix_bytes"] = int(returns.shape[0] * returns.shape[1] * 8)
    folds = result["serial"].load(BACKTEST.folds)
    floor = machine_floor()
    lake_bytes = sum(p.stat().st_size for p in lake.rglob("*.parquet"))
    k = load_profile("canary", env={}).selection.htr.max_selected
    fig = {"assets": int(returns.shape[1]), "folds": len(folds), "allocators": list(range(s["allocator_cells"])), "seconds": r["seconds"]}
    out["floor"] = {"machine_floor": floor, "model": "bench_scale.py's with A = the allocator cells (12), k = canary max_selected, selection once (shared by the variants)",
                    "ray_end_to_end": floor_model({}, lake_bytes, fig, k, floor),
                    "ray_backtest": floor_model({}, lake_bytes, {**fig, "seconds": r["backtest_s"]}, k, floor)}
    out["load_average"] = round(os.getloadavg()[0], 2)
    print(f"backtest step: serial {s['backtest_s']:.1f}s, ray {r['backtest_s']:.1f}s → {out['speedup_backtest']:.2f}x "
          f"(target >= 1.6x: {'met' if out['met'] else 'NOT met'}); end to end {out['speedup_end_to_end']:.2f}x")
    print(f"identical results: {out['results']['identical']} ({out['results']['cells']} cells, {out['results']['weights_compared']} weights)"
          + ("" if out["results"]["identical"] else f"; differing: {out['results']['differing'][:6]}"))
    print(f"object store: {len(puts)} ray.put calls, {out['object_store']['ray_put_bytes'] / 2**20:.1f} MiB "
          f"(returns matrix {out['returns_matrix_bytes'] / 2**20:.1f} MiB); maps: {out['object_store']['maps']}")
    f = out["floor"]["ray_backtest"]
    print(f"floor: {f['floor_s']}s ({f['bound']}), ray backtest gap {f['gap']}×")
    ex.close()
    write_results("ray_sweep", out)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
