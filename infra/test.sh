#!/usr/bin/env bash
# The project's test command: every test, including those against DynamoDB and the Lambda
# handlers, with the moto emulator standing in for AWS.
#
#   ./infra/test.sh [cargo test arguments...]
#   ./infra/test.sh -p sluice-tests --test template    (one package: no --workspace)
#
# Installs moto (and Prefect, for the stock-client test and Prefect's published base job
# templates) into virtualenvs under the cargo target directory when missing (needs python3 with
# venv/pip and PyPI), starts moto on 127.0.0.1:${MOTO_PORT:-5123} unless it already runs there,
# and stops it afterwards if it started it. With SLUICE_REQUIRE_AWS=1 the AWS tests fail instead
# of skipping when they cannot reach the endpoint.
#
# Every test target runs even when one fails; the last line counts passed, failed and skipped
# tests. A test skips only for material that is not the project's: the real-world corpus in a
# `shared/testdata` folder beside the repository (a user's clone has none), or Prefect when
# SLUICE_SKIP_PREFECT=1.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

export MOTO_PORT="${MOTO_PORT:-5123}"
# The tools' virtualenv (moto, and boto3 for infra/aws_fixture.py), as infra/tools.sh places it.
export SLUICE_TOOLS="${SLUICE_TOOLS:-${CARGO_TARGET_DIR:-$repo/target}/tools}"

started_here=0
if ! infra/moto.sh status >/dev/null; then
    stop_emulator() {
        infra/moto.sh stop || true
    }
    trap stop_emulator EXIT
    started_here=1
fi
# Tie the emulator's life to this script, not to whoever called it.
MOTO_PARENT_PID=$$ infra/moto.sh start >/dev/null
if [ "$started_here" -eq 0 ]; then
    echo "infra/test.sh: using the emulator already running on port $MOTO_PORT" >&2
fi

export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT"
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export SLUICE_REQUIRE_AWS=1
# Credentials or a profile from the user's ~/.aws must not leak into the tests.
unset AWS_SESSION_TOKEN AWS_PROFILE

# Prefect's own client for the compatibility test (cli/tests/prefect_client.rs), in a
# virtualenv of its own. Offline, SLUICE_SKIP_PREFECT=1 skips that test instead.
if [ "${SLUICE_SKIP_PREFECT:-0}" != "1" ]; then
    SLUICE_PREFECT_VENV="$(SLUICE_TOOLS="${CARGO_TARGET_DIR:-$repo/target}/prefect" infra/tools.sh prefect)"
    export SLUICE_PREFECT_VENV
    # Prefect 2, for importing from an agent-era server (cli/tests/import.rs).
    SLUICE_PREFECT2_VENV="$(SLUICE_TOOLS="${CARGO_TARGET_DIR:-$repo/target}/prefect2" infra/tools.sh prefect2)"
    export SLUICE_PREFECT2_VENV
    export SLUICE_REQUIRE_PREFECT=1
fi

# Chromium and playwright-core for the UI test (cli/tests/ui.rs), which drives Prefect's UI
# served by Sluice. SLUICE_SKIP_BROWSER=1 skips that test instead (offline, or without root to
# install Debian's chromium).
# Without root and without Chromium installed, the browser cannot be installed here: the UI
# test is then counted as skipped, with the reason; as root (CI) a failed install fails the run.
if [ "${SLUICE_SKIP_BROWSER:-0}" != "1" ]; then
    if browser="$(infra/browser.sh)"; then
        SLUICE_CHROMIUM="$(sed -n 1p <<<"$browser")"
        SLUICE_PLAYWRIGHT_MODULES="$(sed -n 2p <<<"$browser")"
        export SLUICE_CHROMIUM SLUICE_PLAYWRIGHT_MODULES
        export SLUICE_REQUIRE_BROWSER=1
    elif [ "$(id -u)" -eq 0 ]; then
        echo "infra/test.sh: installing the browser for the UI test failed" >&2
        exit 1
    else
        echo "infra/test.sh: no Chromium and no root to install it: the UI test is skipped (apt-get install chromium, or SLUICE_SKIP_BROWSER=1 to silence this)" >&2
    fi
fi

# `--workspace` would override a `-p` given here, so it is added only when no package is named.
scope=(--workspace)
for arg in "$@"; do
    case "$arg" in
        --) break ;;
        -p | -p* | --package | --package=*) scope=() ;;
    esac
done

# Tests that cannot run record themselves here (sluice-testkit's `skip`), one line each.
skip_log="$(mktemp)"
output="$(mktemp)"
cleanup_logs() { rm -f "$skip_log" "$output"; }
trap 'cleanup_logs; if [ "$started_here" -eq 1 ]; then stop_emulator; fi' EXIT
export SLUICE_SKIP_LOG="$skip_log"

set +e
cargo test "${scope[@]}" --all-features --no-fail-fast "$@" 2>&1 | tee "$output"
status="${PIPESTATUS[0]}"
set -e

# libtest prints one "test result:" line per target; a skipped test returned early, so libtest
# counted it as passed: move it to the skipped column.
read -r passed failed ignored < <(awk '
    /^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i + 1) ~ /^passed;?$/) p += $i
            if ($(i + 1) ~ /^failed;?$/) f += $i
            if ($(i + 1) ~ /^ignored;?$/) g += $i
        }
    }
    END { print p + 0, f + 0, g + 0 }' "$output")
skipped="$(wc -l <"$skip_log")"
passed=$((passed - skipped))

if [ "$skipped" -gt 0 ]; then
    echo
    echo "skipped tests, by reason:"
    cut -f2 "$skip_log" | sort | uniq -c | sort -rn | sed 's/^/  /'
fi
if grep -q "^error: could not compile" "$output"; then
    echo "infra/test.sh: the tests did not compile (see above)" >&2
fi
echo
summary="$passed passed, $failed failed, $skipped skipped"
if [ "$ignored" -gt 0 ]; then
    summary="$summary, $ignored ignored"
fi
echo "infra/test.sh: $summary"
exit "$status"
