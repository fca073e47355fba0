"""Zero look-ahead: perturbing every row at or after a decision date (NaN, ±1e12, shuffled) leaves every decision up to that
date and every return before it bitwise identical — for every allocator, with caps, and with the real Selection and
Synthesis pipelines in the loop."""
import numpy as np
import pytest

from tradingview_scraper.backtest.engine import BacktestEngine, lookahead_check
from tradingview_scraper.backtest.reference import synthetic_returns
from tradingview_scraper.data.loader import perturb_future
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


def test_the_check_catches_a_leak():
    "An allocator that reads rows it was not given (a global frame) is caught."
    from tradingview_scraper.pipelines.allocation import Allocation
    source = {}
    class Leaky(EqualWeight):
        def allocate(self, X, ws=None, columns=None):
            later = source["frame"].iloc[-5:].fillna(0.0).mean().to_numpy()
            w = np.exp(50 * later); return Allocation(w / w.sum())
    def run(frame):
        source["frame"] = frame
        return BacktestEngine(126, 21).run(frame, Leaky())
    clean = run(PANEL)
    t = clean.weights.index[10]
    dirty = run(perturb_future(PANEL, t, "shuffle", seed=2))
    assert clean.weights.iloc[:11].to_numpy().tobytes() != dirty.weights.iloc[:11].to_numpy().tobytes()
