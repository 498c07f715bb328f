#!/usr/bin/env bash
# Makes the running cluster (deploy/postgres/start.sh) refuse the application role
# while it stays up, and undoes that: the fault suite (tests/faults) uses it.
#
#   deploy/postgres/refuse-connections.sh on    # pg_hba `reject` for $PG_APP_USER over TCP,
#                                               # reload, and cut its open connections
#   deploy/postgres/refuse-connections.sh off   # restore pg_hba.conf and reload
#
# The server keeps running; only the application's logins fail ("pg_hba.conf
# rejects connection"). The postgres superuser still gets in over the Unix socket.
set -euo pipefail
# shellcheck source=deploy/postgres/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
pg_find_bin
pg_running || pg_die "no cluster started by start.sh is running"

hba="$PG_DATA/pg_hba.conf"
saved="$PG_DATA/pg_hba.conf.before-refuse"

case "${1:-}" in
  on)
    if [[ ! -f "$saved" ]]; then
      cp -p "$hba" "$saved"
      # The first matching line wins: put the reject first.
      { echo "host all $PG_APP_USER 127.0.0.1/32 reject"; cat "$saved"; } >"$hba"
      chown "$PG_OS_USER:" "$hba"
    fi
    pg_psql_admin -d postgres -At -c 'SELECT pg_reload_conf()' >/dev/null
    pg_psql_admin -d postgres -At -v app_user="$PG_APP_USER" >/dev/null <<'SQL'
SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :'app_user';
SQL
    pg_log "refusing connections from $PG_APP_USER (undo: $0 off)"
    ;;
  off)
    if [[ -f "$saved" ]]; then
      mv "$saved" "$hba"
    fi
    pg_psql_admin -d postgres -At -c 'SELECT pg_reload_conf()' >/dev/null
    pg_log "accepting connections from $PG_APP_USER again"
    ;;
  *)
    sed -n '2,10s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
