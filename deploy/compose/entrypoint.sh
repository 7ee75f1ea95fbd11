#!/bin/sh
# The `windward` service of deploy/compose: a Ray head (GCS on 6379, Ray's metrics on 8080, outside Ray's
# worker port range 10002-19999; no GPUs: the pool workers bring them), then `windward server` on
# 0.0.0.0:8470 attached to it as a driver. Tenants come from a file (WINDWARD_TENANTS); the public demo
# tenants only with WINDWARD_DEMO=1, and the server then warns at every start.
set -eu
set -- --executor ray --address auto --host 0.0.0.0 --port 8470 \
    --state /var/lib/windward/state/windward.sqlite --power-control "${WINDWARD_POWER_CONTROL:-auto}"
if [ -n "${WINDWARD_SITE:-}" ]; then set -- "$@" --site "$WINDWARD_SITE"; fi
if [ "${WINDWARD_DEMO:-0}" = "1" ]; then
    set -- "$@" --demo
else
    set -- "$@" --tenants "${WINDWARD_TENANTS:?set WINDWARD_TENANTS to a tenants file (deploy/compose/make_tenants.py), or WINDWARD_DEMO=1}"
fi
if [ -n "${WINDWARD_TICK_SECONDS:-}" ]; then set -- "$@" --tick-seconds "$WINDWARD_TICK_SECONDS"; fi
ray start --head --port=6379 --num-gpus=0 --metrics-export-port=8080 --dashboard-host=0.0.0.0 --disable-usage-stats
exec windward server "$@"
