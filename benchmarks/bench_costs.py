"""Cost models: the canary run with the full cost model (commission by class and minimum ticket, half-spread, market
impact, short borrow, funding, delisting closure, `holding="fixed"` paying its daily rebalancing) against the same
canary run with the flat commission only (today's model), both measured in this run, end to end (ingest, backtest,
assess, report) on a lakehouse seeded beforehand; target: the full model within 1.5x. The engine alone is also timed
on a synthetic crypto market with volumes (every cost kind live), full model against the flat commission.

    .venv/bin/python benchmarks/bench_costs.py
"""
import os
import tempfile
import time
from pathlib import Path

from _common import median_of, write_results

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

FLAT = {"costs.half_spread_bps": 0.0, "costs.impact": "none", "costs.borrow_bps": 0.0, "costs.funding_bps": 0.0,
        "delisting.enabled": False}      # the flat commission backtest.cost_bps only: the model before Step 12
FULL = {"costs.half_spread_bps": 5.0, "costs.impact": "power", "costs.impact_coef": 1.0, "costs.borrow_bps": 50.0,
        "costs.funding_bps": 1095.0, "costs.min_ticket": 1.0, "costs.commission_by_class": {"stock": 2.0},
        "delisting.enabled": True}       # every cost kind (impact only where the data has volumes: not the shipped sample)


def _flow(tmp: Path, overrides: dict) -> tuple[float, object]:
    from tradingview_scraper.orchestration.flow import run_flow
    t0 = time.perf_counter()
    run = run_flow("canary", runs_root=tmp / "runs", lakehouse_root=tmp / "lake", env={}, progress=False, overrides=overrides)
    return time.perf_counter() - t0, run


def _crypto_market(tmp: Path):
    "(returns, MarketData) of a synthetic crypto market with volumes, perpetuals and a delisting, through the loader."
    from tradingview_scraper.backtest.inputs import MarketData
    from tradingview_scraper.data.catalog import MetadataSnapshot
    from tradingview_scraper.data.lakehouse import Lakehouse
    from tradingview_scraper.data.loader import DataLoader
    from tradingview_scraper.data.sample import SyntheticMarket
    d = SyntheticMarket(n_equities=0, n_crypto=40, n_perpetual=10, n_delisted=2, n_days=2520, listing_share=0, seed=7).generate()
    lh = d.write(Lakehouse(tmp / "crypto"))
    res = DataLoader(lh, MetadataSnapshot(lh.catalog(versions=True))).load()
    market = MarketData(dollar_volume=res.dollar_volume, funding=d.funding.reindex(res.returns.index),
                        asset_class=d.catalog.set_index("symbol")["type"])
    return res.returns, market


def _engine(returns, market, full: bool) -> float:
    "Median seconds of one HRP walk-forward backtest (holding fixed) on the crypto market."
    from tradingview_scraper.backtest.costs import CostParams
    from tradingview_scraper.backtest.engine import BacktestEngine
    from tradingview_scraper.pipelines.allocation import HRP
    from tradingview_scraper.backtest.delisting import DelistingParams
    costs = CostParams(**{k.split(".", 1)[1]: v for k, v in FULL.items() if k.startswith("costs.")}) if full else None
    engine = BacktestEngine(train=252, test=21, cost_bps=10, holding="fixed", costs=costs, periods_per_year=365,
                            delisting=DelistingParams() if full else None)
    return median_of(lambda: engine.run(returns, HRP(), market=market), repeat=3)


def main():
    tmp = Path(tempfile.mkdtemp(prefix="tvs-bench-costs-"))
    from tradingview_scraper.orchestration.flow import run_flow
    run_flow("canary", runs_root=tmp / "runs", lakehouse_root=tmp / "lake", env={}, progress=False, until="ingest")  # seeds the lakehouse
    out = {}
    for label, overrides in (("flat", FLAT), ("full", FULL), ("flat_fixed", {**FLAT, "backtest.holding": "fixed"}),
                             ("full_fixed", {**FULL, "backtest.holding": "fixed"})):
        secs, run = _flow(tmp, overrides)
        steps = {k: v.get("seconds") for k, v in run.status["steps"].items()}
        out[label] = {"overrides": overrides, "seconds": round(secs, 1), "backtest_s": steps.get("backtest"), "steps_s": steps}
        print(f"canary {label}: {secs:.1f}s end to end, backtest step {steps.get('backtest', float('nan')):.1f}s")
    out["ratio_full_to_flat"] = round(out["full"]["seconds"] / out["flat"]["seconds"], 2)
    out["ratio_full_fixed_to_flat_fixed"] = round(out["full_fixed"]["seconds"] / out["flat_fixed"]["seconds"], 2)
    returns, market = _crypto_market(tmp)
    flat_s, full_s = _engine(returns, market, False), _engine(returns, market, True)
    out["engine_crypto"] = {"flat_s": round(flat_s, 3), "full_s": round(full_s, 3), "ratio": round(full_s / flat_s, 2),
                            "what": "HRP, 40 synthetic crypto symbols (10 perpetuals, 2 delisted) x 2520 days, holding=fixed, train 252 / test 21"}
    out["target"] = "canary with the full cost model within 1.5x of the canary with the flat commission"
    out["met"] = out["ratio_full_to_flat"] <= 1.5 and out["ratio_full_fixed_to_flat_fixed"] <= 1.5
    out["load_average"] = round(os.getloadavg()[0], 2)
    print(f"full cost model: {out['ratio_full_to_flat']:.2f}x (drift), {out['ratio_full_fixed_to_flat_fixed']:.2f}x (fixed) "
          f"the flat commission's canary (target <= 1.5x: {'met' if out['met'] else 'NOT met'}); engine on crypto: "
          f"{full_s:.3f}s vs {flat_s:.3f}s = {out['engine_crypto']['ratio']:.2f}x")
    write_results("costs", out)


if __name__ == "__main__":
    main()
