#!/usr/bin/env bash
# The real servers that the integration and end-to-end suites use, for developers
# (and for .ci/run's building blocks): PostgreSQL 15 on 127.0.0.1:5432 and a
# single-node Apache Kafka (KRaft) on 127.0.0.1:9092. No Docker needed.
#
#   deploy/ci-services.sh up       # install/fetch what is missing, start both (fresh, empty),
#                                  # smoke-test them, and leave them running
#   deploy/ci-services.sh down     # stop both (data and logs stay under /tmp/returnloop-ci)
#   deploy/ci-services.sh status   # what is running
#   deploy/ci-services.sh env      # the variables that point the project at them
#
# Needs root (apt-get; PostgreSQL runs as the `postgres` OS user), Java 17+ and Maven.
# Logs: /tmp/returnloop-ci/kafka/logs/server.log, /tmp/returnloop-ci/postgres/log/postgresql.log
set -euo pipefail

DEPLOY="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

print_env() {
  cat <<'EOF'
export RETURNLOOP_KAFKA_BOOTSTRAP=127.0.0.1:9092
export RETURNLOOP_DATABASE_URL=postgresql://returnloop:returnloop@127.0.0.1:5432/returnloop
# Any secret of your own, kept as long as you keep the data (.ci/run makes a random one per run):
export RETURNLOOP_WORKER_REF_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
export RETURNLOOP_ADMIN_TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
EOF
}

up() {
  "$DEPLOY/postgres/install.sh"
  "$DEPLOY/postgres/start.sh"
  if ! "$DEPLOY/kafka/start.sh"; then
    "$DEPLOY/postgres/stop.sh" || true
    return 1
  fi
  if [[ "${SKIP_SMOKE:-0}" != 1 ]]; then
    "$DEPLOY/postgres/smoke-test.sh"
    "$DEPLOY/kafka/smoke-test.sh"
  fi
  echo
  echo "PostgreSQL and Kafka are running. Point the project at them with:"
  print_env
  echo "Stop them with: deploy/ci-services.sh down"
}

down() {
  local rc=0
  "$DEPLOY/kafka/stop.sh" || rc=1
  "$DEPLOY/postgres/stop.sh" || rc=1
  return "$rc"
}

status() {
  local rc=0
  # shellcheck source=deploy/kafka/common.sh
  if pid="$(source "$DEPLOY/kafka/common.sh" && kafka_running_pid)"; then
    echo "kafka:      running (pid $pid) on 127.0.0.1:9092"
  else
    echo "kafka:      not running"; rc=3
  fi
  if pg_isready -q -h 127.0.0.1 -p "${PG_PORT:-5432}" 2>/dev/null; then
    echo "postgresql: accepting connections on 127.0.0.1:${PG_PORT:-5432}"
  else
    echo "postgresql: not running"; rc=3
  fi
  return "$rc"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  env) print_env ;;
  *)
    sed -n '2,14s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
