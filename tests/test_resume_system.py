"""Resume on the real research flow: a changed bar, a tampered artifact or a changed setting re-runs exactly what it must,
with results byte-identical to a fresh run; a refused resume changes nothing; a succeeded run resumed unchanged is a no-op."""
import hashlib
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tradingview_scraper.data.lakehouse import Lakehouse
from tradingview_scraper.data.sample import sample_lakehouse
from tradingview_scraper.ledger import AuditLedger
from tradingview_scraper.orchestration.flow import FLOW, flow_runner, run_flow
from tradingview_scraper.orchestration.production import run_production
from tradingview_scraper.orchestration.rundir import RunFailed, read_status

# The development profile reading a lakehouse the test seeds itself (data.source=lakehouse: the run never seeds it).
SETTINGS = {"data.source": "lakehouse", "allocation.optimizers": ["equal_weight", "min_variance"]}
RESULT_STEPS = ("ingest", "discover", "select", "synthesize", "backtest")
NAMES = [s.name for s in FLOW]          # hydrate, ingest, ..., validate: the flow's steps in order


def tree_bytes(d: Path) -> dict:
    return {p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()}


def results(run_dir: Path) -> dict:
    "The research results: every artifact of the data and decision steps (timings are wall-clock, not results)."
    return {k: v for k, v in tree_bytes(run_dir / "artifacts").items() if k.split("/")[0] in RESULT_STEPS and not k.endswith("timings.json")}


def outcomes_since_last_resume(run_dir: Path) -> dict:
    "step → outcome status of the last attempt (the records after the last `resume` event)."
    recs = AuditLedger.for_run(run_dir).records()
    starts = [i for i, r in enumerate(recs) if r["kind"] == "genesis" or r["data"].get("event") == "resume"]
    steps = {s.name for s in FLOW}   # the flow's steps (stages inside them record their own outcomes too)
    return {r["data"]["step"]: r["data"]["status"] for r in recs[starts[-1]:] if r["kind"] == "outcome" and r["data"]["step"] in steps}


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume") / "lake"
    sample_lakehouse(root)
    return root


def go(run_id, runs, lake):
    return run_flow("development", run_id=run_id, runs_root=runs, lakehouse_root=lake, env={}, overrides=SETTINGS)


def test_changed_bar_reruns_ingest_and_everything_after(tmp_path, lake):
    lake_copy = tmp_path / "lake"
    shutil.copytree(lake, lake_copy)
    runs = tmp_path / "runs"
    go("r", runs, lake_copy)
    assert [p["action"] for p in flow_runner(go_profile(), run_id="r", runs_root=runs, lakehouse_root=lake_copy).plan()] == ["skip"] * len(NAMES)
    lh = Lakehouse(lake_copy)
    bars = lh.read_ohlcv("NASDAQ:AAPL")
    row = bars.iloc[[len(bars) - 40]].copy()
    row[["open", "high", "low", "close"]] *= 1.01          # one bar revised in the lakehouse after the run
    lh.write_ohlcv("NASDAQ:AAPL", row)
    plan = flow_runner(go_profile(), run_id="r", runs_root=runs, lakehouse_root=lake_copy).plan()
    assert [(p["step"], p["action"]) for p in plan] == [("hydrate", "skip")] + [(s, "run") for s in NAMES[1:]]
    assert plan[1]["reason"].startswith("what it read outside the run changed: lakehouse")
    go("r", runs, lake_copy)
    assert outcomes_since_last_resume(runs / "r") == {"hydrate": "skipped", **{s: "succeeded" for s in NAMES[1:]}}
    go("fresh", runs, lake_copy)
    assert results(runs / "r") == results(runs / "fresh")
    # the revision is a data event the run reports, not a silent overwrite
    warnings = read_status(runs / "r")["summary"]["warnings"]
    assert any("revised 1 stored bars deep in history" in w and "NASDAQ:AAPL" in w for w in warnings), warnings
    assert "Revised bars" in (runs / "r" / "reports" / "report.html").read_text()
    assert Lakehouse(lake_copy).revisions("NASDAQ:AAPL", kind="history")["ts"].tolist() == row["ts"].tolist()
    reruns = [r["data"] for r in AuditLedger.for_run(runs / "r").records() if r["data"].get("event") == "rerun"]
    assert reruns[0]["step"] == "ingest" and "lakehouse" in reruns[0]["reason"]


def go_profile():
    from tradingview_scraper.profile import load_profile
    return load_profile("development", env={}, overrides=SETTINGS)


def test_tampered_upstream_artifact_reruns_from_its_step(tmp_path, lake):
    runs = tmp_path / "runs"
    go("t", runs, lake)
    fresh = results(runs / "t")
    cand = runs / "t" / "artifacts" / "discover" / "candidates.parquet"
    cand.write_bytes(cand.read_bytes()[:-8] + b"\x00" * 8)
    plan = flow_runner(go_profile(), run_id="t", runs_root=runs, lakehouse_root=lake).plan()
    assert [p["action"] for p in plan] == ["skip", "skip"] + ["run"] * (len(NAMES) - 2)
    assert plan[2]["reason"] == "its output 'candidates' was changed on disk"
    go("t", runs, lake)
    assert outcomes_since_last_resume(runs / "t")["ingest"] == "skipped"
    assert outcomes_since_last_resume(runs / "t")["discover"] == "succeeded"
    assert results(runs / "t") == fresh


def test_refused_resume_and_no_op_resume_change_nothing(tmp_path, lake):
    runs = tmp_path / "runs"
    run_production("development", run_id="p", runs_root=runs, lakehouse_root=lake, env={}, overrides=SETTINGS)
    before = tree_bytes(runs / "p")
    # the report anchors the ledger too: the head it names is a record of the chain
    for page in ("summary.md", "report.html"):
        text = (runs / "p" / "reports" / page).read_text()
        m = re.search(r"audit ledger head at this report: seq (\d+), hash (?:<code>|`)([0-9a-f]{64})", text)
        assert m and AuditLedger.for_run(runs / "p").records()[int(m[1])]["hash"] == m[2], page
    # a succeeded run resumed with the same manifest and unchanged inputs: a no-op
    st = run_production("development", run_id="p", runs_root=runs, lakehouse_root=lake, env={}, overrides=SETTINGS)
    assert st["status"] == "succeeded" and tree_bytes(runs / "p") == before
    # other settings: refused, nothing written (status, executed notebook, ledger untouched)
    with pytest.raises(RunFailed, match="start a new run"):
        run_production("development", run_id="p", runs_root=runs, lakehouse_root=lake, env={}, overrides={**SETTINGS, "backtest.cost_bps": 3})
    assert tree_bytes(runs / "p") == before
    # another lakehouse: refused, naming both
    other = tmp_path / "other-lake"
    with pytest.raises(RunFailed, match="cannot be resumed with other inputs") as e:
        run_production("development", run_id="p", runs_root=runs, lakehouse_root=other, env={}, overrides=SETTINGS)
    assert str(lake) in str(e.value) and str(other) in str(e.value)
    assert tree_bytes(runs / "p") == before and not other.exists()
    assert read_status(runs / "p")["status"] == "succeeded"
    head = read_status(runs / "p")["ledger_head"]
    assert head == AuditLedger.for_run(runs / "p").head()


def test_killed_after_the_flow_but_before_the_notebook_finished_reads_failed(tmp_path, lake):
    runs = tmp_path / "runs"
    go("k", runs, lake)
    assert read_status(runs / "k")["status"] == "succeeded"
    (runs / "k" / "notebooks" / ".partial-flow.ipynb").write_text("{}")   # what a kill mid-papermill leaves behind
    st = read_status(runs / "k")
    assert st["status"] == "failed" and "flow.ipynb did not finish" in st["error"]


def test_stage_by_stage_gives_the_results_of_one_run(tmp_path, lake):
    """`until` then `only`, step by step as the old root scripts ran the stages, ends with the artifacts of one whole run;
    a step whose requirements have not run is refused before anything is written, and the ledger says what was asked."""
    runs = tmp_path / "runs"
    runner = lambda: flow_runner(go_profile(), run_id="staged", runs_root=runs, lakehouse_root=lake)
    with pytest.raises(RunFailed, match=r"needs ingest, but in this run ingest: it has not run yet") as refused:
        runner().run(only=["backtest"])
    assert "until='ingest'" in str(refused.value) and not (runs / "staged").exists()
    st = runner().run(until="select").status
    assert st["status"] == "partial" and st["requested"]["steps"] == ["hydrate", "ingest", "discover", "select"]
    assert sorted(p.name for p in (runs / "staged" / "artifacts").iterdir()) == ["discover", "hydrate", "ingest", "select"]
    assert read_status(runs / "staged")["status"] == "partial"
    later = NAMES[NAMES.index("select") + 1:-1]                        # one stage at a time, all but the last
    for step in later:
        assert runner().run(only=[step]).status["status"] == "partial"
    final = runner().run()
    assert final.status["status"] == "succeeded" and final.status["requested"] is None
    last = outcomes_since_last_resume(runs / "staged")
    assert last == {**{s: "skipped" for s in NAMES[:-1]}, NAMES[-1]: "succeeded"}, last
    go("whole", runs, lake)
    assert results(runs / "staged") == results(runs / "whole")
    asked = [r["data"] for r in AuditLedger.for_run(runs / "staged").records() if r["data"].get("event") == "request"]
    assert [a.get("until") or a["only"] for a in asked] == ["select", *[[s] for s in later]]
    assert AuditLedger.for_run(runs / "staged").verify().ok


def test_unknown_step_names_are_refused_listing_the_steps(tmp_path, lake):
    from tradingview_scraper.orchestration.rundir import UnknownStep
    runs = tmp_path / "runs"
    for ask in ({"until": "selct"}, {"only": ["ingest", "natural_selection"]}):
        with pytest.raises(UnknownStep) as e:
            flow_runner(go_profile(), run_id="typo", runs_root=runs, lakehouse_root=lake).run(**ask)
        assert "one of the flow's steps: " + ", ".join(s.name for s in FLOW) in str(e.value)
    assert not runs.exists()
