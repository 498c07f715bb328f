#!/usr/bin/env bash
# A three-broker Apache Kafka cluster (KRaft, each node broker + controller) on this
# machine, from the same jars as the single broker (pom.xml, fetched by common.sh).
# For the broker-failure scenario (tests/faults/test_cluster.py, `make test-cluster`).
#
#   deploy/kafka/cluster.sh up                      # fresh cluster, empty data (reused if all 3 run)
#   deploy/kafka/cluster.sh down                    # stop all three (data and logs stay)
#   deploy/kafka/cluster.sh kill N                  # SIGKILL node N (1, 2 or 3)
#   deploy/kafka/cluster.sh start N                 # start node N again on its data
#   deploy/kafka/cluster.sh leader-of TOPIC PART    # the node id leading that partition
#   deploy/kafka/cluster.sh controller              # the node id of the active controller
#   deploy/kafka/cluster.sh run CMD [ARG...]        # up (unless running), CMD with
#       RETURNLOOP_KAFKA_BOOTSTRAP set to the cluster, then down (only if run brought
#       it up) on any exit, signals included; exits with CMD's status
#   deploy/kafka/cluster.sh status                  # which nodes run
#   deploy/kafka/cluster.sh bootstrap               # the bootstrap list, for RETURNLOOP_KAFKA_BOOTSTRAP
#
# Node N listens on 127.0.0.1:19N92 (broker) and 127.0.0.1:19N93 (controller), N-1
# in the hundreds: 19092/19093, 19192/19193, 19292/19293. They never clash with the
# dev broker on 9092/9093. Replication factor 3, min.insync.replicas 2 (topics and the
# offsets topic), unclean leader election off: one node may die, nothing is lost.
#
# Environment (all optional):
#   KAFKA_CLUSTER_DIR       work dir: nodeN/{server.properties,data,logs,kafka.pid}
#                           (default /tmp/returnloop-cluster)
#   KAFKA_CLUSTER_HEAP_OPTS heap per node (default "-Xms128m -Xmx384m")
#   KAFKA_START_TIMEOUT     seconds to wait for readiness (default 120)
#   KAFKA_STOP_TIMEOUT      seconds to wait for a clean shutdown before SIGKILL (default 10)
set -euo pipefail
# shellcheck source=deploy/kafka/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

CLUSTER_DIR="${KAFKA_CLUSTER_DIR:-/tmp/returnloop-cluster}"
CLUSTER_MARKER=".returnloop-kafka-cluster"
NODES=(1 2 3)
timeout_s="${KAFKA_START_TIMEOUT:-120}"
# Short: the last node to stop waits in vain for a controller quorum that has gone
# (throwaway data; a SIGKILLed node recovers its log on the next start anyway).
stop_timeout_s="${KAFKA_STOP_TIMEOUT:-10}"

broker_addr() { echo "127.0.0.1:$((19092 + 100 * ($1 - 1)))"; }
controller_addr() { echo "127.0.0.1:$((19093 + 100 * ($1 - 1)))"; }
node_dir() { echo "$CLUSTER_DIR/node$1"; }
bootstrap() { echo "$(broker_addr 1),$(broker_addr 2),$(broker_addr 3)"; }
voters() { echo "1@$(controller_addr 1),2@$(controller_addr 2),3@$(controller_addr 3)"; }

check_node() { [[ "${1:-}" =~ ^[123]$ ]] || kafka_die "node must be 1, 2 or 3 (got '${1:-}')"; }

# Pid of node N if it runs (and really is it: a JVM running kafka.Kafka on its config).
node_pid() {
  local dir pid
  dir="$(node_dir "$1")"
  [[ -f "$dir/kafka.pid" ]] || return 1
  pid="$(cat "$dir/kafka.pid" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kafka_alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "kafka.Kafka $dir/server.properties" || return 1
  echo "$pid"
}

write_config() {
  local n="$1" dir
  dir="$(node_dir "$n")"
  mkdir -p "$dir/data" "$dir/logs"
  cat >"$dir/server.properties" <<EOF
# Written by deploy/kafka/cluster.sh: node $n of a three-node KRaft cluster.
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$(voters)
listeners=PLAINTEXT://$(broker_addr "$n"),CONTROLLER://$(controller_addr "$n")
advertised.listeners=PLAINTEXT://$(broker_addr "$n")
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$dir/data

# Replicated: a write is acknowledged (acks=all) once 2 of the 3 replicas have it,
# and a replica that fell behind never becomes leader (no unclean election).
num.partitions=4
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
auto.create.topics.enable=false
delete.topic.enable=true
offsets.topic.replication.factor=3
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0

# Throwaway data, small machine.
log.retention.hours=24
log.segment.bytes=104857600
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
EOF
}

show_logs() {
  local dir
  dir="$(node_dir "$1")"
  echo "---- node $1: $dir/logs/kafka.out (tail) ----" >&2
  tail -n 20 "$dir/logs/kafka.out" >&2 || true
  echo "---- node $1: $dir/logs/server.log (tail) ----" >&2
  tail -n 40 "$dir/logs/server.log" >&2 || true
}

launch() {
  local n="$1" dir pid
  dir="$(node_dir "$n")"
  for addr in "$(broker_addr "$n")" "$(controller_addr "$n")"; do
    if kafka_port_open "$addr"; then
      ss -ltnp "sport = :${addr##*:}" >&2 || true
      kafka_die "$addr is already in use by another process (see above)"
    fi
  done
  # shellcheck disable=SC2086  # the heap options are a word list on purpose
  nohup "$JAVA" ${KAFKA_CLUSTER_HEAP_OPTS:--Xms128m -Xmx384m} \
    -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
    -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dkafka.logs.dir="$dir/logs" \
    -Dlog4j2.configurationFile="$KAFKA_HOME/log4j2.xml" \
    -cp "$KAFKA_LIB/*" kafka.Kafka "$dir/server.properties" \
    >"$dir/logs/kafka.out" 2>&1 </dev/null &
  pid=$!
  disown "$pid"  # a node SIGKILLed on purpose is not this shell's news
  echo "$pid" >"$dir/kafka.pid"
  kafka_log "node $n: started (pid $pid) on $(broker_addr "$n"), controller $(controller_addr "$n")"
}

# Waits until every node in "$@" runs and is listed (unfenced) by a metadata request.
wait_listed() {
  local deadline=$((SECONDS + timeout_s)) n listed missing
  while :; do
    for n in "$@"; do
      if ! node_pid "$n" >/dev/null; then
        show_logs "$n"
        kafka_die "node $n exited during start-up"
      fi
    done
    listed="$(timeout 30 bash -c 'source "$1"; kafka_run_class org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "$2"' \
      _ "$KAFKA_HOME/common.sh" "$(bootstrap)" 2>/dev/null || true)"
    missing=()
    for n in "$@"; do
      grep -q "(id: $n " <<<"$listed" || missing+=("$n")
    done
    ((${#missing[@]} == 0)) && return 0
    if ((SECONDS >= deadline)); then
      for n in "${missing[@]}"; do show_logs "$n"; done
      kafka_die "node(s) ${missing[*]} not ready within ${timeout_s}s"
    fi
    sleep 1
  done
}

up() {
  local t0=$SECONDS running=() n cluster_id
  kafka_check_java
  kafka_fetch_jars
  for n in "${NODES[@]}"; do
    node_pid "$n" >/dev/null && running+=("$n")
  done
  if ((${#running[@]} == 3)); then
    kafka_log "the cluster is already running: $(bootstrap)"
    wait_listed "${NODES[@]}"
    return 0
  fi
  ((${#running[@]} == 0)) || down
  if [[ -e "$CLUSTER_DIR" ]]; then
    if [[ -f "$CLUSTER_DIR/$CLUSTER_MARKER" ]] || [[ -z "$(ls -A "$CLUSTER_DIR")" ]]; then
      rm -rf "$CLUSTER_DIR"
    else
      kafka_die "$CLUSTER_DIR exists and was not made by this script; refusing to wipe it"
    fi
  fi
  mkdir -p "$CLUSTER_DIR"
  touch "$CLUSTER_DIR/$CLUSTER_MARKER"
  cluster_id="$(kafka_run_class kafka.tools.StorageTool random-uuid)"
  for n in "${NODES[@]}"; do
    write_config "$n"
    if ! kafka_run_class kafka.tools.StorageTool format --cluster-id "$cluster_id" \
        --config "$(node_dir "$n")/server.properties" >"$(node_dir "$n")/logs/format.log" 2>&1; then
      cat "$(node_dir "$n")/logs/format.log" >&2
      kafka_die "formatting node $n failed"
    fi
  done
  kafka_log "formatted three nodes (cluster id $cluster_id)"
  for n in "${NODES[@]}"; do launch "$n"; done
  wait_listed "${NODES[@]}"
  kafka_log "cluster of 3 ready after $((SECONDS - t0))s: $(bootstrap) (logs $CLUSTER_DIR/node*/logs/server.log)"
}

stop_node() {
  local n="$1" pid deadline
  pid="$(node_pid "$n")" || { rm -f "$(node_dir "$n")/kafka.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + stop_timeout_s))
  while kafka_alive "$pid"; do
    if ((SECONDS >= deadline)); then
      kafka_log "node $n: no clean shutdown within ${stop_timeout_s}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 1
      break
    fi
    sleep 0.2
  done
  kafka_alive "$pid" && kafka_die "node $n (pid $pid) is still running"
  rm -f "$(node_dir "$n")/kafka.pid"
  kafka_log "node $n: stopped"
}

down() {
  local n pids=()
  # All three at once: a node stopping alone would wait for the others' controller.
  for n in "${NODES[@]}"; do
    node_pid "$n" >/dev/null && { stop_node "$n" & pids+=($!); }
  done
  local rc=0 p
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  ((${#pids[@]})) || kafka_log "no cluster node is running"
  return "$rc"
}

kill_node() {
  local n="$1" pid
  check_node "$n"
  pid="$(node_pid "$n")" || kafka_die "node $n is not running"
  kill -KILL "$pid"
  while kafka_alive "$pid"; do sleep 0.1; done
  rm -f "$(node_dir "$n")/kafka.pid"
  kafka_log "node $n: SIGKILLed (pid $pid)"
}

start_node() {
  local n="$1" t0=$SECONDS
  check_node "$n"
  [[ -f "$(node_dir "$n")/data/meta.properties" ]] || kafka_die "node $n has no formatted data: run '$0 up'"
  if node_pid "$n" >/dev/null; then
    kafka_log "node $n is already running"
    return 0
  fi
  kafka_check_java
  launch "$n"
  wait_listed "$n"
  kafka_log "node $n: back after $((SECONDS - t0))s"
}

leader_of() {
  local topic="$1" partition="$2" described leader
  described="$(kafka_run_class org.apache.kafka.tools.TopicCommand --bootstrap-server "$(bootstrap)" \
    --describe --topic "$topic")"
  leader="$(awk -v p="$partition" '$0 ~ "Partition: " p "[[:space:]]" {
    for (i = 1; i <= NF; i++) if ($i == "Leader:") print $(i + 1) }' <<<"$described")"
  [[ "$leader" =~ ^-?[0-9]+$ ]] || { echo "$described" >&2; kafka_die "no leader found for $topic partition $partition"; }
  echo "$leader"
}

controller() {
  local described leader
  described="$(kafka_run_class org.apache.kafka.tools.MetadataQuorumCommand --bootstrap-server "$(bootstrap)" \
    describe --status)"
  leader="$(sed -n 's/^LeaderId:[[:space:]]*\([0-9]*\).*/\1/p' <<<"$described")"
  [[ "$leader" =~ ^[0-9]+$ ]] || { echo "$described" >&2; kafka_die "no active controller found"; }
  echo "$leader"
}

run() {
  (($# > 0)) || kafka_die "run: no command given"
  local started=0 rc=0 n
  for n in "${NODES[@]}"; do
    node_pid "$n" >/dev/null || started=1
  done
  if ((started)); then
    # Whatever happens from here on (failure, Ctrl-C, a CI time limit), the nodes go.
    trap 'trap - EXIT; kafka_log "stopping the cluster (run started it)"; down || true' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
  fi
  up
  RETURNLOOP_KAFKA_BOOTSTRAP="$(bootstrap)" "$@" || rc=$?
  return "$rc"
}

status() {
  local n pid rc=0
  for n in "${NODES[@]}"; do
    if pid="$(node_pid "$n")"; then
      echo "node $n: running (pid $pid) on $(broker_addr "$n")"
    else
      echo "node $n: not running"
      rc=3
    fi
  done
  return "$rc"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  kill) kill_node "${2:-}" ;;
  start) start_node "${2:-}" ;;
  leader-of) leader_of "${2:?topic}" "${3:?partition}" ;;
  controller) controller ;;
  run) shift; run "$@" ;;
  status) status ;;
  bootstrap) bootstrap ;;
  *)
    sed -n '2,30s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
