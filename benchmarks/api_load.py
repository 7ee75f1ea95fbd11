"""API load: sustained job submissions per second from many concurrent clients (p50/p99 latency) against a
real ``windward server`` on loopback, and the control-loop tick time with many queued jobs.

    .venv/bin/python benchmarks/api_load.py --clients 32 --seconds 10 --queued 50000 [--policy windward]

Prints one JSON object. Target from issue 5: 1,000 submissions/s with p99 < 50 ms. The server is a
subprocess (simulated executor, demo site, backfill policy); clients are closed-loop asyncio tasks, each
POSTing keyed submissions back to back over its own keep-alive connection, from a lean raw-asyncio HTTP/1.1
client (``--client raw``, the default: ~0.06 ms of CPU per request) or ``--client httpx`` (~1-3 ms, which
on 2 shared cores measures the client more than the server). ``fsync_ms_before`` / ``fsync_ms_after``: the
median cost of one synchronous=FULL commit in the same temp directory at that moment (the shared disk's
fsync varies several-fold with the machine's load; every acknowledged submission waits for one).
``--baseline DIR`` (issue 16) also runs every measurement against the code in DIR (an older checkout,
e.g. ``git archive <rev> | tar -x -C DIR``; its ``scheduler`` package is put first on the server's
PYTHONPATH) in the same run, alternating old and new ``--repeats`` times, and reports medians and new/old
ratios. ``--readers N`` adds N operator clients reading ``GET /v1/queue`` back to back during the submission
load (their latency and that of ``/healthz`` are reported: queue reads must not slow submissions; a 429 from
the server's list-page rate, ``--read-rate``, is waited out as told and counted, ``queue_reads_refused``);
``--reader-process`` runs them in a process of their own instead of in the submitters' event loop.
``--server-arg ARG`` (repeated) adds ARG to the new code's server command line (e.g. ``--read-rate 0``).
``--recovery-jobs N`` measures recovery: a state file holding N queued jobs, the server started on it,
SIGKILLed once ready, and started again (``--recovery-finished M`` adds M finished jobs, a long-lived
state's history): the seconds from the restart to ``/readyz`` answering 200, and the
CPU seconds the restarted process used to get there (``ready_cpu_s``: on a shared machine the wall time is a
multiple of it that follows the load), and ``cpu_parts_s``: the CPU of each step to the first tick in a
fresh interpreter on a state like it (imports, the Service with its jobs, the app, the first tick; the
collector paused from the Service to the first tick where the code under test's server does so). The
servers of the recovery run load their modules' bytecode from a cache the first start (before the kills)
writes (``PYTHONPYCACHEPREFIX`` in the run's temp directory), as an installed package does (``pip install``
compiles it; deploy/compose/Dockerfile): this machine's environment sets ``PYTHONDONTWRITEBYTECODE=1`` over
an editable install, so without the cache every start compiles some 50 modules of scheduler/ and kernels/
from source (0.1-0.2 s of the imports' CPU, measured). ``--compile-at-start`` measures that way instead.
``server_cpu_ms_per_request``: the server's CPU per request served; ``client_cpu_ms_per_request``: this
process's (the load generator's) CPU per request, its share of the cores it shares with the server.
``--gil-wake`` runs only a probe of the server's thread switch interval (``_gil_wake``): how long a thread
waking while another computes Python waits for the interpreter, at 5, 1, 0.5 and 0.2 ms.
``os.getloadavg()`` is recorded before and after (the machine is shared).
The tick benchmark builds a Service in-process on a fresh state file holding ``--queued`` jobs and times
``Service.tick()`` (median of ``--ticks``); ``plan_median_s`` is the policy's own time and ``tick_parts_s``
the time of each step of each tick.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, cast

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from server_process import auth, start_server  # noqa: E402


def _latency_stats(lat: list[float], errors: int, clients: int, wall: float) -> dict[str, float]:
    lat = sorted(lat)
    q = statistics.quantiles(lat, n=100)
    return {"clients": clients, "submissions": len(lat), "errors": errors, "seconds": wall,
            "submissions_per_s": len(lat) / wall, "p50_ms": q[49] * 1e3, "p99_ms": q[98] * 1e3,
            "max_ms": lat[-1] * 1e3}  # fmt: skip


async def _load(url: str, clients: int, seconds: float) -> dict[str, float]:
    lat: list[float] = []
    errors = 0
    tenants = ["science", "education", "companies", "public-services"]
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as c:

        async def worker(k: int) -> None:
            nonlocal errors
            tenant = tenants[k % len(tenants)]
            h = auth(tenant)
            i = 0
            while time.perf_counter() < stop_at:
                spec = {"name": f"load-{k}-{i}", "gpus": 1 + i % 4, "duration_s": 3600}
                t0 = time.perf_counter()
                r = await c.post("/v1/jobs", json=spec, headers=h | {"Idempotency-Key": f"{k}-{i}"})
                lat.append(time.perf_counter() - t0)
                if r.status_code != 201:
                    errors += 1
                i += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(clients)))
        wall = time.perf_counter() - t0
    return _latency_stats(lat, errors, clients, wall)


async def _readers(url: str, readers: int, stop_at: float) -> dict[str, float]:
    """``readers`` operator clients reading /v1/queue back to back, and one probe of /healthz every 50 ms,
    until ``stop_at``: their latencies (what a queue read costs, and whether it stalls the event loop). A
    reader refused with 429 (the server's list-page rate) waits its Retry-After, as ``windward queue`` does;
    ``queue_reads`` counts the pages served, ``queue_reads_refused`` the 429s."""
    q_lat: list[float] = []
    h_lat: list[float] = []
    refused = 0
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:

        async def reader() -> None:
            nonlocal refused
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                r = await c.get("/v1/queue", headers=auth("ops"))
                if r.status_code == 429:
                    refused += 1
                    await asyncio.sleep(min(float(r.headers.get("retry-after", "1")), stop_at - time.perf_counter()))
                    continue
                q_lat.append(time.perf_counter() - t0)
                r.raise_for_status()

        async def probe() -> None:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                await c.get("/healthz")
                h_lat.append(time.perf_counter() - t0)
                await asyncio.sleep(0.05)

        await asyncio.gather(*(reader() for _ in range(readers)), probe())
    out: dict[str, float] = {"queue_reads": len(q_lat), "queue_reads_refused": refused}
    if q_lat:
        out |= {"queue_read_p50_ms": statistics.median(q_lat) * 1e3, "queue_read_max_ms": max(q_lat) * 1e3}
    if len(h_lat) > 1:
        out |= {"healthz_p50_ms": statistics.median(h_lat) * 1e3, "healthz_max_ms": max(h_lat) * 1e3}
    return out


async def _load_raw(url: str, clients: int, seconds: float) -> dict[str, float]:
    """The same closed-loop load as :func:`_load`, from a lean HTTP/1.1 keep-alive client on raw asyncio
    streams (pre-encoded requests, Content-Length responses), so that the load generator, which shares the
    machine's cores with the server, is not what limits the measurement (httpx costs ~1-3 ms of CPU per
    request; this client ~0.1 ms)."""
    host, port = url.removeprefix("http://").split(":")
    lat: list[float] = []
    errors = 0
    tenants = ["science", "education", "companies", "public-services"]
    stop_at = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        nonlocal errors
        tenant = tenants[k % len(tenants)]
        token = auth(tenant)["Authorization"]
        reader, writer = await asyncio.open_connection(host, int(port))
        i = 0
        try:
            while time.perf_counter() < stop_at:
                body = json.dumps({"name": f"load-{k}-{i}", "gpus": 1 + i % 4, "duration_s": 3600}).encode()
                req = (
                    f"POST /v1/jobs HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token}\r\n"
                    f"Idempotency-Key: {k}-{i}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode() + body
                t0 = time.perf_counter()
                writer.write(req)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                n = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        n = int(line[15:])
                await reader.readexactly(n)
                lat.append(time.perf_counter() - t0)
                if status != 201:
                    errors += 1
                i += 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(clients)))
    wall = time.perf_counter() - t0
    return _latency_stats(lat, errors, clients, wall)


def _tick_bench(queued: int, ticks: int, policy: str) -> dict[str, float]:
    from scheduler.models import JobSpec, load_site, load_tenants
    from scheduler.service import Service, ServiceConfig

    with tempfile.TemporaryDirectory() as d:
        site = load_site("rotterdam-100k")
        cfg = ServiceConfig(site=site, tenants=load_tenants(), state_path=f"{d}/s.sqlite", policy=policy,
                            tick_seconds=3600.0)  # fmt: skip
        svc = Service(cfg)
        tenants = list(svc.tenants.values())
        t0 = time.perf_counter()
        # the fill is not what is measured: no fsync per row (the same code for every version of the store)
        svc.store._w.execute("PRAGMA synchronous=OFF")
        for i in range(queued):
            t = tenants[i % len(tenants)]
            req = {"clearance": "secret"} if t.name == "defence" else {}
            svc.store.submit(t.name, JobSpec(name=f"q{i}", gpus=1 + i % 8, duration_s=1800 + 60 * (i % 97),
                                             requires=req), f"k{i}", svc.clock.now_unix_s())  # fmt: skip
        svc.store._w.execute("PRAGMA synchronous=FULL")
        fill_s = time.perf_counter() - t0
        times, plans, parts = [], [], []
        for _ in range(ticks):
            out = svc.tick()
            times.append(out.tick_s)
            plans.append(out.plan_s)
            parts.append({k: round(v, 4) for k, v in getattr(out, "timings_s", {}).items()} | {"started": len(out.started)})
        svc.stop()
    return {"queued_jobs": queued, "policy": policy, "fill_s": fill_s, "tick_median_s": statistics.median(times),
            "tick_max_s": max(times), "plan_median_s": statistics.median(plans), "ticks": ticks,
            "tick_s": times, "tick_parts_s": parts}  # fmt: skip


def _fsync_ms(directory: str, n: int = 50) -> float:
    """Median cost of one SQLite commit with synchronous=FULL in ``directory`` now (the disk is shared: it
    varies several-fold with the machine's load, so every run records it next to its results)."""
    import sqlite3

    c = sqlite3.connect(f"{directory}/fsync.sqlite", isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=FULL")
    c.execute("CREATE TABLE t (a INTEGER, b TEXT)")
    lat = []
    for i in range(n):
        t0 = time.perf_counter()
        c.execute("BEGIN IMMEDIATE")
        c.execute("INSERT INTO t VALUES (?, ?)", (i, "x" * 300))
        c.execute("COMMIT")
        lat.append(time.perf_counter() - t0)
    c.close()
    return statistics.median(lat) * 1e3


def _fill_state(path: Path, n_jobs: int) -> None:
    """A state file holding ``n_jobs`` queued jobs of the demo tenants (written by the code under test: the
    file format is the same for both; a server opening it adds what indexes it lacks)."""
    import subprocess

    code = (
        "import sys\n"
        "from scheduler.models import JobSpec, load_tenants\n"
        "from scheduler.state import StateStore, SubmitRequest\n"
        "st = StateStore(sys.argv[1]); st._w.execute('PRAGMA synchronous=OFF')\n"
        "ts = [t.name for t in load_tenants().tenants if t.name != 'defence']\n"
        "n = int(sys.argv[2]); reqs = []\n"
        "for i in range(n):\n"
        "    reqs.append(SubmitRequest(ts[i % len(ts)], JobSpec(name=f'r{i}', gpus=1 + i % 8, "
        "duration_s=3600.0 + i % 97), f'k{i}'))\n"
        "    if len(reqs) == 2000 or i == n - 1:\n"
        "        st.submit_many(reqs, 1.7e9); reqs = []\n"
        "st.close()\n"
    )
    subprocess.run([sys.executable, "-c", code, str(path), str(n_jobs)], check=True, env=os.environ.copy())


def _add_finished(path: Path, n_finished: int) -> None:
    """``n_finished`` finished jobs added to a state that holds queued ones (a long-lived state's history):
    copies of the queued rows with new ids and sequence numbers, state ``finished``, written by SQL (the
    same file format for every version measured; through the store's API 300,000 jobs would take minutes)."""
    import sqlite3

    if n_finished <= 0:
        return
    c = sqlite3.connect(path)
    cols = [r[1] for r in c.execute("PRAGMA table_info(jobs)")]
    queued = int(c.execute("SELECT COUNT(*) FROM jobs WHERE state='queued'").fetchone()[0])
    top = int(c.execute("SELECT MAX(seq) FROM jobs").fetchone()[0])
    c.execute("PRAGMA synchronous=OFF")
    done, k = 0, 0
    while done < n_finished:
        k += 1
        take = min(queued, n_finished - done)
        sel = ", ".join("id || '-done' || ?" if col == "id" else "seq + ?" if col == "seq" else "'finished'"
                        if col == "state" else "NULL" if col == "idempotency_key" else col for col in cols)  # fmt: skip
        c.execute(f"INSERT INTO jobs ({', '.join(cols)}) SELECT {sel} FROM jobs WHERE state='queued' ORDER BY seq "
                  "LIMIT ?", (str(k), top * k, take))  # fmt: skip
        done += take
    c.commit()
    c.close()


def _recovery(d: Path, n_jobs: int, repeats: int, n_finished: int = 0) -> dict[str, object]:
    """Seconds from starting ``windward server`` on a state of ``n_jobs`` queued jobs to /readyz = 200, after
    a SIGKILL of a server that was ready on it (``repeats`` kills)."""
    import signal

    state = d / "rec.sqlite"
    _fill_state(state, n_jobs)
    _add_finished(state, n_finished)
    times: list[float] = []
    cpus: list[float] = []
    first: list[float] = []
    srv = start_server(state, d / "rec.log", "--tick-seconds", "60", timeout_s=300)
    for _ in range(repeats):
        srv.kill(signal.SIGKILL)
        t0 = time.perf_counter()
        srv = start_server(state, d / "rec.log", "--tick-seconds", "60", timeout_s=300)
        times.append(time.perf_counter() - t0)
        # the CPU the restarted server used to get there (what the machine's load does not inflate; read
        # within the start helper's 0.1 s poll of /readyz)
        cpus.append(_cpu_s(srv.proc.pid))
        first.append(_first_tick_s(srv.url, t0))
    srv.kill(signal.SIGKILL)
    return {"jobs": n_jobs, "finished_jobs": n_finished, "restarts": repeats, "ready_s": times, "ready_median_s": statistics.median(times),
            "ready_max_s": max(times), "ready_cpu_s": cpus, "first_tick_s": first}  # fmt: skip


def _first_tick_s(url: str, t0: float) -> float:
    """Seconds from ``t0`` (the restart) to the end of the server's first tick, polled every 50 ms from a
    ready server: since round 5 /readyz answers 200 while a restart's first tick reads the active jobs in and
    says ``first_tick_done``; a server without that field was ready only after its first tick (the time
    to ready, measured just before: returned at once)."""
    while True:
        body = httpx.get(url + "/readyz", timeout=10).json()
        if body.get("first_tick_done", True):
            return time.perf_counter() - t0
        time.sleep(0.05)


_PARTS_CODE = """
import gc, json, resource, sys, time
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
c0 = cpu()
import scheduler.cli, uvicorn
import scheduler.cli.server as cli_server
from scheduler.api import create_app
from scheduler.models import load_site, load_tenants
from scheduler.service import Service, ServiceConfig
c1 = cpu()
cfg = ServiceConfig(site=load_site("demo"), tenants=load_tenants(None), state_path=sys.argv[1], policy="backfill",
                    tick_seconds=60.0)
resume_gc = getattr(cli_server, "_resume_gc", None)  # the server pauses the collector to its first tick
if resume_gc is not None:
    gc.disable()
svc = Service(cfg)
c2 = cpu()
app = create_app(svc)
c3 = cpu()
svc.tick()
if resume_gc is not None:
    resume_gc()
c4 = cpu()
svc.stop()
print(json.dumps({"imports": c1 - c0, "service": c2 - c1, "app": c3 - c2, "first_tick": c4 - c3, "total": c4 - c0}))
"""


def _recovery_parts(d: Path, n_jobs: int, n_finished: int = 0) -> dict[str, float]:
    """CPU seconds of each step from a fresh interpreter to the first tick on a state of ``n_jobs`` queued
    jobs, in-process (imports, the Service with its jobs, the app, the first tick): where a restart's time
    goes, apart from the machine's load."""
    import subprocess

    state = d / "parts.sqlite"
    if not state.exists():
        _fill_state(state, n_jobs)
        _add_finished(state, n_finished)
    # cwd: not the checkout (``-c`` puts the working directory first on sys.path, before PYTHONPATH's baseline)
    out = subprocess.run([sys.executable, "-c", _PARTS_CODE, str(state)], check=True, capture_output=True, text=True,
                         env=os.environ.copy(), cwd=d)  # fmt: skip
    parts: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return parts


#: The server's limits for the load run: checked on every submission, set so that none refuses (the
#: default 10,000 queued jobs per tenant would stop a 60 s run at 1,000/s). A baseline from before the limits
#: (issue 16, round 1) has no such options and gets none (:func:`_limit_args`).
LOAD_LIMIT_ARGS = ("--max-queued-per-tenant", "1000000", "--submit-rate", "100000", "--submit-burst", "100000")


def _limit_args(code_dir: str | None) -> tuple[str, ...]:
    """LOAD_LIMIT_ARGS for this checkout, and for a baseline whose server has the options (a baseline with
    the limits but without these arguments refuses most of a 60 s run with 429s and reports the refusals'
    latency: measured at 722de54, 70% of its responses)."""
    if code_dir is None:
        return LOAD_LIMIT_ARGS
    opts = Path(code_dir) / "scheduler" / "cli" / "options.py"
    return LOAD_LIMIT_ARGS if opts.exists() and "--max-queued-per-tenant" in opts.read_text() else ()


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def _readers_process(url: str, readers: int, seconds: float, out: Any) -> None:
    """:func:`_readers` in a process of its own (``--reader-process``), its result put on ``out``."""
    out.put(asyncio.run(_readers(url, readers, time.perf_counter() + seconds)))


def _submit_run(d: Path, a: argparse.Namespace, tag: str, extra: tuple[str, ...] = ()) -> dict[str, object]:
    srv = start_server(d / f"s-{tag}.sqlite", d / f"server-{tag}.log", "--tick-seconds", "60", *extra)
    cpu0 = _cpu_s(srv.proc.pid)
    client0 = time.process_time()
    try:
        load = _load_raw if a.client == "raw" else _load

        async def both() -> tuple[dict[str, float], dict[str, float]]:
            stop_at = time.perf_counter() + a.seconds
            if a.readers and a.reader_process:
                import multiprocessing

                ctx = multiprocessing.get_context("spawn")
                q = ctx.Queue()
                proc = ctx.Process(target=_readers_process, args=(srv.url, a.readers, a.seconds, q))
                proc.start()
                sub = await load(srv.url, a.clients, a.seconds)
                rd = q.get(timeout=120)
                proc.join(timeout=30)
            elif a.readers:
                sub, rd = await asyncio.gather(load(srv.url, a.clients, a.seconds), _readers(srv.url, a.readers, stop_at))
            else:
                sub, rd = await load(srv.url, a.clients, a.seconds), {}
            return sub, rd

        sub, rd = asyncio.run(both())
        # the server's own CPU per request served: what a submission costs, whatever share of the shared
        # cores the process got (the machine's load moves the rate, far less this)
        n_req = max(float(sub["submissions"]) + float(rd.get("queue_reads", 0)), 1.0)
        cpu_ms = (_cpu_s(srv.proc.pid) - cpu0) * 1e3 / n_req
        # the load generator's own CPU (this process) per request: its share of the 2 cores it shares
        client_ms = (time.process_time() - client0) * 1e3 / n_req
        return dict(sub) | {"client": a.client, "readers": a.readers, "server_cpu_ms_per_request": cpu_ms,
                            "client_cpu_ms_per_request": client_ms} | rd
    finally:
        srv.kill()


def _with_code(code_dir: str | None) -> Any:
    """A context in which servers started run the code in ``code_dir`` (None: this checkout)."""
    import contextlib

    @contextlib.contextmanager
    def ctx() -> Any:
        old = os.environ.get("PYTHONPATH")
        if code_dir is not None:
            os.environ["PYTHONPATH"] = str(Path(code_dir).resolve()) + (os.pathsep + old if old else "")
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = old

    return ctx()


def _bytecode_cache(cache_dir: Path | None) -> Any:
    """A context in which processes started load their modules' bytecode from ``cache_dir`` (written by the
    first that compiles them), as an installed package does; None: as the environment says (here
    ``PYTHONDONTWRITEBYTECODE=1`` over an editable install: every start compiles scheduler/ from source)."""
    import contextlib

    @contextlib.contextmanager
    def ctx() -> Any:
        keys = ("PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE")
        old = {k: os.environ.get(k) for k in keys}
        if cache_dir is not None:
            os.environ["PYTHONPYCACHEPREFIX"] = str(cache_dir)
            os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        try:
            yield
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    return ctx()


def _compare(a: argparse.Namespace) -> dict[str, object]:
    """Old (``--baseline``) and new alternately, ``--repeats`` times each, in one temp directory."""
    versions = [("new", None)] + ([("old", a.baseline)] if a.baseline else [])
    runs: dict[str, list[dict[str, object]]] = {v: [] for v, _ in versions}
    rec: dict[str, list[dict[str, object]]] = {v: [] for v, _ in versions}
    with tempfile.TemporaryDirectory() as d:
        for k in range(a.repeats):
            for v, code in versions if k % 2 == 0 else versions[::-1]:
                with _with_code(code):
                    if not a.skip_submit:
                        extra = _limit_args(code) + (tuple(a.server_arg) if code is None else ())
                        runs[v].append(_submit_run(Path(d), a, f"{v}{k}", extra))
                    if a.recovery_jobs:
                        sub = Path(d) / f"rec-{v}{k}"
                        sub.mkdir()
                        with _bytecode_cache(None if a.compile_at_start else Path(d) / "pycache"):
                            rec[v].append(_recovery(sub, a.recovery_jobs, a.recovery_kills, a.recovery_finished))
                            rec[v][-1]["cpu_parts_s"] = _recovery_parts(sub, a.recovery_jobs, a.recovery_finished)
    out: dict[str, object] = {}
    keys = ("submissions_per_s", "p50_ms", "p99_ms", "errors", "queue_read_p50_ms", "queue_read_max_ms",
            "healthz_p50_ms", "healthz_max_ms", "queue_reads", "queue_reads_refused", "server_cpu_ms_per_request",
            "client_cpu_ms_per_request")  # fmt: skip
    for v, _ in versions:
        summary: dict[str, object] = {"runs": runs[v]}
        for key in keys:
            vals = [float(r[key]) for r in runs[v] if key in r]  # type: ignore[arg-type]
            if vals:
                summary[f"median_{key}"] = statistics.median(vals)
        if rec[v]:
            all_s = [t for r in rec[v] for t in r["ready_s"]]  # type: ignore[attr-defined]
            all_cpu = [t for r in rec[v] for t in r["ready_cpu_s"]]  # type: ignore[attr-defined]
            all_first = [t for r in rec[v] for t in r["first_tick_s"]]  # type: ignore[attr-defined]
            parts = [cast(dict[str, float], r["cpu_parts_s"]) for r in rec[v]]
            summary["recovery"] = {"runs": rec[v], "ready_median_s": statistics.median(all_s), "ready_max_s": max(all_s),
                                   "ready_cpu_median_s": statistics.median(all_cpu),
                                   "first_tick_median_s": statistics.median(all_first), "first_tick_max_s": max(all_first),
                                   "cpu_parts_median_s": {k: statistics.median(p[k] for p in parts) for k in parts[0]}}  # fmt: skip
        out[v] = summary
    if a.baseline:
        ratio: dict[str, float] = {}
        for key in ("submissions_per_s", "p50_ms", "p99_ms", "queue_read_p50_ms", "healthz_max_ms",
                    "server_cpu_ms_per_request"):
            n, o = out["new"].get(f"median_{key}"), out["old"].get(f"median_{key}")  # type: ignore[union-attr]
            if n is not None and o:
                ratio[key] = float(n) / float(o)  # type: ignore[arg-type]
        if rec["new"] and rec["old"]:
            for key in ("ready_median_s", "ready_cpu_median_s", "first_tick_median_s"):
                ratio[f"recovery_{key}"] = out["new"]["recovery"][key] / out["old"]["recovery"][key]  # type: ignore[index]
        out["new_over_old"] = ratio
    return out


def _spin(halt: threading.Event, count: list[int]) -> None:
    """Pure Python until ``halt`` (the stand-in of a computing tick); ``count[0]``: thousands of loops."""
    while not halt.is_set():
        for _ in range(1000):
            pass
        count[0] += 1


def _gil_wake(intervals_s: tuple[float, ...], wakes: int = 1500, sleep_s: float = 0.0003) -> list[dict[str, float]]:
    """What the thread switch interval costs a thread that wakes while another computes (the server's event
    loop, each libuv callback taking the interpreter back, while the control loop's tick computes): a
    thread spins pure Python (the tick's stand-in) while this one sleeps ``sleep_s`` ``wakes`` times; the
    overshoot of each sleep is its wait for the interpreter. Also the spinner's rate (what the tick loses)."""
    out = []
    for sw in intervals_s:
        old = sys.getswitchinterval()
        sys.setswitchinterval(sw)
        halt = threading.Event()
        spins = [0]
        t = threading.Thread(target=_spin, args=(halt, spins))
        t.start()
        over = []
        t0 = time.perf_counter()
        try:
            for _ in range(wakes):
                a = time.perf_counter()
                time.sleep(sleep_s)
                over.append(time.perf_counter() - a - sleep_s)
        finally:
            wall = time.perf_counter() - t0
            halt.set()
            t.join()
            sys.setswitchinterval(old)
        over.sort()
        out.append({"switch_interval_ms": sw * 1e3, "wake_wait_p50_ms": statistics.median(over) * 1e3,
                    "wake_wait_p99_ms": over[int(0.99 * len(over))] * 1e3, "spinner_kiloloops_per_s": spins[0] / wall})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--queued", type=int, default=50_000)
    ap.add_argument("--ticks", type=int, default=3)
    ap.add_argument("--policy", default="backfill")
    ap.add_argument("--skip-tick", action="store_true")
    ap.add_argument("--skip-submit", action="store_true")
    ap.add_argument("--client", choices=["raw", "httpx"], default="raw",
                    help="load generator: lean raw-asyncio HTTP/1.1 (default) or httpx.AsyncClient")
    ap.add_argument("--baseline", default=None, help="a checkout of older code to measure in the same run")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each version (alternating)")
    ap.add_argument("--readers", type=int, default=0, help="operator clients reading /v1/queue meanwhile")
    ap.add_argument("--reader-process", action="store_true",
                    help="the readers in a process of their own (as operators' clients are), not in the "
                         "submitters' event loop, whose requests they would delay")  # fmt: skip
    ap.add_argument("--server-arg", action="append", default=[],
                    help="an argument added to the new code's server (repeat it; e.g. --server-arg=--read-rate "
                         "--server-arg=0)")  # fmt: skip
    ap.add_argument("--recovery-jobs", type=int, default=0, help="queued jobs in the state for the recovery run")
    ap.add_argument("--recovery-kills", type=int, default=3, help="SIGKILL + restart cycles per recovery run")
    ap.add_argument("--recovery-finished", type=int, default=0,
                    help="finished jobs also in the recovery state (a long-lived state's history)")
    ap.add_argument("--compile-at-start", action="store_true",
                    help="recovery: no bytecode cache (every start compiles scheduler/ from source, as this "
                         "machine's PYTHONDONTWRITEBYTECODE=1 makes it)")  # fmt: skip
    ap.add_argument("--gil-wake", action="store_true",
                    help="only the switch-interval probe (_gil_wake): 5, 1, 0.5 and 0.2 ms, --repeats times")
    a = ap.parse_args()
    if a.gil_wake:
        runs = [r for _ in range(a.repeats) for r in _gil_wake((0.005, 0.001, 0.0005, 0.0002))]
        print(json.dumps({"loadavg": os.getloadavg(), "gil_wake": runs}, indent=2))
        return
    out: dict[str, object] = {"loadavg_before": os.getloadavg(), "cpus": os.cpu_count(),
                              "recovery_bytecode": "compiled at every start" if a.compile_at_start else "cached"}
    if a.baseline or a.readers or a.recovery_jobs:
        with tempfile.TemporaryDirectory() as d:
            out["fsync_ms_before"] = _fsync_ms(d)
        out |= _compare(a)
        out["loadavg_after"] = os.getloadavg()
        if not a.skip_tick:
            out["tick"] = _tick_bench(a.queued, a.ticks, a.policy)
        print(json.dumps(out, indent=2))
        return
    if not a.skip_submit:
        with tempfile.TemporaryDirectory() as d:
            out["fsync_ms_before"] = _fsync_ms(d)
            srv = start_server(Path(d) / "s.sqlite", Path(d) / "server.log", "--tick-seconds", "60")
            try:
                load = _load_raw if a.client == "raw" else _load
                out["submit"] = asyncio.run(load(srv.url, a.clients, a.seconds)) | {"client": a.client}
            finally:
                srv.kill()
            out["fsync_ms_after"] = _fsync_ms(tempfile.mkdtemp(dir=d))
    if not a.skip_tick:
        out["tick"] = _tick_bench(a.queued, a.ticks, a.policy)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
