"""Every stage on its own from the command line, as the old root scripts ran them: `tvs run --until STEP` runs the flow up
to a step, `--steps a,b` only the named ones in the same run; a request whose requirements have not run, or that names
no step of the flow, is refused before anything is written."""
import json

import pytest

from helpers import tree_digest
from tradingview_scraper.orchestration.flow import FLOW
from tradingview_scraper.orchestration.runner import read_status

NAMES = [s.name for s in FLOW]


def run(tvs, tmp_path, run_id, *args):
    return tvs("run", "--profile", "development", "--run-id", run_id, "--runs-root", str(tmp_path / "runs"),
               "--lakehouse", str(tmp_path / "lake"), *args)


def test_until_then_steps_then_the_rest(tmp_path, tvs):
    r = run(tvs, tmp_path, "staged", "--until", "select")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "run staged partial" in r.stdout and "steps run: hydrate, ingest, discover, select" in r.stdout, r.stdout
    run_dir = tmp_path / "runs" / "staged"
    st = read_status(run_dir)
    assert st["status"] == "partial" and st["requested"]["until"] == "select"
    assert sorted(p.name for p in (run_dir / "artifacts").iterdir()) == sorted(NAMES[:NAMES.index("select") + 1])
    assert [l.split(" … ")[0] for l in r.stderr.splitlines() if l.startswith("[")] == [f"[{i}/4] {n}" for i, n in enumerate(NAMES[:4], 1)]
    r = run(tvs, tmp_path, "staged", "--steps", "synthesize,backtest")
    assert r.returncode == 0 and "steps run: synthesize, backtest" in r.stdout, r.stdout + r.stderr[-3000:]
    r = run(tvs, tmp_path, "staged")                                  # the whole flow: what is left runs, the rest is skipped
    assert r.returncode == 0 and "run staged succeeded" in r.stdout, r.stdout + r.stderr[-3000:]
    lines = [l for l in r.stderr.splitlines() if l.startswith("[")]
    skipped = [l.split("] ")[1].split(" … ")[0] for l in lines if l.endswith("skipped (unchanged)")]
    assert skipped == NAMES[:NAMES.index("backtest") + 1], lines


def test_steps_whose_requirements_have_not_run_are_refused_writing_nothing(tmp_path, tvs):
    before = tree_digest(tmp_path)
    r = run(tvs, tmp_path, "fresh", "--steps", "backtest")
    assert r.returncode == 1 and r.stderr.rstrip().splitlines()[-1].startswith("tvs: error:"), r.stderr[-3000:]
    assert "needs ingest" in r.stderr and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert tree_digest(tmp_path) == before


@pytest.mark.parametrize("args", [["--until", "natural_selection"], ["--steps", "ingest,plot"], ["--steps", "ingest,"],
                                  ["--until", "select", "--steps", "ingest"]])
def test_unknown_or_contradictory_steps_are_bad_input(tmp_path, tvs, args):
    before = tree_digest(tmp_path)
    r = run(tvs, tmp_path, "typo", *args)
    assert r.returncode == 2 and r.stderr.startswith("tvs: error:") and len(r.stderr.splitlines()) == 1, r.stderr[-2000:]
    assert tree_digest(tmp_path) == before
