"""Deep history end to end: the loopback replay server answers at most `cap` bars at a time and lets one series reach
`depth` bars; hydration asks for more (`request_more_data`) until it has what it asked for, the depth is reached or
nothing older comes, says which per symbol, stores the series into a real lakehouse, skips and records bars with null
prices, keeps a missing volume missing, asks an up-to-date lakehouse only for the gap, and refuses to mix two price
adjustments in one symbol's history."""
import json

import numpy as np
import pandas as pd
import pytest

from helpers import tree_digest
from tradingview_scraper.profile import load_profile
from tradingview_scraper.data.hydration import HydrationError, hydrate
from tradingview_scraper.data.lakehouse import Lakehouse
from tradingview_scraper.tradingview.replay import ReplayServer, synthetic_market

CAP, DEPTH = 3000, 10_000
NOW = "2024-06-28 12:00"
GUARD_S = 60   # deadlines on healthy loopback links are hang guards only


def profile(**over):
    base = {"hydration.concurrency": 3, "hydration.max_attempts": 2, "hydration.timeout_s": 2 * GUARD_S}
    return load_profile("development", env={}, overrides={**base, **over})


@pytest.fixture(scope="module")
def market():
    "Three crypto pairs (a bar every day): 12,000 bars, 12,000 bars, and a young one with 4,000."
    table, bars = synthetic_market(n_symbols=12, n_bars=12_000, seed=21)
    pairs = [s for s in bars if s.startswith("BINANCE:")][:3]
    bars = {pairs[0]: bars[pairs[0]], pairs[1]: bars[pairs[1]], pairs[2]: bars[pairs[2]].tail(4000).reset_index(drop=True)}
    return table.loc[pairs], bars


def test_deep_history_reaches_the_depth_or_says_why_not(tmp_path, market):
    table, bars = market
    full, limited, young = list(bars)
    lake = Lakehouse(tmp_path / "lake")
    with ReplayServer(table, bars, cap=CAP, depth=DEPTH, heartbeat_s=0.1, echo_timeout_s=GUARD_S) as srv:
        first = hydrate([full, young], lake, profile(**{"data.history_bars": 10_000}), endpoint=srv, now=NOW, progress=False,
                        run_dir=tmp_path / "run1")
        second = hydrate([limited], lake, profile(**{"data.history_bars": 11_000}), endpoint=srv, now=NOW, progress=False,
                         run_dir=tmp_path / "run2")
        asked = pd.DataFrame(srv.requests_)
    out = pd.concat([first.outcomes, second.outcomes]).set_index("symbol")
    assert out.loc[full, ["requested", "received", "stop", "rounds"]].tolist() == [10_000, 10_000, "complete", 4]
    assert out.loc[limited, ["requested", "received", "stop", "rounds"]].tolist() == [11_000, DEPTH, "limit", 4]
    assert out.loc[young, ["requested", "received", "stop"]].tolist() == [10_000, 4000, "no_more_history"]
    for s, n in ((full, 10_000), (limited, DEPTH), (young, 4000)):          # stored: the latest bars, exactly as served
        pd.testing.assert_frame_equal(lake.read_ohlcv(s), bars[s].tail(n).reset_index(drop=True), check_exact=True)
        assert out.loc[s, "added"] == n and out.loc[s, "status"] == "fetched"
    # the depth is reached through request_more_data, each answer at most `cap` bars
    by = asked.groupby("symbol")
    assert by["kind"].apply(list)[full] == ["create_series"] + ["request_more_data"] * 3
    assert by["served"].apply(list)[full] == [3000, 3000, 3000, 1000]
    assert asked["served"].max() <= CAP
    cov = json.loads((tmp_path / "run1" / "hydration" / "coverage.json").read_text())
    per = {o["symbol"]: (o["requested"], o["received"], o["stop"]) for o in cov["outcomes"]}
    assert per == {full: (10_000, 10_000, "complete"), young: (10_000, 4000, "no_more_history")}
    assert cov["summary"]["stops"] == {"complete": 1, "limit": 0, "no_more_history": 1}
    assert json.loads((tmp_path / "run2" / "hydration" / "coverage.json").read_text())["summary"]["stops"]["limit"] == 1
    assert "stopped: 1 complete, 1 no more history" in repr(first)


def test_null_bars_are_skipped_and_recorded_and_a_missing_volume_stays_missing(tmp_path):
    table, bars = synthetic_market(n_symbols=4, n_bars=400, seed=8)
    sym = next(s for s in bars if s.startswith("BINANCE:"))
    b = bars[sym].copy()
    nulls = [50, 51, 300]                                          # sessions without trades: every price slot null
    b.loc[nulls, ["open", "high", "low", "close"]] = np.nan
    no_volume = [10, 200, 399]                                     # bars sent with five values
    b.loc[no_volume, "volume"] = np.nan
    lake = Lakehouse(tmp_path / "lake")
    with ReplayServer(table.loc[[sym]], {sym: b}, heartbeat_s=0.1, echo_timeout_s=GUARD_S) as srv:
        rep = hydrate([sym], lake, profile(**{"data.history_bars": 400}), endpoint=srv, now=NOW, progress=False,
                      run_dir=tmp_path / "run")
    o = rep.outcomes.set_index("symbol").loc[sym]
    assert (o["status"], o["null_bars"], o["received"], o["added"], o["quarantined"]) == ("fetched", 3, 397, 397, 0)
    assert pd.to_datetime(o["null_bar_ts"], utc=True).tolist() == b.loc[nulls, "ts"].tolist()
    stored = lake.read_ohlcv(sym)
    expected = b.drop(index=nulls).reset_index(drop=True)
    pd.testing.assert_frame_equal(stored, expected, check_exact=True)   # the rest of the series, untouched
    assert stored.set_index("ts").loc[b.loc[no_volume, "ts"], "volume"].isna().all()   # NaN, not 0
    assert stored["volume"].isna().sum() == len(no_volume)
    cov = json.loads((tmp_path / "run" / "hydration" / "coverage.json").read_text())
    assert cov["summary"]["null_bars"] == 3
    assert [pd.Timestamp(t) for t in cov["outcomes"][0]["null_bar_ts"]] == b.loc[nulls, "ts"].tolist()


def test_an_incremental_run_asks_only_for_the_gap(tmp_path, market):
    table, bars = market
    syms = list(bars)
    older = {s: b.iloc[:-10].reset_index(drop=True) for s, b in bars.items()}   # the server first knows all but 10 days
    lake = Lakehouse(tmp_path / "lake")
    with ReplayServer(table, older, cap=CAP, depth=DEPTH, heartbeat_s=0.1, echo_timeout_s=GUARD_S) as srv:
        hydrate(syms, lake, profile(**{"data.history_bars": 10_000}), endpoint=srv, now="2024-06-18 12:00", progress=False)
    with ReplayServer(table, bars, cap=CAP, depth=DEPTH, heartbeat_s=0.1, echo_timeout_s=GUARD_S) as srv:
        rep = hydrate(syms, lake, profile(**{"data.history_bars": 10_000}), endpoint=srv, now=NOW, progress=False)
        asked = srv.requests_
    assert sorted((r["symbol"], r["kind"], r["n"]) for r in asked) == sorted((s, "create_series", 11) for s in syms)
    out = rep.outcomes.set_index("symbol")
    assert (out["added"] == 10).all() and (out["stop"] == "complete").all() and (out["rounds"] == 1).all()
    for s in syms:
        n = min(10_000, len(older[s])) + 10
        pd.testing.assert_frame_equal(lake.read_ohlcv(s), bars[s].tail(n).reset_index(drop=True), check_exact=True)


def test_another_adjustment_is_refused_and_leaves_the_lakehouse_byte_identical(tmp_path, market):
    table, bars = market
    syms = list(bars)[:2]
    lake = Lakehouse(tmp_path / "lake")
    with ReplayServer(table, bars, cap=CAP, heartbeat_s=0.1, echo_timeout_s=GUARD_S) as srv:
        hydrate(syms, lake, profile(**{"data.history_bars": 500}), endpoint=srv, now="2024-06-20 12:00", progress=False)
        assert {r["adjustment"] for r in srv.requests_} == {"splits"}
        assert set(lake.catalog().loc[syms, "adjustment"]) == {"splits"}
        before, n_asked = tree_digest(lake.root), len(srv.requests_)
        with pytest.raises(HydrationError, match="another price adjustment") as e:
            hydrate(syms, lake, profile(**{"data.history_bars": 500, "hydration.adjustment": "dividends"}), endpoint=srv,
                    now=NOW, progress=False)
        assert len(srv.requests_) == n_asked, "a refused symbol is not fetched"
    assert tree_digest(lake.root) == before
    reasons = e.value.report.outcomes.set_index("symbol")["reason"]
    for s in syms:
        assert reasons[s].startswith(f"adjustment_mismatch: {s}: its stored bars are adjusted for 'splits'"), reasons[s]


def test_the_profile_chart_settings_are_sent_and_the_adjustment_recorded(tmp_path, market):
    table, bars = market
    sym = list(bars)[2]
    lake = Lakehouse(tmp_path / "lake")
    settings = {"data.history_bars": 300, "hydration.adjustment": "dividends", "hydration.timezone": "Etc/UTC",
                "hydration.data_quality": "low"}
    with ReplayServer(table, bars, cap=CAP, heartbeat_s=0.1, echo_timeout_s=GUARD_S) as srv:
        rep = hydrate([sym], lake, profile(**settings), endpoint=srv, now=NOW, progress=False)
        assert [(r["adjustment"], r["timezone"], r["data_quality"]) for r in srv.requests_] == [("dividends", "Etc/UTC", "low")]
    assert rep.summary["adjustment"] == "dividends"
    assert lake.catalog().loc[sym, "adjustment"] == "dividends"
    assert lake.catalog().loc[sym, "exchange"] == "BINANCE"             # the metadata refresh went in with it
