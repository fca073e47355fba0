"""Production runs end to end: papermill via `tvs run`, isolation of concurrent runs, kill and resume,
serial vs Ray, hostile arguments."""
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tradingview_scraper.ledger import AuditLedger
from tradingview_scraper.orchestration.flow import BACKTEST, HYDRATE, INGEST
from tradingview_scraper.orchestration.runner import open_run, read_status

FLOW = """
import json, sys
from tradingview_scraper.orchestration.flow import run_flow
r = run_flow(sys.argv[1], run_id=sys.argv[2], runs_root=sys.argv[3], lakehouse_root=sys.argv[4], env={},
             overrides=json.loads(sys.argv[5]), executor=sys.argv[6] if len(sys.argv) > 6 else None)
print(r.status["status"])
"""


NOISE = ("Kernel is running over TCP without encryption", "is not able to be represented")   # jupyter_client / nbconvert


def flow(profile, run_id, runs, lake, overrides=None, executor=None, wait=True):
    args = [sys.executable, "-c", FLOW, profile, run_id, str(runs), str(lake), json.dumps(overrides or {})] + ([executor] if executor else [])
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**{k: v for k, v in os.environ.items() if not k.startswith("TVS_")}, "RAY_AUTH_MODE": "disabled"})
    if not wait: return p
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    return out


def artifact_hashes(run_dir: Path) -> dict:
    "sha256 of every backtest artifact (the research result)."
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((run_dir / "artifacts" / "backtest").iterdir())
            if p.name != "timings.json"}


def test_tvs_run_executes_the_production_notebook(tmp_path, tvs):
    r = tvs("run", "--profile", "development", "--runs-root", str(tmp_path / "runs"), "--lakehouse", str(tmp_path / "lake"),
            "--run-id", "papermill-1", "--set", "backtest.cost_bps=2")
    assert r.returncode == 0, r.stdout + r.stderr
    run = tmp_path / "runs" / "papermill-1"
    assert "succeeded" in r.stdout and str(run / "reports" / "report.html") in r.stdout
    st = read_status(run)
    assert st["status"] == "succeeded" and list(st["steps"])[-1] == "validate"
    for f in ("notebooks/flow.ipynb", "notebooks/flow.html", "reports/report.html", "reports/summary.md", "manifest.json", "metadata.parquet"):
        assert (run / f).exists(), f
    assert json.loads((run / "manifest.json").read_text())["manifest"]["backtest"]["cost_bps"] == 2.0
    nb = json.loads((run / "notebooks" / "flow.ipynb").read_text())
    injected = [c for c in nb["cells"] if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
    assert injected and "papermill-1" in "".join(injected[0]["source"])
    assert AuditLedger.for_run(run).verify().ok
    assert [w for w in NOISE if w in r.stderr] == [], r.stderr          # no kernel or nbconvert chatter for the user
    assert "without encryption" not in (run / "logs" / "kernel.log").read_text()   # the kernel's sockets are encrypted
    html = (run / "notebooks" / "flow.html").read_text()
    assert 'class="plotly-graph-div" id="tvs-figure-0"' in html and html.count("plotly.js v") == 1   # the equity figure, drawn
    assert "cdnjs" not in html and 'src="http' not in html                                          # and readable offline
    listing = tvs("runs", "list", "--runs-root", str(tmp_path / "runs"))
    assert listing.returncode == 0 and "papermill-1" in listing.stdout and "succeeded" in listing.stdout


def test_concurrent_runs_are_isolated(tmp_path, child):
    """Two runs with different settings in flight at the same time (both stopped inside `select` until both are
    there, sharing one lakehouse) produce exactly what each produces alone."""
    settings = {"a": {}, "b": {"backtest.cost_bps": 25, "allocation.optimizers": ["equal_weight", "hrp"]}}
    solo = {}
    for name, ov in settings.items():
        flow("development", f"solo-{name}", tmp_path / "solo", tmp_path / f"lake-solo-{name}", ov)
        solo[name] = artifact_hashes(tmp_path / "solo" / f"solo-{name}")
    runs = {name: stopping_flow(child, "development", f"conc-{name}", tmp_path / "conc", tmp_path / "lake-shared", "select", ov)
            for name, ov in settings.items()}
    for r in runs.values(): assert r.expect("at") == "select"
    for r in runs.values(): r.send("go")                 # both runs are in flight now
    for r in runs.values(): assert r.expect("status") == "succeeded"
    assert [r.finish() for r in runs.values()] == [0, 0]
    for name in ("a", "b"):
        assert artifact_hashes(tmp_path / "conc" / f"conc-{name}") == solo[name], name
    assert solo["a"] != solo["b"]


# The flow with one injected hook: on entering step `argv[5]` the run reports `at <step>` and waits for a line on its
# input, so the test decides when it goes on — or kills it exactly there — instead of polling and hoping.
STOP_AT = r"""
import dataclasses, json, sys
from tradingview_scraper.orchestration import flow as F
def stop_then(fn):
    def step(ctx):
        print("at", sys.argv[5], flush=True)
        if sys.stdin.readline() != "go\n": sys.exit(3)
        return fn(ctx)
    return step
steps = tuple(dataclasses.replace(s, fn=stop_then(s.fn)) if s.name == sys.argv[5] else s for s in F.FLOW)
r = F.run_flow(sys.argv[1], run_id=sys.argv[2], runs_root=sys.argv[3], lakehouse_root=sys.argv[4], env={},
               overrides=json.loads(sys.argv[6]), steps=steps)
print("status", r.status["status"], flush=True)
"""


def stopping_flow(child, profile, run_id, runs, lake, step, overrides=None):
    "A flow process that stops on entering `step` until the test sends `go`."
    return child(STOP_AT, profile, run_id, runs, lake, step, json.dumps(overrides or {}), env={"RAY_AUTH_MODE": "disabled"})


def test_killed_run_is_failed_and_resumes(tmp_path, child):
    runs, lake = tmp_path / "runs", tmp_path / "lake"
    run = stopping_flow(child, "development", "kill-me", runs, lake, "backtest")
    assert run.expect("at") == "backtest"                # inside the backtest step, after earlier steps stored artifacts
    assert read_status(runs / "kill-me")["steps"]["backtest"]["status"] == "running"
    lake_before = {q: q.read_bytes() for q in sorted((lake / "ohlcv").rglob("*.parquet"))}
    assert run.kill() == -signal.SIGKILL
    st = read_status(runs / "kill-me")
    assert st["status"] == "failed" and st.get("interrupted") and st["steps"]["ingest"]["status"] == "succeeded"
    assert {q: q.read_bytes() for q in sorted((lake / "ohlcv").rglob("*.parquet"))} == lake_before   # lakehouse intact
    flow("development", "kill-me", runs, lake)
    st = read_status(runs / "kill-me")
    assert st["status"] == "succeeded" and st["attempts"] == 2
    outcomes = [(r["data"]["step"], r["data"]["status"]) for r in AuditLedger.for_run(runs / "kill-me").records() if r["kind"] == "outcome"]
    assert ("ingest", "skipped") in outcomes and ("backtest", "succeeded") in outcomes
    assert AuditLedger.for_run(runs / "kill-me").verify().ok


def test_serial_and_ray_give_identical_results(tmp_path):
    ov = {"allocation.optimizers": ["equal_weight", "min_variance", "hrp"]}
    flow("development", "serial", tmp_path / "runs", tmp_path / "lake", ov, executor="serial")
    flow("development", "ray", tmp_path / "runs", tmp_path / "lake", ov, executor="ray")
    a, b = artifact_hashes(tmp_path / "runs" / "serial"), artifact_hashes(tmp_path / "runs" / "ray")
    conv = [json.loads((tmp_path / "runs" / r / "artifacts" / "backtest" / "conventions.json").read_text()) for r in ("serial", "ray")]
    assert [c.pop("executor") for c in conv] == ["serial", "ray"] and conv[0] == conv[1]   # only the executor's name differs
    assert {k: v for k, v in a.items() if k != "conventions.json"} == {k: v for k, v in b.items() if k != "conventions.json"}
    assert read_status(tmp_path / "runs" / "ray")["executor"] == "ray"


@pytest.mark.parametrize("args", [["--run-id", "../escape"], ["--run-id", "a/b"], ["--profile", "../../etc"],
                                  ["--runs-root", "runs\x1b[2J"], ["--lakehouse", "lake/\u2215etc"], ["--set", "=1"]])
def test_hostile_run_arguments_touch_nothing(tmp_path, tvs, args):
    before = sorted(p for p in tmp_path.rglob("*"))
    r = subprocess.run([str(Path(sys.executable).parent / "tvs"), "run", "--runs-root", str(tmp_path / "runs"), *args],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode != 0 and r.stderr.strip().startswith("tvs: error:"), r.stdout + r.stderr
    assert sorted(p for p in tmp_path.rglob("*")) == before


CLOSED = {"scanner_url": "http://127.0.0.1:9", "websocket_url": "ws://127.0.0.1:9/socket.io/websocket"}   # nothing listens on port 9


def test_production_without_network_stops_or_continues_as_the_profile_says(tmp_path):
    from tradingview_scraper.orchestration.flow import run_flow
    from tradingview_scraper.orchestration.runner import RunFailed
    quick = {"hydration.max_attempts": 1, "data.start": "2019-01-01", "allocation.optimizers": ["equal_weight"]}
    with pytest.raises(RunFailed, match="hydration.on_failure"):
        run_flow("production", run_id="stop", runs_root=tmp_path / "runs", lakehouse_root=tmp_path / "lake", env={},
                 overrides={**quick, "hydration.on_failure": "stop"}, endpoint=CLOSED)
    st = read_status(tmp_path / "runs" / "stop")
    assert st["status"] == "failed" and st["failed_step"] == "hydrate" and "hydration failed" in st["error"]
    run = run_flow("production", run_id="continue", runs_root=tmp_path / "runs", lakehouse_root=tmp_path / "lake", env={},
                   overrides={**quick, "hydration.on_failure": "continue", "data.source": "sample", "discovery.screens": []},
                   endpoint=CLOSED)   # no screens: each date's universe is what the sample's catalog knew before it
    assert run.status["status"] == "succeeded"
    hyd = run.load(HYDRATE.hydration)
    assert hyd["continued"] is True and hyd["failed"]
    assert any(w.startswith("hydration failed") for w in run.status["summary"]["warnings"])   # said in the summary, not only the log


def test_production_hydrates_from_a_replay_server(tmp_path):
    """The production path end to end offline: online screen (replay screener) → hydrate (replay chart history)
    → the rest of the flow on what was fetched, with the screen's result stored as a dated universe."""
    from tradingview_scraper.core import utc_now
    from tradingview_scraper.data.lakehouse import Lakehouse
    from tradingview_scraper.orchestration.flow import run_flow
    from tradingview_scraper.tradingview.replay import ReplayServer
    screen = {"name": "replay_all", "market": "america", "columns": ["name", "close", "volume"], "filters": [],
              "limit": 50, "direction": "LONG", "logic": "hold"}
    overrides = {"discovery.screens": [screen], "allocation.optimizers": ["equal_weight", "min_variance"],
                 "allocation.benchmark": None, "backtest.train": 126, "selection.vetoes.min_history": 60,
                 "selection.htr.floor": 3, "selection.htr.max_selected": 8, "hydration.chunk": 4,
                 "discovery.universe_policy": "present_day"}   # one screen taken today: only today's list exists, and it is labelled biased
    with ReplayServer.synthetic(n_symbols=10, n_bars=600, end=utc_now().normalize()) as srv:
        endpoint = {"scanner_url": srv.scanner_url, "websocket_url": srv.websocket_url}
        run = run_flow("production", run_id="replay", runs_root=tmp_path / "runs", lakehouse_root=tmp_path / "lake", env={},
                       overrides=overrides, endpoint=endpoint)
        ray_run = run_flow("production", run_id="replay-ray", runs_root=tmp_path / "runs", lakehouse_root=tmp_path / "lake-ray",
                           env={}, overrides=overrides, endpoint=endpoint, executor="ray")
        served = set(srv.table.index)
    bars = lambda root: {p.name: p.read_bytes() for p in sorted((root / "ohlcv").rglob("*.parquet"))}
    assert bars(tmp_path / "lake") == bars(tmp_path / "lake-ray")          # Ray workers stored exactly the same bars
    assert artifact_hashes(ray_run.run_dir).keys() == artifact_hashes(run.run_dir).keys()
    assert run.load(BACKTEST.oos_returns).equals(ray_run.load(BACKTEST.oos_returns))
    serial, ray = open_run(run.run_dir).results(), open_run(ray_run.run_dir).results()   # the research objects, read back
    assert serial.summary().equals(ray.summary()) and list(serial.results) == list(ray.results)
    for name, res in serial.results.items():
        assert res.weights.equals(ray.results[name].weights) and res.gross_returns.equals(ray.results[name].gross_returns)
    lake = Lakehouse(tmp_path / "lake")
    assert run.status["status"] == "succeeded"
    assert any("survivorship-biased" in w for w in run.status["summary"]["warnings"])
    assert {str(s) for s in lake.symbols()} and {str(s) for s in lake.symbols()} <= served
    assert lake.universe_dates("replay_all"), "the online screen's result was not stored as a dated universe"
    hyd = run.load(HYDRATE.hydration)
    assert hyd["chunks"] == -(-hyd["symbols"] // 4) >= 2 and hyd["fetched"] == hyd["symbols"]     # fanned out in chunks, all merged
    assert (run.run_dir / "hydration" / "outcomes.parquet").exists() and len(run.load(HYDRATE.outcomes)) == hyd["symbols"]
    assert set(run.load(INGEST.returns).columns) == {str(s) for s in lake.symbols()} - set(run.load(INGEST.load_report).query("status != 'loaded'")["symbol"])


def test_part_of_the_flow_then_the_rest_through_the_production_notebook(tmp_path):
    """`run_production(until=...)` then `steps=[...]`: the parameters reach the notebook's `run_flow`, the run is partial
    until its last steps ran, and the executed notebook shows what has run and says what has not."""
    from tradingview_scraper.orchestration.production import run_production
    runs, lake = tmp_path / "runs", tmp_path / "lake"
    st = run_production("development", run_id="part", runs_root=runs, lakehouse_root=lake, env={}, until="select")
    assert st["status"] == "partial" and "select" in st["steps"] and "backtest" not in st["steps"]
    nb = (runs / "part" / "notebooks" / "flow.ipynb").read_text()
    assert "winners" in nb and "step `backtest` has not run in this run (partial)" in nb
    html = (runs / "part" / "notebooks" / "flow.html").read_text()
    assert "tvs-figure-0" not in html and "has not run in this run (partial)" in html   # no backtest: no equity figure
    rest = [s for s in ("synthesize", "backtest", "assess", "portfolio", "report", "validate") if s not in st["steps"]]
    st = run_production("development", run_id="part", runs_root=runs, lakehouse_root=lake, env={}, steps=rest)
    assert {s: st["steps"][s]["status"] for s in rest} == dict.fromkeys(rest, "succeeded")
    html = (runs / "part" / "notebooks" / "flow.html").read_text()
    assert 'id="tvs-figure-0"' in html and "has not run in this run (partial)" not in html and (runs / "part" / "reports" / "report.html").exists()
    assert run_production("development", run_id="part", runs_root=runs, lakehouse_root=lake, env={})["status"] == "succeeded"
