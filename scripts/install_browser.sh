#!/usr/bin/env bash
# Headless Chromium for the browser tests (tests/browser) and `make screenshots`: Debian's `chromium`,
# installed only when no Chromium is on PATH (a no-op otherwise). Not part of `make setup`: without it
# the browser tests skip with a reason; .ci/run installs it so CI runs them.
set -euo pipefail
for name in chromium chromium-browser google-chrome; do
  command -v "$name" >/dev/null 2>&1 && exit 0
done
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_browser: no apt-get here; install Chromium yourself (or set SHAPPRUNE_CHROMIUM=/path/to/chrome)" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
echo "install_browser: apt-get install chromium (one-off)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core \
  >/dev/null
command -v chromium >/dev/null
