"""Your own prices, end to end on the command line: `tvs lakehouse import` a generated CSV, then `tvs run --profile
lakehouse` uses every stored symbol (no screens), reads `periods_per_year` from the data's calendar — 365 for prices
that trade every day, 252 for business days — records it in the conventions, and ends with today's portfolio."""
import json

import numpy as np
import pandas as pd
import pytest

from tradingview_scraper.portfolio import load_portfolio

SYMBOLS = [f"SYNTH:P{i:02d}" for i in range(8)]


def prices(days: pd.DatetimeIndex, seed: int = 7) -> pd.DataFrame:
    "Long-format closes of clearly synthetic symbols: a random walk each, with its own drift and volatility."
    rng = np.random.default_rng(seed)
    rows = []
    for i, s in enumerate(SYMBOLS):
        r = rng.normal(0.0003 * (i - 3), 0.01 + 0.002 * i, len(days))
        rows.append(pd.DataFrame({"symbol": s, "ts": days.strftime("%Y-%m-%d"), "close": 50 * np.exp(np.cumsum(r))}))
    return pd.concat(rows, ignore_index=True)


@pytest.mark.parametrize("calendar, expected", [("every day", 365), ("business days", 252)])
def test_imported_prices_run_with_the_lakehouse_profile(tvs, tmp_path, calendar, expected):
    days = pd.date_range("2023-01-02", periods=400) if calendar == "every day" else pd.bdate_range("2023-01-02", periods=400)
    src, lake, runs = tmp_path / "mine.csv", tmp_path / "lake", tmp_path / "runs"
    prices(days).to_csv(src, index=False)
    imported = tvs("lakehouse", "import", str(src), "--root", str(lake))
    assert imported.returncode == 0, imported.stderr
    r = tvs("run", "--profile", "lakehouse", "--lakehouse", str(lake), "--runs-root", str(runs), "--run-id", "mine",
            "--set", "backtest.train=126", "--set", "selection.vetoes.min_history=60", "--set", "selection.htr.floor=4",
            "--set", "allocation.optimizers=[equal_weight, min_variance]", "--progress", "off")
    assert r.returncode == 0, r.stderr
    conv = json.loads((runs / "mine" / "artifacts" / "backtest" / "conventions.json").read_text())
    assert conv["periods_per_year"] == expected
    assert conv["periods_per_year_basis"].startswith("inferred: " + ("24/7 calendar" if expected == 365 else "exchange calendar"))
    assert conv["universe_policy"] == "catalog" and "no screens" in conv["universe_basis"]
    returns = pd.read_parquet(runs / "mine" / "artifacts" / "ingest" / "returns.parquet")
    assert sorted(c for c in returns.columns if c.startswith("SYNTH:")) == SYMBOLS      # every stored symbol
    pf = load_portfolio(runs / "mine")
    assert sorted(pf) == ["equal_weight", "min_variance"]
    assert set(pf["min_variance"]["target"].index) <= set(SYMBOLS) and pf["min_variance"]["target"].sum() == pytest.approx(1.0)
