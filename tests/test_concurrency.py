"""Races on a real server: the unique indexes decide, never a read-then-write."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask

from pingtree_leads import create_source

from .conftest import FakeClock, Poster, lead, make_app


def race(app: Flask, src: Any, bodies: list[dict[str, Any]], threads: int) -> list[Any]:
    """Post every body from ``threads`` threads, released together; returns (status, data) pairs."""
    start = threading.Barrier(threads)
    url = f"/api/lead/create/{src.id}"
    headers = {"Authorization": f"Bearer {src.api_key}"}
    chunks = [bodies[i::threads] for i in range(threads)]

    def worker(chunk: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
        client = app.test_client()
        start.wait()
        out = []
        for body in chunk:
            response = client.post(url, json=body, headers=headers)
            out.append((response.status_code, response.get_json()["data"]))
        return out

    with ThreadPoolExecutor(threads) as pool:
        return [item for part in pool.map(worker, chunks) for item in part]


def warm(app: Flask, src: Any) -> None:
    """Indexes and source cache in place, as in a running server."""
    Poster(app.test_client(), None, src).post(lead())


def test_16_identical_posts_store_exactly_one(real_database: Any) -> None:
    src = create_source(real_database, "Race")
    app = make_app(real_database)
    warm(app, src)
    body = lead(email="race@example.com")
    results = race(app, src, [dict(body) for _ in range(16)], threads=16)
    assert all(status == 201 for status, _ in results)
    assert Counter(data["lead_status"] for _, data in results) == {"accept": 1, "duplicate": 15}
    assert real_database["leads"].count_documents({"email": "race@example.com"}) == 1


def test_16_posts_with_one_transaction_id_store_exactly_one(real_database: Any) -> None:
    src = create_source(real_database, "Race txn", dedupe_fields=[])
    app = make_app(real_database)
    warm(app, src)
    body = lead(transaction_id="same-txn")
    results = race(app, src, [dict(body) for _ in range(16)], threads=16)
    assert all(status == 201 for status, _ in results)
    assert [data["lead_status"] for _, data in results] == ["accept"] * 16
    assert sum(1 for _, data in results if data.get("replayed")) == 15
    assert len({data["lead_id"] for _, data in results}) == 1
    assert real_database["leads"].count_documents({"transaction_id": "same-txn"}) == 1


def test_8_threads_by_50_distinct_leads_store_all_400(real_database: Any) -> None:
    src = create_source(real_database, "Many")
    app = make_app(real_database)
    bodies = [lead(email=f"many{i}@example.com", mobile=f"555{i:07d}") for i in range(400)]
    results = race(app, src, bodies, threads=8)
    assert Counter(data["lead_status"] for _, data in results) == {"accept": 400}
    assert real_database["leads"].count_documents({}) == 400
    assert len({data["lead_id"] for _, data in results}) == 400


def test_racing_over_an_expired_match_stores_exactly_one(real_database: Any) -> None:
    clock = FakeClock()
    src = create_source(real_database, "Expiring", dedupe_window_days=7, clock=clock)
    app = make_app(real_database, clock=clock)
    Poster(app.test_client(), real_database, src).post(lead(email="old@example.com"))
    clock.advance(days=8)
    results = race(app, src, [lead(email="old@example.com") for _ in range(16)], threads=16)
    assert Counter(data["lead_status"] for _, data in results) == {"accept": 1, "duplicate": 15}
    assert real_database["leads"].count_documents({"email": "old@example.com"}) == 2
