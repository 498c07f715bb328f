#!/usr/bin/env bash
# Installs Debian's Chromium (headless browser for tests/browser) and a CJK font
# (the pages' labels are Chinese-first) with apt, unless both are installed. Needs root.
# The browser tests drive /usr/bin/chromium; they never download a browser of their own.
set -euo pipefail

PACKAGES=(chromium fonts-wqy-microhei)
log() { printf '[browser] %s\n' "$*" >&2; }

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
if ((${#missing[@]} == 0)) && [[ -x /usr/bin/chromium ]]; then
  log "chromium is already installed ($(dpkg-query -W -f='${Version}' chromium))"
  exit 0
fi
[[ "$(id -u)" == 0 ]] || { log "installing ${missing[*]} needs root"; exit 1; }

export DEBIAN_FRONTEND=noninteractive
log "apt-get update"
apt-get update -q -o Acquire::Retries=3 >/dev/null
log "apt-get install ${missing[*]}"
apt-get install -y -q -o Acquire::Retries=3 --no-install-recommends "${missing[@]}" >/dev/null
log "installed chromium $(dpkg-query -W -f='${Version}' chromium)"
