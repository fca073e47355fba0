"""Hostile arguments through the real `tvs`: every one is answered at once with one `tvs: error:` line and a non-zero exit,
never a traceback, never a hang, and nothing the user had is changed.

A NUL byte cannot be part of this battery: `execve` refuses it in an argument, so no caller can hand one to `tvs`
(the library refuses it anyway: see `tests/test_security_battery.py`)."""
import errno
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import tree_digest
from tradingview_scraper.profile import load_profile
from tradingview_scraper.orchestration.runner import OrchestrationRunner, Step

BIN = Path(sys.executable).parent
HANG_GUARD_S = 60          # a guard against a hung `tvs` only; every case is expected to answer without waiting on anything


def tvs(*args, cwd=None, wrapper=None) -> subprocess.CompletedProcess:
    "Run the installed `tvs` (or `wrapper`, a script that patches the library and then calls the CLI) in a clean environment."
    env = {k: v for k, v in os.environ.items() if not k.startswith("TVS_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    cmd = [str(BIN / "tvs")] if wrapper is None else [sys.executable, str(wrapper)]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=HANG_GUARD_S)


def assert_answered(r: subprocess.CompletedProcess, *, code=None, says=None):
    out = r.stdout + r.stderr
    assert r.returncode != 0, (r.returncode, r.stdout[:500])
    if code is not None: assert r.returncode == code, (r.returncode, r.stderr[:500])
    assert r.stderr.startswith("tvs: error:"), r.stderr[:2000]
    assert "Traceback" not in out, r.stderr[:4000]
    assert "\x1b" not in out and "\x07" not in out, "a control character from the input reached the terminal"
    assert len(r.stderr) < 3000, len(r.stderr)                # a bounded answer, not the whole hostile input echoed back
    if says is not None: assert says in r.stderr, r.stderr[:2000]




@pytest.fixture
def runs(tmp_path):
    "A runs root holding one finished run, r1."
    root = tmp_path / "runs"
    OrchestrationRunner(load_profile("development", env={}), [Step("a", lambda ctx: {"x": {"ok": 1}})],
                        runs_root=root, run_id="r1", executor="serial").run()
    return root


# --- paths the OS would refuse ------------------------------------------------------------------------------------------

LONG_ROOT = "/".join(["a" * 199] * 20) + "x"        # 4,000 characters, every component legal


@pytest.mark.parametrize("args", [
    ["runs", "list", "--runs-root", LONG_ROOT],
    ["runs", "show", "r1", "--runs-root", LONG_ROOT],
    ["run", "--profile", "development", "--run-id", "r1", "--runs-root", LONG_ROOT],
    ["lakehouse", "status", "--root", LONG_ROOT],
    ["ledger", "verify", LONG_ROOT],
], ids=lambda a: " ".join(a[:2]))
def test_a_4000_character_path_is_refused(tmp_path, args):
    cwd = tmp_path / ("c" * 100)                        # relative: too long for the OS once made absolute
    cwd.mkdir()
    r = tvs(*args, cwd=cwd)
    assert_answered(r, code=2, says="the OS limit")
    assert os.listdir(cwd) == []


COMPONENT_300 = "é" * 150                            # 150 characters, 300 bytes in UTF-8


@pytest.mark.parametrize("args", [
    ["runs", "list", "--runs-root", f"runs/{COMPONENT_300}"],
    ["run", "--profile", "development", "--run-id", "r1", "--runs-root", COMPONENT_300],
    ["lakehouse", "status", "--root", f"/tmp/{COMPONENT_300}/lake"],
    ["hydrate", "--endpoint", "local", "--profile", "development", "--lakehouse", COMPONENT_300],
    ["ledger", "verify", f"{COMPONENT_300}/audit.jsonl"],
], ids=lambda a: " ".join(a[:2]))
def test_a_300_byte_component_is_refused(tmp_path, args):
    r = tvs(*args, cwd=tmp_path)
    assert_answered(r, code=2, says="at most 255 bytes")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("args", [
    ["run", "--profile", "development", "--run-id", "r\x1b[2Jx"],
    ["runs", "show", "r1\x07"],
    ["runs", "list", "--runs-root", "runs\x1b]0;owned\x07"],
    ["runs", "list", "--runs-root", "runs\nfake: line"],
    ["lakehouse", "status", "--root", "lake\x7f"],
    ["ledger", "verify", "run\u202edir"],
    ["hydrate", "--endpoint", "local", "--profile", "development", "--lakehouse", "lake\x1b[31m"],
], ids=lambda a: " ".join(a[:2]) + " " + repr(a[-1])[:20])
def test_control_characters_are_refused_and_never_echoed_raw(tmp_path, args):
    r = tvs(*args, cwd=tmp_path)
    assert_answered(r, code=2)
    assert r.stderr.count("\n") == 1                  # one line: a '\n' in the input did not forge a second one
    assert os.listdir(tmp_path) == []


# --- symlinks, damaged records, files that are not files -----------------------------------------------------------------

def test_a_run_id_linked_to_another_run_is_refused(runs):
    (runs / "r2").symlink_to(runs / "r1", target_is_directory=True)
    before = tree_digest(runs)
    for args in (["run", "--profile", "development", "--run-id", "r2", "--runs-root", str(runs)],
                 ["runs", "show", "r2", "--runs-root", str(runs)]):
        assert_answered(tvs(*args), code=2, says="'r2' is a symlink")
    assert tree_digest(runs) == before


def test_runs_list_names_a_linked_run_without_reading_through_it(runs, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "status.json").write_text(json.dumps({"run_id": "SECRET", "status": "succeeded"}))
    (runs / "r3").mkdir()
    (runs / "r3" / "status.json").symlink_to(outside / "status.json")
    (runs / "r4").symlink_to(outside, target_is_directory=True)
    r = tvs("runs", "list", "--runs-root", str(runs))
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "SECRET" not in r.stdout and "r3" in r.stdout and "r4" in r.stdout, r.stdout


@pytest.mark.parametrize("cut", [0, 1, 20])
def test_runs_show_on_a_truncated_status(runs, cut):
    p = runs / "r1" / "status.json"
    p.write_bytes(p.read_bytes()[:cut])
    before = tree_digest(runs)
    assert_answered(tvs("runs", "show", "r1", "--runs-root", str(runs)), code=2, says="status.json")
    assert tree_digest(runs) == before


@pytest.mark.parametrize("cut", [0, 1, 20])
def test_resuming_a_run_with_a_truncated_manifest(runs, tmp_path, cut):
    p = runs / "r1" / "manifest.json"
    p.write_bytes(p.read_bytes()[:cut])
    before = tree_digest(runs)
    r = tvs("run", "--profile", "development", "--run-id", "r1", "--runs-root", str(runs), "--lakehouse", str(tmp_path / "lake"))
    assert_answered(r, code=2, says="manifest.json")
    assert tree_digest(runs) == before


def test_runs_show_when_the_status_is_a_directory(runs):
    (runs / "r1" / "status.json").unlink()
    (runs / "r1" / "status.json").mkdir()
    r = tvs("runs", "show", "r1", "--runs-root", str(runs))
    assert_answered(r, code=1, says=f"tvs: error: runs show: Is a directory ({(runs / 'r1' / 'status.json').resolve()})")


def test_a_fifo_as_manifest_is_answered_without_blocking(tmp_path):
    fifo = tmp_path / "manifest.yaml"
    os.mkfifo(fifo)                                      # nobody ever writes to it: opening it for reading would block
    r = tvs("run", "--profile", "development", "--manifest", str(fifo), "--runs-root", str(tmp_path / "runs"), cwd=tmp_path)
    assert_answered(r, code=2)
    assert sorted(os.listdir(tmp_path)) == ["manifest.yaml"]


# --- the disk fills up -----------------------------------------------------------------------------------------------------

FULL_DISK = """
import errno, os, sys
import tradingview_scraper.cli  # noqa: F401  (every module that writes is imported by now)
def full_disk(path, data, *args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
for name, mod in list(sys.modules.items()):
    if name.startswith("tradingview_scraper") and hasattr(mod, "atomic_write_bytes"): mod.atomic_write_bytes = full_disk
from tradingview_scraper.cli import main
main(sys.argv[1:], prog_name="tvs")
"""


@pytest.fixture
def full_disk(tmp_path):
    p = tmp_path / "full_disk.py"
    p.write_text(FULL_DISK)
    return p


def _answers(stderr: str) -> list[str]:
    "The `tvs: error:` answers in `stderr` (a progress bar may share their line: it writes no newline)."
    return ["tvs: error:" + piece.split("\n", 1)[0] for piece in stderr.split("tvs: error:")[1:]]


def test_enospc_in_hydrate_is_one_error_line(tmp_path, full_disk):
    r = tvs("hydrate", "--endpoint", "local", "--profile", "development", "--lakehouse", str(tmp_path / "lake"),
            "--local-symbols", "2", "--local-bars", "30", wrapper=full_disk)
    assert r.returncode == 1, r.stderr[-2000:]
    assert _answers(r.stderr) == ["tvs: error: hydrate: No space left on device"], r.stderr[-2000:]


FSYNC_FAILS = """
import errno, os, sys
def full_disk(fd):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
os.fsync = full_disk                                   # the real atomic write meets a full disk when it syncs
from tradingview_scraper.cli import main
main(sys.argv[1:], prog_name="tvs")
"""


def test_enospc_in_the_real_atomic_write_is_one_error_line(tmp_path):
    (tmp_path / "fsync_fails.py").write_text(FSYNC_FAILS)
    r = tvs("hydrate", "--endpoint", "local", "--profile", "development", "--lakehouse", str(tmp_path / "lake"),
            "--local-symbols", "2", "--local-bars", "30", wrapper=tmp_path / "fsync_fails.py")
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr[-4000:]
    answers = _answers(r.stderr)                        # (hydration sums up its failed symbols in a typed error of its own)
    assert len(answers) == 1 and "ENOSPC" in answers[0] and str(tmp_path / "lake") in answers[0], r.stderr[-2000:]
    assert "refused the writes" in answers[0] and "check the network" not in answers[0], answers[0]   # a full disk, not the network
    assert r.returncode == 1


def test_enospc_in_hydrate_shows_no_traceback(tmp_path, full_disk):
    r = tvs("hydrate", "--endpoint", "local", "--profile", "development", "--lakehouse", str(tmp_path / "lake"),
            "--local-symbols", "2", "--local-bars", "30", wrapper=full_disk)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-4000:]


def test_enospc_while_writing_a_run_is_one_error_line(tmp_path, full_disk):
    import nbformat
    nb_dir = tmp_path / "nbs"
    nb_dir.mkdir()
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell("run_id = profile = runs_root = executor = overrides = lakehouse_root = manifest = None",
                                          metadata={"tags": ["parameters"]})]
    nbformat.write(nb, nb_dir / "only.ipynb")
    r = tvs("run", "--profile", "development", "--run-id", "full", "--runs-root", str(tmp_path / "runs"),
            "--lakehouse", str(tmp_path / "lake"), "--notebooks", str(nb_dir), wrapper=full_disk)
    assert r.returncode == 1, r.stderr[-2000:]
    assert "Traceback" not in r.stderr, r.stderr[-4000:]
    last = r.stderr.rstrip().splitlines()[-1]           # (a Jupyter kernel may have logged its start-up warnings before)
    assert last.startswith("tvs: error: run 'full': No space left on device (see "), r.stderr[-2000:]


def test_data_start_after_the_data_is_a_typed_failure(tmp_path):
    r = tvs("run", "--profile", "development", "--run-id", "late", "--runs-root", str(tmp_path / "runs"),
            "--lakehouse", str(tmp_path / "lake"), "--set", "data.start=2030-01-01")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    last = r.stderr.rstrip().splitlines()[-1]
    assert last.startswith("tvs: error:") and "data.start '2030-01-01'" in last and "2022-12-28" in last, last
    assert "IPKernelApp" not in r.stderr, r.stderr[-2000:]     # the kernel's own chatter goes to the run's logs, not the console
    assert (tmp_path / "runs" / "late" / "logs" / "kernel.log").is_file()   # where the kernel's stderr goes (encrypted: no warning in it now)
    progress = [line for line in r.stderr.splitlines() if line.startswith("[")]   # not a terminal: one line per step, as in CI
    assert progress and progress[-1].startswith("[2/") and " ingest … failed after " in progress[-1], r.stderr[-2000:]
