"""Small helpers shared by the system tests (importable: pytest puts tests/ on sys.path)."""
import hashlib
import os
from pathlib import Path

from tradingview_scraper.pipelines.features import FeaturePanel


def tree_digest(root: Path) -> dict:
    "Every entry under `root` (links not followed): its kind and, for files, a hash of the bytes."
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = ("link", os.readlink(p)) if p.is_symlink() else \
                ("dir",) if p.is_dir() else ("file", hashlib.sha256(p.read_bytes()).hexdigest())
    return out


# Workers for the notebooks' multiprocessing demonstrations (03_ledger, 10_lakehouse). They live here, outside the
# package, so the wheel carries no test code; a spawned child imports this module by name, which works because
# `multiprocessing` hands the parent's `sys.path` (with `tests/` on it) to every spawned process.

def append_many(path: str, n: int, tag: str):
    "Append `n` event records tagged `tag` to the ledger at `path`."
    from tradingview_scraper.ledger import AuditLedger
    led = AuditLedger(path, durable=False)
    for i in range(n):
        led.append("event", {"writer": tag, "i": i})


def upsert_worker(root: str, symbol: str, start: str, n: int, offset: float):
    "Upsert `n` daily bars of `symbol` starting at `start` into the lakehouse at `root`."
    import numpy as np
    import pandas as pd
    from tradingview_scraper.data.lakehouse import Lakehouse
    ts = pd.date_range(start, periods=n, freq="D", tz="UTC")
    px = 100.0 + offset + np.arange(n, dtype=float)
    bars = pd.DataFrame({"ts": ts, "open": px, "high": px + 1, "low": px - 1, "close": px, "volume": 1.0})
    Lakehouse(root).write_ohlcv(symbol, bars)


class CountingPanel(FeaturePanel):
    "A panel that counts the views it served."
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.served = 0

    def at(self, *args, **kwargs):
        r = super().at(*args, **kwargs)
        self.served += r is not None
        return r
