"""Deduplication inside a window of days: an expired match never blocks."""

from __future__ import annotations

from typing import Any

from pingtree_leads import create_source

from .conftest import FakeClock, Poster, assert_envelope, lead, make_app


def windowed(database: Any, clock: FakeClock, days: float = 30, **kwargs: Any) -> Poster:
    src = create_source(database, "Windowed", dedupe_window_days=days, clock=clock, **kwargs)
    return Poster(make_app(database, clock=clock).test_client(), database, src)


def test_match_inside_the_window_is_duplicate(database: Any, clock: FakeClock) -> None:
    p = windowed(database, clock)
    assert_envelope(p.post(lead(email="w@example.com")), 201)
    clock.advance(days=29, hours=23)
    data = assert_envelope(p.post(lead(email="w@example.com")), 201)
    assert data["lead_status"] == "duplicate" and data["matched_on"] == ["email"]
    assert p.count() == 1


def test_match_outside_the_window_is_accepted_and_then_blocks(database: Any, clock: FakeClock) -> None:
    p = windowed(database, clock)
    assert_envelope(p.post(lead(email="w@example.com", mobile="5557654321")), 201)
    clock.advance(days=30, seconds=1)
    data = assert_envelope(p.post(lead(email="w@example.com", mobile="5557654321")), 201)
    assert data["lead_status"] == "accept"
    assert p.count() == 2
    # The new lead now holds the claim: a third post inside its window is a duplicate.
    clock.advance(days=1)
    data = assert_envelope(p.post(lead(email="w@example.com")), 201)
    assert data["lead_status"] == "duplicate"
    assert p.count() == 2


def test_expired_email_but_live_mobile_match_is_duplicate(database: Any, clock: FakeClock) -> None:
    p = windowed(database, clock)
    assert_envelope(p.post(lead(email="old@example.com", mobile="5550000001")), 201)
    clock.advance(days=31)
    assert_envelope(p.post(lead(email="new@example.com", mobile="5550000002")), 201)
    # email matches the expired lead, mobile the live one.
    data = assert_envelope(p.post(lead(email="old@example.com", mobile="5550000002")), 201)
    assert data["lead_status"] == "duplicate" and data["matched_on"] == ["mobile"]
    assert p.count() == 2


def test_forever_window_never_expires(database: Any, clock: FakeClock) -> None:
    src = create_source(database, "Forever", clock=clock)
    p = Poster(make_app(database, clock=clock).test_client(), database, src)
    assert_envelope(p.post(lead(email="f@example.com")), 201)
    clock.advance(days=3650)
    assert assert_envelope(p.post(lead(email="f@example.com")), 201)["lead_status"] == "duplicate"


def test_replay_outside_the_window_is_still_a_replay(database: Any, clock: FakeClock) -> None:
    p = windowed(database, clock, days=1)
    body = lead(transaction_id="late-retry")
    first = assert_envelope(p.post(body), 201)
    clock.advance(days=5)
    data = assert_envelope(p.post(body), 201)
    assert data["replayed"] is True and data["lead_id"] == first["lead_id"]
    assert p.count() == 1
