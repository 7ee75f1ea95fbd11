"""Issue 16 on the real server over real HTTP: hostile input never gets a 5xx or a reset (a family of
hand-picked cases per route plus a hypothesis property test on every route), operator-set limits (rate,
queued jobs, headers) answer 429 / 431 before any work, lists page with a cursor, ``Allow`` lists every method,
and the OpenAPI document describes what the routes return."""

from __future__ import annotations

import csv
import io
import json
import time
import urllib.parse
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_process import ServerProcess, auth, start_server

pytestmark = pytest.mark.integration

SPEC = {"name": "train", "gpus": 1, "duration_s": 3600}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    d = tmp_path_factory.mktemp("srv")
    s = start_server(d / "state.sqlite", d / "server.log", "--tick-seconds", "600", "--max-header-bytes", "8192")
    yield s
    log = s.log()
    s.kill()
    assert "Traceback" not in log, log[-3000:]


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A server with tight submission limits (2/s, burst 40, 25 queued per tenant)."""
    d = tmp_path_factory.mktemp("lim")
    s = start_server(d / "state.sqlite", d / "server.log", "--tick-seconds", "600", "--submit-rate", "2",
                     "--submit-burst", "40", "--max-queued-per-tenant", "25")  # fmt: skip
    with httpx.Client(base_url=s.url, timeout=30) as client:
        yield client
    s.kill()


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A server with very tight limits: 8 tokens that never refill in a test's time (0.01/s), 3 queued jobs
    per tenant."""
    d = tmp_path_factory.mktemp("strict")
    s = start_server(d / "state.sqlite", d / "server.log", "--tick-seconds", "600", "--submit-rate", "0.01",
                     "--submit-burst", "8", "--max-queued-per-tenant", "3")  # fmt: skip
    with httpx.Client(base_url=s.url, timeout=30) as client:
        yield client
    log = s.log()
    s.kill()
    assert "Traceback" not in log, log[-3000:]


@pytest.fixture(scope="module")
def c(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def _raw_post(c: httpx.Client, path: str, body: bytes, who: str) -> httpx.Response:
    return c.post(path, content=body, headers=auth(who) | {"content-type": "application/json"})


def _assert_4xx_json(r: httpx.Response, ctx: object) -> None:
    assert 400 <= r.status_code < 500, (ctx, r.status_code, r.text[:300])
    json.loads(r.content)  # a reply that parses (valid UTF-8 JSON, no NaN)


# ------------------------------------------------------------------------------------ hostile input

#: Raw JSON texts of values no field accepts (non-finite constants, huge numbers, lone surrogates, control
#: and bidi characters, wrong types, deep nesting).
HOSTILE_VALUES = [
    "NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 400, '"\\ud800"', '"\\udfff x"',
    '"a\\u0000b"', '"\\u202eexe.txt"', "true", '"2"', "[]", "{}", "[" * 300 + "]" * 300, '"2000-01-01T00:00:00Z"',
    '"0001-01-01T00:00:00Z"', "null",
]  # fmt: skip


@pytest.mark.parametrize("field", ["name", "gpus", "duration_s", "priority", "checkpoint_interval_s", "deadline",
                                   "entrypoint", "pool", "preemptible", "kind"])  # fmt: skip
def test_hostile_values_in_every_job_field_are_4xx_naming_it(c: httpx.Client, field: str) -> None:
    base = json.dumps(SPEC)[1:-1]
    for v in HOSTILE_VALUES:
        body = f'{{{base}, "{field}": {v}}}' if field not in SPEC else json.dumps(SPEC).replace(
            f'"{field}": {json.dumps(SPEC[field])}', f'"{field}": {v}')  # fmt: skip
        r = _raw_post(c, "/v1/jobs", body.encode(), "science")
        if r.status_code == 201:  # a value the field takes: plain text in a text field, null for an optional one
            plain_text = v.startswith('"') and "\\u" not in v and field in ("name", "entrypoint", "pool")
            boolean = field == "preemptible" and v == "true"
            assert plain_text or boolean or (v == "null" and field not in SPEC), (field, v)
            continue
        _assert_4xx_json(r, (field, v))
        if r.status_code == 422:
            assert any(field in d["loc"] for d in r.json()["detail"]), (field, v, r.text[:300])


@pytest.mark.parametrize("field", ["cap_mw", "start", "end", "reason"])
def test_hostile_values_in_congestion_are_4xx_naming_it(c: httpx.Client, field: str) -> None:
    ev = {"cap_mw": 10.0, "start": "2030-01-01T00:00:00Z", "end": "2030-01-02T00:00:00Z", "reason": "r"}
    for v in HOSTILE_VALUES:
        body = json.dumps(ev).replace(f'"{field}": {json.dumps(ev[field])}', f'"{field}": {v}')
        r = _raw_post(c, "/v1/congestion", body.encode(), "ops")
        if field == "reason" and r.status_code == 201:
            assert v.startswith('"') and "\\u" not in v, v  # plain text is a reason
            continue
        _assert_4xx_json(r, (field, v))
        if r.status_code == 422:
            assert any(field in d["loc"] for d in r.json()["detail"]), (field, v, r.text[:300])


def test_unparseable_bodies_are_400(c: httpx.Client) -> None:
    for body in (b"{not json", b"\xff\xfe\x00garbage", b"[" * 20_000, b'{"gpus": 1' + b"0" * 5000 + b"}", b""):
        r = _raw_post(c, "/v1/jobs", body, "science")
        assert r.status_code in (400, 422), (body[:20], r.status_code, r.text[:200])
        _assert_4xx_json(r, body[:20])


_json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),  # text() includes lone surrogates
    st.sampled_from(["NaN", "Infinity", "1e400", "\ud800", "a\x00", "\u202e", "2000-01-01T00:00:00Z"]),
)  # fmt: skip
_json = st.recursive(_json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.text(max_size=12), inner, max_size=5)),
                     max_leaves=25)  # fmt: skip
_spec_like = st.fixed_dictionaries({}, optional={k: _json for k in
                                   ("name", "gpus", "duration_s", "deadline", "priority", "entrypoint", "kind",
                                    "preemptible", "checkpoint_interval_s", "pool", "requires", "cap_mw", "start",
                                    "end", "reason")})  # fmt: skip


def _encode(v: object) -> bytes:
    # allow_nan: the non-finite constants go on the wire as NaN/Infinity; surrogates escaped as \\udXXX
    return json.dumps(v, allow_nan=True).encode()


ROUTES = [("POST", "/v1/jobs"), ("GET", "/v1/jobs"), ("GET", "/v1/jobs/{x}"), ("DELETE", "/v1/jobs/{x}"),
          ("GET", "/v1/queue"), ("GET", "/v1/usage"), ("GET", "/v1/plan"), ("POST", "/v1/congestion"),
          ("GET", "/v1/congestion"), ("GET", "/v1/audit"), ("GET", "/healthz"), ("GET", "/readyz"),
          ("GET", "/metrics")]  # fmt: skip


@settings(max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(
    route=st.sampled_from(ROUTES),
    body=st.one_of(_spec_like, _json),
    who=st.sampled_from(["science", "ops", "companies"]),
    param=_json_leaf,
    deep=st.integers(min_value=0, max_value=3000),
)
def test_property_no_5xx_on_any_route(server: ServerProcess, route: tuple[str, str], body: object, who: str,
                                      param: object, deep: int) -> None:  # fmt: skip
    method, path = route
    text = json.dumps(param, allow_nan=True) if not isinstance(param, str) else param
    # percent-encoded by hand: lone surrogates go on the wire as the bytes of invalid UTF-8
    enc = urllib.parse.quote(text[:80].encode("utf-8", "surrogatepass"), safe="")
    path = path.replace("{x}", enc or "x")
    raw = _encode(body) if deep < 2500 else b"[" * deep + b"]" * deep
    query = "&".join(f"{k}={enc}" for k in ("limit", "cursor", "state", "format", "tenant", "after"))
    with httpx.Client(timeout=30) as c:
        r = c.request(method, f"{server.url}{path}?{query}", content=raw if method == "POST" else None,
                      headers=auth(who) | {"content-type": "application/json"})  # fmt: skip
    assert r.status_code < 500, (method, path, raw[:200], r.status_code, r.text[:300])
    if r.headers.get("content-type", "").startswith("application/json"):
        json.loads(r.content)


# ------------------------------------------------------------------------------------------ limits


def test_huge_authorization_header_is_431_before_hashing(c: httpx.Client) -> None:
    r = c.get("/v1/jobs", headers={"Authorization": "Bearer " + "x" * 1_000_000})
    assert r.status_code == 431 and "8192-byte limit" in r.json()["detail"]
    r = c.get("/healthz", headers={"X-Junk": "y" * 9000})
    assert r.status_code == 431
    assert c.get("/v1/jobs", headers=auth("science")).status_code == 200  # a normal request still passes


def test_submission_rate_and_queue_depth_are_429(limited: httpx.Client) -> None:
    """education: burst 40 at 2/s and at most 25 queued. 60 submissions back to back (half-pool jobs, so
    few start): the queue never holds more than 25 of them (429 naming the limit, Retry-After), and past the
    burst the rate refuses (429). Other tenants are unaffected; cancelling frees room."""
    codes, details = [], []
    for i in range(60):
        r = _raw_post(limited, "/v1/jobs", json.dumps({**SPEC, "name": f"e{i}", "gpus": 8}).encode(), "education")
        codes.append(r.status_code)
        details.append(str(r.json().get("detail")) if r.status_code != 201 else "")
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) >= 1
        assert r.status_code in (201, 429), r.text
    counts = limited.get("/v1/queue", params={"limit": 1}, headers=auth("education")).json()["counts"]
    assert counts["queued"] <= 25, counts
    assert codes.count(201) <= 25 + counts["running"], codes
    assert any("queued jobs, the limit is 25" in d for d in details), details
    assert any("submission rate of 2/s" in d for d in details), details
    # invalid bodies are charged too (the bucket is checked before the body is validated)
    assert _raw_post(limited, "/v1/jobs", b'{"gpus": NaN}', "education").status_code == 429
    assert _raw_post(limited, "/v1/jobs", json.dumps({**SPEC, "name": "other"}).encode(), "companies").status_code == 201
    # cancelling frees room in the queue once the bucket refills (2/s)
    q = limited.get("/v1/queue", params={"limit": 50}, headers=auth("education")).json()
    for j in q["queued"][:3]:
        assert limited.delete(f"/v1/jobs/{j['id']}", headers=auth("education")).status_code == 200
    time.sleep(1.5)
    r = _raw_post(limited, "/v1/jobs", json.dumps({**SPEC, "name": "after-cancel", "gpus": 8}).encode(), "education")
    assert r.status_code == 201, r.text


def _keyed(c: httpx.Client, who: str, key: str, name: str) -> httpx.Response:
    # 16 GPUs: the tenant's whole quota, so at most one of its jobs runs and the rest stay queued
    body = json.dumps({**SPEC, "name": name, "gpus": 16}).encode()
    return c.post("/v1/jobs", content=body, headers=auth(who) | {"content-type": "application/json",
                                                                  "Idempotency-Key": key})  # fmt: skip


@pytest.mark.parametrize("who", ["science", "companies"])
def test_idempotent_retries_get_the_original_answer_at_both_limits(strict: httpx.Client, who: str) -> None:
    """The limits count new jobs only: a retry (same key, same body) of an accepted job gets that job (200)
    at the queued-jobs limit and past the rate limit, and costs no token; the same key with another body
    is a 409 there too; a new job is refused (429)."""
    first = _keyed(strict, who, "k0", "j0")
    assert first.status_code == 201, first.text
    jid = first.json()["id"]
    for _ in range(10):  # more retries than the bucket holds tokens (8)
        r = _keyed(strict, who, "k0", "j0")
        assert r.status_code == 200 and r.json()["id"] == jid and r.json()["created"] is False, r.text
    # the retries took no token: two new jobs still pass the rate (7 tokens left, not 0)
    accepted = {"k0": jid}
    for k in ("k1", "k2"):
        r = _keyed(strict, who, k, f"j{k[1:]}")
        assert r.status_code == 201, (k, r.text)
        accepted[k] = r.json()["id"]
    # at the queued-jobs limit (3 queued; at most one runs: the tenant's quota)
    details = []
    for i in range(3, 8):
        r = _keyed(strict, who, f"k{i}", f"j{i}")
        if r.status_code == 201:
            accepted[f"k{i}"] = r.json()["id"]
            continue
        assert r.status_code == 429, r.text
        details.append(r.json()["detail"])
        break
    assert details and "queued jobs, the limit is 3" in details[0], details
    for k, j in accepted.items():
        r = _keyed(strict, who, k, f"j{k[1:]}")  # the same body as the first time
        assert r.status_code == 200 and r.json()["id"] == j, (k, r.status_code, r.text)
    r = _keyed(strict, who, "k0", "another body")
    assert r.status_code == 409 and "different job spec" in r.json()["detail"], r.text
    # past the rate limit: new jobs drain the bucket (refused at the queue limit, but charged)
    for i in range(20):
        r = _keyed(strict, who, f"new{i}", "new")
        assert r.status_code == 429, r.text
        if "submission rate" in r.json()["detail"]:
            break
    else:
        pytest.fail("the bucket never emptied")
    assert int(r.headers["retry-after"]) >= 1
    for k, j in accepted.items():
        r = _keyed(strict, who, k, f"j{k[1:]}")  # the same body as the first time
        assert r.status_code == 200 and r.json()["id"] == j, (k, r.status_code, r.text)
    r = _keyed(strict, who, "k1", "another body")
    assert r.status_code == 409, r.text
    r = _keyed(strict, who, "brand-new", "new")
    assert r.status_code == 429 and "submission rate" in r.json()["detail"], r.text


# ------------------------------------------------------------------------------------------ paging


def test_jobs_and_queue_page_with_a_cursor(c: httpx.Client) -> None:
    names = [f"pg{i}" for i in range(13)]
    for n in names:
        assert _raw_post(c, "/v1/jobs", json.dumps({**SPEC, "name": n, "gpus": 8}).encode(),
                         "public-services").status_code == 201  # fmt: skip
    h = auth("public-services")
    for path, keys in (("/v1/jobs", ("jobs",)), ("/v1/queue", ("running", "queued"))):
        seen: list[dict] = []
        cursor = None
        pages = 0
        while True:
            page = c.get(path, params={"limit": 4} | ({"cursor": cursor} if cursor else {}), headers=h).json()
            got = [j for k in keys for j in page[k]]
            assert len(got) <= 4
            seen += got
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert [j["name"] for j in sorted(seen, key=lambda j: j["submitted_utc"])] == names, path
        assert pages == 4, (path, pages)  # 13 jobs by 4: the last page ends the list
        assert len({j["id"] for j in seen}) == 13
        if path == "/v1/queue":
            pos = sorted(j["position"] for j in seen if j["state"] == "queued")
            assert pos == list(range(1, len(pos) + 1))
            assert page["counts"]["queued"] + page["counts"]["running"] == 13
    # a default page size exists and is reported by the document; a bad cursor is a 422 naming it
    r = c.get("/v1/queue", params={"cursor": "not-a-cursor"}, headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "cursor"]
    r = c.get("/v1/jobs", params={"limit": 100_000}, headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "limit"]


def test_audit_pages_with_a_cursor_in_json_and_csv(c: httpx.Client) -> None:
    """/v1/audit pages like /v1/jobs: ``next_cursor`` in JSON, ``X-Next-Cursor`` and ``Link`` headers on both
    media types; the pages of JSON and of CSV list the same placements as one big page, in order, each once."""
    # defence's own pool is free for them (no other tenant may use it): placements follow
    secret = {"clearance": "secret", "jurisdiction": "nl"}
    for i in range(6):
        assert _raw_post(c, "/v1/jobs", json.dumps({**SPEC, "name": f"au{i}", "gpus": 2, "requires": secret}).encode(),
                         "defence").status_code == 201  # fmt: skip
    ops = auth("ops")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        everything = c.get("/v1/audit", params={"limit": 5000}, headers=ops).json()
        if len(everything["placements"]) >= 5:
            break
        time.sleep(0.3)
    ids = [a["id"] for a in everything["placements"]]
    assert len(ids) >= 5 and everything["next_cursor"] is None, everything
    assert ids == sorted(ids)
    for size in (1, 2, 3):
        for fmt in ("json", "csv"):
            got: list[int] = []
            cursor = None
            pages = 0
            while pages <= len(ids) + 5:  # bounded: a cursor that does not advance fails, never hangs
                params = {"limit": size, "format": fmt} | ({"cursor": cursor} if cursor else {})
                r = c.get("/v1/audit", params=params, headers=ops)
                assert r.status_code == 200, r.text
                if fmt == "json":
                    page = [a["id"] for a in r.json()["placements"]]
                    assert r.json()["next_cursor"] == r.headers.get("x-next-cursor"), r.headers
                else:
                    assert r.headers["content-type"].startswith("text/csv")
                    page = [int(row["id"]) for row in csv.DictReader(io.StringIO(r.text))]
                assert 0 < len(page) <= size, (size, fmt, page)
                got += page
                pages += 1
                cursor = r.headers.get("x-next-cursor")
                if cursor is None:
                    assert "link" not in r.headers
                    break
                assert cursor == str(page[-1]) and f"cursor={cursor}" in r.headers["link"], r.headers
                assert f"format={fmt}" in r.headers["link"] and r.headers["link"].endswith('rel="next"')
            snapshot = [i for i in got if i <= ids[-1]]  # placements made while paging come after the snapshot
            assert snapshot == ids, (size, fmt, got, ids)
            assert len(got) == len(set(got))
            assert pages >= -(-len(ids) // size), (size, fmt, pages)
    # the default page is bounded, and a bad cursor or page size is a 422 naming it
    assert c.get("/v1/audit", params={"cursor": "x"}, headers=ops).json()["detail"][0]["loc"] == ["query", "cursor"]
    r = c.get("/v1/audit", params={"limit": 100_000}, headers=ops)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "limit"]


# ------------------------------------------------------------------------------------- contract


def test_allow_lists_every_method_of_a_path(c: httpx.Client) -> None:
    r = c.request("PUT", "/v1/jobs", headers=auth("science"))
    assert r.status_code == 405 and set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}
    r = c.request("PATCH", "/v1/jobs/job-1", headers=auth("science"))
    assert r.status_code == 405 and set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "DELETE"}
    r = c.request("DELETE", "/v1/congestion", headers=auth("ops"))
    assert r.status_code == 405 and set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}


def test_openapi_describes_every_status_and_media_type(c: httpx.Client) -> None:
    paths = c.get("/openapi.json").json()["paths"]
    post = paths["/v1/jobs"]["post"]["responses"]
    for code in ("200", "201", "400", "401", "403", "409", "413", "422", "429", "431"):
        assert code in post, code
    assert "Retry-After" in post["429"]["headers"]
    assert {"400", "401", "403", "413", "422"} <= set(paths["/v1/congestion"]["post"]["responses"])
    audit = paths["/v1/audit"]["get"]["responses"]
    assert {"application/json", "text/csv"} <= set(audit["200"]["content"])
    assert {"X-Next-Cursor", "Link"} <= set(audit["200"]["headers"])
    assert "next_cursor" in audit["200"]["content"]["application/json"]["schema"]["properties"]
    for p in ("/v1/jobs/{job_id}",):
        for m in ("get", "delete"):
            assert {"401", "404", "422"} <= set(paths[p][m]["responses"])
    for p in ("/v1/jobs", "/v1/queue", "/v1/audit"):
        params = {q["name"] for q in paths[p]["get"]["parameters"]}
        assert {"cursor", "limit"} <= params, p
