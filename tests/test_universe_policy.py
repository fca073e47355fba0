"""Point-in-time universes on the production path: online screens hydrated from the replay server on several
simulated days (each snapshot stamped with that day's clock), then the production profile offline. Each decision
date sees exactly the snapshot known before it; a first run (no snapshot before any date) refuses to start under
`as_known`; `present_day` runs and is labelled survivorship-biased everywhere; a failed hydration is a banner."""
import json

import numpy as np
import pandas as pd
import pytest

from tradingview_scraper.data.lakehouse import Lakehouse
from tradingview_scraper.orchestration.flow import BACKTEST, FLOW, HYDRATE, INGEST, run_flow
from tradingview_scraper.orchestration.runner import RunFailed, read_status
from tradingview_scraper.tradingview.replay import ReplayServer, synthetic_market

N_BARS, TRAIN, TEST = 400, 126, 21
SCREEN = {"name": "picks", "market": "america", "columns": ["name", "close", "volume"], "limit": 50, "direction": "LONG", "logic": "hold",
          "filters": [{"left": "Recommend.All", "operation": "greater", "right": 0}]}
BASE = {"discovery.screens": [SCREEN], "allocation.optimizers": ["equal_weight"], "allocation.benchmark": None,
        "backtest.train": TRAIN, "backtest.test": TEST, "selection.vetoes.min_history": 60, "selection.htr.floor": 2, "selection.htr.max_selected": 8,
        "hydration.max_attempts": 2}
OFFLINE = {**BASE, "hydration.enabled": False}
CLOSED = {"scanner_url": "http://127.0.0.1:9", "websocket_url": "ws://127.0.0.1:9/socket.io/websocket"}   # nothing listens on port 9


@pytest.fixture(scope="module")
def market():
    table, bars = synthetic_market(n_symbols=20, n_bars=N_BARS, seed=11, end="2024-06-28")
    stocks = [s for s in table.index if table.loc[s, "market"] == "america"]
    days = pd.bdate_range(end="2024-06-28", periods=N_BARS, tz="UTC")
    # three simulated days (22:00 UTC, after the close): between decision dates 3|4 and 7|8, and after the last bar
    clocks = [days[TRAIN + 1 + TEST * 3 + 5] + pd.Timedelta(hours=22), days[TRAIN + 1 + TEST * 7 + 5] + pd.Timedelta(hours=22),
              days[-1] + pd.Timedelta(hours=22)]
    picks = [stocks[0:4], stocks[2:8], stocks[5:]]          # what the screen returned on each day
    return table, bars, clocks, picks


def serve(table, bars, now, picked):
    "The replay server as it was at `now`: bars up to that day, the screen picking `picked`."
    t = table.copy()
    t["Recommend.All"] = np.where(t.index.isin(picked), 1.0, -1.0)
    return ReplayServer(t, {s: b[b["ts"] < now] for s, b in bars.items()})


def hydrate_days(root, market, n_days):
    table, bars, clocks, picks = market
    for k in range(n_days):
        with serve(table, bars, clocks[k], picks[k]) as srv:
            run = run_flow("production", run_id=f"day{k}", runs_root=root / "hydrate-runs", lakehouse_root=root / "lake", env={},
                           overrides=BASE, endpoint={"scanner_url": srv.scanner_url, "websocket_url": srv.websocket_url},
                           now=clocks[k], steps=FLOW[:1])
        assert run.status["status"] == "succeeded"


@pytest.mark.parametrize("selection", [True, False], ids=["selection", "no-selection"])
def test_each_decision_date_sees_exactly_the_snapshot_known_before_it(tmp_path, market, selection):
    table, bars, clocks, picks = market
    hydrate_days(tmp_path, market, 3)
    lake = Lakehouse(tmp_path / "lake")
    assert lake.universe_dates("picks") == clocks            # each snapshot stamped with its day's clock
    run = run_flow("production", run_id="offline", runs_root=tmp_path / "runs", lakehouse_root=tmp_path / "lake", env={},
                   overrides={**OFFLINE, "selection.enabled": selection})   # without Selection the universe still decides
    assert run.status["status"] == "succeeded"
    cov = run.load(BACKTEST.universe_coverage)
    weights = run.load(BACKTEST.weights("equal_weight"))
    assert list(pd.DatetimeIndex(cov["date"])) == list(weights.index)           # one coverage row per decision date
    columns = set(run.load(INGEST.returns).columns)
    seen = []
    for row in cov.itertuples():
        known = [k for k, c in enumerate(clocks) if c < row.date]
        if not known:
            assert pd.isna(row.snapshot) and row.candidates == 0 and row.source == "none"
            assert (weights.loc[row.date] == 0).all(), f"{row.date} knew no universe but held {weights.loc[row.date][weights.loc[row.date] != 0]}"
            seen.append(None)
            continue
        k = known[-1]
        assert row.snapshot == clocks[k], (row.date, row.snapshot, clocks[k])
        assert row.candidates == len(set(picks[k]) & columns)
        held = set(weights.columns[weights.loc[row.date] != 0])
        assert held and held <= set(picks[k]), (row.date, held - set(picks[k]))
        if not selection: assert held == set(picks[k]) & columns          # every candidate, equal weights
        seen.append(k)
    assert seen.count(None) == 4 and {0, 1} <= set(seen) and 2 not in seen     # dates before, between and after the snapshots
    conv = run.load(BACKTEST.conventions)
    assert conv["universe_policy"] == "as_known" and conv["universe_basis"] == "screens (stored snapshots)"
    assert conv["universe_coverage"].startswith(f"{len(cov) - 4} of {len(cov)} decision dates had a universe (from 2 snapshot date(s)")
    warning = "4 decision dates held nothing (as_known)"
    st = read_status(run.run_dir)
    assert any(w.startswith(warning) for w in st["summary"]["warnings"]) and st["summary"]["last_bar"] == "2024-06-28"
    html = (run.run_dir / "reports" / "report.html").read_text()
    assert warning in html[:html.index("<h2>Performance")] and "Universe per decision date" in html
    md = (run.run_dir / "reports" / "summary.md").read_text()
    assert warning in md[:md.index("## Metrics")] and "- universe_policy: as_known" in md


def test_first_run_refuses_under_as_known_and_present_day_is_labelled(tmp_path, market):
    table, bars, clocks, picks = market
    with serve(table, bars, clocks[2], picks[2]) as srv:      # the first run ever: today's screen, nothing before
        endpoint = {"scanner_url": srv.scanner_url, "websocket_url": srv.websocket_url}
        with pytest.raises(RunFailed, match="UniverseError: invalid universe policy 'as_known': expected at least one of 13 decision dates "
                                            r"\d{4}-\d\d-\d\d … \d{4}-\d\d-\d\d with candidates"):
            run_flow("production", run_id="first", runs_root=tmp_path / "runs", lakehouse_root=tmp_path / "lake", env={},
                     overrides=BASE, endpoint=endpoint, now=clocks[2])
    st = read_status(tmp_path / "runs" / "first")
    assert st["status"] == "failed" and st["failed_step"] == "backtest" and "Keep running daily" in st["error"]
    assert not (tmp_path / "runs" / "first" / "artifacts" / "backtest").exists()
    run = run_flow("production", run_id="today", runs_root=tmp_path / "runs", lakehouse_root=tmp_path / "lake", env={},
                   overrides={**OFFLINE, "discovery.universe_policy": "present_day"})
    assert run.status["status"] == "succeeded"
    cov = run.load(BACKTEST.universe_coverage)
    assert set(cov["snapshot"]) == {clocks[2]} and (cov["candidates"] == len(picks[2])).all()
    label = "survivorship-biased"
    conv = run.load(BACKTEST.conventions)
    assert conv["universe_policy"].startswith(f"present_day ({label}")
    md = (run.run_dir / "reports" / "summary.md").read_text()
    assert label in md[:md.index("## Metrics")] and f"- universe_policy: present_day ({label}" in md
    html = (run.run_dir / "reports" / "report.html").read_text()
    assert label in html[:html.index("<h2>Performance")]
    assert any(label in w for w in read_status(run.run_dir)["summary"]["warnings"])


def test_failed_hydration_is_a_banner_with_the_last_bar(tmp_path, market):
    hydrate_days(tmp_path, market, 2)
    run = run_flow("production", run_id="offline-day", runs_root=tmp_path / "runs", lakehouse_root=tmp_path / "lake", env={},
                   overrides={**BASE, "hydration.max_attempts": 1, "hydration.on_failure": "continue"}, endpoint=CLOSED)
    assert run.status["status"] == "succeeded" and run.load(HYDRATE.hydration)["continued"] is True
    last = market[2][1].normalize()                                              # the second day's bar is the last one stored
    banner = f"hydration failed and the run continued on the data already in the lakehouse (last bar {last:%Y-%m-%d})"
    st = read_status(run.run_dir)
    assert st["summary"]["last_bar"] == f"{last:%Y-%m-%d}" and any(w.startswith(banner) for w in st["summary"]["warnings"])
    html = (run.run_dir / "reports" / "report.html").read_text()
    assert banner in html[:html.index("<h2>Performance")]
    md = (run.run_dir / "reports" / "summary.md").read_text()
    assert f"> **Warning:** {banner}" in md[:md.index("## Metrics")]
