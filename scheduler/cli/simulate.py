"""``windward simulate``: replay a workload on a site against energy signals with a policy, on a virtual clock."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from scheduler.cli.options import (
    beyond_age_h_option,
    defer_history_days_option,
    deferral_options,
    horizon_hours_option,
    max_defer_h_option,
    parse_utc,
    planner_backend,
    policy_option,
    seed_option,
)

DEFAULT_START = "2023-03-01T00:00:00Z"


def register(app: typer.Typer) -> None:
    @app.command(
        "simulate",
        help=(
            "Replay a workload on a site on a virtual clock and report grid carbon, energy, cap violations, "
            "job completion and inference service. With no arguments: the demo site, the embedded energy year "
            "(synthetic, calibrated to NL 2021-2023) and the embedded workload, 2 days. Real data: "
            "--energy ../shared/data/energy/nl-2021-2023-hourly.csv --trace itp:cluster04. "
            "--planner-backend torch --planner-device cuda runs the windward policy's optimiser on a GPU."
        ),
    )
    def simulate(
        site: str = typer.Option("demo", "--site", help="Built-in site name (demo, rotterdam-100k) or site YAML path."),
        trace: str = typer.Option(
            "embedded", "--trace", help="Workload: 'embedded', 'itp:clusterNN', an ITP CSV or a canonical jobs CSV."
        ),
        energy: str = typer.Option("embedded", "--energy", help="Energy: 'embedded' or an energy CSV path."),
        start: str = typer.Option(DEFAULT_START, "--start", help="Simulation start, ISO 8601 UTC."),
        days: float = typer.Option(2.0, "--days", min=0.01, help="Days to simulate."),
        policy: str = policy_option(),
        forecast: str = typer.Option("perfect", "--forecast", help="What the policy sees: perfect, persistence, noisy."),
        out: Path = typer.Option(Path("report.json"), "--out", help="Report JSON to write."),
        seed: int = seed_option("Seed for embedded data, trace assignment and noisy forecasts."),
        plot: Path | None = typer.Option(
            None, "--plot", help="PNG of power vs caps, wind and carbon (default: the report path with .png)."
        ),
        no_plot: bool = typer.Option(False, "--no-plot", help="Do not write the PNG."),
        horizon_hours: float = horizon_hours_option(24.0),
        trace_offset_days: float = typer.Option(0.0, "--trace-offset-days", min=0.0, help="Where the trace slice starts."),
        amplify: float = typer.Option(1.0, "--amplify", min=0.001, help="Replicate training jobs by this factor."),
        compare: str = typer.Option(
            "backfill,greedy-green",
            "--compare",
            help="Comma-separated policies (names as for --policy) to run on the same slice and tabulate beside "
            "--policy ('' for none).",
        ),
        planner_backend_: str = typer.Option(
            "numpy", "--planner-backend", help="Array backend of the windward policy's optimiser: numpy or torch."
        ),
        planner_device: str = typer.Option(
            "cpu", "--planner-device", help="Device for --planner-backend: cpu, cuda or cuda:N (torch with CUDA)."
        ),
        strict: bool = typer.Option(False, "--strict", help="Refuse gaps in the energy CSV and empty cells in a "
                                    "jobs CSV instead of filling them (each fill is said on stderr)."),
        defer_history_days: float = defer_history_days_option(),
        beyond_age_h: float | None = beyond_age_h_option(),
        max_defer_h: float | None = max_defer_h_option(),
    ) -> None:
        import json

        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.table import Table

        from scheduler import signals, traces
        from scheduler.control import run_simulation, slots_for_days
        from scheduler.deferral import policy_deferral, seed_deferral
        from scheduler.errors import InputError
        from scheduler.models import load_site
        from scheduler.policies import check_policy, make_policy
        from scheduler.report import build_report, summary, summary_rows, write_plot

        console = Console()
        check_policy(policy, "--policy")
        names = [policy] + [p.strip() for p in (compare or "").split(",") if p.strip() and p.strip() != policy]
        for n in names[1:]:
            check_policy(n, "--compare")
        if forecast not in ("perfect", "persistence", "noisy"):
            raise InputError(f"--forecast: {forecast!r}; allowed: perfect, persistence, noisy")
        plan_kw = planner_backend(planner_backend_, planner_device)
        defer_days, age_h, defer_h = deferral_options(defer_history_days, beyond_age_h, max_defer_h)
        site_m = load_site(site)
        t0 = parse_utc(start, "--start")
        n_slots = slots_for_days(site_m, days)
        horizon_slots = max(1, int(round(horizon_hours * 3600 / site_m.slot_s)))
        # energy for the run plus one horizon, so the last ticks' forecasts look at real data
        actual = signals.load_energy(None if energy == "embedded" else energy, site_m, t0, days + horizon_hours / 24.0,
                                     seed=seed, strict=strict)  # fmt: skip
        jobs, desc = traces.load_workload(
            None if trace == "embedded" else trace, site_m, days, seed=seed, start_s=trace_offset_days * 86400.0,
            start_utc=t0, strict=strict,
        )
        if amplify != 1.0:  # training only: load_workload sized the inference service to the site
            jobs = traces.amplify(jobs, amplify, seed=seed, scale_inference=False)
            desc += f"; amplified x{amplify:g} (traces.amplify)"
        console.print(
            f"[bold]windward simulate[/] site={site_m.name} ({site_m.total_gpus:,} GPUs) days={days:g} "
            f"slots={n_slots} jobs={len(jobs):,} forecast={forecast}"
            + (f" planner={plan_kw['backend']}/{plan_kw['device']}" if plan_kw["backend"] != "numpy" else "")
            + f"\n  energy: {actual.source}\n  workload: {desc}"
        )
        results = []
        for name in names:
            pol = make_policy(name, horizon_hours, plan_kwargs=plan_kw, defer_history_days=defer_days,
                              beyond_age_h=age_h, max_defer_h=defer_h)
            deferral = policy_deferral(pol)
            if deferral is not None:
                try:
                    seeded = seed_deferral(pol, None if energy == "embedded" else energy, site_m, t0, seed=seed,
                                           strict=strict)
                    console.print(f"  {name}: deferral priced from {defer_days:g} days of signals, seeded with "
                                  f"the {seeded} slots before --start")
                except InputError as e:  # the energy does not reach back: the history starts empty
                    console.print(f"[yellow]  {name}: no signals {defer_days:g} days before --start ({e}); the "
                                  f"deferral history starts empty (the old price until 24 h are observed)")
            fc = signals.make_forecaster(forecast, actual, seed=seed, wind_capacity_w=site_m.wind.contract_mw * 1e6)
            with Progress(
                TextColumn(f"[cyan]{name:>13}"), BarColumn(), TextColumn("{task.completed}/{task.total} slots"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
            ) as prog:
                task = prog.add_task(name, total=n_slots)
                res = run_simulation(
                    site_m, jobs, actual, pol, n_slots=n_slots, forecaster=fc, forecast_name=forecast,
                    horizon_slots=horizon_slots, progress=_bar(prog, task),
                )
            results.append(res)
        summaries = [summary(r) for r in results]
        report = build_report(
            results[0], workload_description=desc, assignment_rule=traces.ASSIGNMENT_RULE,
            extra={
                "planner_backend": f"{plan_kw['backend']}/{plan_kw['device']}",  # the windward policy's optimiser
                # the windward policy's deferral price from the past (0: off) and the ageing of that work
                **({"defer_history_days": defer_days} if defer_days else {}),
                **({"beyond_age_h": age_h} if age_h is not None else {}),
                **({"max_defer_h": defer_h} if defer_h is not None else {}),
                **({"comparison": summaries} if len(results) > 1 else {}),
            },
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, allow_nan=False))
        table = Table(title=f"{site_m.name}: {days:g} days from {report['start_utc']} ({forecast} forecast)")
        table.add_column("")
        for s in summaries:
            table.add_column(s["policy"], justify="right")
        for label, vals in summary_rows(summaries):
            table.add_row(label, *vals)
        console.print(table)
        console.print(f"report: {out}")
        if not no_plot:
            plot = plot if plot is not None else out.with_suffix(".png")
            write_plot(report, plot)
            console.print(f"plot: {plot}")
        if any(s["cap_violations"] for s in summaries):
            console.print("[red]cap violations: the idle site alone broke a cap (see report)")


def _bar(prog: Any, task: Any) -> Callable[[int, int], None]:
    """``run_simulation``'s progress callback for one rich task (bound here, not to a loop variable)."""

    def update(done: int, total: int) -> None:
        prog.update(task, completed=done)

    return update
