"""Ledger append cost stays flat as the ledger grows (O(1) append), against a naive append that
re-reads the whole file to find the previous hash, measured in the same run."""
import json
import os
import tempfile
import time
from pathlib import Path

from _common import write_results
from tradingview_scraper.ledger import AuditLedger, canonical_json, record_hash


def naive_append(path: Path, data: dict):
    "Baseline: read every line to find the chain head, then append (what an O(n) ledger does)."
    lines = path.read_text().splitlines()
    last = json.loads(lines[-1])
    rec = {"seq": last["seq"] + 1, "ts": "x", "kind": "event", "data": data, "prev": last["hash"]}
    rec["hash"] = record_hash(rec)
    with open(path, "a") as f: f.write(canonical_json(rec) + "\n")


def per_append_us(fn, n=200) -> float:
    t0 = time.perf_counter()
    for i in range(n): fn(i)
    return (time.perf_counter() - t0) / n * 1e6


def main():
    rows = {}
    tmp = Path(tempfile.mkdtemp())
    for size in (1_000, 20_000, 100_000):
        path = tmp / f"audit_{size}.jsonl"
        led = AuditLedger(path, durable=False)
        led.genesis("bench", "development", "0" * 64)
        payload = {"step": "select", "params": {"floor": 15}, "outputs": {"winners": "ab" * 32}}
        for i in range(size - 1): led.append("event", payload)
        ours = per_append_us(lambda i: led.append("event", payload))
        naive = per_append_us(lambda i: naive_append(path, payload), n=20)
        rows[size] = {"append_us": round(ours, 1), "naive_append_us": round(naive, 1), "speedup": round(naive / ours, 1),
                      "file_mb": round(os.path.getsize(path) / 2**20, 1)}
        print(f"{size:>7} records: append {ours:8.1f} µs   naive re-read {naive:10.1f} µs   ratio {naive / ours:7.1f}x")
    durable = AuditLedger(tmp / "durable.jsonl"); durable.genesis("bench", "development", "0" * 64)
    fsync_us = per_append_us(lambda i: durable.append("event", {"i": i}))
    print(f"durable append (fsync per record): {fsync_us:.0f} µs")
    growth = rows[100_000]["append_us"] / rows[1_000]["append_us"]
    print(f"append cost 100k vs 1k records: {growth:.2f}x (O(1) append keeps this near 1)")
    write_results("ledger", {"by_size": rows, "durable_append_us": round(fsync_us, 1), "growth_100k_vs_1k": round(growth, 2)})


if __name__ == "__main__":
    main()
