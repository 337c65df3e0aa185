"""Real HTTP against gunicorn: the example app served by 1 and 2 workers, concurrent posts.

Command (from the repository root, with ``pip install -e '.[examples]'``, which brings gunicorn)::

    python benchmarks/bench_http.py [--workers 1,2] [--threads 8] [--concurrency 16]
                                    [--requests 5000] [--duration 60] [--warmup 200] [--json]

The database runs in its own process: ``python -m secantus --standalone`` on a free
port and a temporary directory (durable: journal on), or the server at ``MONGODB_URI``
when that is set. For each worker count, in turn, it:

1. provisions a new database (``bench_http_w<N>_<pid>``) with one source like the
   example's demo source (required ``first_name`` and ``email``, dedupe on ``email`` and
   ``mobile``);
2. starts ``gunicorn -w N -k gthread --threads T -b 127.0.0.1:PORT
   'examples.wsgi:create_app()'`` (the documented production command, the client made in
   each worker after the fork; ``--no-control-socket`` so runs side by side do not share
   gunicorn's control socket) on a free port;
3. posts ``--warmup`` leads (not measured: the workers boot, connect and cache the
   source), then ``--requests`` leads or for ``--duration`` seconds, whichever ends
   first, from ``--concurrency`` client threads, each with its own keep-alive HTTP/1.1
   connection (``http.client``), each post a new lead (new email, mobile, transaction id);
4. stops gunicorn (SIGTERM: graceful) and checks that the leads collection holds exactly
   the posts answered ``201`` ``accept``.

Printed per worker count: requests, seconds, req/s (completed posts / wall time),
p50/p99 latency in ms as the client saw it, errors (anything but ``201`` ``accept``,
including failed connections: must be 0), the stored count against the accepted one,
and the cores each side used while measured (CPU seconds / wall seconds, from /proc:
the database process, gunicorn's master and workers, this client, and the whole
machine, whatever else runs on it).
The load generator runs on the same machine (and, on a 2-core machine, competes with
gunicorn and the database for the cores). Only 127.0.0.1 (or ``MONGODB_URI``) is
contacted; every loop is bounded by ``--requests`` and ``--duration``. Exit code 1 if
any post failed or a stored count is off.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

from processes import (
    HOST,
    child_env,
    children,
    cpu_seconds,
    free_port,
    http_lead,
    machine_busy_seconds,
    secantus_process,
    stop,
    wait_for_port,
)

ROOT = Path(__file__).resolve().parent.parent
MAX_REQUESTS = 1_000_000
MAX_DURATION = 3600.0


@contextmanager
def database_server(tmp: Path) -> Iterator[tuple[str, str, int | None]]:
    """(uri, what, pid): ``MONGODB_URI``, else SecantusDB started standalone in its own process."""
    uri = os.environ.get("MONGODB_URI")
    if uri:
        yield uri, "MONGODB_URI", None
        return
    with secantus_process(tmp) as server:
        yield server


def provision(uri: str, name: str) -> tuple[str, str]:
    """A source like the example's demo source, in a new database ``name``: (id, api key)."""
    from pymongo import MongoClient

    from pingtree_leads import create_source

    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=10_000)
    try:
        client.drop_database(name)
        source = create_source(client[name], "HTTP benchmark", required_fields=["first_name", "email"],
                               dedupe_fields=["email", "mobile"])
        return source.id, source.api_key
    finally:
        client.close()


def stored_leads(uri: str, name: str, drop: bool) -> int:
    from pymongo import MongoClient

    from pingtree_leads.settings import Settings

    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=10_000)
    try:
        count = int(client[name][Settings.leads_collection].count_documents({}))
        if drop:
            client.drop_database(name)
        return count
    finally:
        client.close()


@contextmanager
def gunicorn(uri: str, name: str, workers: int, threads: int, log: IO[str]) -> Iterator[tuple[int, int]]:
    """The documented command on a free port; stopped gracefully (SIGTERM) at the end."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "--no-control-socket", "-w", str(workers), "-k", "gthread",
               "--threads", str(threads), "-b", f"{HOST}:{port}", "examples.wsgi:create_app()"]
    process = subprocess.Popen(command, cwd=ROOT, env=child_env(MONGODB_URI=uri, PINGTREE_DB=name),
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process, 60, Path(log.name))
        yield port, process.pid
    finally:
        code = stop(process, signal.SIGTERM)
        if code != 0:
            raise RuntimeError(f"gunicorn exited with {code}; its log: {log.name}")


def lead_body(n: int) -> bytes:
    return http_lead(n, "http")


class Load:
    """``concurrency`` threads, each with a keep-alive connection, posting new leads until a bound."""

    def __init__(self, port: int, source_id: str, api_key: str, first: int) -> None:
        self.port = port
        self.path = f"/api/lead/create/{source_id}"
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self.next = first
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.accepted = 0
        self.errors: list[str] = []

    def _take(self, limit: int, deadline: float) -> int | None:
        with self.lock:
            if self.next >= limit or time.monotonic() >= deadline:
                return None
            n = self.next
            self.next += 1
            return n

    def _client(self, limit: int, deadline: float) -> None:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=30)
        latencies: list[float] = []
        accepted = 0
        errors: list[str] = []
        try:
            while (n := self._take(limit, deadline)) is not None:
                started = time.perf_counter()
                try:
                    connection.request("POST", self.path, body=lead_body(n), headers=self.headers)
                    response = connection.getresponse()
                    payload = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    errors.append(f"post {n}: {type(exc).__name__}: {exc}")
                    connection.close()
                    connection = http.client.HTTPConnection(HOST, self.port, timeout=30)
                    continue
                latencies.append(time.perf_counter() - started)
                try:
                    status = json.loads(payload).get("data", {}).get("lead_status")
                except ValueError:
                    status = None
                if response.status == 201 and status == "accept":
                    accepted += 1
                else:
                    errors.append(f"post {n}: HTTP {response.status} {status!r}")
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = http.client.HTTPConnection(HOST, self.port, timeout=30)
        finally:
            connection.close()
            with self.lock:
                self.latencies.extend(latencies)
                self.accepted += accepted
                self.errors.extend(errors)

    def run(self, requests: int, duration: float, concurrency: int) -> float:
        """Post ``requests`` leads (or for ``duration`` s); returns the wall time."""
        limit = self.next + requests
        started = time.monotonic()
        deadline = started + duration
        threads = [threading.Thread(target=self._client, args=(limit, deadline)) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=duration + 60)  # every post times out after 30 s: bounded
        return time.monotonic() - started


def measure(uri: str, db_pid: int | None, workers: int, args: argparse.Namespace, tmp: Path,
            drop: bool) -> dict[str, Any]:
    name = f"bench_http_w{workers}_{os.getpid()}"
    source_id, api_key = provision(uri, name)
    with open(tmp / f"gunicorn-w{workers}.log", "w") as log, \
            gunicorn(uri, name, workers, args.threads, log) as (port, master):
        warm = Load(port, source_id, api_key, first=0)
        warm.run(args.warmup, args.duration, args.concurrency)
        load = Load(port, source_id, api_key, first=args.warmup)
        # CPU used during the measured phase, in cores (CPU seconds / wall seconds).
        groups = {"database": [db_pid] if db_pid else [], "gunicorn": [master, *children(master)]}
        before = {k: cpu_seconds(v) if v else None for k, v in groups.items()}
        before["machine"] = machine_busy_seconds()
        client_before = time.process_time()
        seconds = load.run(args.requests, args.duration, args.concurrency)
        client_cpu = time.process_time() - client_before
        after = {k: cpu_seconds(v) if v else None for k, v in groups.items()}
        after["machine"] = machine_busy_seconds()
    cores: dict[str, float | None] = {}
    for key, start in before.items():
        end = after[key]
        cores[key] = round((end - start) / seconds, 2) if start is not None and end is not None and seconds else None
    cores["client"] = round(client_cpu / seconds, 2) if seconds else None
    stored = stored_leads(uri, name, drop)
    accepted = warm.accepted + load.accepted
    times = sorted(load.latencies)
    done = len(times)
    fork_warnings = (tmp / f"gunicorn-w{workers}.log").read_text(errors="replace").count("opened before fork")
    return {
        "workers": workers, "threads": args.threads, "concurrency": args.concurrency,
        "requests": done, "seconds": round(seconds, 2), "rps": round(done / seconds, 1) if seconds else 0.0,
        "p50_ms": round(statistics.median(times) * 1000, 2) if times else None,
        "p99_ms": round(times[min(done - 1, int(done * 0.99))] * 1000, 2) if times else None,
        "errors": len(warm.errors) + len(load.errors), "error_samples": (warm.errors + load.errors)[:5],
        "accepted": accepted, "stored": stored, "stored_ok": stored == accepted, "fork_warnings": fork_warnings,
        "cores": cores,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--workers", default="1,2", help="gunicorn worker counts, in turn; default 1,2")
    parser.add_argument("--threads", type=int, default=8, help="gthread threads per worker; default 8")
    parser.add_argument("--concurrency", type=int, default=16, help="client threads (connections); default 16")
    parser.add_argument("--requests", type=int, default=5000, help="measured posts per worker count; default 5,000")
    parser.add_argument("--duration", type=float, default=60.0,
                        help="at most this many seconds of posting per phase; default 60")
    parser.add_argument("--warmup", type=int, default=200, help="posts before measuring (stored, not timed)")
    parser.add_argument("--json", action="store_true", help="the results as JSON on stdout, the table on stderr")
    args = parser.parse_args(argv)
    try:
        counts = [int(part) for part in args.workers.split(",") if part.strip()]
    except ValueError:
        parser.error("--workers takes worker counts separated by commas, e.g. 1,2")
    if not counts or not all(1 <= c <= 16 for c in counts):
        parser.error("--workers: each count from 1 to 16")
    if not 1 <= args.requests <= MAX_REQUESTS or not 0 <= args.warmup <= MAX_REQUESTS:
        parser.error(f"--requests from 1 and --warmup from 0, each at most {MAX_REQUESTS:,}")
    if not 0 < args.duration <= MAX_DURATION or not 1 <= args.concurrency <= 256 or not 1 <= args.threads <= 256:
        parser.error(f"--duration in (0, {MAX_DURATION:g}], --concurrency and --threads from 1 to 256")

    results: list[dict[str, Any]] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ptl-http-")))
        uri, what, db_pid = stack.enter_context(database_server(tmp))
        for workers in counts:
            results.append(measure(uri, db_pid, workers, args, tmp, drop=True))

    out = sys.stderr if args.json else sys.stdout
    print(f"database: {what}; gunicorn -k gthread --threads {args.threads}; {args.concurrency} client "
          f"connections (keep-alive); each post a new lead", file=out)
    print(f"{'workers':>7} {'requests':>8} {'seconds':>8} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
          f"{'stored/accepted':>17}   cores used: database gunicorn client machine", file=out)

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    for r in results:
        check = f"{r['stored']}/{r['accepted']} {'ok' if r['stored_ok'] else 'OFF'}"
        c = r["cores"]
        print(f"{r['workers']:>7} {r['requests']:>8} {r['seconds']:>8.2f} {r['rps']:>7.1f} {r['p50_ms']:>7.2f} "
              f"{r['p99_ms']:>7.2f} {r['errors']:>6} {check:>17}   {fmt(c['database']):>19} "
              f"{fmt(c['gunicorn']):>8} {fmt(c['client']):>6} {fmt(c['machine']):>7}", file=out)
        for sample in r["error_samples"]:
            print(f"        {sample}", file=out)
    if len(results) > 1:
        print(f"req/s {results[-1]['workers']} workers / {results[0]['workers']}: "
              f"{results[-1]['rps'] / results[0]['rps']:.2f}x", file=out)
    out.flush()
    if args.json:
        print(json.dumps({"database": what, "results": results}, indent=2))
    failed = any(r["errors"] or not r["stored_ok"] for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
