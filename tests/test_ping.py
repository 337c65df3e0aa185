"""Pre-ping with an atomic hold (contract section 8)."""

from __future__ import annotations

import hashlib
import re
import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from flask import Flask

from pingtree_leads import create_source, find_lead, set_source_active, signals

from .conftest import REAL_BACKENDS, FakeClock, Poster, assert_envelope, lead, make_app
from .test_storage import monitored, server_uri  # noqa: F401  (fixtures)


class Pinger(Poster):
    """A Poster that also pings, and counts leads without the holds."""

    @property
    def ping_url(self) -> str:
        return f"/api/lead/ping/{self.source.id}"

    def ping(self, body: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("headers", self.headers)
        return self.client.post(self.ping_url, json=body, **kwargs)

    def leads(self) -> int:
        return int(self.database["leads"].count_documents({"kind": {"$exists": False}}))

    def holds(self) -> list[dict[str, Any]]:
        return list(self.database["leads"].find({"kind": "hold"}))


def pinger(database: Any, clock: FakeClock, **source: Any) -> Pinger:
    src = create_source(database, "Pinged", clock=clock, **source)
    return Pinger(make_app(database, clock=clock).test_client(), database, src)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- asking ---------------------------------------------------------------------------------------


def test_asking_without_a_hold_reads_and_writes_nothing(database: Any, clock: FakeClock) -> None:
    p = pinger(database, clock)
    assert assert_envelope(p.ping({"email": "new@example.com"}), 200) == {"lead_status": "accept"}
    assert_envelope(p.post(lead(email="old@example.com", mobile="5550001111")), 201)
    data = assert_envelope(p.ping({"email": "OLD@example.com", "zip_code": "1", "whatever": {"x": 1}}), 200)
    assert data == {"lead_status": "duplicate", "matched_on": ["email"]}  # other fields are ignored
    assert assert_envelope(p.ping({"mobile": "5550001111"}), 200)["matched_on"] == ["mobile"]
    assert p.holds() == [] and p.leads() == 1


def test_a_held_accept_blocks_every_other_post_of_the_consumer(database: Any, clock: FakeClock) -> None:
    p = pinger(database, clock)
    held = assert_envelope(p.ping({"email": "c@example.com", "mobile": "5550002222", "hold_seconds": 60}), 200)
    assert held["lead_status"] == "accept" and re.fullmatch(r"[0-9a-f]{24}", held["ping_id"])
    expires = datetime.fromisoformat(held["hold_expires_at"])
    assert expires == clock.now.replace(microsecond=clock.now.microsecond // 1000 * 1000) + timedelta(seconds=60)
    for body in (lead(email="c@example.com"), lead(mobile="5550002222"), lead(email="C@Example.COM")):
        data = assert_envelope(p.post(body), 201)
        assert data["lead_status"] == "duplicate"
    assert assert_envelope(p.ping({"email": "c@example.com", "hold_seconds": 5}), 200)["lead_status"] == "duplicate"
    # The seller's own post, with the ping_id and the same values (and more), takes the hold over.
    body = lead(email="c@example.com", mobile="5550002222", ping_id=held["ping_id"])
    data = assert_envelope(p.post(body), 201)
    assert data["lead_status"] == "accept" and data["lead_id"] == held["ping_id"]
    assert p.holds() == [] and p.leads() == 1
    stored = p.database["leads"].find_one()
    assert "ping_id" not in stored["extra"] and "kind" not in stored
    assert assert_envelope(p.ping({"email": "c@example.com"}), 200)["lead_status"] == "duplicate"


def test_a_ping_id_post_with_other_values_is_decided_as_usual(database: Any, clock: FakeClock) -> None:
    p = pinger(database, clock)
    held = assert_envelope(p.ping({"email": "d@example.com", "mobile": "5550003333", "hold_seconds": 60}), 200)
    # Same email, another mobile: the hold's values are not all the post's, so the hold blocks it.
    data = assert_envelope(p.post(lead(email="d@example.com", mobile="5550009999", ping_id=held["ping_id"])), 201)
    assert data["lead_status"] == "duplicate"
    # A ping_id of nothing live: as if there were no hold.
    other = assert_envelope(p.post(lead(ping_id=str(ObjectId()))), 201)
    assert other["lead_status"] == "accept"
    assert len(p.holds()) == 1


def test_a_ping_id_post_that_ends_409_or_replay_leaves_the_hold(database: Any, clock: FakeClock) -> None:
    p = pinger(database, clock)
    body = lead(email="e1@example.com", transaction_id="tx-e")
    first = assert_envelope(p.post(body), 201)
    held = assert_envelope(p.ping({"email": "e2@example.com", "hold_seconds": 60}), 200)
    conflict = p.post(lead(email="e2@example.com", transaction_id="tx-e", ping_id=held["ping_id"]))
    assert_envelope(conflict, 409)
    assert len(p.holds()) == 1
    replay = assert_envelope(p.post({**body, "ping_id": held["ping_id"]}), 201)
    assert replay["replayed"] is True and replay["lead_id"] == first["lead_id"]
    assert len(p.holds()) == 1
    assert assert_envelope(p.post(lead(email="e2@example.com")), 201)["lead_status"] == "duplicate"


def test_after_expiry_a_hold_counts_for_nothing(database: Any, clock: FakeClock) -> None:
    clock.now = clock.now.replace(microsecond=123456)
    p = pinger(database, clock)
    held = assert_envelope(p.ping({"email": "f@example.com", "hold_seconds": 2}), 200)
    expires = datetime.fromisoformat(held["hold_expires_at"])
    clock.now = expires - timedelta(microseconds=1001)  # before the stored expiry: live
    assert assert_envelope(p.post(lead(email="f@example.com")), 201)["lead_status"] == "duplicate"
    clock.now = expires  # hold_expires_at > now no longer holds
    data = assert_envelope(p.post(lead(email="f@example.com")), 201)
    assert data["lead_status"] == "accept" and p.holds() == []


def test_an_expired_hold_does_not_stop_a_new_one(database: Any, clock: FakeClock) -> None:
    p = pinger(database, clock)
    assert_envelope(p.ping({"email": "g@example.com", "hold_seconds": 1}), 200)
    clock.advance(seconds=2)
    again = assert_envelope(p.ping({"email": "g@example.com", "hold_seconds": 10}), 200)
    assert again["lead_status"] == "accept" and "ping_id" in again
    assert len(p.holds()) == 1


def test_a_ping_meets_a_lead_past_its_window_as_nothing(database: Any, clock: FakeClock) -> None:
    p = pinger(database, clock, dedupe_window_days=1)
    assert_envelope(p.post(lead(email="h@example.com")), 201)
    assert assert_envelope(p.ping({"email": "h@example.com"}), 200)["lead_status"] == "duplicate"
    clock.advance(days=1, seconds=1)
    assert assert_envelope(p.ping({"email": "h@example.com"}), 200)["lead_status"] == "accept"
    held = assert_envelope(p.ping({"email": "h@example.com", "hold_seconds": 30}), 200)
    assert "ping_id" in held
    data = assert_envelope(p.post(lead(email="h@example.com", ping_id=held["ping_id"])), 201)
    assert data["lead_status"] == "accept" and p.leads() == 2


# -- hashes, canonical forms ----------------------------------------------------------------------


def test_hashed_values_match_the_canonical_form(database: Any, clock: FakeClock) -> None:
    p = pinger(database, clock, lenient=True)
    assert_envelope(p.post(lead(email="Anna@BÜCHER.de", mobile="(512) 789-1111")), 201)
    for body in ({"email_sha256": sha("anna@xn--bcher-kva.de")},
                 {"email_sha256": sha("anna@xn--bcher-kva.de").upper()},
                 {"mobile_sha256": sha("5127891111")}):
        data = assert_envelope(p.ping(body), 200)
        assert data["lead_status"] == "duplicate", body
    assert assert_envelope(p.ping({"email_sha256": sha("Anna@BÜCHER.de")}), 200)["lead_status"] == "accept"


def test_a_held_hash_blocks_the_plain_post(database: Any, clock: FakeClock) -> None:
    p = pinger(database, clock)
    held = assert_envelope(p.ping({"email_sha256": sha("i@example.com"), "hold_seconds": "30"}), 200)
    assert assert_envelope(p.post(lead(email="I@example.com")), 201)["lead_status"] == "duplicate"
    assert assert_envelope(p.post(lead(email="i@example.com", ping_id=held["ping_id"])), 201)["lead_status"] == \
        "accept"


def test_a_custom_dedupe_field_can_be_pinged(database: Any, clock: FakeClock) -> None:
    p = pinger(database, clock, dedupe_fields=["customer_id"])
    assert_envelope(p.post(lead(customer_id="K9")), 201)
    data = assert_envelope(p.ping({"customer_id": "K9", "email": "ignored@example.com"}), 200)
    assert data == {"lead_status": "duplicate", "matched_on": ["customer_id"]}
    assert assert_envelope(p.ping({"customer_id_sha256": sha("K9")}), 200)["lead_status"] == "duplicate"


def test_a_source_without_dedupe_answers_accept_and_holds_nothing(database: Any, clock: FakeClock) -> None:
    p = pinger(database, clock, dedupe_fields=[])
    data = assert_envelope(p.ping({"email": "j@example.com", "hold_seconds": 60}), 200)
    assert data == {"lead_status": "accept"} and p.holds() == []


# -- what a ping is not ---------------------------------------------------------------------------


def test_a_ping_stores_no_plain_pii_and_is_not_a_lead(database: Any, clock: FakeClock) -> None:
    p = pinger(database, clock)
    received: list[str] = []
    app: Flask = p.client.application  # type: ignore[assignment]

    def note(sender: Any, **kwargs: Any) -> None:
        received.append("signal")

    signals.lead_accepted.connect(note, sender=app)
    try:
        held = assert_envelope(p.ping({"email": "k@example.com", "mobile": "5550004444", "first_name": "Kay",
                                       "hold_seconds": 60}), 200)
    finally:
        signals.lead_accepted.disconnect(note)
    (hold,) = p.holds()
    assert set(hold) == {"_id", "source_id", "kind", "claims", "hold_expires_at", "created_at"}
    text = repr(hold)
    assert "k@example.com" not in text and "5550004444" not in text and "Kay" not in text
    assert received == []
    assert find_lead(database, p.source.id, lead_id=held["ping_id"]) is None


# -- bad pings ------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    {}, {"first_name": "Nope", "zip_code": "10001"}, {"hold_seconds": 10},
    {"email_sha256": "abc"}, {"email_sha256": "g" * 64}, {"email": "x@example.com", "email_sha256": sha("x")},
    {"email": "x@example.com", "hold_seconds": "abc"}, {"email": "x@example.com", "hold_seconds": 301},
    {"email": "x@example.com", "hold_seconds": -1}, {"email": "x@example.com", "hold_seconds": 1.5},
    {"email": "x@example.com", "hold_seconds": True}, {"email": "not an email"}, {"mobile": "123"},
])
def test_bad_pings_are_400_invalid_field(database: Any, clock: FakeClock, body: dict[str, Any]) -> None:
    p = pinger(database, clock)
    data = assert_envelope(p.ping(body), 400)
    assert data["lead_status"] == "invalidField"
    assert p.holds() == []


def test_a_ping_answers_401_403_404_405_like_create(database: Any, clock: FakeClock) -> None:
    p = pinger(database, clock)
    response = p.ping({"email": "l@example.com"}, headers={"Authorization": "Bearer wrong"})
    assert_envelope(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert_envelope(p.client.post("/api/lead/ping/nope", json={"email": "l@example.com"}), 404)
    get = p.client.get(p.ping_url, headers=p.headers)
    assert_envelope(get, 405)
    assert get.headers["Allow"] == "POST"
    set_source_active(database, p.source.id, False)
    assert_envelope(p.ping({"email": "l@example.com"}), 403)


def test_a_form_ping(database: Any, clock: FakeClock) -> None:
    p = pinger(database, clock)
    response = p.client.post(p.ping_url, data={"email": "m@example.com", "hold_seconds": "15"}, headers=p.headers)
    assert "ping_id" in assert_envelope(response, 200)


def test_test_mode_with_a_ping_id_leaves_the_hold(database: Any, clock: FakeClock) -> None:
    p = pinger(database, clock)
    held = assert_envelope(p.ping({"email": "n@example.com", "hold_seconds": 60}), 200)
    test = assert_envelope(p.post(lead(email="n@example.com", ping_id=held["ping_id"], xxTest="1")), 201)
    assert test["lead_status"] == "accept" and test["test"] is True
    other = assert_envelope(p.post(lead(email="n@example.com", xxTest="1")), 201)
    assert other["lead_status"] == "duplicate"
    assert len(p.holds()) == 1 and p.leads() == 0


# -- races and costs (real servers) ----------------------------------------------------------------


@pytest.mark.parametrize("database", REAL_BACKENDS, indirect=True)
def test_of_concurrent_held_pings_exactly_one_is_held(database: Any) -> None:
    src = create_source(database, "Race pings")
    app = make_app(database)
    answers: list[dict[str, Any]] = []
    barrier = threading.Barrier(12)

    def ping() -> None:
        client = app.test_client()
        barrier.wait()
        response = client.post(f"/api/lead/ping/{src.id}", json={"email": "race@example.com", "hold_seconds": 60},
                               headers={"Authorization": f"Bearer {src.api_key}"})
        answers.append(response.get_json()["data"])

    threads = [threading.Thread(target=ping) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    held = [a for a in answers if "ping_id" in a]
    assert len(held) == 1 and sorted(a["lead_status"] for a in answers) == ["accept"] + ["duplicate"] * 11
    assert database["leads"].count_documents({"kind": "hold"}) == 1


def test_a_held_ping_is_one_write_and_asking_one_read_per_value(monitored: tuple[Any, Any]) -> None:  # noqa: F811
    db, log = monitored
    src = create_source(db, "Ping costs")
    p = Pinger(make_app(db).test_client(), db, src)
    assert_envelope(p.post(lead()), 201)  # indexes in place
    log.commands.clear()
    assert_envelope(p.ping({"email": "o@example.com", "hold_seconds": 30}), 200)
    names = [name for name, cmd in log.commands if cmd.get(name) == "leads"]
    assert names == ["insert"]  # the hold's slot keeps the source within max_live_holds: no count
    log.commands.clear()
    assert_envelope(p.ping({"email": "p@example.com", "mobile": "5550005555"}), 200)
    finds = [cmd for name, cmd in log.commands if name == "find" and cmd["find"] == "leads"]
    assert len(finds) == 2 and not [n for n, c in log.commands if n in ("insert", "update", "delete")]
    for cmd in finds:
        plan = db.command("explain", {"find": "leads", "filter": cmd["filter"]}, verbosity="queryPlanner")
        assert "IXSCAN" in repr(plan["queryPlanner"]["winningPlan"]), cmd["filter"]


def test_a_plain_ping_meets_a_hashed_hold_and_a_second_seller_meets_the_hold(
    database: Any, clock: FakeClock
) -> None:
    p = pinger(database, clock)
    held = assert_envelope(p.ping({"mobile_sha256": sha("5550007777"), "hold_seconds": 60}), 200)
    assert assert_envelope(p.ping({"mobile": "5550007777"}), 200) == {"lead_status": "duplicate",
                                                                      "matched_on": ["mobile"]}
    # Another seller posts the same consumer (its own transaction id, no ping_id): held back.
    second = assert_envelope(p.post(lead(mobile="5550007777", transaction_id="seller-2")), 201)
    assert second["lead_status"] == "duplicate" and p.leads() == 0
    first = assert_envelope(p.post(lead(mobile="5550007777", transaction_id="seller-1",
                                        ping_id=held["ping_id"])), 201)
    assert first["lead_status"] == "accept" and p.leads() == 1


@pytest.mark.parametrize("database", REAL_BACKENDS, indirect=True)
def test_held_pings_and_posts_racing_over_real_http(database: Any) -> None:
    import http.client
    import json as jsonlib

    from werkzeug.serving import make_server

    src = create_source(database, "HTTP race")
    server = make_server("127.0.0.1", 0, make_app(database), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    answers: list[tuple[str, dict[str, Any]]] = []
    barrier = threading.Barrier(16)

    def call(kind: str, n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
        if kind == "ping":
            path, body = f"/api/lead/ping/{src.id}", {"email": "racer@example.com", "hold_seconds": 60}
        else:
            path, body = f"/api/lead/create/{src.id}", lead(email="racer@example.com", transaction_id=f"r-{n}")
        barrier.wait()
        conn.request("POST", path, jsonlib.dumps(body), {"Authorization": f"Bearer {src.api_key}",
                                                          "Content-Type": "application/json"})
        response = conn.getresponse()
        answers.append((kind, jsonlib.loads(response.read())["data"]))
        conn.close()

    try:
        threads = [threading.Thread(target=call, args=("ping" if n % 2 else "post", n)) for n in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        server.shutdown()
    assert len(answers) == 16
    held = [data for kind, data in answers if kind == "ping" and "ping_id" in data]
    stored = [data for kind, data in answers if kind == "post" and data["lead_status"] == "accept"]
    # One consumer, one winner: either a hold or a lead, never both, never two.
    assert len(held) + len(stored) == 1
    assert database["leads"].count_documents({}) == 1
