#!/usr/bin/env bash
# The job store's tests run a real PostgreSQL server (initdb + pg_ctl in a temp directory).
# Install it when it is missing: Debian/Ubuntu's package, as root or through sudo.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if command -v apt-get >/dev/null; then
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  # The tests start their own cluster; the distribution's default one is not needed.
  $SUDO sh -c 'command -v pg_ctlcluster >/dev/null && pg_lsclusters -h | while read v c _; do pg_ctlcluster "$v" "$c" stop || true; done' || true
else
  echo "install the PostgreSQL server (initdb, pg_ctl) to run the job store's tests" >&2
  exit 1
fi
