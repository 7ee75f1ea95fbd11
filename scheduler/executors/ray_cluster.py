"""How a Ray node joins a Windward pool (the one source of truth), and a local ``ray.cluster_utils.Cluster``
whose nodes are the site's pools as simulated GPU nodes.

A pool node is a Ray node that declares

- ``num_gpus = gpus_per_node``,
- a custom resource ``windward_pool_<pool>`` with the same count (placement-group bundles ask for it, so a
  bundle can only land on its pool),
- the labels ``{"windward.pool": <pool>, **pool.labels}`` (bundles also carry a label selector for the pool).

:func:`node_spec` defines these once. Everything that starts a pool node is made from it: the local cluster
below, ``ray start`` arguments (:func:`ray_start_args`, used by deploy/compose) and KubeRay's
``rayStartParams`` (:func:`ray_start_params`, rendered into deploy/kuberay by
:mod:`scheduler.executors.manifests`). A node's *identity* comes from Ray itself (its node id, and its host
name, which is the pod name on Kubernetes): no template can give each pod its own index label, so the
executor numbers a pool's nodes itself (:func:`pool_of`, :func:`node_identity`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from scheduler.errors import InputError
from scheduler.models import POOL_LABEL, Pool, Site

log = logging.getLogger(__name__)

POOL_RESOURCE_PREFIX = "windward_pool_"
#: Fast node-death detection (~3 s instead of ~12 s), measured in ../shared/RAY_AND_PROMETHEUS_NOTES.md.
HEALTH_CHECK_CONFIG: dict[str, int] = {
    "health_check_period_ms": 1000,
    "health_check_failure_threshold": 3,
    "health_check_initial_delay_ms": 1000,
}
MAX_LOCAL_NODES = 16  # each simulated node is a raylet process; more than this swamps a small machine
#: Ray's own metrics on every node (outside Ray's worker port range 10002-19999); the "ray" scrape job.
RAY_METRICS_PORT = 8080
_OBJECT_STORE_BYTES = 80 * 1024**2


def pool_resource(pool_name: str) -> str:
    return f"{POOL_RESOURCE_PREFIX}{pool_name}"


def pool_labels(pool: Pool) -> dict[str, str]:
    """The Ray labels of every node of ``pool``: the pool's name and the pool's own labels (which may not set
    :data:`~scheduler.models.POOL_LABEL`: the site model refuses it)."""
    return {POOL_LABEL: pool.name, **pool.labels}


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """What a Ray node of a pool declares: GPUs, custom resources, labels."""

    num_gpus: int
    resources: dict[str, float]
    labels: dict[str, str]


def node_spec(pool: Pool) -> NodeSpec:
    """The one definition of a pool node (everything else is rendered from it)."""
    return NodeSpec(
        num_gpus=pool.gpus_per_node,
        resources={pool_resource(pool.name): float(pool.gpus_per_node)},
        labels=pool_labels(pool),
    )


def _labels_arg(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())


def _resources_arg(resources: Mapping[str, float]) -> str:
    return json.dumps({k: int(v) if float(v).is_integer() else v for k, v in resources.items()}, sort_keys=True)


def ray_start_params(pool: Pool) -> dict[str, str]:
    """KubeRay ``rayStartParams`` of the pool's worker group (string values: ``ray start --<key>=<value>``)."""
    s = node_spec(pool)
    return {
        "num-gpus": str(s.num_gpus),
        "resources": f"'{_resources_arg(s.resources)}'",  # KubeRay pastes the value into a shell command
        "labels": _labels_arg(s.labels),
        "metrics-export-port": str(RAY_METRICS_PORT),
    }


def ray_start_args(pool: Pool) -> list[str]:
    """``ray start`` arguments (after ``--address``) for a node of ``pool`` (deploy/compose uses these)."""
    s = node_spec(pool)
    return [
        f"--num-gpus={s.num_gpus}",
        f"--resources={_resources_arg(s.resources)}",
        f"--labels={_labels_arg(s.labels)}",
        f"--metrics-export-port={RAY_METRICS_PORT}",
    ]


def parse_ray_start(params: Mapping[str, str]) -> NodeSpec:
    """The node a ``ray start --key=value ...`` would make (keys without dashes, as in ``rayStartParams``):
    the inverse of :func:`ray_start_params` / :func:`ray_start_args`, for checking deploy files."""
    from ray._private.label_utils import parse_node_labels_string

    res_s = params.get("resources", "{}").strip()
    if len(res_s) > 1 and res_s[0] == res_s[-1] and res_s[0] in "'\"":
        res_s = res_s[1:-1]
    try:
        resources = {str(k): float(v) for k, v in json.loads(res_s).items()}
    except (ValueError, AttributeError) as e:
        raise InputError(f"ray start resources {params.get('resources')!r}: not a JSON object ({e})") from e
    labels = parse_node_labels_string(params.get("labels", ""))
    return NodeSpec(num_gpus=int(params.get("num-gpus", "0")), resources=resources, labels=labels)


def parse_ray_start_args(args: list[str]) -> dict[str, str]:
    """``["--num-gpus=8", "--labels=a=b", "--block"]`` -> ``{"num-gpus": "8", "labels": "a=b", "block": ""}``."""
    out: dict[str, str] = {}
    it = iter(args)
    for a in it:
        if not a.startswith("--"):
            continue
        key, eq, val = a[2:].partition("=")
        out[key] = val if eq else ""
    return out


def pool_of(node: Mapping[str, Any], pools: Mapping[str, Pool]) -> str | None:
    """The pool a row of ``ray.nodes()`` belongs to, or None. A node that carries the pool label but not
    what the pool needs (its GPUs and pool resource) is refused with a warning, not silently half-used."""
    pool = (node.get("Labels") or {}).get(POOL_LABEL)
    if not isinstance(pool, str) or pool not in pools:
        return None
    spec = node_spec(pools[pool])
    res = node.get("Resources") or {}
    if node.get("Alive") and (
        res.get("GPU", 0.0) < spec.num_gpus or res.get(pool_resource(pool), 0.0) < spec.num_gpus
    ):
        log.warning(
            "Ray node %s says pool %s but declares GPU=%s, %s=%s (a pool node needs %d of each); ignored",
            node.get("NodeID"), pool, res.get("GPU"), pool_resource(pool), res.get(pool_resource(pool)),
            spec.num_gpus,
        )  # fmt: skip
        return None
    return pool


def node_identity(node: Mapping[str, Any]) -> tuple[str, str]:
    """(node id, host name) from Ray's node table: the host name is the pod's name on Kubernetes."""
    return str(node["NodeID"]), str(node.get("NodeManagerHostname") or node.get("NodeName") or "")


def set_ray_env(local: bool) -> None:
    """Token auth off and usage stats off for clusters we start (Ray 2.60 turns auth on by default)."""
    if local:
        os.environ["RAY_AUTH_MODE"] = "disabled"
        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    else:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@dataclass
class LocalSiteCluster:
    """A local multi-node Ray cluster: a head without GPUs and simulated GPU nodes made by :func:`node_spec`."""

    cluster: Any  # ray.cluster_utils.Cluster
    nodes: dict[str, tuple[str, Any]] = field(default_factory=dict)  # Ray node id -> (pool, ray node handle)

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def kill_node(self, node_id: str) -> str:
        """Kill a node's raylet abruptly (a node failure); Ray marks it dead after ~3 s. Returns its pool."""
        try:
            pool, node = self.nodes.pop(node_id)
        except KeyError:
            raise InputError(f"no live local node {node_id!r}") from None
        self.cluster.remove_node(node, allow_graceful=False)
        return pool

    def add_node(self, pool: Pool, cpus_per_node: int = 1) -> str:
        """Start one more simulated node of ``pool``; returns its Ray node id."""
        s = node_spec(pool)
        node = self.cluster.add_node(
            num_cpus=cpus_per_node,
            num_gpus=s.num_gpus,
            resources=dict(s.resources),
            labels=dict(s.labels),
            object_store_memory=_OBJECT_STORE_BYTES,
        )
        node_id = str(node.node_id)
        self.nodes[node_id] = (pool.name, node)
        return node_id

    def shutdown(self) -> None:
        self.cluster.shutdown()


def start_local_cluster(site: Site, cpus_per_node: int = 1) -> LocalSiteCluster:
    """Start a head and one simulated GPU node per node of every pool of ``site``."""
    from ray.cluster_utils import Cluster

    n_nodes = sum(p.nodes for p in site.pools)
    if n_nodes > MAX_LOCAL_NODES:
        raise InputError(
            f"site {site.name!r} has {n_nodes} nodes; a local Ray cluster holds at most {MAX_LOCAL_NODES} "
            "(use the demo site, or connect to a real cluster with --address)"
        )
    set_ray_env(local=True)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "num_gpus": 0,
            "include_dashboard": False,
            "object_store_memory": _OBJECT_STORE_BYTES,
            "_system_config": dict(HEALTH_CHECK_CONFIG),
        },
        shutdown_at_exit=True,
    )
    local = LocalSiteCluster(cluster=cluster)
    try:
        for pool in site.pools:
            for _ in range(pool.nodes):
                local.add_node(pool, cpus_per_node)
        cluster.wait_for_nodes()
    except BaseException:
        cluster.shutdown()
        raise
    log.info("local Ray cluster at %s: %d simulated GPU node(s) for site %s", local.address, n_nodes, site.name)
    return local
