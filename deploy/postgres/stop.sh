#!/usr/bin/env bash
# Stops the cluster started by deploy/postgres/start.sh (fast shutdown; immediate
# if that does not finish within PG_STOP_TIMEOUT seconds, default 30). Leaves the
# data and log in place. Does nothing, successfully, when it is not running.
set -euo pipefail
# shellcheck source=deploy/postgres/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

timeout_s="${PG_STOP_TIMEOUT:-30}"

if [[ ! -f "$PG_DATA/postmaster.pid" ]]; then
  pg_log "no cluster started by start.sh is running"
  exit 0
fi
pg_find_bin
if ! pg_running; then
  pg_log "no cluster started by start.sh is running (stale postmaster.pid)"
  exit 0
fi

pg_log "stopping the cluster in $PG_DATA"
if ! pg_as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t "$timeout_s" stop >/dev/null; then
  pg_log "fast shutdown did not finish within ${timeout_s}s: immediate shutdown"
  pg_as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w -t 30 stop >/dev/null \
    || pg_die "could not stop the cluster in $PG_DATA"
fi
pg_log "stopped"
