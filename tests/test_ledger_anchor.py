"""`tvs ledger verify RUN_DIR` on real run directories: the head anchored in status.json catches records cut off
the tail, the chain catches splices and swaps, and a key catches a chain someone rebuilt with recomputed hashes."""
import json
import os

import pytest

from tradingview_scraper.profile import load_profile
from tradingview_scraper.ledger import LEDGER_KEY_ENV, AuditLedger, canonical_json, record_hash
from tradingview_scraper.orchestration.runner import OrchestrationRunner, Step

KEY = "an operator secret, never written"


def make_run(root, run_id, steps=4, env=None):
    """A real run (the runner writes audit.jsonl and status.json), then status.json anchored at the ledger's last record."""
    old = os.environ.get(LEDGER_KEY_ENV)
    if env is not None: os.environ[LEDGER_KEY_ENV] = env
    try:
        flow = [Step(f"s{i}", lambda ctx, i=i: {"out": {"i": i}}) for i in range(steps)]
        OrchestrationRunner(load_profile("development", env={}), flow, runs_root=root, run_id=run_id, executor="serial").run()
        run = root / run_id
        anchor(run, AuditLedger.for_run(run, key=env).head())
    finally:
        if env is not None: os.environ.pop(LEDGER_KEY_ENV) if old is None else os.environ.__setitem__(LEDGER_KEY_ENV, old)
    return run


def anchor(run, head):
    "Store `head` as the run's ledger_head, as the runner does after every step."
    st = json.loads((run / "status.json").read_text())
    st["ledger_head"] = head
    (run / "status.json").write_text(json.dumps(st, indent=2))


def lines(run):
    return (run / "audit.jsonl").read_bytes().splitlines(keepends=True)


def write(run, ls):
    (run / "audit.jsonl").write_bytes(b"".join(ls))


def records(run):
    return [json.loads(l) for l in lines(run)]


def line(rec):
    return (canonical_json(rec) + "\n").encode()


def rehash(rec, **changes):
    "`rec` with `changes` and a recomputed hash: what someone who knows the format (but not the key) can write."
    r = {k: v for k, v in {**rec, **changes}.items() if k != "hash"}
    return {**r, "hash": record_hash(r)}


def rebuild(recs, start):
    "Re-link and re-hash every record from `start` on (keeping any mac as it was)."
    out = recs[:start]
    for r in recs[start:]: out.append(rehash(r, prev=out[-1]["hash"]))
    return out


@pytest.fixture
def run(tmp_path):
    return make_run(tmp_path / "runs", "anchored")


def test_the_runners_own_anchor_verifies(tmp_path, tvs):
    flow = [Step("a", lambda ctx: {"x": {"ok": 1}}), Step("b", lambda ctx: {"y": {"ok": 2}})]
    OrchestrationRunner(load_profile("development", env={}), flow, runs_root=tmp_path, run_id="r", executor="serial").run()
    st = json.loads((tmp_path / "r" / "status.json").read_text())
    assert set(st["ledger_head"]) == {"seq", "hash"}, st.get("ledger_head")
    r = tvs("ledger", "verify", str(tmp_path / "r"))
    assert r.returncode == 0 and "status.json anchors" in r.stdout, r.stdout + r.stderr


def test_intact_run_verifies(run, tvs):
    last = records(run)[-1]
    r = tvs("ledger", "verify", str(run))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"ok: {last['seq'] + 1} records" in r.stdout and f"head is the one status.json anchors (seq {last['seq']})" in r.stdout
    assert tvs("ledger", "verify", str(run / "audit.jsonl")).returncode == 0    # the ledger file of a run is anchored too


@pytest.mark.parametrize("n", [1, 2, 3])
def test_records_cut_off_the_tail_are_named(run, tvs, n):
    ls, last = lines(run), records(run)[-1]
    write(run, ls[:-n])
    assert AuditLedger.for_run(run).verify().ok                # the shorter chain alone looks fine
    r = tvs("ledger", "verify", str(run))
    assert r.returncode == 1, r.stdout
    assert (f"the ledger ends at seq {last['seq'] - n} but status.json anchors seq {last['seq']} (hash {last['hash'][:12]}…): "
            f"{n} record{'s' if n > 1 else ''} missing at the tail — truncated") in r.stdout, r.stdout


def test_a_torn_tail_is_named(run, tvs):
    data = (run / "audit.jsonl").read_bytes()
    (run / "audit.jsonl").write_bytes(data[:-10])
    r = tvs("ledger", "verify", str(run))
    assert r.returncode == 1 and f"BROKEN at record {len(lines(run)) - 1} " in r.stdout and "torn record" in r.stdout, r.stdout


def test_a_record_spliced_in_from_another_run(tmp_path, run, tvs):
    other = make_run(tmp_path / "other", "anchored")          # same flow, same run id: only the chain differs
    ls, theirs = lines(run), lines(other)
    assert ls[3] != theirs[3] and json.loads(ls[3])["seq"] == json.loads(theirs[3])["seq"]
    write(run, ls[:3] + theirs[3:4] + ls[4:])
    r = tvs("ledger", "verify", str(run))
    assert r.returncode == 1 and "BROKEN at record 3 " in r.stdout and "broken link" in r.stdout, r.stdout


def test_two_records_swapped(run, tvs):
    ls = lines(run)
    write(run, ls[:2] + [ls[3], ls[2]] + ls[4:])
    r = tvs("ledger", "verify", str(run))
    assert r.returncode == 1 and "BROKEN at record 2 " in r.stdout, r.stdout


def test_a_rewritten_last_record_diverges_from_the_anchor(run, tvs):
    recs = records(run)
    forged = rehash(recs[-1], data={**recs[-1]["data"], "event": "something else"})
    write(run, lines(run)[:-1] + [line(forged)])
    assert AuditLedger.for_run(run).verify().ok                # a valid chain: only the anchor knows better
    r = tvs("ledger", "verify", str(run))
    assert r.returncode == 1 and "BROKEN (diverged)" in r.stdout and f"record seq {recs[-1]['seq']} has hash {forged['hash'][:12]}" in r.stdout


def test_a_ledger_longer_than_its_anchor_passes_and_says_so(run, tvs):
    recs = records(run)
    anchor(run, {"seq": recs[-3]["seq"], "hash": recs[-3]["hash"]})
    r = tvs("ledger", "verify", str(run))
    assert r.returncode == 0 and f"2 records after the head status.json anchors (seq {recs[-3]['seq']})" in r.stdout, r.stdout
    anchor(run, {"seq": recs[-3]["seq"], "hash": recs[-2]["hash"]})    # ... but only with the anchored record in place
    assert tvs("ledger", "verify", str(run)).returncode == 1


def test_a_flipped_byte_is_named(run, tvs):
    data = bytearray((run / "audit.jsonl").read_bytes())
    pos = data.index(b'"step":"s2"') + 9
    data[pos] ^= 0x01
    (run / "audit.jsonl").write_bytes(bytes(data))
    r = tvs("ledger", "verify", str(run))
    assert r.returncode == 1 and "hash mismatch" in r.stdout, r.stdout


def test_a_key_catches_a_rebuilt_chain(tmp_path, tvs):
    run = make_run(tmp_path / "runs", "keyed", env=KEY)
    recs = records(run)
    assert all("mac" in r for r in recs)
    assert tvs("ledger", "verify", str(run), env={LEDGER_KEY_ENV: KEY}).returncode == 0
    # someone who can rewrite files edits a step's outcome, rebuilds the chain after it and re-anchors status.json
    k = next(i for i, r in enumerate(recs) if r["kind"] == "outcome")
    recs[k] = {**recs[k], "data": {**recs[k]["data"], "outputs": {"out": "00" * 32}}}
    forged = rebuild(recs, k)
    write(run, [line(r) for r in forged])
    anchor(run, {"seq": forged[-1]["seq"], "hash": forged[-1]["hash"]})
    r = tvs("ledger", "verify", str(run))
    assert r.returncode == 0 and "macs that were not checked" in r.stdout, r.stdout   # without the key: undetectable, and it says so
    r = tvs("ledger", "verify", str(run), env={LEDGER_KEY_ENV: KEY})
    assert r.returncode == 1 and f"BROKEN at record {k} " in r.stdout and "mac mismatch" in r.stdout, r.stdout
    r = tvs("ledger", "verify", str(run), env={LEDGER_KEY_ENV: "not the key"})
    assert r.returncode == 1 and "BROKEN at record 0 " in r.stdout
    for p in run.rglob("*"):                                   # the key is never written anywhere
        if p.is_file(): assert KEY.encode() not in p.read_bytes(), p


def test_an_unkeyed_run_fails_a_keyed_check(run, tvs):
    r = tvs("ledger", "verify", str(run), env={LEDGER_KEY_ENV: KEY})
    assert r.returncode == 1 and "not keyed" in r.stdout, r.stdout
    r = tvs("ledger", "verify", str(run), env={LEDGER_KEY_ENV: ""})
    assert r.returncode == 2 and r.stderr.startswith("tvs: error: invalid $TRADINGVIEW_SCRAPER_LEDGER_KEY") and "Traceback" not in r.stderr


def test_a_run_without_an_anchor(run, tvs):
    st = json.loads((run / "status.json").read_text())
    del st["ledger_head"]
    (run / "status.json").write_text(json.dumps(st))
    r = tvs("ledger", "verify", str(run))
    assert r.returncode == 0 and "head not anchored (status.json anchors no ledger head)" in r.stdout, r.stdout
    r = tvs("ledger", "verify", "--require-anchor", str(run))
    assert r.returncode == 1 and "BROKEN (anchor)" in r.stdout


@pytest.mark.parametrize("status", [b'{"ledger_head": ', b'{"ledger_head": {"seq": 1}}', b"[" * 200_000, "fifo", "dir"])
def test_a_broken_or_hostile_status_file_fails_cleanly(run, tvs, status):
    p = run / "status.json"
    p.unlink()
    if status == "fifo": os.mkfifo(p)                            # must not block the verifier
    elif status == "dir": p.mkdir()
    else: p.write_bytes(status)
    r = tvs("ledger", "verify", str(run))
    assert r.returncode == 1 and "BROKEN (anchor)" in r.stdout and "Traceback" not in r.stderr, r.stdout + r.stderr


def test_a_hostile_ledger_path_fails_cleanly(tmp_path, tvs):
    (tmp_path / "audit.jsonl").mkdir()
    r = tvs("ledger", "verify", str(tmp_path))
    assert r.returncode == 1 and "cannot read" in r.stdout and "Traceback" not in r.stderr, r.stdout + r.stderr
    r = tvs("ledger", "verify", str(tmp_path / "nothing-here"))
    assert r.returncode == 1 and "no ledger" in r.stdout


def test_a_dropped_record_with_the_chain_rebuilt_and_re_anchored(run, tvs):
    recs = records(run)
    forged = rebuild(recs[:3] + recs[4:], 3)                   # record 3 dropped; links and hashes recomputed, seqs left as they were
    write(run, [line(r) for r in forged])
    anchor(run, {"seq": forged[-1]["seq"], "hash": forged[-1]["hash"]})
    r = tvs("ledger", "verify", str(run))
    assert r.returncode == 1 and "BROKEN at record 3 " in r.stdout and "sequence gap" in r.stdout, r.stdout


@pytest.mark.parametrize("change, why", [("reformatted", "not in canonical form"), ("unknown kind", "unexpected kind 'note'"),
                                         ("second genesis", "unexpected kind 'genesis'"), ("extra field", "not a ledger record"),
                                         ("float seq", "sequence gap")])
def test_a_reformatted_or_forged_record(run, tvs, change, why):
    recs, ls = records(run), lines(run)
    nxt = {"seq": recs[-1]["seq"] + 1, "prev": recs[-1]["hash"]}   # a forged tail record with a valid prev and hash
    if change == "reformatted": ls[2] = (json.dumps(recs[2]) + "\n").encode()
    elif change == "unknown kind": ls.append(line(rehash(recs[-1], **nxt, kind="note")))
    elif change == "second genesis": ls.append(line(rehash(recs[0], **nxt)))
    elif change == "extra field": ls.append(line(rehash(recs[-1], **nxt, note="x")))
    else: ls.append(line(rehash(recs[-1], **{**nxt, "seq": float(nxt["seq"])})))
    write(run, ls)
    at = 2 if change == "reformatted" else nxt["seq"]
    r = tvs("ledger", "verify", str(run))
    assert r.returncode == 1 and f"BROKEN at record {at} " in r.stdout and why in r.stdout, r.stdout


def test_stripped_macs_are_caught(tmp_path, tvs):
    run = make_run(tmp_path / "runs", "keyed", env=KEY)
    recs = records(run)
    write(run, [line({k: v for k, v in r.items() if k != "mac"}) if i == 2 else line(r) for i, r in enumerate(recs)])
    r = tvs("ledger", "verify", str(run))                      # one stripped mac: caught even without the key
    assert r.returncode == 1 and "BROKEN at record 2 " in r.stdout and "mac missing" in r.stdout, r.stdout
    write(run, [line({k: v for k, v in r.items() if k != "mac"}) for r in recs])
    assert tvs("ledger", "verify", str(run)).returncode == 0   # every mac stripped: an unkeyed ledger, until the key is given
    r = tvs("ledger", "verify", str(run), env={LEDGER_KEY_ENV: KEY})
    assert r.returncode == 1 and "BROKEN at record 0 " in r.stdout and "not keyed" in r.stdout, r.stdout
