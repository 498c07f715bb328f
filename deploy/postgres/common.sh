# shellcheck shell=bash
# shellcheck disable=SC2034  # the variables are used by the scripts that source this file
# Shared settings and helpers for deploy/postgres/*.sh. Source it; do not run it.
#
# The scripts run a throwaway PostgreSQL cluster of their own (initdb into
# $PG_ROOT/data, owned by the `postgres` OS user), not Debian's packaged 15/main
# cluster: every start is a fresh, empty cluster with known settings.
#
# Environment (all optional):
#   PG_ROOT            where the cluster lives: data/, run/ (socket), log/ (default /tmp/returnloop-ci/postgres)
#   PG_PORT            TCP port on 127.0.0.1 (default 5432)
#   PG_APP_USER        role to create, a superuser (default returnloop)
#   PG_APP_PASSWORD    its password (default returnloop)
#   PG_APP_DB          database to create, owned by that role (default returnloop)
#   PG_START_TIMEOUT   seconds to wait for the server to accept connections (default 60)
#   PG_BIN             PostgreSQL's bin directory (default the newest /usr/lib/postgresql/*/bin)

PG_HOME="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PG_ROOT="${PG_ROOT:-/tmp/returnloop-ci/postgres}"
PG_DATA="$PG_ROOT/data"
PG_SOCKET_DIR="$PG_ROOT/run"
PG_LOG_DIR="$PG_ROOT/log"
PG_LOG="$PG_LOG_DIR/postgresql.log"
PG_PORT="${PG_PORT:-5432}"
PG_APP_USER="${PG_APP_USER:-returnloop}"
PG_APP_PASSWORD="${PG_APP_PASSWORD:-returnloop}"
PG_APP_DB="${PG_APP_DB:-returnloop}"
PG_OS_USER="postgres"
# Marker that makes a directory ours to wipe (we never rm -rf a directory without it).
PG_MARKER=".returnloop-postgres-data"

pg_log() { printf '[postgres %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
pg_die() { pg_log "ERROR: $*"; exit 1; }

# Sets PG_BIN to the bin directory of the newest installed server, or fails.
pg_find_bin() {
  if [[ -z "${PG_BIN:-}" ]]; then
    PG_BIN="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V | tail -n1)"
  fi
  [[ -n "$PG_BIN" && -x "$PG_BIN/initdb" && -x "$PG_BIN/pg_ctl" ]] \
    || pg_die "no PostgreSQL server found (run deploy/postgres/install.sh, or set PG_BIN)"
  id "$PG_OS_USER" >/dev/null 2>&1 || pg_die "the '$PG_OS_USER' OS user is missing (it comes with Debian's postgresql package)"
}

# Runs a command as the postgres OS user, from / (it cannot read root's directories).
pg_as_postgres() {
  if [[ "$(id -un)" == "$PG_OS_USER" ]]; then
    (cd / && "$@")
  elif [[ "$(id -u)" == 0 ]]; then
    (cd / && runuser -u "$PG_OS_USER" -- "$@")
  else
    pg_die "run this as root (or as $PG_OS_USER)"
  fi
}

# True when our cluster's postmaster is running.
pg_running() {
  [[ -f "$PG_DATA/postmaster.pid" ]] || return 1
  pg_as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

# psql as the postgres superuser over our cluster's Unix socket (peer authentication).
pg_psql_admin() {
  pg_as_postgres psql -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$PG_PORT" -U postgres "$@"
}

pg_port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$PG_PORT") 2>/dev/null
}
