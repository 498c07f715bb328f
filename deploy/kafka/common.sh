# shellcheck shell=bash
# shellcheck disable=SC2034  # the variables are used by the scripts that source this file
# Shared settings and helpers for deploy/kafka/*.sh. Source it; do not run it.
#
# Environment (all optional):
#   KAFKA_DATA_DIR        where the broker keeps config, data (log.dirs), logs, pid
#                         (default /tmp/returnloop-ci/kafka)
#   KAFKA_HEAP_OPTS       broker heap (default "-Xms256m -Xmx512m")
#   KAFKA_START_TIMEOUT   seconds to wait for the broker to be ready (default 90)
#   KAFKA_STOP_TIMEOUT    seconds to wait for a clean shutdown before SIGKILL (default 30)
#   JAVA                  java binary (default $JAVA_HOME/bin/java, else java on PATH)
#   MVN                   maven binary (default mvn)

KAFKA_HOME="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA_LIB="$KAFKA_HOME/lib"
KAFKA_POM="$KAFKA_HOME/pom.xml"
KAFKA_DATA_DIR="${KAFKA_DATA_DIR:-/tmp/returnloop-ci/kafka}"
KAFKA_PID_FILE="$KAFKA_DATA_DIR/kafka.pid"
KAFKA_LOG_DIR="$KAFKA_DATA_DIR/logs"
KAFKA_CONFIG="$KAFKA_DATA_DIR/server.properties"
KAFKA_BOOTSTRAP="127.0.0.1:9092"
KAFKA_CONTROLLER="127.0.0.1:9093"
# Marker that makes a directory ours to wipe (we never rm -rf a directory without it).
KAFKA_MARKER=".returnloop-kafka-data"

if [[ -n "${JAVA:-}" ]]; then
  :
elif [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
  JAVA="$JAVA_HOME/bin/java"
else
  JAVA="java"
fi
MVN="${MVN:-mvn}"

kafka_log() { printf '[kafka %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
kafka_die() { kafka_log "ERROR: $*"; exit 1; }

# The version pinned in pom.xml (the project's single Kafka version pin).
kafka_version() {
  sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_POM" | head -n1
}

# True when something accepts TCP connections on host:port.
kafka_port_open() {
  local host="${1%:*}" port="${1##*:}"
  (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

# True while the process exists and is not a zombie (an exited child that nobody
# reaped, e.g. under a container init that does not reap, still answers kill -0).
kafka_alive() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state="$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null || true)"
  [[ "$state" != Z && "$state" != X ]]
}

# Pid of the broker started by start.sh, if it is still running (and really is it).
kafka_running_pid() {
  [[ -f "$KAFKA_PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$KAFKA_PID_FILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kafka_alive "$pid" || return 1
  # Guard against a recycled pid: it must be a JVM running kafka.Kafka on our config.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "kafka.Kafka $KAFKA_CONFIG" || return 1
  echo "$pid"
}

kafka_check_java() {
  command -v "$JAVA" >/dev/null 2>&1 || kafka_die "java not found (install openjdk-17-jre-headless or set JAVA_HOME)"
  local v major
  v="$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)"
  major="${v%%.*}"
  [[ "$major" =~ ^[0-9]+$ && "$major" -ge 17 ]] \
    || kafka_die "Kafka $(kafka_version) needs Java 17 or newer; '$JAVA' is '${v:-unknown}'"
}

# Copies the broker's jars from Maven Central into lib/ unless lib/ already holds
# the set for the current pom.xml.
kafka_fetch_jars() {
  local want have=""
  want="$(sha256sum "$KAFKA_POM" | cut -d' ' -f1)"
  [[ -f "$KAFKA_LIB/.pom.sha256" ]] && have="$(cat "$KAFKA_LIB/.pom.sha256")"
  if [[ "$want" == "$have" ]] && compgen -G "$KAFKA_LIB/kafka_2.13-*.jar" >/dev/null; then
    return 0
  fi
  command -v "$MVN" >/dev/null 2>&1 || kafka_die "maven ('$MVN') not found: it fetches the Kafka jars"
  kafka_log "fetching Kafka $(kafka_version) jars from Maven Central into $KAFKA_LIB"
  rm -rf "$KAFKA_LIB"
  local attempt
  for attempt in 1 2 3; do
    # (sed: Maven 3.8 prints colour resets even with -B -q; drop them.)
    if "$MVN" -q -B -Dstyle.color=never -f "$KAFKA_POM" dependency:copy-dependencies \
        -DoutputDirectory="$KAFKA_LIB" 2>&1 | sed -e 's/\x1b\[[0-9;]*m//g' -e '/^[[:space:]]*$/d' >&2; then
      echo "$want" >"$KAFKA_LIB/.pom.sha256"
      kafka_log "fetched $(find "$KAFKA_LIB" -name '*.jar' | wc -l) jars ($(du -sh "$KAFKA_LIB" | cut -f1))"
      return 0
    fi
    kafka_log "maven failed (attempt $attempt of 3)"
    rm -rf "$KAFKA_LIB"
    ((attempt < 3)) && sleep $((attempt * 5))
  done
  kafka_die "could not fetch the Kafka jars with maven"
}

# Runs a Kafka command-line tool class from lib/ (small heap, fast start, quiet logs).
kafka_run_class() {
  "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_HOME/tools-log4j2.xml" \
    -cp "$KAFKA_LIB/*" "$@"
}
