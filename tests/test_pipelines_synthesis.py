"""Synthesis at a larger scale than the notebook: parity of the vectorized kernel with its plain-loop twin on
random adversarial panels (gaps, −100% bars, +100%+ bars, listings, delistings), and the lag property."""
import ast
from pathlib import Path

import numpy as np
import pytest

from tradingview_scraper.pipelines import base, discovery, selection
from tradingview_scraper.pipelines.base import toy_market
from tradingview_scraper.pipelines.synthesis import STAGES, LOGICS, default_registry, parity, synthesize, synthesize_reference

DIRS = ("LONG", "SHORT")


def adversarial(seed: int, n_assets: int = 24, n_days: int = 400) -> np.ndarray:
    rng = np.random.default_rng(seed)
    r = toy_market(n_assets=n_assets, n_days=n_days, seed=seed).to_numpy().copy()
    r[rng.random(r.shape) < 0.02] = np.nan                           # random gaps
    for _ in range(6):                                               # ruin bars and wipe-out-a-short bars
        r[rng.integers(0, n_days), rng.integers(0, n_assets)] = rng.choice([-1.0, 1.0, 2.5])
    for c in rng.choice(n_assets, 4, replace=False):                 # listings / delistings at random rows
        cut = rng.integers(1, n_days)
        if rng.random() < 0.5: r[:cut, c] = np.nan
        else: r[cut:, c] = np.nan
    r[:, 5] = np.round(r[:, 5], 2)                                   # exact ties and zeros
    r[::7, 6] = 0.0
    return r


def assert_parity(a, b):
    p = parity(a, b)
    for name, v in p.items():
        assert v["same_nan"], (name, v)
        assert v["max_abs_diff"] <= 1e-6, (name, v)


@pytest.mark.parametrize("seed,k,w", [(0, 63, 20), (1, 5, 3), (2, 21, 50), (3, 1, 2), (4, 250, 10)])
def test_parity_on_random_adversarial_panels(seed, k, w):
    r = adversarial(seed)
    atoms = [(c, lg, d) for c in range(r.shape[1]) for lg in LOGICS for d in DIRS]
    r.flags.writeable = False
    fast = synthesize(r, atoms, momentum_lookback=k, ma_window=w)
    slow = synthesize_reference(r, atoms, momentum_lookback=k, ma_window=w)
    assert_parity(fast, slow)
    assert np.array_equal(fast.signal, slow.signal, equal_nan=True)   # signals agree exactly, NaNs included
    # the panel really is adversarial: NaN signals, wiped-out shorts, flat days
    assert np.isnan(fast.signal).any() and (fast.returns == -1.0).any() and (fast.returns == 0.0).any()


def test_parity_with_mixed_atoms_and_repeated_assets():
    r = adversarial(7, n_assets=10, n_days=250)
    rng = np.random.default_rng(7)
    atoms = [(int(rng.integers(0, 10)), str(rng.choice(LOGICS)), str(rng.choice(DIRS))) for _ in range(60)]
    assert_parity(synthesize(r, atoms, momentum_lookback=9, ma_window=4),
                  synthesize_reference(r, atoms, momentum_lookback=9, ma_window=4))


def test_signals_only_read_the_past():
    r = adversarial(11, n_assets=12, n_days=300)
    atoms = [(c, lg, d) for c in range(12) for lg in LOGICS for d in DIRS]
    base = synthesize(r, atoms, momentum_lookback=15, ma_window=8)
    rng = np.random.default_rng(11)
    for j in rng.integers(0, 300, 10):
        m = r.copy()
        m[j:] = rng.choice([np.nan, -1.0, 0.5, 1e6], size=m[j:].shape)   # garbage from row j on
        out = synthesize(m, atoms, momentum_lookback=15, ma_window=8)
        assert out.signal[:j + 1].tobytes() == base.signal[:j + 1].tobytes()
        assert out.returns[:j].tobytes() == base.returns[:j].tobytes()


def _imported_modules(path: Path) -> set[str]:
    "Every module a source file imports (absolute names; relative imports resolved against the package)."
    pkg = "tradingview_scraper." + ".".join(path.relative_to(path.parents[1]).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = pkg.rsplit(".", node.level - 1)[0] if node.level > 1 else pkg
                base = f"{parent}.{base}" if base else parent
            out |= {base} | {f"{base}.{a.name}" for a in node.names}
    return out


def test_the_stage_protocol_is_a_leaf(py):
    "pipelines.base imports no pipeline implementation (not even inside a function); the registry of them lives after the pillars."
    src = Path(base.__file__)
    pillars = {f"tradingview_scraper.pipelines.{m}" for m in ("discovery", "selection", "synthesis", "allocation")}
    assert not _imported_modules(src) & pillars, sorted(_imported_modules(src) & pillars)
    assert "default_registry" not in vars(base)
    # importing the protocol loads no pillar
    out = py("import sys, tradingview_scraper.pipelines.base; print(sorted(m for m in sys.modules if m.startswith('tradingview_scraper.pipelines.')))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['tradingview_scraper.pipelines.base']", out.stdout
    reg = default_registry()
    assert reg.ids() == sorted(s.id for s in (*discovery.STAGES, *selection.STAGES, *STAGES))
    assert "synthesis.atoms" in reg and len(reg) == 8
