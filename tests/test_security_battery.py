"""`ensure_safe_path` against a generated battery of hostile paths (none of them in the notebook)."""
import itertools
import os
from pathlib import Path

import pytest

from helpers import tree_digest
from tradingview_scraper.core import UnsafePathError
from tradingview_scraper.security import ensure_safe_path, safe_component

SEPARATOR_LOOKALIKES = ["\u2215", "\u2044", "\uff0f", "\u29f8", "\uff3c", "\ufe68", "\u2216"]
DOT_LOOKALIKES = ["\u2024", "\uff0e", "\ufe52"]
TRAVERSALS = ["..", "../..", "a/../..", "a/b/../../..", "./..", "a/./../..", "..//..", "x/../../../../../../etc/passwd"]
ABSOLUTES = ["/", "/etc/passwd", "//server/share", "/tmp/../etc", "C:/Windows", "c:\\windows", "~/.ssh/id_rsa", "~root"]


def hostile_paths():
    yield from TRAVERSALS
    yield from ABSOLUTES
    for t in TRAVERSALS[:4]:                  # backslash and mixed separators
        yield t.replace("/", "\\")
        yield "ok/" + t.replace("/", "\\")
    for s, base in itertools.product(SEPARATOR_LOOKALIKES, ["..{s}etc", "a{s}..{s}..", "{s}etc{s}passwd"]):
        yield base.format(s=s)
    for d in DOT_LOOKALIKES:
        yield f"{d}{d}/etc"; yield f"a/{d}{d}"
    for c in ["\x00", "\n", "\r", "\t", "\x1b", "\x7f", "\u200b", "\u202e", "\ufeff"]:
        yield f"runs/a{c}b"
    yield from ["", ".", "...", "a/.", "a/...", " ", "a/ b", "a/b ", "x" * 256, "a/" + "é" * 200, "a/" * 2100]


@pytest.mark.parametrize("path", list(hostile_paths()), ids=lambda p: repr(p)[:40])
def test_hostile_path_refused(tmp_path, path):
    with pytest.raises(UnsafePathError, match="expected"):
        ensure_safe_path(path, tmp_path)


def test_symlink_escapes_are_refused_at_any_depth(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "a" / "b").mkdir(parents=True); outside.mkdir()
    (root / "a" / "b" / "up").symlink_to("../../..", target_is_directory=True)      # relative escape
    (root / "a" / "abs").symlink_to(outside, target_is_directory=True)              # absolute escape
    (root / "loop1").symlink_to(root / "loop2"); (root / "loop2").symlink_to(root / "loop1")
    (root / "file_link").symlink_to("/etc/hostname")
    for p in ["a/b/up/outside/x", "a/abs", "a/abs/deeper/x.parquet", "file_link"]:
        with pytest.raises(UnsafePathError):
            ensure_safe_path(p, root)
    with pytest.raises((UnsafePathError, RuntimeError, OSError)):
        ensure_safe_path("loop1/x", root)


@pytest.mark.parametrize("path", ["a", "a/b/c.parquet", "runs/20260101T000000Z_canary_ab12/audit.jsonl",
                                  "lakehouse/ohlcv/1d/BINANCE.BTCUSDT_2EP.parquet", "données/été", "a..b", ".env_like"])
def test_safe_paths_accepted(tmp_path, path):
    got = ensure_safe_path(path, tmp_path)
    assert got.is_relative_to(tmp_path.resolve()) and got == (tmp_path / path).resolve()


def test_nothing_is_created_or_touched(tmp_path):
    before = sorted(os.listdir(tmp_path))
    for p in hostile_paths():
        with pytest.raises(UnsafePathError): ensure_safe_path(p, tmp_path)
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.parametrize("kind,name", [("run_id", "../../x"), ("run_id", "a b"), ("run_id", "-rf"), ("run_id", "x\u2215y"),
                                       ("profile", "PROD"), ("profile", "p/../q"), ("name", "con\x00"), ("symbol", "X:../Y")])
def test_hostile_components(kind, name):
    with pytest.raises(UnsafePathError):
        safe_component(name, kind)


# --- symlinks below a root, and paths too long for the OS (Step 7b) ---------------------------------------------------

import hashlib  # noqa: E402

import pandas as pd  # noqa: E402

from tradingview_scraper.profile import load_profile  # noqa: E402
from tradingview_scraper.data.lakehouse import Lakehouse  # noqa: E402
from tradingview_scraper.orchestration.runner import OrchestrationRunner, Step, list_runs, read_status  # noqa: E402
from tradingview_scraper.security import PATH_MAX, validate_user_path  # noqa: E402


def bars(n=5, start="2024-01-01", px=100.0):
    ts = pd.date_range(start, periods=n, freq="D", tz="UTC")
    return pd.DataFrame({"ts": ts, "open": px, "high": px, "low": px, "close": px, "volume": 1.0})




def test_a_symbol_file_linked_to_another_symbols_is_refused(tmp_path):
    lh = Lakehouse(tmp_path / "lake")
    lh.write_ohlcv("NASDAQ:BBB", bars(px=200.0))
    lh.ohlcv_path("NASDAQ:BBB").parent.joinpath("NASDAQ.AAA.parquet").symlink_to(lh.ohlcv_path("NASDAQ:BBB"))
    before = tree_digest(tmp_path)
    with pytest.raises(UnsafePathError, match="is a symlink"):
        lh.write_ohlcv("NASDAQ:AAA", bars(px=1.0))
    with pytest.raises(UnsafePathError, match="is a symlink"):
        lh.read_ohlcv("NASDAQ:AAA")
    assert tree_digest(tmp_path) == before                                  # BBB's bars untouched, nothing written
    assert lh.read_ohlcv("NASDAQ:BBB")["close"].eq(200.0).all()


def test_a_linked_directory_inside_the_lakehouse_is_refused(tmp_path):
    lh = Lakehouse(tmp_path / "lake")
    lh.write_ohlcv("NASDAQ:BBB", bars())
    interval_dir = lh.ohlcv_path("NASDAQ:BBB").parent
    interval_dir.rename(tmp_path / "elsewhere")
    interval_dir.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    before = tree_digest(tmp_path)
    with pytest.raises(UnsafePathError, match="'ohlcv/interval=1d' is a symlink"):
        lh.write_ohlcv("NASDAQ:CCC", bars())
    assert tree_digest(tmp_path) == before


def test_the_root_itself_may_be_a_symlink(tmp_path):
    (tmp_path / "big").mkdir()
    (tmp_path / "data").symlink_to(tmp_path / "big", target_is_directory=True)        # data -> /mnt/big/data
    lh = Lakehouse(tmp_path / "data")
    lh.write_ohlcv("NASDAQ:AAA", bars())
    assert lh.root == (tmp_path / "big").resolve()
    assert (tmp_path / "big" / "ohlcv" / "interval=1d" / "NASDAQ.AAA.parquet").is_file()
    assert len(lh.read_ohlcv("NASDAQ:AAA")) == 5


def _runner(root, run_id, mark):
    return OrchestrationRunner(load_profile("development", env={}), [Step("a", lambda ctx: {"x": {"mark": mark}})],
                               runs_root=root, run_id=run_id, executor="serial")


def test_a_run_id_linked_to_another_run_is_refused(tmp_path):
    root = tmp_path / "runs"
    _runner(root, "r1", 1).run()
    (root / "r2").symlink_to(root / "r1", target_is_directory=True)
    before = tree_digest(root)
    with pytest.raises(UnsafePathError, match="'r2' is a symlink"):
        _runner(root, "r2", 2).run()
    with pytest.raises(UnsafePathError, match="'r2' is a symlink"):
        read_status(ensure_safe_path("r2", root))
    assert tree_digest(root) == before                                      # r1 was not resumed, its status not rewritten
    assert read_status(root / "r1")["status"] == "succeeded"


def test_runs_list_does_not_read_a_status_linked_out_of_the_root(tmp_path):
    root, outside = tmp_path / "runs", tmp_path / "outside"
    _runner(root, "r1", 1).run()
    outside.mkdir()
    (outside / "status.json").write_text('{"run_id": "SECRET-OUTSIDE", "status": "succeeded"}')
    (root / "r1" / "status.json").unlink()
    (root / "r1" / "status.json").symlink_to(outside / "status.json")
    df = list_runs(root)
    assert "SECRET-OUTSIDE" not in df.to_string()
    assert df.loc[df["run_id"] == "r1", "status"].str.startswith("unreadable").all() and "is a symlink" in df["status"].iloc[0]


def test_too_long_for_the_os_is_refused_before_any_filesystem_call(tmp_path, monkeypatch):
    deep = "/".join(["a" * 200] * 20 + ["a" * 70])                            # 4,090 characters, each component legal
    monkeypatch.chdir(tmp_path)
    for path in [deep, str(tmp_path / ("é" * 150)), "/" + "b" * 300]:
        with pytest.raises(UnsafePathError, match="expected") as e:
            validate_user_path(path, "runs root")
        assert len(str(e.value)) < 500                                      # a bounded prefix of the path, not all of it
    root = tmp_path / "/".join(["r" * 250] * 15)                            # a legal root, with little room left
    assert len(os.fsencode(str(root))) < PATH_MAX
    with pytest.raises(UnsafePathError, match="the OS limit"):
        ensure_safe_path(["x" * 200, "y" * 200], root)
    assert os.listdir(tmp_path) == []


def test_hot_path_makes_one_lstat_per_component_and_no_resolve_below_the_root(tmp_path):
    (tmp_path / "ohlcv" / "interval=1d").mkdir(parents=True)
    calls, real = [], os.lstat
    os.lstat = lambda p, *a, **k: calls.append(os.fspath(p)) or real(p, *a, **k)
    try: got = ensure_safe_path(["ohlcv", "interval=1d", "NASDAQ.AAA.parquet"], tmp_path)
    finally: os.lstat = real
    base = str(tmp_path.resolve())
    assert got == Path(base) / "ohlcv" / "interval=1d" / "NASDAQ.AAA.parquet"
    below = [c for c in calls if c.startswith(base + "/")]
    assert below == [base + "/ohlcv", base + "/ohlcv/interval=1d", str(got)]      # each component once: no second resolve
