"""The library's own Python per request: the endpoint against ``floor_rules`` with the insert stubbed out.

Command (from the repository root, with the ``test`` extra installed)::

    python benchmarks/bench_python_cost.py [--rounds 40] [--requests 200] [--json]

The same app, routes and requests as ``bench_create_lead.py`` (its ``Bench``), on an
in-process SecantusDB used only to create the source and the indexes; then
``Collection.insert_one`` is replaced by a stub that sets ``_id`` and returns, so no
request waits on a database. What is left is Python: the test client and Flask (the
same for every path), the floor route's few lines, and the library's own work (bearer
check, body, validation, claims and fingerprint, answer). Paths ``floor_rules``,
``accept`` and ``reject`` alternate in rounds of ``--requests`` posts (bodies built
before the clock starts); per path the **least mean per request over the rounds** is
kept, the figure noise can only raise. Printed: those means and
``accept - floor_rules``, the library's Python per accepted lead (no target: the
headline ratio is ``bench_create_lead.py``'s; this one says where it comes from).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from bench_create_lead import FLOOR_URLS, Bench, open_database
from bson import ObjectId
from pymongo.collection import Collection
from pymongo.results import InsertOneResult

PATHS = ("floor_rules", "accept", "reject")


def stub_insert_one(self: Collection[Any], document: dict[str, Any], *args: Any, **kwargs: Any) -> InsertOneResult:
    document.setdefault("_id", ObjectId())
    return InsertOneResult(document["_id"], True)


def measure(rounds: int, requests: int) -> dict[str, float]:
    with open_database("in-process") as (db, _backend, _pid):
        bench = Bench(db)
        bench.fill(200)
        real = Collection.insert_one
        Collection.insert_one = stub_insert_one  # type: ignore[method-assign]
        try:
            best = {path: float("inf") for path in PATHS}
            for _ in range(rounds):
                for path in PATHS:
                    bodies = [bench.request_body(path) for _ in range(requests)]
                    url = FLOOR_URLS.get(path, bench.url)
                    started = time.perf_counter_ns()
                    for body in bodies:
                        response = bench.client.post(url, data=body, headers=bench.headers,
                                                     content_type="application/json")
                        if response.status_code not in (201, 400):
                            raise RuntimeError(f"{path}: unexpected answer {response.status_code}")
                    best[path] = min(best[path], (time.perf_counter_ns() - started) / requests / 1000)
        finally:
            Collection.insert_one = real  # type: ignore[method-assign]
    return {**{f"{path}_us": best[path] for path in PATHS}, "library_us": best["accept"] - best["floor_rules"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=40, help="rounds per path (default 40)")
    parser.add_argument("--requests", type=int, default=200, help="posts per path per round (default 200)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.requests < 1:
        parser.error("--rounds and --requests must be positive")
    result = measure(args.rounds, args.requests)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"insert stubbed; least mean per request over {args.rounds} rounds of {args.requests}:")
        for path in PATHS:
            print(f"  {path:<12} {result[f'{path}_us']:7.1f} µs")
        print(f"accept - floor_rules (the library's Python per accepted lead): {result['library_us']:.1f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
