#!/usr/bin/env bash
# Starts a fresh single-node Apache Kafka broker (KRaft, combined broker+controller)
# on 127.0.0.1:9092 (controller 127.0.0.1:9093), in the background, and waits until
# it serves metadata. No Docker: the jars come from Maven Central (pom.xml).
#
#   deploy/kafka/start.sh          # fresh broker, empty data
#   deploy/kafka/stop.sh           # stop it
#
# Every start wipes $KAFKA_DATA_DIR (default /tmp/returnloop-ci/kafka) and formats
# new storage, unless KAFKA_KEEP_DATA=1 and the directory is already formatted.
# A broker that this script started earlier is stopped first.
# Broker log: $KAFKA_DATA_DIR/logs/server.log. See common.sh for the other settings.
set -euo pipefail
# shellcheck source=deploy/kafka/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

timeout_s="${KAFKA_START_TIMEOUT:-90}"
t0=$SECONDS

kafka_check_java
kafka_fetch_jars

if pid="$(kafka_running_pid)"; then
  kafka_log "a broker started earlier is running (pid $pid): stopping it first"
  "$KAFKA_HOME/stop.sh"
fi

for addr in "$KAFKA_BOOTSTRAP" "$KAFKA_CONTROLLER"; do
  if kafka_port_open "$addr"; then
    ss -ltnp "sport = :${addr##*:}" >&2 || true
    kafka_die "$addr is already in use by another process (see above); stop it first"
  fi
done

# --- data directory ---------------------------------------------------------
formatted=0
if [[ "${KAFKA_KEEP_DATA:-0}" == 1 && -f "$KAFKA_DATA_DIR/data/meta.properties" ]]; then
  formatted=1
  kafka_log "KAFKA_KEEP_DATA=1: reusing the data in $KAFKA_DATA_DIR"
else
  if [[ -e "$KAFKA_DATA_DIR" ]]; then
    if [[ -f "$KAFKA_DATA_DIR/$KAFKA_MARKER" ]] || [[ -z "$(ls -A "$KAFKA_DATA_DIR")" ]]; then
      rm -rf "$KAFKA_DATA_DIR"
    else
      kafka_die "$KAFKA_DATA_DIR exists and was not made by this script; refusing to wipe it"
    fi
  fi
  mkdir -p "$KAFKA_DATA_DIR"
  touch "$KAFKA_DATA_DIR/$KAFKA_MARKER"
fi
mkdir -p "$KAFKA_LOG_DIR" "$KAFKA_DATA_DIR/data"
{
  cat "$KAFKA_HOME/server.properties"
  echo
  echo "# added by deploy/kafka/start.sh"
  echo "log.dirs=$KAFKA_DATA_DIR/data"
} >"$KAFKA_CONFIG"

if [[ "$formatted" == 0 ]]; then
  cluster_id="$(kafka_run_class kafka.tools.StorageTool random-uuid)"
  if ! kafka_run_class kafka.tools.StorageTool format --standalone \
      --cluster-id "$cluster_id" --config "$KAFKA_CONFIG" >"$KAFKA_LOG_DIR/format.log" 2>&1; then
    cat "$KAFKA_LOG_DIR/format.log" >&2
    kafka_die "formatting the storage failed"
  fi
  kafka_log "formatted storage (cluster id $cluster_id)"
fi

# --- start --------------------------------------------------------------------
# shellcheck disable=SC2086  # KAFKA_HEAP_OPTS / KAFKA_JVM_OPTS are word lists on purpose
nohup "$JAVA" ${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m} \
  -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
  -Djava.awt.headless=true ${KAFKA_JVM_OPTS:-} \
  -Dkafka.logs.dir="$KAFKA_LOG_DIR" \
  -Dlog4j2.configurationFile="$KAFKA_HOME/log4j2.xml" \
  -cp "$KAFKA_LIB/*" kafka.Kafka "$KAFKA_CONFIG" \
  >"$KAFKA_LOG_DIR/kafka.out" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$KAFKA_PID_FILE"
kafka_log "started Kafka $(kafka_version) (pid $pid), waiting up to ${timeout_s}s for it to be ready"

# --- wait until ready -------------------------------------------------------
# Ready = the process is alive, 127.0.0.1:9092 accepts connections, and a metadata
# request through the admin client lists broker 1 (it is only listed once unfenced).
show_logs() {
  echo "---- $KAFKA_LOG_DIR/kafka.out (tail) ----" >&2
  tail -n 30 "$KAFKA_LOG_DIR/kafka.out" >&2 || true
  echo "---- $KAFKA_LOG_DIR/server.log (tail) ----" >&2
  tail -n 60 "$KAFKA_LOG_DIR/server.log" >&2 || true
}
deadline=$((SECONDS + timeout_s))
while :; do
  if ! kafka_alive "$pid"; then
    wait "$pid" 2>/dev/null || true
    show_logs
    rm -f "$KAFKA_PID_FILE"
    kafka_die "the broker exited during start-up"
  fi
  # shellcheck disable=SC2016  # $1 and $KAFKA_BOOTSTRAP expand in the inner bash
  if kafka_port_open "$KAFKA_BOOTSTRAP" \
     && timeout 30 bash -c 'source "$1"; kafka_run_class org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "$KAFKA_BOOTSTRAP"' \
          _ "$KAFKA_HOME/common.sh" 2>/dev/null | grep -q "(id: 1 "; then
    break
  fi
  if ((SECONDS >= deadline)); then
    show_logs
    "$KAFKA_HOME/stop.sh" || true
    kafka_die "the broker was not ready within ${timeout_s}s"
  fi
  sleep 1
done
kafka_log "ready on $KAFKA_BOOTSTRAP after $((SECONDS - t0))s (pid $pid; log $KAFKA_LOG_DIR/server.log)"
