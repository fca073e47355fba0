"""A real Ray cluster on loopback: a head and two worker nodes (`ray.cluster_utils.Cluster`, separate raylets, one CPU
and a custom resource each), a run pointed at it with `orchestration.ray_address`. Cells run on every node, the
results are bitwise those of the serial run, the data travels through the object store once per map, the workers
never need the driver's working directory, and every node's processes are gone afterwards, also when a run fails.

Never `ray stop` here: it stops every Ray of the machine (other test runs' too). Only the nodes started here are stopped."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

import ray
from ray.cluster_utils import Cluster

from tradingview_scraper.orchestration.executors import RayExecutor
from tradingview_scraper.orchestration.flow import run_cells
from tradingview_scraper.orchestration.runner import open_run

# Loopback only: Ray replaces 127.0.0.1 in an address by the machine's outward IP unless its "one machine" switch is
# off (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`: Ray's own IP detection then answers 127.0.0.1). The cluster fixture sets it
# for the nodes, this process's driver and the driver processes, and restores it afterwards.
LOOPBACK_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

HANG_GUARD_S = 300   # a guard against a hung process only: every wait ends on the process exiting, never on a clock
LOOPBACK = "127.0.0.1"
SWEEP = {"backtest.cost_bps": [0, 10], "allocation.optimizers": ["equal_weight", "min_variance"]}
CELLS = 2 * (2 + 1)   # 2 variants × (2 allocators + the variant's benchmark), all through one map

DRIVER = """
import json, os, shutil, sys
from tradingview_scraper.orchestration import executors
from tradingview_scraper.orchestration.flow import run_flow
from tradingview_scraper.orchestration.runner import read_status

cwd, maps = os.getcwd(), []
connect, run_map = executors.RayExecutor._ensure, executors.RayExecutor.map

def connect_then_drop_cwd(self):             # the driver's working directory is gone once Ray has connected:
    ray = connect(self)                      # every task runs after this, so no worker can rely on it
    if os.path.isdir(cwd): shutil.rmtree(cwd)
    return ray

def recorded_map(self, fn, items):           # observes the driver's executor: where each item of each map ran
    out = run_map(self, fn, items)
    maps.append(list(self.placements))
    return out

if sys.argv[6] == "ray":
    executors.RayExecutor._ensure, executors.RayExecutor.map = connect_then_drop_cwd, recorded_map
profile, run_id, runs, lake, overrides, sweep = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5]), json.loads(sys.argv[7])
try:
    run_flow(profile, run_id=run_id, runs_root=runs, lakehouse_root=lake, env={}, overrides=overrides, sweep=sweep,
             until="backtest", progress=False)
except Exception as e:
    print("error", type(e).__name__, str(e)[:2000].replace(chr(10), " "), file=sys.stderr)
status = read_status(os.path.join(runs, run_id))
print(json.dumps({"status": status["status"], "executor": status["executor"], "maps": maps,
                  "cwd_gone": not os.path.exists(cwd), "ray_connected": __import__("ray").is_initialized()}))
"""


def node_processes(node) -> list:
    "Every process of a Ray node: its services (raylet, GCS, agents...) and all their descendants (the workers)."
    procs = []
    for infos in node.all_processes.values():
        for info in infos:
            try:
                p = psutil.Process(info.process.pid)
                procs += [p, *p.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
    return procs


def still_running(procs) -> list:
    "The processes of `procs` still running once each has exited (zombies count as gone); waits on their exit."
    _, alive = psutil.wait_procs(procs, timeout=HANG_GUARD_S)
    return [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def stop_node(cluster, node):
    "Stop one node of `cluster` (never `ray stop`) and assert that every one of its processes is gone."
    procs = node_processes(node)
    cluster.remove_node(node)
    assert procs and still_running(procs) == []


@pytest.fixture(scope="module")
def cluster():
    "A head and two workers on loopback, one CPU and one custom resource each; stopped node by node afterwards."
    with pytest.MonkeyPatch.context() as mp:
        for k, v in LOOPBACK_ENV.items():
            mp.setenv(k, v)
        mp.setattr(ray._private.ray_constants, "ENABLE_RAY_CLUSTER", False)   # read now, not only when ray was imported
        yield from loopback_cluster()


def loopback_cluster():
    "Start the nodes (named by their custom resource in `c.names`); at the end stop them and check their processes are gone."
    c = Cluster(initialize_head=True, connect=False,
                head_node_args={"num_cpus": 1, "resources": {"node_a": 1}, "node_ip_address": LOOPBACK, "include_dashboard": False})
    names = {c.head_node.node_id: "node_a"}
    try:
        for name in ("node_b", "node_c"):
            names[c.add_node(num_cpus=1, resources={name: 1}, node_ip_address=LOOPBACK).node_id] = name
        c.wait_for_nodes()
        c.names = names
        yield c
    finally:
        procs = [p for n in c.list_all_nodes() for p in node_processes(n)]
        c.shutdown()
        assert procs and still_running(procs) == [], "processes of the cluster's nodes outlived its shutdown"


def drive(tmp_path: Path, run_id: str, overrides: dict, executor: str) -> dict:
    "Run the development profile's flow with `SWEEP` up to the backtest in a driver process with a temporary working directory."
    cwd = tmp_path / f"cwd-{run_id}"
    cwd.mkdir()
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TVS_")}, **LOOPBACK_ENV}
    p = subprocess.run([sys.executable, str(script), "development", run_id, str(tmp_path / "runs"), str(tmp_path / "lake"),
                        json.dumps(overrides), executor, json.dumps(SWEEP)], cwd=cwd, capture_output=True, text=True, env=env, timeout=HANG_GUARD_S)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["stderr"] = p.stderr
    return out


def on_cluster(cluster) -> dict:
    return {"orchestration.executor": "ray", "orchestration.ray_address": cluster.address}


def artifact_hashes(run_dir: Path) -> dict:
    "sha256 of every backtest artifact (the research result), but the timings and the conventions (they name the executor)."
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((run_dir / "artifacts" / "backtest").iterdir())
            if p.name not in ("timings.json", "conventions.json")}


def test_cluster_is_three_raylets_on_loopback(cluster):
    nodes = cluster.list_all_nodes()
    assert len(nodes) == 3 and len({n.node_id for n in nodes}) == 3 and {n.node_ip_address for n in nodes} == {LOOPBACK}
    assert cluster.address.startswith(f"{LOOPBACK}:")


class Counted:
    "A map's shared data, counting how often it is pickled (in the driver, the only process that pickles it)."
    pickled = 0
    def __init__(self, data): self.data = data
    def __reduce__(self):
        Counted.pickled += 1
        return (Counted, (self.data,))
    def __call__(self, x): return x * len(self.data)


def test_map_spreads_over_every_node_and_ships_its_data_once(cluster):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])   # the workers cannot import this test module
    try:
        with RayExecutor(address=cluster.address) as ex:
            Counted.pickled = 0
            assert ex.map(Counted([0.0] * 100_000), range(7)) == [100_000 * i for i in range(7)]
            assert Counted.pickled == 1                          # 7 tasks, the data put into the object store once
            assert len(ex.placements) == 7 and {cluster.names[n] for n in ex.placements} == {"node_a", "node_b", "node_c"}
            assert ex.map(Counted([1.0]), range(2)) == [0, 1] and Counted.pickled == 2   # once per map
        assert not ray.is_initialized()                          # the executor left the cluster it joined...
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert all(n.remaining_processes_alive() for n in cluster.list_all_nodes())   # ...and stopped none of its nodes


class Unpickled:
    "A map's function that says which copy of it ran: a new token every time a process unpickles it."
    def __init__(self): self.token = None
    def __getstate__(self): return {}
    def __setstate__(self, state): self.token = os.urandom(8).hex()
    def __call__(self, x): return os.getpid(), self.token


def test_map_unpickles_its_function_once_per_worker_process(cluster):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        with RayExecutor(address=cluster.address) as ex:
            seen = ex.map(Unpickled(), range(12))
        pids, tokens = {p for p, _ in seen}, {t for _, t in seen}
        assert None not in tokens and len(seen) == 12
        assert len(tokens) == len(pids) < 12             # one copy per process, whatever its number of tasks
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_sweep_on_the_cluster_equals_the_serial_run(cluster, tmp_path):
    serial = drive(tmp_path, "serial", {}, "serial")                   # the flow up to the backtest: "partial" runs
    run = drive(tmp_path, "cluster", on_cluster(cluster), "ray")
    assert (serial["status"], run["status"], run["executor"]) == ("partial", "partial", "ray"), run["stderr"][-3000:]
    assert run["cwd_gone"] and not run["ray_connected"]                # ran without its working directory; disconnected
    cells = run_cells(open_run(tmp_path / "runs" / "cluster"))        # BACKTEST.cells with where each cell ran
    assert len(cells) == CELLS and list(cells["node"]) == run["maps"][-1]   # the grid is the run's last map, in cell order
    assert {cluster.names[n] for n in cells["node"]} == {"node_a", "node_b", "node_c"}   # every node ran cells
    assert set(run_cells(open_run(tmp_path / "runs" / "serial"))["node"]) == {"local"}
    a, b = artifact_hashes(tmp_path / "runs" / "serial"), artifact_hashes(tmp_path / "runs" / "cluster")
    assert "cells.parquet" in a and a == b                               # bitwise the serial run's results
    conv = [json.loads((tmp_path / "runs" / r / "artifacts" / "backtest" / "conventions.json").read_text()) for r in ("serial", "cluster")]
    assert [c.pop("executor") for c in conv] == ["serial", "ray"] and conv[0] == conv[1]


def test_failed_run_on_the_cluster_leaves_no_process(cluster, tmp_path):
    "A fourth node without the package: the cells placed on it fail, the run is marked failed, and the node stops clean."
    broken = tmp_path / "site" / "tradingview_scraper"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('tradingview_scraper is not installed on node_d')\n")
    node = cluster.add_node(num_cpus=1, resources={"node_d": 1}, node_ip_address=LOOPBACK, env_vars={"PYTHONPATH": str(broken.parent)})
    cluster.wait_for_nodes()
    try:
        run = drive(tmp_path, "fails", on_cluster(cluster), "ray")   # 6 cells over 4 CPU slots: one or two on node_d
        assert run["status"] == "failed" and not run["ray_connected"]
        assert "not installed on node_d" in run["stderr"]
        status = json.loads((tmp_path / "runs" / "fails" / "status.json").read_text())
        assert status["status"] == "failed"
    finally:
        stop_node(cluster, node)
    assert len(cluster.list_all_nodes()) == 3 and all(n.remaining_processes_alive() for n in cluster.list_all_nodes())
