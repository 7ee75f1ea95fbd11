"""List pages served from scheduler.api's :class:`PageCache` (issue 16: queue reads that do not slow
submissions) are exactly the pages built for their reader: one service, two apps over it, one keeping pages
(the default) and one building every page (``page_cache_bytes=0``); after every step of a seeded family of
submissions, cancellations (queued and running) and ticks, every page of ``/v1/queue`` and ``/v1/jobs`` (an
operator's and a tenant's, several page sizes, a state filter) must be the same bytes from both. And paging
through ``/v1/queue`` while jobs are submitted lists every job acknowledged before the walk began exactly once,
in submission order."""

from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from scheduler.api import PageCache, create_app
from scheduler.limits import ApiLimits
from scheduler.models import JobSpec, load_site, load_tenants
from scheduler.service import Service, ServiceConfig

T0 = 1_800_000_000.0
TENANTS = ["science", "education", "companies", "public-services"]
NO_READ_RATE = ApiLimits(read_rate_per_s=0)  # these tests read many pages a second


def _h(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer windward-dev-{who}"}


def _service(tmp_path: Path, wall: Any = None) -> Service:
    cfg = ServiceConfig(site=load_site("demo"), tenants=load_tenants(), state_path=str(tmp_path / "s.sqlite"),
                        policy="backfill", tick_seconds=60.0)  # fmt: skip
    return Service(cfg, wall=wall or (lambda: T0))


async def _walk(c: httpx.AsyncClient, path: str, who: str, params: dict[str, Any]) -> list[bytes]:
    """Every page of ``path`` (raw bytes), following next_cursor."""
    out: list[bytes] = []
    cursor = None
    while True:
        r = await c.get(path, params=params | ({"cursor": cursor} if cursor else {}), headers=_h(who))
        assert r.status_code == 200, r.text
        out.append(r.content)
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return out


READS = [("/v1/queue", who, {"limit": n}) for who in ("ops", "science") for n in (3, 7, 500)] + [
    ("/v1/jobs", who, {"limit": n} | extra)
    for who in ("ops", "companies") for n in (4, 500) for extra in ({}, {"state": "queued"}, {"state": "cancelled"})
]  # fmt: skip


def test_cached_pages_are_the_pages_built_for_the_reader(tmp_path: Path) -> None:
    rng = random.Random(7)
    svc = _service(tmp_path)
    cached, fresh = create_app(svc, NO_READ_RATE), create_app(svc, NO_READ_RATE, page_cache_bytes=0)

    async def go() -> None:
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=cached), base_url="http://t") as a,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=fresh), base_url="http://t") as b,
        ):
            ids: list[tuple[str, str]] = []
            for step in range(24):
                op = rng.random()
                if op < 0.5 or not ids:  # a few submissions
                    for _ in range(rng.randint(1, 6)):
                        who = rng.choice(TENANTS)
                        r = await a.post("/v1/jobs", json={"name": f"s{step}", "gpus": rng.choice([1, 2, 8]),
                                                           "duration_s": 3600}, headers=_h(who))  # fmt: skip
                        assert r.status_code == 201, r.text
                        ids.append((who, r.json()["id"]))
                elif op < 0.75:  # a cancellation (a queued job's at once, a running one's flagged)
                    who, jid = rng.choice(ids)
                    assert (await a.delete(f"/v1/jobs/{jid}", headers=_h(who))).status_code == 200
                else:  # a tick: jobs start, the reasons board changes
                    await asyncio.to_thread(svc.tick)
                for path, who, params in READS:
                    want = await _walk(b, path, who, params)
                    for _ in range(2):  # built (or kept) once, then served from the cache
                        assert await _walk(a, path, who, params) == want, (step, path, who, params)

    try:
        asyncio.run(go())
    finally:
        svc.stop()
    pages: PageCache = cached.state.pages
    assert pages.hits > 500 and pages.builds > 50, (pages.hits, pages.builds)  # the cache was used
    assert fresh.state.pages.hits == 0


def test_paging_under_concurrent_submissions_lists_every_job_once(tmp_path: Path) -> None:
    svc = _service(tmp_path)
    app = create_app(svc, NO_READ_RATE)
    tenants = {t.name: t for t in load_tenants().tenants}
    stop = threading.Event()
    acked: list[str] = []  # the jobs whose submission was acknowledged (on disk), in order

    def submit() -> None:
        i = 0
        while not stop.is_set() and i < 3000:
            acked.append(svc.submit(tenants[TENANTS[i % 4]], JobSpec(name=f"c{i}", gpus=1, duration_s=3600), None).record.id)
            i += 1

    async def go() -> int:
        walks = 0
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            while len(acked) < 3000 and walks < 150:
                before = list(acked)  # (a job committed but not yet acknowledged may be listed or not)
                seen: list[str] = []
                seqs: list[int] = []
                cursor = None
                while True:
                    q = {"limit": 37} | ({"cursor": cursor} if cursor else {})
                    page = (await c.get("/v1/queue", params=q, headers=_h("ops"))).json()
                    for j in page["running"] + page["queued"]:
                        seen.append(j["id"])
                        seqs.append(int(j["position"]))
                    cursor = page["next_cursor"]
                    if cursor is None:
                        break
                assert len(seen) == len(set(seen)), "a job listed twice"
                assert set(before) <= set(seen), f"{len(set(before) - set(seen))} acknowledged jobs not listed"
                assert seqs == list(range(1, len(seqs) + 1)), "positions out of order"  # nothing runs: all queued
                walks += 1
        return walks

    t = threading.Thread(target=submit)
    t.start()
    try:
        walks = asyncio.run(go())
    finally:
        stop.set()
        t.join()
        svc.stop()
    assert walks >= 3 and app.state.pages.hits > 0, (walks, app.state.pages.hits)


def test_a_tick_that_changes_only_the_reasons_is_seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job held by its ``begin`` time: the tick changes its reason (new -> not_before), not its row. The
    tick's other writes (its journal) also move the store's versions; held still here, so that only the
    reasons board's version can tell the cache that the page changed (a reader between the tick's commit and
    its publishing of the reasons)."""
    svc = _service(tmp_path)
    cached, fresh = create_app(svc, NO_READ_RATE), create_app(svc, NO_READ_RATE, page_cache_bytes=0)
    begin = "2027-01-16T08:00:00Z"  # a day after T0

    async def go() -> list[str | None]:
        reasons: list[str | None] = []
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=cached), base_url="http://t") as a,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=fresh), base_url="http://t") as b,
        ):
            r = await a.post("/v1/jobs", json={"name": "later", "gpus": 1, "duration_s": 60, "begin": begin},
                             headers=_h("science"))  # fmt: skip
            assert r.status_code == 201, r.text
            held = svc.store.versions()
            monkeypatch.setattr(svc.store, "versions", lambda: held)
            for _ in range(2):
                assert (await a.get("/v1/queue", headers=_h("science"))).content == (
                    await b.get("/v1/queue", headers=_h("science"))
                ).content
                reasons.append((await a.get("/v1/queue", headers=_h("science"))).json()["queued"][0]["reason"])
                await asyncio.to_thread(svc.tick)
        return reasons

    try:
        assert asyncio.run(go()) == ["new", "not_before"]
    finally:
        svc.stop()


@pytest.mark.parametrize("more", [True, False])
def test_page_cache_keys(more: bool) -> None:
    """An entry is served at the versions it was read at; a new tick or a changed job drops it; a new job
    drops only a page with nothing after it; past max_bytes the least recently used goes."""
    pc = PageCache(max_bytes=100)
    pc.put(("a",), "A", 40, why=1, changes=5, commits=9, more=more)
    assert pc.get(("a",), 1, 5, 9) == "A"
    assert pc.get(("a",), 2, 5, 9) is None
    assert pc.get(("a",), 1, 6, 10) is None
    assert (pc.get(("a",), 1, 5, 10) == "A") is more
    pc.put(("b",), "B", 40, why=1, changes=5, commits=9, more=True)
    pc.get(("a",), 1, 5, 9)  # a used after b: b is the least recently used
    pc.put(("c",), "C", 40, why=1, changes=5, commits=9, more=True)
    assert pc.get(("b",), 1, 5, 9) is None and pc.get(("a",), 1, 5, 9) == "A" and pc.get(("c",), 1, 5, 9) == "C"


def test_list_pages_past_the_read_rate_are_429_per_caller(tmp_path: Path) -> None:
    """ApiLimits.read_rate_per_s / read_burst: one bucket per caller over queue, jobs and audit pages; past
    it a 429 that names the limit, with Retry-After; another caller is not affected; 0 turns it off."""
    svc = _service(tmp_path)
    tight = create_app(svc, ApiLimits(read_rate_per_s=0.001, read_burst=3))
    off = create_app(svc, ApiLimits(read_rate_per_s=0, read_burst=3))

    async def go() -> None:
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=tight), base_url="http://t") as a,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=off), base_url="http://t") as b,
        ):
            codes = [(await a.get(p, headers=_h("ops"))).status_code for p in ("/v1/queue", "/v1/jobs", "/v1/audit")]
            assert codes == [200, 200, 200]
            for p in ("/v1/queue", "/v1/jobs", "/v1/audit"):
                r = await a.get(p, headers=_h("ops"))
                assert r.status_code == 429 and "list pages/s" in r.json()["detail"], (p, r.text)
                assert int(r.headers["retry-after"]) >= 1
            assert (await a.get("/v1/queue", headers=_h("science"))).status_code == 200  # its own bucket
            assert (await a.get("/v1/jobs/nope", headers=_h("ops"))).status_code == 404  # not a list page
            assert {(await b.get("/v1/queue", headers=_h("ops"))).status_code for _ in range(10)} == {200}

    try:
        asyncio.run(go())
    finally:
        svc.stop()


def test_the_cli_reads_a_page_again_after_a_429(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GET answered 429 is sent again after its Retry-After (windward queue following pages past the read
    rate); anything else is not."""
    from scheduler.cli import client

    answers = [httpx.Response(429, headers={"retry-after": "2"}, json={"detail": "slow down"}),
               httpx.Response(200, json={"ok": 1})]  # fmt: skip
    sent: list[str] = []
    slept: list[float] = []

    def request(method: str, url: str, **kw: Any) -> httpx.Response:
        sent.append(method)
        return answers.pop(0)

    monkeypatch.setattr(httpx, "request", request)
    monkeypatch.setattr(client.time, "sleep", slept.append)
    assert client._call("GET", "http://x", "tok", "/v1/queue") == {"ok": 1}
    assert sent == ["GET", "GET"] and slept == [2.0]
    answers[:] = [httpx.Response(429, json={"detail": "over"})]
    with pytest.raises(Exception, match="429"):
        client._call("POST", "http://x", "tok", "/v1/jobs", json={})
