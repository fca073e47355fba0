"""Your own prices into the lakehouse (`data.imports`), on real CSV and Parquet files: long and wide layouts, every bad
input of the issue (mixed time zones, duplicate timestamps, text in numeric columns, hostile symbols, naive times
without a time zone), re-imports that revise bars, refused inputs that leave the lakehouse byte-identical, one bad
row or symbol that never blocks the others, and the research flow on imported data giving exactly what it gives on
the same bars stored directly."""
import os
import re

import numpy as np
import pandas as pd
import pytest

from helpers import tree_digest
from tradingview_scraper.core import ValidationError
from tradingview_scraper.data.imports import ImportRefused, import_file, import_prices, import_returns
from tradingview_scraper.data.lakehouse import Lakehouse
from tradingview_scraper.data.sample import SyntheticMarket
from tradingview_scraper.orchestration.flow import run_flow

FLOW = {"data.source": "lakehouse", "discovery.screens": [], "allocation.benchmark": None, "data.start": None,
        "backtest.train": 126, "selection.vetoes.min_history": 60}
UTC = lambda *s: list(pd.to_datetime(list(s), utc=True))


def daily(symbol: str, n: int = 40, start: str = "2024-01-02", base: float = 100.0) -> pd.DataFrame:
    "A long table of consistent daily bars on business days, dates written as plain ISO dates."
    days = pd.bdate_range(start, periods=n)
    close = base + np.arange(n, dtype=float)
    return pd.DataFrame({"symbol": symbol, "date": days.strftime("%Y-%m-%d"), "open": close - 0.5, "high": close + 1,
                         "low": close - 1, "close": close, "volume": 1000.0})


def lake_with(tmp_path, *frames) -> Lakehouse:
    "A lakehouse holding `frames` (long tables), imported from a CSV file."
    lake = Lakehouse(tmp_path / "lake")
    path = tmp_path / "seed.csv"
    pd.concat(frames, ignore_index=True).to_csv(path, index=False)
    assert import_file(path, lake).ok
    return lake


# --- the flow on imported data is the flow on the same data stored directly ---------------------------------------

def test_imported_csv_runs_the_flow_exactly_like_stored_bars(tmp_path):
    market = SyntheticMarket(n_equities=8, n_crypto=0, n_days=420, seed=5).generate()
    direct = market.write(Lakehouse(tmp_path / "direct"))
    rows = []
    for sym, bars in market.bars.items():
        meta = market.catalog.set_index("symbol").loc[sym]
        rows.append(bars.assign(symbol=sym, ts=bars["ts"].dt.strftime("%Y-%m-%d"), type=meta["type"], currency=meta["currency"],
                                sector=meta["sector"], session=meta["session"], timezone=meta["timezone"],
                                description=meta["description"], tick_size=meta["tick_size"]))
    path = tmp_path / "mine.csv"
    pd.concat(rows, ignore_index=True).sample(frac=1, random_state=0).to_csv(path, index=False, float_format="%.17g")  # any row order
    imported = Lakehouse(tmp_path / "imported")
    report = import_file(path, imported)
    assert report.ok and report.summary["added"] == sum(len(b) for b in market.bars.values())
    for sym in market.bars:
        pd.testing.assert_frame_equal(imported.read_ohlcv(sym), direct.read_ohlcv(sym))
    fields = ["exchange", "type", "currency", "sector", "session", "timezone", "description", "tick_size"]
    pd.testing.assert_frame_equal(imported.catalog()[fields], direct.catalog()[fields])
    first = {s: b["ts"].min() for s, b in market.bars.items()}
    assert imported.catalog()["valid_from"].to_dict() == first          # known from its first bar
    a = run_flow("development", run_id="direct", runs_root=tmp_path / "runs", lakehouse_root=direct.root, env={}, overrides=FLOW)
    b = run_flow("development", run_id="imported", runs_root=tmp_path / "runs", lakehouse_root=imported.root, env={}, overrides=FLOW)
    assert a.status["status"] == b.status["status"] == "succeeded"
    pd.testing.assert_frame_equal(a.load("ingest", "returns"), b.load("ingest", "returns"))
    assert a.load("backtest", "metrics") == b.load("backtest", "metrics")
    assert len(a.load("ingest", "returns").columns) == 8


# --- layouts and files ------------------------------------------------------------------------------------------------

def test_wide_parquet_with_a_datetime_index(tmp_path):
    idx = pd.DatetimeIndex(pd.bdate_range("2024-01-02", periods=5, tz="UTC"), name="Date")
    wide = pd.DataFrame({"SYNTH:AAA": [1.0, 2.0, np.nan, 4.0, 5.0], "synth:bbb": [10.0, 11.0, 12.0, 13.0, 14.0]}, index=idx)
    wide.to_parquet(tmp_path / "wide.parquet")                           # the index is stored and read back
    lake = Lakehouse(tmp_path / "lake")
    report = import_file(tmp_path / "wide.parquet", lake)
    assert report.ok and report.summary["layout"] == "wide"
    assert report.stored.set_index("symbol")["added"].to_dict() == {"SYNTH:AAA": 4, "SYNTH:BBB": 5}   # an empty cell is no bar
    aaa = lake.read_ohlcv("SYNTH:AAA")
    assert aaa["ts"].tolist() == [t for t in idx if t != idx[2]]
    assert (aaa[["open", "high", "low"]].to_numpy() == aaa[["close"]].to_numpy()).all() and aaa["volume"].isna().all()
    assert report.summary["filled"] == ["open", "high", "low", "volume"]


def test_wide_csv_with_bare_tickers_and_an_exchange(tmp_path):
    (tmp_path / "w.csv").write_text("date,AAA,7203\n2024-01-02,1.5,100\n2024-01-03,1.6,101\n")
    lake = Lakehouse(tmp_path / "lake")
    report = import_file(tmp_path / "w.csv", lake, exchange="synth")
    assert report.ok and [str(s) for s in lake.symbols()] == ["SYNTH:7203", "SYNTH:AAA"]
    assert lake.read_ohlcv("SYNTH:AAA")["close"].tolist() == [1.5, 1.6]
    with pytest.raises(ValidationError, match="exchange"):
        import_file(tmp_path / "w.csv", lake, exchange="../x")


def test_long_csv_with_case_insensitive_columns_and_text_tickers(tmp_path):
    (tmp_path / "l.csv").write_text(" Symbol ,TIMESTAMP,Close\nTSE:7203,2024-01-02,3000\nTSE:7203,2024-01-03,3010\n")
    lake = Lakehouse(tmp_path / "lake")
    report = import_file(tmp_path / "l.csv", lake)
    assert report.ok and lake.read_ohlcv("TSE:7203")["close"].tolist() == [3000.0, 3010.0]


def test_epoch_seconds_as_tradingview_exports_them(tmp_path):
    (tmp_path / "tv.csv").write_text("symbol,time,open,high,low,close,Volume\n"
                                     "BINANCE:BTCUSDT,1704153600,1,2,0.5,1.5,10\nBINANCE:BTCUSDT,1704240000,1.5,2,1,1.8,12\n")
    lake = Lakehouse(tmp_path / "lake")
    assert import_file(tmp_path / "tv.csv", lake).ok
    assert lake.read_ohlcv("BINANCE:BTCUSDT")["ts"].tolist() == UTC("2024-01-02", "2024-01-03")


# --- bad rows: refused with the row and the reason, never blocking the others -----------------------------------------

BATCH = """symbol,ts,open,high,low,close,volume
SYNTH:A,2024-01-02,10,11,9,10.5,100
SYNTH:A,2024-01-03,10,11,9,1O.5,100
../../../etc/passwd,2024-01-02,10,11,9,10.5,100
NASDAQ:ΑAPL,2024-01-02,10,11,9,10.5,100
"SYNTH:B\x1b[31m",2024-01-02,10,11,9,10.5,100
SYNTH:B,2024-01-02,20,21,19,20.5,200
SYNTH:B,2024-01-02,20,21,19,20.5,200
SYNTH:C,2024-01-02,30,31,29,30.5,300
SYNTH:C,2024-01-02,30,31,29,30.7,300
SYNTH:C,2024-01-03,30,31,29,30.5,lots
SYNTH:D,01/02/2024,1,1,1,1,1
,2024-01-02,1,1,1,1,1
SYNTH:A,2024-01-04,10,11,9,10.6,100
"""


def test_a_batch_with_bad_rows_imports_every_good_row(tmp_path):
    path = tmp_path / "batch.csv"
    path.write_text(BATCH + f"SYNTH:E{'X' * 10_000},2024-01-02,1,1,1,1,1\n", encoding="utf-8")
    lake = Lakehouse(tmp_path / "lake")
    report = import_file(path, lake)
    why = report.rejected.set_index("row")["reason"].to_dict()
    assert sorted(why) == [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 13]
    assert why[1] == "text '1O.5' in numeric column 'close'"
    assert why[2].startswith("invalid symbol '../../../etc/passwd'")
    assert why[3].startswith("invalid symbol 'NASDAQ:\\u0391APL'") and "U+0391 GREEK CAPITAL LETTER ALPHA" in why[3]
    assert why[4].startswith("invalid symbol 'SYNTH:B\\x1b[31m'")
    assert why[6] == "duplicate of row 5 (same SYNTH:B bar at 2024-01-02 00:00:00+00:00): kept once"
    assert why[7] == why[8] == "conflicting rows for SYNTH:C at 2024-01-02 00:00:00+00:00 (rows 7, 8): none imported"
    assert why[9] == "text 'lots' in numeric column 'volume'"
    assert why[10].startswith("unparseable timestamp '01/02/2024' in column 'ts'")
    assert why[11] == "missing symbol"
    assert len(why[13]) < 600 and "XXX..." in why[13]                    # an enormous value never floods a message
    assert not report.ok and report.summary["rejected_rows"] == 11
    # every good row is stored, nothing else: no file for a refused symbol, nothing outside the lakehouse
    assert [str(s) for s in lake.symbols()] == ["SYNTH:A", "SYNTH:B"] and lake.stray_files() == []
    assert lake.read_ohlcv("SYNTH:A")["ts"].tolist() == UTC("2024-01-02", "2024-01-04")
    assert lake.read_ohlcv("SYNTH:B")[["ts", "close"]].values.tolist() == [[UTC("2024-01-02")[0], 20.5]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch.csv", "lake"]
    assert sorted(lake.catalog().index) == ["SYNTH:A", "SYNTH:B"]


def test_mixed_offsets_are_converted_per_row(tmp_path):
    (tmp_path / "i.csv").write_text("symbol,ts,close\n"
                                    "NYSE:X,2024-03-08T09:30:00-05:00,10\n"      # before the US DST change
                                    "NYSE:X,2024-03-11T09:30:00-04:00,11\n"      # after it
                                    "NYSE:X,2024-03-11T14:30:00Z,12\n"           # in UTC: 10:30 EDT
                                    "NYSE:X,2024-03-12 09:30,13\n")              # no offset: in tz
    lake = Lakehouse(tmp_path / "lake")
    report = import_file(tmp_path / "i.csv", lake, interval="60", tz="America/New_York")
    assert report.ok and report.summary["zones"] == ["-05:00", "-04:00", "+00:00"]
    assert lake.read_ohlcv("NYSE:X", "60")["ts"].tolist() == UTC("2024-03-08 14:30", "2024-03-11 13:30", "2024-03-11 14:30", "2024-03-12 13:30")
    # daily bars from the same column: each row's session date as written in its own offset
    daily_report = import_file(tmp_path / "i.csv", lake, interval="1d")
    assert daily_report.rejected["row"].tolist() == [1, 2]               # two disagreeing bars for the session of 03-11
    assert lake.read_ohlcv("NYSE:X")["ts"].tolist() == UTC("2024-03-08", "2024-03-12")


def test_daily_bars_keep_the_session_date_written_in_their_own_offset(tmp_path):
    # Tokyo daily bars stamped at local midnight: in UTC they fall on the previous day, but the session is the date written
    (tmp_path / "t.csv").write_text("symbol,date,close\nTSE:7203,2024-01-04T00:00:00+09:00,3000\nTSE:7203,2024-01-05T00:00:00+09:00,3010\n")
    lake = Lakehouse(tmp_path / "lake")
    assert import_file(tmp_path / "t.csv", lake).summary["zones"] == ["+09:00"]
    assert lake.read_ohlcv("TSE:7203")["ts"].tolist() == UTC("2024-01-04", "2024-01-05")
    # with tz= the session date is the date seen in that zone
    import_file(tmp_path / "t.csv", tmp_path / "lake_ny", tz="America/New_York")
    assert Lakehouse(tmp_path / "lake_ny").read_ohlcv("TSE:7203")["ts"].tolist() == UTC("2024-01-03", "2024-01-04")


def test_the_same_instant_written_with_two_offsets_is_a_duplicate(tmp_path):
    (tmp_path / "d.csv").write_text("symbol,ts,close\nX:A,2024-01-02T10:00:00+01:00,5\nX:A,2024-01-02T09:00:00Z,6\nX:A,2024-01-02T11:00:00Z,7\n")
    report = import_file(tmp_path / "d.csv", tmp_path / "lake", interval="60")
    assert report.rejected["row"].tolist() == [0, 1] and report.rejected["reason"].str.startswith("conflicting rows for X:A").all()
    assert Lakehouse(tmp_path / "lake").read_ohlcv("X:A", "60")["close"].tolist() == [7.0]


def test_a_dst_gap_time_is_refused_with_its_row(tmp_path):
    (tmp_path / "g.csv").write_text("symbol,ts,close\nX:A,2024-03-10 01:30,1\nX:A,2024-03-10 02:30,2\nX:A,2024-03-10 03:30,3\n")
    report = import_file(tmp_path / "g.csv", tmp_path / "lake", interval="30", tz="America/New_York")
    assert report.rejected[["row"]].values.tolist() == [[1]] and "daylight-saving" in report.rejected["reason"].iloc[0]
    assert Lakehouse(tmp_path / "lake").read_ohlcv("X:A", "30")["ts"].tolist() == UTC("2024-03-10 06:30", "2024-03-10 07:30")


def test_text_in_a_parquet_price_column(tmp_path):
    df = pd.DataFrame({"symbol": "SYNTH:P", "ts": pd.bdate_range("2024-01-02", periods=3, tz="UTC"), "close": ["1.5", "n/a", "1.7"]})
    df.to_parquet(tmp_path / "p.parquet")
    lake = Lakehouse(tmp_path / "lake")
    report = import_file(tmp_path / "p.parquet", lake)
    assert report.rejected[["row", "reason"]].values.tolist() == [[1, "text 'n/a' in numeric column 'close'"]]
    assert lake.read_ohlcv("SYNTH:P")["close"].tolist() == [1.5, 1.7]


# --- refused inputs: the lakehouse stays byte-identical --------------------------------------------------------------

def _junk_parquet(p):
    p.write_bytes(b"PAR1" + os.urandom(64))


REFUSED = {
    "no close column": ("x.csv", lambda p: p.write_text("symbol,date,price\nSYNTH:A,2024-01-02,1\n"), {}, "missing ['close']"),
    "no time column": ("x.csv", lambda p: p.write_text("symbol,close\nSYNTH:A,1\n"), {}, "missing ['ts']"),
    "empty file": ("x.csv", lambda p: p.write_bytes(b""), {}, "non-empty"),
    "header only": ("x.csv", lambda p: p.write_text("symbol,date,close\n"), {}, "at least one row"),
    "binary junk": ("x.csv", lambda p: p.write_bytes(bytes(range(256)) * 8), {}, "as CSV"),
    "junk parquet": ("x.parquet", _junk_parquet, {}, "as Parquet"),
    "ambiguous columns": ("x.csv", lambda p: p.write_text("symbol,date,Close,close\nSYNTH:A,2024-01-02,1,2\n"), {}, "unique names"),
    "a repeated column": ("x.csv", lambda p: p.write_text("symbol,date,close,close\nSYNTH:A,2024-01-02,1,2\n"), {}, "unique names"),
    "two time columns": ("x.csv", lambda p: p.write_text("symbol,date,time,close\nSYNTH:A,2024-01-02,10:00,1\n"), {}, "one column named"),
    "naive intraday": ("x.csv", lambda p: p.write_text("symbol,DateTime,close\nSYNTH:A,2024-01-02 10:00,1\n"), {"interval": "60"},
                       "column 'DateTime'.*tz="),
    "too big": ("x.csv", lambda p: p.write_text("symbol,date,close\n" + "SYNTH:A,2024-01-02,1\n" * 100), {"max_bytes": 1000}, "max_bytes=1000"),
    "too many rows": ("x.csv", lambda p: p.write_text("symbol,date,close\n" + "SYNTH:A,2024-01-02,1\n" * 30), {"max_rows": 20}, "max_rows=20"),
    "too many parquet rows": ("x.parquet", lambda p: daily("SYNTH:A", 30).to_parquet(p), {"max_rows": 20}, "max_rows=20"),
    "missing file": ("x.csv", lambda p: None, {}, "an existing file"),
    "a directory": ("x.csv", lambda p: p.mkdir(), {}, "regular file"),
    "a fifo": ("x.csv", lambda p: os.mkfifo(p), {}, "regular file"),           # refused at once, never waited on
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_refused_file_leaves_the_lakehouse_byte_identical(tmp_path, case):
    name, make, kw, expect = REFUSED[case]
    lake = lake_with(tmp_path, daily("SYNTH:A"), daily("SYNTH:B"))
    before = tree_digest(lake.root)
    path = tmp_path / name
    make(path)
    with pytest.raises(ImportRefused, match=expect if case == "naive intraday" else re.escape(expect)):
        import_file(path, lake, **kw)
    assert tree_digest(lake.root) == before


def test_a_huge_file_is_refused_before_it_is_read(tmp_path):
    lake = lake_with(tmp_path, daily("SYNTH:A"))
    before = tree_digest(lake.root)
    huge = tmp_path / "huge.csv"
    with open(huge, "wb") as f: f.truncate(10**12)                      # a sparse terabyte: reading it is not an option
    with pytest.raises(ImportRefused, match="1000000000000 bytes"):     # its size, known before reading
        import_file(huge, lake)
    assert tree_digest(lake.root) == before


def test_a_character_device_is_refused_without_reading_it(tmp_path):
    lake = lake_with(tmp_path, daily("SYNTH:A"))
    before = tree_digest(lake.root)
    with pytest.raises(ImportRefused, match="regular file"):
        import_file("/dev/zero", lake)
    assert tree_digest(lake.root) == before


def test_a_refused_frame_leaves_the_lakehouse_byte_identical(tmp_path):
    lake = lake_with(tmp_path, daily("SYNTH:A"))
    before = tree_digest(lake.root)
    for bad in (pd.DataFrame(), [1, 2, 3], daily("SYNTH:A").drop(columns="close"), daily("SYNTH:A").assign(date="2024-01-02 10:00")):
        with pytest.raises(ImportRefused):
            import_prices(bad, lake, interval="5")
    assert tree_digest(lake.root) == before


# --- nothing stored is lost ------------------------------------------------------------------------------------------

def test_a_reimport_revises_bars_and_records_their_previous_values(tmp_path):
    first = daily("SYNTH:A")
    lake = lake_with(tmp_path, first, daily("SYNTH:B"))
    fixed = pd.concat([first, daily("SYNTH:B")], ignore_index=True)
    fixed.loc[[5, 39], ["close", "high"]] += 0.25                        # a history bar and the last bar of SYNTH:A
    extra = daily("SYNTH:A", 2, start="2024-02-27", base=140)            # and two new bars
    pd.concat([fixed, extra], ignore_index=True).to_csv(tmp_path / "fixed.csv", index=False)
    report = import_file(tmp_path / "fixed.csv", lake)
    s = report.stored.set_index("symbol")
    assert s.loc["SYNTH:A", ["added", "replaced", "revised", "unchanged"]].tolist() == [2, 2, 2, 38]
    assert s.loc["SYNTH:B", ["added", "replaced", "unchanged"]].tolist() == [0, 0, 40]
    rv = lake.revisions("SYNTH:A")
    assert rv[["ts", "kind"]].values.tolist() == [[UTC(first["date"][5])[0], "history"], [UTC(first["date"][39])[0], "live"]]
    assert rv["old_close"].tolist() == first["close"][[5, 39]].tolist()
    assert rv["new_close"].tolist() == (first["close"][[5, 39]] + 0.25).tolist()
    assert lake.read_ohlcv("SYNTH:A")["close"].tolist() == pd.concat([fixed[fixed["symbol"] == "SYNTH:A"], extra])["close"].tolist()
    assert len(lake.revisions("SYNTH:B")) == 0


def test_a_quarantined_import_never_replaces_a_stored_bar(tmp_path):
    first = daily("SYNTH:A")
    lake = lake_with(tmp_path, first)
    stored = lake.read_ohlcv("SYNTH:A")
    bad = first.copy()
    bad.loc[10, ["open", "high", "low", "close"]] *= 20                  # a one-bar print over a stored bar
    bad.loc[20, ["close", "high"]] += 0.5                                # and a genuine correction
    bad.to_csv(tmp_path / "bad.csv", index=False)
    report = import_file(tmp_path / "bad.csv", lake)
    assert report.quarantined[["row", "symbol", "rule_id"]].values.tolist() == [[10, "SYNTH:A", "print_error"]]
    q = lake.quarantined("SYNTH:A")
    assert q[["ts", "rule_id", "close"]].values.tolist() == [[stored["ts"][10], "print_error", first["close"][10] * 20]]
    now = lake.read_ohlcv("SYNTH:A")
    assert now.loc[10].equals(stored.loc[10])                            # the stored bar stays
    assert now["close"][20] == first["close"][20] + 0.5 and len(lake.revisions("SYNTH:A")) == 1
    assert report.ok                                                     # quarantine is the contracts' normal outcome


def test_a_new_symbol_with_a_bad_bar_keeps_its_good_bars(tmp_path):
    bars = daily("SYNTH:N")
    bars.loc[7, "high"] = bars.loc[7, "low"] - 5                         # high below low: ohlc_inconsistent
    bars.loc[8, "close"] = np.nan                                        # an empty close: non_finite
    bars.to_csv(tmp_path / "n.csv", index=False)
    lake = Lakehouse(tmp_path / "lake")
    report = import_file(tmp_path / "n.csv", lake)
    assert sorted(report.quarantined["rule_id"]) == ["non_finite", "ohlc_inconsistent"]
    assert len(lake.read_ohlcv("SYNTH:N")) == 38 and len(lake.quarantined("SYNTH:N")) == 2


def test_one_damaged_symbol_never_blocks_the_others(tmp_path):
    lake = lake_with(tmp_path, daily("SYNTH:A"), daily("SYNTH:B"))
    damaged = lake.ohlcv_path("SYNTH:A")
    damaged.write_bytes(b"not parquet at all")
    pd.concat([daily("SYNTH:A", 45), daily("SYNTH:B", 45)]).to_csv(tmp_path / "more.csv", index=False)
    report = import_file(tmp_path / "more.csv", lake)
    s = report.stored.set_index("symbol")
    assert s.loc["SYNTH:A", "error"].startswith("CorruptDataError") and s.loc["SYNTH:B", "added"] == 5
    assert damaged.read_bytes() == b"not parquet at all" and not report.ok and report.summary["failed_symbols"] == 1


def test_the_catalog_keeps_what_the_input_does_not_give(tmp_path):
    lake = Lakehouse(tmp_path / "lake")
    lake.upsert_catalog(pd.DataFrame({"symbol": ["SYNTH:A"], "exchange": ["SYNTH"], "tick_size": [0.01], "sector": ["tech"],
                                      "currency": ["USD"]}), as_of="2020-01-01")
    with_eur = daily("SYNTH:A").assign(currency="EUR", name="Alpha")
    import_prices(with_eur, lake)
    versions = lake.catalog(versions=True)
    assert len(versions) == 2 and versions["valid_until"].notna().sum() == 1     # the old version is closed, not lost
    cur = lake.catalog().loc["SYNTH:A"]
    assert (cur["currency"], cur["description"], cur["tick_size"], cur["sector"]) == ("EUR", "Alpha", 0.01, "tech")
    assert import_prices(with_eur, lake).summary["catalog_updated"] == 0 and len(lake.catalog(versions=True)) == 2
    import_prices(daily("SYNTH:Z", start="2024-02-01"), lake)
    assert lake.catalog().loc["SYNTH:Z", "valid_from"] == pd.Timestamp("2024-02-01", tz="UTC")


def test_the_report_is_kept_with_a_run_or_the_lakehouse(tmp_path):
    (tmp_path / "r.csv").write_text(BATCH)
    report = import_file(tmp_path / "r.csv", tmp_path / "lake")
    paths = report.write(tmp_path / "run")
    assert pd.read_parquet(paths["rejected"])["row"].tolist() == report.rejected["row"].tolist()
    kept = report.write()
    assert kept["summary"].parent.parent == tmp_path / "lake" / "imports"
    assert '"rejected_rows": 10' in kept["summary"].read_text()


# --- a returns DataFrame ---------------------------------------------------------------------------------------------

def test_a_returns_matrix_imported_gives_the_same_run(tmp_path):
    market = SyntheticMarket(n_equities=6, n_crypto=0, n_days=420, seed=9).generate()
    lake = market.write(Lakehouse(tmp_path / "prices"))
    a = run_flow("development", run_id="prices", runs_root=tmp_path / "runs", lakehouse_root=lake.root, env={}, overrides=FLOW)
    returns = a.load("ingest", "returns")
    assert returns.isna().to_numpy().sum() > len(returns.columns)        # late listings and gaps, not only the first row
    report = import_returns(returns, tmp_path / "returns")
    assert report.ok and report.summary["source"] == "import:returns"
    b = run_flow("development", run_id="returns", runs_root=tmp_path / "runs", lakehouse_root=tmp_path / "returns", env={}, overrides=FLOW)
    pd.testing.assert_frame_equal(b.load("ingest", "returns"), returns, rtol=0, atol=1e-12)
    ma, mb = a.load("backtest", "metrics"), b.load("backtest", "metrics")
    assert ma.keys() == mb.keys() and all(np.isclose(ma[k][s], mb[k][s], rtol=1e-9, atol=1e-12) for k in ma for s in ma[k])


def test_returns_that_cannot_be_prices_are_refused(tmp_path):
    idx = pd.date_range("2024-01-01", periods=3, tz="UTC")
    for bad in ([0.1], pd.DataFrame({"X:A": ["a", "b", "c"]}, index=idx), pd.DataFrame({"X:A": [0.1, 0.2, 0.3]}),
                pd.DataFrame({"X:A": [0.1, 0.2, 0.3]}, index=idx[::-1]), pd.DataFrame({"X:A": [0.1]}, index=idx[:1])):
        with pytest.raises(ImportRefused):
            import_returns(bad, tmp_path / "lake")
    assert not (tmp_path / "lake").exists()
    report = import_returns(pd.DataFrame({"X:A": [0.1, -1.5, 0.2]}, index=idx), tmp_path / "lake")   # a price below zero
    assert report.stored["excluded"].tolist() == [True]                 # stored, and kept out of the returns by the contracts
