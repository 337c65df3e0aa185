"""Dedupe windows at their edges, down to the microsecond (BSON keeps milliseconds)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pingtree_leads import create_source
from pingtree_leads.repository import stored_cutoff, stored_time

from .conftest import FakeClock, Poster, assert_envelope, lead, make_app
from .test_fuzz import FIXTURE_OK

NOON = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)


def windowed(database: Any, clock: FakeClock, days: float) -> Poster:
    src = create_source(database, "Edges", dedupe_window_days=days, clock=clock)
    return Poster(make_app(database, clock=clock).test_client(), database, src)


@pytest.mark.parametrize(("after", "expected"), [
    (timedelta(days=1, microseconds=1), "accept"),      # the case: used to end in 503
    (timedelta(days=1), "accept"),                       # stored at .123, so the window ended at .123
    (timedelta(days=1, microseconds=-456), "duplicate"),  # exactly at the stored end: still inside
    (timedelta(days=1, microseconds=-457), "duplicate"),
    (timedelta(days=1, microseconds=544), "accept"),
])
def test_a_lead_just_past_its_window_is_decided_normally(
    database: Any, after: timedelta, expected: str
) -> None:
    clock = FakeClock()
    clock.now = NOON
    p = windowed(database, clock, days=1)
    assert_envelope(p.post(lead(email="edge@example.com", mobile="5550001111")), 201)
    clock.now = NOON + after
    data = assert_envelope(p.post(lead(email="edge@example.com", mobile="5550001111")), 201)
    assert data["lead_status"] == expected
    assert p.count() == (2 if expected == "accept" else 1)


def test_stored_precision_helpers() -> None:
    assert stored_time(NOON) == NOON.replace(microsecond=123000)
    assert stored_cutoff(NOON) == NOON.replace(microsecond=124000)
    exact = NOON.replace(microsecond=123000)
    assert stored_cutoff(exact) == exact
    assert stored_cutoff(None) is None


@settings(FIXTURE_OK, max_examples=30)
@given(
    start_us=st.integers(0, 999_999),
    days=st.sampled_from([1, 0.5, 30, 1 / 86400]),
    offset_us=st.integers(-3000, 3000),
)
def test_window_edges_property(database: Any, start_us: int, days: float, offset_us: int) -> None:
    """duplicate exactly when the stored lead is at or after (now - window); never a 503."""
    clock = FakeClock()
    clock.now = NOON.replace(microsecond=start_us)
    p = windowed(database, clock, days=days)
    email = f"edge-{uuid.uuid4().hex[:10]}@example.com"
    assert_envelope(p.post(lead(email=email)), 201)
    stored_at = stored_time(clock.now)
    clock.now = clock.now + timedelta(days=days) + timedelta(microseconds=offset_us)
    response = p.post(lead(email=email))
    data = assert_envelope(response, 201)
    inside = stored_at >= clock.now - timedelta(days=days)
    assert data["lead_status"] == ("duplicate" if inside else "accept")
