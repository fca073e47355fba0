"""`Shared.get`'s per-process keep (nbs/47_executors.ipynb) without a cluster: `ray.get` is replaced by a counter over fake
object references, so the test sees exactly which reads reach the object store: each reference is read once while it is
kept, at most `_KEEP` values are kept, the least recently *read* one is dropped first, and the read runs with the cycle
collector paused."""
import gc

import pytest
import ray

from tradingview_scraper.orchestration import executors
from tradingview_scraper.orchestration.executors import Shared


class FakeRef:
    "What `Shared.get` needs of an object reference: a stable hex id."
    def __init__(self, name): self.name = name
    def hex(self): return self.name


@pytest.fixture
def store(monkeypatch):
    "Every read that reaches the object store, in order, and whether the collector was running during it."
    reads = []
    def get(ref):
        reads.append((ref.name, gc.isenabled()))
        return f"value of {ref.name}"
    monkeypatch.setattr(ray, "get", get)
    monkeypatch.setattr(executors, "_READ", {})
    return reads


def test_each_reference_is_read_once_while_kept(store):
    h = Shared(ref=FakeRef("a"))
    assert [h.get() for _ in range(3)] == ["value of a"] * 3
    assert Shared(ref=FakeRef("a")).get() == "value of a"          # another handle on the same object: still kept
    assert store == [("a", False)]                                 # one read, with the collector paused


def test_the_least_recently_read_value_is_dropped_first(store):
    keep = executors._KEEP
    handles = [Shared(ref=FakeRef(f"r{i}")) for i in range(keep)]
    for h in handles: h.get()
    handles[0].get()                                                # r0 read again: now the most recent
    Shared(ref=FakeRef("new")).get()                                # one over the keep: r1 (least recently read) goes
    assert len(executors._READ) == keep
    assert "r0" in executors._READ and "r1" not in executors._READ
    del store[:]
    handles[0].get()
    handles[1].get()
    assert [name for name, _ in store] == ["r1"]                    # only the dropped one is read again


def test_kept_values_are_frozen_out_of_the_collector_until_one_is_dropped(store, monkeypatch):
    calls = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(gc, "unfreeze", lambda: calls.append("unfreeze"))
    handles = [Shared(ref=FakeRef(f"f{i}")) for i in range(executors._KEEP + 1)]
    handles[0].get()
    handles[0].get()                                                # kept: no read, nothing to freeze
    assert calls == ["freeze"]
    for h in handles[1:]: h.get()
    assert calls == ["freeze"] * executors._KEEP + ["unfreeze", "freeze"]   # the ninth read drops one: unfreeze first
