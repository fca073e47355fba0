"""`tvs runs list` and `tvs runs compare` on real runs of the research flow: overrides, period (first and last
out-of-sample day, from the backtest's artifact) and Sharpe per allocator; a broken run directory is listed as such and
never stops the listing; output and reads are bounded."""
import json
import shutil

import pandas as pd
import pytest

from helpers import tree_digest
from tradingview_scraper.profile import load_profile
from tradingview_scraper.data.sample import sample_lakehouse
from tradingview_scraper.orchestration.flow import flow_runner
from tradingview_scraper.orchestration.runner import OrchestrationRunner, list_runs

BASE = {"data.source": "lakehouse", "allocation.optimizers": ["equal_weight", "min_variance"]}
CHEAP = {**BASE, "backtest.cost_bps": 1}


def start(runs, lake, run_id, overrides):
    "A run of the research flow, recording the overrides it was started with."
    r = flow_runner(load_profile("development", env={}, overrides=overrides), run_id=run_id, runs_root=runs, lakehouse_root=lake)
    return OrchestrationRunner(r.profile, r.steps, runs_root=runs, run_id=run_id, params=r.params, identity=r.identity,
                               overrides=overrides).run()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs-cli")
    lake = base / "lake"
    sample_lakehouse(lake)
    start(base / "runs", lake, "a-base", BASE)
    start(base / "runs", lake, "b-cheap", CHEAP)
    return base / "runs"


def test_list_shows_overrides_period_and_sharpe(runs, tvs):
    r = tvs("runs", "list", "--runs-root", str(runs))
    assert r.returncode == 0, r.stderr
    oos = pd.read_parquet(runs / "a-base" / "artifacts" / "backtest" / "oos_returns.parquet")["__index__ts"]
    first, last = f"{oos.min():%Y-%m-%d}", f"{oos.max():%Y-%m-%d}"
    header, *rows = r.stdout.splitlines()
    for col in ("run_id", "status", "overrides", "first_oos", "last_oos", "sharpe_equal_weight", "sharpe_min_variance"):
        assert col in header, header
    cheap = next(row for row in rows if row.strip().startswith("b-cheap"))
    assert '"backtest.cost_bps=1' not in cheap and "backtest.cost_bps=1" in cheap and first in cheap and last in cheap, cheap
    st = json.loads((runs / "b-cheap" / "status.json").read_text())
    assert f"{st['summary']['sharpe_equal_weight']}" in cheap, cheap


def test_compare_names_the_setting_that_differs_and_the_metrics(runs, tvs):
    r = tvs("runs", "compare", "a-base", "b-cheap", "--runs-root", str(runs))
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert "settings that differ (1):" in out, r.stdout
    assert any(l.split() == ["backtest.cost_bps", "5.0", "1.0"] for l in out), r.stdout
    metrics = json.loads((runs / "a-base" / "artifacts" / "backtest" / "metrics.json").read_text())
    row = next(l for l in out if l.split()[:2] == ["equal_weight", "sharpe"])
    assert f"{round(metrics['equal_weight']['sharpe'], 4)}" in row, row
    same = tvs("runs", "compare", "a-base", "a-base", "--runs-root", str(runs))
    assert same.returncode == 0 and "settings: identical" in same.stdout


def test_a_broken_run_directory_is_listed_and_the_others_still_are(runs, tmp_path, tvs):
    root = tmp_path / "runs"
    shutil.copytree(runs, root)
    shutil.copytree(root / "a-base", root / "c-truncated")
    (root / "c-truncated" / "status.json").write_text('{"run_id": "c-trunc')
    shutil.copytree(root / "a-base", root / "d-bad-artifact")
    (root / "d-bad-artifact" / "artifacts" / "backtest" / "oos_returns.parquet").write_bytes(b"not parquet")
    (root / "e-dir-status" / "status.json").mkdir(parents=True)
    shutil.copytree(root / "a-base", root / "f-huge-manifest")
    with open(root / "f-huge-manifest" / "manifest.json", "wb") as f: f.truncate(17 << 20)   # sparse: 17 MiB of NULs
    before = tree_digest(root)
    r = tvs("runs", "list", "--runs-root", str(root))
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    lines = {l.split()[0]: l for l in r.stdout.splitlines()[1:]}
    assert {"a-base", "b-cheap", "c-truncated", "d-bad-artifact", "e-dir-status", "f-huge-manifest"} <= set(lines), r.stdout
    for broken in ("c-truncated", "d-bad-artifact", "e-dir-status", "f-huge-manifest"):
        assert "unreadable:" in lines[broken], lines[broken]
    assert "larger than" in lines["f-huge-manifest"] and "succeeded" in lines["a-base"]
    assert tree_digest(root) == before                                   # listing reads, never writes
    df = list_runs(root).set_index("run_id")
    assert df.loc["e-dir-status", "status"].startswith("unreadable: IsADirectoryError")


def test_output_is_bounded(runs, tmp_path, tvs):
    root = tmp_path / "runs"
    shutil.copytree(runs, root)
    r = tvs("runs", "list", "--runs-root", str(root), "--last", "1")
    assert r.returncode == 0
    assert [l.split()[0] for l in r.stdout.splitlines()[1:-1]] == ["b-cheap"], r.stdout
    assert r.stdout.splitlines()[-1] == "(1 older runs not shown: --last 2)"


@pytest.mark.parametrize("args, code", [(["a-base", "../etc"], 2), (["a-base", "nope"], 2), (["a-base", "x\x1b[2J"], 2)])
def test_compare_refuses_what_is_not_a_run(runs, tvs, args, code):
    before = tree_digest(runs)
    r = tvs("runs", "compare", *args, "--runs-root", str(runs))
    assert r.returncode == code and r.stderr.startswith("tvs: error:") and "\x1b" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert tree_digest(runs) == before
