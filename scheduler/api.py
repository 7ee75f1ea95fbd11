"""The HTTP API of ``windward server``: the FastAPI application over a running
:class:`~scheduler.service.Service` (DESIGN section 7 paths), its body-size limit and request models."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scheduler.auth import Principal
from scheduler.errors import InputError
from scheduler.models import JobSpec
from scheduler.service import Service
from scheduler.state import IdempotencyConflict

#: Largest request body accepted (bytes); larger ones get 413 before parsing.
MAX_BODY_BYTES = 64 * 1024

# ====================================================================================== HTTP API


class BodyLimit:
    """ASGI middleware: 413 for a declared ``Content-Length`` over the limit, and for a streamed body that
    grows over it (counted as it arrives, so nothing large is ever buffered)."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for k, v in scope.get("headers", ()):
            if k == b"content-length":
                try:
                    n = int(v)
                except ValueError:
                    await _send_json(send, 400, {"detail": "Content-Length is not an integer"})
                    return
                if n > self.max_bytes:
                    await _send_json(send, 413, {"detail": f"request body of {n} bytes is over the {self.max_bytes}-byte limit"})
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


class CongestionIn(BaseModel):
    """A congestion event announced by the grid operator: cap grid import at ``cap_mw`` from start to end."""

    model_config = ConfigDict(extra="forbid")

    cap_mw: Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]
    start: datetime
    end: datetime
    reason: Annotated[str, Field(max_length=512)] = ""

    @field_validator("start", "end")
    @classmethod
    def _tz(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("must carry a time zone, e.g. 2026-12-01T18:00:00Z")
        return v


class JobCreated(BaseModel):
    id: str
    state: str
    created: bool
    job: dict[str, Any]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def _service(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


async def _principal(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    # async: runs on the event loop (a sync dependency would cost every request a thread-pool hop)
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


def create_app(service: Service) -> FastAPI:
    """The FastAPI application over a running :class:`~scheduler.service.Service`."""
    meta: dict[str, Any] = {
        "title": "Windward",
        "version": "0.1.0",
        "description": "Carbon- and power-cap aware GPU scheduling for a wind-powered AI factory. "
        "Every /v1 route needs `Authorization: Bearer <token>` (a tenant's or an operator's).",
    }
    try:  # FastAPI >= 0.16x checks for OpenTelemetry providers on every request unless told not to
        app = FastAPI(**meta, telemetry={"tracing": False, "metrics": False, "logs": False})
    except TypeError:
        app = FastAPI(**meta)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.state.service = service

    def own_job(p: Principal, job_id: str) -> Any:
        rec = service.store.get(job_id)
        if rec is None or (not p.is_operator and rec.tenant != p.name):
            raise HTTPException(status_code=404, detail=f"no job {job_id!r}")
        return rec

    # ------------------------------------------------------------------------------ liveness
    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses={503: {"description": "not ready yet"}})
    def readyz() -> JSONResponse:
        """State open, executor ready, first tick done."""
        checks = service.readiness()
        ok = all(checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

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
            200: {"description": "the same Idempotency-Key returned the job it created first"},
            401: {"description": "missing or unknown token"},
            403: {"description": "operators do not submit jobs"},
            409: {"description": "Idempotency-Key reused for a different spec"},
            413: {"description": "body too large"},
            422: {"description": "malformed spec, or a job no pool this tenant may use can hold"},
        },
    )
    async def submit(
        spec: JobSpec,
        p: Caller,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> Response:
        """Submit a job (the YAML job spec as JSON). 201 with ``{"id": ...}``; with an ``Idempotency-Key``
        header, a retry returns the same job (200). The reply is sent only once the job is on disk."""
        if p.tenant is None:
            raise HTTPException(status_code=403, detail="operators do not submit jobs; use a tenant token")
        try:
            # admission is checked here; the row joins the next group commit and we await its fsync
            res = await service.submit_async(p.tenant, spec, idempotency_key)
        except IdempotencyConflict as e:
            raise HTTPException(status_code=409, detail=str(e)) from None
        except InputError as e:
            raise HTTPException(
                status_code=422,
                detail=[{"loc": ["body", *_field_of(str(e))], "msg": str(e), "type": "value_error.sovereignty"}],
            ) from None
        body = {"id": res.record.id, "state": res.record.state, "created": res.created, "job": res.record.view()}
        return JSONResponse(body, status_code=201 if res.created else 200)

    @app.get("/v1/jobs", tags=["jobs"])
    def list_jobs(
        p: Caller,
        state: Annotated[Literal["queued", "running", "finished", "failed", "cancelled"] | None, Query()] = None,
        tenant: Annotated[str | None, Query(max_length=64, description="operators only")] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
        after: Annotated[int, Query(ge=0, le=2**62, description="return jobs after this sequence number")] = 0,
    ) -> dict[str, Any]:
        """Jobs in submission order: a tenant's own, or (operator) every tenant's."""
        who = (tenant if p.is_operator else p.name) if (tenant or not p.is_operator) else None
        recs = service.store.list_jobs(tenant=who, states=[state] if state else None, limit=limit, after_seq=after)
        return {"jobs": [r.view() for r in recs], "next_after": recs[-1].seq if recs else after}

    @app.get("/v1/jobs/{job_id}", tags=["jobs"], responses={404: {"description": "no such job (for you)"}})
    def get_job(job_id: Annotated[str, PathParam(max_length=64)], p: Caller) -> dict[str, Any]:
        """One job: state, pool, progress, energy and carbon so far."""
        return own_job(p, job_id).view()  # type: ignore[no-any-return]

    @app.delete("/v1/jobs/{job_id}", tags=["jobs"], responses={404: {"description": "no such job (for you)"}})
    def cancel_job(job_id: Annotated[str, PathParam(max_length=64)], p: Caller) -> dict[str, Any]:
        """Cancel: a queued job at once; a running one is stopped (checkpointed) on the next tick."""
        own_job(p, job_id)
        return service.cancel(job_id).view()

    @app.get("/v1/queue", tags=["jobs"])
    def queue(p: Caller) -> dict[str, Any]:
        """Queued and running jobs (own, or all for an operator), with the planner's view of them."""
        return service.queue(None if p.is_operator else p.name)

    @app.get("/v1/usage", tags=["tenants"])
    def usage(p: Caller) -> dict[str, Any]:
        """Usage (GPU-seconds, energy, carbon) against quota and commitment: own, or every tenant's."""
        return service.usage(None if p.is_operator else p.name)

    @app.get("/v1/plan", tags=["plan"])
    def plan(p: Caller) -> dict[str, Any]:
        """Current plan summary and per-slot marginal carbon prices (g CO2-eq per GPU-hour)."""
        return service.plan_summary()

    # ---------------------------------------------------------------------------- congestion
    @app.post("/v1/congestion", tags=["grid"], status_code=201, responses={403: {"description": "operators only"}})
    def add_congestion(ev: CongestionIn, p: OperatorCaller) -> dict[str, Any]:
        """Cap grid import at ``cap_mw`` from ``start`` to ``end`` (honoured by the next tick's plan and by
        the fast path at once: a tick is triggered)."""
        if ev.end <= ev.start:
            raise HTTPException(
                status_code=422,
                detail=[{"loc": ["body", "end"], "msg": f"end ({ev.end.isoformat()}) must be after start "
                         f"({ev.start.isoformat()})", "type": "value_error"}],
            )  # fmt: skip
        return service.add_congestion(ev.cap_mw, ev.start.timestamp(), ev.end.timestamp(), p.name, ev.reason).view()

    @app.get("/v1/congestion", tags=["grid"])
    def list_congestion(p: Caller) -> dict[str, Any]:
        """Congestion events that are active now or announced for later."""
        return {"events": [c.view() for c in service.active_congestion()]}

    # --------------------------------------------------------------------------------- audit
    @app.get("/v1/audit", tags=["ops"], responses={403: {"description": "operators only"}})
    def audit(
        p: OperatorCaller,
        format: Annotated[Literal["json", "csv"], Query()] = "json",
        limit: Annotated[int | None, Query(ge=1, le=10_000_000)] = None,
    ) -> Response:
        """Every placement (job, tenant, pool and its labels, nodes, time): JSON or CSV."""
        rows = service.store.audit(limit=limit)
        if format == "json":
            return JSONResponse({"placements": rows})
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
        return Response(content=buf.getvalue(), media_type="text/csv")

    return app


def _field_of(message: str) -> list[str]:
    """The spec field an admission error is about (its message starts with it), for ``detail[].loc``."""
    head = message.split(":", 1)[0].strip()
    if head in ("requires.clearance", "requires.jurisdiction", "gpus", "pool"):
        return head.split(".")
    return ["pool"]
