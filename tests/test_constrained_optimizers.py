"""Constraints solved inside the optimizers (issue 16 §3), beyond the chapter's worked cases.

Randomized problems with streams ≠ assets (atoms, SHORT ones included): every optimizer's cone program meets its KKT
conditions, the pipeline's weights satisfy every constraint on the asset book, and the backtest engine decides a
turnover-aware pipeline in order with each trade within its budget against the drifted holdings.
"""
import numpy as np
import pandas as pd
import pytest

from tradingview_scraper.backtest.engine import BacktestEngine
from tradingview_scraper.backtest.reference import synthetic_returns
from tradingview_scraper.pipelines.allocation import ERC, HRP, AllocationPipeline, FreshBuffers, MaxSharpe, MinVariance
from tradingview_scraper.pipelines.constrained import (binding, kkt_residuals, max_sharpe_program, min_variance_program,
                                                       risk_budgeting_program, solve_program)
from tradingview_scraper.pipelines.constraints import DecisionContext
from tradingview_scraper.pipelines.solvers import _erc


def _book(seed: int):
    "Streams on assets: one LONG atom per asset, plus SHORT atoms on a few; sectors per asset; drifted holdings."
    rng = np.random.default_rng(seed)
    n_assets = int(rng.integers(6, 10))
    assets = [f"EX:A{j}" for j in range(n_assets)]
    shorts = sorted(rng.choice(n_assets, size=2, replace=False).tolist())
    raw = synthetic_returns(252, n_assets, n_clusters=2, seed=seed, drift=0.0004)
    streams = pd.concat([raw.set_axis([f"{a}|hold|LONG" for a in assets], axis=1),
                         -raw.iloc[:, shorts].mul(rng.random((len(raw), 2)) < 0.6)     # a logic that is in the market 60% of days
                         .set_axis([f"{assets[j]}|mom|SHORT" for j in shorts], axis=1)], axis=1)
    comp = np.vstack([np.eye(n_assets), -np.eye(n_assets)[shorts]])
    composition = pd.DataFrame(comp, index=streams.columns, columns=assets)
    sectors = pd.Series([f"s{j % 3}" for j in range(n_assets)], index=assets)
    held = rng.dirichlet(np.ones(n_assets)) * 1.1 - 0.1 / n_assets
    return streams, composition, sectors, held


def _check_book(a: np.ndarray, sectors: pd.Series, held: np.ndarray, kw: dict):
    if kw.get("max_weight") is not None: assert np.abs(a).max() <= kw["max_weight"] + 1e-9
    if kw.get("sector_cap") is not None:
        assert np.abs(pd.Series(a, index=sectors.index).groupby(sectors).sum()).max() <= kw["sector_cap"] + 1e-9
    if kw.get("turnover") is not None: assert np.abs(a - held).sum() <= kw["turnover"] + 1e-9


TIGHT = [dict(max_weight=0.18), dict(sector_cap=0.36), dict(turnover=0.2)]
CASES = [dict(max_weight=0.3), dict(sector_cap=0.45), dict(turnover=0.3), dict(max_weight=0.3, sector_cap=0.45, turnover=0.5)]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kw", CASES, ids=lambda kw: "+".join(kw))
def test_kkt_and_feasibility_with_atoms(seed, kw):
    streams, composition, sectors, held = _book(seed)
    ctx = DecisionContext(previous=held, sectors=sectors)
    values = streams.to_numpy()
    cov, mu = np.cov(values, rowvar=False), values.mean(axis=0)
    x = _erc(cov, FreshBuffers())
    for alloc in (MinVariance(), MaxSharpe(), ERC()):
        pipe = AllocationPipeline(alloc, **kw)
        res = pipe.run(streams, composition, context=ctx)
        if res.method != "requested": continue                       # e.g. no positive mean: the chain's business
        _check_book(res.asset_weights.to_numpy(), sectors, held, kw)
        cons = pipe._constraints(values, composition.to_numpy(), None, ctx, composition.columns)
        if res.fallbacks and res.fallbacks[0][0] == "caps":          # the constraints held less than the budget
            continue
        prog = {"min_variance": lambda: min_variance_program(cov, cons),
                "max_sharpe": lambda: max_sharpe_program(cov, mu, cons),
                "erc": lambda: risk_budgeting_program(cov, cons, float(x @ cov @ x))}[alloc.name]()
        sol = solve_program(prog)
        assert max(kkt_residuals(prog, sol).values()) < 1e-8, (alloc.name, kkt_residuals(prog, sol))
        z = sol.z[:values.shape[1]]
        if alloc.name == "max_sharpe": z = z / sol.z[prog.layout["kappa"]][0]
        assert np.abs(res.atom_weights.to_numpy() - np.where(z < 1e-11, 0.0, z)).max() < 1e-7


def test_every_constraint_binds_somewhere_with_atoms():
    "Caps set just below each optimizer's free solution on the asset book: each kind binds (positive multiplier at its bound)."
    for seed in range(3):
        streams, composition, sectors, held = _book(seed)
        values = streams.to_numpy()
        cov, mu = np.cov(values, rowvar=False), values.mean(axis=0)
        x = _erc(cov, FreshBuffers())
        M, codes = composition.to_numpy().T, pd.factorize(sectors)[0]
        ctx = DecisionContext(previous=held, sectors=sectors)
        progs = {"min_variance": lambda c: min_variance_program(cov, c), "max_sharpe": lambda c: max_sharpe_program(cov, mu, c),
                 "erc": lambda c: risk_budgeting_program(cov, c, float(x @ cov @ x))}
        for name, prog in progs.items():
            free = AllocationPipeline(MinVariance())._constraints(values, M.T, None, ctx, composition.columns)
            sol = solve_program(prog(free))
            z = sol.z[:values.shape[1]] / (sol.z[prog(free).layout["kappa"]][0] if name == "max_sharpe" else 1.0)
            a = M @ z
            kws = {"max_weight": dict(max_weight=0.9 * np.abs(a).max()),
                   "sector_cap": dict(sector_cap=0.95 * np.abs(np.bincount(codes, weights=a)).max()),
                   "turnover": dict(turnover=0.5 * np.abs(a - held).sum())}
            for kind, kw in kws.items():
                cons = AllocationPipeline(MinVariance(), **kw)._constraints(values, M.T, None, ctx, composition.columns)
                p = prog(cons)
                s = solve_program(p)
                assert max(kkt_residuals(p, s).values()) < 1e-8, (seed, name, kind)
                assert binding(p, s).get(kind, 0.0) > 1e-7, (seed, name, kind, binding(p, s))


@pytest.mark.parametrize("alloc", [MinVariance(), ERC(), HRP()], ids=lambda a: a.name)
def test_engine_decides_a_turnover_budget_in_order(alloc):
    "Each trade's one-way turnover against the drifted holdings is within the budget; from cash the budget is what gets invested."
    X = synthetic_returns(420, 6, n_clusters=2, seed=3, drift=0.0005)
    pipe = AllocationPipeline(alloc, turnover=0.25)
    assert pipe.needs_holdings
    res = BacktestEngine(126, 21).run(X, pipe)
    assert (res.turnover.to_numpy() <= 0.25 + 1e-9).all()
    assert res.turnover.to_numpy().max() > 0.25 - 1e-6                  # the budget binds
    np.testing.assert_allclose(res.weights.iloc[0].sum(), 0.25, atol=1e-9)   # first decision from cash
