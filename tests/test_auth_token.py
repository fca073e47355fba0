"""A TradingView account's auth token, from an environment variable or a file named by the profile: the replay server
(with `auth_tokens`) serves that account deeper history, and afterwards the token appears nowhere — not in any file under
the lakehouse, the run directory or the log directory, not in any log record or exception text. A configured token that
cannot be read is a typed error naming the variable or the path, never the content."""
import logging
import secrets

import pytest

from tradingview_scraper.config import resolve_auth_token
from tradingview_scraper.profile import load_profile
from tradingview_scraper.core import ConfigError
from tradingview_scraper.data.hydration import HydrationError, IngestionService, hydrate
from tradingview_scraper.data.lakehouse import Lakehouse
from tradingview_scraper.ledger import AuditLedger
from tradingview_scraper.tradingview.replay import ReplayServer, synthetic_market

GUEST_DEPTH, ACCOUNT_DEPTH, BARS = 300, 1500, 2000
NOW = "2024-06-28 12:00"
ENV = "TV_TEST_ACCOUNT_TOKEN"


@pytest.fixture(scope="module")
def market():
    table, bars = synthetic_market(n_symbols=4, n_bars=BARS, seed=13)
    return table, bars


@pytest.fixture
def token():
    return "tvtok." + secrets.token_urlsafe(24)


def profile(**over):
    base = {"data.history_bars": BARS, "hydration.concurrency": 2, "hydration.max_attempts": 2, "hydration.timeout_s": 120}
    return load_profile("development", env={}, overrides={**base, **over})


def everything_written(root):
    "(path, bytes) of every file under `root` but the token's own file (lakehouses, run directory, ledger, logs)."
    for p in sorted(root.rglob("*")):
        if p.is_file() and "secrets" not in p.relative_to(root).parts: yield p, p.read_bytes()


def assert_nowhere(token, root, caplog, errors=()):
    needles = [token.encode(), token[6:20].encode()]               # the whole token, and a piece of its secret part
    for p, data in everything_written(root):
        assert not any(n in data for n in needles), f"the token leaked into {p}"
    for rec in caplog.records:
        text = rec.getMessage() + (logging.Formatter().formatException(rec.exc_info) if rec.exc_info else "")
        assert token not in text and token[6:20] not in text, f"the token leaked into a log record: {rec.name}"
    for e in errors:
        assert token not in str(e) and token not in repr(e) and token[6:20] not in str(e)


@pytest.fixture
def logs(tmp_path):
    "Every record of every logger, at DEBUG, into a file under logs/ (as a run does), and nothing left behind."
    d = tmp_path / "logs"
    d.mkdir()
    handler = logging.FileHandler(d / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield d
    root.removeHandler(handler)
    root.setLevel(level)
    handler.close()


def run_with(prof, token, market, tmp_path, caplog, logs):
    table, bars = market
    syms = list(bars)[:3]
    lake, run_dir = Lakehouse(tmp_path / "lake"), tmp_path / "runs" / "r1"
    ledger = AuditLedger.for_run(run_dir)
    ledger.genesis("r1", prof.name, prof.manifest_hash)
    (run_dir / "manifest.json").write_text(prof.to_json())          # the resolved manifest, as a run stores it
    errors = []
    caplog.set_level(logging.DEBUG)
    with ReplayServer(table, bars, depth=GUEST_DEPTH, auth_tokens={token: ACCOUNT_DEPTH}, heartbeat_s=0.1) as srv:
        rep = hydrate(syms + ["NASDAQ:NOPE"], lake, prof, endpoint=srv, now=NOW, run_dir=run_dir, ledger=ledger, progress=False)
        errors += [r for r in rep.outcomes["reason"].dropna()]
        svc = IngestionService.from_profile(prof, lake, scanner_url=srv.scanner_url, websocket_url=srv.websocket_url)
        errors += [repr(svc), repr(svc.history), str(svc.chart_settings)]
        svc.scanner.close()
        srv.inject("handshake_429", retry_after=0)                     # an outage: the error text is scanned too
        with pytest.raises(HydrationError) as outage:
            hydrate(syms, Lakehouse(tmp_path / "other"), prof, endpoint=srv, now="2024-07-28", run_dir=run_dir,
                    ledger=ledger, progress=False)
        errors.append(outage.value)
        asked = srv.requests_
    return rep, asked, lake, run_dir, errors


@pytest.mark.parametrize("source", ["env", "file"])
def test_a_token_gives_deeper_history_and_appears_nowhere(tmp_path, market, token, caplog, logs, monkeypatch, source):
    if source == "env":
        monkeypatch.setenv(ENV, token)
        prof = profile(**{"hydration.auth_token_env": ENV})
    else:
        monkeypatch.delenv(ENV, raising=False)
        f = tmp_path / "secrets" / "tv_token"
        f.parent.mkdir()
        f.write_text(token + "\n")
        prof = profile(**{"hydration.auth_token_file": str(f)})
    assert resolve_auth_token(prof.hydration) == token
    rep, asked, lake, run_dir, errors = run_with(prof, token, market, tmp_path, caplog, logs)
    out = rep.outcomes.set_index("symbol")
    fetched = out[out["status"] == "fetched"]
    assert len(fetched) == 3 and (fetched["received"] == ACCOUNT_DEPTH).all() and (fetched["stop"] == "limit").all()
    assert {r["authorized"] for r in asked} == {True}
    for s in fetched.index: assert len(lake.read_ohlcv(s)) == ACCOUNT_DEPTH
    assert (logs / "run.log").stat().st_size > 0 and len(caplog.records) > 0    # there were logs to leak into
    assert {"lake", "other", "runs", "logs"} <= {p.name for p in tmp_path.iterdir()}
    assert_nowhere(token, tmp_path, caplog, errors)


def test_without_a_token_the_guest_depth_is_served(tmp_path, market, token, caplog, logs, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    rep, asked, lake, run_dir, errors = run_with(profile(), token, market, tmp_path, caplog, logs)
    fetched = rep.outcomes[rep.outcomes["status"] == "fetched"]
    assert (fetched["received"] == GUEST_DEPTH).all() and {r["authorized"] for r in asked} == {False}


def test_a_token_file_that_cannot_be_read_is_a_typed_error_naming_the_path(tmp_path, market, token, caplog):
    table, bars = market
    missing = tmp_path / "secrets" / "no_such_token"
    lake = Lakehouse(tmp_path / "lake")
    with ReplayServer(table, bars, auth_tokens={token: ACCOUNT_DEPTH}, heartbeat_s=0.1) as srv:
        with pytest.raises(ConfigError, match="no_such_token") as e:
            hydrate(list(bars)[:2], lake, profile(**{"hydration.auth_token_file": str(missing)}), endpoint=srv, now=NOW, progress=False)
        assert str(missing) in str(e.value)
        bad = tmp_path / "secrets" / "two_lines"
        bad.parent.mkdir(exist_ok=True)
        bad.write_text(token + "\n" + token + "\n")
        with pytest.raises(ConfigError, match="two_lines") as e2:
            hydrate(list(bars)[:2], lake, profile(**{"hydration.auth_token_file": str(bad)}), endpoint=srv, now=NOW, progress=False)
        assert token not in str(e2.value) and token[6:20] not in str(e2.value)
        assert srv.requests_ == [] and srv.sessions_ == []             # refused before anything was asked
    assert not lake.root.exists()


def test_a_token_named_by_the_profile_but_not_set_is_refused(tmp_path, market, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(ConfigError, match=f"{ENV}, which is not set"):
        hydrate(["BINANCE:BTCUSDT"], tmp_path / "lake", profile(**{"hydration.auth_token_env": ENV}),
                endpoint={"scanner_url": "http://127.0.0.1:9", "websocket_url": "ws://127.0.0.1:9/x"}, now=NOW, progress=False)
    assert not (tmp_path / "lake").exists()
