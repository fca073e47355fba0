"""Shared fixtures for the system tests: run the real `tvs` entry point and the real interpreter, and drive real
child processes step by step over pipes (`child`), so concurrency tests force their interleavings."""
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HANG_GUARD_S = 300   # a guard against a hung child only: every wait on a child ends on an event it sends, never on a clock


def run(args, env=None, **kw) -> subprocess.CompletedProcess:
    "Run a command with the test interpreter's bin/ first on PATH; never inherits TVS_* settings."
    base = {k: v for k, v in os.environ.items() if not k.startswith("TVS_")}
    base["PATH"] = f"{BIN}{os.pathsep}{base.get('PATH', '')}"
    return subprocess.run(args, capture_output=True, text=True, env={**base, **(env or {})}, timeout=300, **kw)


@pytest.fixture
def tvs():
    "Call the installed `tvs` console script."
    return lambda *args, env=None: run([str(BIN / "tvs"), *args], env=env)


@pytest.fixture
def py():
    "Run a Python snippet in a fresh interpreter."
    return lambda code, env=None: run([sys.executable, "-c", code], env=env)


class Child:
    """A real Python process the test drives line by line over pipes, so the test (not the OS scheduler) decides
    what happens when: `send` a command, `expect` the child's next line. Reads wait on the pipe, with a hang guard."""
    def __init__(self, code:str, *args, env=None):
        base = {k: v for k, v in os.environ.items() if not k.startswith("TVS_")}
        self.p = subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, bufsize=0, env={**base, **(env or {})})
        self.buf = b""

    def send(self, line:str) -> None:
        self.p.stdin.write(line.encode() + b"\n")

    def expect(self, word:str) -> str:
        "The child's next line, which must start with `word`; returns the rest of the line."
        fd = self.p.stdout.fileno()
        while b"\n" not in self.buf:
            assert select.select([fd], [], [], HANG_GUARD_S)[0], f"child silent for {HANG_GUARD_S}s while expecting {word!r}: hung"
            chunk = os.read(fd, 4096)
            assert chunk, f"child exited (rc {self.p.wait()}) while the test expected {word!r}"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        got, _, rest = line.decode().partition(" ")
        assert got == word, f"expected {word!r} from the child, got {line!r}"
        return rest

    def finish(self) -> int:
        "Close the child's input and wait for it to exit; returns its exit code."
        if not self.p.stdin.closed: self.p.stdin.close()
        return self.p.wait(HANG_GUARD_S)

    def kill(self) -> int:
        "SIGKILL the child (it is wherever the test stopped it) and reap it."
        self.p.kill()
        return self.p.wait(HANG_GUARD_S)


@pytest.fixture
def child():
    "Start `Child` processes; any still running when the test ends are killed."
    started = []
    def start(code, *args, env=None):
        started.append(Child(code, *args, env=env))
        return started[-1]
    yield start
    for c in started:
        if c.p.poll() is None: c.kill()
        for f in (c.p.stdin, c.p.stdout):
            if not f.closed: f.close()


def pytest_configure(config):
    "Markers of the system tests: `live` ones need the network (`pytest -m live`); `slow` ones run with `make pytest FLAGS=slow`."
    config.addinivalue_line("markers", "live: talks to the real TradingView service; opt-in with `pytest -m live`")
    config.addinivalue_line("markers", "slow: long system tests; `make pytest FLAGS=slow` (or `make test FLAGS=slow`) runs them")
