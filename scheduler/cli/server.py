"""``windward server``: the control plane (HTTP API + control loop) on one site."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import typer

from scheduler.cli.options import (
    api_limit_option,
    api_limits,
    beyond_age_h_option,
    defer_history_days_option,
    deferral_options,
    horizon_hours_option,
    max_defer_h_option,
    parse_utc,
    planner_backend,
    policy_option,
)

#: The interpreter's thread switch interval in the server (``sys.setswitchinterval``; Python's default 5 ms).
#: While the control loop's tick computes, every libuv callback of the API's event loop (a request read, a
#: batch's commit settled) and every group commit waits for the interpreter about this long, or longer: with
#: a thread spinning Python, a thread waking from a 0.3 ms sleep waited 3.3-3.7 ms (median) for it at 1 ms,
#: 0.34-0.35 ms at 0.2 ms, and the spinner's rate did not change beyond the noise (``benchmarks/api_load.py
#: --gil-wake``, round 6, load 9-10). A submission takes it back several times, so at 1 ms a tick stretched
#: the 16 clients' round trips by tens of ms (the p99).
SWITCH_INTERVAL_S = 0.0002


def _resume_gc() -> None:
    """The cyclic garbage collector on again after a start that paused it (``windward server``): what the
    start built is frozen out of its scans first (gc.freeze: those objects are never scanned again and stay
    freed by reference counting, e.g. a job the ledger drops when it ends). Idempotent."""
    import gc

    if not gc.isenabled():
        gc.freeze()
        gc.enable()


#: Wall seconds between the server's collections of its old generation (:class:`OldGeneration`).
OLD_GENERATION_COLLECT_S = 3600.0


class OldGeneration:
    """The server's schedule for the cyclic collector once serving (``Service.start(after_tick=)``, in the
    loop's thread after every tick): what survived an automatic full collection is frozen (``gc.freeze``)
    into an old generation that later full collections do not scan, and that old generation is collected
    (unfrozen, collected, frozen again) once every ``collect_every_s`` of ``clock``.

    Why: the ledger grows with the queue (Job, LoopJob, JobState per queued job), and every automatic full
    collection scanned all of it with the interpreter held: at 16 clients submitting ~1,000 jobs a second,
    full collections of 50-110 ms every few seconds, each one a stall of every request in flight, were the
    submissions' p99 (benchmarks/README.md, issue 16, round 5). Frozen objects are still freed by reference
    counting (a job the ledger drops); only cyclic garbage made of objects frozen while alive waits for the
    old generation's collection (one pause of a full collection per ``collect_every_s``)."""

    def __init__(self, collect_every_s: float = OLD_GENERATION_COLLECT_S, clock: Callable[[], float] = time.monotonic):
        self._every_s = float(collect_every_s)
        self._clock = clock
        self._last_s = clock()
        self._full = _full_collections()

    def after_tick(self) -> None:
        import gc

        if not gc.isenabled():  # still paused by the start (its _resume_gc freezes)
            return
        now = self._clock()
        if now - self._last_s >= self._every_s:
            self._last_s = now
            gc.unfreeze()
            gc.collect()
            gc.freeze()
        elif _full_collections() != self._full:
            gc.freeze()
        self._full = _full_collections()


def _full_collections() -> int:
    import gc

    return int(gc.get_stats()[2]["collections"])


def register(app: typer.Typer) -> None:
    @app.command("server")
    def server(
        site: str = typer.Option(None, "--site", help="Site YAML file or built-in name (demo, rotterdam-100k); "
                                 "default: demo."),
        tenants: Path = typer.Option(None, "--tenants", help="Tenants YAML (DESIGN section 7: sha256 of each token). "
                                     "Required unless --demo."),
        demo: bool = typer.Option(False, "--demo", help="Run with the built-in demo tenants, whose tokens are "
                                  "public (printed at start; a warning is logged at every start). Development only."),
        power_control: str = typer.Option("auto", "--power-control", help="GPU power limits: nvml (real limits "
                                          "through NVML on every node, refused at start where NVML is not "
                                          "usable), simulated (the power model only), auto (NVML where usable)."),
        address: str = typer.Option(None, "--address", help="Ray cluster address (with --executor ray)."),
        executor: str = typer.Option("simulated", "--executor", help="ray | simulated"),
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
        port: int = typer.Option(8470, "--port", help="TCP port (0: any free port; the chosen one is printed)."),
        state: Path = typer.Option(Path("windward-state.sqlite"), "--state", help="SQLite state file (created)."),
        tick_seconds: float = typer.Option(None, "--tick-seconds", help="Wall seconds per slot (compresses "
                                           "time for demos and tests); default: real time."),
        energy: str = typer.Option(None, "--energy", help="Energy CSV (DESIGN section 7); default: the embedded "
                                   "synthetic NL model."),
        energy_start: str = typer.Option(None, "--energy-start", help="ISO time in the energy data that the "
                                         "service's first slot maps to (for historical CSVs)."),
        forecast: str = typer.Option("perfect", "--forecast", help="perfect | persistence | noisy"),
        live_signals: Path = typer.Option(None, "--live-signals", help="Live energy signals file (ENTSO-E, NED, "
                                          "Electricity Maps, a congestion feed; docs/contracts.md), refreshed "
                                          "in the server over --energy; default: none (the energy read once)."),
        policy: str = policy_option(),
        horizon_hours: float = horizon_hours_option(24.0),
        log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
        event_tick_interval: float = typer.Option(0.3, "--event-tick-interval", help="Wall seconds between "
                                                  "the end of a tick and the next tick an event (submission, "
                                                  "cancel, congestion) triggers: a burst costs one tick (longer "
                                                  "after a long tick: event ticks take at most "
                                                  "--event-tick-cpu-share of the interpreter)."),
        event_tick_cpu_share: float = typer.Option(None, "--event-tick-cpu-share", help="The largest share of "
                                                   "the interpreter that event ticks take (0 < share <= 1; "
                                                   "default: ServiceConfig's, 0.1): after "
                                                   "a tick of c CPU seconds, the next event tick waits c x (1 - "
                                                   "share) / share. Lower: more of it for the API under a flood "
                                                   "of submissions; higher: new jobs decided sooner with a large "
                                                   "queue."),
        planner_backend_: str = typer.Option("numpy", "--planner-backend", help="Array backend of the windward "
                                             "policy's optimiser: numpy or torch."),
        planner_device: str = typer.Option("cpu", "--planner-device", help="Device for --planner-backend: cpu, "
                                           "cuda or cuda:N (torch with CUDA)."),
        defer_history_days: float = defer_history_days_option(),
        beyond_age_h: float | None = beyond_age_h_option(),
        max_defer_h: float | None = max_defer_h_option(),
        max_queued_per_tenant: int = api_limit_option("max_queued_per_tenant"),
        submit_rate: float = api_limit_option("submit_rate_per_s"),
        submit_burst: int = api_limit_option("submit_burst"),
        max_body_bytes: int = api_limit_option("max_body_bytes"),
        max_header_bytes: int = api_limit_option("max_header_bytes"),
        read_rate: float = api_limit_option("read_rate_per_s"),
        read_burst: int = api_limit_option("read_burst"),
    ) -> None:
        """Run the Windward control plane: HTTP API (OpenAPI at /docs), control loop, /metrics.

        Example (dev server, demo site and tenants, one slot every 2 s):  windward server --demo --tick-seconds 2

        The windward policy's optimiser runs on --planner-backend/--planner-device (numpy on cpu by default;
        torch on cuda plans on a GPU), checked before the service starts or the port is bound.
        """
        import logging
        import socket

        import uvicorn

        from scheduler.api import create_app
        from scheduler.auth import dev_token
        from scheduler.errors import InputError
        from scheduler.models import load_site, load_tenants
        from scheduler.policies import check_policy
        from scheduler.power_devices import POWER_CONTROL_CHOICES
        from scheduler.service import Service, ServiceConfig

        if tenants is None and not demo:
            raise InputError("--tenants is required: a tenants file with the sha256 of each token (DESIGN "
                             "section 7); or --demo for the demo tenants, whose tokens are public")
        if tenants is not None and demo:
            raise InputError(f"--demo and --tenants {tenants}: choose one (--demo runs the public demo tenants)")
        check_policy(policy, "--policy")
        if power_control not in POWER_CONTROL_CHOICES:
            raise InputError(f"--power-control {power_control!r}: allowed are {'|'.join(POWER_CONTROL_CHOICES)}")
        if power_control == "nvml" and executor != "ray":
            raise InputError(f"--power-control nvml needs --executor ray (got {executor!r}): NVML limits are set "
                             "by the Ray node agents on GPU nodes")
        dev = demo
        site_m = load_site(site or "demo")
        tenants_m = load_tenants(tenants)
        start = parse_utc(energy_start, "--energy-start") if energy_start else None
        if tick_seconds is not None and not tick_seconds > 0:
            raise InputError(f"--tick-seconds must be > 0, got {tick_seconds}")
        if not event_tick_interval >= 0:
            raise InputError(f"--event-tick-interval must be >= 0 seconds, got {event_tick_interval}")
        if event_tick_cpu_share is not None and not 0 < event_tick_cpu_share <= 1:
            raise InputError(f"--event-tick-cpu-share must lie in (0, 1], got {event_tick_cpu_share}")
        plan_kw = planner_backend(planner_backend_, planner_device)
        defer_days, age_h, defer_h = deferral_options(defer_history_days, beyond_age_h, max_defer_h)
        limits = api_limits(max_queued_per_tenant=max_queued_per_tenant, submit_rate_per_s=submit_rate,
                            submit_burst=submit_burst, max_body_bytes=max_body_bytes, max_header_bytes=max_header_bytes,
                            read_rate_per_s=read_rate, read_burst=read_burst)  # fmt: skip
        logging.getLogger("scheduler").setLevel(logging.INFO if log_level in ("info", "debug") else logging.WARNING)
        cfg = ServiceConfig(
            site=site_m, tenants=tenants_m, state_path=str(state), executor=executor, ray_address=address,
            tick_seconds=tick_seconds, energy=energy, energy_start=start, forecast=forecast, policy=policy,
            horizon_hours=horizon_hours, min_event_tick_interval_s=event_tick_interval,
            planner_backend=plan_kw["backend"], planner_device=plan_kw["device"], power_control=power_control,
            live_signals=str(live_signals) if live_signals is not None else None,
            defer_history_days=defer_days, beyond_age_h=age_h, max_defer_h=defer_h,
        )  # fmt: skip
        if event_tick_cpu_share is not None:
            import dataclasses

            cfg = dataclasses.replace(cfg, event_tick_cpu_share=event_tick_cpu_share)
        # A restart allocates for good: the loop's ledger of every active job (30,000 jobs: 2 x 10^5 objects
        # the collector tracks; a full collection after the first tick finds 10 of them unreachable). The
        # cyclic collector would scan that growing heap again and again (the service, the app and the first
        # tick took 1.07 s of CPU with it, 0.88 s without: benchmarks/README.md, issue 16, round 3); it is
        # paused from here until the first tick has ended (_resume_gc).
        import gc

        gc.disable()
        try:
            service = Service(cfg)
            app_ = create_app(service, limits)
        except BaseException:
            _resume_gc()
            raise
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            service.stop()
            _resume_gc()
            raise InputError(f"--host {host} --port {port}: cannot listen: {e.strerror}") from e
        bound = sock.getsockname()[1]
        # listen before saying so: a client that connects on the line below is queued in the backlog until
        # uvicorn accepts (uvicorn starts a moment later, seconds on a loaded machine, and a bound socket that
        # does not listen yet refuses: a test that read the line and connected at once failed on it)
        sock.listen(2048)  # uvicorn's default backlog; its create_server listens again with config.backlog
        typer.echo(f"windward server: site {site_m.name}, executor {executor}, policy {policy}, "
                   f"planner {plan_kw['backend']}/{plan_kw['device']}, state {state}")
        if service.recovery.adopted or service.recovery.requeued:
            typer.echo(
                f"recovered: {len(service.recovery.adopted)} running job(s) re-adopted, "
                f"{len(service.recovery.requeued)} resumed from checkpoints"
            )
        if dev:
            logging.getLogger("scheduler.cli.server").warning(
                "--demo: serving the demo tenants, whose tokens are public; never expose this server")
            typer.echo("development server: demo tenants, tokens (never use these outside development):")
            for t in tenants_m.tenants:
                typer.echo(f"  tenant   {t.name:<16} {dev_token(t.name)}")
            for o in tenants_m.operators:
                typer.echo(f"  operator {o.name:<16} {dev_token(o.name)}")
        typer.echo(f"listening on http://{host}:{bound}  (API docs: http://{host}:{bound}/docs)", err=False)
        import sys

        sys.stdout.flush()
        import signal

        def _terminate(signum: int, frame: object) -> None:
            # uvicorn handles SIGTERM while it serves, then re-raises it: leave through the finally below so
            # the loop stops, the state closes and the executor (a local Ray cluster) shuts down cleanly
            raise SystemExit(0)

        signal.signal(signal.SIGTERM, _terminate)  # after Service(): ray.init installs a handler of its own
        # Three threads share the interpreter: the API's event loop, the group commit and the control loop,
        # whose tick computes for 0.1-0.3 s at a time with thousands of jobs queued. A thread that asks for
        # the interpreter while another computes gets it after the switch interval, and a submission asks
        # about three times (read and answer on the event loop, its commit, the commit's wake-up of the loop):
        # at the default 5 ms that alone is ~15 ms per submission made during a tick; 1 ms once serving.
        # Not before the first tick has ended: a restart's first tick with 30,000 jobs, handed back and forth
        # with the start of uvicorn and the /readyz probes every 1 ms, took the restart to ready 2.2 s of CPU
        # instead of 1.8 (benchmarks/README.md, issue 16, round 4).
        def _after_first_tick() -> None:
            _resume_gc()
            sys.setswitchinterval(SWITCH_INTERVAL_S)

        # The control loop starts once uvicorn listens: a restart's first tick reads the active jobs into
        # its ledger (30,000: 0.6 s of CPU with the tick), and started before uvicorn it held the interpreter
        # while uvicorn started, every hand-off back a switch interval: ready 2.2-3.1 s instead of 1.5
        # (benchmarks/README.md, issue 16, round 5). /readyz is 503 until the loop runs.
        class _Server(uvicorn.Server):
            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                await super().startup(sockets=sockets)
                if self.started:
                    service.start(after_first_tick=_after_first_tick, after_tick=OldGeneration().after_tick)

        # httptools / uvloop when installed ("auto"); no access log: a line per request costs throughput
        config = uvicorn.Config(app_, log_level=log_level, access_log=False, timeout_graceful_shutdown=5,
                                http="auto", loop="auto")  # fmt: skip
        srv = _Server(config)
        try:
            srv.run(sockets=[sock])
        finally:
            service.stop()
            _resume_gc()
            typer.echo("windward server: stopped (loop stopped, state closed, executor closed)")
