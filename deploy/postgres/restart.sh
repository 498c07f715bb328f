#!/usr/bin/env bash
# Restarts the cluster started by deploy/postgres/start.sh, keeping its data:
# stop.sh (fast shutdown: open connections are cut), then start.sh with
# PG_KEEP_DATA=1. The fault suite (tests/faults) uses it mid-stream.
#
#   deploy/postgres/restart.sh            # stop and start again
#   deploy/postgres/restart.sh --down 5   # stay down 5 seconds in between
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
down_s=0
if [[ "${1:-}" == --down ]]; then
  down_s="${2:?--down takes a number of seconds}"
fi
"$here/stop.sh"
sleep "$down_s"
PG_KEEP_DATA=1 "$here/start.sh"
