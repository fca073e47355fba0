"""Pending suspect bars at fold boundaries: a crash on the last training row is confirmed only by the bar at the decision
time, so a load made at that time (production) holds it as unconfirmed. With `confirmed=` the engine decides exactly as
that load would (`hold_pending`), the reference engine agrees (1e-10), the decisions at those boundaries — and only
those — differ from the un-held ones, and a decision at t computed from a real load ending at t (`DataLoader.as_of`,
real Parquet) is bitwise the full-history decision. Every check here also runs with the masking broken, and fails."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from tradingview_scraper.backtest import engine as E
from tradingview_scraper.backtest.engine import BacktestEngine, as_of_check, lookahead_check, parity_gap, pending_holds
from tradingview_scraper.backtest.reference import reference_backtest, synthetic_returns
from tradingview_scraper.core import ContractError, LookAheadError
from tradingview_scraper.data.lakehouse import Lakehouse
from tradingview_scraper.data.loader import DataLoader, hold_pending
from tradingview_scraper.pipelines.allocation import (ERC, HRP, AllocationPipeline, EqualWeight, InverseVolatility, MaxSharpe,
                                                      MinVariance)

TOL = 1e-10
L, H = 126, 21


def _plant(frame, cells, gap=0):
    "`frame` with a −70% crash at each (row, column), `gap` missing rows after it, and the `LoadReport.confirmed` of it."
    out, rows = frame.copy(), []
    for r, j in cells:
        out.iloc[r, j] = -0.7
        out.iloc[r + 1:r + 1 + gap, j] = np.nan
        rows.append((frame.columns[j], frame.index[r], np.log(0.3), frame.index[r + 1 + gap]))
    return out, pd.DataFrame(rows, columns=["symbol", "ts", "value", "confirmed_at"])


def _panel():
    "Crashes on the last training row of five folds (two on one), one followed by a gap, one mid-window (not pending)."
    p = synthetic_returns(560, 8, n_clusters=2, seed=31, gap_share=0.002, listings={"EX:A7": 150})
    ends = [b for a, b, s, e in BacktestEngine(L, H).folds(len(p))]
    p, c1 = _plant(p, [(ends[1] - 1, 2), (ends[4] - 1, 0), (ends[4] - 1, 5), (ends[8] - 1, 6), (ends[3] - 9, 4)])
    p, c2 = _plant(p, [(ends[6] - 2, 3)], gap=1)
    return p, pd.concat([c1, c2], ignore_index=True), ends


PANEL, CONFIRMED, ENDS = _panel()
BOUNDARIES = [PANEL.index[ENDS[f]] for f in (1, 4, 6, 8)]


class TopK:
    "A selector with the documented result shape: the k best trailing means among columns complete in the view."
    def __init__(self, k): self.k = k
    def run(self, view, candidates=None):
        f = view.frame.dropna(axis=1)
        win = list(f.mean().sort_values(ascending=False, kind="stable").index[:self.k])
        return SimpleNamespace(winners=win, clusters=pd.Series([i % 2 for i in range(len(win))], index=win))


class SignAtoms:
    "A synthesizer: one atom per asset, inverted when its trailing mean is negative (NaN kept)."
    def run(self, view, assets, directions=None, logics=None):
        f = view.frame[assets]
        sign = np.where(f.mean() >= 0, 1.0, -1.0)
        atoms = [f"{a}|{'L' if s > 0 else 'S'}" for a, s in zip(assets, sign)]
        return SimpleNamespace(returns=pd.DataFrame(f.to_numpy() * sign, index=f.index, columns=atoms), atoms=atoms,
                               composition=pd.DataFrame(np.diag(sign), index=atoms, columns=assets))


def test_the_panel_plants_what_it_claims():
    "Pending cells: exactly the boundary crashes (the gap one included), never the mid-window one."
    holds = pending_holds(CONFIRMED, PANEL.index, PANEL.columns, ENDS)
    pending = {f: sorted(zip(h[0].tolist(), h[1].tolist())) for f, h in enumerate(holds) if h is not None}
    assert pending == {1: [(ENDS[1] - 1, 2)], 4: [(ENDS[4] - 1, 0), (ENDS[4] - 1, 5)], 6: [(ENDS[6] - 2, 3)], 8: [(ENDS[8] - 1, 6)]}
    assert BacktestEngine(L, H).run(PANEL, HRP(), confirmed=CONFIRMED).conventions["pending_held"] == 5


ALLOCATORS = {"hrp": HRP(), "min_variance": MinVariance(), "inverse_vol": InverseVolatility(), "erc": ERC(), "max_sharpe": MaxSharpe(),
              "long_short": AllocationPipeline(MinVariance(long_only=False), gross_limit=1.5, net_limit=0.8)}
SETTINGS = [dict(cost_bps=10.0, lag=1), dict(holding="fixed", anchored=True), dict(step=15, cost_bps=5.0), dict(workspace=False, lag=2)]


@pytest.mark.parametrize("name", list(ALLOCATORS))
def test_engine_matches_reference_with_pending_bars(name):
    alloc = ALLOCATORS[name]
    for kw in SETTINGS:
        ref_kw = {k: v for k, v in kw.items() if k != "workspace"}
        fast = BacktestEngine(L, H, **kw).run(PANEL, alloc, confirmed=CONFIRMED)
        ref = reference_backtest(PANEL, alloc, train=L, test=H, confirmed=CONFIRMED, **ref_kw)
        assert parity_gap(fast, ref) < TOL, (name, kw)
        assert [f[1:] for f in fast.fallbacks] == [f[1:] for f in ref.fallbacks]


@pytest.mark.parametrize("alloc", [HRP(), ERC(), AllocationPipeline(MinVariance(), max_weight=0.5, cluster_cap=0.8)], ids=repr)
def test_selection_and_synthesis_views_hold_too(alloc):
    "Selection and synthesis (with warmup) read held windows: parity with the reference, and the boundaries change."
    kw = dict(warmup=42, cost_bps=5.0)
    fast = BacktestEngine(L, H, **kw).run(PANEL, alloc, TopK(4), SignAtoms(), confirmed=CONFIRMED)
    ref = reference_backtest(PANEL, alloc, TopK(4), SignAtoms(), train=L, test=H, confirmed=CONFIRMED, **kw)
    assert parity_gap(fast, ref) < TOL
    seen = BacktestEngine(L, H, **kw).run(PANEL, alloc, TopK(4), SignAtoms())
    changed = (fast.weights != seen.weights).any(axis=1)
    assert set(changed.index[changed]) <= set(BOUNDARIES) and changed.sum() >= 1


def test_every_decision_reads_what_hold_pending_gives():
    "Each decision equals, bit for bit, the decision of a run on `hold_pending(returns, confirmed, t)` — in every path."
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(2) as pool:
        engines = [BacktestEngine(L, H), BacktestEngine(L, H, workspace=False), BacktestEngine(L, H, map_fn=pool.map, n_batches=3, poison=True)]
        for eng in engines:
            held = eng.run(PANEL, HRP(), confirmed=CONFIRMED)
            for t in BOUNDARIES + [PANEL.index[ENDS[2]]]:
                alone = eng.run(hold_pending(PANEL, CONFIRMED, t), HRP())
                assert held.weights.loc[t].to_numpy().tobytes() == alone.weights.loc[t].to_numpy().tobytes(), t
    sel = BacktestEngine(L, H, warmup=42).run(PANEL, ERC(), TopK(4), SignAtoms(), confirmed=CONFIRMED)
    for t in BOUNDARIES:
        alone = BacktestEngine(L, H, warmup=42).run(hold_pending(PANEL, CONFIRMED, t), ERC(), TopK(4), SignAtoms())
        assert sel.weights.loc[t].to_numpy().tobytes() == alone.weights.loc[t].to_numpy().tobytes(), t


def test_boundary_decisions_differ_from_the_unheld_ones_and_the_crash_is_earned():
    eng = BacktestEngine(L, H, cost_bps=5.0)
    held, seen = eng.run(PANEL, HRP(), confirmed=CONFIRMED), eng.run(PANEL, HRP())
    changed = (held.weights != seen.weights).any(axis=1)
    assert list(changed.index[changed]) == [BOUNDARIES[i] for i in (0, 1, 3)]     # the gap crash: excluded either way
    for t, col in ((BOUNDARIES[0], "EX:A2"), (BOUNDARIES[1], "EX:A0"), (BOUNDARIES[3], "EX:A6")):
        assert held.weights.loc[t, col] == 0.0 and seen.weights.loc[t, col] > 0, (t, col)
        assert col in held.excluded[t] and col not in seen.excluded.get(t, {})
    first = BOUNDARIES[0]
    before = held.returns.index < first
    assert held.returns[before].to_numpy().tobytes() == seen.returns[before].to_numpy().tobytes()
    crash_day = PANEL.index[ENDS[1] - 1]
    assert held.returns.loc[crash_day] < -0.02                                      # the crash is earned, not held


def test_no_pending_bars_change_nothing_bitwise():
    eng = BacktestEngine(L, H, cost_bps=5.0)
    base = eng.run(PANEL, HRP())
    mid_window_only = CONFIRMED[CONFIRMED["ts"] == PANEL.index[ENDS[3] - 9]]
    for c in (None, CONFIRMED.iloc[:0], mid_window_only, CONFIRMED.assign(symbol="EX:NOPE")):
        r = eng.run(PANEL, HRP(), confirmed=c)
        assert r.weights.to_numpy().tobytes() == base.weights.to_numpy().tobytes()
        assert r.returns.to_numpy().tobytes() == base.returns.to_numpy().tobytes()


def test_bad_confirmed_is_refused_by_name():
    eng = BacktestEngine(L, H)
    with pytest.raises(ContractError, match="missing \\['confirmed_at'\\]"):
        eng.run(PANEL, HRP(), confirmed=CONFIRMED.drop(columns="confirmed_at"))
    with pytest.raises(ContractError, match="UTC timestamps"):
        eng.run(PANEL, HRP(), confirmed=CONFIRMED.assign(confirmed_at=CONFIRMED["confirmed_at"].dt.tz_localize(None)))
    with pytest.raises(ContractError, match="after the suspect bar"):
        eng.run(PANEL, HRP(), confirmed=CONFIRMED.assign(confirmed_at=CONFIRMED["ts"]))
    with pytest.raises(ContractError, match="LoadReport.confirmed"):
        eng.run(PANEL, HRP(), confirmed=[("EX:A0", PANEL.index[3])])


def test_lookahead_check_with_pending_bars():
    "Perturbing the future (returns and the confirmations after t) at the boundaries changes no earlier decision."
    eng = BacktestEngine(L, H, cost_bps=5.0, lag=1)
    assert lookahead_check(eng, PANEL, HRP(), confirmed=CONFIRMED, dates=BOUNDARIES) == 12
    assert lookahead_check(eng, PANEL, ERC(), TopK(4), SignAtoms(), confirmed=CONFIRMED, dates=BOUNDARIES[:2], kinds=("huge",)) == 2


def test_lookahead_check_catches_a_decision_that_knows_when_a_bar_will_be_confirmed(monkeypatch):
    "An engine that holds a bar only when its confirmation is more than 3 days away reads the future: caught."
    honest = E.pending_holds
    def leaky(confirmed, index, columns, decisions):
        if confirmed is None or not len(confirmed): return honest(confirmed, index, columns, decisions)
        out = []
        for b, h in zip(decisions, honest(confirmed, index, columns, decisions)):
            soon = confirmed["confirmed_at"] - index[b] <= pd.Timedelta(days=3)
            out.append(h if soon.all() else None)
        return out
    monkeypatch.setattr(E, "pending_holds", leaky)
    with pytest.raises(LookAheadError, match="changed when the future was perturbed"):
        lookahead_check(BacktestEngine(L, H), PANEL, HRP(), confirmed=CONFIRMED, dates=BOUNDARIES, kinds=("nan",))


# --- production equals backtest on a real lakehouse

def _bars(closes:pd.Series) -> pd.DataFrame:
    c = closes.to_numpy()
    o = np.r_[c[0], c[:-1]]
    return pd.DataFrame({"ts": closes.index, "open": o, "high": np.maximum(o, c) * 1.001, "low": np.minimum(o, c) * 0.999,
                         "close": c, "volume": 1e6})


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """Six symbols of daily bars. On the last bar before three fold boundaries a symbol crashes −70% and stays down
    (confirmed by the boundary bar), one crash is followed by a missing bar, and one symbol prints a single-bar ×3 spike
    that reverts at the boundary (a print error). Returns the lakehouse, the loaded full history and the boundaries."""
    root = tmp_path_factory.mktemp("pending")
    r = synthetic_returns(460, 6, n_clusters=2, seed=3, prefix="NYSE:S")
    days = pd.bdate_range("2020-01-01", periods=len(r) + 1, tz="UTC")          # bar 0 has no return
    ends = [b for a, b, s, e in BacktestEngine(L, H).folds(len(days))]
    closes = 100 * np.vstack([np.ones(6), np.cumprod(1 + r.to_numpy(), axis=0)])
    crashes = {1: (ends[1] - 1, 0), 4: (ends[4] - 1, 3), 7: (ends[7] - 1, 5)}
    for r_, j in crashes.values(): closes[r_:, j] *= 0.3
    spike = (ends[5] - 1, 2)
    closes[spike] *= 3.0
    gap = (ends[9] - 2, 4)                                   # crash, then no bar: pending on two training rows' worth
    closes[gap[0]:, gap[1]] *= 0.3
    lh = Lakehouse(root / "lake")
    for j, sym in enumerate(r.columns):
        s = pd.Series(closes[:, j], index=days)
        if j == gap[1]: s = s.drop(days[gap[0] + 1])
        lh.write_ohlcv(sym, _bars(s))
    loader = DataLoader(lh, record_quarantine=False)
    full = loader.load()
    return SimpleNamespace(loader=loader, full=full, crashes=crashes, spike=spike, gap=gap, ends=ends, days=days)


def test_the_lakehouse_confirms_the_planted_crashes(lake):
    rep, R = lake.full.report, lake.full.returns
    got = set(zip(rep.confirmed["symbol"], rep.confirmed["ts"], rep.confirmed["confirmed_at"]))
    want = {(R.columns[j], lake.days[row], lake.days[row + 1]) for row, j in lake.crashes.values()}
    want.add((R.columns[lake.gap[1]], lake.days[lake.gap[0]], lake.days[lake.gap[0] + 2]))
    assert got == want
    assert np.isnan(R.loc[lake.days[lake.spike[0]], R.columns[lake.spike[1]]])          # the spike is a print error
    assert len(rep.unconfirmed) == 0


@pytest.mark.parametrize("alloc", [HRP(), MinVariance(long_only=False), EqualWeight()], ids=repr)
def test_a_decision_from_a_load_ending_at_t_equals_the_backtest_decision(lake, alloc):
    R, conf = lake.full.returns, lake.full.report.confirmed
    eng = BacktestEngine(L, H, cost_bps=5.0)
    assert R.index[L] == lake.days[L]                                                   # rows = bars (the first return is NaN)
    load_until = lambda t: lake.loader.as_of(t)
    boundaries = [lake.days[lake.ends[f]] for f in (1, 4, 5, 7, 9)]
    assert as_of_check(eng, R, conf, load_until, alloc, dates=boundaries) == 5
    assert as_of_check(eng, R, conf, load_until, alloc) == 4                             # default: the dates with a pending bar
    if not isinstance(alloc, EqualWeight):
        assert as_of_check(eng, R, conf, load_until, alloc, TopK(3), SignAtoms(), dates=boundaries[:2]) == 2


def test_without_confirmed_the_backtest_is_not_what_production_decided(lake):
    R, conf = lake.full.returns, lake.full.report.confirmed
    eng = BacktestEngine(L, H)
    with pytest.raises(LookAheadError, match="from a load ending at .* differs from the backtest's"):
        as_of_check(eng, R, conf.iloc[:0], lambda t: lake.loader.as_of(t), HRP(), dates=[lake.days[lake.ends[1]]])


def test_the_check_fails_when_the_engine_masking_is_broken(monkeypatch, lake):
    "Teeth kept in the suite: with `_hold` a no-op every path reads the crash and both checks say so."
    R, conf = lake.full.returns, lake.full.report.confirmed
    monkeypatch.setattr(E, "_hold", lambda window, hold, lo: window)
    with pytest.raises(LookAheadError):
        as_of_check(BacktestEngine(L, H), R, conf, lambda t: lake.loader.as_of(t), HRP(), dates=[lake.days[lake.ends[1]]])
    fast = BacktestEngine(L, H).run(PANEL, HRP(), confirmed=CONFIRMED)
    assert parity_gap(fast, reference_backtest(PANEL, HRP(), train=L, test=H, confirmed=CONFIRMED)) > 1e-3
