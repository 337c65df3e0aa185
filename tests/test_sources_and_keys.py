"""Provisioning, key storage, rotation grace and the source cache."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest
from bson import ObjectId

from pingtree_leads import create_source, rotate_api_key, set_source_active
from pingtree_leads.keys import key_matches
from pingtree_leads.sources import SourceConfig

from .conftest import FakeClock, Poster, assert_envelope, lead, make_app


def test_create_source_returns_id_and_key_and_stores_only_a_hash(database: Any) -> None:
    src = create_source(database, "Home Insurance Q1", required_fields=["email", "mobile"],
                        dedupe_fields=["email"], dedupe_window_days=30, is_active=True)
    assert len(src.id) == 24 and ObjectId(src.id)
    assert src.api_key.startswith("ptl_") and len(src.api_key) > 40
    doc = database["database_sources"].find_one({"_id": ObjectId(src.id)})
    assert doc["name"] == "Home Insurance Q1"
    assert doc["required_fields"] == ["email", "mobile"]
    assert doc["dedupe_fields"] == ["email"]
    assert doc["dedupe_window_days"] == 30
    assert doc["is_active"] is True
    assert doc["api_keys"] == [{"hash": hashlib.sha256(src.api_key.encode()).hexdigest(), "expires_at": None}]
    assert src.api_key not in repr(doc)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"required_fields": ["email", "shoe_size"]},
        {"dedupe_fields": ["phone"]},  # an alias: dedupe on mobile
        {"dedupe_fields": ["1abc"]},
        {"dedupe_fields": ["transaction_id"]},
        {"dedupe_fields": ["ping_id"]},
        {"dedupe_fields": ["email_sha256"]},
        {"dedupe_fields": ["a", "b", "c", "d", "e", "f"]},  # more than MAX_DEDUPE_FIELDS
        {"dedupe_window_days": 0},
        {"dedupe_window_days": -3},
    ],
)
def test_create_source_rejects_bad_config(database: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        create_source(database, "Bad", **kwargs)
    assert database["database_sources"].count_documents({}) == 0


def test_create_source_needs_a_name(database: Any) -> None:
    with pytest.raises(ValueError):
        create_source(database, "   ")


def test_rotation_without_grace_kills_the_old_key_at_once(database: Any) -> None:
    src = create_source(database, "Rotating")
    client = make_app(database, source_cache_seconds=0).test_client()
    old = Poster(client, database, src)
    assert_envelope(old.post(lead()), 201)
    new_key = rotate_api_key(database, src.id)
    assert new_key != src.api_key
    assert_envelope(old.post(lead()), 401)
    new = Poster(client, database, src)
    new.headers = {"Authorization": f"Bearer {new_key}"}
    assert_envelope(new.post(lead()), 201)


def test_rotation_grace_edges(database: Any) -> None:
    clock = FakeClock()
    src = create_source(database, "Graceful", clock=clock)
    new_key = rotate_api_key(database, src.id, grace_seconds=60, clock=clock)
    client = make_app(database, source_cache_seconds=0, clock=clock).test_client()
    old = Poster(client, database, src)
    new = Poster(client, database, src)
    new.headers = {"Authorization": f"Bearer {new_key}"}

    clock.advance(seconds=59)
    assert_envelope(old.post(lead()), 201)  # inside the grace period both keys work
    assert_envelope(new.post(lead()), 201)
    clock.advance(seconds=1)
    assert_envelope(old.post(lead()), 401)  # at the end of the grace, only the new one
    assert_envelope(new.post(lead()), 201)


def test_second_rotation_caps_earlier_grace(database: Any) -> None:
    clock = FakeClock()
    src = create_source(database, "Twice", clock=clock)
    rotate_api_key(database, src.id, grace_seconds=3600, clock=clock)
    latest = rotate_api_key(database, src.id, grace_seconds=0, clock=clock)
    doc = database["database_sources"].find_one({"_id": ObjectId(src.id)})
    assert [k["hash"] for k in doc["api_keys"]] == [hashlib.sha256(latest.encode()).hexdigest()]


def test_rotating_an_unknown_source_fails(database: Any) -> None:
    with pytest.raises(LookupError):
        rotate_api_key(database, str(ObjectId()))
    with pytest.raises(LookupError):
        rotate_api_key(database, "not-an-id")
    with pytest.raises(LookupError):
        set_source_active(database, str(ObjectId()), False)


def test_rotation_in_this_process_takes_effect_at_once_despite_the_cache(database: Any) -> None:
    src = create_source(database, "Cached")
    p = Poster(make_app(database, source_cache_seconds=3600).test_client(), database, src)
    assert_envelope(p.post(lead()), 201)  # the source is now cached
    new_key = rotate_api_key(database, src.id)
    assert_envelope(p.post(lead()), 401)
    p.headers = {"Authorization": f"Bearer {new_key}"}
    assert_envelope(p.post(lead()), 201)
    set_source_active(database, src.id, False)
    assert_envelope(p.post(lead()), 403)


def test_a_change_made_by_another_process_is_seen_within_the_cache_time(database: Any) -> None:
    src = create_source(database, "Elsewhere")
    p = Poster(make_app(database, source_cache_seconds=0.3).test_client(), database, src)
    assert_envelope(p.post(lead()), 201)  # the source is now cached
    # Another process deactivates it: a direct write, which no cache of ours hears of.
    database["database_sources"].update_one({"_id": ObjectId(src.id)}, {"$set": {"is_active": False}})
    assert_envelope(p.post(lead()), 201)  # still trusted from the cache ...
    time.sleep(0.4)
    assert_envelope(p.post(lead()), 403)  # ... and not after its time


def test_unknown_source_ids_are_not_cached(database: Any) -> None:
    client = make_app(database, source_cache_seconds=3600).test_client()
    src = create_source(database, "Late")
    sources = database["database_sources"]
    doc = sources.find_one_and_delete({"_id": ObjectId(src.id)})
    p = Poster(client, database, src)
    assert_envelope(p.post(lead()), 401)  # no such source yet
    sources.insert_one(doc)
    # Created afterwards, it works at once despite the long cache time.
    assert_envelope(p.post(lead()), 201)


def test_key_matches_checks_every_hash_and_expiry(clock: FakeClock) -> None:
    def config(*pairs: tuple[str, Any]) -> SourceConfig:
        return SourceConfig(ObjectId(), "s", True, (), (), None, tuple(pairs))

    good = hashlib.sha256(b"good").hexdigest()
    assert key_matches("good", config((good, None)), clock())
    assert not key_matches("bad", config((good, None)), clock())
    assert not key_matches("good", None, clock())
    assert not key_matches("", config((good, None)), clock())
    assert key_matches("good", config(("f" * 64, None), (good, clock.now.replace(year=clock.now.year + 1))), clock())
    assert not key_matches("good", config((good, clock.now)), clock())
