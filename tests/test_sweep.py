"""Sweeps on the real research flow (development profile, the shipped sample in a scratch lakehouse): a grid of settings ×
allocators runs as cells of ONE run through ONE executor map; each cell is bitwise the run of its own settings; cells
with equal selection-relevant settings share one selection memo (counted); the trial count and the sweep are recorded;
the assess step reads back as the same `RealityCheck`; results are bitwise equal serial vs local Ray; `tvs run --sweep`
records the sweep in the manifest and a refused sweep writes nothing."""
import hashlib
import json
import os
from pathlib import Path

import pandas as pd
import pytest

from helpers import tree_digest
from tradingview_scraper.orchestration import executors
from tradingview_scraper.orchestration.flow import ASSESS, BACKTEST, FLOW, INGEST, run_flow
from tradingview_scraper.orchestration.runner import open_run, read_status
from tradingview_scraper.pipelines.selection import SelectionPipeline

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
COSTS = {"backtest.cost_bps": [0, 10]}                 # selection shareable: one selection memo for both variants
TWO = ["equal_weight", "min_variance"]                 # the development profile's allocators


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    "One scratch lakehouse of the shipped sample for every run of this module (a sample profile seeds it itself)."
    return tmp_path_factory.mktemp("lake")


def flow(tmp_path, lake, **kw):
    return run_flow("development", runs_root=tmp_path / "runs", lakehouse_root=lake, env={}, progress=False, **kw)


def result_bytes(run_dir: Path, steps=("backtest", "assess")) -> dict:
    "sha256 of every result artifact of these steps (timings are wall-clock facts, conventions name the executor)."
    return {p.relative_to(run_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for s in steps for p in sorted((run_dir / "artifacts" / s).iterdir())
            if p.name not in ("timings.json", "conventions.json")}


def test_a_sweep_cell_is_bitwise_the_run_of_its_own_settings(tmp_path, lake):
    plain = flow(tmp_path, lake, overrides={"backtest.cost_bps": 10})
    swept = flow(tmp_path, lake, sweep=COSTS)
    cells = swept.load(BACKTEST.cells)
    assert list(cells["cell"]) == ["equal_weight[cost_bps=0]", "min_variance[cost_bps=0]", "market[cost_bps=0]",
                                   "equal_weight[cost_bps=10]", "min_variance[cost_bps=10]", "market[cost_bps=10]"]
    assert list(cells["benchmark"]) == ["market[cost_bps=0]"] * 3 + ["market[cost_bps=10]"] * 3
    assert list(cells["backtest.cost_bps"]) == [0, 0, 0, 10, 10, 10]
    for name in TWO + ["market"]:
        cell = f"{name}[cost_bps=10]"
        for key in (BACKTEST.oos_returns, BACKTEST.gross_returns, BACKTEST.equity, BACKTEST.turnover, BACKTEST.costs):
            pd.testing.assert_series_equal(swept.load(key)[cell], plain.load(key)[name], check_names=False, check_exact=True)
        pd.testing.assert_frame_equal(swept.load(BACKTEST.weights(cell)), plain.load(BACKTEST.weights(name)), check_exact=True)
        assert swept.load(BACKTEST.metrics)[cell] == plain.load(BACKTEST.metrics)[name]
    art = {p.name for p in (swept.run_dir / "artifacts" / "backtest").iterdir()}
    assert {f"{BACKTEST.weights(c).name}.parquet" for c in cells["cell"]} <= art and not any("[" in a or "=" in a for a in art)
    conv = swept.load(BACKTEST.conventions)
    assert (conv["trials"], conv["sweep"]) == (4, COSTS)
    assert conv["cell_conventions"]["min_variance[cost_bps=10]"]["cost_bps"] == 10.0
    assert "today's portfolio keeps the base profile's allocators" in conv["sweep_portfolio"]
    assert sorted(swept.load("portfolio", "summary")) == TWO              # the portfolio: the base profile's allocators
    reality = swept.reality()                                             # each trial against its own variant's benchmark
    assert reality.cells.loc["min_variance[cost_bps=10]", "benchmark"] == "market[cost_bps=10]"
    assert list(reality.cells["trial"]) == [not c.startswith("market") for c in reality.cells.index] and reality.trials == 4
    comparison = swept.results()
    assert list(comparison.results) == [c for c in cells["cell"] if not c.startswith("market")]
    assert read_status(swept.run_dir)["status"] == "succeeded"


def test_a_run_without_a_sweep_keeps_its_artifacts_and_records_one_cell_per_allocator(tmp_path, lake):
    run = flow(tmp_path, lake)
    conv = run.load(BACKTEST.conventions)
    assert (conv["trials"], conv["sweep"], "cell_conventions" in conv) == (2, {}, False)
    assert list(run.load(BACKTEST.cells)["cell"]) == TWO + ["market"]
    assert list(run.load(BACKTEST.oos_returns).columns) == TWO + ["market"]
    names = {p.stem for p in (run.run_dir / "artifacts" / "backtest").iterdir()}
    assert {"weights_equal_weight", "weights_min_variance", "weights_market", "cells"} <= names
    assert not any(n.startswith("folds_") for n in names)                 # one folds artifact: every cell decided on it
    cells = run.cells()
    assert list(cells["node"]) == ["local"] * 3 and (cells["seconds"] > 0).all()
    reality = open_run(run.run_dir).reality()                             # read back from the assess step's artifacts
    assert (reality.trials, reality.winner) == (2, run.status["summary"]["winner"]) and reality.winner in TWO
    assert reality.params == run.context.profile.stats
    assert set(run.status["steps"]["assess"]["outputs"]) == set(ASSESS.names())


def selections(monkeypatch) -> list:
    "Every `SelectionPipeline.run` call from here on (the view's decision time), recorded."
    calls, real = [], SelectionPipeline.run
    def counted(self, view, *a, **kw):
        calls.append(view.t)
        return real(self, view, *a, **kw)
    monkeypatch.setattr(SelectionPipeline, "run", counted)
    return calls


def test_variants_with_equal_selection_settings_share_one_selection_per_window(tmp_path, lake, monkeypatch):
    calls = selections(monkeypatch)
    plain = flow(tmp_path, lake, until="backtest")
    one = len(calls)
    del calls[:]
    flow(tmp_path, lake, until="backtest", sweep={**COSTS, "backtest.holding": ["drift", "fixed"]})   # 4 variants, 8 trials
    assert len(calls) == one                                              # selected once per window, as one plain run does
    n_folds = len(plain.load(BACKTEST.folds))
    del calls[:]
    swept = flow(tmp_path, lake, until="backtest", sweep={"backtest.train": [126, 189]})    # the window changes: not shareable
    folds = swept.load(BACKTEST.cells)["folds"]
    assert len(calls) > one + n_folds // 2                                # the second window selects on its own
    assert list(folds) == ["folds"] * 3 + [BACKTEST.cell_folds("equal_weight[train=189]").name] * 3
    monkeypatch.undo()
    own = flow(tmp_path, lake, until="backtest", overrides={"backtest.train": 189})             # the cell's settings, run alone
    cell = "min_variance[train=189]"
    pd.testing.assert_frame_equal(swept.load(BACKTEST.weights(cell)), own.load(BACKTEST.weights("min_variance")), check_exact=True)
    pd.testing.assert_frame_equal(swept.load(BACKTEST.cell_folds("equal_weight[train=189]")), own.load(BACKTEST.folds), check_exact=True)
    result = swept.results().results[cell]                                # read on its own days: it starts later
    pd.testing.assert_series_equal(result.returns, own.load(BACKTEST.oos_returns)["min_variance"], check_names=False, check_exact=True)
    assert result.returns.index[0] > swept.results().results["min_variance[train=126]"].returns.index[0]


def test_all_cells_go_through_one_executor_map(tmp_path, lake, monkeypatch):
    maps, real = [], executors.SerialExecutor.map
    def recorded(self, fn, items):
        items = list(items)
        maps.append(len(items))
        return real(self, fn, items)
    monkeypatch.setattr(executors.SerialExecutor, "map", recorded)
    run = flow(tmp_path, lake, until="backtest", sweep={**COSTS, "allocation.optimizers": ["min_variance", "hrp", "erc"]})
    assert maps == [1, 2 * 4]      # hydrate is off: the fold inputs (one share group, one batch on a serial executor), then 2 × (3 + 1) cells
    cells = run.load(BACKTEST.cells)
    assert list(cells["allocator"][:4]) == ["min_variance", "hrp", "erc", "market"]
    assert run.load(BACKTEST.conventions)["trials"] == 6


def test_prior_trials_add_to_the_grid_and_reach_the_deflated_sharpe(tmp_path, lake):
    run = flow(tmp_path, lake, overrides={"stats.prior_trials": 30, "stats.resamples": 200}, sweep=COSTS)
    assert run.load(BACKTEST.conventions)["trials"] == 4 + 30
    reality = run.reality()
    assert (reality.trials, reality.dsr.n_trials, reality.params.resamples) == (34, 34, 200)
    assert len(run.load(ASSESS.bootstrap)) == 200 and reality.verdict == run.load(ASSESS.reality)["verdict"]


@pytest.fixture
def local_ray():
    "A Ray of this test's own on 2 CPUs (`address='local'`: never another run's cluster on this machine), shut down after."
    import ray
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try: yield ray
    finally: ray.shutdown()


def test_serial_and_local_ray_give_bitwise_the_same_sweep(tmp_path, lake, local_ray):
    serial = flow(tmp_path, lake, until="assess", sweep=COSTS, overrides={"stats.resamples": 200})
    ray_run = flow(tmp_path, lake, until="assess", sweep=COSTS, overrides={"stats.resamples": 200},
                   executor=executors.RayExecutor(num_cpus=2))      # finds the Ray above initialized: its 2 CPUs
    assert ray_run.load(BACKTEST.conventions)["executor"] == "ray"
    assert result_bytes(ray_run.run_dir) == result_bytes(serial.run_dir)
    nodes = ray_run.cells()["node"]
    assert nodes.notna().all() and "local" not in set(nodes)                 # Ray node ids, from the executor's placements


def test_on_ray_every_fold_is_decided_once_and_the_returns_travel_once(tmp_path, lake, local_ray, monkeypatch):
    """A sweep on Ray decides each fold's selection and synthesis once for its share group (the folds spread over the
    workers), then runs the cells on those inputs; the returns go into the object store once, and both maps carry the
    handle, not the data."""
    puts, real_put = [], local_ray.put
    def put(value, *a, **kw):
        puts.append(value)
        return real_put(value, *a, **kw)
    monkeypatch.setattr(local_ray, "put", put)
    run = flow(tmp_path, lake, until="backtest", sweep=COSTS, executor=executors.RayExecutor(num_cpus=2))
    frames = [p for p in puts if isinstance(p, pd.DataFrame)]
    assert len(frames) == 1 and frames[0].equals(run.load(INGEST.returns))   # one DataFrame put: the run's returns
    fold_map, cell_map = [p for p in puts if callable(p)]              # the two maps' functions, put once each
    assert fold_map.func.__name__ == "_inputs_batch" and cell_map.func.__name__ == "_grid_cell"
    job = fold_map.args[0]
    assert job.__getstate__()["frame"] is None and job.__getstate__()["values"] is None   # pickled as the handle
    assert all(isinstance(cell_map.keywords[k], executors.Shared) for k in ("returns", "inputs", "market"))   # handles, read once per worker
    n_folds = len(run.load(BACKTEST.folds))
    timings = run.load(BACKTEST.timings)
    assert {t["inputs_folds"] for t in timings.values()} == {n_folds}  # every cell read its group's inputs


def test_tvs_run_sweep_is_recorded_and_a_refused_sweep_writes_nothing(tmp_path, lake, tvs):
    base = ["run", "--profile", "development", "--runs-root", str(tmp_path / "runs"), "--lakehouse", str(lake)]
    before = tree_digest(tmp_path)
    for bad, said in ((["--sweep", "data.start=2020-01-01,2021-01-01"], "data cannot be swept"),
                      (["--sweep", "backtest.train=126,1"], "sweep.backtest.train[1]"),
                      (["--sweep", "backtest.trian=126"], "invalid sweep key 'backtest.trian'"),
                      (["--sweep", "backtest.train=126,,252"], "invalid --sweep")):
        r = tvs(*base, "--run-id", "refused", *bad)
        assert r.returncode == 2 and said in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert tree_digest(tmp_path) == before
    r = tvs(*base, "--run-id", "swept", "--sweep", "backtest.cost_bps=0,10", "--sweep", "allocation.optimizers=[min_variance, {kind: hrp, linkage: ward}]",
            "--set", "stats.resamples=200")
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = tmp_path / "runs" / "swept"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    sweep = {"backtest.cost_bps": [0, 10], "allocation.optimizers": ["min_variance", {"kind": "hrp", "linkage": "ward"}]}
    assert manifest["overrides"]["sweep"] == sweep and manifest["manifest"]["sweep"] == sweep
    cells = open_run(run_dir).cells()
    assert list(cells["cell"][:3]) == ["min_variance[cost_bps=0]", "hrp[cost_bps=0]", "market[cost_bps=0]"]
    steps = read_status(run_dir)["steps"]
    assert set(steps) == {s.name for s in FLOW} and {s["status"] for s in steps.values()} == {"succeeded"}
