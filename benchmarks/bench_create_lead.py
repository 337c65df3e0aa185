"""Benchmark the create-lead endpoint against the floor: one insert with one unique index.

Command (from the repository root, with the ``test`` extra installed)::

    python benchmarks/bench_create_lead.py [--quick] [--json] [--check]
                                           [--sizes 1000,10000,100000] [--requests N]

One process, one database server (SecantusDB started in-process, standalone, on a
temporary directory; or the mongod at ``MONGODB_URI``), one Flask app, one test client.
Measured through that client, so the HTTP/Flask overhead is the same for every path:

* ``floor``: ``POST /floor``, a route of the same app that parses the JSON body,
  does one ``insert_one`` of the lead's fields (plus source id, transaction id and
  time) into a collection whose only index is unique ``(source_id, email)``, and
  answers a small JSON 201: the least any race-safe implementation must do;
* ``floor_rules``: the same route storing into a collection with the three unique
  indexes a hand-written route needs for the rules the endpoint enforces here (one
  lead per transaction id, dedupe on email and on mobile): not a target, it shows
  how much of the gap is the server's cost of those rules;
* ``accept``: the endpoint storing a new lead (new email, mobile, transaction_id);
* ``duplicate``: the endpoint given a lead whose email is already stored;
* ``reject``: the endpoint refusing a bad ``zip_code`` (400 invalidField).

At each size both collections hold that many leads (the leads built by the
library's own ``LeadRepository.store_many``); what a round inserts is deleted after
it, so the count stays within one round of the size.  Paths alternate in rounds
(the order rotating) so machine noise hits all alike.  Per path and size: p50/p99
µs per request, requests/s (1 / mean), the ratios endpoint/floor, the p50 growth
from the first to the last size, and peak RSS (``ru_maxrss``, the database server
included when it runs in-process) after each size.  Exit code 0 unless ``--check``
is given and a target fails.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from bson import ObjectId
from flask import Flask, Response, request
from flask.testing import FlaskClient
from pymongo import ASCENDING, MongoClient
from pymongo.database import Database

from pingtree_leads import create_blueprint, create_source
from pingtree_leads.repository import LeadRepository
from pingtree_leads.schemas import ValidLead, schema_for, validate_lead
from pingtree_leads.settings import Settings, utc_now
from pingtree_leads.sources import SourceConfig

PATHS = ("floor", "floor_rules", "accept", "duplicate", "reject")
FLOOR_URLS = {"floor": "/floor", "floor_rules": "/floor-rules"}
EXPECTED = {"floor": (201, None), "floor_rules": (201, None), "accept": (201, "accept"),
            "duplicate": (201, "duplicate"), "reject": (400, "invalidField")}
ROUND = 100  # requests per path per round
BATCH = 1000  # pre-fill batch size
LIVE_START = 10_000_000  # lead numbers used by live requests; pre-filled leads are 0..size-1
DUPLICATE_TOLERANCE = 0.95
Doc = dict[str, Any]


def lead_body(n: int) -> dict[str, str]:
    """A realistic lead, unique by ``n`` (email, mobile and transaction_id)."""
    return {
        "first_name": "Ada", "last_name": "Lovelace", "email": f"lead{n}@example.com",
        "mobile": str(2_000_000_000 + n), "address": "12 Analytical Engine Rd", "city": "New York",
        "state": "NY", "zip_code": "10001", "date_of_birth": "1985-12-10", "transaction_id": f"tx-{n}",
        "xxTrustedFormCertUrl": f"https://cert.trustedform.com/{n:040x}",
    }


def valid_lead(n: int) -> ValidLead:
    """``lead_body(n)`` as the library validates it."""
    lead = validate_lead(lead_body(n), schema_for((), Settings()))
    assert isinstance(lead, ValidLead)
    return lead


def floor_document(source_id: ObjectId, body: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {"source_id": source_id, **body, "created_at": now}


@contextmanager
def open_database() -> Iterator[tuple[Database[Doc], str]]:
    """A fresh database on ``MONGODB_URI``, or on SecantusDB started here."""
    name = f"ptl_bench_{uuid.uuid4().hex[:8]}"
    uri = os.environ.get("MONGODB_URI")
    if uri:
        client: MongoClient[Doc] = MongoClient(uri, serverSelectionTimeoutMS=5000)
        with client:
            try:
                yield client[name], f"MONGODB_URI (server {client.server_info().get('version', '?')})"
            finally:
                client.drop_database(name)
        return
    from secantus import SecantusDBServer  # GPL-2.0: test-only dependency (the `test` extra)

    with tempfile.TemporaryDirectory(prefix="ptl-bench-") as path:
        # Standalone: no oplog. In replica-set mode SecantusDB's writes slow ~3x after some
        # 20-30k writes whatever the collection size, which would blur the growth by size.
        server = SecantusDBServer(storage_path=path, port=0, replica_set_name=None)
        server.start()
        try:
            client = MongoClient(server.uri, serverSelectionTimeoutMS=5000)
            with client:
                yield client[name], "SecantusDB (in-process, standalone)"
        finally:
            server.stop()


class Bench:
    def __init__(self, db: Database[Doc]) -> None:
        self.db = db
        created = create_source(db, "Benchmark", dedupe_fields=["email", "mobile"])
        self.source_id = ObjectId(created.id)
        source_doc = db[Settings.sources_collection].find_one({"_id": self.source_id})
        assert source_doc is not None
        self.source = SourceConfig.from_document(source_doc)
        self.repository = LeadRepository(db, Settings.leads_collection)
        self.repository.ensure_indexes()
        self.floors = {"floor": db["bench_floor"], "floor_rules": db["bench_floor_rules"]}
        self.floors["floor"].create_index([("source_id", ASCENDING), ("email", ASCENDING)], unique=True)
        for field in ("transaction_id", "email", "mobile"):
            self.floors["floor_rules"].create_index([("source_id", ASCENDING), (field, ASCENDING)], unique=True)
        self.app = Flask("bench_create_lead")
        self.app.register_blueprint(create_blueprint(db))
        for path, url in FLOOR_URLS.items():
            self.app.add_url_rule(url, path, self._floor_view, methods=["POST"], defaults={"path": path})
        self.client: FlaskClient = self.app.test_client()
        self.headers = {"Authorization": f"Bearer {created.api_key}"}
        self.url = f"/api/lead/create/{created.id}"
        self.stored = 0  # pre-filled leads (and floor documents): numbers 0..stored-1
        self.next_n = LIVE_START
        self.latencies: dict[str, list[int]] = {path: [] for path in PATHS}

    def _floor_view(self, path: str) -> Response:
        body = request.get_json()
        result = self.floors[path].insert_one(floor_document(self.source_id, body, utc_now()))
        data = {"status": "success", "message": "Lead accepted", "data": {"lead_id": str(result.inserted_id)}}
        return Response(json.dumps(data, separators=(",", ":")), status=201, mimetype="application/json")

    def fill(self, size: int) -> None:
        """Bring both collections to ``size`` leads, in batches."""
        while self.stored < size:
            numbers = range(self.stored, min(size, self.stored + BATCH))
            now = utc_now()
            leads = [(valid_lead(n), f"tx-{n}") for n in numbers]
            results = self.repository.store_many(self.source, leads, now)
            assert all(r.lead_status == "accept" for r in results)
            for floor in self.floors.values():
                floor.insert_many([floor_document(self.source_id, lead_body(n), now) for n in numbers])
            self.stored = numbers[-1] + 1

    def request_body(self, path: str) -> bytes:
        n, self.next_n = self.next_n, self.next_n + 1
        body = lead_body(n)
        if path == "duplicate":  # email of a stored lead, spread over the whole index
            body["email"] = f"lead{(n * 7919) % self.stored}@example.com"
        elif path == "reject":
            body["zip_code"] = "1234"
        return json.dumps(body).encode()

    def run(self, path: str, count: int, record: bool) -> list[ObjectId]:
        """``count`` requests on ``path``; returns the ids of what they stored."""
        url = FLOOR_URLS.get(path, self.url)
        status, lead_status = EXPECTED[path]
        stored, timings = [], self.latencies[path]
        for _ in range(count):
            body = self.request_body(path)
            start = time.perf_counter_ns()
            response = self.client.post(url, data=body, headers=self.headers, content_type="application/json")
            elapsed = time.perf_counter_ns() - start
            answer = response.get_json()
            if response.status_code != status or (lead_status and answer["data"]["lead_status"] != lead_status):
                raise RuntimeError(f"{path}: unexpected answer {response.status_code} {answer}")
            if record:
                timings.append(elapsed)
            if "lead_id" in answer["data"]:
                stored.append(ObjectId(answer["data"]["lead_id"]))
        return stored

    def rounds(self, per_path: int, record: bool = True) -> None:
        """Alternate the paths in rounds; delete what each round stored."""
        done, turn = 0, 0
        while done < per_path:
            count = min(ROUND, per_path - done)
            order = PATHS[turn % len(PATHS):] + PATHS[: turn % len(PATHS)]
            stored = {path: self.run(path, count, record) for path in order}
            for floor_path, floor in self.floors.items():
                floor.delete_many({"_id": {"$in": stored[floor_path]}})
            self.db[Settings.leads_collection].delete_many({"_id": {"$in": stored["accept"]}})
            done, turn = done + count, turn + 1


def percentile(sorted_ns: list[int], q: float) -> float:
    return sorted_ns[max(0, math.ceil(q * len(sorted_ns)) - 1)] / 1000


def summarize(latencies: list[int]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {"p50_us": percentile(ordered, 0.50), "p99_us": percentile(ordered, 0.99),
            "rps": len(ordered) * 1e9 / sum(ordered), "requests": len(ordered)}


def rss_now_mb() -> float | None:
    """Current RSS (Linux only): what the measured requests themselves add."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize() / 1e6
    except OSError:
        return None


def peak_rss_mb() -> float:
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e6


def measure(sizes: list[int], per_path: int, warmup: int, log: Callable[[str], None]) -> dict[str, Any]:
    with open_database() as (db, backend):
        bench = Bench(db)
        sizes_out: list[dict[str, Any]] = []
        for size in sizes:
            started = time.perf_counter()
            bench.fill(size)
            log(f"size {size:,}: filled in {time.perf_counter() - started:.0f}s; measuring {per_path} req/path")
            gc.collect()
            bench.rounds(warmup, record=False)
            started, rss_before = time.perf_counter(), rss_now_mb()
            bench.latencies = {path: [] for path in PATHS}
            bench.rounds(per_path)
            rss_after = rss_now_mb()
            paths = {path: summarize(bench.latencies[path]) for path in PATHS}
            for path in PATHS[1:]:
                paths[path]["rps_ratio"] = paths[path]["rps"] / paths["floor"]["rps"]
                paths[path]["p50_ratio"] = paths[path]["p50_us"] / paths["floor"]["p50_us"]
            paths["accept"]["rps_ratio_rules"] = paths["accept"]["rps"] / paths["floor_rules"]["rps"]
            sizes_out.append({"size": size, "paths": paths, "peak_rss_mb": peak_rss_mb(),
                              "requests_rss_delta_mb": None if rss_after is None or rss_before is None
                              else rss_after - rss_before, "seconds": time.perf_counter() - started})
    first, last = sizes_out[0], sizes_out[-1]
    growth = {path: last["paths"][path]["p50_us"] / first["paths"][path]["p50_us"] for path in PATHS}
    return {"backend": backend, "requests_per_path": per_path, "round": ROUND, "sizes": sizes_out,
            "p50_growth": growth, "rss_growth_mb": last["peak_rss_mb"] - first["peak_rss_mb"]}


def checks(result: dict[str, Any]) -> list[tuple[str, bool, str]]:
    sizes = result["sizes"]
    first, last = sizes[0]["size"], sizes[-1]["size"]
    worst_ratio = min(s["paths"]["accept"]["rps_ratio"] for s in sizes)
    dup = min(s["paths"]["duplicate"]["rps"] / s["paths"]["accept"]["rps"] for s in sizes)
    growth = result["p50_growth"]["accept"]
    # Memory the measured requests add at the largest size versus the smallest: the endpoint's own
    # memory.  Peak RSS also holds the in-process server's data, which grows with the stored count.
    deltas = [s["requests_rss_delta_mb"] for s in sizes]
    rss = None if None in deltas else deltas[-1] - deltas[0]
    return [
        ("accept throughput >= 0.8 x floor (worst size)", worst_ratio >= 0.8, f"{worst_ratio:.2f} x floor"),
        (f"duplicate req/s >= accept req/s x {DUPLICATE_TOLERANCE} (5% tolerance, worst size)",
         dup >= DUPLICATE_TOLERANCE, f"duplicate/accept = {dup:.2f}"),
        (f"accept p50 @{last:,} <= 1.2 x p50 @{first:,}", growth <= 1.2, f"growth {growth:.2f}x"),
        (f"RSS added by the requests @{last:,} <= @{first:,} + 10 MB (memory flat across sizes)",
         rss is not None and rss <= 10, "n/a" if rss is None else f"{rss:+.1f} MB"),
    ]


def table(result: dict[str, Any]) -> str:
    lines = [f"backend: {result['backend']}; {result['requests_per_path']} requests per path per size, "
             f"interleaved in rounds of {result['round']}",
             f"{'size':>8} {'path':<11} {'p50 µs':>9} {'p99 µs':>9} {'req/s':>8} {'req/s÷floor':>12} "
             f"{'p50÷floor':>10} {'peak RSS MB':>12} {'RSS Δ in requests MB':>21}"]
    for entry in result["sizes"]:
        for path in PATHS:
            row = entry["paths"][path]
            ratios = (f"{row['rps_ratio']:>12.2f} {row['p50_ratio']:>10.2f}" if path != "floor"
                      else f"{'-':>12} {'-':>10}")
            delta = entry["requests_rss_delta_mb"]
            rss = (f"{entry['peak_rss_mb']:>12.0f} {'n/a' if delta is None else f'{delta:+.1f}':>21}"
                   if path == "floor" else "")
            lines.append(f"{entry['size']:>8,} {path:<11} {row['p50_us']:>9.0f} {row['p99_us']:>9.0f} "
                         f"{row['rps']:>8.0f} {ratios} {rss}")
    first, last = result["sizes"][0]["size"], result["sizes"][-1]["size"]
    lines.append(f"p50 growth {first:,} -> {last:,}: "
                 + ", ".join(f"{path} {g:.2f}x" for path, g in result["p50_growth"].items()))
    lines.append("the rules' own cost (req/s): " + "; ".join(
        f"@{entry['size']:,} floor_rules {entry['paths']['floor_rules']['rps_ratio']:.2f} x floor, "
        f"accept {entry['paths']['accept']['rps_ratio_rules']:.2f} x floor_rules" for entry in result["sizes"]))
    lines.append(f"peak RSS growth {first:,} -> {last:,}: {result['rss_growth_mb']:+.1f} MB "
                 "(includes the stored data when the database server runs in-process)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", help="stored-lead counts, comma-separated (default 1000,10000,100000)")
    parser.add_argument("--requests", type=int, help="measured requests per path per size (default 10000)")
    parser.add_argument("--quick", action="store_true", help="small run: sizes 500,2000 and 300 requests")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target fails")
    args = parser.parse_args(argv)
    given = args.sizes or ("500,2000" if args.quick else "1000,10000,100000")
    sizes = sorted({int(size) for size in given.split(",")})  # filled in increasing order
    per_path = args.requests or (300 if args.quick else 10000)
    if min(sizes) < 1 or per_path < 1:
        parser.error("sizes and requests must be positive")
    out = sys.stderr if args.json else sys.stdout

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    result = measure(sizes, per_path, warmup=min(per_path, 2 * ROUND), log=log)
    result["checks"] = [{"target": name, "pass": ok, "value": value} for name, ok, value in checks(result)]
    print(table(result), file=out)
    for check in result["checks"]:
        print(f"{'PASS' if check['pass'] else 'FAIL'}  {check['target']}: {check['value']}", file=out)
    if args.json:
        print(json.dumps(result, indent=2))
    failed = not all(check["pass"] for check in result["checks"])
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    sys.exit(main())
