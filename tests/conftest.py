"""Shared fixtures for the system tests: run the real `tvs` entry point and the real interpreter."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


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


def pytest_configure(config):
    config.addinivalue_line("markers", "live: talks to the real TradingView service; opt-in with `pytest -m live`")
