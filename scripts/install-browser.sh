#!/usr/bin/env bash
# Installs what the web console's browser test drives: Debian's Chromium and
# ChromeDriver (/usr/bin/chromium, /usr/bin/chromedriver). Idempotent: does nothing when
# chromedriver is already there. Needs root (or sudo) and Debian's package mirrors.
set -euo pipefail

if [ -x /usr/bin/chromedriver ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
echo "installing chromium and chromium-driver (for the console's browser test)..." >&2
$sudo apt-get update
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y chromium chromium-driver
