#!/usr/bin/env bash
# Installs Debian's `prometheus` package for its `promtool` (Prometheus 2.42 on
# Debian 12), which `make check-deploy` runs, unless promtool is already there.
# The Prometheus server that comes with it is not started. Needs root.
set -euo pipefail

log() { printf '[prometheus %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if command -v promtool >/dev/null 2>&1; then
  log "promtool is already installed ($(promtool --version 2>&1 | head -n1))"
  exit 0
fi
[[ "$(id -u)" == 0 ]] || { log "ERROR: installing prometheus needs root"; exit 1; }

# The package's init script would start a server: tell invoke-rc.d not to, unless
# a policy is already in place (Debian container images have one).
policy=/usr/sbin/policy-rc.d
if [[ ! -e "$policy" ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
log "apt-get update"
apt-get update -q -o Acquire::Retries=3 >/dev/null
log "apt-get install prometheus"
apt-get install -y -q -o Acquire::Retries=3 --no-install-recommends prometheus >/dev/null
log "installed $(promtool --version 2>&1 | head -n1)"
