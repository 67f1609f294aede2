#!/usr/bin/env python3
"""Sluice and the Prefect server side by side: same machine, same run, same workloads.

Starts, one after another, `sluice server` (SQLite), the Prefect server on its default SQLite
and the Prefect server on PostgreSQL (a private cluster in a temporary directory), each on
127.0.0.1 only, runs the same workloads against each and writes the raw numbers (JSON) and a
Markdown report with the Sluice/Prefect ratios. Every process it starts is stopped on exit,
failures included. Run it through `bench/side_by_side.sh`, which documents the options.

Workloads, per server:
  1. `loadgen` create-run and set-state at 1 and 8 clients (`--seconds` each after 1 s warm-up);
  2. `sidebench poll`: `--poll-runs` runs scheduled `--poll-ahead` s ahead, then `--polls` timed
     polls (limit 10) whose horizon takes them all in;
  3. `sidebench materialise`: `--deployments` cron deployments, time until their runs exist;
  4. RSS (ps) of the server's process tree: idle after start, peak while 1-3 run, at the end;
     and the PSS of the whole service (server tree plus its database cluster, from
     /proc/PID/smaps_rollup, so memory the processes share is counted once).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RELEASE = REPO / "target" / "release"
TARGETS = ("sluice", "prefect-sqlite", "prefect-postgres")
LABELS = {
    "sluice": "Sluice (SQLite)",
    "prefect-sqlite": "Prefect 3.9.1 (SQLite)",
    "prefect-postgres": "Prefect 3.9.1 (PostgreSQL)",
}

_cleanups: list = []


def log(msg: str) -> None:
    print(f"[side-by-side {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("check", True)
    return subprocess.run(cmd, **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def stop(proc: subprocess.Popen, name: str) -> None:
    """SIGTERM to the process group the server leads, SIGKILL after 20 s."""
    if proc.poll() is not None:
        return
    log(f"stopping {name} (pid {proc.pid})")
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def tree_rss_kib(root: int) -> int:
    """RSS (KiB) of `root` and all its descendants, from one `ps` listing."""
    return sum(kib for _, kib in tree(root))


def tree(root: int) -> list[tuple[int, int]]:
    """(pid, RSS KiB) of `root` and all its descendants, from one `ps` listing."""
    out = subprocess.run(
        ["ps", "-e", "-o", "pid=,ppid=,rss="], capture_output=True, text=True, check=True
    ).stdout
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for line in out.splitlines():
        pid, ppid, kib = (int(x) for x in line.split())
        children.setdefault(ppid, []).append(pid)
        rss[pid] = kib
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in rss:
            found.append((pid, rss[pid]))
        todo.extend(children.get(pid, []))
    return found


def pss_kib(pid: int) -> int:
    """Proportional set size (KiB): each page shared by n processes counts 1/n to each, so a
    sum over a PostgreSQL cluster's backends is its real footprint (their RSS sum is not)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:  # the process ended between the listing and the read
        pass
    return 0


def service_pss_kib(roots: dict[str, int]) -> int:
    """PSS of every process of the service: the server tree and its database's."""
    return sum(pss_kib(pid) for root in roots.values() for pid, _ in tree(root))


class RssSampler:
    """Samples the RSS of process trees every `interval` s and keeps the peak per tree."""

    def __init__(self, roots: dict[str, int], interval: float = 0.5):
        self.roots, self.interval = roots, interval
        self.peak = {k: 0 for k in roots}
        self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.roots.items():
                self.peak[name] = max(self.peak[name], tree_rss_kib(pid))
            self.peak_pss = max(self.peak_pss, service_pss_kib(self.roots))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def json_line(cmd: list[str]) -> dict:
    log("$ " + " ".join(cmd))
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        log(f"failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
        return {"error": out.stderr.strip().splitlines()[0] if out.stderr.strip() else "failed"}
    line = out.stdout.strip().splitlines()[-1]
    log(line)
    return json.loads(line)


# --- PostgreSQL -----------------------------------------------------------------------------


def pg_bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


def ensure_postgres() -> Path:
    bindir = pg_bindir()
    if bindir is None:
        if os.geteuid() != 0:
            raise RuntimeError("PostgreSQL is missing: run `apt-get install -y postgresql` as root")
        log("installing PostgreSQL from Debian (apt-get install -y postgresql)")
        run(["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        bindir = pg_bindir()
        if bindir is None:
            raise RuntimeError("apt-get installed no /usr/lib/postgresql/*/bin/pg_ctl")
    return bindir


class Postgres:
    """A private cluster in `workdir`, on 127.0.0.1:`port`, run as the `postgres` user when
    this script runs as root (the server refuses to run as root)."""

    def __init__(self, workdir: Path):
        self.bindir = ensure_postgres()
        self.dir = workdir / "pg"
        self.port = free_port()
        self.as_user: list[str] = []
        self.dir.mkdir()
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            os.chmod(workdir, 0o755)
        self.data = self.dir / "data"

    def _pg(self, tool: str, *args: str, **kw) -> subprocess.CompletedProcess:
        return run([*self.as_user, str(self.bindir / tool), *args], **kw)

    def start(self) -> str:
        log(f"PostgreSQL: initdb and start on 127.0.0.1:{self.port}")
        self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "prefect", "-E", "UTF8",
                 stdout=subprocess.DEVNULL)
        _cleanups.append(self.stop)
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c max_connections=200"
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-o", opts,
                 "-w", "-t", "60", "start", stdout=subprocess.DEVNULL)
        self._pg("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "prefect", "prefect")
        return f"postgresql+asyncpg://prefect@127.0.0.1:{self.port}/prefect"

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().splitlines()[0])

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            log("stopping PostgreSQL")
            self._pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop",
                     stdout=subprocess.DEVNULL, check=False)

    def version(self) -> str:
        out = subprocess.run([str(self.bindir / "postgres"), "--version"], capture_output=True,
                             text=True)
        return out.stdout.strip()


# --- servers --------------------------------------------------------------------------------


def start_server(name: str, workdir: Path, prefect_venv: Path, pg_url: str | None):
    """Starts one server; returns (process, api url)."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    logf = open(workdir / f"{name}.log", "w")
    if name == "sluice":
        cmd = [str(RELEASE / "sluice"), "server", "start", "--host", "127.0.0.1", "--port",
               str(port), "--db", str(workdir / "sluice.db")]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        timeout = 30
    else:
        home = workdir / f"{name}-home"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                   PREFECT_UI_ENABLED="false", PREFECT_SERVER_UI_ENABLED="false")
        if pg_url:
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = pg_url
        cmd = [str(prefect_venv / "bin" / "prefect"), "server", "start", "--host", "127.0.0.1",
               "--port", str(port)]
        timeout = 120
    log(f"starting {name} on 127.0.0.1:{port}")
    t = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT,
                            start_new_session=True)
    _cleanups.append(lambda: stop(proc, name))
    wait_http(f"{api}/health", timeout, proc)
    started = time.monotonic() - t
    log(f"{name} answers after {started:.1f} s")
    return proc, api, started


def bench_target(name: str, args, workdir: Path, prefect_venv: Path, pg: Postgres | None) -> dict:
    pg_url = pg.start() if pg is not None else None
    proc, api, started = start_server(name, workdir, prefect_venv, pg_url)
    res: dict = {"target": name, "startup_s": round(started, 1)}
    roots = {"server": proc.pid}
    if pg is not None:
        roots["postgres"] = pg.postmaster_pid()
    time.sleep(args.settle)
    res["rss_idle_kib"] = {k: tree_rss_kib(p) for k, p in roots.items()}
    res["pss_idle_kib"] = {"service": service_pss_kib(roots)}
    log(f"{name} idle RSS {res['rss_idle_kib']}, service PSS {res['pss_idle_kib']}")

    load = [str(RELEASE / "loadgen"), "--api", api, "--seconds", str(args.seconds)]
    side = [str(RELEASE / "sidebench"), "--api", api]
    with RssSampler(roots) as sampler:
        for scenario in ("create-run", "set-state"):
            for clients in (1, 8):
                key = f"{scenario}-{clients}"
                res[key] = json_line(load + ["--scenario", scenario, "--clients", str(clients)])
        res["rss_load_kib"] = dict(sampler.peak)
        res["pss_load_kib"] = {"service": sampler.peak_pss}
        # Prefect on SQLite gets slower, not faster, with more writers (locked database).
        writers = args.sqlite_writers if name == "prefect-sqlite" else None
        res["poll"] = json_line(side + [
            "poll", "--runs", str(args.poll_runs), "--polls", str(args.polls),
            "--ahead-seconds", str(args.poll_ahead),
            "--seed-clients", str(writers or args.seed_clients)])
        res["materialise"] = json_line(side + [
            "materialise", "--deployments", str(args.deployments), "--cron", args.cron,
            "--expect-per-deployment", str(args.expect_per_deployment),
            "--create-clients", str(writers or args.create_clients),
            "--timeout-s", str(args.materialise_timeout)])
        res["rss_peak_kib"] = dict(sampler.peak)
        res["pss_peak_kib"] = {"service": sampler.peak_pss}
    res["rss_end_kib"] = {k: tree_rss_kib(p) for k, p in roots.items()}
    stop(proc, name)
    if pg is not None:
        pg.stop()
    return res


# --- report ---------------------------------------------------------------------------------


def get(res: dict, *path):
    for p in path:
        if not isinstance(res, dict) or res.get(p) is None:
            return None
        res = res[p]
    return res


METRICS = [
    # (label, path, higher is better, unit)
    ("create_flow_run throughput, 1 client", ("create-run-1", "throughput_per_s"), True, "req/s"),
    ("create_flow_run throughput, 8 clients", ("create-run-8", "throughput_per_s"), True, "req/s"),
    ("create_flow_run p99, 1 client", ("create-run-1", "p99_ms"), False, "ms"),
    ("create_flow_run p99, 8 clients", ("create-run-8", "p99_ms"), False, "ms"),
    ("set_state throughput, 1 client", ("set-state-1", "throughput_per_s"), True, "req/s"),
    ("set_state throughput, 8 clients", ("set-state-8", "throughput_per_s"), True, "req/s"),
    ("set_state p99, 1 client", ("set-state-1", "p99_ms"), False, "ms"),
    ("set_state p99, 8 clients", ("set-state-8", "p99_ms"), False, "ms"),
    ("get_scheduled_flow_runs p50", ("poll", "p50_ms"), False, "ms"),
    ("get_scheduled_flow_runs p99", ("poll", "p99_ms"), False, "ms"),
    ("materialisation time", ("materialise", "materialised_seconds"), False, "s"),
    ("RSS idle (server tree)", ("rss_idle_kib", "server"), False, "MiB"),
    ("RSS under load (server tree, peak)", ("rss_load_kib", "server"), False, "MiB"),
    ("RSS peak, whole run (server tree)", ("rss_peak_kib", "server"), False, "MiB"),
    ("PSS idle (service: server + database)", ("pss_idle_kib", "service"), False, "MiB"),
    ("PSS under load (service, peak)", ("pss_load_kib", "service"), False, "MiB"),
    ("PSS peak, whole run (service)", ("pss_peak_kib", "service"), False, "MiB"),
]


def fmt(v, unit: str) -> str:
    if v is None:
        return "n/a"
    if unit == "MiB":
        return f"{v / 1024:.0f}"
    if unit == "req/s":
        return f"{v:,.0f}"
    if isinstance(v, float) and v < 100:
        return f"{v:.2f}"
    return f"{v:,.0f}"


def ratio(s, p, higher_better: bool) -> str:
    """Sluice relative to Prefect: `N×` as many (higher is better) or Sluice's value as a
    fraction of Prefect's (lower is better, shown also as 1/N)."""
    if s is None or p is None or s == 0 or p == 0:
        return "n/a"
    if higher_better:
        return f"{s / p:.1f}×"
    return f"{s / p:.3f} (1/{p / s:.0f})" if p / s >= 2 else f"{s / p:.2f}"


def report(results: dict, meta: dict) -> str:
    names = [t for t in TARGETS if t in results]
    lines = []
    lines.append("| metric | " + " | ".join(LABELS[n] for n in names) + " |")
    lines.append("|---|" + "---|" * len(names))
    for label, path, _, unit in METRICS:
        cells = [fmt(get(results[n], *path), unit) for n in names]
        lines.append(f"| {label} ({unit}) | " + " | ".join(cells) + " |")
    raw = "\n".join(lines)

    prefects = [n for n in ("prefect-sqlite", "prefect-postgres") if n in results]
    ratios = []
    if "sluice" in results and prefects:
        head = ["metric"] + [f"vs {LABELS[n]}" for n in prefects] + ["vs the faster Prefect"]
        ratios.append("| " + " | ".join(head) + " |")
        ratios.append("|---|" + "---|" * (len(head) - 1))
        for label, path, higher, unit in METRICS:
            s = get(results["sluice"], *path)
            vals = [get(results[n], *path) for n in prefects]
            cells = [ratio(s, v, higher) for v in vals]
            known = [v for v in vals if v]
            best = (max(known) if higher else min(known)) if known else None
            cells.append(ratio(s, best, higher))
            ratios.append(f"| {label} | " + " | ".join(cells) + " |")
    return raw, "\n".join(ratios)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes: 2 s loadgen, 300 runs, 50 polls, 50 deployments (about 3 minutes)")
    ap.add_argument("--targets", default=",".join(TARGETS),
                    help=f"comma-separated subset of {','.join(TARGETS)}")
    ap.add_argument("--seconds", type=int, default=10, help="loadgen seconds per measurement")
    ap.add_argument("--poll-runs", type=int, default=10_000)
    ap.add_argument("--polls", type=int, default=200)
    ap.add_argument("--poll-ahead", type=int, default=3600,
                    help="schedule the poll's runs this many seconds ahead (0: due now; due "
                    "runs keep Prefect's late-runs service rewriting them while it seeds)")
    ap.add_argument("--seed-clients", type=int, default=4)
    ap.add_argument("--deployments", type=int, default=1_000)
    ap.add_argument("--cron", default="* * * * *")
    ap.add_argument("--expect-per-deployment", type=int, default=60)
    ap.add_argument("--create-clients", type=int, default=4)
    ap.add_argument("--sqlite-writers", type=int, default=1,
                    help="seed and create clients against Prefect on SQLite")
    ap.add_argument("--materialise-timeout", type=int, default=240)
    ap.add_argument("--settle", type=float, default=5.0,
                    help="seconds between a server answering and the idle RSS reading")
    ap.add_argument("--no-build", action="store_true", help="use the existing release binaries")
    ap.add_argument("--out", type=Path, help="directory for results.json and report.md "
                    "(default: target/side-by-side/<UTC time> in the repository)")
    ap.add_argument("--keep", action="store_true", help="keep the servers' working directory")
    args = ap.parse_args()
    if args.smoke:
        args.seconds, args.poll_runs, args.polls = 2, 300, 50
        args.deployments, args.materialise_timeout, args.settle = 50, 90, 2.0
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    for t in targets:
        if t not in TARGETS:
            ap.error(f"unknown target {t}")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="sluice-side-by-side-"))
    out = args.out or REPO / "target" / "side-by-side" / time.strftime("%Y%m%dT%H%M%SZ",
                                                                        time.gmtime())
    out.mkdir(parents=True, exist_ok=True)
    try:
        if not args.no_build:
            log("cargo build --release -p sluice-cli -p sluice-bench")
            run(["cargo", "build", "--release", "-p", "sluice-cli", "-p", "sluice-bench"],
                cwd=REPO)
        prefect_venv = Path("/nonexistent")
        if any(t.startswith("prefect") for t in targets):
            env = {**os.environ, "SLUICE_TOOLS": str(REPO / "target" / "prefect")}
            prefect_venv = Path(run([str(REPO / "infra" / "tools.sh"), "prefect"], env=env,
                                    capture_output=True, text=True).stdout.strip())
        meta = {
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                     capture_output=True, text=True).stdout.strip(),
            "dirty": bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                         cwd=REPO, capture_output=True, text=True).stdout.strip()),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cpus": os.cpu_count(),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        }
        results: dict = {}
        for t in targets:
            pg = Postgres(workdir) if t == "prefect-postgres" else None
            if pg is not None:
                meta["postgres"] = pg.version()
            results[t] = bench_target(t, args, workdir, prefect_venv, pg)
            (out / "results.json").write_text(json.dumps({"meta": meta, "results": results},
                                                         indent=1))
        raw, ratios = report(results, meta)
        text = (f"Commit `{meta['commit']}`{' (uncommitted changes)' if meta['dirty'] else ''}, "
                f"{meta['date']}, {meta['cpus']} CPUs. {meta.get('postgres', '')}\n\n"
                f"{raw}\n\nSluice/Prefect:\n\n{ratios}\n")
        (out / "report.md").write_text(text)
        print(text)
        log(f"results in {out}/results.json and {out}/report.md")
        return 0
    finally:
        for f in reversed(_cleanups):
            try:
                f()
            except Exception as e:  # keep stopping the others
                log(f"cleanup: {e}")
        if args.keep:
            log(f"working directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
