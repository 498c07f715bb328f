#!/usr/bin/env bash
# Proves that the broker on 127.0.0.1:9092 works end to end with Kafka's own tools:
# creates a topic with 4 partitions, checks it has 4, produces one keyed record,
# consumes it back, deletes the topic. Exits non-zero on any failure.
set -euo pipefail
# shellcheck source=deploy/kafka/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

tool="$KAFKA_HOME/kafka-tool.sh"
bs=(--bootstrap-server "$KAFKA_BOOTSTRAP")
topic="ci-smoke-$(date +%s)-$$"
payload="smoke-$RANDOM$RANDOM"

"$tool" topics "${bs[@]}" --create --topic "$topic" --partitions 4 --replication-factor 1 >/dev/null
trap '"$tool" topics "${bs[@]}" --delete --topic "$topic" >/dev/null 2>&1 || true' EXIT

described="$("$tool" topics "${bs[@]}" --describe --topic "$topic")"
count="$(sed -n 's/.*PartitionCount:[[:space:]]*\([0-9]*\).*/\1/p' <<<"$described" | head -n1)"
[[ "$count" == 4 ]] || { echo "$described" >&2; kafka_die "topic $topic has '${count}' partitions, expected 4"; }

echo "smoke-key:$payload" | "$tool" console-producer "${bs[@]}" --topic "$topic" \
  --reader-property parse.key=true --reader-property key.separator=: \
  --producer-property acks=all >/dev/null
got="$("$tool" console-consumer "${bs[@]}" --topic "$topic" --from-beginning \
  --max-messages 1 --timeout-ms 30000 --group "ci-smoke-$$" \
  --formatter-property print.key=true --formatter-property key.separator=: 2>/dev/null || true)"
[[ "$got" == "smoke-key:$payload" ]] || kafka_die "consumed '$got', expected 'smoke-key:$payload'"

kafka_log "smoke test passed: topic with 4 partitions created, one record produced and consumed back"
