"""Benchmark the create-lead endpoint against ``floor_rules``: one insert with the library's own indexes.

Command (from the repository root, with the ``test`` extra installed)::

    python benchmarks/bench_create_lead.py [--quick] [--json] [--check] [--fill single|bulk]
                                           [--sizes 1000,10000,100000] [--requests N]
                                           [--server process|in-process] [--pin|--no-pin]

One database server: SecantusDB, standalone, on a temporary directory, by default in a
process of its own (``--server in-process``: inside this one, sharing its interpreter),
pinned to the last CPU while this process runs on the others (``--no-pin``: both free
to move; the scheduler then keeps moving them between CPUs and the app's Python runs
cache-cold after each round trip), or the server at ``MONGODB_URI``.  One Flask app,
one test client.  Measured through that client, so the HTTP/Flask overhead is the same
for every path:

* ``floor_rules`` (the headline comparison): ``POST /floor-rules``, a bare route of the
  same app that parses the JSON body, does one ``insert_one`` into a collection with
  exactly the library's unique indexes (``LEAD_INDEXES`` from
  ``pingtree_leads.repository``: names, keys and options), and answers a small JSON
  201.  Its document is the lead's fields (plus source id and time) and, copied in,
  every top-level field those indexes' keys cover, taken from the document the
  library's own builder (``LeadRepository._document``) makes for that lead.  Those
  values are computed before the request is timed, so the route has none of the
  library's Python: the same rules, paid by the server only.  When the index layout
  changes, ``floor_rules`` changes with it; the script raises if an index key is
  found nowhere in the library's document;
* ``floor``: the same route storing into a collection whose only index is unique
  ``(source_id, email)``: the least any race-safe implementation must do (shown, no target);
* ``accept``: the endpoint storing a new lead (new email, mobile, transaction_id);
* ``duplicate``: the endpoint given a lead whose email is already stored;
* ``reject``: the endpoint refusing a bad ``zip_code`` (400 invalidField).

At each size every collection holds that many leads, filled with ``--fill single``
(default: one ``LeadRepository.store``, i.e. one ``insert_one``, per lead and one
``insert_one`` per floor document, so a server cost paid per write shows in the growth)
or ``--fill bulk`` (``store_many`` and ``insert_many`` in batches of 1,000).  What a
round inserts into the default source and the floors is deleted after it, so the count
stays within one round of the size.  The leads of the capped and the listed source stay
(a new capped source takes over before its cap could be reached), as a production
source's leads do: deleting every one right after it was stored left runs of deleted
index keys beside the capped source's slot claims, and SecantusDB's unique check walks
such a run (WiredTiger's ``search_near`` skips deleted keys one by one) -- +0.5 ms per
capped post after ~2,600 such deletes, which no production workload does
(docs/performance.md, "The capped source and deleted index keys").
Paths alternate in rounds of 100 requests, the order rotating, so machine noise hits
all alike.  Per path and size: p50/p99 µs per request, req/s as the median over the
rounds of each round's throughput (requests / time), the ratios of those medians,
the p50 growth from the first to the last size, peak RSS (``ru_maxrss``, an
in-process server included), the RSS the measured request loop adds, and the server's
own RSS when it runs apart.

Targets (PASS/FAIL lines; in ``--json`` under ``checks``), at every size:

* ``accept`` req/s >= 0.9 x ``floor_rules`` req/s (worst size);
* ``duplicate`` req/s >= ``accept`` req/s (worst size);
* ``accept`` p50 at the last size <= 1.2 x p50 at the first size;
* memory flat: the RSS the measured request loop adds at the last size (RSS after
  the loop minus RSS before it, both after ``gc.collect()``, the warm-up rounds
  excluded) is at most 10 MB more than the same at the first size.  Stored data
  filled before the loop is not in it; the in-process server's own allocations
  during the loop are.

Exit code 0 unless ``--check`` is given and a target fails.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from bson import ObjectId
from flask import Flask, Response, request
from flask.testing import FlaskClient
from processes import pinned, rss_mb, secantus_process, split_cpus
from pymongo import ASCENDING, MongoClient
from pymongo.collection import Collection
from pymongo.database import Database

from pingtree_leads import create_blueprint, create_source, suppress
from pingtree_leads.caps import MAX_CAP_LEADS
from pingtree_leads.repository import LEAD_INDEXES, LeadRepository, lead_claims
from pingtree_leads.schemas import ValidLead, schema_for, validate_lead
from pingtree_leads.settings import Settings, utc_now
from pingtree_leads.sources import SourceConfig

PATHS = ("floor", "floor_rules", "accept", "duplicate", "reject", "ping_ask", "ping_hold", "post_ping",
         "accept_capped", "accept_listed")
#: The pre-ping paths: ask (no hold: one read per value), hold (one insert), and the post that
#: takes a hold over (its hold is made untimed before the request).
PING_PATHS = ("ping_ask", "ping_hold")
FLOOR_URLS = {"floor": "/floor", "floor_rules": "/floor-rules"}
EXPECTED = {"floor": (201, None), "floor_rules": (201, None), "accept": (201, "accept"),
            "duplicate": (201, "duplicate"), "reject": (400, "invalidField"), "ping_ask": (200, "accept"),
            "ping_hold": (200, "accept"), "post_ping": (201, "accept"), "accept_capped": (201, "accept"),
            "accept_listed": (201, "accept")}
#: accept_capped: a new lead of a source with a (never reached) daily cap, so it takes a cap slot:
#: the normal case of a capped source, one insert once the process knows the window.
#: accept_listed: a new lead of a source that checks a suppression list (which holds other
#: values): one indexed read of the list, then the insert.
FILL_MODES = ("single", "bulk")
SERVER_MODES = ("process", "in-process")
ROUND = 100  # requests per path per round
BATCH = 1000  # pre-fill batch size (also the unit of a single-write fill's progress)
LIVE_START = 10_000_000  # lead numbers used by live requests; pre-filled leads are 0..size-1
ACCEPT_VS_RULES = 0.9  # target: accept req/s >= this x floor_rules req/s
GROWTH_LIMIT = 1.2  # target: accept p50 at the last size <= this x p50 at the first
RSS_LIMIT_MB = 10.0  # target: RSS the request loop adds, last size minus first size
Doc = dict[str, Any]
IndexSpec = tuple[list[tuple[str, int]], dict[str, Any]]


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


def _resolve(doc: Any, path: str) -> bool:
    """Whether ``doc`` has a value at the dotted ``path`` (through sub-documents and arrays)."""
    head, _, rest = path.partition(".")
    if isinstance(doc, list):
        return any(_resolve(item, path) for item in doc)
    if not isinstance(doc, dict) or head not in doc:
        return False
    return not rest or _resolve(doc[head], rest)


class RulesFloor:
    """``floor_rules``' indexes and documents, derived from the library's layout.

    Indexes: ``LEAD_INDEXES`` as they are (name, keys, options).  Documents: the floor's
    document plus every top-level field an index key starts with (``claims`` for a key
    ``claims``, ``dedupe`` for ``dedupe.email``...) and ``_id`` if the builder sets it,
    copied from ``LeadRepository._document`` for the same lead, so the values, their
    shape (scalars, sub-documents, arrays) and so the server's work per insert are the
    library's.  Raises ``RuntimeError`` if an index key is nowhere in the library's
    document (unless that index is sparse or partial, where a missing key means no entry
    for the library either): a layout the derivation cannot follow fails loudly.
    """

    def __init__(self, source: SourceConfig) -> None:
        self.source = source
        self.indexes: dict[str, IndexSpec] = {name: (list(keys), dict(options))
                                              for name, (keys, options) in LEAD_INDEXES.items()}
        if not self.indexes:
            raise RuntimeError("LEAD_INDEXES is empty: floor_rules would have no rules to pay for")
        fields: list[str] = []
        for keys, _options in self.indexes.values():
            for key, _direction in keys:
                if key.split(".", 1)[0] not in fields:
                    fields.append(key.split(".", 1)[0])
        sample = self.library_document(valid_lead(0), "tx-0", utc_now())
        for name, (keys, options) in self.indexes.items():
            may_skip = bool(options.get("sparse")) or "partialFilterExpression" in options
            missing = [key for key, _direction in keys if not _resolve(sample, key)]
            if missing and not may_skip:
                raise RuntimeError(f"floor_rules cannot follow index {name!r}: the library's document for a "
                                   f"lead has no {', '.join(missing)}; adapt RulesFloor in {__file__}")
        self.fields = (["_id"] if "_id" in sample else []) + fields

    def library_document(self, lead: ValidLead, transaction_id: str, now: datetime) -> Doc:
        """What the library stores for this lead (its own builder)."""
        doc: Doc = LeadRepository._document(self.source, lead, transaction_id, now)
        return doc

    def index_fields(self, lead: ValidLead, transaction_id: str, now: datetime) -> Doc:
        """The top-level fields of the library's document that the indexes cover."""
        doc = self.library_document(lead, transaction_id, now)
        return {field: doc[field] for field in self.fields if field in doc}

    def create_indexes(self, collection: Collection[Doc]) -> None:
        for name, (keys, options) in self.indexes.items():
            collection.create_index(keys, name=name, **options)

    def describe(self) -> dict[str, Any]:
        return {"source": "pingtree_leads.repository.LEAD_INDEXES + LeadRepository._document",
                "indexes": {name: {"keys": [list(k) for k in keys], "options": options}
                            for name, (keys, options) in self.indexes.items()},
                "copied_fields": self.fields}


@contextmanager
def open_database(server: str = "process", pin: bool = False) -> Iterator[tuple[Database[Doc], str, int | None]]:
    """A fresh database on ``MONGODB_URI``, or on SecantusDB started here: (db, what, server pid or None).

    ``server="process"`` (default): SecantusDB standalone in a process of its own, as any
    production database is; ``"in-process"``: in this process, sharing its interpreter.
    ``pin`` (own process only, with 2 or more CPUs): the server on the last CPU, this
    process on the others, while the database is open.
    """
    if server not in SERVER_MODES:
        raise ValueError(f"server {server!r}: expected one of {SERVER_MODES}")
    name = f"ptl_bench_{uuid.uuid4().hex[:8]}"
    uri = os.environ.get("MONGODB_URI")
    if uri:
        client: MongoClient[Doc] = MongoClient(uri, serverSelectionTimeoutMS=5000)
        with client:
            try:
                yield client[name], f"MONGODB_URI (server {client.server_info().get('version', '?')})", None
            finally:
                client.drop_database(name)
        return
    with tempfile.TemporaryDirectory(prefix="ptl-bench-") as path:
        if server == "process":
            cpus = split_cpus() if pin else None
            with pinned(cpus[0] if cpus else None), \
                    secantus_process(Path(path), cpus[1] if cpus else None) as (server_uri, what, pid):
                client = MongoClient(server_uri, serverSelectionTimeoutMS=5000)
                with client:
                    yield client[name], what + (f", this process on CPU {','.join(map(str, sorted(cpus[0])))}"
                                                if cpus else ""), pid
            return
        from secantus import SecantusDBServer  # GPL-2.0: test-only dependency (the `test` extra)

        # Standalone: no oplog. In replica-set mode SecantusDB's writes slow ~3x after some
        # 20-30k writes whatever the collection size, which would blur the growth by size.
        embedded = SecantusDBServer(storage_path=path, port=0, replica_set_name=None)
        embedded.start()
        try:
            client = MongoClient(embedded.uri, serverSelectionTimeoutMS=5000)
            with client:
                yield client[name], "SecantusDB (in-process, standalone)", None
        finally:
            embedded.stop()


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
        self.rules = RulesFloor(self.source)
        self.floors = {"floor": db["bench_floor"], "floor_rules": db["bench_floor_rules"]}
        self.floors["floor"].create_index([("source_id", ASCENDING), ("email", ASCENDING)], unique=True)
        self.rules.create_indexes(self.floors["floor_rules"])
        self.app = Flask("bench_create_lead")
        self.app.register_blueprint(create_blueprint(db))
        for path, url in FLOOR_URLS.items():
            self.app.add_url_rule(url, path, self._floor_view, methods=["POST"], defaults={"path": path})
        self.client: FlaskClient = self.app.test_client()
        self.headers = {"Authorization": f"Bearer {created.api_key}"}
        self.url = f"/api/lead/create/{created.id}"
        self.ping_url = f"/api/lead/ping/{created.id}"
        self.new_capped_source()
        listed = create_source(db, "Benchmark listed", dedupe_fields=["email", "mobile"], suppression_lists=["dnc"])
        suppress(db, "dnc", emails=[f"dnc{n}@example.com" for n in range(1000)])
        self.listed_url = f"/api/lead/create/{listed.id}"
        self.listed_headers = {"Authorization": f"Bearer {listed.api_key}"}
        self.stored = 0  # pre-filled leads (and floor documents): numbers 0..stored-1
        self.next_n = LIVE_START
        # floor_rules' index-covered fields for the next requests, by transaction id: computed
        # before the request is timed, so the route itself runs none of the library's code.
        self.rules_fields: dict[str, Doc] = {}
        self.latencies: dict[str, list[int]] = {path: [] for path in PATHS}
        self.round_ns: dict[str, list[tuple[int, int]]] = {path: [] for path in PATHS}  # (requests, ns)

    def new_capped_source(self) -> None:
        """The source ``accept_capped`` posts to: a daily cap it never reaches (its leads stay)."""
        capped = create_source(self.db, "Benchmark capped", dedupe_fields=["email", "mobile"],
                               caps=[{"max": MAX_CAP_LEADS, "per": "day"}])
        self.capped_url = f"/api/lead/create/{capped.id}"
        self.capped_headers = {"Authorization": f"Bearer {capped.api_key}"}
        self.capped_stored = 0

    def _floor_view(self, path: str) -> Response:
        body = request.get_json()
        doc = floor_document(self.source_id, body, utc_now())
        if path == "floor_rules":
            doc.update(self.rules_fields.pop(body["transaction_id"]))
        result = self.floors[path].insert_one(doc)
        data = {"status": "success", "message": "Lead accepted", "data": {"lead_id": str(result.inserted_id)}}
        return Response(json.dumps(data, separators=(",", ":")), status=201, mimetype="application/json")

    def fill(self, size: int, mode: str = "single") -> int:
        """Bring every collection to ``size`` leads; returns how many were added.

        ``single``: per lead one ``LeadRepository.store`` (one ``insert_one``, as the endpoint
        stores) and one ``insert_one`` per floor collection; ``bulk``: ``store_many`` and
        ``insert_many`` per batch of ``BATCH``.
        """
        if mode not in FILL_MODES:
            raise ValueError(f"fill mode {mode!r}: expected one of {FILL_MODES}")
        added = 0
        while self.stored < size:
            numbers = range(self.stored, min(size, self.stored + BATCH))
            now = utc_now()
            leads = [(valid_lead(n), f"tx-{n}") for n in numbers]
            floor_docs = [floor_document(self.source_id, lead_body(n), now) for n in numbers]
            rules_docs = [{**floor_doc, **self.rules.index_fields(lead, tx, now)}
                          for floor_doc, (lead, tx) in zip(floor_docs, leads, strict=True)]
            if mode == "bulk":
                results = self.repository.store_many(self.source, leads, now)
                assert all(r.lead_status == "accept" for r in results)
                self.floors["floor"].insert_many(floor_docs)
                self.floors["floor_rules"].insert_many(rules_docs)
            else:
                for (lead, tx), floor_doc, rules_doc in zip(leads, floor_docs, rules_docs, strict=True):
                    result = self.repository.store(self.source, lead, tx, now)
                    assert result.lead_status == "accept", result
                    self.floors["floor"].insert_one(floor_doc)
                    self.floors["floor_rules"].insert_one(rules_doc)
            added += len(numbers)
            self.stored = numbers[-1] + 1
        return added

    def request_body(self, path: str) -> bytes:
        n, self.next_n = self.next_n, self.next_n + 1
        body = lead_body(n)
        if path == "duplicate":  # email of a stored lead, spread over the whole index
            body["email"] = f"lead{(n * 7919) % self.stored}@example.com"
        elif path == "reject":
            body["zip_code"] = "1234"
        elif path == "floor_rules":
            self.rules_fields[body["transaction_id"]] = self.rules.index_fields(
                valid_lead(n), body["transaction_id"], utc_now())
        elif path in PING_PATHS:
            ping: dict[str, Any] = {"email": body["email"], "mobile": body["mobile"]}
            if path == "ping_hold":
                ping["hold_seconds"] = 60
            return json.dumps(ping).encode()
        elif path == "post_ping":  # hold the consumer first (not timed), then post with the ping_id
            claims = {rule: claim for rule, claim in lead_claims(self.source, "-", valid_lead(n)).items()
                      if rule != "transaction_id"}
            held = self.repository.ping(self.source, claims, 60, utc_now(), max_holds=Settings.max_live_holds)
            assert held.ping_id is not None, held
            body["ping_id"] = held.ping_id
        return json.dumps(body).encode()

    def run(self, path: str, count: int, record: bool) -> list[ObjectId]:
        """``count`` requests on ``path``; returns the ids of what they stored."""
        url = FLOOR_URLS.get(path, self.ping_url if path in PING_PATHS else self.url)
        headers = self.headers
        if path == "accept_capped":
            if self.capped_stored + count > MAX_CAP_LEADS:
                self.new_capped_source()
            self.capped_stored += count
            url, headers = self.capped_url, self.capped_headers
        elif path == "accept_listed":
            url, headers = self.listed_url, self.listed_headers
        status, lead_status = EXPECTED[path]
        stored, timings, total = [], self.latencies[path], 0
        for _ in range(count):
            body = self.request_body(path)
            start = time.perf_counter_ns()
            response = self.client.post(url, data=body, headers=headers, content_type="application/json")
            elapsed = time.perf_counter_ns() - start
            answer = response.get_json()
            if response.status_code != status or (lead_status and answer["data"]["lead_status"] != lead_status):
                raise RuntimeError(f"{path}: unexpected answer {response.status_code} {answer}")
            if record:
                timings.append(elapsed)
                total += elapsed
            for key in ("lead_id", "ping_id"):  # a ping's hold is a document too
                if key in answer["data"]:
                    stored.append(ObjectId(answer["data"][key]))
        if record:
            self.round_ns[path].append((count, total))
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
            kept = [*stored["accept"], *stored["ping_hold"], *stored["post_ping"]]
            self.db[Settings.leads_collection].delete_many({"_id": {"$in": kept}})
            done, turn = done + count, turn + 1

    def reset_measurements(self) -> None:
        self.latencies = {path: [] for path in PATHS}
        self.round_ns = {path: [] for path in PATHS}


def percentile(sorted_ns: list[int], q: float) -> float:
    return sorted_ns[max(0, math.ceil(q * len(sorted_ns)) - 1)] / 1000


def summarize(latencies: list[int], rounds: list[tuple[int, int]]) -> dict[str, float]:
    """p50/p99 per request; req/s as the median over the rounds of each round's throughput."""
    ordered = sorted(latencies)
    return {"p50_us": percentile(ordered, 0.50), "p99_us": percentile(ordered, 0.99),
            "rps": statistics.median(count * 1e9 / ns for count, ns in rounds),
            "rps_mean": len(ordered) * 1e9 / sum(ordered), "rounds": len(rounds), "requests": len(ordered)}


def rss_now_mb() -> float | None:
    """Current RSS (Linux only)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize() / 1e6
    except OSError:
        return None


def peak_rss_mb() -> float:
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e6


def measure(sizes: list[int], per_path: int, warmup: int, fill: str, log: Callable[[str], None],
            server: str = "process", pin: bool = False) -> dict[str, Any]:
    with open_database(server, pin) as (db, backend, server_pid):
        bench = Bench(db)
        sizes_out: list[dict[str, Any]] = []
        for size in sizes:
            started = time.perf_counter()
            added = bench.fill(size, fill)
            fill_seconds = time.perf_counter() - started
            log(f"size {size:,}: {added:,} leads added ({fill} fill) in {fill_seconds:.0f}s; "
                f"measuring {per_path} req/path")
            bench.rounds(warmup, record=False)
            bench.reset_measurements()
            gc.collect()
            started, rss_before = time.perf_counter(), rss_now_mb()
            bench.rounds(per_path)
            gc.collect()
            rss_after = rss_now_mb()
            paths = {path: summarize(bench.latencies[path], bench.round_ns[path]) for path in PATHS}
            for path in PATHS[1:]:
                paths[path]["rps_ratio"] = paths[path]["rps"] / paths["floor"]["rps"]
                paths[path]["p50_ratio"] = paths[path]["p50_us"] / paths["floor"]["p50_us"]
            for path in PATHS[2:]:
                paths[path]["rps_ratio_rules"] = paths[path]["rps"] / paths["floor_rules"]["rps"]
                paths[path]["p50_ratio_rules"] = paths[path]["p50_us"] / paths["floor_rules"]["p50_us"]
            sizes_out.append({
                "size": size, "paths": paths, "peak_rss_mb": peak_rss_mb(),
                "server_rss_mb": None if server_pid is None else rss_mb(server_pid),
                "requests_rss_delta_mb": None if rss_after is None or rss_before is None else rss_after - rss_before,
                "fill": {"mode": fill, "leads_added": added, "seconds": fill_seconds,
                         "ms_per_lead": 1000 * fill_seconds / added if added else None},
                "seconds": time.perf_counter() - started})
        rules = bench.rules.describe()
    first, last = sizes_out[0], sizes_out[-1]
    growth = {path: last["paths"][path]["p50_us"] / first["paths"][path]["p50_us"] for path in PATHS}
    return {"backend": backend, "server": server, "pinned": "on CPU" in backend, "fill": fill,
            "requests_per_path": per_path, "round": ROUND, "floor_rules": rules, "sizes": sizes_out,
            "p50_growth": growth, "rss_growth_mb": last["peak_rss_mb"] - first["peak_rss_mb"]}


def checks(result: dict[str, Any]) -> list[dict[str, Any]]:
    sizes = result["sizes"]
    first, last = sizes[0]["size"], sizes[-1]["size"]
    worst_rules = min(s["paths"]["accept"]["rps_ratio_rules"] for s in sizes)
    dup = min(s["paths"]["duplicate"]["rps"] / s["paths"]["accept"]["rps"] for s in sizes)
    growth = result["p50_growth"]["accept"]
    # RSS the measured request loop adds, at the last size versus the first: the endpoint's own
    # memory per loop.  The stored data (filled before the loop) is not in it; peak RSS is.
    deltas = [s["requests_rss_delta_mb"] for s in sizes]
    rss = None if None in deltas else deltas[-1] - deltas[0]

    def check(key: str, target: str, ok: bool, value: str) -> dict[str, Any]:
        return {"key": key, "target": target, "pass": ok, "value": value}

    return [
        check("accept_vs_floor_rules", f"accept req/s >= {ACCEPT_VS_RULES} x floor_rules req/s "
              "(medians of rounds, worst size)", worst_rules >= ACCEPT_VS_RULES, f"{worst_rules:.2f} x floor_rules"),
        check("duplicate_vs_accept", "duplicate req/s >= accept req/s (medians of rounds, worst size)",
              dup >= 1.0, f"duplicate/accept = {dup:.2f}"),
        check("accept_p50_growth", f"accept p50 @{last:,} <= {GROWTH_LIMIT} x p50 @{first:,} "
              f"({result['fill']}-write fill)", growth <= GROWTH_LIMIT, f"growth {growth:.2f}x"),
        check("memory_flat", f"RSS the measured requests add @{last:,} <= the same @{first:,} + {RSS_LIMIT_MB:.0f} MB "
              "(memory flat)", rss is not None and rss <= RSS_LIMIT_MB,
              "n/a" if rss is None else f"{rss:+.1f} MB"),
    ]


def table(result: dict[str, Any]) -> str:
    lines = [f"backend: {result['backend']}; {result['fill']}-write fill; {result['requests_per_path']} requests "
             f"per path per size, interleaved in rounds of {result['round']}; req/s = median of the rounds",
             "floor_rules indexes (from LEAD_INDEXES): " + "; ".join(
                 f"{name} {spec['keys']} {spec['options']}" for name, spec in result["floor_rules"]["indexes"].items()),
             f"{'size':>8} {'path':<13} {'p50 µs':>9} {'p99 µs':>9} {'req/s':>8} {'÷floor_rules':>13} "
             f"{'p50÷rules':>10} {'÷floor':>7} {'peak RSS MB':>12} {'RSS Δ in requests MB':>21}"]
    for entry in result["sizes"]:
        for path in PATHS:
            row = entry["paths"][path]
            rules = (f"{row['rps_ratio_rules']:>13.2f} {row['p50_ratio_rules']:>10.2f}" if "rps_ratio_rules" in row
                     else f"{'-':>13} {'-':>10}")
            floor = f"{row['rps_ratio']:>7.2f}" if "rps_ratio" in row else f"{'-':>7}"
            delta = entry["requests_rss_delta_mb"]
            rss = (f"{entry['peak_rss_mb']:>12.0f} {'n/a' if delta is None else f'{delta:+.1f}':>21}"
                   if path == "floor" else "")
            lines.append(f"{entry['size']:>8,} {path:<13} {row['p50_us']:>9.0f} {row['p99_us']:>9.0f} "
                         f"{row['rps']:>8.0f} {rules} {floor} {rss}".rstrip())
    first, last = result["sizes"][0]["size"], result["sizes"][-1]["size"]
    lines.append(f"p50 growth {first:,} -> {last:,}: "
                 + ", ".join(f"{path} {g:.2f}x" for path, g in result["p50_growth"].items()))
    lines.append("fill: " + "; ".join(
        f"@{entry['size']:,} {entry['fill']['leads_added']:,} leads in {entry['fill']['seconds']:.0f}s"
        for entry in result["sizes"]))
    lines.append(f"peak RSS growth {first:,} -> {last:,}: {result['rss_growth_mb']:+.1f} MB "
                 "(includes the stored data when the database server runs in-process)")
    server_rss = [entry["server_rss_mb"] for entry in result["sizes"]]
    if None not in server_rss:
        lines.append("database server's own RSS: " + ", ".join(
            f"@{entry['size']:,} {rss:.0f} MB" for entry, rss in zip(result["sizes"], server_rss, strict=True)))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", help="stored-lead counts, comma-separated (default 1000,10000,100000)")
    parser.add_argument("--requests", type=int, help="measured requests per path per size (default 10000)")
    parser.add_argument("--fill", choices=FILL_MODES, default="single",
                        help="fill the collections with one insert per lead (default) or in bulk")
    parser.add_argument("--server", choices=SERVER_MODES, default="process",
                        help="SecantusDB in a process of its own (default) or in this one; ignored with MONGODB_URI")
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                        help="with --server process: the server on its own CPU, this process on the others "
                             "(default on; needs 2+ CPUs)")
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

    result = measure(sizes, per_path, warmup=min(per_path, 2 * ROUND), fill=args.fill, log=log, server=args.server,
                     pin=args.pin)
    result["checks"] = checks(result)
    print(table(result), file=out)
    for check in result["checks"]:
        print(f"{'PASS' if check['pass'] else 'FAIL'}  {check['target']}: {check['value']}", file=out)
    if args.json:
        print(json.dumps(result, indent=2))
    failed = not all(check["pass"] for check in result["checks"])
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    sys.exit(main())
