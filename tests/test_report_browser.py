"""The report renders in a real browser: headless Chromium opens `report.html` from disk (no server, no network),
every plotly figure gets its SVG (scatter traces drawn, heatmap images painted, the costs' bars stacked) and no
JavaScript error is raised.
Skipped, saying why, when no Chromium is on PATH (`apt-get install chromium`)."""
import dataclasses
import html as htmllib
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from tradingview_scraper.backtest.metrics import compute_metrics
from tradingview_scraper.backtest.reality import assess
from tradingview_scraper.backtest.stats import StatsParams
from tradingview_scraper import reports
from tradingview_scraper.reports import ReportInputs, StrategyResult, write_report

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no headless Chromium on PATH (chromium, chromium-browser or google-chrome): "
                                                        "apt-get install chromium to run the browser check")

# Recorded on the root element, so --dump-dom carries them out: uncaught errors, rejected promises, console.error.
PROBE = """<script>(function(){var root=document.documentElement;
function record(m){root.setAttribute('data-js-errors',(root.getAttribute('data-js-errors')||'')+String(m)+'\\n');}
window.addEventListener('error',function(e){record('error: '+e.message);});
window.addEventListener('unhandledrejection',function(e){record('unhandled rejection: '+e.reason);});
var ce=console.error;console.error=function(){record('console.error: '+Array.prototype.join.call(arguments,' '));ce.apply(console,arguments);};
})();</script>"""


def inputs(n_days=1500):
    rng = np.random.default_rng(7)
    idx = pd.bdate_range("2018-01-01", periods=n_days, tz="UTC")
    reb = idx[::21]
    syms = [f"NYSE:S{i:02d}" for i in range(15)]

    def strat(name, mu):
        r = pd.Series(rng.normal(mu, 0.01, n_days), index=idx)
        w = pd.DataFrame(rng.dirichlet(np.ones(len(syms)), len(reb)), index=reb, columns=syms)
        to, costs = pd.Series(0.2, index=reb), pd.Series(0.2 * 5e-4, index=reb)
        kinds = pd.DataFrame({"commission": 0.0, "spread": 0.0, "impact": 0.0, "borrow": 0.3e-4 / 252, "funding": -0.1e-4 / 252}, index=idx)
        kinds.loc[reb, ["commission", "spread", "impact"]] = [0.2 * 5e-4, 0.2 * 2e-4, 0.2 * 1e-4]   # every kind paid (funding received)
        return StrategyResult(name, r, w, to, costs, compute_metrics(r, 252, to, costs), kinds)

    target = pd.Series(1 / 15, index=syms)
    trades = pd.DataFrame({"symbol": syms[:3], "current_weight": [0.1, 0.0, 0.05], "target_weight": [1 / 15] * 3})
    trades["delta"] = trades["target_weight"] - trades["current_weight"]
    t = idx[-1] + pd.Timedelta(days=1)
    gone = pd.DataFrame({"symbol": ["NYSE:S07"], "last_price": [idx[n_days // 2]], "closed": [idx[n_days // 2 + 1]], "weight": [0.06],
                         "delisting_return": [-0.3], "contribution": [-0.018]})
    portfolio = {"hrp": {"target": target, "trades": trades, "t": t, "drift": 0.07, "band": 0.0, "traded": True, "reason": "rebalance",
                         "turnover": float(trades["delta"].abs().sum()), "est_cost": 1e-5, "est_cost_ccy": None,
                         "holdings_source": "cash", "adjustments": ()}}
    return ReportInputs(run={"run_id": "browser", "profile": "canary", "status": "succeeded", "manifest_hash": "cd" * 32},
                        strategies=[dataclasses.replace(strat("hrp", 4e-4), delistings=gone), strat("min_variance", 3e-4)],
                        benchmark=pd.Series(rng.normal(3e-4, 0.012, n_days), index=idx), benchmark_name="SP:SPX",
                        conventions={"cost_bps": 5.0, "periods_per_year": 252}, last_bar=idx[-1], portfolio=portfolio, universe_size=15,
                        quarantine=pd.DataFrame({"symbol": "NYSE:S01", "ts": idx[:50], "rule_id": "stale", "value": 1.0, "detail": "flat"}))


def open_in_browser(page, tmp_path) -> str:
    "The DOM of `page` after headless Chromium loaded it from disk and ran its scripts (a probe for JS errors injected into a copy)."
    text = page.read_text(encoding="utf-8")
    probe = tmp_path / "probe.html"
    probe.write_text(text.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=30000", "--dump-dom", probe.as_uri()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "</html>" in out.stdout, out.stderr[-2000:]
    return out.stdout


def js_errors(dom: str) -> str:
    m = re.search(r'<html[^>]*\sdata-js-errors="([^"]*)"', dom)
    return htmllib.unescape(m[1]) if m else ""


def figure_blocks(dom: str) -> dict:
    "Each plotly div's rendered markup, by id (from one div to the next script)."
    starts = [(m[1], m.start()) for m in re.finditer(r'<div id="(fig-\d+)" class="[^"]*plotly-graph-div', dom)]
    return {fid: dom[s:dom.find("<script", s)] for fid, s in starts}


def test_every_figure_renders_without_js_errors(tmp_path):
    inp = inputs()
    page = write_report(inp, tmp_path / "reports")["html"]
    source = page.read_text(encoding="utf-8")
    ids = re.findall(r'Plotly\.newPlot\("(fig-\d+)"', source)
    n = len(inp.strategies)
    assert len(ids) == 4 + 2 * n                              # equity, drawdown, rolling Sharpe, turnover; weights and monthly per allocator
    dom = open_in_browser(page, tmp_path)
    assert js_errors(dom) == ""
    blocks = figure_blocks(dom)
    assert sorted(blocks) == sorted(ids)
    for fid in ids:
        assert '<svg class="main-svg"' in blocks[fid], fid   # plotly drew the figure
    curves = len(inp.strategies) + 1
    for fid in ids[:3]: assert blocks[fid].count('class="trace scatter') == curves, fid      # one line per allocator and the benchmark
    assert blocks[ids[3]].count('class="trace scatter') == 2 * n                             # turnover and costs per allocator
    for fid, s in zip(ids[4 + n:], inp.strategies):
        assert blocks[fid].count("<image") == 2, fid      # the monthly heatmap and its yearly column are painted
        labels = [htmllib.unescape(v) for v in re.findall(r'<text [^>]*data-notex="1"[^>]*data-unformatted="([^"]*)"', blocks[fid])]
        spec = reports.monthly_spec(s)                    # every month and year cell labelled with its return, in place
        assert labels == [t for trace in spec["data"] for row in trace["text"] for t in row if t], fid
    assert "Today's portfolio" in dom and "NYSE:S01" in dom


def test_the_check_sees_a_broken_page(tmp_path, monkeypatch):
    "The same check on a report whose plotly.js is missing: the browser reports the error and no figure gets an SVG."
    monkeypatch.setattr(reports, "get_plotlyjs", lambda: "")
    page = write_report(inputs(200), tmp_path / "reports")["html"]
    dom = open_in_browser(page, tmp_path)
    assert "Plotly is not defined" in js_errors(dom)
    assert figure_blocks(dom) and not any('<svg class="main-svg"' in b for b in figure_blocks(dom).values())


def test_reality_section_draws_its_figures_first(tmp_path):
    "The \"Is it real?\" section (right after the warnings): its bootstrap violins (one per cell) and logit histogram are drawn, with no JS error."
    inp = inputs(600)
    cells = pd.DataFrame({s.name: s.returns for s in inp.strategies}).assign(**{inp.benchmark_name: inp.benchmark})
    rc = assess(cells, 252, StatsParams(resamples=500, pbo_partitions=8), benchmark=inp.benchmark_name)
    page = write_report(dataclasses.replace(inp, reality=rc, warnings=["the universe is survivorship-biased"]), tmp_path / "reports")["html"]
    source = page.read_text(encoding="utf-8")
    assert len(re.findall(r'Plotly\.newPlot\("(fig-\d+)"', source)) == 4 + 2 * len(inp.strategies)     # the other figures as before
    dom = open_in_browser(page, tmp_path)
    assert js_errors(dom) == ""
    assert dom.index("Read this first") < dom.index("<h2>Is it real?") < dom.index("<h2>Today's portfolio") < dom.index("<h2>Performance")
    block = lambda fid: dom[dom.index(f'<div id="{fid}"'):dom.find("<script", dom.index(f'<div id="{fid}"'))]
    violins, logits = block("reality-sharpe"), block("reality-logits")
    assert '<svg class="main-svg"' in violins and '<svg class="main-svg"' in logits
    assert violins.count('class="trace violins') == len(rc.cells) == 3              # hrp, min_variance and the benchmark
    assert violins.count('class="trace scatter') == 1                               # the estimates
    assert logits.count('class="trace bars') == 1 and logits.count('class="point"') > 1   # the histogram's bars are painted
    assert htmllib.escape(rc.verdict.partition(". ")[2], quote=False) in dom


def test_costs_section_renders(tmp_path):
    "The \"Costs\" section: its table (every kind of every allocator), the stacked bars (one trace per kind, a bar per allocator) and the delisting."
    inp = inputs(400)
    page = write_report(inp, tmp_path / "reports")["html"]
    dom = open_in_browser(page, tmp_path)
    assert js_errors(dom) == ""
    assert dom.index("<h2>Trading") < dom.index("<h2>Costs") < dom.index("<h2>Monthly returns")
    section = dom[dom.index("<section id=\"costs\">"):dom.index("<h2>Monthly returns")]
    start = section.index('<div id="fig-costs"')
    bars = section[start:section.find("<script", start)]
    assert '<svg class="main-svg"' in bars                                        # plotly drew it
    kinds = list(inp.strategies[0].cost_kinds.columns)
    assert bars.count('class="trace bars') == len(kinds) == 5                      # one stacked trace per kind
    assert bars.count('class="point"') == len(kinds) * len(inp.strategies)         # a bar per kind and allocator (funding below 0)
    for k in kinds: assert f"<td>{k}</td>" in section, k
    table = reports.cost_table(inp).set_index(["allocator", "kind"])
    for name in ("hrp", "min_variance"):
        assert f"<td>{reports.format_value(table.loc[(name, 'all'), 'per_year'], 'bps')}</td>" in section, name
    assert table.loc[("hrp", "funding"), "per_year"] < 0                            # funding received is a negative cost
    assert "<h3>Delistings</h3>" in section and "<td>NYSE:S07</td>" in section and "<td>-30.00%</td>" in section
