"""An offline production run on an empty lakehouse says so in one line, with what to do — whether hydration failed
(the network is down: here a closed loopback port) or is off in the profile — and writes nothing into the lakehouse."""
import socket

import pytest

from helpers import tree_digest


def closed_port() -> int:
    "A loopback port nothing listens on (bound, then released: connecting is refused at once)."
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case", ["hydration failed", "hydration off"])
def test_empty_lakehouse_is_one_line_with_what_to_do(tvs, tmp_path, case):
    lake = tmp_path / "lake"
    lake.mkdir()
    before = tree_digest(lake)
    if case == "hydration failed":
        port = closed_port()
        args = ["--profile", "production", "--set", f"hydration.scanner_url=http://127.0.0.1:{port}",
                "--set", f"hydration.websocket_url=ws://127.0.0.1:{port}/socket", "--set", "hydration.max_attempts=1"]
    else:
        args = ["--profile", "lakehouse"]
    r = tvs("run", *args, "--lakehouse", str(lake), "--runs-root", str(tmp_path / "runs"), "--progress", "off")
    assert r.returncode == 1, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("tvs: error:")]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    line = errors[0]
    assert f"the lakehouse {lake} has no 1d bars" in line
    assert ("and hydration failed" in line) == (case == "hydration failed")
    assert ("hydration is off in this profile" in line) == (case == "hydration off")
    for todo in ("tvs hydrate", "check the network", "tvs lakehouse import"): assert todo in line
    assert tree_digest(lake) == before          # nothing was written into the lakehouse the user gave
