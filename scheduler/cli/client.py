"""Client commands on the HTTP API: ``submit``, ``status``, ``queue``, ``cancel``, ``usage``, ``congestion``.

Server and token, first found wins: ``--server`` / ``--token``; ``WINDWARD_SERVER`` / ``WINDWARD_TOKEN``;
the config file ``~/.config/windward/config.toml`` (``server = "http://127.0.0.1:8470"``,
``token = "..."``; ``$WINDWARD_CONFIG`` names another file); default server ``http://127.0.0.1:8470``.
Every command prints a readable table, or the API's JSON with ``--json``.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import typer

DEFAULT_SERVER = "http://127.0.0.1:8470"

_server_opt = typer.Option(None, "--server", help="API base URL (env WINDWARD_SERVER, config file).")
_token_opt = typer.Option(None, "--token", help="Bearer token (env WINDWARD_TOKEN, config file).")
_json_opt = typer.Option(False, "--json", help="Print the API's JSON instead of a table.")
_page_opt = typer.Option(None, "--page-size", min=1, max=5000, help="Jobs per request (default: the "
                         "server's page size); every page is fetched.")


def _config() -> dict[str, Any]:
    import tomllib

    from scheduler.errors import InputError

    path = Path(os.environ.get("WINDWARD_CONFIG", Path.home() / ".config" / "windward" / "config.toml"))
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise InputError(f"{path}: not a readable TOML config file: {e}") from e


def _conn(server: str | None, token: str | None) -> tuple[str, str]:
    from scheduler.errors import InputError

    cfg = _config()
    srv = server or os.environ.get("WINDWARD_SERVER") or cfg.get("server") or DEFAULT_SERVER
    tok = token or os.environ.get("WINDWARD_TOKEN") or cfg.get("token")
    if not tok:
        raise InputError(
            "no token: pass --token, set WINDWARD_TOKEN, or put token = \"...\" in ~/.config/windward/config.toml"
        )
    return str(srv).rstrip("/"), str(tok)


def _detail_text(detail: Any) -> str:
    """The server's ``detail`` as one line: a 422 list becomes ``field: message; ...``. A message that
    already names its field (``gpus: 64 is above ...``) is not prefixed again."""
    if not isinstance(detail, list):
        return str(detail)
    parts = []
    for d in detail:
        if not isinstance(d, dict):
            parts.append(str(d))
            continue
        loc = [str(x) for x in d.get("loc", [])]
        field = ".".join(loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)
        msg = str(d.get("msg", ""))
        parts.append(msg if not field or msg.startswith(f"{field}:") or msg.startswith(f"{field} ") else f"{field}: {msg}")
    return "; ".join(parts)


#: Times a GET answered 429 (a paged list read past the server's read rate) is sent again after Retry-After.
_GET_429_RETRIES = 5


def _call(method: str, server: str | None, token: str | None, path: str, **kw: Any) -> Any:
    """One request. Raises :class:`ServerError` (exit 1) when the server cannot be reached or answers 5xx,
    :class:`Rejected` (exit 3) on 4xx; :class:`InputError` (exit 2) for a missing token (nothing sent)."""
    import httpx

    from scheduler.cli.exitcodes import Rejected, ServerError

    srv, tok = _conn(server, token)
    headers = {"Authorization": f"Bearer {tok}", **kw.pop("headers", {})}
    timeout = kw.pop("timeout", 30.0)
    for attempt in range(_GET_429_RETRIES + 1):
        try:
            r = httpx.request(method, srv + path, headers=headers, timeout=timeout, **kw)
        except httpx.HTTPError as e:
            raise ServerError(f"cannot reach {srv}: {e}") from e
        # a read over the server's list-page rate (ApiLimits.read_rate_per_s): wait as told and read again
        if r.status_code != 429 or method != "GET" or attempt == _GET_429_RETRIES:
            break
        wait = r.headers.get("retry-after", "1")
        time.sleep(min(float(wait), 30.0) if wait.isdigit() else 1.0)
    if r.status_code >= 400:
        try:
            detail = _detail_text(r.json().get("detail"))
        except (ValueError, AttributeError):
            detail = r.text[:500]
        msg = f"{method} {path}: HTTP {r.status_code}: {detail}"
        if r.status_code >= 500:
            raise ServerError(msg)
        raise Rejected(msg, r.status_code)
    if r.headers.get("content-type", "").startswith("application/json"):
        return r.json()
    return r.text


def _pages(server: str | None, token: str | None, path: str, list_keys: tuple[str, ...]) -> dict[str, Any]:
    """Every page of a paged list (``GET path?cursor=...`` until ``next_cursor`` is null), merged: the lists
    under ``list_keys`` are concatenated, other fields are those of the last page."""
    merged: dict[str, Any] = {}
    cursor: str | None = None
    sep = "&" if "?" in path else "?"
    for _ in range(1_000_000):  # bounded: a server that never ends its pages cannot hang the CLI forever
        page = _call("GET", server, token, path + (f"{sep}cursor={cursor}" if cursor else ""))
        for k in list_keys:
            merged.setdefault(k, []).extend(page.get(k, []))
        merged.update({k: v for k, v in page.items() if k not in list_keys})
        nxt = page.get("next_cursor")
        if not nxt or nxt == cursor:
            break
        cursor = str(nxt)
    merged["next_cursor"] = None
    return merged


def _paged(path: str, page_size: int | None) -> str:
    return path if page_size is None else f"{path}?limit={int(page_size)}"


def _table(title: str, cols: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for c in cols:
        t.add_column(c)
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    Console().print(t)


def _job_rows(jobs: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [j["id"], j["tenant"], j["name"], j["kind"], j["state"], j["gpus"], j["pool"] or "-",
         f"{100 * j['progress']:.1f}%", f"{j['power_fraction']:.2f}", f"{j['gpu_s'] / 3600:.2f}",
         f"{j['energy_j'] / 3.6e6:.2f}", f"{j['carbon_g'] / 1000:.3f}", j.get("reason") or "-",
         _short_time(j.get("planned_start")), _short_time(j.get("planned_end"))]
        for j in jobs
    ]  # fmt: skip


def _short_time(iso: str | None) -> str:
    """``2026-12-04T03:15:00Z`` -> ``12-04 03:15`` (UTC), ``-`` for none."""
    return f"{iso[5:10]} {iso[11:16]}" if iso else "-"


_JOB_COLS = ["id", "tenant", "name", "kind", "state", "gpus", "pool", "progress", "power", "GPU-h", "kWh", "kg CO2",
             "reason", "planned start", "planned end"]  # fmt: skip


#: Job states after which nothing changes (DESIGN section 7).
TERMINAL_STATES = ("finished", "done", "failed", "cancelled")


def _is_script(path: Path) -> bool:
    if path.suffix in (".sh", ".sbatch", ".slurm", ".bash"):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(2) == b"#!"
    except OSError:
        return False


def _specs_of(path: Path, key: str | None) -> tuple[list[Any], list[str | None]]:
    """The job specs of a YAML spec or a Slurm script (scheduler.slurm), validated here first (errors name the
    file, the line or the field: exit 2), and their idempotency keys."""
    from datetime import UTC, datetime

    from scheduler.models import load_job_spec

    if not _is_script(path):
        return [load_job_spec(path)], [key]
    from scheduler import slurm

    script = slurm.read_script(path, now=datetime.now(UTC))
    for line in script.ignored:
        typer.secho(f"note: {path}: {line}", err=True)
    specs = slurm.job_specs(script, path, Path.cwd())
    keys = [key if (key is None or j.array_index is None) else f"{key}-{j.array_index}" for j in script.jobs]
    return specs, keys


def _wait_for(ids: list[str], server: str | None, token: str | None, poll_s: float) -> None:
    """Poll each job until it ends; print each change of state or reason (stderr). Raises JobFailed (exit 4) when one
    failed or was cancelled; returns when all finished."""
    import time

    from scheduler.cli.exitcodes import JobFailed

    last: dict[str, str] = {}
    seen: dict[str, tuple[str, Any]] = {}
    left = list(ids)
    while left:
        for jid in list(left):
            v = _call("GET", server, token, f"/v1/jobs/{jid}")
            st = str(v["state"])
            said = (st, v.get("reason"))
            if seen.get(jid) != said:  # each change of state or of the reason it waits
                extra = f" ({v['reason']}; planned start {v.get('planned_start') or '-'})" if v.get("reason") else ""
                typer.echo(f"{jid}: {st}{extra}", err=True)
                seen[jid] = said
            last[jid] = st
            if st in TERMINAL_STATES:
                left.remove(jid)
        if left:
            time.sleep(poll_s)
    bad = {j: s for j, s in last.items() if s not in ("finished", "done")}
    if bad:
        raise JobFailed("; ".join(f"{j} {s}" for j, s in bad.items()))


def _when(value: str, opt: str) -> float:
    """An ISO 8601 time (UTC when it has no zone) as Unix seconds; a bad one is a usage error naming ``opt``."""
    from datetime import UTC, datetime

    from scheduler.errors import InputError

    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise InputError(f"{opt} {value!r}: not an ISO 8601 time; allowed: e.g. 2026-12-04 or "
                         "2026-12-04T10:00:00Z") from e  # fmt: skip
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def _usage_jobs(since: str | None, until: str | None, server: str | None, token: str | None, as_json: bool,
                page_size: int | None) -> None:  # fmt: skip
    """sacct: the jobs that ran in [since, until) (started before ``until`` and not ended before ``since``),
    each with its whole usage so far (the server keeps usage per job, not per interval), and totals."""
    lo = _when(since, "--since") if since else -math.inf
    hi = _when(until, "--until") if until else math.inf  # the server's now (its clock may run compressed)
    if lo >= hi:
        from scheduler.errors import InputError

        raise InputError(f"--since {since!r} is not before --until {until or 'now'!r}")
    res = _pages(server, token, _paged("/v1/jobs", page_size), ("jobs",))

    def t(iso: str | None, default: float) -> float:
        return _when(iso, "time") if iso else default

    jobs = [j for j in res["jobs"] if j.get("started_utc") and t(j["started_utc"], math.inf) < hi
            and t(j.get("ended_utc"), math.inf) >= lo]  # fmt: skip
    if as_json:
        typer.echo(json.dumps({"since": since, "until": until, "jobs": jobs}, indent=2))
        return
    rows = [[j["id"], j["tenant"], j["name"], j["state"], j["gpus"], _short_time(j["started_utc"]),
             _short_time(j.get("ended_utc")), f"{j['gpu_s'] / 3600:.2f}", f"{j['energy_j'] / 3.6e6:.2f}",
             f"{j['carbon_g'] / 1000:.3f}"] for j in jobs]  # fmt: skip
    rows.append(["total", "", f"{len(jobs)} jobs", "", "", "", "", f"{sum(j['gpu_s'] for j in jobs) / 3600:.2f}",
                 f"{sum(j['energy_j'] for j in jobs) / 3.6e6:.2f}", f"{sum(j['carbon_g'] for j in jobs) / 1000:.3f}"])  # fmt: skip
    _table(f"jobs that ran from {since or 'the start'} to {until or 'now'} (UTC)",
           ["id", "tenant", "name", "state", "gpus", "start", "end", "GPU-h", "kWh", "kg CO2"], rows)  # fmt: skip


def register(app: typer.Typer) -> None:
    @app.command("submit")
    def submit(
        spec: Path = typer.Argument(..., help="Job spec YAML (docs/contracts.md), or a Slurm batch script "
                                              "(#SBATCH / #WINDWARD lines; .sh, .sbatch, .slurm or a #! line)."),
        idempotency_key: str = typer.Option(None, "--idempotency-key", help="Retry-safe key (default: none); "
                                            "an array's task i uses KEY-i."),
        wait: bool = typer.Option(False, "--wait", help="Poll until every submitted job ends; exit 0 if all "
                                  "finished, 4 if one failed or was cancelled."),
        poll_s: float = typer.Option(5.0, "--poll-seconds", min=0.2, max=3600, help="Poll interval of --wait."),
        server: str = _server_opt,
        token: str = _token_opt,
        as_json: bool = _json_opt,
    ) -> None:
        """Submit a job spec or a Slurm script (a job array submits one job per index); prints the job ids."""
        specs, keys = _specs_of(spec, idempotency_key)
        results = []
        for s_, key in zip(specs, keys, strict=True):
            headers = {"Idempotency-Key": key} if key else {}
            results.append(_call("POST", server, token, "/v1/jobs",
                                 json=s_.model_dump(mode="json", exclude_none=True), headers=headers))  # fmt: skip
        if as_json:
            typer.echo(json.dumps(results[0] if len(results) == 1 else results, indent=2))
        else:
            for res in results:
                typer.echo(f"{res['id']} {'submitted' if res['created'] else 'already submitted (same key)'}")
        if wait:
            _wait_for([r["id"] for r in results], server, token, poll_s)

    @app.command("status")
    def status(
        job_id: str = typer.Argument(None, help="Job id; without it, all your jobs."),
        server: str = _server_opt,
        token: str = _token_opt,
        as_json: bool = _json_opt,
        page_size: int = _page_opt,
    ) -> None:
        """Show one job, or all of yours (every page of them)."""
        res = _call("GET", server, token, f"/v1/jobs/{job_id}") if job_id else _pages(server, token, _paged("/v1/jobs", page_size), ("jobs",))
        jobs = [res] if job_id else res["jobs"]
        if as_json:
            typer.echo(json.dumps(res, indent=2))
        else:
            _table("jobs", _JOB_COLS, _job_rows(jobs))
            if job_id and res.get("reason"):
                typer.echo(f"waiting: {res['reason']}: {res.get('reason_detail') or ''}; planned start "
                           f"{res.get('planned_start') or 'not within the plan'}")  # fmt: skip
            if job_id and res.get("detail"):
                typer.echo(f"detail: {res['detail']}")

    @app.command("queue")
    def queue(
        server: str = _server_opt, token: str = _token_opt, as_json: bool = _json_opt, page_size: int = _page_opt
    ) -> None:
        """Running and queued jobs (every page of them)."""
        res = _pages(server, token, _paged("/v1/queue", page_size), ("running", "queued"))
        if as_json:
            typer.echo(json.dumps(res, indent=2))
        else:
            _table(f"queue: {res['counts']['running']} running, {res['counts']['queued']} queued", _JOB_COLS,
                   _job_rows(res["running"] + res["queued"]))  # fmt: skip

    @app.command("cancel")
    def cancel(
        job_id: str = typer.Argument(..., help="Job id."),
        server: str = _server_opt,
        token: str = _token_opt,
        as_json: bool = _json_opt,
    ) -> None:
        """Cancel a job (a running one is checkpointed and stopped on the next tick)."""
        res = _call("DELETE", server, token, f"/v1/jobs/{job_id}")
        if as_json:
            typer.echo(json.dumps(res, indent=2))
        else:
            pending = " (stopping at the next tick)" if res["state"] == "running" else ""
            typer.echo(f"{res['id']}: {res['state']}{pending}")

    @app.command("usage")
    def usage(
        since: str = typer.Option(None, "--since", "-S", help="sacct-like: jobs that ran or ended from this "
                                  "ISO 8601 time (UTC when no zone) on, with their usage."),
        until: str = typer.Option(None, "--until", "-E", help="... up to this time (default: the server's now)."),
        server: str = _server_opt,
        token: str = _token_opt,
        as_json: bool = _json_opt,
        page_size: int = _page_opt,
    ) -> None:
        """Usage against quota and commitment; with --since/--until, per job like sacct (every page)."""
        if since is not None or until is not None:
            _usage_jobs(since, until, server, token, as_json, page_size)
            return
        res = _call("GET", server, token, "/v1/usage")
        if as_json:
            typer.echo(json.dumps(res, indent=2))
            return
        rows = []
        for t in res["tenants"]:
            c = t["commitment"]
            rows.append([
                t["tenant"], f"{t['gpu_hours']:.2f}", f"{t['energy_kwh']:.2f}", f"{t['carbon_g'] / 1000:.3f}",
                f"{t['running_gpus']}/{t['quota_gpus'] if t['quota_gpus'] is not None else '-'}",
                f"{c['delivered_gpu_hours']:.1f}/{c['gpu_hours']:.1f} per {c['period']}" if c else "-",
                f"{c['owed_gpu_hours']:.1f}" if c else "-", f"{t['fair_share']:.2f}",
            ])  # fmt: skip
        _table(f"usage as of {res['as_of_utc']}",
               ["tenant", "GPU-h", "kWh", "kg CO2", "GPUs/quota", "commitment", "owed GPU-h", "fair share"], rows)  # fmt: skip

    @app.command("congestion")
    def congestion(
        cap_mw: float = typer.Option(None, "--cap-mw", help="Cap grid import at this many MW (operator)."),
        start: str = typer.Option(None, "--from", help="ISO 8601 start (with a time zone)."),
        end: str = typer.Option(None, "--to", help="ISO 8601 end (with a time zone)."),
        reason: str = typer.Option("", "--reason"),
        server: str = _server_opt,
        token: str = _token_opt,
        as_json: bool = _json_opt,
    ) -> None:
        """List congestion events, or (operator, with --cap-mw --from --to) announce one."""
        from scheduler.errors import InputError

        if cap_mw is None:
            res = _call("GET", server, token, "/v1/congestion")
            events = res["events"]
        else:
            if not start or not end:
                raise InputError("--cap-mw needs --from and --to (ISO 8601 with a time zone)")
            res = _call("POST", server, token, "/v1/congestion",
                        json={"cap_mw": cap_mw, "start": start, "end": end, "reason": reason})  # fmt: skip
            events = [res]
        if as_json:
            typer.echo(json.dumps(res, indent=2))
        else:
            _table("congestion events", ["id", "cap MW", "from", "to", "by", "reason"],
                   [[e["id"], e["cap_mw"], e["start_utc"], e["end_utc"], e["created_by"], e["reason"]] for e in events])  # fmt: skip
