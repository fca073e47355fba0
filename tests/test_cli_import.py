"""`tvs lakehouse import` over the real import: a generated CSV is stored (exit 0) with its rejected rows named, a file with
nothing storable exits 1, a refused file exits 2 and writes nothing; a re-import stores nothing new and still succeeds."""
import pandas as pd
import pytest

from helpers import tree_digest
from tradingview_scraper.data.lakehouse import Lakehouse


def long_csv(path, n=30, bad_rows=(), text_rows=()):
    days = pd.date_range("2024-01-01", periods=n, freq="D")
    rows = [{"symbol": s, "ts": f"{d:%Y-%m-%d}", "open": 10 + i, "high": 11 + i, "low": 9 + i, "close": 10.5 + i, "volume": 1000}
            for s in ("NASDAQ:AAA", "NYSE:BBB") for i, d in enumerate(days)]
    for k in bad_rows: rows[k]["symbol"] = "NOT A SYMBOL\x1b[2J"       # refused by the import, row by row
    for k in text_rows: rows[k]["close"] = "n/a"                         # quarantined by the contracts
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_import_stores_and_names_rejected_rows(tmp_path, tvs):
    src, lake = long_csv(tmp_path / "prices.csv", bad_rows=(3, 40), text_rows=(7,)), tmp_path / "lake"
    r = tvs("lakehouse", "import", str(src), "--root", str(lake), "--max-rejected", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    first = r.stdout.splitlines()[0]
    assert first.startswith(f"57 bars of 2 symbols in {lake} (57 added") and "2 of 60 rows rejected, 1 bars quarantined" in first, first
    assert "\x1b" not in r.stdout and "NOT A SYMBOL\\x1b[2J" in r.stdout, r.stdout             # the hostile symbol, escaped
    assert "rejected rows:" in r.stdout and "… 1 more rejected rows" in r.stdout, r.stdout
    assert r.stdout.splitlines()[-1].startswith(f"import report: {lake / 'imports'}")
    assert sorted(map(str, Lakehouse(lake).symbols("1d"))) == ["NASDAQ:AAA", "NYSE:BBB"]
    again = tvs("lakehouse", "import", str(src), "--root", str(lake))
    assert again.returncode == 0 and "(0 added, 0 replaced, 57 unchanged)" in again.stdout, again.stdout


def test_nothing_storable_exits_1(tmp_path, tvs):
    src, lake = long_csv(tmp_path / "prices.csv", n=2, bad_rows=(0, 1), text_rows=(2, 3)), tmp_path / "lake"
    r = tvs("lakehouse", "import", str(src), "--root", str(lake))
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr[-2000:])
    assert r.stdout.startswith("0 bars of") and "2 of 4 rows rejected, 2 bars quarantined" in r.stdout, r.stdout


@pytest.mark.parametrize("content, args", [
    ("just,some\ncolumns,here\n", []),                   # neither long nor wide prices
    (None, []),                                          # no such file
    ("symbol,ts,close\nNASDAQ:AAA,2024-01-01,1\n", ["--tz", "Mars/Olympus"]),
    ("symbol,ts,close\nNASDAQ:AAA,2024-01-01,1\n", ["--exchange", "bad exchange!"]),
])
def test_refused_input_writes_nothing(tmp_path, tvs, content, args):
    src = tmp_path / "in.csv"
    if content is not None: src.write_text(content)
    lake = tmp_path / "lake"
    before = tree_digest(tmp_path)
    r = tvs("lakehouse", "import", str(src), "--root", str(lake), *args)
    assert r.returncode == 2 and r.stderr.startswith("tvs: error:") and "Traceback" not in r.stderr, (r.returncode, r.stderr[-2000:])
    assert len(r.stderr) < 2000 and tree_digest(tmp_path) == before and not lake.exists()
