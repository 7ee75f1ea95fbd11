#!/usr/bin/env bash
# Install a real Prometheus server (and promtool) from Debian's packages, for the integration test
# tests/integration/test_prometheus.py and for `promtool check config|rules` on deploy/prometheus/.
#
# Does nothing when `prometheus` is already on PATH. Needs root (CI containers run as root); uses sudo
# when it is available and we are not root. Debian's package (~13 s, Prometheus 2.42) also brings promtool.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1; then
    echo "install-prometheus: $(command -v prometheus) already present: $(prometheus --version 2>&1 | head -n 1)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-prometheus: need root (or sudo) to run apt-get" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends prometheus

# The Debian package starts a system service where systemd runs; we only want the binaries. Tests start
# their own server on 127.0.0.1 with a temp tsdb.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    $SUDO systemctl stop prometheus || true
fi

echo "install-prometheus: installed $(prometheus --version 2>&1 | head -n 1)"
command -v promtool >/dev/null 2>&1 || { echo "install-prometheus: promtool missing after install" >&2; exit 1; }
