"""The audit ledger under real concurrent processes, and `tvs ledger verify` on tampered files."""
import json
import subprocess
import sys

import numpy as np

from tradingview_scraper.ledger import AuditLedger

APPENDER = """
import sys
from tradingview_scraper.ledger import AuditLedger
led = AuditLedger(sys.argv[1])  # durable: fsync per record, as in real runs
sys.stdin.readline()                      # start both writers together
for i in range(int(sys.argv[3])): led.append("event", {"writer": sys.argv[2], "i": i})
"""


def test_two_processes_500_each_leave_one_chain(tmp_path, tvs):
    path = tmp_path / "audit.jsonl"
    AuditLedger(path).genesis("concurrency", "development", "0" * 64)
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, str(path), w, "500"], stdin=subprocess.PIPE, text=True)
             for w in ("a", "b")]
    for p in procs: p.stdin.write("go\n"); p.stdin.flush()
    for p in procs: assert p.wait(timeout=300) == 0
    v = AuditLedger(path).verify()
    assert v.ok and v.records == 1001, v
    recs = AuditLedger(path).records()
    events = [r for r in recs if r["kind"] == "event"]
    assert len(events) == 1000
    for w in ("a", "b"):  # each writer's records are all there, in its own order
        assert [r["data"]["i"] for r in events if r["data"]["writer"] == w] == list(range(500))
    assert [r["seq"] for r in recs] == list(range(1001))
    writers = [r["data"]["writer"] for r in events]
    assert sum(a != b for a, b in zip(writers, writers[1:])) > 1, "writers never interleaved: the test proves nothing"
    r = tvs("ledger", "verify", str(tmp_path))
    assert r.returncode == 0 and "ok: 1001 records" in r.stdout


def test_verify_names_the_record_with_a_flipped_byte(tmp_path, tvs):
    path = tmp_path / "audit.jsonl"
    led = AuditLedger(path, durable=False)
    led.genesis("tamper", "canary", "ab" * 32)
    for i in range(40):
        with led.step(f"step{i}", params={"i": i, "x": 0.5 * i}) as out: out["h"] = "cd" * 32
    good = path.read_bytes()
    lines = good.split(b"\n")[:-1]
    starts = np.cumsum([0] + [len(l) + 1 for l in lines])
    rng = np.random.default_rng(11)
    for rec in rng.choice(len(lines), 8, replace=False):
        line_start, line_len = starts[rec], len(lines[rec])
        pos = int(line_start + rng.integers(0, line_len))  # a byte inside the record (not its newline)
        bad = bytearray(good); bad[pos] ^= 1 << int(rng.integers(0, 7))
        path.write_bytes(bytes(bad))
        r = tvs("ledger", "verify", str(tmp_path))
        assert r.returncode == 1, (rec, r.stdout, r.stderr)
        assert f"BROKEN at record {rec} " in r.stdout, (rec, pos, r.stdout)
    path.write_bytes(good)
    assert tvs("ledger", "verify", str(path)).returncode == 0


def test_verify_refuses_hostile_argument(tvs):
    r = tvs("ledger", "verify", "runs/\x1b[2Jx")
    assert r.returncode == 2 and r.stderr.startswith("tvs: error:")
