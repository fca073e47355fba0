"""Zero look-ahead: perturbing every row at or after a decision date (NaN, ±1e12, shuffled) leaves every decision up to that
date and every return before it bitwise identical — for every allocator, with caps, and with the real Selection and
Synthesis pipelines in the loop."""
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from tradingview_scraper.backtest import engine as E
from tradingview_scraper.backtest.engine import BacktestEngine, lookahead_check
from tradingview_scraper.core import LookAheadError
from tradingview_scraper.backtest.reference import synthetic_returns
from tradingview_scraper.pipelines.allocation import (ERC, HRP, AllocationPipeline, Benchmark, EqualWeight, InverseVolatility,
                                                      LedoitWolf, Market, MaxSharpe, MinVariance)
from tradingview_scraper.pipelines.selection import SelectionPipeline
from tradingview_scraper.pipelines.synthesis import Synthesizer

PANEL = synthetic_returns(900, 14, n_clusters=3, seed=23, gap_share=0.003, listings={"EX:A12": 400}, delistings={"EX:A13": 700})

ALLOCATORS = [EqualWeight(), InverseVolatility(), MinVariance(), MinVariance(long_only=False), MinVariance(max_weight=0.15),
              MinVariance(covariance=LedoitWolf()), MaxSharpe(), ERC(), HRP(), HRP(linkage="complete", optimal_ordering=True),
              Market("EX:A3"), Benchmark(), AllocationPipeline(ERC(), max_weight=0.2, gross_limit=0.9)]


@pytest.mark.parametrize("alloc", ALLOCATORS, ids=repr)
@pytest.mark.parametrize("settings", [dict(cost_bps=5.0, lag=1), dict(holding="fixed", anchored=True, step=30)], ids=["drift", "fixed"])
def test_every_allocator(alloc, settings):
    assert lookahead_check(BacktestEngine(126, 21, **settings), PANEL, alloc, n_dates=4, seed=3) == 12


@pytest.mark.parametrize("alloc", [HRP(), MinVariance(), ERC(), Benchmark()], ids=repr)
def test_real_selection_and_synthesis_in_the_loop(alloc):
    panel = synthetic_returns(520, 20, n_clusters=4, seed=8, gap_share=0.002, listings={"EX:A19": 300})
    assert lookahead_check(BacktestEngine(126, 42, warmup=63, cost_bps=5.0), panel, alloc, SelectionPipeline(), Synthesizer(),
                           n_dates=2, seed=1) == 6


def _engine_frame(rows):
    "Backdoor: the nearest DataFrame on the call stack with more than `rows` rows, i.e. the engine's whole input."
    f = sys._getframe(1)
    while f is not None:
        for v in f.f_locals.values():
            if isinstance(v, pd.DataFrame) and len(v) > rows: return v
        f = f.f_back
    raise LookupError("no DataFrame on the call stack")


class Peeker:
    "A selector that bypasses its view: the 3 best assets over the 5 rows after (future=True) or before its decision time."
    def __init__(self, future): self.future = future
    def run(self, view, candidates=None):
        full = _engine_frame(len(view))
        rows = full[full.index >= view.t].iloc[:5] if self.future else full[full.index < view.t].iloc[-5:]
        winners = list(rows.fillna(0.0).mean().sort_values(ascending=False, kind="stable").index[:3])
        return SimpleNamespace(winners=winners, clusters=pd.Series(range(3), index=winners))


@pytest.mark.parametrize("kind", ["nan", "huge", "shuffle"])
def test_the_check_catches_a_selector_that_reads_the_future(kind):
    "Every perturbation on its own catches a decision that depends on rows at or after its decision time."
    eng = BacktestEngine(126, 21, cost_bps=5.0)
    with pytest.raises(LookAheadError, match=f"decision at or before .* changed when the future was perturbed \\({kind}\\)"):
        lookahead_check(eng, PANEL, ERC(), Peeker(future=True), n_dates=2, kinds=(kind,), seed=5)


def test_the_check_passes_the_same_backdoor_reading_only_the_past():
    "The check judges what a decision depends on, not how it got the data: reading only earlier rows passes."
    assert lookahead_check(BacktestEngine(126, 21, cost_bps=5.0), PANEL, ERC(), Peeker(future=False), n_dates=2, seed=5) == 6


def test_the_check_catches_a_simulation_that_earns_tomorrows_return(monkeypatch):
    "Decisions clean, simulation leaky (each day earns the next day's return): only the returns comparison can see it."
    honest = E.simulate
    monkeypatch.setattr(E, "simulate", lambda values, *a, **kw: honest(np.roll(values, -1, axis=0), *a, **kw))
    eng = BacktestEngine(126, 21)
    with pytest.raises(LookAheadError, match="a return before .* changed when the future was perturbed"):
        lookahead_check(eng, PANEL, EqualWeight(), n_dates=2, kinds=("shuffle",), seed=5)
    monkeypatch.setattr(E, "simulate", honest)
    assert lookahead_check(eng, PANEL, EqualWeight(), n_dates=2, kinds=("shuffle",), seed=5) == 2


def test_the_check_feeds_impossible_values_to_the_future_only():
    "The clean input must pass the value rule; the perturbed copies (−1e12 on purpose) skip it and still run."
    from tradingview_scraper.backtest.engine import NotReturnsError
    with pytest.raises(NotReturnsError):
        lookahead_check(BacktestEngine(126, 21), PANEL * 100, EqualWeight(), n_dates=1)
    assert lookahead_check(BacktestEngine(126, 21), PANEL, EqualWeight(), n_dates=1, kinds=("huge",)) == 1


@pytest.mark.parametrize("alloc", [HRP(), MinVariance(long_only=False), AllocationPipeline(ERC(), max_weight=0.2, gross_limit=0.9)], ids=repr)
def test_with_pending_bars_at_the_checked_boundaries(alloc):
    "Crashes on the last training row, confirmed at the decision time: the check (future returns and confirmations scrambled) passes."
    eng = BacktestEngine(126, 21, cost_bps=5.0, lag=1)
    ends = [b for a, b, s, e in eng.folds(len(PANEL))]
    panel, rows = PANEL.copy(), []
    for f, j in ((2, 1), (6, 4), (11, 9)):
        panel.iloc[ends[f] - 1, j] = -0.7
        rows.append((panel.columns[j], panel.index[ends[f] - 1], np.log(0.3), panel.index[ends[f]]))
    confirmed = pd.DataFrame(rows, columns=["symbol", "ts", "value", "confirmed_at"])
    dates = [panel.index[ends[f]] for f in (2, 6, 11)]
    assert lookahead_check(eng, panel, alloc, confirmed=confirmed, dates=dates) == 9
