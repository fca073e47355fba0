"""A session that looks like the live service's, end to end through `tvs` (issue 13).

One loopback replay server plays what the real chart service sends (`realism=True`: quote traffic with emoji,
`t`/`t_ms` stamps, empty updates, study messages, messages for another chart session, unicode descriptions), answers
short (`cap` bars per answer) and stops at an account depth (`depth` without a token, deeper with the account's token),
over a synthetic market under the made-up exchange `SYNTH` with three planted quirks: a symbol with sessions that had
no trades (bars with null prices), a symbol without volume (five-value bars), and a young symbol with little history.

`tvs hydrate` runs twice into two fresh lakehouses — with the token from an environment variable, and without one —
then `tvs run --profile production` runs offline on the deep one. The checks: each symbol's coverage says asked,
received and why it stopped; the stored bars are exactly the served ones minus the null bars; the run's conventions
name the price adjustment; the token appears in no file, no output and no error; a hydration with another adjustment
into the same lakehouse is refused and leaves it byte-identical.
"""
import json

import numpy as np
import pandas as pd
import pytest

from conftest import BIN, run
from helpers import tree_digest
from test_daily_cycle import RUN_SETS as DAILY_RUN_SETS, SCREENS
from tradingview_scraper.data.lakehouse import Lakehouse
from tradingview_scraper.orchestration.runner import RunContext, read_status
from tradingview_scraper.tradingview.replay import ReplayServer, synthetic_market

TOKEN = "tvs-test-token-7f3a9c1e5b"          # what an account's session token looks like to us: an opaque string
END, N_BARS, ASKED, CAP, DEPTH, TOKEN_DEPTH = "2024-06-28", 900, 800, 300, 500, 2000
ENV_VAR = "TVS_TEST_TRADINGVIEW_TOKEN"


def _market():
    table, bars = synthetic_market(n_symbols=6, n_bars=N_BARS, seed=11, end=END, exchange="SYNTH")
    syms = list(table.index)
    nulls, novol, young = syms[0], syms[1], syms[2]
    b = bars[nulls].copy()
    holes = [N_BARS - 10, N_BARS - 11, N_BARS - 400]          # sessions without trades, inside the asked depth
    b.loc[holes, ["open", "high", "low", "close"]] = np.nan
    b.loc[holes, "volume"] = 0.0
    bars[nulls] = b
    bars[novol] = bars[novol].assign(volume=np.nan)
    bars[young] = bars[young].tail(400).reset_index(drop=True)
    return table, bars, {"nulls": nulls, "novol": novol, "young": young, "holes": b["ts"].iloc[holes].tolist()}


def _tvs(*args, env=None):
    return run([str(BIN / "tvs"), *args], env=env)


def _sets(sets):
    return [a for s in sets for a in ("--set", s)]


HYDRATE_SETS = [SCREENS, f"data.history_bars={ASKED}", "hydration.max_attempts=1"]


def _hydrate(server, lake_root, out, *extra, env=None):
    p = _tvs("hydrate", "--profile", "production", "--lakehouse", str(lake_root), "--scanner-url", server.scanner_url,
             "--websocket-url", server.websocket_url, "--as-of", END, "--run-dir", str(out), *_sets(HYDRATE_SETS), *_sets(extra),
             *[a for s in server.bars for a in ("--symbol", s)], env=env)
    assert server.settle()
    return p


def _coverage(out) -> dict:
    doc = json.loads((out / "hydration" / "coverage.json").read_text())
    return {o["symbol"]: o for o in doc["outcomes"]}, doc["summary"]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    table, bars, planted = _market()
    rec = {"root": root, "bars": bars, "planted": planted}
    with ReplayServer(table, bars, realism=True, cap=CAP, depth=DEPTH, auth_tokens={TOKEN: TOKEN_DEPTH}) as server:
        rec["deep"] = _hydrate(server, root / "deep", root / "h-deep", f"hydration.auth_token_env={ENV_VAR}", env={ENV_VAR: TOKEN})
        rec["deep_requests"] = server.requests_
        server.reset_records()
        rec["shallow"] = _hydrate(server, root / "shallow", root / "h-shallow")
        rec["shallow_requests"] = server.requests_
        rec["before_refused"] = tree_digest(root / "deep")
        rec["refused"] = _hydrate(server, root / "deep", root / "h-refused", "hydration.adjustment=dividends", "discovery.screens=[]",
                                  f"hydration.auth_token_env={ENV_VAR}", env={ENV_VAR: TOKEN})
        rec["after_refused"] = tree_digest(root / "deep")
    runs = root / "runs"
    rec["run"] = _tvs("run", "--profile", "production", "--lakehouse", str(root / "deep"), "--runs-root", str(runs), "--run-id", "deep",
                      *_sets(DAILY_RUN_SETS), "--set", "discovery.universe_policy=present_day")
    rec["run_dir"] = runs / "deep"
    return rec


def test_hydrations_succeed(session):
    for k in ("deep", "shallow"):
        assert session[k].returncode == 0, (k, session[k].stderr[-3000:])
    assert "history depth:" in session["deep"].stdout


def test_deep_history_reaches_the_depth_or_says_why(session):
    cov, summary = _coverage(session["root"] / "h-deep")
    young = session["planted"]["young"]
    for s, o in cov.items():
        assert o["requested"] == ASKED, (s, o)
        if s == young: assert (o["stop"], o["received"]) == ("no_more_history", 400), o
        else: assert o["stop"] == "complete" and o["received"] >= ASKED - 3, (s, o)   # null bars are not received bars
    # the server answered short: each complete symbol needed ceil(800 / 300) = 3 answers, the extra ones request_more_data
    kinds = pd.DataFrame(session["deep_requests"])
    assert set(kinds["kind"]) == {"create_series", "request_more_data"}
    per = kinds.groupby("symbol").size()
    assert per.drop(session["planted"]["nulls"]).max() == 3 and per.max() <= 4 and kinds["authorized"].all()
    assert summary["stops"]["complete"] == len(cov) - 1 and summary["stops"]["no_more_history"] == 1


def test_without_the_token_history_stops_at_the_account_limit(session):
    cov, summary = _coverage(session["root"] / "h-shallow")
    young = session["planted"]["young"]
    for s, o in cov.items():
        if s == young: assert o["stop"] == "no_more_history" and o["received"] == 400, o
        else: assert o["stop"] == "limit" and o["received"] <= DEPTH, (s, o)
    assert not pd.DataFrame(session["shallow_requests"])["authorized"].any()


def test_null_bars_are_skipped_and_recorded_and_the_rest_is_stored(session):
    cov, summary = _coverage(session["root"] / "h-deep")
    p, bars = session["planted"], session["bars"]
    o = cov[p["nulls"]]
    assert o["null_bars"] == 3 and summary["null_bars"] == 3
    assert sorted(pd.Timestamp(t) for t in o["null_bar_ts"]) == sorted(pd.Timestamp(t) for t in p["holes"])
    stored = Lakehouse(session["root"] / "deep").read_ohlcv(p["nulls"])
    fixture = bars[p["nulls"]].dropna(subset=["close"])
    expected = fixture[fixture["ts"] >= stored["ts"].iloc[0]].reset_index(drop=True)
    assert len(stored) in (ASKED - 3, ASKED)           # the null bars are skipped (and may or may not be asked for again)
    pd.testing.assert_frame_equal(stored[["ts", "open", "high", "low", "close"]].reset_index(drop=True),
                                  expected[["ts", "open", "high", "low", "close"]], check_dtype=False)
    assert not set(p["holes"]) & set(stored["ts"])


def test_five_value_bars_have_missing_volume_not_zero(session):
    stored = Lakehouse(session["root"] / "deep").read_ohlcv(session["planted"]["novol"])
    assert len(stored) == ASKED and stored["volume"].isna().all() and stored["close"].notna().all()


def test_the_run_names_its_price_adjustment(session):
    r = session["run"]
    assert r.returncode == 0, r.stderr[-3000:]
    st = read_status(session["run_dir"])
    assert st["status"] == "succeeded"
    conv = RunContext("deep", session["run_dir"], None, None, None).load("backtest", "conventions")
    assert conv["price_adjustment"] == "splits"
    cat = Lakehouse(session["root"] / "deep").catalog()
    assert set(cat["adjustment"]) == {"splits"}


def test_another_adjustment_is_refused_and_changes_nothing(session):
    p = session["refused"]
    assert p.returncode != 0
    assert "adjustment" in p.stderr
    assert session["before_refused"] == session["after_refused"]


def test_the_token_appears_nowhere(session):
    root = session["root"]
    for path in root.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    for k in ("deep", "shallow", "refused", "run"):
        assert TOKEN not in session[k].stdout + session[k].stderr, k
