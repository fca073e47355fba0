"""The lakehouse's storage boundary under the faults an adversarial pass found: a reader racing an upsert's
replace, revisions of stored bars, a full disk, wrong-schema frames, temp files of killed writers, stray files,
repeated quarantine detections and re-seeded catalogs. Every interleaving and fault is forced, never waited for."""
import errno
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tradingview_scraper.core import ContractError, CorruptDataError, ValidationError
from tradingview_scraper.data import lakehouse as lakehouse_mod
from tradingview_scraper.data.lakehouse import Lakehouse, StorageError, stale_temp_files
from tradingview_scraper.data.loader import DataLoader
from tradingview_scraper.data.lakehouse import MetadataSnapshot

SYM = "SYNTH:AAA"


def bars(n, value, start="2020-01-01"):
    ts = pd.date_range(start, periods=n, freq="D", tz="UTC").as_unit("ns")
    px = np.full(n, float(value))
    return pd.DataFrame({"ts": ts, "open": px, "high": px, "low": px, "close": px, "volume": np.arange(n, dtype=float)})


# --- 2. a reader never sees a false corruption while an upsert replaces the file ---------------------------------

@pytest.mark.parametrize("window", [{}, {"start": "2020-02-01"}, {"end": "2020-03-01"}], ids=["all", "start", "end"])
def test_an_upsert_replacing_the_file_between_a_readers_steps_is_never_corruption(tmp_path, monkeypatch, window):
    """pyarrow reads a Parquet path in two steps (footer, then row groups). Force a writer's `os.replace` exactly
    between them: the reader returns the version it opened, whole (it used to raise CorruptDataError)."""
    lh = Lakehouse(tmp_path)
    lh.write_ohlcv(SYM, bars(1000, 1.0))
    real_read, armed = pq.ParquetDataset.read, [True]

    def read_after_a_writer_replaced_the_file(self, *a, **k):
        if armed:
            armed.clear()
            lh.write_ohlcv(SYM, bars(3000, 2.0, "2019-06-01"))   # a bigger, different file takes the path
            assert set(pq.read_table(lh.ohlcv_path(SYM))["close"].to_pylist()) == {2.0}
        return real_read(self, *a, **k)

    monkeypatch.setattr(pq.ParquetDataset, "read", read_after_a_writer_replaced_the_file)
    got = lh.read_ohlcv(SYM, **window)
    assert not armed, "the forced interleaving did not happen"
    full = bars(1000, 1.0)
    keep = (full["ts"] >= window.get("start", "1900-01-01")) & (full["ts"] < window.get("end", "2100-01-01"))
    pd.testing.assert_frame_equal(got, full[keep].reset_index(drop=True))        # the version it opened, whole


def test_last_bar_and_freshness_read_one_version(tmp_path, monkeypatch):
    lh = Lakehouse(tmp_path)
    lh.write_ohlcv(SYM, bars(10, 1.0))
    real_pf, armed = pq.ParquetFile, [True]

    def parquet_file_then_replace(source, *a, **k):
        f = real_pf(source, *a, **k)
        if armed:
            armed.clear()
            lh.write_ohlcv(SYM, bars(50, 2.0))
        return f

    monkeypatch.setattr(pq, "ParquetFile", parquet_file_then_replace)
    fr = lh.freshness().set_index("symbol")
    assert not armed and fr.loc[SYM, "error"] is None and fr.loc[SYM, "bars"] == 10
    assert fr.loc[SYM, "last"] == pd.Timestamp("2020-01-10", tz="UTC")


# --- 1. revisions ---------------------------------------------------------------------------------------------------

def test_every_changed_bar_is_recorded_live_or_history(tmp_path):
    lh = Lakehouse(tmp_path)
    first = lh.write_ohlcv(SYM, bars(5, 1.0))
    assert (first.added, first.replaced, first.revised, first.history_revised) == (5, 0, 0, 0)
    upd = bars(5, 1.0).iloc[[1, 3, 4]].assign(close=[1.5, 1.0, 1.25])        # bar 3 unchanged: replaced, not revised
    upd = pd.concat([upd, bars(6, 3.0).iloc[[5]]], ignore_index=True)       # plus one new bar
    w = lh.write_ohlcv(SYM, upd)
    assert (w.added, w.replaced, w.revised, w.history_revised) == (1, 3, 2, 1)
    rv = lh.revisions(SYM)
    assert rv["ts"].dt.strftime("%m-%d").tolist() == ["01-02", "01-05"] and rv["kind"].tolist() == ["history", "live"]
    assert rv[["old_close", "new_close"]].values.tolist() == [[1.0, 1.5], [1.0, 1.25]]
    assert (rv["old_volume"] == rv["new_volume"]).all() and rv["revised_at"].notna().all()
    assert lh.revisions(kind="history")["symbol"].tolist() == [SYM]
    assert lh.revisions(interval="1w").empty


def test_nan_equals_nan_and_identical_rewrites_are_not_revisions(tmp_path):
    lh = Lakehouse(tmp_path)
    b = bars(3, 1.0).assign(volume=np.nan)
    lh.write_ohlcv(SYM, b)
    w = lh.write_ohlcv(SYM, b)
    assert (w.replaced, w.revised) == (3, 0) and lh.revisions().empty
    assert not lh.revisions_path(SYM).exists()


# --- 4. typed errors at the storage boundary, nothing changed ---------------------------------------------------------

class FullDisk:
    "A file whose writes fail as on a full disk."
    def __init__(self, f): self.f = f
    def __enter__(self): return self
    def __exit__(self, *exc): self.f.close()
    def write(self, data): raise OSError(errno.ENOSPC, "No space left on device")
    def __getattr__(self, name): return getattr(self.f, name)


def fill_disk_at(monkeypatch, *writes):
    "Make the given (1-based) atomic writes of this test hit a full disk; returns the list of writes seen."
    real, seen = os.fdopen, []
    def fdopen(fd, *a, **k):
        seen.append(fd)
        f = real(fd, *a, **k)
        return FullDisk(f) if len(seen) in writes else f
    monkeypatch.setattr(os, "fdopen", fdopen)
    return seen


def snapshot(root):
    "Every file under `root` with its bytes (temp files included: none may be left); lock sidecars hold no data."
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


def test_disk_full_in_write_ohlcv_is_a_storage_error_and_changes_nothing(tmp_path, monkeypatch):
    lh = Lakehouse(tmp_path)
    lh.write_ohlcv(SYM, bars(100, 1.0))
    before = snapshot(tmp_path)
    fill_disk_at(monkeypatch, 1)
    with pytest.raises(StorageError) as e:
        lh.write_ohlcv(SYM, bars(200, 1.0))              # only new bars: no revision, one write
    msg = str(e.value)
    assert isinstance(e.value, OSError) and e.value.errno == errno.ENOSPC
    assert SYM in msg and str(lh.ohlcv_path(SYM)) in msg and "ENOSPC" in msg and "expected a writable filesystem" in msg
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("earlier", [True, False], ids=["revisions-stored", "first-revision"])
@pytest.mark.parametrize("full_at", [1, 2], ids=["revisions-file", "bar-file"])
def test_disk_full_while_revising_restores_both_files(tmp_path, monkeypatch, full_at, earlier):
    lh = Lakehouse(tmp_path)
    lh.write_ohlcv(SYM, bars(100, 1.0))
    if earlier: lh.write_ohlcv(SYM, bars(100, 1.0).iloc[[10]].assign(close=5.0))   # an earlier revision already recorded
    before = snapshot(tmp_path)
    fill_disk_at(monkeypatch, full_at)
    with pytest.raises(StorageError, match="revisions of" if full_at == 1 else "bars of"):
        lh.write_ohlcv(SYM, bars(100, 7.0))
    assert snapshot(tmp_path) == before
    assert lh.revisions(SYM)["new_close"].tolist() == ([5.0] if earlier else [])


def test_disk_full_in_record_quarantine_is_a_storage_error_and_changes_nothing(tmp_path, monkeypatch):
    lh = Lakehouse(tmp_path)
    rec = pd.DataFrame({"symbol": [SYM], "interval": ["1d"], "ts": [pd.Timestamp("2020-01-02", tz="UTC")],
                        "rule_id": ["toxic_move"], "rule_version": [1]})
    lh.record_quarantine(rec)
    before = snapshot(tmp_path)
    fill_disk_at(monkeypatch, 1)
    with pytest.raises(StorageError, match=f"quarantine of {SYM}.*ENOSPC"):
        lh.record_quarantine(rec.assign(ts=pd.Timestamp("2020-01-03", tz="UTC")))
    assert snapshot(tmp_path) == before


WRONG = {
    "duplicated column": lambda b: pd.concat([b, b[["close"]]], axis=1),
    "multi-index columns": lambda b: pd.DataFrame(b.values, columns=pd.MultiIndex.from_product([b.columns, ["x"]])),
    "complex prices": lambda b: b.assign(close=b["close"] + 1j),
    "missing column": lambda b: b.drop(columns="volume"),
    "ts as index": lambda b: b.set_index("ts"),
    "naive ts": lambda b: b.assign(ts=b["ts"].dt.tz_localize(None)),
    "text prices": lambda b: b.assign(open="1.0"),
    "not a frame": lambda b: b.to_dict("list"),
}


@pytest.mark.parametrize("name", WRONG)
def test_wrong_schema_frame_is_a_contract_error_naming_the_symbol(tmp_path, name):
    lh = Lakehouse(tmp_path)
    lh.write_ohlcv(SYM, bars(5, 1.0))
    before = snapshot(tmp_path)
    with pytest.raises(ContractError, match=SYM):
        lh.write_ohlcv(SYM, WRONG[name](bars(5, 2.0)))
    assert snapshot(tmp_path) == before


def test_a_stored_file_with_a_foreign_schema_is_corrupt_not_overwritten(tmp_path):
    lh = Lakehouse(tmp_path)
    path = lh.ohlcv_path(SYM)
    path.parent.mkdir(parents=True)
    pq.write_table(__import__("pyarrow").table({"ts": [1, 2], "close": ["a", "b"]}), path)
    before = path.read_bytes()
    with pytest.raises(CorruptDataError, match="schema"):
        lh.write_ohlcv(SYM, bars(5, 1.0))
    assert path.read_bytes() == before


# --- 5. temp files of killed writers ---------------------------------------------------------------------------------

def test_the_next_write_removes_a_killed_writers_temp_file(tmp_path):
    lh = Lakehouse(tmp_path)
    lh.write_ohlcv(SYM, bars(5, 1.0))
    path = lh.ohlcv_path(SYM)
    dead = path.parent / f".{path.name}.q7x_2k9z.tmp"    # what mkstemp named a writer SIGKILLed mid-upsert
    dead.write_bytes(os.urandom(4 << 20))
    neighbour = path.parent / ".SYNTH.BBB.parquet.q7x_2k9z.tmp"   # another file's temp: not ours to judge
    neighbour.write_bytes(b"x")
    assert stale_temp_files(path) == [dead]
    lh.read_ohlcv(SYM)                                   # readers never delete
    assert dead.exists()
    lh.write_ohlcv(SYM, bars(6, 1.0))
    assert not dead.exists() and neighbour.exists() and len(lh.read_ohlcv(SYM)) == 6
    for kind, write in (("quarantine", lambda: lh.record_quarantine(pd.DataFrame(
            {"symbol": [SYM], "interval": ["1d"], "ts": [pd.Timestamp("2020-01-02", tz="UTC")], "rule_id": ["r"], "rule_version": [1]}))),
                        ("catalog", lambda: lh.upsert_catalog(pd.DataFrame({"symbol": [SYM], "exchange": ["SYNTH"]})))):
        target = lh._quarantine_path(SYM, "1d") if kind == "quarantine" else lh._catalog_path()
        target.parent.mkdir(parents=True, exist_ok=True)
        left = target.parent / f".{target.name}.abcdefgh.tmp"
        left.write_bytes(b"partial")
        write()
        assert not left.exists(), kind


WRITER = r"""
import fcntl, os, sys
import pandas as pd
from tradingview_scraper.data.lakehouse import Lakehouse
lh, mode, real_replace, real_flock = Lakehouse(sys.argv[1]), sys.argv[3], os.replace, fcntl.flock
def replace(src, dst):                      # mode stop: report, then wait before renaming the new bar file
    if mode == "stop" and "/ohlcv/" in str(dst):
        print("before-rename", flush=True)
        if sys.stdin.readline() != "go\n": os._exit(3)
    real_replace(src, dst)
def flock(fd, op):                          # mode probe: report whether the bar file's lock is taken, then wait for it
    if mode == "probe" and op == fcntl.LOCK_EX:
        try: real_flock(fd, op | fcntl.LOCK_NB); print("free", flush=True); return
        except BlockingIOError: print("blocked", flush=True)
    real_flock(fd, op)
os.replace, fcntl.flock = replace, flock
day, px = (("2021-01-01", 9.0) if mode == "stop" else ("2022-01-01", 5.0))
lh.write_ohlcv(sys.argv[2], pd.DataFrame({"ts": [pd.Timestamp(day, tz="UTC")], "open": px, "high": px, "low": px, "close": px, "volume": px}))
print("ok", flush=True)
"""


def test_a_live_writers_temp_file_is_never_removed(tmp_path, child):
    """Writer A is stopped just before its rename: it holds the lock and a complete temp file. Writer B is blocked on
    the lock (it says so before waiting): it must not judge A's temp file stale. A's rename goes through, then B's."""
    lh = Lakehouse(tmp_path)
    lh.write_ohlcv(SYM, bars(5, 1.0))
    path = lh.ohlcv_path(SYM)
    a = child(WRITER, tmp_path, SYM, "stop")
    a.expect("before-rename")
    live = stale_temp_files(path)
    assert len(live) == 1
    b = child(WRITER, tmp_path, SYM, "probe")
    b.expect("blocked")
    assert live[0].exists()
    a.send("go")
    a.expect("ok")
    b.expect("ok")
    assert (a.finish(), b.finish()) == (0, 0)
    assert lh.read_ohlcv(SYM)["close"].tolist() == [1.0] * 5 + [9.0, 5.0] and stale_temp_files(path) == []


# --- 6. stray files ---------------------------------------------------------------------------------------------------

def test_stray_files_are_skipped_and_reported_never_fatal(tmp_path):
    lh = Lakehouse(tmp_path)
    for s in ("SYNTH:AAA", "SYNTH:BBB"): lh.write_ohlcv(s, bars(300, 1.0).assign(close=np.linspace(1, 2, 300)))
    d = lh.ohlcv_path(SYM).parent
    for name in ("notes.txt", "README", "SYNTH.bbb.parquet", "no_dot.parquet"): (d / name).write_text("hello")
    (d / "SYNTH.CCC.parquet").mkdir()
    assert [str(s) for s in lh.symbols()] == ["SYNTH:AAA", "SYNTH:BBB"]
    assert sorted(p.name for p in lh.stray_files()) == sorted(["notes.txt", "README", "SYNTH.bbb.parquet", "no_dot.parquet", "SYNTH.CCC.parquet"])
    out = DataLoader(lh, MetadataSnapshot(lh.catalog(versions=True))).load()
    assert sorted(out.returns.columns) == ["SYNTH:AAA", "SYNTH:BBB"]


# --- 3. quarantine keeps the first detection -----------------------------------------------------------------------------

def test_quarantine_keeps_first_detection_and_tracks_last_seen(tmp_path):
    lh = Lakehouse(tmp_path)
    rec = lambda day: pd.DataFrame({"symbol": [SYM, SYM], "interval": "1d", "rule_id": ["toxic_move", "stale"], "rule_version": 1,
                                    "ts": pd.to_datetime(["2020-01-02", "2020-01-03"], utc=True),
                                    "detected_at": pd.Timestamp(day, tz="UTC")})
    assert lh.record_quarantine(rec("2024-01-01")) == 2
    assert lh.record_quarantine(rec("2024-02-01")) == 0
    q = lh.quarantined(SYM)
    assert (q["detected_at"] == pd.Timestamp("2024-01-01", tz="UTC")).all()
    assert (q["last_seen_at"] == pd.Timestamp("2024-02-01", tz="UTC")).all()
    lh.record_quarantine(rec("2024-03-01").iloc[[0]])
    q = lh.quarantined().set_index("rule_id")
    assert q.loc["toxic_move", "last_seen_at"] == pd.Timestamp("2024-03-01", tz="UTC")
    assert q.loc["stale", "last_seen_at"] == pd.Timestamp("2024-02-01", tz="UTC")
    assert (q["detected_at"] == pd.Timestamp("2024-01-01", tz="UTC")).all()
    lh.record_quarantine(rec("2024-01-15").iloc[[0]])        # a late report of an older run moves neither time back
    q = lh.quarantined().set_index("rule_id")
    assert (q.loc["toxic_move", "detected_at"], q.loc["toxic_move", "last_seen_at"]) == (pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-03-01", tz="UTC"))


def test_quarantine_files_from_before_last_seen_at_still_read(tmp_path):
    lh = Lakehouse(tmp_path)
    old = pd.DataFrame({"symbol": [SYM], "interval": ["1d"], "ts": [pd.Timestamp("2020-01-02", tz="UTC")], "rule_id": ["r"],
                        "rule_version": [1], "detected_at": [pd.Timestamp("2023-05-05", tz="UTC")]})
    lakehouse_mod.atomic_write_parquet(lh._quarantine_path(SYM, "1d"), old)
    assert lh.quarantined(SYM)["last_seen_at"].tolist() == [pd.Timestamp("2023-05-05", tz="UTC")]
    lh.record_quarantine(old.assign(detected_at=pd.Timestamp("2024-01-01", tz="UTC")))
    q = lh.quarantined(SYM)
    assert (q["detected_at"].iloc[0], q["last_seen_at"].iloc[0]) == (pd.Timestamp("2023-05-05", tz="UTC"), pd.Timestamp("2024-01-01", tz="UTC"))


# --- 1. re-seeding the catalog never locks a lakehouse out ----------------------------------------------------------------

def test_identical_catalog_records_at_an_older_as_of_are_a_no_op(tmp_path):
    lh = Lakehouse(tmp_path)
    rec = pd.DataFrame({"symbol": [SYM, "SYNTH:BBB"], "exchange": "SYNTH", "type": "stock", "tick_size": [0.01, np.nan],
                        "sector": ["Technology", None]})
    assert lh.upsert_catalog(rec, as_of="2026-01-01") == 2
    before = lh._catalog_path().read_bytes()
    assert lh.upsert_catalog(rec, as_of="1990-01-01") == 0                        # a re-seed of the same facts
    assert lh.upsert_catalog(rec.iloc[[1, 0]], as_of="1990-01-01") == 0
    assert lh._catalog_path().read_bytes() == before
    with pytest.raises(ValidationError, match="after its current version"):       # a changed fact dated before: refused
        lh.upsert_catalog(rec.assign(sector="Finance"), as_of="1990-01-01")
    assert lh._catalog_path().read_bytes() == before


def test_revision_summary_is_what_a_data_health_table_needs(tmp_path):
    lh = Lakehouse(tmp_path)
    lh.write_ohlcv(SYM, bars(10, 100.0))
    lh.write_ohlcv("SYNTH:BBB", bars(10, 50.0))
    lh.write_ohlcv(SYM, bars(10, 100.0).iloc[[2, 6, 9]].assign(close=[110.0, 95.0, 101.0]))   # two history bars, the live one
    lh.write_ohlcv("SYNTH:BBB", bars(10, 50.0).iloc[[9]].assign(close=51.0))                 # only the live bar
    s = lh.revision_summary().set_index("symbol")
    assert s.loc[SYM, ["history_revised", "live_revised"]].tolist() == [2, 1]
    assert s.loc["SYNTH:BBB", ["history_revised", "live_revised"]].tolist() == [0, 1] and pd.isna(s.loc["SYNTH:BBB", "first_ts"])
    assert (s.loc[SYM, "first_ts"], s.loc[SYM, "last_ts"]) == (pd.Timestamp("2020-01-03", tz="UTC"), pd.Timestamp("2020-01-07", tz="UTC"))
    assert s.loc[SYM, "max_close_change"] == pytest.approx(0.10)
    assert lh.revision_summary("1w").empty
