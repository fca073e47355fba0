"""`ensure_safe_path` against a generated battery of hostile paths (none of them in the notebook)."""
import itertools
import os
from pathlib import Path

import pytest

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
