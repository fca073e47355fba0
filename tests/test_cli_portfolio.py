"""`tvs portfolio show|diff` over real runs of the research flow: the latest run's portfolio by default, a named run's on
request, the change of targets between two runs; runs without a portfolio and hostile names are refused in one line."""
import shutil

import pytest

from helpers import tree_digest
from tradingview_scraper.data.sample import sample_lakehouse
from tradingview_scraper.orchestration.flow import run_flow
from tradingview_scraper.portfolio import diff_portfolios, format_diff, format_portfolio, load_portfolio

SETTINGS = {"data.source": "lakehouse", "allocation.optimizers": ["equal_weight", "hrp"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("portfolio-cli")
    sample_lakehouse(base / "lake")
    for rid, cost in (("day1", 5), ("day2", 2)):
        run_flow("development", run_id=rid, runs_root=base / "runs", lakehouse_root=base / "lake", env={},
                 overrides={**SETTINGS, "backtest.cost_bps": cost})
    return base / "runs"


def test_show_prints_the_latest_portfolio_by_default(runs, tvs):
    r = tvs("portfolio", "show", "--runs-root", str(runs))
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.splitlines()[0] == "run day2"
    assert r.stdout.splitlines()[1:] == format_portfolio(load_portfolio(runs / "day2")).splitlines()
    named = tvs("portfolio", "show", "day1", "--runs-root", str(runs), "--max-lines", "3")
    assert named.returncode == 0 and named.stdout.splitlines()[0] == "run day1"
    assert len(named.stdout.splitlines()) == 5 and named.stdout.splitlines()[-1].startswith("… "), named.stdout


def test_diff_prints_how_targets_changed(runs, tvs):
    r = tvs("portfolio", "diff", "day1", "day2", "--runs-root", str(runs))
    assert r.returncode == 0, r.stderr[-2000:]
    expected = format_diff(diff_portfolios(load_portfolio(runs / "day1"), load_portfolio(runs / "day2")))
    assert r.stdout.splitlines() == ["day1 → day2", *expected.splitlines()]


def test_latest_skips_failed_runs_and_runs_without_a_portfolio(runs, tmp_path, tvs):
    root = tmp_path / "runs"
    shutil.copytree(runs, root)
    shutil.rmtree(root / "day2" / "portfolio")
    assert tvs("portfolio", "show", "--runs-root", str(root)).stdout.splitlines()[0] == "run day1"
    r = tvs("portfolio", "show", "day2", "--runs-root", str(root))
    assert r.returncode == 2 and r.stderr.startswith("tvs: error: invalid run 'day2'") and "portfolio/" in r.stderr, r.stderr


@pytest.mark.parametrize("args", [["show", "../day1"], ["show", "day1/../../x"], ["diff", "day1", "\x1b]0;x\x07"],
                                  ["show", "--runs-root", "/nonexistent/runs"]])
def test_refused_in_one_line_touching_nothing(runs, tvs, args):
    before = tree_digest(runs)
    extra = [] if "--runs-root" in args else ["--runs-root", str(runs)]
    r = tvs("portfolio", *args, *extra)
    assert r.returncode == 2 and r.stderr.startswith("tvs: error:") and len(r.stderr.splitlines()) == 1, r.stderr
    assert "\x1b" not in r.stderr and "Traceback" not in r.stderr
    assert tree_digest(runs) == before
