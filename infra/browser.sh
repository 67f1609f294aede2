#!/usr/bin/env bash
# Installs what the UI test (cli/tests/ui.rs) drives Prefect's UI with: Debian's Chromium, when
# /usr/bin/chromium is missing (apt-get; needs root), and playwright-core from npm at a pinned
# version into browser/ in the cargo target directory (no browser download: Playwright drives
# the system Chromium). Prints the Chromium path and the node_modules folder, one per line.
#
#   infra/browser.sh
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${CARGO_TARGET_DIR:-$repo/target}/browser"
# The pin. Bump it here and nowhere else.
playwright="playwright-core@1.64.1"

apt_install() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "infra/browser.sh: $* is missing and installing it needs root (apt-get install $*)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "$@" >&2 \
        || { apt-get update >&2 && apt-get install -y --no-install-recommends "$@" >&2; }
}

if [ ! -x /usr/bin/chromium ]; then
    echo "infra/browser.sh: installing Debian's chromium" >&2
    apt_install chromium
fi
if ! command -v npm >/dev/null; then
    echo "infra/browser.sh: installing Debian's nodejs and npm" >&2
    apt_install nodejs npm
fi

mkdir -p "$dir"
exec 9>"$dir.lock"
flock 9
if [ ! -e "$dir/.installed-$playwright" ]; then
    echo "infra/browser.sh: installing $playwright" >&2
    (cd "$dir" && npm install --no-audit --no-fund --silent "$playwright" >&2)
    touch "$dir/.installed-$playwright"
fi

echo /usr/bin/chromium
echo "$dir/node_modules"
