"""Client commands on the HTTP API: ``submit``, ``status``, ``queue``, ``cancel``, ``usage``, ``congestion``.

Server and token, first found wins: ``--server`` / ``--token``; ``WINDWARD_SERVER`` / ``WINDWARD_TOKEN``;
the config file ``~/.config/windward/config.toml`` (``server = "http://127.0.0.1:8470"``,
``token = "..."``; ``$WINDWARD_CONFIG`` names another file); default server ``http://127.0.0.1:8470``.
Every command prints a readable table, or the API's JSON with ``--json``.
"""

from __future__ import annotations

import json
import os
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


def _call(method: str, server: str | None, token: str | None, path: str, **kw: Any) -> Any:
    import httpx

    from scheduler.errors import WindwardError

    srv, tok = _conn(server, token)
    headers = {"Authorization": f"Bearer {tok}", **kw.pop("headers", {})}
    try:
        r = httpx.request(method, srv + path, headers=headers, timeout=30.0, **kw)
    except httpx.HTTPError as e:
        raise WindwardError(f"cannot reach {srv}: {e}") from e
    if r.status_code >= 400:
        try:
            detail = r.json().get("detail")
        except ValueError:
            detail = r.text
        if isinstance(detail, list):
            detail = "; ".join(f"{'.'.join(str(x) for x in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail)
        raise WindwardError(f"{method} {path}: HTTP {r.status_code}: {detail}")
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
         f"{j['energy_j'] / 3.6e6:.2f}", f"{j['carbon_g'] / 1000:.3f}"]
        for j in jobs
    ]  # fmt: skip


_JOB_COLS = ["id", "tenant", "name", "kind", "state", "gpus", "pool", "progress", "power", "GPU-h", "kWh", "kg CO2"]


def register(app: typer.Typer) -> None:
    @app.command("submit")
    def submit(
        spec: Path = typer.Argument(..., help="Job spec YAML (DESIGN section 7)."),
        idempotency_key: str = typer.Option(None, "--idempotency-key", help="Retry-safe key (default: none)."),
        server: str = _server_opt,
        token: str = _token_opt,
        as_json: bool = _json_opt,
    ) -> None:
        """Submit a job spec; prints the job id."""
        from scheduler.models import load_job_spec

        s = load_job_spec(spec)  # validated here first: errors name the file and the field
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        res = _call("POST", server, token, "/v1/jobs", json=s.model_dump(mode="json", exclude_none=True), headers=headers)
        if as_json:
            typer.echo(json.dumps(res, indent=2))
        else:
            typer.echo(f"{res['id']} {'submitted' if res['created'] else 'already submitted (same key)'}")

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
    def usage(server: str = _server_opt, token: str = _token_opt, as_json: bool = _json_opt) -> None:
        """Usage against quota and commitment."""
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
