"""What the benchmark scripts share: free ports, child processes, CPU and memory from /proc,
and SecantusDB started in a process of its own.

Imported by the scripts beside it (``python benchmarks/<script>.py`` puts this folder on
``sys.path``; the tests that load a script add it themselves).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"


def http_lead(n: int, tag: str) -> bytes:
    """Lead ``n`` as posted over HTTP to a source like the example's demo source (required:
    first_name, email; dedupe on email and mobile): new email, mobile and transaction id."""
    return json.dumps({
        "first_name": "Ada", "last_name": "Lovelace", "email": f"{tag}{n}@example.com",
        "mobile": str(2_000_000_000 + n), "city": "New York", "state": "NY", "zip_code": "10001",
        "transaction_id": f"{tag}-{n}",
    }).encode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[Any], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                text = log.read_text(errors="replace")[-4000:] if log.exists() else ""
                raise RuntimeError(f"nothing listens on {HOST}:{port} (exit code {process.poll()}):\n{text}") from None
            time.sleep(0.05)


def stop(process: subprocess.Popen[Any], sig: int, timeout: float = 60.0) -> int:
    """Stop a process we started, by its own pid: ``sig`` first, SIGKILL after ``timeout``."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def child_env(**extra: str) -> dict[str, str]:
    # SECANTUS_TEST_FAST_STORAGE would turn the journal off: measure a durable server.
    env = {k: v for k, v in os.environ.items() if k not in ("SECANTUS_TEST_FAST_STORAGE", "PINGTREE_DB")}
    return {**env, **extra, "PYTHONUNBUFFERED": "1"}


def cpu_seconds(pids: list[int]) -> float | None:
    """User + system CPU seconds of these processes so far (Linux /proc); None elsewhere."""
    total = 0
    try:
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, AttributeError):
        return None


def machine_busy_seconds() -> float | None:
    """CPU seconds the whole machine spent busy so far, every process counted (/proc/stat)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # less idle and iowait
    except (OSError, IndexError, ValueError, AttributeError):
        return None


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (gunicorn's workers), from /proc; [] elsewhere."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def rss_mb(pid: int) -> float | None:
    """Resident memory of process ``pid`` now, MB (Linux /proc); None elsewhere."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
    except (OSError, IndexError, ValueError):
        pass
    return None


def split_cpus() -> tuple[set[int], set[int]] | None:
    """(this process's CPUs, the database server's CPU): the last CPU this process may use for
    the server, the others for this process; None with fewer than 2 CPUs or no affinity API."""
    if not hasattr(os, "sched_getaffinity") or not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None
    return set(allowed[:-1]), {allowed[-1]}


@contextmanager
def pinned(cpus: set[int] | None) -> Iterator[None]:
    """This process on ``cpus`` (nothing changes for None); its affinity restored at the end."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextmanager
def secantus_process(tmp: Path, cpus: set[int] | None = None) -> Iterator[tuple[str, str, int]]:
    """(uri, what, pid): SecantusDB standalone (no oplog), durable, in its own process on a free
    port, its data in ``tmp``, on ``cpus`` if given; stopped (SIGINT) at the end."""
    port = free_port()
    log = tmp / "secantus.log"
    on_cpus = None if cpus is None else (lambda: os.sched_setaffinity(0, cpus))
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "secantus", "--standalone", "--host", HOST, "--port", str(port),
             "--storage-path", str(tmp / "secantus-data"), "--log-level", "WARNING"],
            env=child_env(), stdout=out, stderr=subprocess.STDOUT, preexec_fn=on_cpus)
    where = "" if cpus is None else f", on CPU {','.join(map(str, sorted(cpus)))}"
    try:
        wait_for_port(port, process, 60, log)
        yield f"mongodb://{HOST}:{port}/", f"SecantusDB standalone, own process (pid {process.pid}{where})", process.pid
    finally:
        stop(process, signal.SIGINT)
