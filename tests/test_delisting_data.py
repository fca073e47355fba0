"""The data a trader-grade simulation reads, end to end on real Parquet: a synthetic market with equities, spot coins and
perpetuals, toxic bars, late listings, gaps and planted delistings is written to a lakehouse and loaded on both calendars.
The loader's traded value (`LoadResult.dollar_volume`) equals close × volume read straight from every bar file for every
bar the load kept; the delisting rule finds every planted delisting (and the plain twin agrees); one price adjustment per
matrix is enforced through `IngestionStage`, and a refused ingestion leaves the lakehouse byte-identical."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradingview_scraper.backtest.delisting import DelistingParams, delisting_events, delisting_plan, delisting_plan_reference
from tradingview_scraper.data.catalog import MixedAdjustmentsError
from tradingview_scraper.data.lakehouse import Lakehouse, MetadataSnapshot
from tradingview_scraper.data.loader import DataLoader, IngestionStage, LoadResult
from tradingview_scraper.data.sample import SyntheticMarket

MARKET = dict(n_equities=12, n_crypto=8, n_perpetual=4, n_delisted=3, n_days=400, listing_share=0.2, toxic=True, seed=5)


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    data = SyntheticMarket(**MARKET).generate()
    lake = data.write(Lakehouse(tmp_path_factory.mktemp("lake")))
    return data, lake


def _reference_dollar_volume(lake:Lakehouse, res:LoadResult) -> pd.DataFrame:
    "Close × volume of every stored bar the load kept (not quarantined, not held), on the matrix's rows; plain pandas."
    out = {}
    for s in res.returns.columns:
        bars = pd.read_parquet(lake.ohlcv_path(s)).sort_values("ts", kind="stable").drop_duplicates("ts", keep="last").set_index("ts")
        dv = bars["close"] * bars["volume"]
        for dropped in (res.report.quarantine, res.report.unconfirmed):
            if len(dropped): dv = dv.drop(dropped.loc[dropped["symbol"] == s, "ts"], errors="ignore")
        out[s] = dv.reindex(res.returns.index)
    return pd.DataFrame(out, index=res.returns.index, columns=pd.Index(list(out), dtype=object, name="symbol"))


@pytest.mark.parametrize("calendar", ["union", "intersection"])
def test_dollar_volume_is_close_times_volume_of_every_kept_bar(market, calendar):
    data, lake = market
    res = DataLoader(lake, MetadataSnapshot(lake.catalog(versions=True)), calendar=calendar, record_quarantine=False).load()
    assert len(res.report.quarantine) > 0 and len(res.report.excluded) > 0          # the toxic bars are in play
    assert res.dollar_volume.index.equals(res.returns.index) and res.dollar_volume.columns.equals(res.returns.columns)
    pd.testing.assert_frame_equal(res.dollar_volume, _reference_dollar_volume(lake, res))
    # a row a symbol has no bar on has no traded value; every finite return sits on a bar with one
    assert np.isfinite(res.dollar_volume.to_numpy()[np.isfinite(res.returns.to_numpy())]).all()


def test_delisting_plan_finds_every_planted_delisting(market):
    data, lake = market
    res = DataLoader(lake, MetadataSnapshot(lake.catalog(versions=True)), record_quarantine=False).load()
    R, cols = res.returns.to_numpy(), res.returns.columns
    classes = data.catalog.set_index("symbol")["type"]
    params = DelistingParams(returns=-0.3, by_class={"spot": "last", "swap": "last"}, grace=5)
    rows, rets = delisting_plan(R, cols, params, classes)
    ref = delisting_plan_reference(R, cols, params, classes)
    assert rows.tolist() == ref[0].tolist() and rets.tolist() == ref[1].tolist()
    events = delisting_events(res.returns.index, cols, rows, rets).set_index("symbol")
    planted = data.delisted[data.delisted.index.isin(cols)]
    assert len(planted) == 3
    for sym, last_bar in planted.items():                                        # found, closed the row after its last bar
        assert events.loc[sym, "last_price"] == last_bar
        assert events.loc[sym, "closed"] == res.returns.index[res.returns.index.get_loc(last_bar) + 1]
        assert events.loc[sym, "delisting_return"] == (-0.3 if classes[sym] == "stock" else 0.0)
    # every other event is an early stop of `listing_share`: silent for more than `grace` rows up to the end
    for sym in events.index.difference(planted.index):
        assert res.returns[sym].iloc[-(params.grace + 1):].isna().all()


def test_one_adjustment_per_ingestion_and_a_refusal_changes_nothing(market, tmp_path):
    data = market[0]
    lake = data.write(Lakehouse(tmp_path / "lake"))                                # a lakehouse of its own: its catalog changes
    syms = list(DataLoader(lake, record_quarantine=False).load().returns.columns)    # the symbols a matrix holds
    lake.upsert_catalog(pd.DataFrame({"symbol": syms, "adjustment": ["splits"] * (len(syms) - 2) + ["dividends", None]}),
                        as_of="2030-01-01")
    tree = lambda root: {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}
    before = tree(lake.root)
    with pytest.raises(MixedAdjustmentsError) as e:
        IngestionStage(lake).run(tmp_path / "runs" / "refused")
    assert "dividends ×1" in str(e.value) and "unknown ×1" in str(e.value) and " more" in str(e.value) and len(str(e.value)) < 600
    assert tree(lake.root) == before                                               # not even a quarantine record
    out = IngestionStage(lake, mixed_adjustments=True).run(tmp_path / "runs" / "mixed")
    loaded = out.adjustments.dropna()
    assert out.adjustments.index.equals(out.returns.columns) and set(loaded) <= {"splits", "dividends"}
    assert out.dollar_volume.shape == out.returns.shape
