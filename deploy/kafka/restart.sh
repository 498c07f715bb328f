#!/usr/bin/env bash
# Restarts the broker started by deploy/kafka/start.sh, keeping its data (topics,
# committed offsets): stop.sh, then start.sh with KAFKA_KEEP_DATA=1. The fault
# suite (tests/faults) uses it to restart the broker in the middle of a stream.
#
#   deploy/kafka/restart.sh            # stop (SIGTERM) and start again
#   deploy/kafka/restart.sh --down 5   # stay down 5 seconds in between
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
down_s=0
if [[ "${1:-}" == --down ]]; then
  down_s="${2:?--down takes a number of seconds}"
fi
"$here/stop.sh"
sleep "$down_s"
KAFKA_KEEP_DATA=1 "$here/start.sh"
