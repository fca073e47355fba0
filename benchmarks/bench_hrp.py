"""HRP with Ward linkage and optimal leaf ordering on the real 20-stock panel (skfolio's S&P 500 dataset, ~8,300 days,
train 252 / test 21: 383 rebalances, fixed weights, no costs): the walk-forward backtest on the lean linkage path
(scipy's compiled linkage routines called directly and our own optimal-leaf-ordering kernel, which leaves close calls
to scipy's: `linkage_matrix` in nbs/34_solvers.ipynb) against the public scipy path
measured in the same run (`_linkage` monkeypatched to `_linkage_public`), the target (< 0.30 s), and the machine floor.

The floor: bytes the job must read (the returns rows of every fold, 8 B each) at the machine's streaming bandwidth and
its FLOPs (per fold: the Gram matrix 2·T·n², the linkage ~n³, the bisection ~2n²) at its dgemm speed; gap = measured /
floor. `_common.machine_floor()` measures both in this process; where it is missing the research figures (21 GB/s,
118 GFLOP/s) are used and the results say so. Where the gap exceeds 10x a cProfile summary (top 12 by own time) is
written too.

BLAS runs single-threaded (OPENBLAS/OMP/MKL_NUM_THREADS=1), as in bench_backtest.py. skfolio is a dev dependency."""
import os

for _k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"): os.environ.setdefault(_k, "1")

import cProfile
import importlib.util
import pstats
import subprocess
import tempfile
import time
import warnings

import numpy as np
import scipy

import _common
from _common import best_of, write_results
from tradingview_scraper.backtest.engine import BacktestEngine
from tradingview_scraper.pipelines import allocation, solvers
from tradingview_scraper.pipelines.allocation import HRP

warnings.filterwarnings("ignore")
TARGET_S = 0.30
RESEARCH = {"bandwidth_gbs": 21.0, "dgemm_gflops": 118.0}


def sp500():
    from skfolio.datasets import load_sp500_dataset
    from skfolio.preprocessing import prices_to_returns
    X = prices_to_returns(load_sp500_dataset())
    return X.set_axis(X.index.tz_localize("UTC"))


def public_path():
    "A context: HRP's linkage through scipy's public API (the reference twin) instead of the lean path."
    class _Ctx:
        def __enter__(self): self.saved = solvers._linkage; solvers._linkage = solvers._linkage_public
        def __exit__(self, *exc): solvers._linkage = self.saved
    return _Ctx()


def committed_path():
    """A context: HRP's seriation and bisection from the last commit's solvers module (`git show HEAD:...`), i.e. the
    code before this change; None where git or the file is unavailable."""
    try:
        src = subprocess.run(["git", "show", "HEAD:tradingview_scraper/pipelines/solvers.py"], capture_output=True, text=True,
                             check=True, cwd=os.environ.get("BENCH_GIT_DIR", os.path.dirname(os.path.abspath(__file__)))).stdout
    except (OSError, subprocess.CalledProcessError): return None
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f: f.write(src)
    spec = importlib.util.spec_from_file_location("tradingview_scraper.pipelines._solvers_head", f.name)
    head = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(head)
    os.unlink(f.name)
    class _Ctx:
        def __enter__(self):
            self.saved = allocation._hrp_order, allocation._hrp_bisection
            allocation._hrp_order, allocation._hrp_bisection = head._hrp_order, head._hrp_bisection
        def __exit__(self, *exc): allocation._hrp_order, allocation._hrp_bisection = self.saved
    return _Ctx()


def floor(folds, n):
    "(bytes, flops, machine figures, source) of the job."
    rows = sum(b - a for a, b, _, _ in folds) + sum(e - s for _, _, s, e in folds)   # train windows + the held test rows
    bytes_ = rows * n * 8
    flops = len(folds) * (2 * 252 * n * n + n ** 3 + 2 * n * n)
    if hasattr(_common, "machine_floor"):
        machine, source = _common.machine_floor(), "measured by _common.machine_floor()"
    else:
        machine, source = dict(RESEARCH), "research constants (21 GB/s, 118 GFLOP/s): _common.machine_floor() missing"
    return bytes_, flops, machine, source


def profile_top(fn, top=12):
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    if hasattr(_common, "profile_summary"):
        rows = _common.profile_summary(prof, top=top, everything=True)
        return [{"function": r["function"], "tottime_s": r["tottime_s"], "calls": r["calls"]} for r in rows]
    rows = []
    for (file, line, name), (_, nc, tt, _, _) in pstats.Stats(prof).stats.items():
        rows.append({"function": f"{file.split('site-packages/')[-1]}:{line}({name})", "tottime_s": round(tt, 4), "calls": nc})
    return sorted(rows, key=lambda r: -r["tottime_s"])[:top]


def linkage_alone(X, folds):
    "Per-window linkage (ward + optimal ordering) of the real windows: lean vs public, and the optimal ordering's share."
    ys = []
    for a, b, _, _ in folds:
        r = np.corrcoef(X.iloc[a:b].to_numpy().T)
        ys.append(np.ascontiguousarray(solvers._hrp_distance(r, "pearson")[np.triu_indices(len(r), 1)]))
    n = X.shape[1]
    lean = best_of(lambda: [solvers._linkage(y, n, "ward", True) for y in ys], 7) / len(ys)
    public = best_of(lambda: [solvers._linkage_public(y, n, "ward", True) for y in ys], 7) / len(ys)
    no_olo = best_of(lambda: [solvers._linkage(y, n, "ward", False) for y in ys], 7) / len(ys)
    same = all(solvers._linkage(y, n, "ward", True).tobytes() == solvers._linkage_public(y, n, "ward", True).tobytes() for y in ys)
    abstained = sum(solvers._olo_flips(solvers._linkage(y, n, "ward", False), y, n) is None for y in ys)
    return {"windows": len(ys), "ordering_left_to_scipy": abstained,
            "lean_us": round(1e6 * lean, 1), "public_us": round(1e6 * public, 1), "lean_without_ordering_us": round(1e6 * no_olo, 1),
            "optimal_ordering_us": round(1e6 * (lean - no_olo), 1), "bitwise_equal_all_windows": same}


def main():
    load0 = os.getloadavg()[0]
    X = sp500()
    engine, alloc = BacktestEngine(252, 21, holding="fixed"), HRP(linkage="ward", optimal_ordering=True)
    folds = engine.folds(len(X))
    n = X.shape[1]
    print(f"load average at start {load0:.2f}; scipy {scipy.__version__}; compiled routines: {solvers._COMPILED is not None}")
    print(f"HRP ward + optimal ordering, {n} assets × {len(X)} days, {len(folds)} rebalances (train 252 / test 21)")
    lean_res = engine.run(X, alloc)                                      # warm-up (plans, caches)
    with public_path(): public_res = engine.run(X, alloc)
    identical = lean_res.weights.to_numpy().tobytes() == public_res.weights.to_numpy().tobytes()
    head = committed_path()
    if head is not None:
        with head: head_res = engine.run(X, alloc)
        head_gap = float(np.abs(head_res.weights.to_numpy() - lean_res.weights.to_numpy()).max())
    t_lean, t_public, t_head = [], [], []                               # (wall, CPU of this process) per run
    def timed(out):
        t0, c0 = time.perf_counter(), time.process_time()
        engine.run(X, alloc)
        out.append((time.perf_counter() - t0, time.process_time() - c0))
    for _ in range(7):                                                  # interleaved: all see the same machine load
        timed(t_lean)
        with public_path(): timed(t_public)
        if head is not None:
            with head: timed(t_head)
    best = lambda ts: (min(w for w, _ in ts), min(c for _, c in ts))
    (lean, lean_cpu), (public, public_cpu) = best(t_lean), best(t_public)
    print(f"  lean path   {1e3 * lean:7.1f} ms wall, {1e3 * lean_cpu:7.1f} ms CPU   (best of 7)")
    print(f"  public path {1e3 * public:7.1f} ms wall, {1e3 * public_cpu:7.1f} ms CPU   → {public / lean:.2f}x wall, "
          f"{public_cpu / lean_cpu:.2f}x CPU; weights bitwise identical: {identical}")
    if head is not None:
        head_w, head_c = best(t_head)
        print(f"  last commit {1e3 * head_w:7.1f} ms wall, {1e3 * head_c:7.1f} ms CPU   → {head_w / lean:.2f}x wall, "
              f"{head_c / lean_cpu:.2f}x CPU (scipy's compiled ordering); max |Δw| {head_gap:.1e}")
    print(f"  target < {TARGET_S:.2f} s: wall {'met' if lean < TARGET_S else 'NOT met'}, CPU {'met' if lean_cpu < TARGET_S else 'NOT met'} "
          f"(CPU time is what an idle machine's wall time would be; the load average says how busy this one is)")
    alone = linkage_alone(X, folds)
    print(f"  linkage per window: lean {alone['lean_us']:.0f} µs (optimal ordering {alone['optimal_ordering_us']:.0f} µs of it), "
          f"public {alone['public_us']:.0f} µs; ordering left to scipy (close calls) in {alone['ordering_left_to_scipy']} "
          f"of {alone['windows']} windows; bitwise equal on all: {alone['bitwise_equal_all_windows']}")
    bytes_, flops, machine, source = floor(folds, n)
    t_mem, t_cpu = bytes_ / (machine["bandwidth_gbs"] * 1e9), flops / (machine["dgemm_gflops"] * 1e9)
    floor_s = max(t_mem, t_cpu)
    gap = lean / floor_s                                                # of the wall time
    floor_research = max(bytes_ / (RESEARCH["bandwidth_gbs"] * 1e9), flops / (RESEARCH["dgemm_gflops"] * 1e9))
    print(f"  floor: {bytes_ / 1e6:.1f} MB at {machine['bandwidth_gbs']} GB/s = {1e3 * t_mem:.2f} ms, {flops / 1e6:.0f} MFLOP at "
          f"{machine['dgemm_gflops']} GFLOP/s = {1e3 * t_cpu:.2f} ms ({source}) → gap {gap:.0f}x "
          f"(research figures: floor {1e3 * floor_research:.2f} ms, gap {lean / floor_research:.0f}x)")
    figures = {"assets": n, "days": len(X), "rebalances": len(folds), "load_average_at_start": load0,
               "load_average_at_end": os.getloadavg()[0], "scipy": scipy.__version__,
               "compiled_routines": solvers._COMPILED is not None,
               "lean_s": round(lean, 4), "public_scipy_s": round(public, 4), "ratio_public_over_lean": round(public / lean, 2),
               "lean_cpu_s": round(lean_cpu, 4), "public_scipy_cpu_s": round(public_cpu, 4),
               "ratio_public_over_lean_cpu": round(public_cpu / lean_cpu, 2),
               "weights_bitwise_identical": identical, "target_s": TARGET_S, "target_met": bool(lean < TARGET_S),
               "target_met_cpu": bool(lean_cpu < TARGET_S),
               "linkage_per_window": alone,
               "floor": {"bytes": bytes_, "flops": flops, "bandwidth_gbs": machine["bandwidth_gbs"],
                         "gflops": machine["dgemm_gflops"], "source": source, "memory_s": t_mem, "flops_s": t_cpu,
                         "floor_s": floor_s, "bound": "bandwidth" if t_mem >= t_cpu else "flops", "gap": round(gap, 1),
                         "floor_s_research": floor_research, "gap_research": round(lean / floor_research, 1),
                         "gap_research_cpu": round(lean_cpu / floor_research, 1)}}
    if head is not None:
        figures.update(last_commit_s=round(head_w, 4), ratio_last_commit_over_lean=round(head_w / lean, 2),
                       last_commit_cpu_s=round(head_c, 4), ratio_last_commit_over_lean_cpu=round(head_c / lean_cpu, 2),
                       max_abs_weight_gap_vs_last_commit=head_gap)
    if gap > 10:
        top = profile_top(lambda: engine.run(X, alloc))
        figures["profile_top_tottime"] = top
        print("  profile (lean path, one run, top 12 by own time):")
        for r in top: print(f"    {r['tottime_s']:7.4f} s {r['calls']:7d}  {r['function']}")
    write_results("hrp", figures)


if __name__ == "__main__":
    main()
