"""Parity of the cost models (`backtest.costs`) with cvxportfolio 1.5.1's `TransactionCost`, in daily returns, to 1e-6.

cvxportfolio is GPLv3 and a test-only dependency: it is imported here and never by the library (the last test checks it).

Conventions, side by side (what each side is given so that both compute the same thing):

| | tradingview_scraper | cvxportfolio 1.5.1 |
|---|---|---|
| returns | `values[t]`, the return earned on row t by what is held after row t's trade | `returns` at t (open-to-open: trade at t, then earn r_t) |
| cash | the weight not invested, earns 0 | a `cash` column of 0 returns, `cash_key="cash"` |
| costs | paid from cash at the trade: net_t = gross_t − cost_t (fraction of the equity before the trade) | `MarketSimulator` debits each cost from the cash account before the period's return |
| linear | commission a_i (cost_bps, or commission_by_class) + half-spread s_i, × abs(z_i) | `TransactionCost(a=a_i + s_i)` |
| impact | b·σ_i·abs(z_i)^e·(V/ADV_i)^(e−1) | `TransactionCost(b=b, exponent=e, sigma=DataFrame)`: b·σ·abs(z)^e / ((V_mkt + 1e-8)/V)^(e−1) |
| σ | std (ddof 1) of the fold's training returns (`CostModel.fit`) | `sigma=` DataFrame: our σ of the fold on every row of its period |
| volume | ADV: mean dollar volume of the fold's training rows | the market data's `volumes` on every row of the fold's period = our ADV (in simulation cvxportfolio uses the market's realized volume, not `volume_hat`, which it refuses) |
| V | `CostParams.capital` × the equity level before the trade | `initial_value` × growth; the portfolio value before the trade |
| fixed weights | `holding="fixed"`: every row re-trades to the target, z = w − drifted w | `FixedWeights(DataFrame)` with the fold's target on every row |
| drift | `holding="drift"`: trade at the fold's first row only | `FixedWeights(DataFrame)` with rows only at the trade rows (no row: no trade) |
| daily return | `Simulation.net[t − start]` | `BacktestResult.returns` at t = v_{t+1} / v_t − 1 |

The kernel-level test runs our cost objects (`CostModel.trade_costs`) in a plain per-day loop of this file; the
simulate-level test runs `backtest.simulation.simulate(..., model=, fitted=)`.
"""
from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from tradingview_scraper.backtest.costs import COST_KINDS, CostModel, CostParams
from tradingview_scraper.backtest.simulation import simulate

with warnings.catch_warnings():
    warnings.simplefilter("ignore")     # cvxportfolio 1.5.1's own pandas deprecation warnings, at import
    import cvxportfolio as cvx          # test-only (GPLv3), pinned in settings.ini dev_requirements


N_ROWS, TRAIN, TEST = 361, 120, 60          # one row more than simulated: cvxportfolio does not simulate the last row
COLUMNS = pd.Index(["X:AAA", "X:BBB", "X:CCC", "X:DDD"])
CLASSES = pd.Series({"X:AAA": "stock", "X:BBB": "crypto", "X:CCC": "stock", "X:DDD": "crypto"})
CAPITAL = 1e6
LINEAR_BPS = [10.0 + 1.5, 4.0 + 1.5, 10.0 + 3.0, 4.0 + 1.5]   # commission (cost_bps 10, crypto 4) + half-spread (1.5, X:CCC 3)


def _market(seed: int = 0):
    "Returns (rows × 4, no NaN), dollar volumes (order 10⁷ per row, so a 10⁶ book trades a few % of it), the folds."
    g = np.random.default_rng(seed)
    values = g.normal(0.0004, 0.02, (N_ROWS, len(COLUMNS))) * np.array([1.0, 2.0, 0.7, 1.5])
    dollar_volume = g.lognormal(16.0, 0.6, values.shape) * np.array([1.0, 0.3, 2.0, 0.5])
    starts = range(TRAIN, N_ROWS - 1, TEST)
    folds = [(s - TRAIN, s, s, min(s + TEST, N_ROWS - 1)) for s in starts]
    targets = np.array([[0.30, 0.25, 0.20, 0.15], [0.50, 0.40, -0.20, 0.20], [0.10, 0.60, 0.20, 0.05],
                        [0.25, 0.25, 0.25, 0.25]])[:len(folds)]
    return values, dollar_volume, folds, targets


def _model(exponent: float, impact_window: int | None = None) -> CostModel:
    params = CostParams(commission_by_class={"crypto": 4.0}, half_spread_bps=1.5, half_spread={"X:CCC": 3.0},
                        impact="power", impact_coef=0.8, impact_exponent=exponent, impact_window=impact_window,
                        capital=CAPITAL)
    return CostModel.from_params(params, 10.0, COLUMNS, 252, CLASSES)


def _per_row(fitted_values: np.ndarray, folds, n_rows: int) -> np.ndarray:
    "A fold's estimate on every row of its period (before the first fold: the first fold's)."
    out = np.repeat(fitted_values[:1], n_rows, axis=0)
    for f, (_, _, s, e) in enumerate(folds):
        out[s:e if f + 1 < len(folds) else n_rows] = fitted_values[f]
    return out


def _cvxportfolio(values, folds, targets, fitted, model: CostModel, holding: str) -> tuple[pd.Series, pd.Series]:
    "cvxportfolio's daily returns and its TransactionCost per row (currency) on the same data and estimates."
    index = pd.bdate_range("2020-01-01", periods=N_ROWS, tz="UTC")
    returns = pd.DataFrame(values, index, COLUMNS).assign(cash=0.0)
    volumes = pd.DataFrame(_per_row(fitted.adv, folds, N_ROWS), index, COLUMNS)
    sigma = pd.DataFrame(_per_row(fitted.sigma, folds, N_ROWS), index, COLUMNS)
    a = pd.Series(LINEAR_BPS, COLUMNS) / 1e4                                   # commission + half-spread, from the profile
    start, end = folds[0][2], folds[-1][3]
    rows = [r for f, (_, _, s, e) in enumerate(folds) for r in (range(s, e) if holding == "fixed" else [s])]
    fold_of = {r: f for f, (_, _, s, e) in enumerate(folds) for r in range(s, e)}
    weights = pd.DataFrame([np.append(targets[fold_of[r]], 1.0 - targets[fold_of[r]].sum()) for r in rows],
                           index=index[rows], columns=list(COLUMNS) + ["cash"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # cvxportfolio's own deprecation warnings (pandas)
        market = cvx.UserProvidedMarketData(returns=returns, volumes=volumes, cash_key="cash", min_history=pd.Timedelta(0))
        cost = cvx.TransactionCost(a=a, b=model.impact.coef, sigma=sigma, exponent=model.impact.exponent)
        result = cvx.MarketSimulator(market_data=market, costs=[cost]).backtest(
            cvx.FixedWeights(weights), start_time=index[start], end_time=index[end], initial_value=CAPITAL)
    return result.returns, result.costs["TransactionCost"].reindex(result.returns.index)   # its last row is the final log (NaN)


def _kernel_loop(values, folds, targets, fitted, model: CostModel, holding: str) -> tuple[np.ndarray, np.ndarray]:
    "Our cost kernels in a plain per-day loop under the conventions above: (daily net returns, daily costs × 5)."
    start, end = folds[0][2], folds[-1][3]
    h, cash, net, kinds = np.zeros(len(COLUMNS)), CAPITAL, [], []
    for f, (_, _, s, e) in enumerate(folds):
        for t in range(s, e):
            v = cash + h.sum()
            trade = holding == "fixed" or t == s
            z = targets[f] - h / v if trade else np.zeros(len(COLUMNS))
            c = model.trade_costs(z, v, fitted, f)[0]
            h = h + z * v
            cash = cash - (z * v).sum() - c.sum() * v
            h = h * (1.0 + values[t])
            net.append((cash + h.sum()) / v - 1.0)
            kinds.append(c)
    assert len(net) == end - start
    return np.array(net), np.array(kinds)


CASES = [("fixed", 1.5, None), ("drift", 1.5, None), ("fixed", 2.0, 40), ("drift", 1.6, 40)]


@pytest.mark.parametrize("holding,exponent,window", CASES)
def test_cost_kernels_match_cvxportfolio(holding, exponent, window):
    "Commission + half-spread + power-law impact in our per-day loop = cvxportfolio's MarketSimulator, to 1e-6 a day."
    values, dollar_volume, folds, targets = _market()
    model = _model(exponent, window)
    fitted = model.fit(values, dollar_volume, model.windows(folds))
    theirs, their_costs = _cvxportfolio(values, folds, targets, fitted, model, holding)
    ours, kinds = _kernel_loop(values, folds, targets, fitted, model, holding)
    assert len(theirs) == len(ours) == folds[-1][3] - folds[0][2]
    assert np.abs(ours - theirs.to_numpy()).max() < 1e-6
    equity = CAPITAL * np.concatenate([[1.0], np.cumprod(1.0 + ours)[:-1]])
    assert np.allclose(kinds.sum(axis=1) * equity, their_costs.to_numpy(), rtol=1e-9, atol=1e-6)   # currency per row
    # the costs are material (the parity is not 0 = 0): impact and the linear terms each cost more than 1e-6 a day on average
    assert kinds[:, COST_KINDS.index("impact")].mean() > 1e-6
    assert kinds[:, COST_KINDS.index("commission")].mean() > 1e-6
    assert kinds[:, COST_KINDS.index("spread")].mean() > 1e-6


@pytest.mark.parametrize("holding,exponent,window", CASES)
def test_simulate_matches_cvxportfolio(holding, exponent, window):
    "`simulate(..., model=, fitted=)` = cvxportfolio's MarketSimulator in daily returns, to 1e-6."
    values, dollar_volume, folds, targets = _market()
    model = _model(exponent, window)
    fitted = model.fit(values, dollar_volume, model.windows(folds))
    theirs, their_costs = _cvxportfolio(values, folds, targets, fitted, model, holding)
    start, end = folds[0][2], folds[-1][3]
    sim = simulate(values, np.array([s for _, _, s, _ in folds]), targets, start, end, holding, model=model, fitted=fitted)
    assert np.abs(sim.net - theirs.to_numpy()).max() < 1e-6
    equity = CAPITAL * np.concatenate([[1.0], np.cumprod(1.0 + sim.net)[:-1]])
    assert np.allclose(sim.daily_costs.sum(axis=1) * equity, their_costs.to_numpy(), rtol=1e-9, atol=1e-6)
    assert sim.daily_costs[:, COST_KINDS.index("impact")].sum() > 1e-4


_CHECK = ("import importlib, pkgutil, sys\n"
          "package = importlib.import_module(sys.argv[1])\n"
          "bad = []\n"
          "for m in pkgutil.walk_packages(package.__path__, sys.argv[1] + '.'):\n"
          "    importlib.import_module(m.name)\n"
          "    if 'cvxportfolio' in sys.modules and not bad: bad.append(m.name)\n"
          "print(len(sys.modules), bad)\n")


def _first_module_loading_cvxportfolio(package: str, env: dict | None = None) -> tuple[int, str]:
    "Import every module of `package` in a fresh interpreter: (modules loaded, the first one after which cvxportfolio is loaded)."
    out = subprocess.run([sys.executable, "-c", _CHECK, package], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    count, bad = out.stdout.split(maxsplit=1)
    return int(count), bad.strip()


def test_library_never_imports_cvxportfolio(tmp_path):
    "Importing the whole library (every module, in a fresh interpreter) never loads cvxportfolio."
    count, bad = _first_module_loading_cvxportfolio("tradingview_scraper")
    assert count > 100 and bad == "[]", (count, bad)
    # the check has teeth: a package with one module importing cvxportfolio is caught, and named
    pkg = tmp_path / "leaky"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "clean.py").write_text("import json\n")
    (pkg / "tainted.py").write_text("import cvxportfolio\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    assert _first_module_loading_cvxportfolio("leaky", env)[1] == "['leaky.tainted']"
