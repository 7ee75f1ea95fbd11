"""Deploy files rendered from the one definition of a pool node (:func:`~.ray_cluster.node_spec`).

    python -m scheduler.executors.manifests --write    # regenerate deploy/kuberay/*.yaml and deploy/compose
    python -m scheduler.executors.manifests --check    # exit 1 naming every file that differs (CI, tests)

Rendered:

- ``deploy/kuberay/raycluster.yaml`` (site rotterdam-100k): a RayCluster with GCS fault tolerance on an
  external Redis; the head pod runs Ray's head and, as its own container with probes, ``windward server``
  (tenants from a Secret, SQLite state on a ReadWriteOnce volume, job checkpoints on a ReadWriteMany volume
  that every worker mounts at the same path); one worker group per pool (replicas = the pool's nodes,
  ``rayStartParams`` from :func:`~.ray_cluster.ray_start_params`, nodeSelector and tolerations for the
  pool's Kubernetes nodes, the GPUs as ``nvidia.com/gpu``, and the capability NVML needs to set power limits).
- ``deploy/kuberay/base.yaml`` (namespace, the two volumes) and ``deploy/kuberay/redis.yaml`` (the external
  Redis for GCS fault tolerance).
- ``deploy/compose/docker-compose.yml`` (site demo): a Ray head with ``windward server``, one worker per pool
  started with :func:`~.ray_cluster.ray_start_args` (fake GPUs: Ray resources only), Prometheus and Grafana.

Nothing here imports ray.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from scheduler.errors import InputError
from scheduler.executors.ray_cluster import RAY_METRICS_PORT, ray_start_args, ray_start_params
from scheduler.models import Pool, Site, load_site

REPO = Path(__file__).resolve().parents[2]
KUBERAY_DIR = REPO / "deploy" / "kuberay"
COMPOSE_DIR = REPO / "deploy" / "compose"

IMAGE = "ghcr.io/windward/windward:0.1.0"
RAY_VERSION = "2.60.0"
NAMESPACE = "windward"
CLUSTER = "windward"
WINDWARD_PORT = 8470
GCS_PORT = 6379
#: The server's SQLite state, and the Ray executor's job directories next to it (``<state>.ray``, as
#: scheduler.service.make_executor derives it): that directory is the ReadWriteMany volume on every node.
STATE_DIR = "/var/lib/windward/state"
STATE_FILE = f"{STATE_DIR}/windward.sqlite"
CHECKPOINT_DIR = f"{STATE_FILE}.ray"
TENANTS_DIR = "/etc/windward/tenants"
RAY_TMP = "/tmp/ray"  # the head's session directory: the server container shares it to attach as a driver
POOL_TAINT = "windward.io/pool"


def _pod_labels(pool: Pool) -> dict[str, str]:
    """The pod labels of a pool's workers: the manifest's own, then each pool label as ``windward.io/<key>``, or as
    its key where the key has a prefix of its own (``example.com/rack``: a Kubernetes key takes one ``/``). A pool
    label that would replace one of the manifest's own is refused."""
    out = {"app.kubernetes.io/name": "windward", "app.kubernetes.io/component": "gpu-worker", "windward.io/pool": pool.name}
    for k, v in pool.labels.items():
        key = k if "/" in k else f"windward.io/{k}"
        if key in out:
            raise InputError(f"pool {pool.name!r}: label {k!r} would replace the pod label {key!r} this manifest sets "
                             f"({out[key]!r}); allowed: a key other than {sorted(out)}")  # fmt: skip
        out[key] = v
    return out


_RAY_ENV = [
    {"name": "RAY_AUTH_MODE", "value": "disabled"},
    {"name": "RAY_USAGE_STATS_ENABLED", "value": "0"},
]


def _server_args(site: Site, address: str) -> list[str]:
    return [
        "windward", "server", "--site", site_ref(site), "--tenants", f"{TENANTS_DIR}/tenants.yaml",
        "--executor", "ray", "--address", address, "--host", "0.0.0.0", "--port", str(WINDWARD_PORT),
        "--state", STATE_FILE,
    ]  # fmt: skip


def site_ref(site: Site) -> str:
    return {"rotterdam-demo": "demo"}.get(site.name, site.name)


def worker_group(pool: Pool, image: str = IMAGE) -> dict[str, Any]:
    gpn = pool.gpus_per_node
    return {
        "groupName": pool.name,
        "replicas": pool.nodes,
        "minReplicas": pool.nodes,
        "maxReplicas": pool.nodes,
        "rayStartParams": ray_start_params(pool),
        "template": {
            "metadata": {"labels": _pod_labels(pool)},
            "spec": {
                "nodeSelector": {"windward.io/pool": pool.name},
                "tolerations": [
                    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                    {"key": POOL_TAINT, "operator": "Equal", "value": pool.name, "effect": "NoSchedule"},
                ],
                "containers": [
                    {
                        "name": "ray-worker",
                        "image": image,
                        "env": [*_RAY_ENV, {"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "compute,utility"}],
                        "ports": [{"name": "metrics", "containerPort": RAY_METRICS_PORT, "protocol": "TCP"}],
                        "resources": {
                            "requests": {"cpu": "96", "memory": "1600Gi", "nvidia.com/gpu": gpn},
                            "limits": {"cpu": "112", "memory": "1800Gi", "nvidia.com/gpu": gpn},
                        },
                        # nvmlDeviceSetPowerManagementLimit needs root and CAP_SYS_ADMIN in the container
                        "securityContext": {"runAsUser": 0, "capabilities": {"add": ["SYS_ADMIN"]}},
                        "volumeMounts": [
                            {"name": "checkpoints", "mountPath": CHECKPOINT_DIR},
                            {"name": "dshm", "mountPath": "/dev/shm"},
                        ],
                    }
                ],
                "volumes": [
                    {"name": "checkpoints", "persistentVolumeClaim": {"claimName": "windward-checkpoints"}},
                    {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "256Gi"}},
                ],
            },
        },
    }


def raycluster(site: Site, image: str = IMAGE) -> dict[str, Any]:
    probe_common = {"periodSeconds": 10, "timeoutSeconds": 5}
    head = {
        "serviceType": "ClusterIP",
        "rayStartParams": {
            "num-gpus": "0",
            "dashboard-host": "0.0.0.0",
            "metrics-export-port": str(RAY_METRICS_PORT),
        },
        "template": {
            "metadata": {
                "labels": {"app.kubernetes.io/name": "windward", "app.kubernetes.io/component": "control-plane"}
            },
            "spec": {
                "containers": [
                    {
                        "name": "ray-head",
                        "image": image,
                        "env": list(_RAY_ENV),
                        "ports": [
                            {"name": "gcs-server", "containerPort": GCS_PORT},
                            {"name": "dashboard", "containerPort": 8265},
                            {"name": "client", "containerPort": 10001},
                            {"name": "metrics", "containerPort": RAY_METRICS_PORT},
                        ],
                        "resources": {"requests": {"cpu": "8", "memory": "32Gi"}, "limits": {"cpu": "16", "memory": "64Gi"}},
                        "volumeMounts": [{"name": "ray-tmp", "mountPath": RAY_TMP}],
                    },
                    {
                        # the control plane, a Ray driver on the head's node: same pod network, and the same /tmp/ray,
                        # where `ray start --head` leaves the cluster address that --address auto reads
                        "name": "windward-server",
                        "image": image,
                        "command": _server_args(site, "auto"),
                        "env": [*_RAY_ENV, {"name": "WINDWARD_LOG", "value": "INFO"}],
                        "ports": [{"name": "windward", "containerPort": WINDWARD_PORT}],
                        "startupProbe": {"httpGet": {"path": "/healthz", "port": "windward"}, "failureThreshold": 60,
                                         **probe_common},  # fmt: skip
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "windward"}, "failureThreshold": 3,
                                           **probe_common},  # fmt: skip
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "windward"}, "failureThreshold": 6,
                                          "periodSeconds": 20, "timeoutSeconds": 5},  # fmt: skip
                        "resources": {"requests": {"cpu": "8", "memory": "32Gi"}, "limits": {"cpu": "16", "memory": "64Gi"}},
                        "volumeMounts": [
                            {"name": "tenants", "mountPath": TENANTS_DIR, "readOnly": True},
                            {"name": "state", "mountPath": STATE_DIR},
                            {"name": "checkpoints", "mountPath": CHECKPOINT_DIR},
                            {"name": "ray-tmp", "mountPath": RAY_TMP},
                        ],
                    },
                ],
                "volumes": [
                    {"name": "tenants", "secret": {"secretName": "windward-tenants"}},
                    {"name": "state", "persistentVolumeClaim": {"claimName": "windward-state"}},
                    {"name": "checkpoints", "persistentVolumeClaim": {"claimName": "windward-checkpoints"}},
                    {"name": "ray-tmp", "emptyDir": {}},
                ],
            },
        },
    }
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {
            "name": CLUSTER,
            "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/name": "windward", "windward.io/site": site.name},
        },
        "spec": {
            "rayVersion": RAY_VERSION,
            "enableInTreeAutoscaling": False,
            # the head's GCS keeps its tables in Redis: a restarted head finds the cluster, its detached
            # placement groups and job actors (Windward re-adopts them) instead of starting empty
            "gcsFaultToleranceOptions": {
                "redisAddress": f"redis://windward-redis.{NAMESPACE}.svc:6379",
                "redisPassword": {"valueFrom": {"secretKeyRef": {"name": "windward-redis", "key": "password"}}},
            },
            "headGroupSpec": head,
            "workerGroupSpecs": [worker_group(p, image) for p in site.pools],
        },
    }


def base() -> list[dict[str, Any]]:
    """The namespace and the two volumes. The two Secrets are yours to create (never committed):

        kubectl -n windward create secret generic windward-tenants --from-file=tenants.yaml=./tenants.yaml
        kubectl -n windward create secret generic windward-redis --from-literal=password="$(openssl rand -hex 24)"
    """

    def pvc(name: str, mode: str, size: str, what: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": NAMESPACE, "annotations": {"windward.io/holds": what}},
            "spec": {"accessModes": [mode], "resources": {"requests": {"storage": size}}},
        }

    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        pvc("windward-state", "ReadWriteOnce", "20Gi", "the control plane's SQLite state (head pod only)"),
        pvc("windward-checkpoints", "ReadWriteMany", "2Ti",
            f"job checkpoints and progress, mounted at {CHECKPOINT_DIR} on the head and every worker"),
    ]  # fmt: skip


def redis() -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": "windward-redis"}
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "windward-redis", "namespace": NAMESPACE},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "8Gi"}}},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "windward-redis", "namespace": NAMESPACE, "labels": labels},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "redis",
                                "image": "redis:7.4",
                                "command": ["sh", "-c", 'exec redis-server --appendonly yes --requirepass "$REDIS_PASSWORD"'],
                                "env": [{"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "windward-redis", "key": "password"}}}],
                                "ports": [{"name": "redis", "containerPort": 6379}],
                                "readinessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 5},
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                            }
                        ],
                        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "windward-redis"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "windward-redis", "namespace": NAMESPACE, "labels": labels},
            "spec": {"selector": labels, "ports": [{"name": "redis", "port": 6379, "targetPort": "redis"}]},
        },
    ]


# ------------------------------------------------------------------------------------------ compose

COMPOSE_HEAD = "windward"  # the service name prometheus.yml scrapes (windward:8470, windward:8080)


def compose_worker_service(pool: Pool) -> str:
    return f"ray-worker-{pool.name}"


def compose(site: Site) -> dict[str, Any]:
    workers = {
        compose_worker_service(p): {
            "image": "windward:local",
            "entrypoint": ["ray", "start", f"--address={COMPOSE_HEAD}:{GCS_PORT}", *ray_start_args(p), "--block"],
            "environment": {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"},
            "expose": [str(RAY_METRICS_PORT)],
            "volumes": [f"windward-checkpoints:{CHECKPOINT_DIR}"],
            "shm_size": "1gb",
            "depends_on": [COMPOSE_HEAD],
            "restart": "unless-stopped",
        }
        for p in site.pools
    }
    return {
        "name": "windward",
        "services": {
            COMPOSE_HEAD: {
                "build": {"context": "../..", "dockerfile": "deploy/compose/Dockerfile"},
                "image": "windward:local",
                "environment": {
                    "RAY_AUTH_MODE": "disabled",
                    "RAY_USAGE_STATS_ENABLED": "0",
                    "WINDWARD_SITE": site_ref(site),
                    "WINDWARD_TENANTS": "/etc/windward/tenants.yaml",
                    "WINDWARD_TICK_SECONDS": "${WINDWARD_TICK_SECONDS:-}",
                },
                "ports": [f"{WINDWARD_PORT}:{WINDWARD_PORT}", "8265:8265"],
                "expose": [str(RAY_METRICS_PORT), str(GCS_PORT)],
                "volumes": [
                    "${WINDWARD_TENANTS_FILE:-./secrets/tenants.yaml}:/etc/windward/tenants.yaml:ro",
                    f"windward-state:{STATE_DIR}",
                    f"windward-checkpoints:{CHECKPOINT_DIR}",
                ],
                "shm_size": "2gb",
                "healthcheck": {
                    "test": ["CMD", "python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen("
                             f"'http://127.0.0.1:{WINDWARD_PORT}/healthz').status != 200)"],
                    "interval": "10s", "timeout": "5s", "retries": 12,
                },  # fmt: skip
                "restart": "unless-stopped",
            },
            **workers,
            "prometheus": {
                "image": "prom/prometheus:v2.53.2",
                "command": [
                    "--config.file=/etc/prometheus/prometheus.yml",
                    "--storage.tsdb.path=/prometheus",
                    "--storage.tsdb.retention.time=30d",
                    "--web.enable-lifecycle",
                ],
                "volumes": [
                    "../prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro",
                    "../prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro",
                    "prometheus-data:/prometheus",
                ],
                "ports": ["9090:9090"],
                "depends_on": [COMPOSE_HEAD],
                "restart": "unless-stopped",
            },
            "grafana": {
                "image": "grafana/grafana:11.2.0",
                "environment": {
                    "GF_AUTH_ANONYMOUS_ENABLED": "true",
                    "GF_AUTH_ANONYMOUS_ORG_ROLE": "Viewer",
                    "GF_SECURITY_ADMIN_PASSWORD": "${GRAFANA_ADMIN_PASSWORD:?set GRAFANA_ADMIN_PASSWORD}",
                    "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH": "/var/lib/grafana/dashboards/windward/site-overview.json",
                },
                "volumes": [
                    "../grafana/provisioning/datasources:/etc/grafana/provisioning/datasources:ro",
                    "../grafana/provisioning/dashboards:/etc/grafana/provisioning/dashboards:ro",
                    "../grafana/dashboards:/var/lib/grafana/dashboards/windward:ro",
                    "grafana-data:/var/lib/grafana",
                ],
                "ports": ["3000:3000"],
                "depends_on": ["prometheus"],
                "restart": "unless-stopped",
            },
        },
        "volumes": {"windward-state": None, "windward-checkpoints": None, "prometheus-data": None, "grafana-data": None},
    }


# ------------------------------------------------------------------------------------------ files

_KUBERAY_HEADER = """\
# GENERATED by `python -m scheduler.executors.manifests --write` from scheduler/executors/ray_cluster.py
# (node_spec: labels, resources and GPUs of a pool node) and scheduler/sites/{site}.yaml. Do not edit:
# tests/unit/test_deploy.py fails when this file differs from what the code renders.
"""

_COMPOSE_HEADER = """\
# GENERATED by `python -m scheduler.executors.manifests --write` (scheduler/executors/manifests.py) from the
# demo site and ray_cluster.node_spec. Do not edit: tests/unit/test_deploy.py compares it with the render.
#
# Windward on one machine: a Ray head with `windward server` (service `windward`), one Ray worker per pool
# of the demo site (8 fake GPUs each: Ray resources, no device), Prometheus scraping the server and every
# Ray node, Grafana with the dashboards provisioned. Tenants come from a file with your own tokens:
#
#   python deploy/compose/make_tenants.py deploy/compose/secrets      # tenants.yaml + tokens.env
#   GRAFANA_ADMIN_PASSWORD=... docker compose -f deploy/compose/docker-compose.yml up --build
#   Windward API  http://localhost:8470/docs     Prometheus http://localhost:9090     Grafana http://localhost:3000
#
# More nodes of a pool: `docker compose ... up --scale ray-worker-h100-eu-public=2` (Ray gives each its
# identity). Job checkpoints live on the volume windward-checkpoints, mounted on the head and every worker.
"""


_BASE_NOTE = """\
#
# The two Secrets are yours to create (tenants: sha256 of each token only, DESIGN section 7):
#   kubectl -n windward create secret generic windward-tenants --from-file=tenants.yaml=./tenants.yaml
#   kubectl -n windward create secret generic windward-redis --from-literal=password="$(openssl rand -hex 24)"
# The checkpoint volume must be ReadWriteMany (NFS, CephFS, EFS, Filestore, ...): set storageClassName.
"""


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:  # a shared list is written out, never as &id001 / *id001
        return True


def _dump(doc: Any) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=120)


def _dump_all(docs: list[dict[str, Any]]) -> str:
    return "".join("---\n" + _dump(d) for d in docs)


def rendered(kuberay_site: str = "rotterdam-100k", compose_site: str = "demo") -> dict[Path, str]:
    """Every generated deploy file and its content."""
    ks = load_site(kuberay_site)
    head = _KUBERAY_HEADER.format(site=kuberay_site)
    return {
        KUBERAY_DIR / "raycluster.yaml": head + _dump_all([raycluster(ks)]),
        KUBERAY_DIR / "base.yaml": head + _BASE_NOTE + _dump_all(base()),
        KUBERAY_DIR / "redis.yaml": head + _dump_all(redis()),
        COMPOSE_DIR / "docker-compose.yml": _COMPOSE_HEADER + _dump(compose(load_site(compose_site))).replace("null\n", "\n").replace(": \n", ":\n"),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Render the deploy files from the code (the one source of truth).")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", action="store_true", help="write the files")
    g.add_argument("--check", action="store_true", help="exit 1 if a committed file differs from the render")
    a = ap.parse_args(argv)
    stale = []
    for path, text in rendered().items():
        if a.write:
            path.write_text(text)
        elif not path.exists() or path.read_text() != text:
            stale.append(str(path.relative_to(REPO) if path.is_relative_to(REPO) else path))
    if stale:
        sys.stderr.write("differs from the render (run --write): " + ", ".join(stale) + "\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
