"""Render a Grafana dashboard of deploy/grafana/dashboards/ to a PNG with matplotlib, by running every panel's
own PromQL against a real Prometheus (``/api/v1/query_range``): what a person would see in Grafana, without
Grafana.

    python scripts/render_dashboard.py --prometheus http://127.0.0.1:9090 \\
        --dashboard deploy/grafana/dashboards/site-overview.json --minutes 60 --out site-overview.png

``--time-scale S`` is for a server running on compressed time (``windward server --tick-seconds``): one
wall second is S seconds of the site's time. The x axis is then drawn in the site's hours, and panels of
``rate(...)`` (per wall second) are divided by S so that they read per site second again (ratios of rates,
in ``percentunit`` panels, need no correction). tests/integration/test_prometheus.py uses this to draw a
simulated day.

The same script writes the dashboards as ConfigMaps for kube-prometheus-stack's Grafana sidecar (label
``grafana_dashboard: "1"``, folder annotation ``grafana_folder: Windward``), one per dashboard, plus a
kustomization listing them::

    python scripts/render_dashboard.py --configmaps deploy/grafana/configmaps          # write
    python scripts/render_dashboard.py --configmaps deploy/grafana/configmaps --check  # exit 1 if out of date

The ConfigMaps carry no namespace: apply them in the namespace the sidecar watches (the Grafana release's
own, or any when ``grafana.sidecar.dashboards.searchNamespace: ALL``), e.g.
``kubectl apply -n monitoring -k deploy/grafana/configmaps``. tests/unit/test_dashboards.py fails when they
are out of sync with deploy/grafana/dashboards/.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

#: Grafana's built-in variables, as the tests and this script substitute them (1 s scrapes in tests).
DEFAULT_VARS: dict[str, str] = {"__rate_interval": "10s", "__interval": "5s", "__range": "1h"}


def substitute(expr: str, variables: Mapping[str, str] | None = None) -> str:
    """Replace ``$name``, ``${name}`` and ``[[name]]`` Grafana variables; unknown ones become ``.*``
    (the "All" value of a multi-value query variable, always used with ``=~``)."""
    values = {**DEFAULT_VARS, **(variables or {})}

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        return values.get(name, ".*")

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", repl, expr)


def panels(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The dashboard's non-row panels, rows' nested panels included, in layout order."""
    out: list[dict[str, Any]] = []
    for p in dashboard["panels"]:
        if p.get("type") == "row":
            out += p.get("panels", [])
        else:
            out.append(p)
    return out


class Prometheus:
    """The two query endpoints of a Prometheus server's HTTP API."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s)

    def _get(self, path: str, params: Mapping[str, Any]) -> Any:
        r = self.http.get(path, params=params)
        body = r.json()
        if r.status_code != 200 or body.get("status") != "success":
            raise RuntimeError(f"{path} {dict(params)}: HTTP {r.status_code}: {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str, at_s: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": expr}
        if at_s is not None:
            params["time"] = at_s
        data = self._get("/api/v1/query", params)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def query_range(self, expr: str, start_s: float, end_s: float, step_s: float) -> list[dict[str, Any]]:
        data = self._get("/api/v1/query_range", {"query": expr, "start": start_s, "end": end_s, "step": step_s})
        return list(data["result"])

    def close(self) -> None:
        self.http.close()


def legend(fmt: str, labels: Mapping[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt or "") or json.dumps(labels)


_SCALE = (("watt", [(1e6, "MW"), (1e3, "kW"), (1.0, "W")]), ("massg", [(1e6, "t"), (1e3, "kg"), (1.0, "g")]))


def _unit_scale(unit: str | None, peak: float) -> tuple[float, str]:
    for name, steps in _SCALE:
        if unit == name:
            for div, label in steps:
                if peak >= div:
                    return div, label
            return steps[-1]
    if unit == "percentunit":
        return 0.01, "%"
    if unit == "s":
        return 1.0, "s"
    return 1.0, ""


def render(
    prom: Prometheus,
    dashboard_path: Path,
    start_s: float,
    end_s: float,
    out_png: Path,
    *,
    step_s: float = 1.0,
    time_scale: float = 1.0,
    variables: Mapping[str, str] | None = None,
    subtitle: str = "",
) -> dict[str, int]:
    """Draw every panel of the dashboard over ``[start_s, end_s]`` (Unix seconds). Returns, per panel title,
    how many series it drew (a panel with 0 would be empty in Grafana too)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dash = json.loads(Path(dashboard_path).read_text())
    ps = panels(dash)
    big = [p for p in ps if p["gridPos"]["w"] >= 16]
    n_rows = len(big) + math.ceil((len(ps) - len(big)) / 2)
    fig = plt.figure(figsize=(14, 3.1 * n_rows))
    gs = fig.add_gridspec(n_rows, 2, hspace=0.65, wspace=0.18)
    drawn: dict[str, int] = {}
    row, col = 0, 0
    for p in ps:
        if p in big:
            if col:
                row, col = row + 1, 0
            ax = fig.add_subplot(gs[row, :])
            row += 1
        else:
            ax = fig.add_subplot(gs[row, col])
            row, col = (row, 1) if col == 0 else (row + 1, 0)
        unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit")
        series: list[tuple[str, list[float], list[float]]] = []
        for t in p["targets"]:
            expr = substitute(t["expr"], variables)
            per_wall_s = "rate(" in expr and unit != "percentunit"
            for res in prom.query_range(expr, start_s, end_s, step_s):
                xs = [(float(ts) - start_s) * time_scale / 3600.0 for ts, _ in res["values"]]
                ys = [float(v) / (time_scale if per_wall_s else 1.0) for _, v in res["values"]]
                series.append((legend(t.get("legendFormat", ""), res["metric"]), xs, ys))
        finite = [abs(y) for _, _, ys in series for y in ys if math.isfinite(y)]
        div, ulabel = _unit_scale(unit, max(finite, default=0.0))
        for name, xs, ys in series:
            step = p["type"] in ("timeseries",) and "cap" in name
            (ax.step if step else ax.plot)(xs, [y / div for y in ys], label=name, linewidth=1.4)
        ax.set_title(p["title"] + ("" if p["type"] == "timeseries" else f"  [{p['type']} panel, drawn over time]"),
                     fontsize=10)  # fmt: skip
        ax.set_ylabel(ulabel)
        ax.set_xlabel("site time (hours)" if time_scale != 1.0 else "hours")
        ax.grid(alpha=0.3)
        if series:
            ax.legend(fontsize=7, loc="upper right", ncol=min(len(series), 5))
        else:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", color="red")
        drawn[p["title"]] = len(series)
    fig.suptitle(f"{dash['title']}" + (f" — {subtitle}" if subtitle else ""), fontsize=13)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return drawn


DASHBOARD_DIR = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "dashboards"
#: Label kube-prometheus-stack's Grafana sidecar selects dashboards by (its chart default), and the folder.
SIDECAR_LABEL = ("grafana_dashboard", "1")
FOLDER = "Windward"


def configmap_name(dashboard_path: Path) -> str:
    return f"windward-dashboard-{dashboard_path.stem}"


def configmap(dashboard_path: Path) -> str:
    """One dashboard as a ConfigMap (YAML text); the JSON goes in verbatim as a block scalar."""
    text = Path(dashboard_path).read_text()
    json.loads(text)  # refuse to wrap a broken dashboard
    body = "\n".join(("    " + line) if line else "" for line in text.rstrip("\n").split("\n"))
    rel = f"deploy/grafana/dashboards/{Path(dashboard_path).name}"
    return (
        f"# Generated by scripts/render_dashboard.py --configmaps from {rel}: edit that file and re-run.\n"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        f"  name: {configmap_name(dashboard_path)}\n"
        "  labels:\n"
        f'    {SIDECAR_LABEL[0]}: "{SIDECAR_LABEL[1]}"\n'
        "    app.kubernetes.io/name: windward\n"
        "    app.kubernetes.io/component: dashboards\n"
        "  annotations:\n"
        f"    grafana_folder: {FOLDER}\n"
        "data:\n"
        f"  {Path(dashboard_path).name}: |-\n"
        f"{body}\n"
    )


def configmap_files(dashboard_dir: Path = DASHBOARD_DIR) -> dict[str, str]:
    """File name -> text of every ConfigMap and of the kustomization that lists them."""
    out = {f"{p.stem}.yaml": configmap(p) for p in sorted(Path(dashboard_dir).glob("*.json"))}
    listing = "".join(f"  - {name}\n" for name in sorted(out))
    out["kustomization.yaml"] = (
        "# Generated by scripts/render_dashboard.py --configmaps: the Windward dashboards for the Grafana sidecar.\n"
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        f"resources:\n{listing}"
    )
    return out


def write_configmaps(out_dir: Path, check: bool = False, dashboard_dir: Path = DASHBOARD_DIR) -> list[str]:
    """Write (or with ``check`` only compare) the ConfigMaps; returns the files that were out of date."""
    want = configmap_files(dashboard_dir)
    stale = [n for n, text in want.items() if not (out_dir / n).is_file() or (out_dir / n).read_text() != text]
    extra = [p.name for p in out_dir.glob("*.yaml") if p.name not in want] if out_dir.is_dir() else []
    if not check:
        out_dir.mkdir(parents=True, exist_ok=True)
        for n in stale:
            (out_dir / n).write_text(want[n])
        for n in extra:
            (out_dir / n).unlink()
    return sorted(stale + extra)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prometheus", default="http://127.0.0.1:9090")
    ap.add_argument("--dashboard", type=Path, default=Path("deploy/grafana/dashboards/site-overview.json"))
    ap.add_argument("--minutes", type=float, default=60.0, help="wall minutes back from now")
    ap.add_argument("--step", type=float, default=15.0, help="query step, seconds")
    ap.add_argument("--time-scale", type=float, default=1.0, help="site seconds per wall second")
    ap.add_argument("--out", type=Path, default=Path("site-overview.png"))
    ap.add_argument("--configmaps", type=Path, metavar="DIR", help="write the dashboards as Grafana-sidecar ConfigMaps")
    ap.add_argument("--check", action="store_true", help="with --configmaps: exit 1 when DIR is out of date")
    a = ap.parse_args()
    if a.configmaps is not None:
        changed = write_configmaps(a.configmaps, check=a.check)
        sys.stdout.write(
            json.dumps({"dir": str(a.configmaps), "out_of_date" if a.check else "written": changed}) + "\n"
        )
        sys.exit(1 if a.check and changed else 0)
    end = time.time()
    prom = Prometheus(a.prometheus)
    try:
        drawn = render(prom, a.dashboard, end - a.minutes * 60, end, a.out, step_s=a.step, time_scale=a.time_scale)
    finally:
        prom.close()
    sys.stdout.write(json.dumps({"out": str(a.out), "series_per_panel": drawn}, indent=2) + "\n")


if __name__ == "__main__":
    main()
