#!/usr/bin/env bash
# The browser tests drive Debian's Chromium through Playwright: Playwright's own browser
# downloads do not work on the build machines. Installs the package when it is missing and
# this runs as root with apt (as CI does); under CI=true a browser that cannot be had fails
# the run, elsewhere the browser tests skip and say why.
set -euo pipefail
chromium="${AUDIT_TEST_CHROMIUM:-/usr/bin/chromium}"
if [[ -x "$chromium" ]]; then
  exit 0
fi
if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
  echo "installing Debian's chromium for the browser tests" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
if [[ ! -x "$chromium" ]]; then
  if [[ "${CI:-}" == "true" ]]; then
    echo "CI=true but $chromium is missing and could not be installed" >&2
    exit 1
  fi
  echo "no $chromium: the browser tests will skip (apt-get install chromium)" >&2
fi
