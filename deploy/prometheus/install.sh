#!/usr/bin/env bash
# Installs Debian's `prometheus` package for its `promtool` (Prometheus 2.42 on
# Debian 12) and `prometheus-alertmanager` for its `amtool` (Alertmanager 0.25),
# which `make check-deploy` runs, unless they are already there. Neither server
# that comes with them is started (Alertmanager's port, 9093, is the CI Kafka
# controller's). Needs root. Exits non-zero if either tool is missing afterwards.
set -euo pipefail

log() { printf '[prometheus %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

packages=()
command -v promtool >/dev/null 2>&1 || packages+=(prometheus)
command -v amtool >/dev/null 2>&1 || packages+=(prometheus-alertmanager)
if ((${#packages[@]} == 0)); then
  log "promtool is already installed ($(promtool --version 2>&1 | head -n1))"
  log "amtool is already installed ($(amtool --version 2>&1 | head -n1))"
  exit 0
fi
[[ "$(id -u)" == 0 ]] || { log "ERROR: installing ${packages[*]} needs root"; exit 1; }

# The packages' init scripts would start servers: tell invoke-rc.d not to, unless
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
log "apt-get install ${packages[*]}"
apt-get install -y -q -o Acquire::Retries=3 --no-install-recommends "${packages[@]}" >/dev/null
for tool in promtool amtool; do
  command -v "$tool" >/dev/null 2>&1 || { log "ERROR: $tool is still missing after the install"; exit 1; }
done
log "installed $(promtool --version 2>&1 | head -n1)"
log "installed $(amtool --version 2>&1 | head -n1)"
