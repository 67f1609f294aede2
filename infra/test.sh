#!/usr/bin/env bash
# The project's test command: every test, including those against DynamoDB and the Lambda
# handlers, with the moto emulator standing in for AWS.
#
#   ./infra/test.sh [cargo test arguments...]
#   ./infra/test.sh -p sluice-tests --test template    (one package: no --workspace)
#
# Installs moto (and Prefect, for the stock-client test) into virtualenvs under target/ when
# missing (needs python3 with venv/pip and PyPI), starts moto
# on 127.0.0.1:${MOTO_PORT:-5123} unless it already runs there, and stops it afterwards if it
# started it. With SLUICE_REQUIRE_AWS=1 the AWS tests fail instead of skipping when they cannot
# reach the endpoint.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

export MOTO_PORT="${MOTO_PORT:-5123}"

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
    SLUICE_PREFECT_VENV="$(SLUICE_TOOLS="$repo/target/prefect" infra/tools.sh prefect)"
    export SLUICE_PREFECT_VENV
    export SLUICE_REQUIRE_PREFECT=1
fi

# `--workspace` would override a `-p` given here, so it is added only when no package is named.
scope=(--workspace)
for arg in "$@"; do
    case "$arg" in
        --) break ;;
        -p | -p* | --package | --package=*) scope=() ;;
    esac
done

cargo test "${scope[@]}" --all-features "$@"
