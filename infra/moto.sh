#!/usr/bin/env bash
# The local AWS emulator (moto server) for the integration tests.
#
#   infra/moto.sh start     install moto when missing, start it, print the export line
#   infra/moto.sh stop      stop the emulator this script started
#   infra/moto.sh status    say whether it runs (exit 0 when it does, 3 when not)
#
#   eval "$(infra/moto.sh start)"      # sets AWS_ENDPOINT_URL in the calling shell
#
# It listens on 127.0.0.1:${MOTO_PORT:-5123}, serves one request at a time (the race tests need
# that), and stops by itself when the process that started it exits (the caller of this script,
# or $MOTO_PARENT_PID) or after $MOTO_MAX_LIFETIME seconds (default 3 hours). Its pid file and
# log are target/moto-PORT.pid and target/moto-PORT.log. Messages go to stderr; only the export
# line goes to stdout.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
port="${MOTO_PORT:-5123}"
endpoint="http://127.0.0.1:$port"
pid_file="$repo/target/moto-$port.pid"
log_file="$repo/target/moto-$port.log"

say() { echo "infra/moto.sh: $*" >&2; }

# The pid from the pid file when that process is alive and is our launcher, else nothing.
running_pid() {
    [ -f "$pid_file" ] || return 0
    local pid
    pid="$(cat "$pid_file" 2>/dev/null || true)"
    case "$pid" in '' | *[!0-9]*) return 0 ;; esac
    if kill -0 "$pid" 2>/dev/null && ps -p "$pid" -o args= 2>/dev/null | grep -q moto_server.py; then
        echo "$pid"
    fi
}

# True when something answers HTTP on the port.
answers() {
    "$python" - "$endpoint" <<'EOF'
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1] + "/moto-api/", timeout=2).close()
except urllib.error.HTTPError:
    pass  # an HTTP error is still an answer
except Exception:
    sys.exit(1)
EOF
}

start() {
    local tools
    tools="$("$repo/infra/tools.sh" moto)"
    python="$tools/bin/python"
    mkdir -p "$repo/target"

    local pid
    pid="$(running_pid)"
    if [ -n "$pid" ]; then
        say "already running (pid $pid) on $endpoint"
        echo "export AWS_ENDPOINT_URL=$endpoint"
        return 0
    fi
    if answers; then
        say "something that is not ours already answers on $endpoint; set MOTO_PORT to another port"
        return 1
    fi

    local parent="${MOTO_PARENT_PID:-$PPID}"
    nohup "$python" "$repo/infra/moto_server.py" \
        --port "$port" \
        --parent-pid "$parent" \
        --max-lifetime "${MOTO_MAX_LIFETIME:-10800}" \
        >"$log_file" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$pid_file"

    local waited=0
    until answers; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$pid_file"
            say "moto exited during start-up; its log ($log_file) ends with:"
            tail -n 20 "$log_file" >&2 || true
            return 1
        fi
        if [ "$waited" -ge 300 ]; then
            kill "$pid" 2>/dev/null || true
            rm -f "$pid_file"
            say "moto did not answer on $endpoint within 30 s"
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    say "started (pid $pid, watching parent $parent) on $endpoint"
    echo "export AWS_ENDPOINT_URL=$endpoint"
}

stop() {
    local pid
    pid="$(running_pid)"
    if [ -z "$pid" ]; then
        rm -f "$pid_file"
        say "not running on port $port"
        return 0
    fi
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pid_file"
    say "stopped (pid $pid)"
}

status() {
    local pid
    pid="$(running_pid)"
    if [ -n "$pid" ]; then
        echo "moto is running (pid $pid) on $endpoint"
        return 0
    fi
    echo "moto is not running on port $port"
    return 3
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *)
        echo "usage: infra/moto.sh start|stop|status" >&2
        exit 2
        ;;
esac
