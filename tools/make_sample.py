"""Regenerate the shipped sample data (tradingview_scraper/sample/) from its source.

Source: the 20-stock S&P 500 daily adjusted-close panel (1990-01-02 .. 2022-12-28) and the S&P 500 index
series that skfolio ships inside its wheel (skfolio.datasets.load_sp500_dataset / load_sp500_index,
BSD-3-Clause). skfolio is a dev dependency; this script runs offline.

    .venv/bin/python tools/make_sample.py
"""
import hashlib
import io
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import skfolio
from skfolio.datasets import load_sp500_dataset, load_sp500_index

OUT = Path(__file__).resolve().parents[1] / "tradingview_scraper" / "sample"


def main():
    prices = load_sp500_dataset().join(load_sp500_index(), how="left")
    prices.index = pd.DatetimeIndex(prices.index, name="date").tz_localize("UTC").as_unit("ns")
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(prices.reset_index(), preserve_index=False), buf, compression="zstd",
                   compression_level=19)
    data = buf.getvalue()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "sp500.parquet").write_bytes(data)
    prov = {
        "file": "sp500.parquet",
        "sha256": hashlib.sha256(data).hexdigest(),
        "content": "daily adjusted close prices of 20 S&P 500 constituents and the S&P 500 index",
        "columns": list(prices.columns),
        "rows": len(prices),
        "first": str(prices.index[0].date()), "last": str(prices.index[-1].date()),
        "source": f"skfolio {skfolio.__version__}: skfolio.datasets.load_sp500_dataset() and load_sp500_index()",
        "license": "BSD-3-Clause (skfolio); the source states the data is for testing and examples only, "
                   "stale, and not for investment or commercial use",
        "regenerate": "python tools/make_sample.py",
    }
    (OUT / "PROVENANCE.json").write_text(json.dumps(prov, indent=2) + "\n")
    print(f"wrote {OUT / 'sp500.parquet'} ({len(data) / 1024:.0f} KiB, {len(prices)} rows x {prices.shape[1]} series)")


if __name__ == "__main__":
    main()
