#!/usr/bin/env bash
# Starts a fresh, throwaway PostgreSQL cluster on 127.0.0.1:5432 with a superuser
# role `returnloop` (password `returnloop`) and a database `returnloop`, and waits
# until it accepts connections. Needs root (it runs the server as the `postgres`
# OS user) and the server installed (deploy/postgres/install.sh).
#
#   deploy/postgres/start.sh   # fresh cluster; stops one that this script started earlier
#   deploy/postgres/stop.sh
#
# Every start wipes $PG_ROOT (default /tmp/returnloop-ci/postgres) and runs initdb,
# unless PG_KEEP_DATA=1 and a cluster is already there. Server log:
# $PG_ROOT/log/postgresql.log. Durability is off (fsync, full_page_writes,
# synchronous_commit): this is a CI/dev database, not a place for real data.
set -euo pipefail
# shellcheck source=deploy/postgres/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

timeout_s="${PG_START_TIMEOUT:-60}"
t0=$SECONDS
pg_find_bin

if pg_running; then
  pg_log "a cluster started earlier is running in $PG_DATA: stopping it first"
  "$PG_HOME/stop.sh"
fi

# Debian's own cluster (15/main) may have been started by the package's install
# (where nothing blocks service start-up) and hold the port: stop it.
if command -v pg_lsclusters >/dev/null 2>&1; then
  while read -r ver name port status _; do
    if [[ "$port" == "$PG_PORT" && "$status" == online* ]]; then
      pg_log "Debian's cluster $ver/$name is running on port $PG_PORT: stopping it (pg_ctlcluster $ver $name stop)"
      pg_ctlcluster "$ver" "$name" stop || pg_die "could not stop cluster $ver/$name"
    fi
  done < <(pg_lsclusters -h 2>/dev/null || true)
fi
if pg_port_open; then
  ss -ltnp "sport = :$PG_PORT" >&2 || true
  pg_die "127.0.0.1:$PG_PORT is already in use by another process (see above); stop it first"
fi

# --- cluster ------------------------------------------------------------------
if [[ "${PG_KEEP_DATA:-0}" == 1 && -f "$PG_DATA/PG_VERSION" ]]; then
  pg_log "PG_KEEP_DATA=1: reusing the cluster in $PG_DATA"
else
  if [[ -e "$PG_ROOT" ]]; then
    if [[ -f "$PG_ROOT/$PG_MARKER" ]] || [[ -z "$(ls -A "$PG_ROOT")" ]]; then
      rm -rf "$PG_ROOT"
    else
      pg_die "$PG_ROOT exists and was not made by this script; refusing to wipe it"
    fi
  fi
  mkdir -p "$PG_ROOT"
  # The postgres OS user must be able to reach $PG_ROOT.
  parent="$(dirname "$PG_ROOT")"
  while [[ "$parent" != / ]]; do chmod o+x "$parent" 2>/dev/null || true; parent="$(dirname "$parent")"; done
  touch "$PG_ROOT/$PG_MARKER"
  mkdir -p "$PG_DATA" "$PG_SOCKET_DIR" "$PG_LOG_DIR"
  chown -R "$PG_OS_USER:" "$PG_ROOT"
  chmod 700 "$PG_DATA"
  if ! pg_as_postgres "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --encoding=UTF8 --locale=C.UTF-8 \
      --auth-local=peer --auth-host=scram-sha-256 --no-instructions >"$PG_LOG_DIR/initdb.log" 2>&1; then
    cat "$PG_LOG_DIR/initdb.log" >&2
    pg_die "initdb failed"
  fi
  cat >>"$PG_DATA/postgresql.conf" <<EOF

# ---- added by deploy/postgres/start.sh (CI / development cluster) ----
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKET_DIR'
max_connections = 200
shared_buffers = 128MB
timezone = 'UTC'
log_timezone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
# Throwaway data: trade durability for speed.
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  pg_log "initialised a new cluster in $PG_DATA ($("$PG_BIN/postgres" --version))"
fi

# --- start --------------------------------------------------------------------
mkdir -p "$PG_SOCKET_DIR" "$PG_LOG_DIR"
chown "$PG_OS_USER:" "$PG_SOCKET_DIR" "$PG_LOG_DIR"
if ! pg_as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -W start >/dev/null; then
  tail -n 40 "$PG_LOG" >&2 || true
  pg_die "pg_ctl start failed"
fi

deadline=$((SECONDS + timeout_s))
until pg_isready -q -h 127.0.0.1 -p "$PG_PORT" -t 2; do
  if ((SECONDS >= deadline)) || ! pg_running; then
    echo "---- $PG_LOG (tail) ----" >&2
    tail -n 40 "$PG_LOG" >&2 || true
    "$PG_HOME/stop.sh" || true
    if ((SECONDS >= deadline)); then
      pg_die "the server did not accept connections on 127.0.0.1:$PG_PORT within ${timeout_s}s"
    fi
    pg_die "the server exited during start-up"
  fi
  sleep 0.5
done

# --- role and database (idempotent) ---------------------------------------------
pg_psql_admin -d postgres \
  -v app_user="$PG_APP_USER" -v app_password="$PG_APP_PASSWORD" -v app_db="$PG_APP_DB" <<'SQL'
SELECT format('CREATE ROLE %I', :'app_user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_user') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN SUPERUSER PASSWORD %L', :'app_user', :'app_password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'app_db', :'app_user')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'app_db') \gexec
SQL

# The application's way in: TCP on 127.0.0.1 with the password.
if ! PGPASSWORD="$PG_APP_PASSWORD" psql -X -q -At -h 127.0.0.1 -p "$PG_PORT" -U "$PG_APP_USER" -d "$PG_APP_DB" \
    -c 'SELECT 1' >/dev/null; then
  pg_die "cannot log in as $PG_APP_USER to database $PG_APP_DB over TCP"
fi
pg_log "ready on 127.0.0.1:$PG_PORT after $((SECONDS - t0))s: postgresql://$PG_APP_USER:***@127.0.0.1:$PG_PORT/$PG_APP_DB (log $PG_LOG)"
