"""Does posting to the running example stay flat as its embedded database grows?

Command (from the repository root, with the ``examples`` or ``test`` extra installed)::

    python benchmarks/bench_example_growth.py [--leads 20000] [--window 500] [--json] [--check]

It starts the example exactly as the quick start does (``python examples/app.py``: the
Flask dev server, threaded, on 127.0.0.1, with its embedded SecantusDB server), but with
``PINGTREE_INSTANCE`` set to a temporary directory and ``PORT`` to a free port, and
without ``MONGODB_URI``. From the banner it reads the demo source's id and key; from
``server.json`` the embedded server's address, where it asks ``hello`` whether the server
is a replica-set member (``setName``) or standalone.

Then it posts ``--leads`` leads, one at a time (sequential single posts over one
keep-alive HTTP/1.1 connection, each a new lead: new email, mobile and transaction
id), checking that every answer is ``201`` ``accept``, and timing each post from the
request to the last byte of the answer. It prints the median of the first ``--window``
posts, the median of the last ``--window`` and their ratio (the target: at most 1.2),
the medians of every tenth of the run, how many cores other processes on the machine
kept busy during the first and the last window (from /proc: a neighbour's load shows
up there, not as growth), and checks that the ``leads`` collection holds exactly the
accepted posts. The example is stopped with Ctrl-C (SIGINT) as a person
would, and the temporary directory removed.

Bounded: at most ``--leads`` posts (at most 1,000,000), and ``--max-seconds`` for the
whole run (default 1,800). Only 127.0.0.1 is contacted. Exit code 0 unless the run
fails, or ``--check`` is given and the ratio is over 1.2.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from processes import HOST, cpu_seconds, free_port, http_lead, machine_busy_seconds

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "app.py"
TARGET = 1.2
MAX_LEADS = 1_000_000


class Example:
    """``python examples/app.py`` on a temporary instance directory, until :meth:`stop`."""

    def __init__(self, instance: Path, port: int, start_timeout: float = 120.0) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "PINGTREE_DB", "FLASK_APP")}
        env.update(PINGTREE_INSTANCE=str(instance), PORT=str(port), PYTHONUNBUFFERED="1")
        self.instance = instance
        self.port = port
        self.process = subprocess.Popen([sys.executable, str(EXAMPLE)], cwd=ROOT, env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.tail: deque[str] = deque(maxlen=40)  # its last lines, for an error message
        self._lines: queue.Queue[str | None] = queue.Queue()
        # Drained all the time: the dev server logs every request, and a full pipe would stall it.
        threading.Thread(target=self._pump, daemon=True).start()
        banner: list[str] = []
        deadline = time.monotonic() + start_timeout
        while not any("Press Ctrl-C" in line for line in banner):
            try:
                line = self._lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the example did not start:\n" + "".join(banner) + "".join(self.tail))
            banner.append(line)
        self.banner = "".join(banner)
        # The banner comes just before the dev server binds its port: wait until it accepts.
        while True:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the example did not listen:\n" + "".join(self.tail)) from None
                time.sleep(0.05)
        self.source_id = self.banner.split("Demo database source:")[1].split()[0]
        self.api_key = self.banner.split("API key:")[1].split()[0]
        server = json.loads((instance / "server.json").read_text(encoding="utf-8"))
        self.db_uri, self.db_name = str(server["uri"]), str(server["database"])

    def _pump(self) -> None:
        assert self.process.stdout is not None
        started = False
        for line in self.process.stdout:
            self.tail.append(line)
            if not started:
                self._lines.put(line)
                started = "Press Ctrl-C" in line
        self._lines.put(None)

    def stop(self) -> int:
        """Ctrl-C, as a person stops it; killed if it has not stopped within a minute."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@contextmanager
def running_example() -> Iterator[Example]:
    with tempfile.TemporaryDirectory(prefix="ptl-growth-") as tmp:
        example = Example(Path(tmp) / "instance", free_port())
        try:
            yield example
        finally:
            example.stop()


def lead_body(n: int) -> bytes:
    """A new lead for the demo source."""
    return http_lead(n, "growth")


class Poster:
    """Sequential posts over one keep-alive connection (reopened if the server closes it)."""

    def __init__(self, port: int, source_id: str, api_key: str) -> None:
        self.port = port
        self.path = f"/api/lead/create/{source_id}"
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self.connection = http.client.HTTPConnection(HOST, port, timeout=30)

    def post(self, body: bytes) -> tuple[float, int, dict[str, Any]]:
        for attempt in (1, 2):
            started = time.perf_counter()
            try:
                self.connection.request("POST", self.path, body=body, headers=self.headers)
                response = self.connection.getresponse()
                payload = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # Only a connection closed before the request was read is retried (once, on a new one).
                self.connection.close()
                self.connection = http.client.HTTPConnection(HOST, self.port, timeout=30)
                if attempt == 2:
                    raise
                continue
            elapsed = time.perf_counter() - started
            if response.getheader("Connection", "").lower() == "close":
                self.connection.close()
                self.connection = http.client.HTTPConnection(HOST, self.port, timeout=30)
            return elapsed, response.status, json.loads(payload)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.connection.close()


def server_mode(uri: str) -> dict[str, Any]:
    """What the embedded server says of itself: replica-set name (None when standalone)."""
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=10_000)
    try:
        hello = client.admin.command("hello")
        return {"setName": hello.get("setName"), "standalone": "setName" not in hello}
    finally:
        client.close()


def stored_leads(uri: str, database: str) -> int:
    from pymongo import MongoClient

    from pingtree_leads.settings import Settings

    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=10_000)
    try:
        return int(client[database][Settings.leads_collection].count_documents({}))
    finally:
        client.close()


class Others:
    """How many cores processes other than the example and this script kept busy between two marks:
    a noisy neighbour shows up here, not as growth."""

    def __init__(self, example_pid: int) -> None:
        self.example_pid = example_pid

    def mark(self) -> tuple[float, float | None, float | None, float]:
        return time.monotonic(), machine_busy_seconds(), cpu_seconds([self.example_pid]), time.process_time()

    @staticmethod
    def cores(a: tuple[float, float | None, float | None, float],
              b: tuple[float, float | None, float | None, float]) -> float | None:
        if a[1] is None or b[1] is None or a[2] is None or b[2] is None or b[0] <= a[0]:
            return None
        return max(0.0, round(((b[1] - a[1]) - (b[2] - a[2]) - (b[3] - a[3])) / (b[0] - a[0]), 2))


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000.0


def run(leads: int, window: int, max_seconds: float, progress: bool = True) -> dict[str, Any]:
    window = max(1, min(window, leads // 2))
    with running_example() as example:
        mode = server_mode(example.db_uri)
        poster = Poster(example.port, example.source_id, example.api_key)
        others = Others(example.process.pid)
        marks: dict[int, tuple[float, float | None, float | None, float]] = {}
        times: list[float] = []
        deadline = time.monotonic() + max_seconds
        started = time.monotonic()
        try:
            for n in range(leads):
                if n in (0, window, leads - window):
                    marks[n] = others.mark()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"--max-seconds {max_seconds:g} reached after {n} posts")
                elapsed, status, answer = poster.post(lead_body(n))
                lead_status = answer.get("data", {}).get("lead_status")
                if status != 201 or lead_status != "accept":
                    raise RuntimeError(f"post {n}: HTTP {status} {lead_status!r}, expected 201 'accept': {answer}")
                times.append(elapsed)
                if progress and (n + 1) % max(1, leads // 10) == 0:
                    print(f"  {n + 1:>9,} posts, median of the last {window}: "
                          f"{median_ms(times[-window:]):.2f} ms", file=sys.stderr, flush=True)
            marks[leads] = others.mark()
        finally:
            poster.close()
        wall = time.monotonic() - started
        stored = stored_leads(example.db_uri, example.db_name)
        code = example.stop()
    if stored != leads:
        raise RuntimeError(f"{leads} posts accepted but {stored} leads stored")
    if code != 0:
        raise RuntimeError(f"the example exited with {code}:\n{''.join(example.tail)}")
    first, last = median_ms(times[:window]), median_ms(times[-window:])
    tenth = max(1, leads // 10)
    return {
        "leads": leads, "window": window, "server": mode, "seconds": round(wall, 1),
        "first_median_ms": round(first, 3), "last_median_ms": round(last, 3), "ratio": round(last / first, 3),
        "tenths_median_ms": [round(median_ms(times[i:i + tenth]), 3) for i in range(0, leads - tenth + 1, tenth)],
        # Less noisy than 500 against 500: the last tenth's median over the first tenth's.
        "tenth_ratio": round(median_ms(times[-tenth:]) / median_ms(times[:tenth]), 3),
        "p99_ms": round(statistics.quantiles(times, n=100)[98] * 1000.0, 3) if leads >= 2 else None,
        "stored": stored, "target": TARGET,
        "other_cores_first": Others.cores(marks[0], marks[window]),
        "other_cores_last": Others.cores(marks[leads - window], marks[leads]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--leads", type=int, default=20_000, help="posts (each a new lead); default 20,000")
    parser.add_argument("--window", type=int, default=500, help="posts in the first and last medians; default 500")
    parser.add_argument("--max-seconds", type=float, default=1800.0, help="bound on the whole run; default 1,800")
    parser.add_argument("--json", action="store_true", help="the result as JSON on stdout")
    parser.add_argument("--check", action="store_true", help=f"exit 1 if last/first > {TARGET}")
    args = parser.parse_args(argv)
    if not 2 <= args.leads <= MAX_LEADS:
        parser.error(f"--leads must be from 2 to {MAX_LEADS:,}")
    if args.window < 1:
        parser.error("--window must be at least 1")
    result = run(args.leads, args.window, args.max_seconds)
    server = "standalone" if result["server"]["standalone"] else f"replica set {result['server']['setName']!r}"
    verdict = "PASS" if result["ratio"] <= TARGET else "FAIL"
    lines = [
        f"embedded SecantusDB: {server}; {result['leads']:,} posts in {result['seconds']} s, "
        f"{result['stored']:,} leads stored",
        f"median of the first {result['window']}: {result['first_median_ms']:.2f} ms",
        f"median of the last {result['window']}:  {result['last_median_ms']:.2f} ms",
        "medians by tenth (ms): " + " ".join(f"{m:.2f}" for m in result["tenths_median_ms"])
        + f"; last tenth / first tenth = {result['tenth_ratio']:.3f}",
        f"p99 over the run: {result['p99_ms']:.2f} ms",
        f"cores kept busy by other processes (noise, not growth): first {result['window']} "
        f"{result['other_cores_first']}, last {result['window']} {result['other_cores_last']}",
        f"{verdict}  last/first = {result['ratio']:.3f} (target <= {TARGET})",
    ]
    print("\n".join(lines), file=sys.stderr if args.json else sys.stdout, flush=True)
    if args.json:
        print(json.dumps(result, indent=2))
    return 1 if args.check and verdict == "FAIL" else 0


if __name__ == "__main__":
    sys.exit(main())
