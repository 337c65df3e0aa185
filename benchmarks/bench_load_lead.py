"""Does ``LeadSchema.load_lead`` still earn its cost over marshmallow's own ``Schema.load``?

Both load the same lead with the same schema (the endpoint's, built once), interleaved
in rounds so machine noise hits both alike; prints µs per load and the ratio.  The
answer decides whether the library keeps its own flat loader (docs/performance.md).

    .venv/bin/python benchmarks/bench_load_lead.py [--rounds 20] [--number 2000]
"""

from __future__ import annotations

import argparse
import statistics
import timeit
from typing import Any

from marshmallow import Schema

from pingtree_leads.schemas import normalize_input, schema_for
from pingtree_leads.settings import Settings

LEAD = {
    "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com", "mobile": "5125550143",
    "address": "12 Analytical Row", "city": "New York", "state": "NY", "zip_code": "10001",
    "date_of_birth": "1990-12-10", "transaction_id": "tx-1", "utm_source": "spring",
    "xxTrustedFormCertUrl": "https://cert.trustedform.com/abc",
}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--number", type=int, default=2000)
    args = parser.parse_args(argv)
    schema = schema_for(("email", "mobile"), Settings())
    data = normalize_input(LEAD)
    assert Schema.load(schema, data) == schema.load_lead(data)  # the same lead either way
    loads: dict[str, Any] = {"load_lead": lambda: schema.load_lead(data),
                             "Schema.load": lambda: Schema.load(schema, data)}
    samples: dict[str, list[float]] = {name: [] for name in loads}
    for _ in range(args.rounds):
        for name, load in loads.items():
            samples[name].append(timeit.timeit(load, number=args.number) / args.number * 1e6)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    for name, value in medians.items():
        print(f"{name:12} {value:7.1f} µs per load (median of {args.rounds} rounds of {args.number})")
    print(f"load_lead / Schema.load = {medians['load_lead'] / medians['Schema.load']:.2f}")
    return medians


if __name__ == "__main__":
    main()
