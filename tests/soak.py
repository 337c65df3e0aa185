"""Soak: N leads from K threads over real HTTP on loopback, with a set share of
duplicates, replays and invalid leads; then every count is checked exactly.

    python -m tests.soak --leads 20000 --threads 8          # SecantusDB in-process
    MONGODB_URI=mongodb://127.0.0.1:27017 python -m tests.soak --leads 20000

Traffic goes only to 127.0.0.1, the number of requests is bounded, and the run
stops by itself.  ``tests/test_soak.py`` runs it at a small size in ``.ci/run``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pymongo
from bson import ObjectId
from flask import Flask
from werkzeug.serving import make_server

from pingtree_leads import create_blueprint, create_source


@dataclasses.dataclass
class Plan:
    """Which requests to send and what each must get back."""

    requests: list[tuple[int, str, dict[str, Any]]]  # (group, kind, body); group -1: an invalid lead
    groups: int  # one stored lead per group: a unique lead with its duplicates and replays
    invalid: int


def make_plan(leads: int, duplicates: float, replays: float, invalid: float, seed: int) -> Plan:
    rng = random.Random(seed)
    n_dup, n_replay, n_invalid = int(leads * duplicates), int(leads * replays), int(leads * invalid)
    n_unique = leads - n_dup - n_replay - n_invalid
    if n_unique < 1:
        raise SystemExit("the shares leave no unique leads")
    run = uuid.uuid4().hex[:8]
    # Emails and mobiles are unique per lead, so only the intended duplicates collide.
    unique = [
        {"first_name": "Soak", "last_name": f"Lead{i}", "email": f"soak{i}.{run}@example.com",
         "mobile": f"5{i:09d}", "state": "NY", "zip_code": "10001", "transaction_id": f"soak-{run}-{i}"}
        for i in range(n_unique)
    ]
    requests = [(group, "unique", lead) for group, lead in enumerate(unique)]
    for i in range(n_dup):  # same email as a unique lead, new transaction id and mobile
        group = rng.randrange(n_unique)
        duplicate = {**unique[group], "transaction_id": f"soak-{run}-dup{i}", "mobile": f"4{i:09d}"}
        requests.append((group, "duplicate", duplicate))
    for group in rng.sample(range(n_unique), min(n_replay, n_unique)):
        requests.append((group, "replay", dict(unique[group])))
    for i in range(n_invalid):
        requests.append((-1, "invalid", {"first_name": "Bad", "email": f"bad{i}@example.com", "zip_code": "123"}))
    rng.shuffle(requests)
    return Plan(requests, groups=n_unique, invalid=n_invalid)


def check(plan: Plan, answers: list[tuple[int, str, int, dict[str, Any]]]) -> Counter[str]:
    """Every answer exactly right.  Within a group, whichever post lands first is the one accepted
    (a duplicate can race ahead of its original); every other post of the group is a duplicate,
    or a replay of the accepted transaction with its lead_id.  Returns the outcome counts."""
    assert len(answers) == len(plan.requests), "not every request was answered"
    counts: Counter[str] = Counter()
    by_group: dict[int, list[tuple[str, int, dict[str, Any]]]] = {}
    for group, kind, status, data in answers:
        outcome = data.get("lead_status", f"http_{status}") + ("/replayed" if data.get("replayed") else "")
        counts[outcome] += 1
        if group < 0:
            assert (status, data.get("lead_status")) == (400, "invalidField"), (kind, status, data)
        else:
            assert status == 201, (kind, status, data)
            by_group.setdefault(group, []).append((kind, status, data))
    assert len(by_group) == plan.groups
    for group, members in by_group.items():
        accepted = [d for _, _, d in members if d["lead_status"] == "accept" and not d.get("replayed")]
        assert len(accepted) == 1, (group, members)
        for _, _, data in members:
            if data.get("replayed"):
                assert (data["transaction_id"], data["lead_id"]) == (
                    accepted[0]["transaction_id"], accepted[0]["lead_id"]), (group, members)
            elif data is not accepted[0]:
                assert data["lead_status"] == "duplicate", (group, members)
    return counts


@contextlib.contextmanager
def serve(app: Flask) -> Iterator[int]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access line per request
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        thread.join(timeout=10)


def post_all(
    port: int, source: Any, plan: Plan, threads: int, deadline: float
) -> tuple[list[tuple[int, str, int, dict[str, Any]]], list[float]]:
    answers: list[tuple[int, str, int, dict[str, Any]]] = []
    latencies: list[float] = []
    lock = threading.Lock()
    chunks = [plan.requests[i::threads] for i in range(threads)]
    headers = {"Authorization": f"Bearer {source.api_key}", "Content-Type": "application/json"}
    path = f"/api/lead/create/{source.id}"

    def worker(chunk: list[tuple[int, str, dict[str, Any]]]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine, times = [], []
        for group, kind, lead in chunk:
            if time.monotonic() > deadline:
                break  # bounded in time: the unanswered requests make the check fail
            started = time.perf_counter()
            conn.request("POST", path, body=json.dumps(lead), headers=headers)
            response = conn.getresponse()
            data = json.loads(response.read())["data"]
            times.append(time.perf_counter() - started)
            mine.append((group, kind, response.status, data))
        conn.close()
        with lock:
            answers.extend(mine)
            latencies.extend(times)

    pool = [threading.Thread(target=worker, args=(chunk,)) for chunk in chunks]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return answers, latencies


def run(database: Any, leads: int, threads: int, duplicates: float = 0.2, replays: float = 0.05,
        invalid: float = 0.1, seed: int = 7, max_seconds: float = 600) -> dict[str, Any]:
    """Run the soak against ``database``; returns its figures, raises AssertionError on any wrong answer."""
    plan = make_plan(leads, duplicates, replays, invalid, seed)
    source = create_source(database, f"Soak {uuid.uuid4().hex[:6]}")
    app = Flask("soak")
    app.register_blueprint(create_blueprint(database))
    started = time.perf_counter()
    with serve(app) as port:
        answers, latencies = post_all(port, source, plan, threads, time.monotonic() + max_seconds)
    elapsed = time.perf_counter() - started
    stored = database["leads"].count_documents({"source_id": ObjectId(source.id)})
    figures = {
        "requests": len(plan.requests), "threads": threads, "seconds": round(elapsed, 2),
        "requests_per_second": round(len(plan.requests) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(sorted(latencies)[int(len(latencies) * 0.99) - 1] * 1000, 2),
        "stored": stored, "expected_stored": plan.groups,
    }
    figures["outcomes"] = dict(check(plan, answers))
    assert stored == plan.groups, figures
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--duplicates", type=float, default=0.2)
    parser.add_argument("--replays", type=float, default=0.05)
    parser.add_argument("--invalid", type=float, default=0.1)
    parser.add_argument("--max-seconds", type=float, default=600)
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        uri = os.environ.get("MONGODB_URI")
        if not uri:
            from secantus import SecantusDBServer  # GPL-2.0: test-only

            storage = stack.enter_context(tempfile.TemporaryDirectory())
            server = stack.enter_context(SecantusDBServer(storage_path=storage))
            uri = server.uri
        client = stack.enter_context(pymongo.MongoClient(uri))
        name = f"ptl_soak_{uuid.uuid4().hex[:8]}"
        stack.callback(client.drop_database, name)
        try:
            figures = run(client[name], args.leads, args.threads, args.duplicates, args.replays, args.invalid,
                          max_seconds=args.max_seconds)
        except AssertionError as exc:
            print(f"SOAK FAILED: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
