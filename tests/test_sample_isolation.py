"""A sample profile never writes into a lakehouse it did not create: pointed at the user's own lakehouse (which
holds its own NASDAQ:AAPL), `tvs run` and `run_flow` fail with `SampleLakehouseError` naming the profile and the
directory, and every file in it is byte-identical afterwards. Its own sample lakehouse is marked and re-used."""
import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from tradingview_scraper.data.lakehouse import Lakehouse
from tradingview_scraper.data.sample import SAMPLE_MARKER, load_sample_prices, sample_lakehouse, sample_provenance
from tradingview_scraper.orchestration.flow import run_flow
from tradingview_scraper.orchestration.runner import RunFailed, read_status


def user_lakehouse(root: Path) -> Lakehouse:
    "The user's own lakehouse: NASDAQ:AAPL with its own (recent) bars, its catalog record, a universe snapshot."
    lh = Lakehouse(root)
    ts = pd.date_range("2023-01-02", periods=60, freq="B", tz="UTC")
    close = [150.0 + i for i in range(60)]
    lh.write_ohlcv("NASDAQ:AAPL", pd.DataFrame({"ts": ts, "open": close, "high": close, "low": close, "close": close, "volume": 1e6}))
    lh.upsert_catalog(pd.DataFrame({"symbol": ["NASDAQ:AAPL"], "exchange": ["NASDAQ"], "type": ["stock"], "currency": ["USD"],
                                    "description": ["Apple Inc (mine)"], "sector": ["Electronic Technology"]}), as_of="2023-01-01")
    lh.write_universe("mine", pd.DataFrame({"symbol": ["NASDAQ:AAPL"]}), as_of="2023-03-01")
    return lh


def tree(root: Path) -> dict:
    "sha256 of every file under root, hidden files and lock sidecars included."
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_tvs_run_refuses_the_users_lakehouse_and_changes_nothing(tmp_path, tvs):
    user = user_lakehouse(tmp_path / "mine")
    before = tree(user.root)
    r = tvs("run", "--runs-root", str(tmp_path / "runs"), "--lakehouse", str(user.root), "--run-id", "sample-into-mine")
    assert r.returncode != 0, r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert "SampleLakehouseError" in out and "profile 'canary' (data.source: sample) refuses to seed" in out and str(user.root) in out, out[-3000:]
    assert tree(user.root) == before
    st = read_status(tmp_path / "runs" / "sample-into-mine")
    assert st["status"] == "failed" and st["failed_step"] == "ingest"
    assert user.read_ohlcv("NASDAQ:AAPL")["close"].iloc[0] == 150.0 and len(user.read_ohlcv("NASDAQ:AAPL")) == 60


def test_run_flow_refuses_the_users_lakehouse_before_writing(tmp_path):
    user = user_lakehouse(tmp_path / "mine")
    before = tree(user.root)
    with pytest.raises(RunFailed, match=r"SampleLakehouseError: profile 'development' \(data.source: sample\) refuses to seed '.*mine': "
                                        r"it is not empty \(3 entries, e.g. 'catalog'\) and has no SAMPLE_LAKEHOUSE.json"):
        run_flow("development", run_id="dev", runs_root=tmp_path / "runs", lakehouse_root=user.root, env={})
    assert tree(user.root) == before


def test_the_samples_own_lakehouse_is_marked_and_reused(tmp_path):
    root = tmp_path / "sample_lakehouse"
    lh = sample_lakehouse(root, symbols=["NASDAQ:AAPL"], profile="canary")
    marker = json.loads((root / SAMPLE_MARKER).read_text())
    assert marker["kind"] == "sample lakehouse" and marker["sample_sha256"] == sample_provenance()["sha256"]
    # later, something else stored its own NYSE:KO here (e.g. a hydration): seeding the rest must not splice the sample into it
    ts = pd.date_range("2023-01-02", periods=5, freq="B", tz="UTC")
    lh.write_ohlcv("NYSE:KO", pd.DataFrame({"ts": ts, "open": 60.0, "high": 60.0, "low": 60.0, "close": 60.0, "volume": 1.0}))
    first = tree(root)
    sample_lakehouse(root)
    after = tree(root)
    assert {k: after[k] for k in first if k.startswith("ohlcv/")} == {k: v for k, v in first.items() if k.startswith("ohlcv/")}
    assert lh.read_ohlcv("NYSE:KO")["ts"].tolist() == list(ts) and len(lh.symbols()) == 21
    assert lh.read_ohlcv("NYSE:JPM")["close"].tolist() == load_sample_prices()["NYSE:JPM"].dropna().tolist()
    sample_lakehouse(root)
    assert tree(root) == after                                  # idempotent
    run = run_flow("development", run_id="own", runs_root=tmp_path / "runs", lakehouse_root=root, env={},
                   overrides={"allocation.optimizers": ["equal_weight"]})
    assert run.status["status"] == "succeeded"
