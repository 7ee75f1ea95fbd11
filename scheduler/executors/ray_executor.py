"""The Ray executor: the same :class:`~scheduler.executors.base.Executor` interface as the simulated one,
carried out on a real Ray cluster.

- **Nodes.** Pool nodes are Ray nodes labelled ``windward.pool`` / ``windward.node`` with a custom resource
  ``windward_pool_<pool>`` (see :mod:`scheduler.executors.ray_cluster`); either a local
  ``ray.cluster_utils.Cluster`` started from the site file (``address=None``) or an existing cluster.
- **Placement.** Every job is a *named, detached* placement group ``windward-<job_id>``: one bundle with
  ``STRICT_PACK`` when it fits one node, else one bundle per node with ``STRICT_SPREAD`` (all or nothing).
  Bundles ask for GPUs and the pool resource and carry a label selector for the pool. Waiting for a group
  always has a timeout; on timeout the group is removed and ``start`` returns None, changing nothing.
- **Workloads.** A detached named actor ``windward-job-<job_id>`` (:class:`~.ray_job.JobActor`) in bundle 0
  runs the job's entrypoint with a checkpoint directory ``<state_dir>/jobs/<job_id>`` and a progress
  channel (polled by :meth:`step`; also written to ``progress.json``). See docs/architecture-ray.md for why
  actors rather than the Jobs API.
- **Preemption.** ``stop`` asks the job to checkpoint, waits ``grace_s``, then the actor is killed and the
  group removed; the work lost (progress minus checkpoint) is returned and recorded.
- **Power.** One node agent per node (:class:`~.ray_agent.NodeAgent`) sets GPU power limits.
- **Failures.** A node that Ray reports dead leaves :meth:`healthy_gpus`; its jobs come back from
  :meth:`step` as ``failed`` events with the work since their checkpoint lost, and resume from the
  checkpoint when the control loop starts them again.

Time: ``time_scale`` virtual seconds pass per wall second (1 on a real cluster; the demo compresses a
15-minute slot into under 2 s). ``step(dt_s)`` waits ``dt_s / time_scale`` wall seconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
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
    NODE_LABEL,
    POOL_LABEL,
    LocalSiteCluster,
    pool_resource,
    set_ray_env,
    start_local_cluster,
)
from scheduler.executors.ray_job import JobActor
from scheduler.jobs import Job, check_jobs_fit, pool_matches
from scheduler.models import Site
from scheduler.workloads import DEFAULT_ENTRYPOINTS
from scheduler.workloads.runtime import STOP_FILE, JobConfig, checkpoint_work_s

log = logging.getLogger(__name__)

NAMESPACE = "windward"
PG_PREFIX = "windward-"
ACTOR_PREFIX = "windward-job-"
AGENT_PREFIX = "windward-agent-"

_RemoteJobActor = ray.remote(JobActor)
_RemoteNodeAgent = ray.remote(NodeAgent)


@dataclass(slots=True)
class _Node:
    pool: str
    index: int
    node_id: str | None
    alive: bool
    agent: Any = None  # actor handle
    used_devices: set[int] = field(default_factory=set)


@dataclass(slots=True)
class _Run:
    job: Job
    pool: str
    nodes: tuple[int, ...]
    per_node: tuple[int, ...]
    devices: tuple[tuple[int, ...], ...]  # GPU indices per node
    power_fraction: float
    work_done_s: float
    checkpoint_work_s: float
    pg: PlacementGroup
    actor: Any
    job_dir: Path


def _safe(job_id: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]", "_", job_id)
    return s if s == job_id else f"{s}-{hashlib.sha256(job_id.encode()).hexdigest()[:8]}"


def _seed(job_id: str) -> int:
    return int(hashlib.sha256(job_id.encode()).hexdigest()[:8], 16) % (2**31)


def _job_from_dict(d: Mapping[str, Any]) -> Job:
    return Job(**dict(d))


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
        poll_s: float = 0.25,
        power_backend: str = "auto",
        workload_params: Mapping[str, Mapping[str, Any]] | None = None,
        wall: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not time_scale > 0:
            raise InputError(f"time_scale must be > 0 (virtual seconds per wall second), got {time_scale!r}")
        self.site = site
        self.time_scale = float(time_scale)
        self.grace_s = float(grace_s)
        self.placement_timeout_s = float(placement_timeout_s)
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
        self.local: LocalSiteCluster | None = None
        self._owns_ray = False
        self._closed = False
        self._power_backend = power_backend
        self._nodes: dict[str, list[_Node]] = {p.name: [] for p in site.pools}

        if address is None:
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
        """Match Ray's node table to pool nodes; return node_down / node_up transitions."""
        seen: dict[tuple[str, int], tuple[str, bool]] = {}
        for n in ray.nodes():
            labels = n.get("Labels") or {}
            pool = labels.get(POOL_LABEL)
            if pool not in self._pools:
                continue
            idx_s = labels.get(NODE_LABEL)
            if idx_s is None or not idx_s.isdigit():
                continue
            key = (pool, int(idx_s))
            alive = bool(n.get("Alive"))
            # a replaced node (new raylet, same pool/index) wins over the dead one
            if key not in seen or (alive and not seen[key][1]):
                seen[key] = (n["NodeID"], alive)
        events: list[ExecutorEvent] = []
        now = self.now_s
        for name, pool in self._pools.items():
            nodes = self._nodes[name]
            n_nodes = max([pool.nodes] + [i + 1 for (p, i) in seen if p == name])
            while len(nodes) < n_nodes:
                nodes.append(_Node(name, len(nodes), None, False))
            for nd in nodes:
                node_id, alive = seen.get((name, nd.index), (None, False))
                if initial:
                    nd.node_id, nd.alive = node_id, alive
                    continue
                if nd.alive and (not alive or node_id != nd.node_id):
                    nd.alive = False
                    nd.agent = None
                    nd.used_devices.clear()
                    events.append(ExecutorEvent("node_down", now, None, name, nd.index, detail="Ray reports the node dead"))
                    log.warning("node %s/%d is down", name, nd.index)
                if not nd.alive and alive:
                    nd.node_id, nd.alive = node_id, True
                    events.append(ExecutorEvent("node_up", now, None, name, nd.index))
                    log.info("node %s/%d is up", name, nd.index)
                    self._start_agent(nd, self._power_backend)
        if initial:
            missing = [f"{n.pool}/{n.index}" for ns in self._nodes.values() for n in ns if not n.alive]
            if missing:
                log.warning("pool nodes not found alive in the Ray cluster: %s", missing)
        return events

    def _start_agents(self, backend: str) -> None:
        self._power_backend = backend
        for nodes in self._nodes.values():
            for nd in nodes:
                if nd.alive:
                    self._start_agent(nd, backend)
        # agents of a re-adopted cluster remember which GPUs jobs hold
        for nodes in self._nodes.values():
            for nd in nodes:
                if nd.agent is not None:
                    held = ray.get(nd.agent.jobs.remote(), timeout=30)
                    nd.used_devices = {i for idx in held.values() for i in idx}

    def _start_agent(self, nd: _Node, backend: str) -> None:
        pool = self._pools[nd.pool]
        nd.agent = _RemoteNodeAgent.options(
            name=f"{AGENT_PREFIX}{nd.pool}-{nd.index}-{(nd.node_id or '')[:12]}",
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            num_cpus=0,
            max_concurrency=4,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=nd.node_id, soft=False),
        ).remote(nd.pool, nd.index, pool.gpus_per_node, pool.tdp_w, pool.idle_w, pool.min_power_fraction, backend)

    def power_backends(self) -> dict[str, tuple[str, str]]:
        """``"pool/index" -> (backend, reason)`` for every live node agent."""
        out = {}
        for nodes in self._nodes.values():
            for nd in nodes:
                if nd.agent is not None:
                    out[f"{nd.pool}/{nd.index}"] = tuple(ray.get(nd.agent.backend.remote(), timeout=30))
        return out  # type: ignore[return-value]

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
        devices: list[tuple[int, ...]] = []
        for nd, k in zip(placed, sizes):
            free_idx = [i for i in range(gpn) if i not in nd.used_devices][:k]
            nd.used_devices.update(free_idx)
            devices.append(tuple(free_idx))
        try:
            ray.get(
                [nd.agent.assign.remote(job.job_id, list(dev), power_fraction) for nd, dev in zip(placed, devices)],
                timeout=30,
            )
        except Exception as e:
            for nd, dev in zip(placed, devices):
                nd.used_devices.difference_update(dev)
            remove_placement_group(pg)
            raise ExecutorError(f"job {job.job_id!r}: node agents could not set power limits: {e}") from e

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
            speed_curve=tuple(tuple(x) for x in p.speed_curve), power_fraction=power_fraction,
            seed=_seed(job.job_id), params=params,
        )
        nodes = tuple(nd.index for nd in placed)
        meta = {"job": asdict(job), "pool": pool, "nodes": list(nodes), "per_node": sizes,
                "devices": [list(d) for d in devices], "power_fraction": power_fraction}
        (job_dir / "meta.json").write_text(json.dumps(meta))
        actor = _RemoteJobActor.options(
            name=f"{ACTOR_PREFIX}{job.job_id}",
            namespace=NAMESPACE,
            lifetime="detached",
            num_cpus=0,
            num_gpus=sizes[0],
            resources={res: float(sizes[0])},
            max_concurrency=4,
            max_restarts=0,
            scheduling_strategy=PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=0),
        ).remote(cfg.to_json(), job.entrypoint or DEFAULT_ENTRYPOINTS[job.kind], meta)
        self._runs[job.job_id] = _Run(
            job=job, pool=pool, nodes=nodes, per_node=tuple(sizes), devices=tuple(devices),
            power_fraction=float(power_fraction), work_done_s=ckpt_s, checkpoint_work_s=ckpt_s,
            pg=pg, actor=actor, job_dir=job_dir,
        )
        if ckpt_s > 0:
            self._record(ExecutorEvent("resumed", self.now_s, job.job_id, pool, nodes[0],
                                       detail=f"from checkpoint at {ckpt_s:.0f} s"), pending=False)
        log.info("job %s: started in %s on nodes %s (%s, f=%.2f)", job.job_id, pool, nodes, strategy, power_fraction)
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
        """Kill the actor, remove the group, give the GPUs back (idempotent, tolerant of dead nodes)."""
        try:
            ray.kill(r.actor, no_restart=True)
        except Exception as e:  # already dead
            log.debug("job %s: kill: %s", r.job.job_id, e)
        try:
            remove_placement_group(r.pg)
        except Exception as e:
            log.debug("job %s: remove pg: %s", r.job.job_id, e)
        refs = []
        for i, dev in zip(r.nodes, r.devices):
            nd = self._nodes[r.pool][i]
            nd.used_devices.difference_update(dev)
            if nd.alive and nd.agent is not None:
                refs.append(nd.agent.release.remote(r.job.job_id))
        if refs:
            ray.wait(refs, num_returns=len(refs), timeout=5)

    def preempt(self, job_id: str, reason: str) -> float:
        r = self._runs.pop(job_id, None)
        if r is None:
            raise ExecutorError(f"cannot preempt job {job_id!r}: it is not running")
        (r.job_dir / STOP_FILE).touch()
        ref = r.actor.stop.remote(self.grace_s)
        ready, _ = ray.wait([ref], timeout=self.grace_s + 5.0)
        before_s = r.work_done_s
        if ready:
            try:
                prog = ray.get(ready[0])
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
        refs = [r.actor.set_power_fraction.remote(power_fraction)]
        for i in r.nodes:
            nd = self._nodes[r.pool][i]
            if nd.alive and nd.agent is not None:
                refs.append(nd.agent.set_fraction.remote(job_id, power_fraction))
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=10)
        if len(ready) < len(refs):
            log.warning("job %s: power fraction %.2f not confirmed by every agent", job_id, power_fraction)
        r.power_fraction = float(power_fraction)

    # ----------------------------------------------------------------------------- step

    def step(self, dt_s: float) -> list[ExecutorEvent]:
        if not dt_s >= 0.0:
            raise ValueError(f"step: dt_s must be >= 0, got {dt_s!r}")
        t0_virtual = self._virtual_s
        wall0 = self._wall()
        deadline = wall0 + dt_s / self.time_scale
        while True:
            self._virtual_s = min(t0_virtual + (self._wall() - wall0) * self.time_scale, t0_virtual + dt_s)
            self._poll()
            left = deadline - self._wall()
            if left <= 0:
                break
            self._sleep(min(self.poll_s, left))
        self._virtual_s = t0_virtual + dt_s
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
        refs = [self._runs[j].actor.progress.remote() for j in jids]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=max(self.poll_s, 1.0))
        ready_set = set(ready)
        for jid, ref in zip(jids, refs):
            if ref not in ready_set or jid not in self._runs:
                continue
            r = self._runs[jid]
            try:
                prog = ray.get(ref)
            except ray.exceptions.RayActorError as e:
                self._fail(jid, f"job actor died: {e.__class__.__name__}")
                continue
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
        scheduler restart). Groups without an actor are removed. Returns the adopted job ids."""
        adopted = []
        for entry in placement_group_table().values():
            name = entry.get("name") or ""
            if not name.startswith(PG_PREFIX) or entry.get("state") not in ("CREATED", "RESCHEDULING"):
                continue
            jid = name[len(PG_PREFIX):]
            if jid in self._runs:
                continue
            pg = ray.util.get_placement_group(name)
            try:
                actor = ray.get_actor(f"{ACTOR_PREFIX}{jid}", namespace=NAMESPACE)
                info = ray.get(actor.info.remote(), timeout=30)
            except Exception as e:
                log.warning("placement group %s has no live job actor (%s); removing it", name, e)
                remove_placement_group(pg)
                continue
            meta = info["meta"]
            job = _job_from_dict(meta["job"])
            pool = meta["pool"]
            nodes = tuple(int(x) for x in meta["nodes"])
            devices = tuple(tuple(int(i) for i in d) for d in meta["devices"])
            for i, dev in zip(nodes, devices):
                self._nodes[pool][i].used_devices.update(dev)
            job_dir = Path(info["job_dir"])
            ck = checkpoint_work_s(job_dir)
            self._runs[jid] = _Run(
                job=job, pool=pool, nodes=nodes, per_node=tuple(int(x) for x in meta["per_node"]), devices=devices,
                power_fraction=float(meta["power_fraction"]), work_done_s=ck, checkpoint_work_s=ck, pg=pg,
                actor=actor, job_dir=job_dir,
            )
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
