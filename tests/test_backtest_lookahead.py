"""Zero look-ahead: perturbing every row at or after a decision date (NaN, ±1e12, shuffled) leaves every decision up to that
date and every return before it bitwise identical — for every allocator, with caps, and with the real Selection and
Synthesis pipelines in the loop; with a purge, no decision reads its purged rows; in the combinatorial (CPCV) mode, no
split's decision reads its test groups, purged or embargoed rows."""
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from helpers import CountingPanel

from tradingview_scraper.backtest import engine as E
from tradingview_scraper.backtest.engine import BacktestEngine, lookahead_check
from tradingview_scraper.core import LookAheadError
from tradingview_scraper.data.loader import perturb_future
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


class _PanelSelection(SelectionPipeline):
    "SelectionPipeline whose rolling feature panel counts what it served (`with_panel=False`: no panel, features per fold)."
    def __init__(self, *args, with_panel=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.with_panel, self.panels = with_panel, []

    def feature_panel(self, frame, times):
        if not self.with_panel: return None
        self.panels.append(CountingPanel(frame, times, self.params.universe.window, self.params.features))
        return self.panels[-1]


@pytest.mark.parametrize("alloc", [HRP(), ERC()], ids=repr)
def test_rolling_features_keep_the_perturbation_proof_bitwise(alloc):
    """The engine attaches the selection's rolling feature panel (computed once over the whole panel, future rows
    included) to every fold view: perturbing the future still leaves every decision bitwise identical, the panel served
    the folds' features, and the run equals the plain per-fold run (its twin)."""
    panel = synthetic_returns(520, 20, n_clusters=4, seed=8, gap_share=0.002, listings={"EX:A19": 300})
    eng = BacktestEngine(126, 42, warmup=63, cost_bps=5.0)
    sel = _PanelSelection(universe={"window": 126})
    assert lookahead_check(eng, panel, alloc, sel, Synthesizer(), n_dates=2, seed=1) == 6
    assert sel.panels and all(p.served > 0 for p in sel.panels)              # every run read its features from the panel
    rolled = eng.run(panel, alloc, _PanelSelection(universe={"window": 126}), Synthesizer())
    per_fold = eng.run(panel, alloc, _PanelSelection(universe={"window": 126}, with_panel=False), Synthesizer())
    assert np.abs(rolled.weights.to_numpy() - per_fold.weights.to_numpy()).max() < 1e-12
    assert np.abs(rolled.returns.to_numpy() - per_fold.returns.to_numpy()).max() < 1e-12


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


@pytest.mark.parametrize("alloc", [MinVariance(), HRP(), AllocationPipeline(ERC(), max_weight=0.2, gross_limit=0.9)], ids=repr)
def test_with_a_purge(alloc):
    "purge=5: the check (future perturbed at every checked decision date) passes, and the windows did move."
    eng = BacktestEngine(126, 21, purge=5, cost_bps=5.0, lag=1)
    assert all(s - b == 5 for a, b, s, e in eng.folds(len(PANEL)))
    assert lookahead_check(eng, PANEL, alloc, n_dates=4, seed=3) == 12


def _purged_rows_read(eng, panel, alloc, selector=None, synthesizer=None, folds=(1, 5, 9), kinds=("nan", "huge", "shuffle"),
                      like=None):
    "Perturb every row from fold f's training end on (its purged rows, then the future): the (f, kind) whose decisions ≤ f changed.\n\n    `like`: the engine whose training ends are perturbed from (default `eng`)."
    clean = eng.run(panel, alloc, selector, synthesizer)
    ends = [b for a, b, s, e in (like or eng).folds(len(panel))]
    changed = []
    for f in folds:
        for kind in kinds:
            garbage = perturb_future(panel, panel.index[ends[f]], kind, seed=f)
            dirty = eng._run(eng._check_returns(garbage, domain=False), alloc, selector, synthesizer)
            if clean.weights.to_numpy()[:f + 1].tobytes() != dirty.weights.to_numpy()[:f + 1].tobytes():
                changed.append((f, kind))
    return changed


@pytest.mark.parametrize("alloc", [MinVariance(), HRP(), ERC()], ids=repr)
def test_a_decision_never_reads_its_purged_rows(alloc):
    "The decision at row s reads rows before s − purge only: garbage in the purged rows [s − purge, s) changes nothing."
    eng = BacktestEngine(126, 21, purge=5, cost_bps=5.0)
    assert _purged_rows_read(eng, PANEL, alloc) == []
    # the same decision dates, training through the purged rows (train=131, no purge): the same garbage is read
    assert _purged_rows_read(BacktestEngine(131, 21, cost_bps=5.0), PANEL, alloc, kinds=("huge",), like=eng) == [(1, "huge"), (5, "huge"), (9, "huge")]


def test_selection_and_synthesis_never_read_the_purged_rows():
    panel = synthetic_returns(520, 20, n_clusters=4, seed=8, gap_share=0.002, listings={"EX:A19": 300})
    eng = BacktestEngine(126, 42, purge=10, warmup=63, cost_bps=5.0)
    assert _purged_rows_read(eng, panel, HRP(), SelectionPipeline(), Synthesizer(), folds=(1, 4), kinds=("huge",)) == []
    reads = BacktestEngine(136, 42, warmup=63, cost_bps=5.0)          # the same decision dates, no purge: the garbage is read
    assert _purged_rows_read(reads, panel, HRP(), SelectionPipeline(), Synthesizer(), folds=(1, 4), kinds=("huge",), like=eng) != []


def _forbidden(n, N, k, P, E, combo):
    "Rows a CPCV split must not read, from the definition: its test folds, P rows before each test group, P + E after it."
    m = n // N
    bounds = [(g * m, (g + 1) * m if g < N - 1 else n) for g in range(N)]
    bad = set()
    for g in combo:
        lo, hi = bounds[g]
        bad |= set(range(lo, hi))
        if g > 0 and g - 1 not in combo: bad |= set(range(lo - P, lo))
        if g < N - 1 and g + 1 not in combo: bad |= set(range(hi, hi + P + E))
    return sorted(bad)


def _garbage(panel, rows, kind, seed):
    vals = panel.to_numpy(copy=True)
    rng = np.random.default_rng(seed)
    if kind == "nan": vals[rows] = np.nan
    elif kind == "huge": vals[rows] = rng.choice([-1e12, 1e12], size=(len(rows), vals.shape[1]))
    else: vals[rows] = rng.permutation(vals[rows])[:, rng.permutation(vals.shape[1])]
    return pd.DataFrame(vals, index=panel.index, columns=panel.columns)


@pytest.mark.parametrize("alloc", [MinVariance(), HRP(), AllocationPipeline(ERC(), max_weight=0.2, gross_limit=0.9)], ids=repr)
def test_cpcv_decision_never_reads_its_test_groups_purged_or_embargoed_rows(alloc):
    "Garbage in a split's test groups, purged and embargoed rows leaves its decision bitwise; garbage in one training row does not."
    from itertools import combinations
    from tradingview_scraper.backtest.cpcv import CombinatorialPurgedCV
    panel, (N, k, P, E) = synthetic_returns(600, 10, n_clusters=3, seed=31), (6, 2, 6, 4)    # every row used by every fit
    cv, eng = CombinatorialPurgedCV(N, k, purged_size=P, embargo_size=E), BacktestEngine(cost_bps=5.0, lag=1)
    clean = eng.run_cpcv(panel, alloc, cv).weights.to_numpy()
    for i, combo in enumerate(combinations(range(N), k)):
        bad = _forbidden(len(panel), N, k, P, E, combo)
        for kind in ("nan", "huge", "shuffle"):
            dirty = eng._run_cpcv(eng._check_returns(_garbage(panel, bad, kind, i), domain=False), alloc, cv)
            assert dirty.weights.to_numpy()[i].tobytes() == clean[i].tobytes(), (i, combo, kind)
        edge = [r for r in range(len(panel)) if r not in set(bad) and (r + 1 in bad or r - 1 in bad)][:1]   # a training row next to them
        nudged = panel.copy()
        nudged.iloc[edge] += 0.05
        dirty = eng.run_cpcv(nudged, alloc, cv)
        assert dirty.weights.to_numpy()[i].tobytes() != clean[i].tobytes(), (i, combo, "a training row must matter")
