"""The canary main job end to end (`tvs run --profile canary`: papermill, kernel and report included), warm, in a
temporary directory — for the working tree and, in the same run, for a baseline revision of the package (default: the
commit before the Step 8 performance work) — plus the backtest step alone and the fast kernels against their plain twins.

    .venv/bin/python benchmarks/bench_main_job.py [--repeat 2] [--baseline REV | --baseline none]

Writes benchmarks/results/main_job.json. Figures depend on the machine and on its load (reported): the ratios are
what carries over.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import write_results

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "35a0364"        # the commit before the Step 8 performance work


def _package_at(rev:str, into:Path) -> Path:
    "The package and production notebooks of git revision `rev`, extracted into `into` (git state untouched)."
    into.mkdir(parents=True, exist_ok=True)
    arch = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "tradingview_scraper", "nbs/production"],
                          check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=arch, check=True)
    return into


def _tvs_run(cwd:Path, pythonpath:Path|None, notebooks:Path|None) -> dict:
    "One `tvs run --profile canary` in `cwd`: wall seconds, the runner's step seconds, the Sharpe ratios."
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "CI": "true"}
    env.pop("TVS_PROFILE", None)
    if pythonpath is not None: env["PYTHONPATH"] = str(pythonpath)
    cmd = [sys.executable, "-c", "from tradingview_scraper.cli import main\nmain()", "run", "--profile", "canary"]
    if notebooks is not None: cmd += ["--notebooks", str(notebooks)]
    t0, ru0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall, ru1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode: raise SystemExit(f"tvs run failed in {cwd}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    run_dir = max((cwd / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    status = json.loads((run_dir / "status.json").read_text())
    steps = {k: v.get("seconds") for k, v in status["steps"].items()}
    sharpe = {k.removeprefix("sharpe_"): v for k, v in status.get("summary", {}).items() if k.startswith("sharpe_")}
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)      # the CLI, papermill and the kernel
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "steps_s": steps, "sharpe": sharpe}


def _main_job(label:str, pythonpath:Path|None, notebooks:Path|None, repeat:int) -> dict:
    "A warm-up run (seeds the sample lakehouse, warms the OS caches), then `repeat` timed runs; the best is reported."
    cwd = Path(tempfile.mkdtemp(prefix=f"tvs-bench-job-{label}-"))
    _tvs_run(cwd, pythonpath, notebooks)
    runs = [_tvs_run(cwd, pythonpath, notebooks) for _ in range(repeat)]
    best = min(runs, key=lambda r: r["wall_s"])
    print(f"{label:>9}: main job {best['wall_s']:.1f}s wall, {best['cpu_s']:.1f}s cpu (runs {[r['wall_s'] for r in runs]}); "
          f"backtest step {best['steps_s'].get('backtest')}s, report {best['steps_s'].get('report')}s; sharpe {best['sharpe']}")
    return {"best": best, "runs": runs}


_FLOW = """
import json, os, sys, tempfile, time
from pathlib import Path
from tradingview_scraper.orchestration.flow import run_flow
tmp = Path(tempfile.mkdtemp(prefix="tvs-bench-flow-"))
run_flow("canary", runs_root=tmp / "runs", lakehouse_root=tmp / "lake", executor="serial", env={})
out = []
for _ in range(int(sys.argv[1])):
    t0, c0 = time.perf_counter(), time.process_time()
    r = run_flow("canary", runs_root=tmp / "runs", lakehouse_root=tmp / "lake", executor="serial", env={})
    out.append({"wall_s": round(time.perf_counter() - t0, 2), "cpu_s": round(time.process_time() - c0, 2),
                "steps_s": {k: v.get("seconds") for k, v in r.status["steps"].items()}})
print(json.dumps(out))
"""


def _flow_in_process(label:str, pythonpath:Path|None, repeat:int) -> dict:
    "The canary flow run in one process (no papermill, no kernel): a warm-up, then `repeat` timed runs; the best is reported."
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    if pythonpath is not None: env["PYTHONPATH"] = str(pythonpath)
    r = subprocess.run([sys.executable, "-c", _FLOW, str(repeat)], env=env, capture_output=True, text=True, check=True)
    runs = json.loads(r.stdout.strip().splitlines()[-1])
    best = min(runs, key=lambda x: x["wall_s"])
    print(f"{label:>9}: canary flow in-process {best['wall_s']:.1f}s wall, {best['cpu_s']:.1f}s cpu; "
          f"backtest step {best['steps_s']['backtest']}s, report {best['steps_s'].get('report')}s")
    return {"best": best, "runs": runs}


def _kernels() -> dict:
    "In-process: the canary's backtest step alone, and each fast path against its plain twin on the canary's data."
    from tradingview_scraper.profile import load_profile
    from tradingview_scraper.data.lakehouse import Lakehouse
    from tradingview_scraper.data.loader import IngestionStage, PointInTimeView
    from tradingview_scraper.data.sample import sample_lakehouse
    from tradingview_scraper.orchestration import flow as F
    tmp = Path(tempfile.mkdtemp(prefix="tvs-bench-kernels-"))
    p = load_profile("canary", env={})
    sample_lakehouse(tmp / "lake", profile=p.name)
    lake = Lakehouse(tmp / "lake")
    returns = IngestionStage.from_profile(p, lake).run(tmp / "run", start=p.data.start, interval=p.data.interval).returns
    p = F.resolve_calendar(p, returns)[0]
    engine = F.build_engine(p)
    folds = engine.folds(len(returns))
    dates = [returns.index[s] for _, _, s, _ in folds]
    out = {"folds": len(folds), "symbols": int(returns.shape[1])}
    disc = F.DiscoveryPipeline(screens=p.discovery.screens, interval=p.data.interval, contracts="first")
    t0 = time.perf_counter()
    fast = disc.run_many(lake, dates)
    t_fast = time.perf_counter() - t0
    versions = lake.catalog(versions=True)
    from tradingview_scraper.pipelines.discovery import _read_all_bars
    bars = _read_all_bars(lake, versions["symbol"].unique(), p.data.interval)
    t0 = time.perf_counter()
    ref = {t: disc._screen(lake, t, versions, bars) for t in fast}
    t_ref = time.perf_counter() - t0
    same = all(fast[t].equals(ref[t]) for t in fast)
    out["discovery_run_many"] = {"fast_s": round(t_fast, 3), "per_date_reference_s": round(t_ref, 3), "speedup": round(t_ref / t_fast, 1), "identical": same}
    print(f"discovery over {len(dates)} dates: {t_fast:.2f}s all at once vs {t_ref:.2f}s date by date ({t_ref / t_fast:.0f}x), identical: {same}")
    universe = F.build_universe(p.discovery.universe_policy, lake, p.discovery.screens, dates, columns=returns.columns,
                                source=p.discovery.source, interval=p.data.interval)
    names = list(p.allocation.optimizers)
    sel = F.UniverseSelector(F.build_selector(p), universe)      # selection shared by every cell (as the flow does), warmed first
    engine.run(returns, F.build_allocator("equal_weight", p), sel, None)
    def backtest(memo:bool):
        syn = F.Synthesizer(contracts="first", logics=tuple(p.synthesis.logics), momentum_lookback=p.synthesis.momentum_lookback,
                            ma_window=p.synthesis.ma_window, memo=memo)
        t0 = time.process_time()
        res = {n: engine.run(returns, F.build_allocator(n, p), sel, syn) for n in names}
        return time.process_time() - t0, res
    t_plain, plain = backtest(False)
    t_memo, memo = backtest(True)
    same = all(plain[n].weights.equals(memo[n].weights) and plain[n].returns.equals(memo[n].returns) for n in names)
    out["backtest_cells_cpu"] = {"allocators": names, "synthesis_per_cell_s": round(t_plain, 2), "synthesis_shared_s": round(t_memo, 2),
                             "identical": same, "sharpe": {n: round(memo[n].metrics["sharpe"], 3) for n in names}}
    print(f"backtest of {len(names)} allocators (selection memo warm): {t_plain:.1f}s cpu with a synthesis per cell, "
          f"{t_memo:.1f}s with one shared (memo), identical: {same}")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=2, help="timed main-job runs per variant (after one warm-up run)")
    ap.add_argument("--baseline", default=BASELINE, help="git revision measured as 'before' in the same run, or 'none'")
    a = ap.parse_args()
    out = {"load_average_start": round(os.getloadavg()[0], 2)}
    out["kernels"] = _kernels()
    base = None if a.baseline == "none" else _package_at(a.baseline, Path(tempfile.mkdtemp(prefix="tvs-bench-baseline-")))
    out["flow_in_process"] = {"working_tree": _flow_in_process("now", None, a.repeat)}
    if base is not None:
        out["flow_in_process"][f"baseline_{a.baseline}"] = _flow_in_process("before", base, a.repeat)
        b, n = out["flow_in_process"][f"baseline_{a.baseline}"]["best"], out["flow_in_process"]["working_tree"]["best"]
        out["flow_in_process"]["speedup_backtest_step"] = round(b["steps_s"]["backtest"] / n["steps_s"]["backtest"], 2)
        print(f"backtest step: before {b['steps_s']['backtest']:.1f}s, after {n['steps_s']['backtest']:.1f}s "
              f"({b['steps_s']['backtest'] / n['steps_s']['backtest']:.2f}x)")
    out["main_job"] = {"working_tree": _main_job("now", None, None, a.repeat)}
    if base is not None:
        out["main_job"][f"baseline_{a.baseline}"] = _main_job("before", base, base / "nbs" / "production", a.repeat)
        b, n = out["main_job"][f"baseline_{a.baseline}"]["best"], out["main_job"]["working_tree"]["best"]
        out["main_job"]["speedup_end_to_end"] = round(b["wall_s"] / n["wall_s"], 2)
        print(f"main job: before {b['wall_s']:.1f}s, after {n['wall_s']:.1f}s wall ({b['wall_s'] / n['wall_s']:.2f}x), "
              f"cpu {b['cpu_s']:.1f}s → {n['cpu_s']:.1f}s; "
              "steps before/after: " + ", ".join(f"{k} {b['steps_s'].get(k)}/{n['steps_s'].get(k)}" for k in n["steps_s"]))
    out["load_average_end"] = round(os.getloadavg()[0], 2)
    write_results("main_job", out)


if __name__ == "__main__":
    main()
