#!/usr/bin/env bash
# Stops the broker started by deploy/kafka/start.sh (SIGTERM, then SIGKILL after
# KAFKA_STOP_TIMEOUT seconds, default 30). Leaves the data and logs in place.
# Does nothing, successfully, when no such broker is running.
set -euo pipefail
# shellcheck source=deploy/kafka/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

timeout_s="${KAFKA_STOP_TIMEOUT:-30}"

if ! pid="$(kafka_running_pid)"; then
  rm -f "$KAFKA_PID_FILE"
  kafka_log "no broker started by start.sh is running"
  exit 0
fi

kafka_log "stopping the broker (pid $pid)"
kill -TERM "$pid" 2>/dev/null || true
deadline=$((SECONDS + timeout_s))
while kafka_alive "$pid"; do
  if ((SECONDS >= deadline)); then
    kafka_log "no clean shutdown within ${timeout_s}s: sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 1
    break
  fi
  sleep 0.2
done
if kafka_alive "$pid"; then
  kafka_die "the broker (pid $pid) is still running"
fi
rm -f "$KAFKA_PID_FILE"
kafka_log "stopped"
