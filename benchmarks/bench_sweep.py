"""Sweeps: one canary run against a 12-cell sweep of the same canary run (`backtest.cost_bps=0,10,25` × the canary's 4
allocators: selection shared between the variants, target < 2× the single run), and, for the record, a 12-cell sweep
over `backtest.train=126,252,504` (the window changes: nothing shareable). Every run is the whole flow, serial, end to
end (ingest, the backtest's one map of cells, the assess step, the report) on a lakehouse seeded beforehand; the
selection runs are counted.

    .venv/bin/python benchmarks/bench_sweep.py
"""
import os
import tempfile
import time
from pathlib import Path

from _common import write_results

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def main():
    from tradingview_scraper.orchestration.flow import BACKTEST, run_flow
    from tradingview_scraper.pipelines.selection import SelectionPipeline
    calls, real = [], SelectionPipeline.run

    def counted(self, view, *a, **kw):
        calls.append(view.t)
        return real(self, view, *a, **kw)
    SelectionPipeline.run = counted
    tmp = Path(tempfile.mkdtemp(prefix="tvs-bench-sweep-"))
    runs = {"single": None, "costs": {"backtest.cost_bps": [0, 10, 25]}, "train": {"backtest.train": [126, 252, 504]}}
    out = {}
    run_flow("canary", runs_root=tmp / "runs", lakehouse_root=tmp / "lake", env={}, progress=False, until="ingest")  # seeds the lakehouse
    for label, sweep in runs.items():
        del calls[:]
        t0 = time.perf_counter()
        run = run_flow("canary", runs_root=tmp / "runs", lakehouse_root=tmp / "lake", env={}, progress=False, sweep=sweep)
        secs = time.perf_counter() - t0
        cells = run.cells()
        out[label] = {"sweep": sweep or {}, "seconds": round(secs, 1), "cells": len(cells),
                      "trials": run.load(BACKTEST.conventions)["trials"], "selection_runs": len(calls),
                      "steps_s": {k: v.get("seconds") for k, v in run.status["steps"].items()},
                      "cells_s": round(float(cells["seconds"].sum()), 1)}
        print(f"canary {label}: {secs:.1f}s end to end, {len(cells)} cells ({out[label]['trials']} trials), "
              f"{len(calls)} selection runs; backtest {out[label]['steps_s']['backtest']:.1f}s, assess {out[label]['steps_s']['assess']:.1f}s")
    base = out["single"]["seconds"]
    for label in ("costs", "train"):
        out[label]["ratio_to_single"] = round(out[label]["seconds"] / base, 2)
        out[label]["ratio_to_the_3_runs_it_replaces"] = round(out[label]["seconds"] / (base * 3), 2)
    out["target"] = "12-cell sweep (backtest.cost_bps=0,10,25 × 4 allocators, selection shared) < 2x one canary run"
    out["met"] = out["costs"]["ratio_to_single"] < 2
    out["load_average"] = round(os.getloadavg()[0], 2)
    print(f"cost sweep: {out['costs']['ratio_to_single']:.2f}x one canary run (target < 2x: {'met' if out['met'] else 'NOT met'}); "
          f"{out['costs']['ratio_to_the_3_runs_it_replaces']:.2f}x the 3 canary runs it replaces; "
          f"train sweep (not shareable): {out['train']['ratio_to_single']:.2f}x")
    write_results("sweep", out)


if __name__ == "__main__":
    main()
