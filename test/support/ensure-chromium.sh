#!/usr/bin/env sh
# The dashboard's browser test drives Debian's Chromium through playwright-core (Playwright cannot
# download a browser on these machines): `npm test` installs it when it is missing.
set -e
[ -x /usr/bin/chromium ] && exit 0
echo "test: installing Debian's chromium for the browser test"
SUDO=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y chromium >/dev/null 2>&1 || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y chromium >/dev/null; }
