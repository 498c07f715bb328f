#!/usr/bin/env bash
# Installs Debian's PostgreSQL server (the `postgresql` package: PostgreSQL 15 on
# Debian 12) with apt, unless it is already installed. Needs root.
set -euo pipefail
# shellcheck source=deploy/postgres/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if dpkg-query -W -f='${Status}' postgresql 2>/dev/null | grep -q "install ok installed" \
   && find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' 2>/dev/null | grep -q .; then
  pg_log "postgresql is already installed ($(dpkg-query -W -f='${Version}' postgresql))"
  exit 0
fi
[[ "$(id -u)" == 0 ]] || pg_die "installing postgresql needs root"

export DEBIAN_FRONTEND=noninteractive
pg_log "apt-get update"
apt-get update -q -o Acquire::Retries=3 >/dev/null
pg_log "apt-get install postgresql"
apt-get install -y -q -o Acquire::Retries=3 --no-install-recommends postgresql postgresql-client >/dev/null
pg_log "installed postgresql $(dpkg-query -W -f='${Version}' postgresql)"
