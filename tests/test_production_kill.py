"""A killed `tvs` leaves no papermill kernel behind: the kernel notices that its parent is gone and exits, and the run reads
as failed. The kernel parks at a known point and says so through a pipe before its parent is killed — no timing involved."""
import os
import signal
import subprocess
import sys
import threading

import nbformat
import psutil

from tradingview_scraper.orchestration.rundir import read_status

PARENT = """
import sys
from tradingview_scraper.orchestration.production import run_production
run_production("development", run_id="parked", runs_root=sys.argv[1], notebooks=sys.argv[2], env={})
"""

PARKED_CELL = """
import os, pathlib, threading
from tradingview_scraper.orchestration.rundir import run_lock
run_dir = pathlib.Path(runs_root) / run_id
with run_lock(run_dir):                       # a run in progress, as the flow would hold it
    (run_dir / "status.json").write_text('{"run_id": "parked", "status": "running", "steps": {}}')
    with open(pathlib.Path(runs_root) / "parked.fifo", "w") as fifo:
        fifo.write(str(os.getpid()))
    threading.Event().wait()                  # parked for ever: only its parent's death may end this kernel
"""


def test_killed_parent_takes_its_kernel_with_it(tmp_path):
    nbs, runs = tmp_path / "nbs", tmp_path / "runs"
    nbs.mkdir()
    runs.mkdir()
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("run_id = None\nprofile = None\nruns_root = None", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(PARKED_CELL)])
    nbformat.write(nb, nbs / "parked.ipynb")
    os.mkfifo(runs / "parked.fifo")
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(runs), str(nbs)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={k: v for k, v in os.environ.items() if not k.startswith("TVS_")})
    got = {}
    reader = threading.Thread(target=lambda: got.update(pid=(runs / "parked.fifo").read_text()), daemon=True)
    reader.start()
    reader.join(timeout=300)                   # a hang guard only: the read returns when the kernel has parked
    assert "pid" in got, "the kernel never parked"
    kernel = psutil.Process(int(got["pid"]))
    assert kernel.is_running() and read_status(runs / "parked")["status"] == "running"
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    gone, _ = psutil.wait_procs([kernel], timeout=120)   # a hang guard: the kernel checks on its parent every second
    assert kernel in gone, "the kernel outlived its killed parent"
    st = read_status(runs / "parked")
    assert st["status"] == "failed" and st.get("interrupted")
