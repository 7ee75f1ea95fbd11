"""The Ray executor: the same :class:`~scheduler.executors.base.Executor` interface as the simulated one,
carried out on a real Ray cluster.

- **Nodes.** Pool nodes are Ray nodes labelled ``windward.pool`` with a custom resource
  ``windward_pool_<pool>`` (:func:`~scheduler.executors.ray_cluster.node_spec`, the one definition the
  deploy files are rendered from); either a local ``ray.cluster_utils.Cluster`` started from the site file
  (``address=None``) or an existing cluster. A node's identity is Ray's node id (and host name, the pod
  name on Kubernetes); the executor numbers each pool's nodes 0, 1, ... in (host name, node id) order, and a
  node that joins later takes the place of a dead one.
- **Placement.** Every job is a *named, detached* placement group ``windward-<job_id>``: one bundle with
  ``STRICT_PACK`` when it fits one node, else one bundle per node with ``STRICT_SPREAD`` (all or nothing).
  Bundles ask for GPUs and the pool resource and carry a label selector for the pool. Waiting for a group
  always has a timeout; on timeout the group is removed and ``start`` returns None, changing nothing.
- **Workloads.** One detached named actor per bundle (:class:`~.ray_job.JobActor`; ``windward-job-<job_id>``
  is rank 0, ``windward-job-<job_id>.r<k>`` rank k) runs the job's entrypoint with its rank, the world size,
  rank 0's address and a free port there, and the GPUs Ray assigned to its bundle (``ray.get_gpu_ids()``),
  a checkpoint directory ``<state_dir>/jobs/<job_id>`` (shared by every node) and a progress channel (polled
  by :meth:`step`; also written to ``progress.json``). See docs/architecture-ray.md for why actors rather
  than the Jobs API. :meth:`start` returns once every rank's workload is ready (its first progress report,
  after its imports, data and model; at most ``ready_timeout_s``): start-up is not counted as work time.
- **Preemption.** ``stop`` asks every rank to checkpoint, waits ``grace_s``, then the actors are killed and
  the group removed; the work lost (progress minus checkpoint) is returned and recorded.
- **Power.** One node agent per node (:class:`~.ray_agent.NodeAgent`) sets the power limits of the GPUs Ray
  assigned to each rank (NVML on real GPUs, the DESIGN model on simulated ones) and reads back their draw.
- **Failures.** A node that Ray reports dead leaves :meth:`healthy_gpus`; its jobs come back from
  :meth:`step` as ``failed`` events with the work since their checkpoint lost, and resume from the
  checkpoint when the control loop starts them again.

Time: ``time_scale`` virtual seconds pass per wall second (1 on a real cluster; the demo compresses a
15-minute slot into under 2 s). ``step(dt_s)`` waits ``dt_s / time_scale`` wall seconds. With ``slot_clock=True``
(for a control loop that drives time, as the demo's) the jobs pace on a clock the executor publishes
(``<state_dir>/clock.json``, :func:`~scheduler.workloads.runtime.publish_clock`): it runs only inside a step,
through exactly ``dt_s`` virtual seconds, and stands still between steps, so the jobs do the work the slot
is charged for, at the power and on the set of jobs it is charged for, however long the loop's work between
steps (a tick: planning, starting jobs, a job's start-up) takes. A step still ends on the slot grid (``dt_s
/ time_scale`` wall seconds after the previous step's slot ended: a quick tick costs no wall time), but
runs for at least ``MIN_SLOT_SHARE`` of that: after a tick that overran, the grid moves (the replay takes
longer; ``stretched_slots`` counts it) instead of the jobs working through the overrun, uncharged (a loaded
2-core machine: starts of 9-16 s, 75 uncharged slots of work in a 96-slot demo, -30.8% at 0.976 of the
bound).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import socket
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray
from numpy.typing import NDArray
from ray.util.placement_group import PlacementGroup, placement_group, placement_group_table, remove_placement_group
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

from scheduler.errors import ExecutorError, InputError
from scheduler.executors.base import ExecutorEvent, Placement, RunningInfo
from scheduler.executors.ray_agent import NodeAgent
from scheduler.executors.ray_cluster import (
    POOL_LABEL,
    LocalSiteCluster,
    node_identity,
    pool_of,
    pool_resource,
    set_ray_env,
    start_local_cluster,
)
from scheduler.executors.ray_job import JobActor
from scheduler.jobs import Job, check_jobs_fit, pool_matches
from scheduler.models import Site
from scheduler.power_devices import POWER_BACKENDS, POWER_CONTROL_CHOICES, nvml_unavailable_error
from scheduler.workloads import DEFAULT_ENTRYPOINTS
from scheduler.workloads.runtime import CLOCK_FILE, STOP_FILE, JobConfig, checkpoint_work_s, publish_clock

log = logging.getLogger(__name__)

NAMESPACE = "windward"
PG_PREFIX = "windward-"
ACTOR_PREFIX = "windward-job-"
AGENT_PREFIX = "windward-agent-"

_RemoteJobActor = ray.remote(JobActor)
_RemoteNodeAgent = ray.remote(NodeAgent)

#: ``step`` with ``slot_clock``: a slot runs (its jobs' clock moves) for at least this share of its wall length
#: after a tick that overran the grid, so the jobs pace at most 1 / MIN_SLOT_SHARE times the nominal time scale
MIN_SLOT_SHARE = 0.5


@dataclass(slots=True)
class _Node:
    pool: str
    index: int
    node_id: str | None
    alive: bool
    hostname: str = ""
    agent: Any = None  # actor handle
    power_mode: str = ""  # "nvml" | "simulated", from the agent


@dataclass(slots=True)
class _Run:
    job: Job
    pool: str
    nodes: tuple[int, ...]
    per_node: tuple[int, ...]
    devices: tuple[tuple[int | str, ...], ...]  # the GPUs Ray assigned to each rank (ray.get_gpu_ids())
    power_fraction: float
    work_done_s: float
    checkpoint_work_s: float
    pg: PlacementGroup
    actors: list[Any]  # rank k -> actor handle
    job_dir: Path
    node_ids: tuple[str, ...] = ()

    @property
    def actor(self) -> Any:
        return self.actors[0]


def actor_name(job_id: str, rank: int) -> str:
    return f"{ACTOR_PREFIX}{job_id}" if rank == 0 else f"{ACTOR_PREFIX}{job_id}.r{rank}"


def _safe(job_id: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]", "_", job_id)
    return s if s == job_id else f"{s}-{hashlib.sha256(job_id.encode()).hexdigest()[:8]}"


def _seed(job_id: str) -> int:
    return int(hashlib.sha256(job_id.encode()).hexdigest()[:8], 16) % (2**31)


def _job_from_dict(d: Mapping[str, Any]) -> Job:
    return Job(**dict(d))


def _root_cause(e: BaseException) -> str:
    """The innermost error's message (Ray wraps an actor's exception in RayTaskError / RayActorError)."""
    cause = getattr(e, "cause", None) or e.__cause__
    if isinstance(cause, BaseException) and cause is not e:
        return _root_cause(cause)
    # an actor that died in its constructor carries the remote traceback as text: its last line is the error
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[-1] if len(lines) > 1 else f"{e.__class__.__name__}: {e}"


def _refuse_nvml_before_a_local_cluster(site: Site) -> None:
    """Fail fast: NVML power control asked for a local cluster on a host where NVML cannot act. The local
    cluster's simulated nodes all run on this host with this Python, so each node agent's NVML check
    (``open_node_gpus(prefer="nvml")``) gives the answer this process gets now; refusing here, with the same
    message as :meth:`RayExecutor._start_agents`, spares starting and stopping the cluster (a head and a raylet
    per node: tens of seconds of CPU) for a refusal known before it."""
    host = socket.gethostname()
    problems = []
    for pool in site.pools:
        err = nvml_unavailable_error(pool.gpus_per_node)
        if err is not None:
            problems += [f"{pool.name}/{i} ({host}, local): {err.__class__.__name__}: {err}" for i in range(pool.nodes)]
    if problems:
        raise _not_usable("nvml", problems)


def _not_usable(backend: str, problems: list[str]) -> ExecutorError:
    """The refusal of power control ``backend``: ``problems`` names each node that cannot use it and why."""
    return ExecutorError(f"power control {backend!r} is not usable on every node: " + "; ".join(problems))


class RayExecutor:
    """Executor on a real Ray cluster (``address=None``: start a local cluster of simulated GPU nodes)."""

    def __init__(
        self,
        site: Site,
        address: str | None = None,
        *,
        state_dir: str | Path | None = None,
        time_scale: float = 1.0,
        grace_s: float = 5.0,
        placement_timeout_s: float = 10.0,
        ready_timeout_s: float = 120.0,
        poll_s: float = 0.25,
        power_backend: str = "auto",
        workload_params: Mapping[str, Mapping[str, Any]] | None = None,
        wall: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        slot_clock: bool = False,
    ) -> None:
        if not time_scale > 0:
            raise InputError(f"time_scale must be > 0 (virtual seconds per wall second), got {time_scale!r}")
        self.site = site
        self.time_scale = float(time_scale)
        self.grace_s = float(grace_s)
        self.placement_timeout_s = float(placement_timeout_s)
        self.ready_timeout_s = float(ready_timeout_s)  # start() waits this long for a workload's start-up
        self.poll_s = float(poll_s)
        self._wall = wall
        self._sleep = sleep
        self._kind_params = {k: dict(v) for k, v in (workload_params or {}).items()}
        self._job_params: dict[str, dict[str, Any]] = {}
        self.state_dir = Path(state_dir) if state_dir is not None else Path(tempfile.mkdtemp(prefix="windward-ray-"))
        (self.state_dir / "jobs").mkdir(parents=True, exist_ok=True)
        self._pools = {p.name: p for p in site.pools}
        self._runs: dict[str, _Run] = {}
        self._pending: list[ExecutorEvent] = []
        self.event_log: list[ExecutorEvent] = []
        self._virtual_s = 0.0
        self._slot_end_wall: float | None = None  # wall time at which the last stepped slot ended (``step``)
        self.clock_path = self.state_dir / CLOCK_FILE  # the jobs' clock with ``slot_clock`` (Time)
        self._slot_clock = False
        self.slot_clock = bool(slot_clock)  # the jobs' clock runs only inside steps, on a slot grid (Time)
        self.stretched_slots = 0  # with ``slot_clock``: slots that ended after the grid said (Time)
        self.local: LocalSiteCluster | None = None
        self._owns_ray = False
        self._closed = False
        if power_backend not in POWER_CONTROL_CHOICES:
            raise InputError(f"power backend {power_backend!r}: allowed are {list(POWER_CONTROL_CHOICES)}")
        self._power_backend = power_backend
        self._nodes: dict[str, list[_Node]] = {
            p.name: [_Node(p.name, i, None, False) for i in range(p.nodes)] for p in site.pools
        }

        if address is None:
            if power_backend == "nvml":
                _refuse_nvml_before_a_local_cluster(site)
            self.local = start_local_cluster(site)
            connect_to = self.local.address
        else:
            set_ray_env(local=False)
            connect_to = address
        try:
            ray.init(address=connect_to, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING)
            self._owns_ray = True
            self._refresh_nodes(initial=True)
            self._start_agents(power_backend)
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------------------------- nodes and agents

    def _refresh_nodes(self, initial: bool = False) -> list[ExecutorEvent]:
        """Match Ray's node table to pool nodes; return node_down / node_up transitions. Identity is Ray's
        node id: a known id keeps its index, a new live node takes the first dead (or never filled) index of
        its pool in (host name, node id) order, or a new index past the end."""
        rows: dict[str, tuple[str, str, bool]] = {}  # node id -> (pool, host name, alive)
        for n in ray.nodes():
            pool = pool_of(n, self._pools)
            if pool is None:
                continue
            node_id, host = node_identity(n)
            rows[node_id] = (pool, host, bool(n.get("Alive")))
        events: list[ExecutorEvent] = []
        now = self.now_s
        for name, nodes in self._nodes.items():
            for nd in nodes:
                if nd.alive and not (nd.node_id in rows and rows[nd.node_id][2]):
                    nd.alive = False
                    nd.agent = None
                    events.append(ExecutorEvent("node_down", now, None, name, nd.index, detail="Ray reports the node dead"))
                    log.warning("node %s/%d (%s, %s) is down", name, nd.index, nd.hostname, nd.node_id)
            known = {nd.node_id for nd in nodes if nd.alive}
            new = sorted((host, nid) for nid, (pool, host, alive) in rows.items()
                         if pool == name and alive and nid not in known)  # fmt: skip
            for host, nid in new:
                free = next((x for x in nodes if not x.alive), None)
                if free is None:
                    free = _Node(name, len(nodes), None, False)
                    nodes.append(free)
                nd = free
                nd.node_id, nd.hostname, nd.alive, nd.power_mode = nid, host, True, ""
                if not initial:
                    events.append(ExecutorEvent("node_up", now, None, name, nd.index, detail=f"{host} ({nid[:12]})"))
                    log.info("node %s/%d is up: %s (%s)", name, nd.index, host, nid)
                    self._start_agent(nd, self._power_backend)
            # nodes beyond the site file's count come and go: a dead one at the end holding no job is dropped
            used = {i for r in self._runs.values() if r.pool == name for i in r.nodes}
            while len(nodes) > self._pools[name].nodes and not nodes[-1].alive and nodes[-1].index not in used:
                nodes.pop()
        if initial:
            short = [f"{name}: {sum(nd.alive for nd in ns)} of {self._pools[name].nodes}"
                     for name, ns in self._nodes.items() if sum(nd.alive for nd in ns) < self._pools[name].nodes]  # fmt: skip
            if short:
                log.warning("pool nodes found alive in the Ray cluster: %s", "; ".join(short))
        return events

    def node_id(self, pool: str, index: int) -> str | None:
        """Ray's node id of node ``index`` of ``pool`` (None: never seen)."""
        return self._node(pool, index).node_id

    def _index_of(self, pool: str, node_id: str) -> int | None:
        return next((nd.index for nd in self._nodes[pool] if nd.node_id == node_id), None)

    def _start_agents(self, backend: str) -> None:
        self._power_backend = backend
        for nodes in self._nodes.values():
            for nd in nodes:
                if nd.alive:
                    self._start_agent(nd, backend)
        problems = []
        for nodes in self._nodes.values():
            for nd in nodes:
                if nd.agent is None:
                    continue
                try:
                    nd.power_mode = str(ray.get(nd.agent.backend.remote(), timeout=60)[0])
                except Exception as e:  # the agent could not open its GPUs (NVML asked for and not usable)
                    problems.append(f"{nd.pool}/{nd.index} ({nd.hostname}): {_root_cause(e)}")
        if problems:
            raise _not_usable(backend, problems)

    def _start_agent(self, nd: _Node, backend: str) -> None:
        pool = self._pools[nd.pool]
        nd.agent = _RemoteNodeAgent.options(
            name=f"{AGENT_PREFIX}{nd.pool}-{(nd.node_id or '')[:16]}",
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            num_cpus=0,
            max_concurrency=4,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=str(nd.node_id), soft=False),
        ).remote(nd.pool, nd.index, pool.gpus_per_node, pool.tdp_w, pool.idle_w, pool.min_power_fraction, backend)

    def power_backends(self) -> dict[str, tuple[str, str]]:
        """``"pool/index" -> (backend, reason)`` for every live node agent."""
        out = {}
        for nodes in self._nodes.values():
            for nd in nodes:
                if nd.agent is not None:
                    out[f"{nd.pool}/{nd.index}"] = tuple(ray.get(nd.agent.backend.remote(), timeout=30))
                    nd.power_mode = out[f"{nd.pool}/{nd.index}"][0]
        return out

    def power_control_modes(self) -> dict[str, int]:
        """How many live GPU nodes have their power limits set by each mode (``nvml``: real limits on real
        GPUs; ``simulated``: the DESIGN power model). The ``windward_power_control_mode`` metric."""
        out = dict.fromkeys(POWER_BACKENDS, 0)
        unknown = [nd for ns in self._nodes.values() for nd in ns if nd.alive and nd.agent is not None and not nd.power_mode]
        if unknown:
            refs = [nd.agent.backend.remote() for nd in unknown]
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=5)
            for nd, ref in zip(unknown, refs):
                if ref in ready:
                    try:
                        nd.power_mode = str(ray.get(ref)[0])
                    except Exception as e:
                        log.warning("node %s/%d: power agent: %s", nd.pool, nd.index, _root_cause(e))
        for nodes in self._nodes.values():
            for nd in nodes:
                if nd.alive and nd.power_mode in out:
                    out[nd.power_mode] += 1
        return out

    def measured_gpu_power_w(self) -> dict[str, float]:
        """GPU power measured on NVML nodes, per pool (W): the sum of ``nvmlDeviceGetPowerUsage`` over every
        GPU of the pool's live NVML nodes. Pools without an NVML node are absent (their power is modelled).
        The control loop's hook for measured power beside the model (DESIGN section 2)."""
        refs, pools = [], []
        for name, nodes in self._nodes.items():
            for nd in nodes:
                if nd.alive and nd.agent is not None and nd.power_mode == "nvml":
                    refs.append(nd.agent.state.remote())
                    pools.append(name)
        out: dict[str, float] = {}
        if not refs:
            return out
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=5)
        ready_set = set(ready)
        for name, ref in zip(pools, refs):
            if ref in ready_set:
                try:
                    out[name] = out.get(name, 0.0) + float(sum(ray.get(ref)["draws_w"]))
                except Exception as e:  # a node dying now: its power is left out, and it is reported down
                    log.warning("pool %s: no power readback: %s", name, e)
        return out

    def node_power_state(self, pool: str, index: int) -> dict[str, Any]:
        """The agent's view of a node: limits_w, draws_w and which job holds which GPU."""
        nd = self._node(pool, index)
        if nd.agent is None:
            raise ExecutorError(f"node {pool}/{index} is down: no agent")
        return dict(ray.get(nd.agent.state.remote(), timeout=30))

    def _node(self, pool: str, index: int) -> _Node:
        try:
            return self._nodes[pool][index]
        except (KeyError, IndexError):
            raise InputError(f"no node {pool}/{index}") from None

    # ----------------------------------------------------------------------------- queries

    @property
    def now_s(self) -> float:
        """Virtual seconds since this executor started (advanced by :meth:`step`)."""
        return self._virtual_s

    def healthy_gpus(self) -> dict[str, int]:
        return {
            name: sum(self._pools[name].gpus_per_node for nd in nodes if nd.alive) for name, nodes in self._nodes.items()
        }

    def free_gpus_by_node(self, pool: str) -> NDArray[np.int32]:
        if pool not in self._nodes:
            raise InputError(f"unknown pool {pool!r}; this site has {sorted(self._nodes)}")
        gpn = self._pools[pool].gpus_per_node
        free = np.array([gpn if nd.alive else 0 for nd in self._nodes[pool]], dtype=np.int32)
        for r in self._runs.values():
            if r.pool == pool:
                for i, k in zip(r.nodes, r.per_node):
                    if self._nodes[pool][i].alive:
                        free[i] -= k
        return free

    def running(self) -> Mapping[str, RunningInfo]:
        return {
            jid: RunningInfo(jid, r.pool, r.nodes, r.power_fraction, r.work_done_s, r.checkpoint_work_s)
            for jid, r in self._runs.items()
        }

    def job_dir(self, job_id: str) -> Path:
        return self.state_dir / "jobs" / _safe(job_id)

    def log_path(self, job_id: str) -> Path | None:
        """Rank 0's output (its command's stdout/stderr and the workload's log): ``job.log`` in the job's
        directory (scheduler.executors.ray_job.JobActor.run)."""
        return self.job_dir(job_id) / "job.log"

    def set_workload_params(self, job_id: str, params: Mapping[str, Any]) -> None:
        """Parameters handed to the job's workload (``JobConfig.params``) at its next start."""
        self._job_params[job_id] = dict(params)

    def check_job(self, job: Job) -> None:
        """Reject at submission a job that no eligible pool of this site could ever hold (InputError)."""
        check_jobs_fit(self.site, [job], source=f"job {job.job_id!r}")

    # ----------------------------------------------------------------------------- start

    def _fits(self, pool: str, gpus: int) -> bool:
        free = self.free_gpus_by_node(pool)
        gpn = self._pools[pool].gpus_per_node
        if gpus <= gpn:
            return bool((free >= gpus).any())
        return int((free == gpn).sum()) >= math.ceil(gpus / gpn)

    def start(self, job: Job, pool: str, power_fraction: float, work_done_s: float) -> Placement | None:
        if job.job_id in self._runs:
            raise ExecutorError(f"job {job.job_id!r} is already running in pool {self._runs[job.job_id].pool!r}")
        if pool not in self._pools:
            raise InputError(f"unknown pool {pool!r}; this site has {sorted(self._pools)}")
        p = self._pools[pool]
        if not pool_matches(p, job) or job.gpus > p.gpus:
            raise ExecutorError(f"job {job.job_id!r} ({job.gpus} GPUs, pool={job.pool!r}) may not run in pool {pool!r}")
        self._check_fraction(pool, power_fraction, job.job_id)
        if not (0.0 <= work_done_s < job.duration_s):
            raise ExecutorError(
                f"job {job.job_id!r}: work_done_s {work_done_s!r} must lie in [0, duration_s={job.duration_s})"
            )
        if not self._fits(pool, job.gpus):
            return None
        gpn = p.gpus_per_node
        if job.gpus <= gpn:
            sizes, strategy = [job.gpus], "STRICT_PACK"
        else:
            n = math.ceil(job.gpus / gpn)
            sizes, strategy = [gpn] * (n - 1) + [job.gpus - (n - 1) * gpn], "STRICT_SPREAD"
        res = pool_resource(pool)
        pg = placement_group(
            [{"GPU": float(s), res: float(s)} for s in sizes],
            strategy=strategy,
            name=f"{PG_PREFIX}{job.job_id}",
            lifetime="detached",
            bundle_label_selector=[{POOL_LABEL: pool}] * len(sizes),
        )
        ready, _ = ray.wait([pg.ready()], timeout=self.placement_timeout_s)
        if not ready:
            remove_placement_group(pg)
            log.info("job %s: placement group not ready in %.1f s; removed", job.job_id, self.placement_timeout_s)
            return None
        bundle_nodes = placement_group_table(pg)["bundles_to_node_id"]
        by_id = {nd.node_id: nd for nd in self._nodes[pool] if nd.alive}
        try:
            placed = [by_id[bundle_nodes[b]] for b in range(len(sizes))]
        except KeyError:
            remove_placement_group(pg)
            log.warning("job %s: placement group landed on a node Windward does not know; removed", job.job_id)
            return None

        job_dir = self.job_dir(job.job_id)
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / STOP_FILE).unlink(missing_ok=True)
        ckpt_s = checkpoint_work_s(job_dir)
        if abs(ckpt_s - work_done_s) > 1e-6 and work_done_s > 0:
            log.info("job %s: control plane says %.0f s done; resuming from checkpoint at %.0f s",
                     job.job_id, work_done_s, ckpt_s)
        params = {**self._kind_params.get(job.kind, {}), **self._job_params.get(job.job_id, {})}
        cfg = JobConfig(
            job_id=job.job_id, kind=job.kind, duration_s=job.duration_s, job_dir=str(job_dir),
            checkpoint_interval_s=job.checkpoint_interval_s, time_scale=self.time_scale,
            speed_curve=tuple((float(x[0]), float(x[1])) for x in p.speed_curve), power_fraction=power_fraction,
            seed=_seed(job.job_id), params=params, clock_path=str(self.clock_path) if self.slot_clock else "",
        )
        nodes = tuple(nd.index for nd in placed)
        node_ids = tuple(str(nd.node_id) for nd in placed)
        entrypoint = job.entrypoint or DEFAULT_ENTRYPOINTS[job.kind]
        meta: dict[str, Any] = {"job": asdict(job), "pool": pool, "per_node": sizes, "node_ids": list(node_ids),
                                "power_fraction": power_fraction, "world_size": len(sizes)}  # fmt: skip
        # one worker per bundle, created idle; each says where Ray put it and which GPUs it got
        actors: list[Any] = [
            _RemoteJobActor.options(
                name=actor_name(job.job_id, rank),
                namespace=NAMESPACE,
                lifetime="detached",
                num_cpus=0,
                num_gpus=size,
                resources={res: float(size)},
                max_concurrency=4,
                max_restarts=0,
                scheduling_strategy=PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=rank),
                # the job spec's environment (env_vars only: nothing is packaged or uploaded)
                runtime_env={"env_vars": dict(job.env)} if job.env else None,
            ).remote(cfg.to_json(), entrypoint, meta, rank)
            for rank, size in enumerate(sizes)
        ]
        try:
            where = ray.get([a.placement.remote() for a in actors], timeout=max(30.0, self.placement_timeout_s))
            devices = [tuple(w["gpu_ids"]) for w in where]
            for rank, (w, k) in enumerate(zip(where, sizes)):
                if len(w["gpu_ids"]) != k or w["node_id"] != node_ids[rank]:
                    raise ExecutorError(f"rank {rank} got GPUs {w['gpu_ids']} on node {w['node_id']}; its bundle "
                                        f"asks {k} on {node_ids[rank]}")  # fmt: skip
            ray.get([nd.agent.assign.remote(job.job_id, list(dev), power_fraction) for nd, dev in zip(placed, devices)],
                    timeout=30)  # fmt: skip
            meta["devices"] = [list(d) for d in devices]
            meta["master"] = [where[0]["ip"], where[0]["port"]]
            for a in actors:
                a.set_meta.remote(meta)
            (job_dir / "meta.json").write_text(json.dumps(meta))
            ray.get([a.run.remote(len(sizes), where[0]["ip"], where[0]["port"], list(dev))
                     for a, dev in zip(actors, devices)], timeout=30)  # fmt: skip
            # the job's clock starts once every rank's start-up (imports, data, model) is over: start-up is
            # not work, and on a loaded machine it can outlast a short demo's slots
            ready = ray.get([a.wait_ready.remote(self.ready_timeout_s) for a in actors],
                            timeout=self.ready_timeout_s + 30.0)  # fmt: skip
            if not all(ready):
                log.warning("job %s: not ready after %.0f s of start-up; its clock starts anyway", job.job_id,
                            self.ready_timeout_s)  # fmt: skip
        except Exception as e:
            for a in actors:
                ray.kill(a, no_restart=True)
            for nd in placed:
                if nd.agent is not None:
                    nd.agent.release.remote(job.job_id)
            remove_placement_group(pg)
            raise ExecutorError(f"job {job.job_id!r}: its workers could not start: {_root_cause(e)}") from e
        self._runs[job.job_id] = _Run(
            job=job, pool=pool, nodes=nodes, per_node=tuple(sizes), devices=tuple(devices),
            power_fraction=float(power_fraction), work_done_s=ckpt_s, checkpoint_work_s=ckpt_s,
            pg=pg, actors=actors, job_dir=job_dir, node_ids=node_ids,
        )
        if ckpt_s > 0:
            self._record(ExecutorEvent("resumed", self.now_s, job.job_id, pool, nodes[0],
                                       detail=f"from checkpoint at {ckpt_s:.0f} s"), pending=False)
        log.info("job %s: started in %s on nodes %s (%s, %d rank(s), GPUs %s, f=%.2f)", job.job_id, pool, nodes,
                 strategy, len(sizes), devices, power_fraction)  # fmt: skip
        return Placement(job_id=job.job_id, pool=pool, nodes=nodes, gpus_per_node=tuple(sizes))

    # ----------------------------------------------------------------------------- actions

    def _check_fraction(self, pool: str, power_fraction: float, job_id: str) -> None:
        lo = self._pools[pool].min_power_fraction
        if not (lo - 1e-9 <= power_fraction <= 1.0 + 1e-9):
            raise ExecutorError(
                f"job {job_id!r}: power_fraction {power_fraction!r} outside pool {pool!r}'s allowed range [{lo}, 1.0]"
            )

    def _record(self, ev: ExecutorEvent, pending: bool = True) -> None:
        if pending:
            self._pending.append(ev)
        self.event_log.append(ev)

    def _teardown(self, r: _Run) -> None:
        """Kill the actors, remove the group, give the GPUs back (idempotent, tolerant of dead nodes)."""
        for a in r.actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception as e:  # already dead
                log.debug("job %s: kill: %s", r.job.job_id, e)
        try:
            remove_placement_group(r.pg)
        except Exception as e:
            log.debug("job %s: remove pg: %s", r.job.job_id, e)
        refs = []
        for i in r.nodes:
            nd = self._nodes[r.pool][i]
            if nd.alive and nd.agent is not None:
                refs.append(nd.agent.release.remote(r.job.job_id))
        if refs:
            ray.wait(refs, num_returns=len(refs), timeout=5)

    def preempt(self, job_id: str, reason: str) -> float:
        r = self._runs.pop(job_id, None)
        if r is None:
            raise ExecutorError(f"cannot preempt job {job_id!r}: it is not running")
        (r.job_dir / STOP_FILE).touch()
        refs = [a.stop.remote(self.grace_s) for a in r.actors]  # every rank: they stop at the same step
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=self.grace_s + 5.0)
        before_s = r.work_done_s
        if refs[0] in ready:
            try:
                prog = ray.get(refs[0])
                before_s = max(before_s, float(prog["work_done_s"]))
            except Exception as e:
                log.warning("job %s: no answer to the stop request: %s", job_id, e)
        self._teardown(r)
        (r.job_dir / STOP_FILE).unlink(missing_ok=True)
        ckpt = checkpoint_work_s(r.job_dir)
        lost = max(before_s - ckpt, 0.0)
        self._record(ExecutorEvent("preempted", self.now_s, job_id, r.pool, r.nodes[0], lost_s=lost, detail=reason))
        log.info("job %s preempted (%s): checkpoint at %.0f s, %.0f s of work lost", job_id, reason, ckpt, lost)
        return lost

    def set_power_fraction(self, job_id: str, power_fraction: float) -> None:
        r = self._runs.get(job_id)
        if r is None:
            raise ExecutorError(f"cannot set the power of job {job_id!r}: it is not running")
        self._check_fraction(r.pool, power_fraction, job_id)
        refs = [a.set_power_fraction.remote(power_fraction) for a in r.actors]
        for i in r.nodes:
            nd = self._nodes[r.pool][i]
            if nd.alive and nd.agent is not None:
                refs.append(nd.agent.set_fraction.remote(job_id, power_fraction))
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=10)
        if len(ready) < len(refs):
            log.warning("job %s: power fraction %.2f not confirmed by every agent", job_id, power_fraction)
        r.power_fraction = float(power_fraction)

    @property
    def slot_clock(self) -> bool:
        """Whether the jobs pace on the clock this executor publishes (module docstring, "Time")."""
        return self._slot_clock

    @slot_clock.setter
    def slot_clock(self, on: bool) -> None:
        """Turned on, the clock is published standing still at the executor's virtual time, before any job can
        read it: a job started before the first step then finds the clock at now. (Round 27: turned on after
        construction, no clock was published until the first step; a job started before it began its pacing
        schedule at 0, then ran flat out through the whole virtual time the executor had stepped before, work
        charged to no slot: 31,100 s of work for 2,100 s charged in test_ray_slot_clock on a loaded machine,
        where the catch-up outlasted the test's first slot.)"""
        if on and not self._slot_clock:
            publish_clock(self.clock_path, self._virtual_s, self._virtual_s, self.time_scale)
        self._slot_clock = bool(on)

    # ----------------------------------------------------------------------------- step

    def step(self, dt_s: float) -> list[ExecutorEvent]:
        if not dt_s >= 0.0:
            raise ValueError(f"step: dt_s must be >= 0, got {dt_s!r}")
        t0_virtual = self._virtual_s
        now = self._wall()
        span = dt_s / self.time_scale
        deadline, rate = now + span, self.time_scale
        if dt_s > 0 and self.slot_clock:
            # The jobs' clock (Time) runs through this slot's dt_s between now and the slot's end on the grid
            # (the tick before this call took the rest of its wall length; the jobs stood still through it),
            # for at least MIN_SLOT_SHARE of its length: a tick that overran moves the grid.
            prev = self._slot_end_wall
            if prev is not None:
                deadline = max(prev + span, now + MIN_SLOT_SHARE * span)
                if deadline > prev + span:
                    self.stretched_slots += 1
                    log.info("step: the tick overran its slot by %.2f s: the slot grid moves", now - prev - span)
            rate = dt_s / (deadline - now)
            publish_clock(self.clock_path, t0_virtual, t0_virtual + dt_s, rate)
        while True:
            self._virtual_s = min(t0_virtual + (self._wall() - now) * rate, t0_virtual + dt_s)
            self._poll()
            left = deadline - self._wall()
            if left <= 0:
                break
            self._sleep(min(self.poll_s, left))
        self._virtual_s = t0_virtual + dt_s
        if dt_s > 0 and self.slot_clock:
            self._slot_end_wall = deadline
        events, self._pending = self._pending, []
        return events

    def _fail(self, jid: str, detail: str, node: int | None = None) -> None:
        r = self._runs.pop(jid)
        self._teardown(r)
        ckpt = max(checkpoint_work_s(r.job_dir), 0.0)
        lost = max(r.work_done_s - ckpt, 0.0)
        self._record(ExecutorEvent("failed", self.now_s, jid, r.pool, r.nodes[0] if node is None else node,
                                   lost_s=lost, detail=detail))
        log.warning("job %s failed (%s): %.0f s of work lost since its checkpoint", jid, detail, lost)

    def _poll(self) -> None:
        for ev in self._refresh_nodes():
            self._record(ev)
            if ev.kind == "node_down":
                for jid in [j for j, r in self._runs.items() if r.pool == ev.pool and ev.node in r.nodes]:
                    self._fail(jid, f"node {ev.pool}/{ev.node} went down", ev.node)
        if not self._runs:
            return
        jids = list(self._runs)
        refs = {j: [a.progress.remote() for a in self._runs[j].actors] for j in jids}
        flat = [ref for rs in refs.values() for ref in rs]
        ready, _ = ray.wait(flat, num_returns=len(flat), timeout=max(self.poll_s, 1.0))
        ready_set = set(ready)
        for jid in jids:
            if jid not in self._runs:
                continue
            r = self._runs[jid]
            progs: dict[int, dict[str, Any]] = {}
            dead = None
            for rank, ref in enumerate(refs[jid]):
                if ref not in ready_set:
                    continue
                try:
                    progs[rank] = ray.get(ref)
                except ray.exceptions.RayActorError as e:
                    dead = f"job actor of rank {rank} died: {e.__class__.__name__}"
                    break
            if dead is not None:
                self._fail(jid, dead)
                continue
            bad = next((k for k, q in progs.items() if k > 0 and q.get("error")), None)
            if bad is not None:
                self._fail(jid, f"rank {bad} stopped: {progs[bad].get('error')}")
                continue
            if 0 not in progs:
                continue
            prog = progs[0]
            r.work_done_s = min(float(prog["work_done_s"]), r.job.duration_s)
            r.checkpoint_work_s = float(prog.get("checkpoint_work_s", r.checkpoint_work_s))
            if prog.get("done"):
                self._runs.pop(jid)
                self._teardown(r)
                self._record(ExecutorEvent("finished", self.now_s, jid, r.pool, r.nodes[0],
                                           detail=json.dumps(prog.get("result"))))
                log.info("job %s finished: %s", jid, prog.get("result"))
            elif prog.get("error") or prog.get("finished_thread"):
                self._fail(jid, f"workload stopped: {prog.get('error') or 'exited before done'}")

    def result(self, job_id: str) -> Any:
        """The result a finished job reported (from its progress channel), or None."""
        from scheduler.workloads.runtime import read_progress

        p = read_progress(self.job_dir(job_id))
        return p.get("result") if p and p.get("done") else None

    # ----------------------------------------------------------------------------- adoption, close

    def adopt(self) -> list[str]:
        """Rebuild :meth:`running` from the live ``windward-*`` placement groups and job actors (after a
        scheduler restart): every rank of a gang is found by name and keeps running. Groups missing an actor,
        or whose actors never started, are removed. Returns the adopted job ids."""
        adopted: list[str] = []
        for entry in placement_group_table().values():
            name = entry.get("name") or ""
            if not name.startswith(PG_PREFIX) or entry.get("state") not in ("CREATED", "RESCHEDULING"):
                continue
            jid = name[len(PG_PREFIX):]
            if jid in self._runs:
                continue
            pg = ray.util.get_placement_group(name)
            try:
                actor0 = ray.get_actor(actor_name(jid, 0), namespace=NAMESPACE)
                info: dict[str, Any] = dict(ray.get(actor0.info.remote(), timeout=30))
                meta = info["meta"]
                world = int(meta.get("world_size", 1))
                actors = [actor0] + [ray.get_actor(actor_name(jid, k), namespace=NAMESPACE) for k in range(1, world)]
                if not info.get("started") or "devices" not in meta:
                    raise ExecutorError("its workers were created but never started (a crash inside start)")
                pool = meta["pool"]
                nodes = tuple(self._index_of(pool, nid) for nid in meta["node_ids"])
                if any(i is None for i in nodes):
                    raise ExecutorError(f"its nodes {meta['node_ids']} are not all live pool nodes")
            except Exception as e:
                log.warning("placement group %s cannot be adopted (%s); removing it and its actors", name, e)
                for k in range(0, 64):
                    try:
                        ray.kill(ray.get_actor(actor_name(jid, k), namespace=NAMESPACE), no_restart=True)
                    except ValueError:
                        if k > 0:
                            break
                remove_placement_group(pg)
                continue
            job = _job_from_dict(meta["job"])
            job_dir = Path(info["job_dir"])
            ck = checkpoint_work_s(job_dir)
            self._runs[jid] = _Run(
                job=job, pool=pool, nodes=tuple(int(i) for i in nodes if i is not None),
                per_node=tuple(int(x) for x in meta["per_node"]),
                devices=tuple(tuple(d) for d in meta["devices"]), power_fraction=float(meta["power_fraction"]),
                work_done_s=ck, checkpoint_work_s=ck, pg=pg, actors=actors, job_dir=job_dir,
                node_ids=tuple(meta["node_ids"]),
            )  # fmt: skip
            adopted.append(jid)
        if adopted:
            self._poll()
        log.info("adopted %d running job(s): %s", len(adopted), adopted)
        return adopted

    def detach(self) -> None:
        """Disconnect without stopping anything: jobs keep running and a new executor can adopt them."""
        self._runs.clear()
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False

    def stop_all(self) -> None:
        """Stop every job (no checkpoint request) and forget it."""
        for jid in list(self._runs):
            self._teardown(self._runs.pop(jid))

    def close(self) -> None:
        """Stop jobs and agents we started locally and shut Ray down (a local cluster entirely). Jobs on a
        remote cluster keep running (a restarted scheduler adopts them); call stop_all() first to stop them."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.local is not None and self._owns_ray:
                self.stop_all()
        except Exception as e:  # best effort: the cluster goes down below anyway
            log.warning("stopping jobs on close: %s", e)
        finally:
            if self._owns_ray:
                ray.shutdown()
                self._owns_ray = False
            if self.local is not None:
                self.local.shutdown()
                self.local = None
