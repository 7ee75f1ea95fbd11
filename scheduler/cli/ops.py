"""Operators' views on the HTTP API: ``windward pools`` (like ``sinfo``), ``windward logs [-f] ID`` (like
``ray job logs -f``) and ``windward schedule`` (the current plan: per-job start / end / power, per-slot price,
wind, cap and import, as tables and a terminal chart). Server and token as in :mod:`scheduler.cli.client`."""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any

import typer

from scheduler.cli.client import (
    TERMINAL_STATES,
    _call,
    _json_opt,
    _page_opt,
    _paged,
    _pages,
    _server_opt,
    _short_time,
    _table,
    _token_opt,
)

#: Eight levels of a sparkline, lowest first.
_BARS = " ▁▂▃▄▅▆▇█"
#: The widest chart (columns); longer horizons are shown with several slots per column (their mean).
CHART_COLS = 72


def sparkline(values: list[float | None], cols: int = CHART_COLS) -> tuple[str, float, float]:
    """``values`` as one line of block characters (``?`` where unknown), scaled from their min to max;
    several values per column (the mean of the known ones) when there are more than ``cols``. Returns
    (line, min, max)."""
    known = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "", 0.0, 0.0
    lo, hi = (min(known), max(known)) if known else (0.0, 0.0)
    per = max(1, math.ceil(len(values) / cols))
    out = []
    for i in range(0, len(values), per):
        chunk = [v for v in values[i : i + per] if v is not None and math.isfinite(v)]
        if not chunk:
            out.append("?")
            continue
        m = sum(chunk) / len(chunk)
        level = 8 if hi <= lo else 1 + int(round(7 * (m - lo) / (hi - lo)))
        out.append(_BARS[level])
    return "".join(out), lo, hi


def gantt_row(start: int | None, end: int | None, n_slots: int, cols: int = CHART_COLS) -> str:
    """One job's planned run over the horizon (slot offsets [start, end)) on the chart's columns."""
    per = max(1, math.ceil(n_slots / cols))
    width = math.ceil(n_slots / per)
    if start is None or end is None:
        return "·" * width
    return "".join("█" if (c * per < end and (c + 1) * per > start) else "·" for c in range(width))


def register(app: typer.Typer) -> None:
    @app.command("pools")
    def pools(server: str = _server_opt, token: str = _token_opt, as_json: bool = _json_opt) -> None:
        """Pools (like sinfo): labels, GPUs running / free / down, power limits."""
        res = _call("GET", server, token, "/v1/pools")
        if as_json:
            typer.echo(json.dumps(res, indent=2))
            return
        rows = []
        for p in res["pools"]:
            g, w = p["gpus"], p["power"]
            rows.append([
                p["name"], ",".join(f"{k}={v}" for k, v in p["labels"].items()) or "-", p["nodes"], g["total"],
                g["running"], g["free"], g["down"], p["jobs_running"],
                f"{w['min_gpu_w']:.0f}-{w['tdp_w']:.0f}", f"{w['set_w'] / 1e3:.1f}/{w['limit_w'] / 1e3:.1f}",
            ])  # fmt: skip
        site = res["site"]
        _table(f"pools of {site['name']} (site max {site['site_max_w'] / 1e6:.2f} MW, PUE {site['pue']})",
               ["pool", "labels", "nodes", "GPUs", "running", "free", "down", "jobs", "W/GPU", "kW set/limit"],
               rows)  # fmt: skip

    @app.command("logs")
    def logs(
        job_id: str = typer.Argument(..., help="Job id."),
        follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new output until the job ends."),
        poll_s: float = typer.Option(2.0, "--poll-seconds", min=0.2, max=600, help="Poll interval of -f."),
        server: str = _server_opt,
        token: str = _token_opt,
    ) -> None:
        """A job's output as the executor captured it (rank 0's stdout and stderr)."""
        offset = 0
        said = False
        while True:
            res = _call("GET", server, token, f"/v1/jobs/{job_id}/logs?offset={offset}")
            if res["text"]:
                sys.stdout.write(res["text"])
                sys.stdout.flush()
            if not res["available"] and not said:
                typer.echo(f"{job_id}: {res['detail']}", err=True)
                said = True
            more = res["next_offset"] < res["size"]
            offset = res["next_offset"]
            if more:
                continue
            if not follow or res["state"] in TERMINAL_STATES:
                return
            time.sleep(poll_s)

    @app.command("schedule")
    def schedule(
        server: str = _server_opt, token: str = _token_opt, as_json: bool = _json_opt, page_size: int = _page_opt
    ) -> None:
        """The current plan: per job its planned start, end, pool and power; per slot the marginal carbon
        price, wind, caps and planned import; and a terminal chart of both."""
        plan = _call("GET", server, token, "/v1/plan")
        q = _pages(server, token, _paged("/v1/queue", page_size), ("running", "queued"))
        jobs = q["running"] + q["queued"]
        if as_json:
            typer.echo(json.dumps({"plan": plan, "jobs": jobs}, indent=2))
            return
        slots = plan.get("slots", [])
        if not slots:
            typer.echo(f"no plan yet: {plan.get('detail') or plan.get('status')}")
            return
        slot_s = float(plan["slot_s"])
        t0 = _unix(slots[0]["start_utc"])

        def offset(iso: str | None) -> int | None:
            return None if iso is None else int(round((_unix(iso) - t0) / slot_s))

        rows, bars = [], []
        ordered = sorted(jobs, key=lambda j: (j.get("planned_start") or ("0" if j["state"] == "running" else "~"), j["id"]))
        for j in ordered:
            start = 0 if j["state"] == "running" else offset(j.get("planned_start"))
            end = offset(j.get("planned_end"))
            frac = j.get("planned_power_fraction")
            rows.append([j["id"], j["tenant"], j["state"], j["gpus"], j.get("planned_pool") or j.get("pool") or "-",
                         "now" if j["state"] == "running" else _short_time(j.get("planned_start")),
                         _short_time(j.get("planned_end")), f"{frac:.2f}" if frac is not None else "-",
                         j.get("reason") or "-"])  # fmt: skip
            bars.append((j["id"], gantt_row(start, end, len(slots)) if end is not None else None))
        _table(f"plan of {plan['computed_utc']} ({plan['policy']}, {plan['status']}): {len(jobs)} jobs",
               ["id", "tenant", "state", "gpus", "pool", "start", "end", "power", "reason"], rows)  # fmt: skip
        srows = [[_short_time(s["start_utc"]), _num(s.get("dual_price_g_per_gpu_h"), 1),
                  _num(s.get("carbon_g_per_kwh"), 0), _num(_mw(s.get("wind_w")), 2), _num(_mw(s.get("grid_cap_w")), 2),
                  _num(_mw(s.get("site_max_w")), 2), _num(_mw(s.get("grid_import_w")), 2)] for s in slots]  # fmt: skip
        _table("slots (UTC)", ["slot", "price g/GPU-h", "carbon g/kWh", "wind MW", "grid cap MW", "site max MW",
                               "import MW"], srows)  # fmt: skip
        typer.echo(f"chart: {len(slots)} slots of {slot_s / 60:.0f} min from {slots[0]['start_utc']}")
        for label, key in (("wind", "wind_w"), ("grid cap", "grid_cap_w"), ("import", "grid_import_w"),
                           ("carbon", "carbon_g_per_kwh"), ("price", "dual_price_g_per_gpu_h")):  # fmt: skip
            vals = [s.get(key) for s in slots]
            if all(v is None for v in vals):
                continue
            line, lo, hi = sparkline([float(v) if v is not None else None for v in vals])
            typer.echo(f"{label:>10} |{line}| {lo:.3g}..{hi:.3g}")
        for jid, bar in bars:
            if bar is not None:
                typer.echo(f"{jid[-10:]:>10} |{bar}|")


def _unix(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _mw(w: Any) -> float | None:
    return None if w is None else float(w) / 1e6


def _num(v: Any, digits: int) -> str:
    return "-" if v is None else f"{float(v):.{digits}f}"
