#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine: Debian's Chromium for the
# report's browser test (Playwright drives it; no browser download) and the package with its
# test extras. Called by the README's test command and by .ci/run. Run as root (or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
python -m pip install --quiet --upgrade pip
# The extras state ranges; tests/constraints.txt pins the versions CI tests (torch's CPU build).
python -m pip install --quiet -e '.[cpu,dev,torch]' -c tests/constraints.txt
