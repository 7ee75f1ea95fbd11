#!/bin/sh
# Start a local Ray head (metrics on 8080, outside Ray's worker port range 10002-19999) when the executor
# is Ray, then run `windward server` in the foreground on 0.0.0.0:8470.
set -eu
EXECUTOR="${WINDWARD_EXECUTOR:-ray}"
set -- --executor "$EXECUTOR" --host 0.0.0.0 --port 8470 --state /var/lib/windward/state.db
if [ -n "${WINDWARD_SITE:-}" ]; then set -- "$@" --site "$WINDWARD_SITE"; fi
if [ -n "${WINDWARD_TENANTS:-}" ]; then set -- "$@" --tenants "$WINDWARD_TENANTS"; fi
if [ "$EXECUTOR" = "ray" ]; then
    ray start --head --metrics-export-port=8080 --dashboard-host=0.0.0.0 --disable-usage-stats
    set -- "$@" --address auto
fi
exec windward server "$@"
