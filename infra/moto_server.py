"""Serve the moto AWS emulator on loopback, one request at a time, for a bounded time.

moto's own `moto_server` command serves requests on several threads, and under concurrent
optimistic-locking writes (the race tests) it can then lose updates. This launcher serves the
same WSGI application single-threaded, so each request sees the previous one's effects.

It never outlives its purpose: it exits when the process named by --parent-pid is gone, or
after --max-lifetime seconds, whichever comes first. Started by infra/moto.sh.

    python moto_server.py --port 5123 --parent-pid 4242 [--max-lifetime 10800]
"""

import argparse
import os
import signal
import sys
import threading
import time

LOOPBACK = "127.0.0.1"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    parser.add_argument(
        "--parent-pid",
        type=int,
        default=0,
        help="exit once this process no longer exists (0: watch only the lifetime)",
    )
    parser.add_argument(
        "--max-lifetime",
        type=float,
        default=3 * 60 * 60,
        help="exit after this many seconds at the latest (default: 3 hours)",
    )
    return parser.parse_args(argv)


def process_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        # It exists, it just belongs to someone else.
        return True
    return True


def watchdog(parent_pid, deadline):
    """Ends the whole process when the parent is gone or the deadline has passed."""
    while True:
        if time.monotonic() >= deadline:
            reason = "maximum lifetime reached"
            break
        if parent_pid and not process_exists(parent_pid):
            reason = f"parent process {parent_pid} is gone"
            break
        time.sleep(2)
    print(f"moto_server: {reason}, stopping", file=sys.stderr, flush=True)
    # The server loop blocks in the main thread; leave without waiting for it.
    os._exit(0)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)

    # moto builds some resource URLs (SQS queue URLs, for one) from this variable.
    os.environ.setdefault("MOTO_PORT", str(args.port))

    # Imported after the environment is set: moto reads its settings at import time.
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    def stop(signum, _frame):
        print(f"moto_server: signal {signum}, stopping", file=sys.stderr, flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    deadline = time.monotonic() + args.max_lifetime
    threading.Thread(
        target=watchdog, args=(args.parent_pid, deadline), name="watchdog", daemon=True
    ).start()

    app = DomainDispatcherApplication(create_backend_app)
    print(
        f"moto_server: serving on http://{LOOPBACK}:{args.port} single-threaded "
        f"(parent {args.parent_pid or 'none'}, at most {args.max_lifetime:.0f} s)",
        file=sys.stderr,
        flush=True,
    )
    run_simple(
        LOOPBACK,
        args.port,
        app,
        threaded=False,
        processes=1,
        use_reloader=False,
        use_debugger=False,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
