"""``windward demo``: real workloads on a local Ray cluster of simulated GPU nodes, a day of wind replayed."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path
from typing import Any

import typer

from scheduler.cli.options import parse_utc, policy_option, seed_option


def register(app: typer.Typer) -> None:
    @app.command(
        "demo",
        help=(
            "Start a local Ray cluster of 4 simulated 8-GPU nodes (the demo site: a public pool and a sovereign "
            "nl/secret pool), replay 24 hours of wind and grid carbon (one 15-minute slot a second), run real "
            "training and inference workloads through the planner, and compare grid carbon with a carbon-agnostic "
            "run of the same slice. Writes demo-report.json and demo-report.png. Leaves no Ray process behind, "
            "also on Ctrl-C."
        ),
    )
    def demo(
        energy: str = typer.Option("embedded", "--energy", help="'embedded' (calibrated NL model) or an energy CSV."),
        trace: str = typer.Option("embedded", "--trace", help="'embedded', 'itp:clusterNN', or a trace CSV."),
        slots: int = typer.Option(96, "--slots", min=1, max=672, help="Slots to replay (96 = 24 hours)."),
        seconds_per_slot: float = typer.Option(1.0, "--seconds-per-slot", min=0.2, help="Wall seconds per slot."),
        policy: str = policy_option("Any but backfill falls back to backfill from its first failure."),
        start: str = typer.Option("2024-03-04T00:00:00Z", "--start", help="Replay start, ISO 8601 UTC."),
        seed: int = seed_option("Seed of the embedded energy and workload."),
        out: Path = typer.Option(Path("demo-out"), "--out", help="Directory for the report JSON and PNG."),
        address: str | None = typer.Option(None, "--address", help="Use an existing Ray cluster instead of a local one."),
    ) -> None:
        from rich.console import Console, Group
        from rich.live import Live
        from rich.table import Table

        from scheduler.demo import DemoConfig, run_demo
        from scheduler.policies import check_policy
        from scheduler.report import summary_rows

        console = Console()
        check_policy(policy, "--policy")
        start_utc = parse_utc(start, "--start")
        cfg = DemoConfig(
            n_slots=slots, seconds_per_slot=seconds_per_slot, energy=None if energy == "embedded" else energy,
            trace=None if trace == "embedded" else trace, seed=seed, start_utc=start_utc, policy=policy, out_dir=out,
        )

        # Ctrl-C (or SIGTERM) asks the run to stop at the next slot, where no Ray call is in flight: an
        # interrupt raised inside Ray's client code can leave it unable to shut down. A second one forces.
        stop = {"asked": False}

        def _on_signal(signum: int, _frame: Any) -> None:
            if stop["asked"]:
                raise KeyboardInterrupt(f"signal {signum}")
            stop["asked"] = True
            console.print("[yellow]stopping at the end of this slot (Ctrl-C again to force)...[/]")

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)

        def make_executor(site: Any, time_scale: float, workload_params: Any) -> Any:
            from scheduler.executors.ray_executor import RayExecutor

            console.print("[dim]starting Ray (local cluster of simulated GPU nodes)...[/]" if address is None
                          else f"[dim]connecting to Ray at {address}...[/]")
            # (each run replays the trace from its start: a previous run's checkpoints left in its state directory
            # would resume those jobs and count their work as this run's: 9 of 9 jobs "done" at 0.1% GPU use)
            shutil.rmtree(out / "ray-state", ignore_errors=True)
            return RayExecutor(site, address, state_dir=out / "ray-state", time_scale=time_scale, grace_s=1.0,
                               slot_clock=True, placement_timeout_s=3.0, poll_s=0.25, workload_params=workload_params)

        live = Live(console=console, refresh_per_second=4, transient=False)

        def on_start(info: Any) -> None:
            console.print(
                f"[bold]windward demo[/] site={info['site'].name} ({info['site'].total_gpus} GPUs) "
                f"jobs={info['jobs']} policy={info['policy']} time x{info['time_scale']:.0f}\n"
                f"  energy: {info['energy']}\n  workload: {info['workload']}",
                highlight=False,
            )
            console.print("RAY READY", style="dim")
            live.start()

        def on_tick(rep: Any, loop: Any, actual: Any) -> None:
            kw = 1e-3
            head = Table(show_header=True, header_style="bold", box=None)
            for c in ("slot", "UTC", "wind kW", "grid cap kW", "facility kW", "import kW", "gCO2/kWh", "queued",
                      "running", "violations"):
                head.add_column(c, justify="right")
            t = actual.slot_start(rep.slot).strftime("%H:%M")
            over = rep.grid_import_peak_w > rep.grid_cap_w + 1e-6
            head.add_row(
                str(rep.slot), t, f"{rep.wind_w * kw:.1f}", f"{rep.grid_cap_w * kw:.1f}",
                f"[{'red' if over else 'green'}]{rep.facility_w * kw:.1f}[/]", f"{rep.grid_import_w * kw:.1f}",
                f"{rep.carbon_g_per_kwh:.0f}", str(rep.queued), str(rep.running), str(len(loop.violations)),
            )
            where = Table(title="what runs where", box=None, header_style="bold")
            where.add_column("pool")
            where.add_column("jobs (GPUs @ power fraction)")
            for p in loop.site.pools:
                runs = [r for r in loop.records.values() if r.state == "running" and r.pool == p.name]
                busy = sum(r.job.gpus for r in runs)
                cells = ", ".join(f"{r.job.job_id.replace('synthetic-', '')}({r.job.gpus}@{r.power_fraction:.2f})"
                                  for r in runs)
                where.add_row(f"{p.name} [{busy}/{rep.healthy_gpus.get(p.name, 0)}]", cells or "-")
            bar_w = 40
            scale = max(rep.site_max_w, 1.0)
            fac_n = int(round(rep.facility_w / scale * bar_w))
            cap_n = int(round(min(rep.grid_cap_w + rep.wind_w, scale) / scale * bar_w))
            bar = "".join("#" if i < fac_n else ("." if i < cap_n else " ") for i in range(bar_w))
            live.update(Group(head, f"power [{bar}] facility '#', allowed (grid cap + wind) '.'", where))

        try:
            result = run_demo(make_executor, cfg, on_tick=on_tick, on_start=on_start,
                              should_stop=lambda: stop["asked"])
        except KeyboardInterrupt:
            live.stop()
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            console.print("[yellow]interrupted: Ray was shut down, nothing is left running[/]")
            raise typer.Exit(130) from None
        finally:
            live.stop()
        s = result.report["summary"]
        b = result.baseline_summary
        table = Table(title=f"demo: {cfg.n_slots} slots from {result.report['start_utc']}")
        table.add_column("")
        table.add_column(f"Ray, {result.policy_used}", justify="right")
        table.add_column("simulated, backfill (carbon-agnostic)", justify="right")
        for label, vals in summary_rows([s, b]):
            table.add_row(label, *vals)
        e = result.ray_summary
        table.add_row("resumes from checkpoint (Ray)", str(e["resumes"]), "—")
        table.add_row("work lost to preemption/failure (h)", f"{e['work_lost_s'] / 3600:.2f}",
                      f"{result.report['carbon_agnostic_baseline']['execution']['work_lost_s'] / 3600:.2f}")
        table.add_row("sovereign jobs placed / outside their pool", f"{e['sovereign_jobs_placed']} / "
                      f"{len(e['sovereign_placements_outside'])}", "—")
        console.print(table)
        if b.get("grid_carbon_kg") and b.get("work_done_gpu_h"):
            total = s["grid_carbon_kg"] / b["grid_carbon_kg"] - 1.0
            work = s["work_done_gpu_h"] / b["work_done_gpu_h"] - 1.0
            equal = abs(work) < 0.005 and s["training_done"] == s["training_total"] == b["training_done"]
            console.print(
                f"total grid carbon vs the carbon-agnostic run: {total:+.1%} "
                + ("(same work: every job finished in both runs)" if equal else
                   f"[yellow](unequal work: {work:+.1%} GPU-hours, jobs done {s['training_done']}/"
                   f"{s['training_total']} vs {b['training_done']}/{b['training_total']}; compare carbon / bound)[/]")
            )
        if s.get("carbon_over_bound") and b.get("carbon_over_bound"):
            console.print(
                f"carbon / clairvoyant bound of the same work (everything known in advance): "
                f"{s['carbon_over_bound']:.3f} ({result.policy_used}) vs {b['carbon_over_bound']:.3f} (backfill)"
            )
            if s["carbon_over_bound"] < 1.0:
                console.print("[yellow]below 1: the Ray run's real-time accounting departs from the slot model the "
                              "bound assumes (the bound is certified for simulated runs only)[/]")
        ph = result.report["phases_s"]
        console.print(
            f"wall time {ph['total_s']:.0f} s: Ray start {ph['ray_start_s']:.0f} s, replay {ph['replay_s']:.0f} s, "
            f"Ray shutdown {ph['ray_shutdown_s']:.0f} s, carbon-agnostic run {ph['baseline_s']:.0f} s (beside the "
            f"Ray start; {ph['baseline_wait_s']:.0f} s waited for), report and bound {ph['report_s']:.0f} s, "
            f"plot {ph['plot_s']:.0f} s",
            highlight=False,
        )
        if result.report.get("stretched_slots"):
            console.print(f"{result.report['stretched_slots']} of {cfg.n_slots} slots ended late, the loop's work "
                          f"before them (starting Ray workers, planning) having taken more than half the slot: the jobs stood still "
                          f"through it, so no work went uncharged; the replay took longer", highlight=False)
        console.print(f"report: {result.report_path}\nplot: {result.plot_path}")
        if e["sovereign_placements_outside"]:
            console.print(f"[red]sovereign jobs placed outside their pool: {e['sovereign_placements_outside']}")
            raise typer.Exit(1)
