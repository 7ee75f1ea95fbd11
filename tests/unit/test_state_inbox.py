"""The service's inbox under submission load (issue 16): the lean read of the rows committed since the last
tick (:meth:`StateStore.queued_after`) must give exactly the queued full records' Jobs, and the wait before
an event tick (:func:`scheduler.service.event_tick_wait_s`) must keep event ticks within their share of the
interpreter without ever delaying a slot's tick."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from seeded_specs import random_spec

from scheduler.auth import tenant_pools
from scheduler.errors import InputError
from scheduler.models import load_site, load_tenants
from scheduler.service import ServiceConfig, event_tick_wait_s
from scheduler.state import StateStore, StopOutcome

T0 = 1_800_000_000.0


@pytest.mark.parametrize("seed", range(6))
def test_queued_after_is_the_queued_records_after_a_seq_as_jobs(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    site = load_site("demo")
    tenants = [t for t in load_tenants().tenants if t.name != "defence"]
    pools = {t.name: tenant_pools(site, t) for t in tenants}
    s = StateStore(tmp_path / "s.sqlite")
    epoch = T0 - 3600.0 * rng.randint(0, 5)
    seen, drained = 0, []
    ids = []
    for rnd in range(rng.randint(3, 6)):  # rounds of submissions and changes, the inbox drained after each
        for i in range(rng.randint(0, 40)):
            t = rng.choice(tenants).name
            ids.append(s.submit(t, random_spec(rng, 100 * rnd + i), None, T0 + i).record.id)
        for jid in rng.sample(ids, len(ids) // 4):  # some start, end or are cancelled before the drain
            if s.get(jid).state != "queued":  # type: ignore[union-attr]
                continue
            if rng.random() < 0.5:
                s.request_cancel(jid, T0 + 300)
                continue
            aid = s.intend("start", jid, {}, T0 + 100)
            s.record_started(aid, jid, "h100-eu-public", {"jurisdiction": "eu"}, (0,), 0.8, T0 + 100)
            end = rng.choice(["running", "finished", "queued"])
            if end != "running":
                s.record_outcomes(stopped=[StopOutcome(None, jid, end, 10.0, "x", 5.0 if end == "queued" else None)],
                                  now_unix_s=T0 + 200)  # fmt: skip
        full = s.list_jobs(after_seq=seen)
        jobs, last = s.queued_after(seen, epoch, pools)
        assert jobs == [r.to_job(epoch, pools.get(r.tenant, ())) for r in full if r.state == "queued"]
        assert last == max([seen, *(r.seq for r in full)])
        seen = last
        drained += [j.job_id for j in jobs]
    assert s.queued_after(seen, epoch, pools) == ([], seen)  # nothing new: nothing read twice
    assert len(drained) == len(set(drained))
    assert seen == s.last_seq


@pytest.mark.parametrize("seed", range(8))
def test_event_tick_wait_keeps_the_share_and_never_delays_a_slot(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(500):
        since = rng.choice([0.0, rng.uniform(0, 2)])
        min_s = rng.choice([0.0, 0.3, rng.uniform(0, 1)])
        cpu = rng.choice([0.0, 0.001, rng.uniform(0, 1.5)])
        share = rng.choice([1.0, 0.25, 0.5, rng.uniform(0.01, 1.0)])
        until = rng.choice([1e9, rng.uniform(-1, 3)])
        w = event_tick_wait_s(since, min_s, cpu, share, until)
        assert 0.0 <= w <= max(until, 0.0) + 1e-12
        if w < until - 1e-12:  # not cut short by the slot: both the interval and the share hold
            assert since + w >= min_s - 1e-9
            gap = since + w
            assert cpu <= share * (cpu + gap) + 1e-9  # the tick took at most its share from its start
            # and no longer than needed for both
            assert w == 0.0 or math.isclose(since + w, max(min_s, cpu * (1 - share) / share), abs_tol=1e-9)
        if share == 1.0:  # the whole interpreter: the fixed interval alone (the behaviour before the share)
            assert w == max(min(min_s - since, until), 0.0)


@pytest.mark.parametrize("bad", [0.0, -0.25, 1.5, float("nan"), float("inf")])
def test_service_config_refuses_a_share_outside_0_1(bad: float) -> None:
    with pytest.raises(InputError, match=r"event_tick_cpu_share is .*\(0, 1\]"):
        ServiceConfig(site=load_site("demo"), tenants=load_tenants(), state_path="x.sqlite", event_tick_cpu_share=bad)
