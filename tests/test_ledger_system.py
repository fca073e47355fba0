"""The audit ledger under real concurrent processes, and `tvs ledger verify` on tampered files."""
import numpy as np

from tradingview_scraper.ledger import AuditLedger

# A writer is a real process that appends through `AuditLedger.append` when the test tells it to, so the test decides
# the interleaving. Two hooks (installed in the writer only) let the test pin one writer *inside* the lock:
#   hold  — the next record is written half, then the writer reports `holding` and waits for `go` (lock still held);
#   probe — the next append first tries the lock without blocking and reports `blocked` (or `free`), then waits for it.
WRITER = r"""
import fcntl, os, sys
from tradingview_scraper.ledger import AuditLedger
led, me = AuditLedger(sys.argv[1]), sys.argv[2]       # durable: fsync per record, as in real runs
real_write, real_flock, armed = os.write, fcntl.flock, set()

def say(word): print(word, flush=True)

def write(fd, data):
    if "hold" not in armed: return real_write(fd, data)
    armed.discard("hold")
    n = real_write(fd, bytes(data[:len(data) // 2]))   # half a record is on disk, the lock is held
    say("holding")
    if sys.stdin.readline() != "go\n": os._exit(3)
    return n                                            # append's loop writes the rest

def flock(fd, op):
    if "probe" in armed and op == fcntl.LOCK_EX:
        armed.discard("probe")
        try: real_flock(fd, op | fcntl.LOCK_NB); say("free"); return
        except BlockingIOError: say("blocked")
    real_flock(fd, op)

os.write, fcntl.flock = write, flock
i = 0
while line := sys.stdin.readline():
    cmd, *arg = line.split()
    armed.update({"hold", "probe"} & {cmd})
    for _ in range(int(arg[0]) if arg else 1):
        rec = led.append("event", {"writer": me, "i": i})
        i += 1
    say(f"ok {rec['seq']}")
"""


def test_two_processes_500_each_leave_one_chain(tmp_path, tvs, child):
    """Two writer processes, 500 appends each, in three phases whose interleaving the test forces:
    strict turns, appends that arrive while the other writer is pinned mid-record inside the lock, and free contention."""
    path = tmp_path / "audit.jsonl"
    AuditLedger(path).genesis("concurrency", "development", "0" * 64)
    a, b = child(WRITER, path, "a"), child(WRITER, path, "b")
    turns, pinned, free = 100, 10, 380
    try:
        for _ in range(turns):                       # phase 1: a, b, a, b, ...
            for w in (a, b):
                w.send("one")
                w.expect("ok")
        for k in range(pinned):                      # phase 2: the holder is mid-record when the other one asks
            holder, waiter = (a, b) if k % 2 == 0 else (b, a)
            holder.send("hold")
            holder.expect("holding")
            waiter.send("probe")
            waiter.expect("blocked")                 # the lock was held: the waiter could not get in
            holder.send("go")
            first = int(holder.expect("ok"))
            assert int(waiter.expect("ok")) == first + 1, "the waiter's record must follow the one it waited for"
        for w in (a, b): w.send(f"burst {free}")     # phase 3: both append as fast as they can
        for w in (a, b): w.expect("ok")
    finally:
        for w in (a, b): w.p.stdin.close()          # end of input: a writer pinned inside the lock gives it up and exits
        codes = [w.finish() for w in (a, b)]
    assert codes == [0, 0], codes
    n = 2 * (turns + pinned + free)
    v = AuditLedger(path).verify()
    assert v.ok and v.records == n + 1, v
    recs = AuditLedger(path).records()
    assert [r["seq"] for r in recs] == list(range(n + 1))
    events = [r for r in recs if r["kind"] == "event"]
    for w in ("a", "b"):  # each writer's records are all there, in its own order
        assert [r["data"]["i"] for r in events if r["data"]["writer"] == w] == list(range(n // 2))
    writers = "".join(r["data"]["writer"] for r in events)
    assert writers[:2 * turns] == "ab" * turns
    assert writers[2 * turns:2 * (turns + pinned)] == "abba" * (pinned // 2)   # holder first, then the one that waited
    r = tvs("ledger", "verify", str(tmp_path))
    assert r.returncode == 0 and f"ok: {n + 1} records" in r.stdout


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
