"""A daily cycle, tested as days (issue 12, section 2).

One loopback replay server holds a synthetic market (crypto pairs trading every day, stocks on week days, every
symbol under the made-up exchange `SYNTH`) and serves it one session at a time (`ReplayServer.advance_to`). Each
simulated day the test runs `tvs hydrate` against it with the day as the clock, then `tvs run --profile production`
offline on the hydrated lakehouse, in a temporary directory, with small settings. The production profile's screens are
replaced (`--set discovery.screens=...`) by the same two screens pointed at `SYNTH`: its crypto screen filters on
`exchange = BINANCE`, which synthetic prices must never carry.

Calendar: Wed 2024-06-19 installs (the first hydration: backfill and the first snapshots; a run that day would have
no snapshot before any decision date, see `DatedUniverse.require`), Thu 06-20 … Mon 06-24 are five days of hydrate +
run (a weekend inside: the stocks get no bar on Sat/Sun, the pairs do), Tue 06-25 is an outage (the server refuses
every HTTP request and every WebSocket handshake), Wed 06-26 recovers.

Nothing here reads the wall clock or sleeps: the server's clock is the day it is set to, each hydration is given
that day, and an offline run dates its decisions by its data. The scenario runs once (module fixture); each test
reads what it left behind.
"""
import json
import subprocess
import time

import numpy as np
import pandas as pd
import pytest

from conftest import BIN, run
from helpers import tree_digest
from tradingview_scraper.data.lakehouse import Lakehouse
from tradingview_scraper.orchestration.runner import RunContext, read_status
from tradingview_scraper.tradingview.replay import ReplayServer, synthetic_market

INSTALL, OUTAGE, RECOVERY = "2024-06-19", "2024-06-25", "2024-06-26"
DAYS = ["2024-06-20", "2024-06-21", "2024-06-22", "2024-06-23", "2024-06-24"]   # Thu … Mon: hydrate, then run
DAY = pd.Timedelta(days=1)

SCREENS = ("discovery.screens=["
           "{name: synth_crypto, market: crypto, columns: [name, close, volume, Value.Traded, exchange, type, currency],"
           " filters: [{left: exchange, operation: equal, right: SYNTH}, {left: type, operation: equal, right: spot},"
           " {left: Value.Traded, operation: greater, right: 1000000}], sort_by: Value.Traded, limit: 100, logic: momentum},"
           "{name: synth_large_caps, market: america, columns: [name, close, volume, market_cap_calc, sector, exchange, type, currency],"
           " filters: [{left: market_cap_calc, operation: greater, right: 100000000000}, {left: type, operation: equal, right: stock}],"
           " sort_by: market_cap_calc, limit: 100}]")
HYDRATE_SETS = [SCREENS, "data.history_bars=60", "hydration.max_attempts=1"]   # one attempt: a refused day fails at once (no backoff waits)
# `tvs hydrate` has no --set: the same settings reach it as TVS_* environment overrides (same parser, same precedence)
HYDRATE_ENV = {"TVS_" + k.upper().replace(".", "__"): v for k, _, v in (s.partition("=") for s in HYDRATE_SETS)}
RUN_SETS = HYDRATE_SETS + ["hydration.enabled=false", "data.start=2024-05-10", "backtest.train=35", "backtest.test=1", "selection.vetoes.min_history=20",
                           "selection.htr.floor=2", "selection.htr.max_selected=4", "synthesis.momentum_lookback=10", "synthesis.ma_window=5",
                           "allocation.optimizers=[equal_weight, min_variance]"]
COST_BPS = 5.0   # the production profile's backtest.cost_bps (not overridden)
HALF_SPREAD_BPS = 2.0   # its costs.half_spread_bps


def _sets(sets) -> list[str]:
    return [a for s in sets for a in ("--set", s)]


def _tvs(*args, env=None) -> subprocess.CompletedProcess:
    return run([str(BIN / "tvs"), *args], env=env)


def artifact(run_dir, step, name):
    "An output of a finished run's step, read the way the runner reads it."
    return RunContext(run_dir.name, run_dir, None, None, None).load(step, name)


@pytest.fixture(scope="module")
def cycle(tmp_path_factory):
    root = tmp_path_factory.mktemp("daily")
    lake_root, runs = root / "lakehouse", root / "runs"
    table, bars = synthetic_market(n_symbols=8, n_bars=120, seed=7, end=RECOVERY, exchange="SYNTH")
    rec = {"root": root, "lake": Lakehouse(lake_root), "runs": runs, "table": table, "bars": bars,
           "hydrate": {}, "run": {}, "last_before": {}, "snapshots": {}}

    def hydrate(server, day):
        lake = Lakehouse(lake_root)
        rec["last_before"][day] = {s: lake.last_bar(s) for s in table.index}
        server.reset_records()
        out, t0 = root / "hydration" / day, time.perf_counter()
        p = _tvs("hydrate", "--profile", "production", "--lakehouse", str(lake_root), "--scanner-url", server.scanner_url,
                 "--websocket-url", server.websocket_url, "--as-of", day, "--run-dir", str(out), env=HYDRATE_ENV)
        assert server.settle()
        rec["hydrate"][day] = {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr, "requests": server.requests_, "http": server.http_log_,
                               "sessions": server.sessions_, "wall_s": time.perf_counter() - t0}
        rec["snapshots"][day] = {s: Lakehouse(lake_root).universe_dates(s) for s in ("synth_crypto", "synth_large_caps")}

    def tvs_run(run_id, *extra):
        t0 = time.perf_counter()   # a figure for the report only: nothing depends on it
        p = _tvs("run", "--profile", "production", "--lakehouse", str(lake_root), "--runs-root", str(runs), "--run-id", run_id,
                 *_sets(RUN_SETS), *_sets(extra))
        rec["run"][run_id] = {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr, "wall_s": time.perf_counter() - t0}
        return p

    with ReplayServer(table, bars, as_of=INSTALL) as server:
        hydrate(server, INSTALL)
        for day in DAYS:
            server.advance_to(day)
            hydrate(server, day)
            tvs_run(f"day-{day}")
        # the outage: every HTTP request gets a 503, every WebSocket handshake a 429
        rec["before_outage"] = {"runs": {d.name: tree_digest(d) for d in runs.iterdir()}, "lake": tree_digest(lake_root)}
        server.advance_to(OUTAGE)
        server.inject("http_5xx")
        server.inject("handshake_429", retry_after=0)
        hydrate(server, OUTAGE)
        online = ["hydration.enabled=true", f"hydration.scanner_url={server.scanner_url}", f"hydration.websocket_url={server.websocket_url}"]
        server.reset_records()
        tvs_run(f"outage-stop-{OUTAGE}", *online, "hydration.on_failure=stop")
        tvs_run(f"outage-continue-{OUTAGE}", *online, "hydration.on_failure=continue")
        rec["outage_runs_http"] = server.http_log_
        rec["after_outage"] = {"runs": {d.name: tree_digest(d) for d in runs.iterdir()}, "lake": tree_digest(lake_root)}
        server.clear_faults()
        server.advance_to(RECOVERY)
        hydrate(server, RECOVERY)
    return rec


def _crypto(rec) -> list[str]:
    return [s for s in rec["table"].index if rec["table"].loc[s, "market"] == "crypto"]


def _has_session(rec, symbol, day) -> bool:
    return bool((rec["bars"][symbol]["ts"] == pd.Timestamp(day, tz="UTC")).any())


def test_every_day_hydrates_and_runs(cycle):
    for day in [INSTALL, *DAYS, RECOVERY]: assert cycle["hydrate"][day]["rc"] == 0, (day, cycle["hydrate"][day]["stderr"][-2000:])
    for day in DAYS:
        r = cycle["run"][f"day-{day}"]
        assert r["rc"] == 0, (day, r["stderr"][-3000:])
        st = read_status(cycle["runs"] / f"day-{day}")
        assert st["status"] == "succeeded" and st["summary"]["last_bar"] == day   # the pairs traded that day, weekend or not
    print("wall s per tvs call:", {k: round(v["wall_s"], 1) for k, v in {**cycle["run"], **cycle["hydrate"]}.items()})


def test_hydration_fetches_only_the_new_sessions(cycle):
    "Each symbol is asked for the calendar gap since its last stored bar plus that bar; the new sessions are stored, nothing else."
    lake, bars = cycle["lake"], cycle["bars"]
    history = 60
    for day in [INSTALL, *DAYS, RECOVERY]:
        h, before = cycle["hydrate"][day], cycle["last_before"][day]
        asked = {r["symbol"]: r for r in h["requests"]}
        t = pd.Timestamp(day, tz="UTC") + pd.Timedelta(1, "ns")
        lists = [lake.universe_as_of(screen, t) for screen in ("synth_crypto", "synth_large_caps")]
        assert all(x is not None for x in lists), (day, "no snapshot stored for the day")
        screened = {s for x in lists for s in x["symbol"]}
        assert set(asked) == screened | {s for s, last in before.items() if last is not None}, (day, sorted(asked))   # screened + stored
        for s, r in asked.items():
            last = before[s]
            want = history if last is None else min(history, (pd.Timestamp(day, tz="UTC") - last) // DAY + 1)
            visible = int((bars[s]["ts"] <= pd.Timestamp(day, tz="UTC")).sum())
            assert (r["n"], r["served"]) == (want, min(want, visible)), (day, s, r, last)
        if day != INSTALL:
            # after the backfill a day costs a few bars per symbol, never the history again
            assert sum(r["served"] for r in h["requests"]) <= 4 * len(asked), (day, h["requests"])
    # Sat/Sun: the pairs are asked for and get one new bar; the stocks are asked and get only bars already stored
    sat = {r["symbol"]: r for r in cycle["hydrate"]["2024-06-22"]["requests"]}
    assert {sat[s]["served"] for s in _crypto(cycle)} == {2}
    # the recovery day after the outage fills the two-day gap (the bar of the outage day too)
    rec = {r["symbol"]: r for r in cycle["hydrate"][RECOVERY]["requests"]}
    assert {rec[s]["n"] for s in _crypto(cycle)} == {3}
    # the lakehouse holds exactly the market's sessions up to the last day, newest history_bars-plus-appended ones
    for s in lake.symbols():
        stored = lake.read_ohlcv(str(s))
        served = bars[str(s)][bars[str(s)]["ts"] <= pd.Timestamp(RECOVERY, tz="UTC")].tail(len(stored)).reset_index(drop=True)
        pd.testing.assert_frame_equal(stored, served)
    for day in DAYS:   # and the coverage report of each day says so
        cov = json.loads((cycle["root"] / "hydration" / day / "hydration" / "coverage.json").read_text())
        added = {o["symbol"]: o["added"] for o in cov["outcomes"]}
        assert added == {s: int(_has_session(cycle, s, day)) for s in added}, (day, added)


def test_universe_snapshots_accumulate_and_are_known_only_after_they_were_taken(cycle):
    stamps = []
    for day in [INSTALL, *DAYS]:
        stamps.append(pd.Timestamp(day, tz="UTC"))
        for screen, dates in cycle["snapshots"][day].items():
            assert dates == stamps, (day, screen, dates)          # one more per day, stamped with the day's clock
    assert cycle["snapshots"][OUTAGE] == cycle["snapshots"][DAYS[-1]]   # the outage stored none
    for i, day in enumerate(DAYS):
        rd = cycle["runs"] / f"day-{day}"
        known = stamps[:i + 2]                                    # INSTALL … this day: the snapshots stored when it ran
        cov = artifact(rd, "backtest", "universe_coverage")
        assert len(cov) and cov["date"].is_monotonic_increasing
        for _, row in cov.iterrows():
            before = [s for s in known if s < row["date"]]        # strictly before the decision date
            if before:
                assert row["snapshot"] == before[-1] and row["candidates"] > 0, (day, row.to_dict())
            else:
                assert pd.isna(row["snapshot"]) and row["candidates"] == 0, (day, row.to_dict())
        assert cov["snapshot"].iloc[-1] == pd.Timestamp(day, tz="UTC") - DAY   # the last fold starts at today's bar: yesterday's list
        trail = artifact(rd, "discover", "trail")                 # today's decision (the day after the last bar) sees today's
        assert trail["snapshot"].tolist() == [pd.Timestamp(day, tz="UTC")], trail


def _portfolio_or_skip(rd):
    portfolio = pytest.importorskip("tradingview_scraper.portfolio", reason="the portfolio module (nbs/53_portfolio) has not landed")
    if not (rd / "portfolio").is_dir():
        pytest.skip(f"{rd.name} has no portfolio/: the flow's portfolio step (nbs/51_flow) has not landed")
    return portfolio, portfolio.load_portfolio(rd)


def _drifted(weights:pd.Series, returns:pd.DataFrame, since, until, cost:float=0.0) -> pd.Series:
    """The test's own drift: weights bought at `since` grown by the rows since ≤ ts < until (missing return = 0, cash earns 0,
    the trade's cost paid from cash at `since`)."""
    rows = returns[(returns.index >= since) & (returns.index < until)]
    growth = (1 + rows.reindex(columns=weights.index).fillna(0.0)).prod()
    value = weights * growth
    return value / (1.0 - weights.sum() - cost + value.sum())


def _check_trades(p:dict, current:pd.Series, what:str):
    "The trade list is exactly target − current: a row for every symbol that moves, with these numbers, and nothing else."
    target, trades = p["target"], p["trades"]
    names = sorted(set(target.index) | set(current.index))
    tgt, cur = target.reindex(names).fillna(0.0), current.reindex(names).fillna(0.0)
    moves = (tgt - cur).abs() > 1e-9
    t = trades.set_index("symbol")
    assert set(t.index) <= set(names) and set(tgt.index[moves]) <= set(t.index), (what, sorted(t.index), sorted(tgt.index[moves]))
    np.testing.assert_allclose(t["current_weight"], cur[t.index], atol=1e-10, err_msg=what)
    np.testing.assert_allclose(t["target_weight"], tgt[t.index], atol=1e-12, err_msg=what)
    np.testing.assert_allclose(t["delta"], (tgt - cur)[t.index], atol=1e-10, err_msg=what)
    assert p["drift"] == pytest.approx(0.5 * float((tgt - cur).abs().sum() + abs(tgt.sum() - cur.sum())), abs=1e-9), what   # cash too
    assert p["turnover"] == pytest.approx(float((tgt - cur).abs().sum()), abs=1e-9), what
    kinds = p["est_costs"]                                        # the production profile's cost model, kind by kind
    assert set(kinds) == {"commission", "spread", "impact"} and kinds["impact"] >= 0, (what, kinds)
    assert kinds["commission"] == pytest.approx(COST_BPS / 1e4 * p["turnover"], abs=1e-12), what
    assert kinds["spread"] == pytest.approx(HALF_SPREAD_BPS / 1e4 * p["turnover"], abs=1e-12), what
    assert p["est_cost"] == pytest.approx(sum(kinds.values()), abs=1e-15), what


def test_holdings_carry_from_one_days_target_to_the_next_days_current_drifted(cycle):
    runs = [cycle["runs"] / f"day-{d}" for d in DAYS]
    portfolio, first = _portfolio_or_skip(runs[0])
    assert first, "no allocator in the first day's portfolio"
    for a, p in first.items():                                     # day one: nothing held before, every target weight is bought
        _check_trades(p, pd.Series(dtype=float), f"{runs[0].name}/{a}")
    for prev, cur in zip(runs, runs[1:]):
        _, pp = _portfolio_or_skip(prev)
        _, pc = _portfolio_or_skip(cur)
        assert set(pc) == set(pp)
        returns = artifact(cur, "ingest", "returns")
        for a in pc:
            since, until = pd.Timestamp(pp[a]["t"]), pd.Timestamp(pc[a]["t"])
            assert until - since == DAY, (cur.name, a, since, until)          # one session later
            assert pc[a]["holdings_source"] == f"previous_run:{prev.name}", (cur.name, a, pc[a]["holdings_source"])
            mine = _drifted(pp[a]["target"], returns, since, until, pp[a]["est_cost"])   # yesterday's trades paid from cash
            _check_trades(pc[a], mine, f"{cur.name}/{a}")                    # the run's trades start from the drifted target
            theirs = portfolio.drift(pp[a]["target"], returns, since, until, pp[a]["est_cost"])   # the library's drift agrees
            pd.testing.assert_series_equal(theirs.reindex(mine.index), mine, check_names=False, atol=1e-12)


def test_a_day_whose_hydration_fails(cycle):
    "Refused everywhere: `tvs hydrate` fails and stores nothing; a run stops or continues as hydration.on_failure says."
    h = cycle["hydrate"][OUTAGE]
    assert h["rc"] == 1, h
    assert h["requests"] == [] and h["sessions"] == []              # no history request ever reached the server
    assert h["http"] and {s for _, _, s in h["http"]} == {503}
    assert {s for _, _, s in cycle["outage_runs_http"]} == {503}     # the online runs were refused too
    before, after = cycle["before_outage"], cycle["after_outage"]
    assert after["lake"] == before["lake"]                           # nothing stored, nothing damaged
    for name, digest in before["runs"].items(): assert after["runs"][name] == digest, name   # earlier runs byte-identical
    stop, cont = cycle["run"][f"outage-stop-{OUTAGE}"], cycle["run"][f"outage-continue-{OUTAGE}"]
    st = read_status(cycle["runs"] / f"outage-stop-{OUTAGE}")
    assert stop["rc"] == 1 and st["status"] == "failed" and st["failed_step"] == "hydrate", (stop["stderr"][-2000:], st.get("error"))
    assert "hydration.on_failure=stop" in st["error"]
    ct = read_status(cycle["runs"] / f"outage-continue-{OUTAGE}")
    assert cont["rc"] == 0 and ct["status"] == "succeeded", cont["stderr"][-3000:]
    assert "hydration failed" in cont["stderr"] and ct["summary"]["last_bar"] == DAYS[-1]   # on yesterday's data, and it says so
    last = cycle["runs"] / f"day-{DAYS[-1]}"
    pd.testing.assert_frame_equal(artifact(cycle["runs"] / f"outage-continue-{OUTAGE}", "backtest", "oos_returns"),
                                  artifact(last, "backtest", "oos_returns"))


def test_the_outage_day_trades_from_yesterdays_target(cycle):
    "The continued run decides on yesterday's data: its holdings are yesterday's target (no session since), so nothing moves."
    last, cont = cycle["runs"] / f"day-{DAYS[-1]}", cycle["runs"] / f"outage-continue-{OUTAGE}"
    _, pl = _portfolio_or_skip(last)
    _, pc = _portfolio_or_skip(cont)
    for a in pc:
        assert pd.Timestamp(pc[a]["t"]) == pd.Timestamp(pl[a]["t"])
        assert pc[a]["holdings_source"] == f"previous_run:{last.name}"
        _check_trades(pc[a], pl[a]["target"], f"{cont.name}/{a}")
        assert pc[a]["trades"].empty and not pc[a]["traded"], pc[a]["reason"]
