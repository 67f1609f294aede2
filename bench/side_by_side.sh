#!/usr/bin/env bash
# Sluice vs the Prefect server, side by side on this machine (see bench/README.md).
#
#   bench/side_by_side.sh [--smoke] [--targets sluice,prefect-sqlite,prefect-postgres]
#                         [--seconds 10] [--poll-runs 10000] [--polls 200]
#                         [--deployments 1000] [--materialise-timeout 240] [--no-build] [--out DIR]
#
# Builds the release binaries, installs Prefect 3.9.1 into target/prefect (infra/tools.sh) and,
# if missing, PostgreSQL from Debian, then runs bench/side_by_side.py, which starts each server on
# 127.0.0.1, measures, and stops everything it started on exit. `--smoke` takes about three
# minutes; `--poll-runs 2000 --deployments 300 --materialise-timeout 150` about sixteen; the
# defaults much longer (Prefect on SQLite creates runs slowly). Needs python3 with venv and pip,
# and cargo.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec python3 "$repo/bench/side_by_side.py" "$@"
