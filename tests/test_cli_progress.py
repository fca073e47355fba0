"""Progress a person sees: `tvs run` shows each step of the flow its papermill kernel executes — one line per step with
its time in CI or a pipe, a live line on a terminal — and the follower that carries the kernel's steps to the terminal
shows exactly the complete events another process appended, in order, never half of one."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tradingview_scraper.orchestration.flow import FLOW
from tradingview_scraper.orchestration.progress import PROGRESS_FILE, ProgressFollower, ProgressLog

NAMES = [s.name for s in FLOW]
BIN = Path(sys.executable).parent
LINE = re.compile(r"\[(\d+)/(\d+)\] (\w+) … (\d+\.\d s|\d+ min \d+ s|skipped \(unchanged\)|failed after .+)")


def step_lines(stderr: str) -> list[tuple[int, int, str]]:
    return [(int(m[1]), int(m[2]), m[3]) for m in map(LINE.fullmatch, stderr.splitlines()) if m]


def test_ci_shows_exactly_one_line_per_step(tmp_path, tvs):
    r = tvs("run", "--profile", "development", "--run-id", "ci", "--runs-root", str(tmp_path / "runs"),
            "--lakehouse", str(tmp_path / "lake"), env={"CI": "true"})
    assert r.returncode == 0, r.stderr[-3000:]
    n = len(NAMES)
    assert step_lines(r.stderr) == [(i, n, name) for i, name in enumerate(NAMES, 1)], r.stderr
    assert len([l for l in r.stderr.splitlines() if l.startswith("[")]) == n      # nothing else: no bars, no start lines
    assert "\r" not in r.stderr and "\x1b" not in r.stderr
    events = (tmp_path / "runs" / "ci" / "logs" / PROGRESS_FILE).read_text().splitlines()
    assert sum('"event": "end"' in e for e in events) == n                       # the record the terminal was fed from


def test_a_terminal_sees_each_step_start_and_end(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TVS_") and k != "CI"}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    r = subprocess.run([str(BIN / "tvs"), "run", "--profile", "development", "--run-id", "tty", "--runs-root", str(tmp_path / "runs"),
                        "--lakehouse", str(tmp_path / "lake"), "--progress", "terminal"], capture_output=True, env=env, timeout=300)
    err = r.stderr.decode()                             # bytes: text mode would turn each carriage return into a newline
    assert r.returncode == 0, err[-3000:]
    n = len(NAMES)
    for i, name in enumerate(NAMES, 1):
        start = f"\r[{i}/{n}] {name} …"
        assert start + "\r" in err, err                                  # shown at the start, completed in place
        if name != "backtest": assert start + start + " " in err, err    # nothing in between
    assert "backtest: allocators:" in err and "0/3 [" in err, err       # the long step's bar, drawn when it opens (no refresh timing)
    ends = [seg.split("\x1b[K")[0] for seg in err.split("\r") if seg.endswith("\x1b[K\n")]
    assert [LINE.fullmatch(e)[3] for e in ends] == NAMES, ends


def test_progress_off_and_a_resumed_run_show_nothing_old(tmp_path, tvs):
    args = ["run", "--profile", "development", "--run-id", "quiet", "--runs-root", str(tmp_path / "runs"), "--lakehouse", str(tmp_path / "lake")]
    r = tvs(*args, "--progress", "off")
    assert r.returncode == 0 and step_lines(r.stderr) == [], r.stderr[-2000:]
    r = tvs(*args, "--progress", "lines")          # succeeded and unchanged: nothing runs, and the earlier attempt is not replayed
    assert r.returncode == 0 and step_lines(r.stderr) == [], r.stderr[-2000:]


WRITER = """
import sys
from tradingview_scraper.orchestration.progress import ProgressLog
log = ProgressLog(sys.argv[1])
for line in sys.stdin:
    cmd = line.strip()
    if cmd.startswith("event "):
        i, step = cmd.split()[1:]
        log({"event": "end", "i": int(i), "n": 3, "step": step, "status": "succeeded", "seconds": 0.5})
    elif cmd == "half":
        with open(sys.argv[1], "ab") as f: f.write(b'{"event": "end", "i": 3, "n": 3, "st')
    elif cmd == "rest":
        with open(sys.argv[1], "ab") as f: f.write(b'ep": "report", "status": "failed", "seconds": 2}\\n')
    print("wrote", flush=True)
"""


def test_the_follower_shows_what_another_process_appended(tmp_path, child):
    path = tmp_path / "logs" / PROGRESS_FILE
    path.parent.mkdir()
    ProgressLog(path)({"event": "end", "i": 1, "n": 1, "step": "old_attempt", "status": "succeeded", "seconds": 1})
    shown = []
    follower = ProgressFollower(path, shown.append)
    writer = child(WRITER, path)
    for i, step in ((1, "ingest"), (2, "backtest")):
        writer.send(f"event {i} {step}")
        writer.expect("wrote")
        follower.poll()
        assert [e["step"] for e in shown] == ["ingest", "backtest"][:i]
    writer.send("half")
    writer.expect("wrote")
    follower.poll()
    assert len(shown) == 2                              # half an event is not shown
    writer.send("rest")
    writer.expect("wrote")
    follower.poll()
    assert [(e["step"], e["status"]) for e in shown] == [("ingest", "succeeded"), ("backtest", "succeeded"), ("report", "failed")]
    assert writer.finish() == 0


@pytest.mark.parametrize("junk", [b"\x00" * 10_000 + b"\n", b"x" * (2 << 20), b'{"event": "end", "step": "' + b"a" * 5000 + b'"}\n'])
def test_the_follower_passes_over_junk_with_bounded_reads(tmp_path, junk):
    path = tmp_path / PROGRESS_FILE
    shown = []
    follower = ProgressFollower(path, shown.append, from_end=False)
    path.write_bytes(junk)
    ProgressLog(path)({"event": "start", "i": 1, "n": 1, "step": "after_junk"})
    reads = []
    while (n := follower.poll()): reads.append(n)
    assert max(reads) <= ProgressFollower.MAX_READ
    expected = [] if not junk.endswith(b"\n") else ["after_junk"]     # an unterminated runaway line swallows what follows it
    assert [e["step"] for e in shown] == expected, shown
