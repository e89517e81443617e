#!/usr/bin/env bash
# Installs Debian's Chromium and its WebDriver (chromedriver) where they are missing: the
# orchestrator's console tests drive a real headless browser with them. It fails when they cannot
# be installed, so the tests never run without a browser (they fail, not skip). Prints nothing
# on stdout; safe to run twice.
set -euo pipefail

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    if command -v apt-get >/dev/null; then
        sudo_=""
        [ "$(id -u)" = 0 ] || sudo_="sudo"
        $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >&2
    fi
fi
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    echo "chromium and chromedriver are missing and could not be installed: apt-get install chromium chromium-driver" >&2
    exit 1
fi
chromium --version >&2
chromedriver --version >&2
