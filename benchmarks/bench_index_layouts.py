"""What the server charges per index: direct pymongo inserts into differently indexed collections.

Command (from the repository root, with the ``test`` extra installed)::

    python benchmarks/bench_index_layouts.py [--requests N] [--json]

No Flask, no validation: only the database's side of an accepted lead, so that
the gap between the endpoint and the one-index floor can be split into what the
rules cost the server and what the library's Python costs.  One server
(SecantusDB in-process and standalone, or ``MONGODB_URI``), 2,000 documents
pre-filled per collection, then ``--requests`` single ``insert_one`` calls per
layout in rounds of 100, the layouts' order rotating.  Layouts:

* ``floor``: the benchmark's floor document, one unique ``(source_id, email)``;
* ``floor_plus_2_plain``: the same plus two non-unique single-field indexes;
* ``library``: the document ``LeadRepository`` stores, with ``LEAD_INDEXES`` (one unique
  multikey ``(source_id, claims)``: the transaction claim and the email and mobile claims);
* ``library_without_twins``: the same without the hold twins (``~<field>:<hash>``) that
  pre-ping holds need: what the twins cost;
* ``layout_0_1``: the layout before claims (unique ``(source_id, transaction_id)``,
  sparse unique ``dedupe.email`` and ``dedupe.mobile``): not shard-ready;
* ``claims_plus_transaction``: the claims index without the transaction claim, beside a
  unique ``(source_id, transaction_id)``;
* ``slots_4``: shard-ready without a multikey index: ``(source_id, transaction_id)`` and
  four ``(source_id, slot_i)`` indexes, unused slots filled with a per-lead filler
  (what plain mongomock could enforce);
* ``library_duplicate``: an insert the claims index refuses (a stored email), which is
  all a duplicate costs a source without a dedupe window.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_create_lead import floor_document, lead_body, open_database, valid_lead  # noqa: E402

from pingtree_leads.repository import HOLD_PREFIX, LEAD_INDEXES, LeadRepository  # noqa: E402
from pingtree_leads.settings import utc_now  # noqa: E402
from pingtree_leads.sources import SourceConfig  # noqa: E402

ROUND = 100
PREFILL = 2000
Doc = dict[str, Any]
SOURCE = SourceConfig.from_document({"_id": ObjectId(), "name": "bench", "dedupe_fields": ["email", "mobile"]})


def library_doc(n: int) -> Doc:
    lead = valid_lead(n)
    assert lead.transaction_id is not None
    doc = LeadRepository._document(SOURCE, lead, lead.transaction_id, utc_now())
    doc["_id"] = ObjectId()
    return doc


def without_twins_doc(n: int) -> Doc:
    doc = library_doc(n)
    doc["claims"] = [c for c in doc["claims"] if not c.startswith(HOLD_PREFIX)]
    return doc


def layout_0_1_doc(n: int) -> Doc:
    doc = without_twins_doc(n)
    claims = doc.pop("claims")
    doc["dedupe"] = {c.split(":", 1)[0]: c.split(":", 1)[1] for c in claims if not c.startswith("-")}
    return doc


def claims_plus_transaction_doc(n: int) -> Doc:
    doc = without_twins_doc(n)
    doc["claims"] = [c for c in doc["claims"] if not c.startswith("-")]
    return doc


def slots_doc(n: int) -> Doc:
    doc = without_twins_doc(n)
    claims = [c for c in doc.pop("claims") if not c.startswith("-")]
    for i in range(SLOTS):
        doc[f"slot_{i}"] = claims[i] if i < len(claims) else f"-{doc['transaction_id']}"
    return doc


SLOTS = 4
Index = tuple[list[tuple[str, int]], dict[str, Any]]
TRANSACTION: Index = ([("source_id", ASCENDING), ("transaction_id", ASCENDING)], {"unique": True})
LAYOUTS: dict[str, tuple[Callable[[int], Doc], list[Index]]] = {
    "floor": (lambda n: floor_document(SOURCE.id, lead_body(n), utc_now()),
              [([("source_id", ASCENDING), ("email", ASCENDING)], {"unique": True})]),
    "floor_plus_2_plain": (lambda n: floor_document(SOURCE.id, lead_body(n), utc_now()),
                           [([("source_id", ASCENDING), ("email", ASCENDING)], {"unique": True}),
                            ([("mobile", ASCENDING)], {}), ([("transaction_id", ASCENDING)], {})]),
    "library": (library_doc, list(LEAD_INDEXES.values())),
    "library_without_twins": (without_twins_doc, list(LEAD_INDEXES.values())),
    "layout_0_1": (layout_0_1_doc, [TRANSACTION, *(([(f"dedupe.{f}", ASCENDING)], {"unique": True, "sparse": True})
                                                   for f in ("email", "mobile"))]),
    "claims_plus_transaction": (claims_plus_transaction_doc,
                                [TRANSACTION, ([("source_id", ASCENDING), ("claims", ASCENDING)], {"unique": True})]),
    "slots_4": (slots_doc, [TRANSACTION, *(([("source_id", ASCENDING), (f"slot_{i}", ASCENDING)], {"unique": True})
                                           for i in range(SLOTS))]),
}


def measure(requests: int) -> dict[str, Any]:
    with open_database() as (db, backend, _server_pid):
        timings: dict[str, list[int]] = {name: [] for name in [*LAYOUTS, "library_duplicate"]}
        for name, (make, indexes) in LAYOUTS.items():
            for keys, options in indexes:
                db[name].create_index(keys, **options)
            db[name].insert_many([make(n) for n in range(PREFILL)])
        names = list(LAYOUTS)
        for turn in range(max(1, requests // ROUND)):
            for name in names[turn % len(names):] + names[: turn % len(names)]:
                make, _ = LAYOUTS[name]
                for i in range(ROUND):
                    doc = make(1_000_000 + turn * ROUND + i)
                    start = time.perf_counter_ns()
                    db[name].insert_one(doc)
                    timings[name].append(time.perf_counter_ns() - start)
            for i in range(ROUND):  # a new transaction id with the email of a stored lead
                doc = library_doc(2_000_000 + turn * ROUND + i)
                stored_email = next(c for c in library_doc(i)["claims"] if c.startswith("email:"))
                doc["claims"] = sorted([c for c in doc["claims"] if not c.startswith("email:")] + [stored_email])
                start = time.perf_counter_ns()
                try:
                    db["library"].insert_one(doc)
                except DuplicateKeyError:
                    pass
                else:
                    raise RuntimeError("the duplicate was stored")
                timings["library_duplicate"].append(time.perf_counter_ns() - start)
    floor_mean = statistics.mean(timings["floor"])
    rows = {name: {"p50_us": statistics.median(t) / 1000, "mean_us": statistics.mean(t) / 1000,
                   "mean_vs_floor": statistics.mean(t) / floor_mean, "inserts": len(t)}
            for name, t in timings.items()}
    return {"backend": backend, "prefill": PREFILL, "layouts": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="inserts per layout (default 2000)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    result = measure(args.requests)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"backend: {result['backend']}; {result['prefill']:,} documents pre-filled per collection")
    print(f"{'layout':<28} {'p50 µs':>8} {'mean µs':>8} {'mean÷floor':>11}")
    for name, row in result["layouts"].items():
        print(f"{name:<28} {row['p50_us']:>8.0f} {row['mean_us']:>8.0f} {row['mean_vs_floor']:>11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
