"""The HTTP API of ``windward server``: the FastAPI application over a running
:class:`~scheduler.service.Service` (DESIGN section 7 paths), its limits and request models.

Hostile input and overload (issue 16). What a request meets, in order:

1. :class:`EdgeLimits` (ASGI, before any routing, parsing or hashing): 431 for request headers over
   ``ApiLimits.max_header_bytes`` (a 1 MB ``Authorization`` header is refused unread), 413 for a body over
   ``ApiLimits.max_body_bytes`` (declared or streamed).
2. Authentication (a token is hashed only once the headers passed 1), then, for ``POST /v1/jobs``, the
   tenant's token bucket (``submit_rate_per_s``, ``submit_burst``) and its queued-jobs limit
   (``max_queued_per_tenant``): 429 with ``Retry-After``.
3. Strict request models (:mod:`scheduler.models`): 400 for a body that is not JSON, 422 naming the field for
   anything else; the error handlers echo input only through :func:`safe_echo` (finite, valid UTF-8,
   bounded), so they cannot fail on what they describe.

Lists page with an opaque ``cursor`` (``next_cursor`` in every page, null on the last) and a default page
size, so no read costs more than one page. Each caller reads at most ``ApiLimits.read_rate_per_s`` list pages
a second (after ``read_burst`` at once; 429 with ``Retry-After`` beyond), and a page of ``/v1/queue`` or
``/v1/jobs`` is built once and served from :class:`PageCache` while it reads the same.
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import json
import logging
import math
import re
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scheduler.auth import Principal
from scheduler.errors import InputError
from scheduler.limits import MAX_BODY_BYTES, ApiLimits, TokenBuckets
from scheduler.models import DEADLINE_MAX_AHEAD_S, IsoTime, JobSpec, Number, PrintableText
from scheduler.service import Service
from scheduler.state import ROW_ID, ROW_STATE, IdempotencyConflict, job_record

log = logging.getLogger(__name__)

#: Default and largest page of ``GET /v1/jobs`` and ``GET /v1/queue``.
DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 5000
#: Longest text echoed back in an error message (characters), and the nesting shown of a list or object.
_ECHO_CHARS = 120
_ECHO_DEPTH = 3
#: Jobs of a list page rendered between two releases of the interpreter by the page's thread (~1 ms).
_YIELD_EVERY = 24
#: Longest message of ours (not input) in an error reply.
_MSG_CHARS = 1000
#: An Idempotency-Key: 1 to 200 visible ASCII characters (the route's header parameter and the fast path).
IDEMPOTENCY_KEY_MAX = 200
_IDEM_KEY_CHARS = r"^[!-~]+$"
_IDEM_KEY_RE = re.compile(f"[!-~]{{1,{IDEMPOTENCY_KEY_MAX}}}")


# ====================================================================================== HTTP API


class EdgeLimits:
    """ASGI middleware, the first thing a request meets: 431 for headers over ``max_header_bytes``; 413 for a
    declared ``Content-Length`` over ``max_body_bytes`` and for a streamed body that grows over it (counted as
    it arrives, so nothing large is ever buffered)."""

    def __init__(
        self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES, max_header_bytes: int = 16 * 1024,
        fast_submit: Callable[[Scope, Receive, Send], Awaitable[bool | bytes | None]] | None = None,
    ) -> None:  # fmt: skip
        self.app = app
        self.max_bytes = max_bytes
        self.max_header_bytes = max_header_bytes
        self.fast_submit = fast_submit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", ())
        header_bytes = sum(len(k) + len(v) + 4 for k, v in headers)
        if header_bytes > self.max_header_bytes:
            await _send_json(send, 431, {"detail": f"request headers of {header_bytes} bytes are over the "
                                                   f"{self.max_header_bytes}-byte limit"})  # fmt: skip
            return
        for k, v in headers:
            if k == b"content-length":
                try:
                    n = int(v)
                except ValueError:
                    await _send_json(send, 400, {"detail": "Content-Length is not an integer"})
                    return
                if n > self.max_bytes:
                    await _send_json(send, 413, {"detail": f"request body of {n} bytes is over the {self.max_bytes}-byte limit"})
                    return
                # a declared length within the limit is all the server reads (the HTTP parser stops there):
                # no per-message counting needed
                if self.fast_submit is not None and scope["method"] == "POST" and scope["path"] == "/v1/jobs":
                    done = await self.fast_submit(scope, receive, send)
                    if done is True:
                        return
                    if isinstance(done, bytes):
                        receive = _replay(done, receive)
                await self.app(scope, receive, send)
                return
        seen = 0
        started = False
        refused = False

        async def limited_receive() -> Message:
            nonlocal seen, refused, started
            if refused:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    # answer 413 now; the app sees a disconnect and anything it sends is dropped
                    refused = True
                    if not started:
                        started = True
                        await _send_json(send, 413, {"detail": f"request body is over the {self.max_bytes}-byte limit"})
                    return {"type": "http.disconnect"}
            return msg

        async def guarded_send(msg: Message) -> None:
            nonlocal started
            if refused:
                return
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        await self.app(scope, limited_receive, guarded_send)


#: The old name of :class:`EdgeLimits` (it checked the body only).
BodyLimit = EdgeLimits


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` (already read) once, then what ``receive`` gives (a disconnect)."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


def _json_lists(lists: dict[str, list[bytes]]) -> bytes:
    """Members of a JSON object (``"key":[...]``, comma-separated) whose values are lists of encoded items."""
    return b",".join(b'"' + key.encode() + b'":[' + b",".join(items) + b"]" for key, items in lists.items())


def _json_page(head: bytes, lists: bytes) -> bytes:
    """A JSON object ``head`` (encoded, not empty) with the members ``lists`` (:func:`_json_lists`) added."""
    return head[:-1] + b"," + lists + b"}"


class PageCache:
    """Encoded list pages (``GET /v1/queue``, ``GET /v1/jobs``), each built once and served to every reader
    until the jobs or the last tick's reasons change (issue 16: readers polling the queue must not take the
    interpreter from the submissions). An entry holds what was read at three version numbers, taken before
    the page's queries: the reasons board's (``WhyBoard.version``) and the store's ``(changes, commits)``
    (:meth:`StateStore.versions`). It is served while the first two are the same, and, for a page with
    nothing after it (``more`` False: a new job would join it), while ``commits`` is too. A page that has jobs
    after it does not change when jobs are submitted: a new job's ``seq`` comes after every job there.
    Least recently used pages go first past ``max_bytes``. Thread-safe.

    A page built again (after a tick, say) re-encodes only the jobs whose stored row changed:
    :meth:`fragment` keeps, by a row's values (the whole tuple: any change is another key), the encoded view
    it makes (``JobRecord.view_json_parts``), at most ``max_fragments`` of them (all dropped past that);
    the reasons, which each tick changes, are encoded at every build."""

    def __init__(self, max_bytes: int = 32 << 20, max_fragments: int = 10_000) -> None:
        self.max_bytes = max_bytes
        self.max_fragments = max_fragments if max_bytes > 0 else 0
        self.hits = 0
        self.builds = 0
        self._lock = threading.Lock()
        self._pages: dict[tuple[Any, ...], tuple[tuple[int, int, int | None], Any, int]] = {}
        self._bytes = 0
        self._fragments: dict[tuple[Any, ...], tuple[bytes, bytes]] = {}

    def fragment(self, row: tuple[Any, ...], make: Callable[[], tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
        """What ``make`` makes of ``row``, kept by the row's values (made again once they change)."""
        got = self._fragments.get(row)
        if got is None:
            got = make()
            if self.max_fragments > 0:
                if len(self._fragments) >= self.max_fragments:
                    self._fragments.clear()
                self._fragments[row] = got
        return got

    def get(self, key: tuple[Any, ...], why: int, changes: int, commits: int) -> Any:
        """The page stored under ``key`` if it still reads the same at these versions, else None."""
        with self._lock:
            e = self._pages.get(key)
            if e is None:
                return None
            (w, ch, co), page, _ = e
            if w != why or ch != changes or (co is not None and co != commits):
                return None
            self._pages[key] = self._pages.pop(key)  # most recently used last
            self.hits += 1
            return page

    def put(self, key: tuple[Any, ...], page: Any, size: int, why: int, changes: int, commits: int, more: bool) -> None:
        """Store ``page`` (``size`` bytes) as read at these versions; ``more``: jobs follow it."""
        with self._lock:
            old = self._pages.pop(key, None)
            if old is not None:
                self._bytes -= old[2]
            self.builds += 1
            if size > self.max_bytes or self.max_bytes <= 0:
                return
            self._pages[key] = ((why, changes, None if more else commits), page, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                self._bytes -= self._pages.pop(next(iter(self._pages)))[2]


#: One encoder for every reply (json.dumps with options builds a new JSONEncoder per call: twice a submission)
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))


def _json_bytes(obj: Any) -> bytes:
    """JSON as Starlette's JSONResponse renders it (UTF-8, compact, no NaN)."""
    return _ENCODER.encode(obj).encode("utf-8")


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})


# ================================================================================= error replies


def safe_echo(v: Any, depth: int = 0, max_chars: int = _ECHO_CHARS) -> Any:
    """A JSON-safe, bounded rendering of any input, for error messages: non-finite floats and huge integers
    become text, strings are cut to ``_ECHO_CHARS`` with lone surrogates and other unencodable characters
    escaped, lists and objects are cut in length and depth. Never raises."""
    try:
        if v is None or isinstance(v, bool):
            return v
        if isinstance(v, float):
            return v if math.isfinite(v) else repr(v)
        if isinstance(v, int):
            return v if v.bit_length() <= 63 else f"<an integer of {v.bit_length()} bits>"
        if isinstance(v, str | bytes):
            s = v if isinstance(v, str) else v.decode("utf-8", "backslashreplace")
            cut = s[:max_chars].encode("utf-8", "backslashreplace").decode("utf-8")
            return cut + (f"... ({len(s)} characters)" if len(s) > max_chars else "")
        if isinstance(v, list | tuple):
            if depth >= _ECHO_DEPTH:
                return f"<a list of {len(v)}>"
            return [safe_echo(x, depth + 1) for x in v[:10]] + ([f"... ({len(v)} items)"] if len(v) > 10 else [])
        if isinstance(v, dict):
            if depth >= _ECHO_DEPTH:
                return f"<an object of {len(v)} keys>"
            items = list(v.items())[:20]
            return {str(safe_echo(str(k))): safe_echo(x, depth + 1) for k, x in items}
        return f"<{type(v).__name__}>"
    except Exception:  # noqa: BLE001 -- an echo must never fail; the type alone is still a clue
        return "<unprintable>"


def _error_item(e: dict[str, Any]) -> dict[str, Any]:
    loc = [x if isinstance(x, int) and not isinstance(x, bool) else safe_echo(str(x)) for x in e.get("loc", ())]
    msg = safe_echo(str(e.get("msg", "invalid")), max_chars=_MSG_CHARS)
    out: dict[str, Any] = {"loc": loc, "msg": msg, "type": safe_echo(str(e.get("type", "value_error")))}
    if "input" in e and e.get("type") != "json_invalid":
        out["input"] = safe_echo(e["input"])
    ctx = e.get("ctx")
    if isinstance(ctx, dict) and ctx:
        out["ctx"] = {
            str(k): safe_echo(x if isinstance(x, int | float | str | bool) else str(x), max_chars=_MSG_CHARS)
            for k, x in ctx.items()
        }
    return out


_FALLBACK_422 = b'{"detail":[{"loc":["body"],"msg":"invalid request","type":"value_error"}]}'


async def _validation_error(request: Request, exc: Exception) -> Response:
    """422 naming each field (400 when the body is not JSON). Input is echoed through :func:`safe_echo`
    only; if describing the error fails anyway, a fixed 422 is sent (this handler cannot fail)."""
    try:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        items = [_error_item(e) for e in errors][:50]
        status = 400 if any(e.get("type") == "json_invalid" for e in errors) else 422
        if status == 400:
            for it, e in zip(items, errors, strict=False):
                ctx = e.get("ctx") or {}
                it["msg"] = f"the request body is not JSON: {safe_echo(str(ctx.get('error', 'decode error')))}"
        body = json.dumps({"detail": items}, ensure_ascii=True, allow_nan=False).encode()
        return Response(body, status_code=status, media_type="application/json")
    except Exception:  # noqa: BLE001 -- the last line of defence: a fixed, valid reply
        log.exception("error handler failed; sent the fixed 422")
        return Response(_FALLBACK_422, status_code=422, media_type="application/json")


async def _http_error(request: Request, exc: Exception) -> Response:
    """HTTP errors as ``{"detail": ...}`` (safe to encode); a 405 lists every method of the path in ``Allow``
    (Starlette would list only the first route's)."""
    status = getattr(exc, "status_code", 500)
    detail = getattr(exc, "detail", None)
    headers = dict(getattr(exc, "headers", None) or {})
    try:
        if status == 405:
            methods = _path_methods(request)
            headers["Allow"] = ", ".join(methods)
            detail = f"method {request.method} is not allowed on this path; allowed: {methods}"
    except Exception:  # noqa: BLE001 -- cannot fail: send the status with a fixed detail
        log.exception("HTTP error handler failed for status %s", status)
        detail = "error"
    return _error_response(status, detail, headers)


def _error_response(status: int, detail: Any, headers: dict[str, str]) -> Response:
    """``{"detail": ...}`` with ``status``, the detail echoed safely (:func:`safe_echo`); cannot fail."""
    try:
        if isinstance(detail, list):
            detail = [_error_item(d) if isinstance(d, dict) else safe_echo(d) for d in detail]
        else:
            detail = safe_echo(detail if detail is not None else "error", max_chars=_MSG_CHARS)
        body = json.dumps({"detail": detail}, ensure_ascii=True, allow_nan=False).encode()
    except Exception:  # noqa: BLE001 -- cannot fail: send the status with a fixed detail
        log.exception("HTTP error reply failed for status %s", status)
        body = b'{"detail":"error"}'
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _path_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE or _matches_path(route, request.scope):
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def _matches_path(route: Any, scope: Scope) -> bool:
    regex = getattr(route, "path_regex", None)
    return bool(regex is not None and regex.match(scope.get("path", "")))


# ===================================================================================== models


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class ErrorOut(BaseModel):
    """Every 4xx: ``detail`` is a message, or (400, 422) a list of items naming the field in ``loc``."""

    detail: str | list[ErrorItem]


def _err(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


#: Replies every route can give: headers or body over the limit (EdgeLimits, before routing).
_EDGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: _err("request body over the server's limit (ApiLimits.max_body_bytes)"),
    431: _err("request headers over the server's limit (ApiLimits.max_header_bytes)"),
}
_AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {**_err("missing or unknown bearer token"), "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}},
}
_OPERATOR_RESPONSES: dict[int | str, dict[str, Any]] = {403: _err("operators only")}
_QUERY_RESPONSES: dict[int | str, dict[str, Any]] = {422: _err("a query or path parameter is invalid (named in loc)")}
_READ_RESPONSES: dict[int | str, dict[str, Any]] = {
    429: {**_err("the caller's list-page rate (ApiLimits read_rate_per_s, read_burst)"),
          "headers": {"Retry-After": {"schema": {"type": "integer"}}}},
}  # fmt: skip
_BODY_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _err("the body is not JSON (or not UTF-8, or nested too deeply)"),
    422: _err("the body is invalid: the field is named in loc"),
}


class CongestionIn(BaseModel):
    """A congestion event announced by the grid operator: cap grid import at ``cap_mw`` from start to end."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    cap_mw: Annotated[float, Field(ge=0, le=1e6), Number]
    start: IsoTime
    end: IsoTime
    reason: Annotated[PrintableText, Field(max_length=512)] = ""


class JobCreated(BaseModel):
    id: str
    state: str
    created: bool
    job: dict[str, Any]


class JobsPage(BaseModel):
    """One page of jobs in submission order. ``next_cursor``: pass it as ``cursor`` for the next page (null on
    the last); ``next_after`` is the same position as a sequence number (the older ``after`` parameter)."""

    jobs: list[dict[str, Any]]
    next_cursor: str | None
    next_after: int


class QueuePage(BaseModel):
    """One page of the active jobs in submission order (``running`` and ``queued`` of this page; a queued
    job's ``position`` counts every queued job before it), ``counts`` of all of them, ``next_cursor``."""

    running: list[dict[str, Any]]
    queued: list[dict[str, Any]]
    counts: dict[str, int]
    next_cursor: str | None


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def _principal(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    # async: runs on the event loop (a sync dependency would cost every request a thread-pool hop); the
    # header's size was bounded by EdgeLimits before this hashes it
    service = _service(request)
    token = service.auth.bearer(authorization)
    if token is None:
        raise _unauthorized("missing bearer token (Authorization: Bearer <token>)")
    p = service.auth.authenticate(token)
    if p is None:
        raise _unauthorized("unknown token")
    return p


async def _operator(p: Annotated[Principal, Depends(_principal)]) -> Principal:
    if not p.is_operator:
        raise HTTPException(status_code=403, detail="this action needs an operator token")
    return p


Caller = Annotated[Principal, Depends(_principal)]
OperatorCaller = Annotated[Principal, Depends(_operator)]

_CURSOR_RE = r"^[0-9]{1,18}$"
Cursor = Annotated[
    str | None,
    Query(pattern=_CURSOR_RE, description="the next_cursor of the previous page (omit for the first page)"),
]
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="jobs per page")]


class _EdgeFirst(FastAPI):
    """FastAPI with :class:`EdgeLimits` (``edge_limits``: its constructor, given the rest of the stack) as
    the outermost layer of its middleware stack, outside the framework's own (ServerErrorMiddleware, the
    telemetry and body-limit wrappers), where ``add_middleware`` would put it inside them: a refusal at the
    edge and the fast submission path pass through none of them (about 9% of the event loop's samples per
    submission went to those layers and their ``send`` wrappers, py-spy, round 6). What they add is kept for
    every request that goes on to the app: the edge answers only 413 / 431 / 400 for a bad Content-Length and
    the fast path's submissions, and an exception escaping it reaches the server (uvicorn answers 500), as one
    escaping ServerErrorMiddleware did."""

    edge_limits: Callable[[ASGIApp], ASGIApp] | None = None

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        return stack if self.edge_limits is None else self.edge_limits(stack)


def _over_rate(what: str, wait_s: float) -> HTTPException:
    """A 429 for a caller over a token bucket (``what``: who, and which rate), with ``Retry-After`` in whole
    seconds (at least 1) and the wait in the detail."""
    return HTTPException(status_code=429, detail=f"{what}; retry in {wait_s:.2f} s",
                         headers={"Retry-After": str(max(1, math.ceil(wait_s)))})


def _refuse(status: int, loc: list[str], msg: str, kind: str) -> HTTPException:
    return HTTPException(status_code=status, detail=[{"loc": loc, "msg": msg, "type": kind}])


def create_app(
    service: Service, limits: ApiLimits | None = None, *, fast_path: bool = True, page_cache_bytes: int = 32 << 20
) -> FastAPI:
    """The FastAPI application over a running :class:`~scheduler.service.Service`, with ``limits``
    (:class:`ApiLimits`; default: its defaults). ``fast_path``: answer the common ``POST /v1/jobs`` below the
    framework (``fast_submit`` inside; the same answers: tests/unit/test_submit_fast_path.py); the
    number it answered is ``app.state.fast_submits``. ``page_cache_bytes``: the list pages kept encoded
    (:class:`PageCache`, ``app.state.pages``; 0: every page built for its reader; the same answers:
    tests/unit/test_page_cache.py)."""
    lim = limits if limits is not None else ApiLimits()
    meta: dict[str, Any] = {
        "title": "Windward",
        "version": "0.1.0",
        "description": "Carbon- and power-cap aware GPU scheduling for a wind-powered AI factory. "
        "Every /v1 route needs `Authorization: Bearer <token>` (a tenant's or an operator's). "
        f"Limits: request headers {lim.max_header_bytes} bytes (431), body {lim.max_body_bytes} bytes (413), "
        f"{lim.max_queued_per_tenant} queued jobs per tenant and {lim.submit_rate_per_s:g} submissions/s per "
        f"tenant (burst {lim.submit_burst}) (429). Lists page with `cursor` / `next_cursor`; "
        f"{lim.read_rate_per_s:g} list pages/s per caller (burst {lim.read_burst}) (429).",
        "responses": _EDGE_RESPONSES,
    }
    try:  # FastAPI >= 0.16x checks for OpenTelemetry providers on every request unless told not to
        app = _EdgeFirst(**meta, telemetry={"tracing": False, "metrics": False, "logs": False})
    except TypeError:
        app = _EdgeFirst(**meta)
    # (the stack is built at the first request: fast_submit, defined below, is bound by then)
    app.edge_limits = functools.partial(
        EdgeLimits, max_bytes=lim.max_body_bytes, max_header_bytes=lim.max_header_bytes,
        fast_submit=(lambda scope, receive, send: fast_submit(scope, receive, send)) if fast_path else None,
    )  # fmt: skip
    app.state.fast_submits = 0
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.state.service = service
    app.state.limits = lim
    buckets = TokenBuckets(lim.submit_rate_per_s, lim.submit_burst)
    in_flight: dict[str, int] = {}  # tenant -> submissions admitted and not yet committed (event loop only)
    in_flight_keys: dict[tuple[str, str], int] = {}  # (tenant, Idempotency-Key) of those (event loop only)

    def is_retry(tenant: str, key: str | None) -> bool:
        """Is this the retry of a job already accepted (or being committed) under the same Idempotency-Key?
        Asked only where a limit would refuse: the limits count new jobs only (ApiLimits)."""
        if not key:
            return False
        return (tenant, key) in in_flight_keys or service.store.idempotency_known(tenant, key)

    async def submitter(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
        """A tenant within its submission rate. A dependency, so the token bucket is charged before the body
        is validated: a flood of invalid bodies is refused as cheaply as one of valid ones. (It authenticates
        itself rather than depending on :func:`_principal`: one dependency level less on the hottest route.)"""
        p = await _principal(request, authorization)
        if p.tenant is None:
            raise HTTPException(status_code=403, detail="operators do not submit jobs; use a tenant token")
        wait_s = buckets.take(p.tenant.name)
        request.state.charged = wait_s <= 0
        if wait_s > 0 and not is_retry(p.tenant.name, request.headers.get("idempotency-key")):
            raise _over_rate(f"tenant {p.tenant.name!r} is over its submission rate of {lim.submit_rate_per_s:g}/s "
                             f"(burst {lim.submit_burst})", wait_s)
        return p

    read_buckets = TokenBuckets(lim.read_rate_per_s, lim.read_burst)

    async def page_reader(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
        """A caller within its rate of list pages (``read_rate_per_s``, ``read_burst``: one token bucket per
        caller, whatever the number of its connections), else 429 with ``Retry-After``: on the event loop,
        before any page is looked up or built (issue 16: readers polling back to back do not take the
        interpreter from the submissions)."""
        p = await _principal(request, authorization)
        wait_s = read_buckets.take(p.name)
        if wait_s > 0:
            raise _over_rate(f"{p.name!r} is over its rate of {lim.read_rate_per_s:g} list pages/s (burst "
                             f"{lim.read_burst})", wait_s)
        return p

    async def operator_page_reader(p: Principal = Depends(page_reader)) -> Principal:
        return await _operator(p)

    async def do_submit(p: Principal, spec: JobSpec, idempotency_key: str | None, charged: bool) -> tuple[int, bytes]:
        """A submission past authentication and the rate limit (``charged``: it took a token), for the route
        and for :func:`fast_submit` alike: the queued-jobs limit, the deadline, admission, the group commit.
        Returns (status, JSON body); raises HTTPException for a refusal."""
        assert p.tenant is not None
        tenant = p.tenant.name
        queued = service.store.count("queued", tenant) + in_flight.get(tenant, 0)
        if queued >= lim.max_queued_per_tenant and not is_retry(tenant, idempotency_key):
            raise HTTPException(
                status_code=429,
                detail=f"tenant {tenant!r} has {queued} queued jobs, the limit is {lim.max_queued_per_tenant}; "
                "wait for some to start or cancel some",
                headers={"Retry-After": "10"},
            )
        if spec.deadline is not None:
            now = service.clock.now_unix_s()
            d = spec.deadline.timestamp()
            if d <= now or d > now + DEADLINE_MAX_AHEAD_S:
                raise _refuse(422, ["body", "deadline"],
                              f"deadline {spec.deadline.isoformat()} must lie after submission "
                              f"({datetime.fromtimestamp(now, UTC).isoformat()}) and at most "
                              f"{DEADLINE_MAX_AHEAD_S // 86400} days after it", "value_error.deadline")  # fmt: skip
        if spec.begin is not None:  # (a begin in year 9999 held the job for good: accepted, never run, no word)
            now = service.clock.now_unix_s()
            if spec.begin.timestamp() > now + DEADLINE_MAX_AHEAD_S:
                raise _refuse(422, ["body", "begin"],
                              f"begin {spec.begin.isoformat()} lies more than {DEADLINE_MAX_AHEAD_S // 86400} days "
                              f"after submission ({datetime.fromtimestamp(now, UTC).isoformat()}); allowed: a time "
                              "before that (a past one means now), as a deadline", "value_error.begin")  # fmt: skip
        in_flight[tenant] = in_flight.get(tenant, 0) + 1
        ikey = (tenant, idempotency_key) if idempotency_key else None
        if ikey is not None:
            in_flight_keys[ikey] = in_flight_keys.get(ikey, 0) + 1
        try:
            # admission is checked here; the row joins the next group commit and we await its fsync
            res = await service.submit_async(p.tenant, spec, idempotency_key)
        except IdempotencyConflict as e:
            raise HTTPException(status_code=409, detail=str(e)) from None
        except InputError as e:
            raise _refuse(422, ["body", *_field_of(str(e))], str(e), "value_error.sovereignty") from None
        finally:
            in_flight[tenant] -= 1
            if ikey is not None:
                n = in_flight_keys.pop(ikey) - 1
                if n:
                    in_flight_keys[ikey] = n
        if not res.created and charged:
            buckets.refund(tenant)  # a retry of an accepted job is not a new job: its token comes back
        head = _json_bytes({"id": res.record.id, "state": res.record.state, "created": res.created})
        body = head[:-1] + b',"job":' + res.record.view_json(_json_bytes) + b"}"  # = JobCreated, spec spliced
        return (201 if res.created else 200), body

    async def fast_submit(scope: Scope, receive: Receive, send: Send) -> bool | bytes | None:
        """``POST /v1/jobs`` without the framework's per-request machinery (middleware layers, routing,
        dependency solving, exception wrappers: about half of a submission's CPU), for what most requests
        are: an authenticated tenant's valid spec with a well-formed ``Idempotency-Key`` (or none), within
        the rate. The same steps in the same order as the route (the token bucket, then :func:`do_submit`),
        the same answers. Anything else is left to the route, which answers it as documented: ``None`` when
        nothing was read, the body read (to be replayed) when the request needs the route; ``True`` when
        answered here. Nothing is charged or stored before that decision."""
        authorization: bytes | None = None
        key: bytes | None = None
        ctype: bytes | None = None
        n_auth = n_key = 0
        for k, v in scope["headers"]:
            if k == b"authorization":
                authorization, n_auth = v, n_auth + 1
            elif k == b"idempotency-key":
                key, n_key = v, n_key + 1
            elif k == b"content-type":
                ctype = v
        if authorization is None or n_auth != 1 or n_key > 1 or ctype is None:
            return None
        if ctype.split(b";", 1)[0].strip().lower() != b"application/json":
            return None
        try:
            p = service.auth.authenticate(service.auth.bearer(authorization.decode("latin-1")))
            idem = None if key is None else key.decode("ascii")
        except UnicodeDecodeError:
            return None
        if p is None or p.tenant is None or (idem is not None and not _IDEM_KEY_RE.fullmatch(idem)):
            return None
        chunks = []
        more = True
        while more:
            msg = await receive()
            if msg["type"] != "http.request":
                return None  # the client left: nothing to answer
            chunks.append(msg.get("body", b""))
            more = msg.get("more_body", False)
        body = b"".join(chunks)
        try:
            spec = JobSpec.model_validate(json.loads(body))  # as the route: json.loads, then the model
        except Exception:  # noqa: BLE001 -- not JSON or not a valid spec: the route says which, as documented
            return body
        tenant = p.tenant.name
        wait_s = buckets.take(tenant)
        if wait_s > 0 and not is_retry(tenant, idem):
            return body  # the route takes again, finds the bucket empty and answers 429
        app.state.fast_submits += 1
        try:
            status, out = await do_submit(p, spec, idem, wait_s <= 0)
        except HTTPException as e:
            await _error_response(e.status_code, e.detail, dict(e.headers or {}))(scope, receive, send)
            return True
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})
        return True

    def own_job(p: Principal, job_id: str) -> Any:
        rec = service.store.get(job_id)
        if rec is None or (not p.is_operator and rec.tenant != p.name):
            raise HTTPException(status_code=404, detail=f"no job {job_id!r}")
        return rec

    def job_view(r: Any) -> dict[str, Any]:
        """A job's view with why it waits and when the plan starts it (scheduler.reasons; null unless queued)."""
        return {**r.view(), **service.why.fields(r.id, r.state)}

    page_reads = threading.BoundedSemaphore(1)
    rendered = itertools.count(1)  # jobs rendered in list pages (job_view_json)

    def one_page_at_a_time(route: Callable[..., Response]) -> Callable[..., Response]:
        """List pages (jobs, queue, audit: O(page) Python work each) are rendered one at a time, on one
        worker thread: readers polling back to back queue behind each other instead of each taking a share of
        the interpreter from the event loop that answers submissions (issue 16: reads must not slow them)."""

        @functools.wraps(route)
        def one(*args: Any, **kwargs: Any) -> Response:
            with page_reads:
                return route(*args, **kwargs)

        return one

    pages = PageCache(page_cache_bytes)
    app.state.pages = pages

    def build_page(key: tuple[Any, ...], build: Callable[[], tuple[Any, int, bool]]) -> Any:
        """On a worker thread, one page at a time (``page_reads``): the page under ``key``, unless a reader
        before built it, built by ``build`` (the page, its size in bytes, whether jobs follow it), after the
        versions it is kept under are read."""
        with page_reads:
            why = service.why.version
            changes, commits = service.store.versions()
            page = pages.get(key, why, changes, commits)
            if page is None:
                page, size, more = build()
                pages.put(key, page, size, why, changes, commits, more)
            return page

    async def cached_page(key: tuple[Any, ...], build: Callable[[], tuple[Any, int, bool]]) -> Any:
        """A list page from :class:`PageCache` (on the event loop: a few dict lookups, no thread hop), or
        built by :func:`build_page` on a worker thread."""
        page = pages.get(key, service.why.version, *service.store.versions())
        if page is None:
            page = await run_in_threadpool(build_page, key, build)
        return page

    def row_view_json(row: tuple[Any, ...], **extra: Any) -> bytes:
        """:func:`job_view_json` of a stored row (``StateStore.active_page_rows``), the row's own part kept
        by :meth:`PageCache.fragment` (without a page cache: :func:`job_view_json` itself)."""
        if pages.max_fragments <= 0:
            return job_view_json(job_record(row), **extra)
        if next(rendered) % _YIELD_EVERY == 0:
            time.sleep(0)
        head, tail = pages.fragment(row, lambda: job_record(row).view_json_parts(_json_bytes))
        why = _json_bytes({**service.why.fields(row[ROW_ID], row[ROW_STATE]), **extra})  # never empty
        return head + b"," + why[1:-1] + tail

    def job_view_json(r: Any, **extra: Any) -> bytes:
        """:func:`job_view` (and ``extra``) as JSON, the stored spec spliced in (JobRecord.view_json): a page
        of 500 jobs is not parsed, validated against its response model and encoded again. Every
        ``_YIELD_EVERY`` jobs the page's thread lets the interpreter go (``time.sleep(0)``): the event loop,
        which answers submissions, waits for it about a millisecond, not a 5 ms switch interval, each time."""
        if next(rendered) % _YIELD_EVERY == 0:
            time.sleep(0)
        return r.view_json(_json_bytes, {**service.why.fields(r.id, r.state), **extra})

    # ------------------------------------------------------------------------------ liveness
    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """The process is alive (answered on the event loop: no thread-pool queue in front of it)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses={503: {"description": "not ready yet"}})
    def readyz() -> JSONResponse:
        """State open, executor ready, control loop running (its first tick may still be reading a
        restart's jobs in: ``first_tick_done``); submissions are accepted and committed."""
        checks = service.readiness()
        ok = all(checks.values())
        return JSONResponse({"ready": ok, "checks": checks, "first_tick_done": service.first_tick_done},
                            status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    def metrics() -> Response:
        """Prometheus metrics (text format)."""
        body, ctype = service.metrics_exposition()
        return Response(content=body, media_type=ctype)

    # ---------------------------------------------------------------------------------- jobs
    @app.post(
        "/v1/jobs",
        tags=["jobs"],
        status_code=201,
        response_model=JobCreated,
        responses={
            200: {"model": JobCreated, "description": "the same Idempotency-Key returned the job it created first"},
            **_BODY_RESPONSES,
            **_AUTH_RESPONSES,
            403: _err("operators do not submit jobs"),
            409: _err("Idempotency-Key reused for a different spec"),
            422: _err("malformed spec (the field is named in loc), a deadline before submission, or a job no "
                      "pool this tenant may use can hold"),
            429: {**_err("the tenant's submission rate or queued-jobs limit (ApiLimits)"),
                  "headers": {"Retry-After": {"schema": {"type": "integer"}}}},
        },
    )  # fmt: skip
    async def submit(
        request: Request,
        spec: JobSpec,
        idempotency_key: Annotated[
            str | None, Header(min_length=1, max_length=IDEMPOTENCY_KEY_MAX, pattern=_IDEM_KEY_CHARS)
        ] = None,
        p: Principal = Depends(submitter),  # a default, not Annotated: submitter is local to create_app
    ) -> Response:
        """Submit a job (the YAML job spec as JSON). 201 with ``{"id": ...}``; with an ``Idempotency-Key``
        header (visible ASCII), a retry returns the same job (200), whatever the rate and queue limits say (they
        count new jobs only); the same key with another spec is a 409. The reply is sent only once the job is
        on disk."""
        assert p.tenant is not None  # submitter() refused operators
        status, body = await do_submit(p, spec, idempotency_key, getattr(request.state, "charged", False))
        return Response(body, status_code=status, media_type="application/json")

    @app.get("/v1/jobs", tags=["jobs"], response_model=JobsPage,
             responses={**_AUTH_RESPONSES, **_QUERY_RESPONSES, **_READ_RESPONSES})  # fmt: skip
    async def list_jobs(
        p: Principal = Depends(page_reader),  # a default, not Annotated: page_reader is local to create_app
        state: Annotated[Literal["queued", "running", "finished", "failed", "cancelled"] | None, Query()] = None,
        tenant: Annotated[str | None, Query(max_length=64, description="operators only")] = None,
        limit: PageSize = DEFAULT_PAGE_SIZE,
        cursor: Cursor = None,
        after: Annotated[int, Query(ge=0, le=2**62, description="return jobs after this sequence number "
                                    "(the older form of cursor)")] = 0,  # fmt: skip
    ) -> Response:
        """Jobs in submission order, one page at a time: a tenant's own, or (operator) every tenant's."""
        who = (tenant if p.is_operator else p.name) if (tenant or not p.is_operator) else None
        start = max(after, int(cursor) if cursor is not None else 0)

        def build() -> tuple[bytes, int, bool]:
            recs = service.store.list_jobs(tenant=who, states=[state] if state else None, limit=limit + 1,
                                           after_seq=start)  # fmt: skip
            more = len(recs) > limit
            recs = recs[:limit]
            last = recs[-1].seq if recs else start
            head = _json_bytes({"next_cursor": str(last) if more else None, "next_after": last})
            body = _json_page(head, _json_lists({"jobs": [job_view_json(r) for r in recs]}))  # = JobsPage
            return body, len(body), more

        body = await cached_page(("jobs", who, state, start, limit), build)
        return Response(body, media_type="application/json")

    @app.get(
        "/v1/jobs/{job_id}",
        tags=["jobs"],
        responses={**_AUTH_RESPONSES, 404: _err("no such job (for you)"), **_QUERY_RESPONSES},
    )
    def get_job(job_id: Annotated[str, PathParam(max_length=64)], p: Caller) -> dict[str, Any]:
        """One job: state, pool, progress, energy and carbon so far."""
        return job_view(own_job(p, job_id))

    @app.delete(
        "/v1/jobs/{job_id}",
        tags=["jobs"],
        responses={**_AUTH_RESPONSES, 404: _err("no such job (for you)"), **_QUERY_RESPONSES},
    )
    def cancel_job(job_id: Annotated[str, PathParam(max_length=64)], p: Caller) -> dict[str, Any]:
        """Cancel: a queued job at once; a running one is stopped (checkpointed) on the next tick."""
        own_job(p, job_id)
        return service.cancel(job_id).view()

    @app.get("/v1/queue", tags=["jobs"], response_model=QueuePage,
             responses={**_AUTH_RESPONSES, **_QUERY_RESPONSES, **_READ_RESPONSES})  # fmt: skip
    async def queue(
        p: Principal = Depends(page_reader), limit: PageSize = DEFAULT_PAGE_SIZE, cursor: Cursor = None
    ) -> Response:
        """Running and queued jobs (own, or all for an operator) in submission order, one page at a time."""
        who = None if p.is_operator else p.name
        after = int(cursor) if cursor is not None else 0

        def build() -> tuple[tuple[bytes, str | None], int, bool]:
            rows, before, more = service.store.active_page_rows(who, after, limit)
            running, queued = [], []
            for row in rows:
                if row[ROW_STATE] == "running":
                    running.append(row_view_json(row))
                else:
                    before += 1
                    queued.append(row_view_json(row, position=before))
            lists = _json_lists({"running": running, "queued": queued})
            return (lists, str(job_record(rows[-1]).seq) if more and rows else None), len(lists), more

        lists, next_cursor = await cached_page(("queue", who, after, limit), build)
        counts = {"running": 0, "queued": 0}  # of every active job, as committed now (kept in memory)
        for (st, t), n in service.store.counts().items():
            if st in counts and (who is None or t == who):
                counts[st] += n
        head = _json_bytes({"counts": counts, "next_cursor": next_cursor})
        return Response(_json_page(head, lists), media_type="application/json")  # = QueuePage

    @app.get(
        "/v1/jobs/{job_id}/logs",
        tags=["jobs"],
        responses={**_AUTH_RESPONSES, 404: _err("no such job (for you)"), **_QUERY_RESPONSES},
    )
    def job_logs(
        job_id: Annotated[str, PathParam(max_length=64)],
        p: Caller,
        offset: Annotated[int, Query(ge=0, le=2**62, description="byte offset to read from")] = 0,
    ) -> dict[str, Any]:
        """A chunk of the job's output (rank 0's stdout/stderr) from ``offset``, as the executor captured it
        (scheduler.opsviews.read_log); ``state`` tells a follower when to stop."""
        from scheduler.opsviews import job_log_path, read_log

        rec = own_job(p, job_id)
        return {"id": rec.id, "state": rec.state, **read_log(job_log_path(service.executor, rec.id), offset)}

    @app.get("/v1/pools", tags=["ops"], responses=_AUTH_RESPONSES)
    def pools(p: Caller) -> dict[str, Any]:
        """Pools (like sinfo): labels, GPUs by state (running, free, down), power limits (scheduler.opsviews)."""
        from scheduler.opsviews import pools_view

        running = [(r.pool, r.gpus, r.power_fraction) for r in service.store.list_jobs(states=("running",))]
        return pools_view(service.site, service.executor.healthy_gpus(), running)

    @app.get("/v1/usage", tags=["tenants"], responses=_AUTH_RESPONSES)
    def usage(p: Caller) -> dict[str, Any]:
        """Usage (GPU-seconds, energy, carbon) against quota and commitment: own, or every tenant's."""
        return service.usage(None if p.is_operator else p.name)

    @app.get("/v1/plan", tags=["plan"], responses=_AUTH_RESPONSES)
    def plan(p: Caller) -> dict[str, Any]:
        """Current plan summary and per-slot marginal carbon prices (g CO2-eq per GPU-hour)."""
        return service.plan_summary()

    # ---------------------------------------------------------------------------- congestion
    @app.post(
        "/v1/congestion",
        tags=["grid"],
        status_code=201,
        responses={**_BODY_RESPONSES, **_AUTH_RESPONSES, **_OPERATOR_RESPONSES,
                   422: _err("invalid event (the field is named in loc), or end not after start")},
    )  # fmt: skip
    def add_congestion(ev: CongestionIn, p: OperatorCaller) -> dict[str, Any]:
        """Cap grid import at ``cap_mw`` from ``start`` to ``end`` (honoured by the next tick's plan and by
        the fast path at once: a tick is triggered)."""
        if ev.end <= ev.start:
            raise _refuse(422, ["body", "end"], f"end ({ev.end.isoformat()}) must be after start "
                          f"({ev.start.isoformat()})", "value_error")  # fmt: skip
        return service.add_congestion(ev.cap_mw, ev.start.timestamp(), ev.end.timestamp(), p.name, ev.reason).view()

    @app.get("/v1/congestion", tags=["grid"], responses=_AUTH_RESPONSES)
    def list_congestion(p: Caller) -> dict[str, Any]:
        """Congestion events that are active now or announced for later."""
        return {"events": [c.view() for c in service.active_congestion()]}

    # --------------------------------------------------------------------------------- audit
    next_cursor_header = {
        "X-Next-Cursor": {"description": "the next page's cursor; absent on the last page",
                          "schema": {"type": "string"}},
        "Link": {"description": 'the next page as `<url>; rel="next"` (RFC 8288); absent on the last page',
                 "schema": {"type": "string"}},
    }  # fmt: skip

    @app.get(
        "/v1/audit",
        tags=["ops"],
        responses={
            200: {
                "description": "one page of placements in order of their id, as JSON (format=json) or CSV "
                "(format=csv); the next page's cursor is next_cursor (JSON) and, for both, the X-Next-Cursor "
                "and Link headers",
                "headers": next_cursor_header,
                "content": {
                    "application/json": {"schema": {"type": "object", "properties": {
                        "placements": {"type": "array", "items": {"type": "object"}},
                        "next_cursor": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
                        "required": ["placements", "next_cursor"]}},
                    "text/csv": {"schema": {"type": "string"}},
                },
            },
            **_AUTH_RESPONSES, **_OPERATOR_RESPONSES, **_QUERY_RESPONSES, **_READ_RESPONSES,
        },
    )  # fmt: skip
    @one_page_at_a_time
    def audit(
        request: Request,
        p: Principal = Depends(operator_page_reader),
        format: Annotated[Literal["json", "csv"], Query()] = "json",
        limit: PageSize = DEFAULT_PAGE_SIZE,
        cursor: Cursor = None,
    ) -> Response:
        """Placements (job, tenant, pool and its labels, nodes, time), JSON or CSV, one page at a time in order
        of their id: pass ``next_cursor`` (or the ``X-Next-Cursor`` header of a CSV page) as ``cursor``."""
        rows = service.store.audit(limit=limit + 1, after_id=int(cursor) if cursor is not None else 0)
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = str(rows[-1]["id"]) if more and rows else None
        headers: dict[str, str] = {}
        if nxt is not None:
            headers["X-Next-Cursor"] = nxt
            link = request.url.include_query_params(cursor=nxt)
            headers["Link"] = f'<{link.path}?{link.query}>; rel="next"'
        if format == "json":
            return JSONResponse({"placements": rows, "next_cursor": nxt}, headers=headers)
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["id", "time_utc", "job_id", "tenant", "pool", "jurisdiction", "clearance", "labels", "nodes",
                    "jurisdiction_required", "clearance_required"])  # fmt: skip
        for r in rows:
            w.writerow([
                r["id"], r["time_utc"], r["job_id"], r["tenant"], r["pool"], r["labels"].get("jurisdiction", ""),
                r["labels"].get("clearance", ""), json.dumps(r["labels"], sort_keys=True),
                " ".join(str(n) for n in r["nodes"]), r["jurisdiction_required"] or "", r["clearance_required"] or "",
            ])  # fmt: skip
        return Response(content=buf.getvalue(), media_type="text/csv", headers=headers)

    return app


def _field_of(message: str) -> list[str]:
    """The spec field an admission error is about (its message starts with it), for ``detail[].loc``."""
    head = message.split(":", 1)[0].strip()
    if head in ("requires.clearance", "requires.jurisdiction", "gpus", "pool"):
        return head.split(".")
    return ["pool"]
