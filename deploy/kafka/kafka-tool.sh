#!/usr/bin/env bash
# Runs a Kafka command-line tool from deploy/kafka/lib (the same jars as the broker),
# like the kafka-*.sh scripts of the Kafka distribution:
#
#   deploy/kafka/kafka-tool.sh topics --bootstrap-server 127.0.0.1:9092 --list
#   deploy/kafka/kafka-tool.sh consumer-groups --bootstrap-server 127.0.0.1:9092 --describe --all-groups
#   deploy/kafka/kafka-tool.sh console-consumer --bootstrap-server 127.0.0.1:9092 --topic T --from-beginning
#   deploy/kafka/kafka-tool.sh console-producer --bootstrap-server 127.0.0.1:9092 --topic T
#   deploy/kafka/kafka-tool.sh api-versions --bootstrap-server 127.0.0.1:9092
#   deploy/kafka/kafka-tool.sh metadata-quorum --bootstrap-server 127.0.0.1:9092 describe --status
#   deploy/kafka/kafka-tool.sh storage random-uuid
#   deploy/kafka/kafka-tool.sh org.example.SomeClass ...   # any class on the class path
set -euo pipefail
# shellcheck source=deploy/kafka/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [[ $# -lt 1 ]]; then
  sed -n '2,13s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
fi
tool="$1"
shift
case "$tool" in
  topics) cls=org.apache.kafka.tools.TopicCommand ;;
  consumer-groups) cls=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
  console-consumer) cls=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
  console-producer) cls=org.apache.kafka.tools.ConsoleProducer ;;
  api-versions) cls=org.apache.kafka.tools.BrokerApiVersionsCommand ;;
  metadata-quorum) cls=org.apache.kafka.tools.MetadataQuorumCommand ;;
  get-offsets) cls=org.apache.kafka.tools.GetOffsetShell ;;
  delete-records) cls=org.apache.kafka.tools.DeleteRecordsCommand ;;
  configs) cls=org.apache.kafka.tools.ConfigCommand ;;
  features) cls=org.apache.kafka.tools.FeatureCommand ;;
  storage) cls=kafka.tools.StorageTool ;;
  *.*) cls="$tool" ;;
  *) kafka_die "unknown tool '$tool' (run without arguments for the list)" ;;
esac

kafka_check_java
kafka_fetch_jars
kafka_run_class "$cls" "$@"
