"""The fast path of ``POST /v1/jobs`` (scheduler.api ``fast_submit``: the common submission answered below
the framework, issue 16's throughput) gives exactly the route's answers. Two services on real SQLite states
with the same frozen clock, one app with the fast path and one without, get the same seeded family of
requests (valid specs, keyed retries and conflicts, bodies that are not JSON or not a spec, bad keys, wrong
media types, missing or operator tokens, sovereignty refusals, deadlines out of range, both 429 limits);
every answer must be the same status and body (job ids and the seconds of a Retry-After message aside)."""

from __future__ import annotations

import asyncio
import json
import random
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from scheduler.api import create_app
from scheduler.limits import ApiLimits
from scheduler.models import load_site, load_tenants
from scheduler.service import Service, ServiceConfig

T0 = 1_800_000_000.0
TENANTS = ["science", "education", "companies", "public-services"]


def _request(rng: random.Random, i: int) -> tuple[dict[str, Any], bytes]:
    who = rng.choice(TENANTS)
    headers: dict[str, Any] = {"Authorization": f"Bearer windward-dev-{who}", "Content-Type": "application/json"}
    spec: dict[str, Any] = {"name": f"j{i}", "gpus": rng.choice([1, 2, 8]), "duration_s": 3600}
    r = rng.random()
    if r < 0.35:  # a keyed submission: keys repeat, so retries (same body) and conflicts (another) happen
        headers["Idempotency-Key"] = f"k{rng.randint(0, 12)}"
        if rng.random() < 0.5:
            spec = {"name": "same", "gpus": 1, "duration_s": 60}
    elif r < 0.40:
        headers["Idempotency-Key"] = rng.choice(["", "x" * 201, "has space", "caf\u00e9".encode()])
    elif r < 0.45:
        headers["Content-Type"] = rng.choice(["text/plain", "application/json; charset=utf-8", "application/xml"])
    elif r < 0.50:
        headers["Authorization"] = rng.choice(["Bearer nope", "Basic abc", "Bearer windward-dev-ops"])
    elif r < 0.53:
        del headers["Authorization"]
    elif r < 0.58:
        return headers, rng.choice([b"{not json", b"", b"[]", b'{"gpus": NaN}', b"\xff\xfe"])
    elif r < 0.66:
        spec[rng.choice(["gpus", "duration_s", "priority"])] = rng.choice(["2", True, -1, 1e400, None])
    elif r < 0.72:
        spec["deadline"] = rng.choice(["2020-01-01T00:00:00Z", "2099-01-01T00:00:00Z", "2027-01-15T12:00:00Z"])
    elif r < 0.78:
        spec["requires"] = rng.choice([{"jurisdiction": "nl"}, {"clearance": "secret"}, {"jurisdiction": "eu"}])
    elif r < 0.80:
        spec["gpus"] = 64  # larger than any pool a tenant may use
    return headers, json.dumps(spec, allow_nan=True).encode()


_IDS = re.compile(r"job-[0-9a-f]{16}")
_WAIT = re.compile(r"retry in [0-9.]+ s")


def _norm(text: str, ids: dict[str, str]) -> str:
    for jid in _IDS.findall(text):
        ids.setdefault(jid, f"<job {len(ids)}>")
    return _WAIT.sub("retry in <s> s", _IDS.sub(lambda m: ids[m.group(0)], text))


async def _run(apps: list[Any], requests: list[tuple[dict[str, Any], bytes]]) -> list[list[tuple[int, str, str]]]:
    out: list[list[tuple[int, str, str]]] = [[] for _ in apps]
    ids: list[dict[str, str]] = [{} for _ in apps]
    clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://t") for a in apps]
    try:
        for headers, body in requests:
            for k, c in enumerate(clients):
                r = await c.post("/v1/jobs", content=body, headers=headers)
                out[k].append((r.status_code, r.headers.get("retry-after", "") and "yes", _norm(r.text, ids[k])))
    finally:
        for c in clients:
            await c.aclose()
    return out


@pytest.mark.parametrize("seed", range(3))
def test_fast_path_answers_exactly_as_the_route(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    requests = [_request(rng, i) for i in range(150)]
    ops = {"Authorization": "Bearer windward-dev-ops", "Content-Type": "application/json"}
    for _ in range(3):  # an operator's submission (403) somewhere in every family
        requests.insert(rng.randrange(len(requests)), (ops, b'{"name": "x", "gpus": 1, "duration_s": 60}'))
    # tight limits, so that both 429s happen inside the family: 6 queued per tenant, 30 tokens per tenant
    # that do not come back within the test (0.001/s)
    limits = ApiLimits(max_queued_per_tenant=6, submit_rate_per_s=0.001, submit_burst=30)
    services, apps = [], []
    for fast in (True, False):
        cfg = ServiceConfig(site=load_site("demo"), tenants=load_tenants(),
                            state_path=str(tmp_path / f"s-{fast}.sqlite"), policy="backfill", tick_seconds=60.0)  # fmt: skip
        svc = Service(cfg, wall=lambda: T0)
        services.append(svc)
        apps.append(create_app(svc, limits, fast_path=fast))
    try:
        fast_out, route_out = asyncio.run(_run(apps, requests))
    finally:
        for svc in services:
            svc.stop()
    for i, (a, b) in enumerate(zip(fast_out, route_out, strict=True)):
        assert a == b, (i, requests[i], a, b)
    statuses = {s for s, _, _ in route_out}
    assert {200, 201, 400, 401, 403, 409, 422, 429} <= statuses, statuses  # the family reaches every answer
    assert any("queued jobs, the limit is 6" in t for _, _, t in route_out)
    assert any("submission rate" in t for _, _, t in route_out)
    assert apps[0].state.fast_submits > 0 and apps[1].state.fast_submits == 0


def test_the_edge_is_outside_every_other_layer(tmp_path: Path) -> None:
    """EdgeLimits (and its fast path) is the outermost layer of the app's stack: a submission it answers and a
    refusal at the edge pass through no other middleware (not even one added after create_app, which
    add_middleware would put outside it), while every other request goes through the whole stack."""
    cfg = ServiceConfig(site=load_site("demo"), tenants=load_tenants(), state_path=str(tmp_path / "s.sqlite"),
                        policy="backfill", tick_seconds=60.0)  # fmt: skip
    svc = Service(cfg, wall=lambda: T0)
    app = create_app(svc, ApiLimits(max_body_bytes=4096))
    seen: list[str] = []

    class Spy:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                seen.append(scope["path"])
            await self.inner(scope, receive, send)

    app.add_middleware(Spy)
    headers = {"Authorization": "Bearer windward-dev-science", "Content-Type": "application/json"}

    async def go() -> list[int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            codes = [(await c.post("/v1/jobs", json={"name": f"j{i}", "gpus": 1, "duration_s": 60},
                                   headers=headers)).status_code for i in range(5)]  # fmt: skip
            codes.append((await c.post("/v1/jobs", content=b"x" * 5000, headers=headers)).status_code)
            codes.append((await c.get("/healthz")).status_code)
            codes.append((await c.post("/v1/jobs", content=b"{not json", headers=headers)).status_code)
            return codes

    try:
        assert asyncio.run(go()) == [201] * 5 + [413, 200, 400]
    finally:
        svc.stop()
    assert app.state.fast_submits == 5
    assert seen == ["/healthz", "/v1/jobs"]  # the route's request (not JSON) and the probe only
