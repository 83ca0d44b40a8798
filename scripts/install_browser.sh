#!/usr/bin/env bash
# Tools for the browser and export tests (tests/browser, tests/render/test_export.py):
#   * Chromium + chromedriver (Debian/Ubuntu packages), for the headless WebGL tests;
#   * the Khronos glTF validator (npm, pinned by tools/gltf-validator/package-lock.json).
# Installs only what is missing, says what it did, and never fails the test run: without these
# tools the tests that need them are skipped, each with its reason.
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { echo "install_browser: $*"; }

# ---- Chromium and chromedriver -----------------------------------------------------------------
have_chromium=""; have_driver=""
for b in /usr/bin/chromium /usr/bin/chromium-browser /usr/bin/google-chrome; do [ -x "$b" ] && have_chromium="$b" && break; done
for d in /usr/bin/chromedriver /usr/lib/chromium/chromedriver; do [ -x "$d" ] && have_driver="$d" && break; done

if [ -n "$have_chromium" ] && [ -n "$have_driver" ]; then
    say "chromium ($have_chromium) and chromedriver ($have_driver) already installed"
elif [ "$(id -u)" != "0" ]; then
    say "chromium/chromedriver missing and not running as root: not installing (browser tests will skip)."
    say "as root: apt-get update && apt-get install -y chromium chromium-driver"
elif ! command -v apt-get >/dev/null 2>&1; then
    say "chromium/chromedriver missing and apt-get is not available: browser tests will skip"
else
    say "installing chromium and chromium-driver with apt-get"
    if DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver; then
        say "installed: $(chromium --version 2>/dev/null || echo chromium)"
    else
        say "apt-get failed (offline? not Debian?): browser tests will skip"
    fi
fi

# ---- Khronos glTF validator --------------------------------------------------------------------
validator="$here/tools/gltf-validator"
if [ -d "$validator/node_modules/gltf-validator" ]; then
    say "gltf-validator already installed in tools/gltf-validator"
elif ! command -v npm >/dev/null 2>&1; then
    say "npm not found: the glb validation test will skip (install Node.js to enable it)"
else
    say "installing gltf-validator (npm ci in tools/gltf-validator)"
    if (cd "$validator" && npm ci --no-audit --no-fund --loglevel=error); then
        say "gltf-validator installed"
    else
        say "npm ci failed (offline?): the glb validation test will skip"
    fi
fi
exit 0
