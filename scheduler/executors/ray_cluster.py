"""Starting Ray for Windward: the environment, and a local ``ray.cluster_utils.Cluster`` whose nodes are
the site's pools as simulated GPU nodes.

Each node declares ``num_gpus = gpus_per_node``, a custom resource ``windward_pool_<pool>`` with the same
count (placement-group bundles ask for it, so a bundle can only land on its pool), and the labels
``{"windward.pool": <pool>, "windward.node": <index>, **pool.labels}``. On a real cluster the same labels
and resource come from KubeRay worker groups or ``ray start --labels ... --resources ...`` (deploy/).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from scheduler.errors import InputError
from scheduler.models import Pool, Site

log = logging.getLogger(__name__)

POOL_LABEL = "windward.pool"
NODE_LABEL = "windward.node"
#: Fast node-death detection (~3 s instead of ~12 s), measured in ../shared/RAY_AND_PROMETHEUS_NOTES.md.
HEALTH_CHECK_CONFIG: dict[str, int] = {
    "health_check_period_ms": 1000,
    "health_check_failure_threshold": 3,
    "health_check_initial_delay_ms": 1000,
}
MAX_LOCAL_NODES = 16  # each simulated node is a raylet process; more than this swamps a small machine
_OBJECT_STORE_BYTES = 80 * 1024**2


def pool_resource(pool_name: str) -> str:
    return f"windward_pool_{pool_name}"


def pool_labels(pool: Pool, index: int) -> dict[str, str]:
    return {POOL_LABEL: pool.name, NODE_LABEL: str(index), **pool.labels}


def set_ray_env(local: bool) -> None:
    """Token auth off and usage stats off for clusters we start (Ray 2.60 turns auth on by default)."""
    if local:
        os.environ["RAY_AUTH_MODE"] = "disabled"
        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    else:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@dataclass
class LocalSiteCluster:
    """A local multi-node Ray cluster: a head without GPUs and one simulated node per pool node."""

    cluster: Any  # ray.cluster_utils.Cluster
    nodes: dict[tuple[str, int], Any] = field(default_factory=dict)  # (pool, index) -> ray node handle

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def kill_node(self, pool: str, index: int) -> None:
        """Kill a node's raylet abruptly (a node failure); Ray marks it dead after ~3 s."""
        node = self.nodes.pop((pool, index))
        self.cluster.remove_node(node, allow_graceful=False)

    def add_node(self, pool: Pool, index: int, cpus_per_node: int = 1) -> None:
        self.nodes[(pool.name, index)] = self.cluster.add_node(
            num_cpus=cpus_per_node,
            num_gpus=pool.gpus_per_node,
            resources={pool_resource(pool.name): pool.gpus_per_node},
            labels=pool_labels(pool, index),
            object_store_memory=_OBJECT_STORE_BYTES,
        )

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
            for i in range(pool.nodes):
                local.add_node(pool, i, cpus_per_node)
        cluster.wait_for_nodes()
    except BaseException:
        cluster.shutdown()
        raise
    log.info("local Ray cluster at %s: %d simulated GPU node(s) for site %s", local.address, n_nodes, site.name)
    return local
