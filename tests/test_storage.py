"""Storage on the wire-protocol servers: indexes, query plans, round trips, faults."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest
from bson import ObjectId
from pymongo import monitoring

from pingtree_leads import create_source, ensure_indexes, get_runtime
from pingtree_leads.repository import LEAD_INDEXES, fingerprint
from pingtree_leads.schemas import ValidLead

from .conftest import REAL_BACKENDS, Poster, assert_envelope, lead, make_app


class CommandLog(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[tuple[str, dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name not in ("hello", "isMaster", "ismaster", "endSessions", "ping"):
            self.commands.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture(params=REAL_BACKENDS)
def server_uri(request: pytest.FixtureRequest) -> str:
    if request.param == "secantus":
        return request.getfixturevalue("secantus_uri")
    return os.environ["MONGODB_URI"]


@pytest.fixture
def monitored(server_uri: str) -> Iterator[tuple[Any, CommandLog]]:
    log = CommandLog()
    client = pymongo.MongoClient(server_uri, event_listeners=[log], serverSelectionTimeoutMS=5000)
    name = f"ptl_storage_{uuid.uuid4().hex[:10]}"
    yield client[name], log
    client.drop_database(name)
    client.close()


@pytest.fixture
def admin(server_uri: str) -> Iterator[Any]:
    client = pymongo.MongoClient(server_uri, serverSelectionTimeoutMS=5000)
    yield client.admin
    client.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
    client.close()


def test_indexes_are_created_with_their_shapes(database: Any, poster: Poster) -> None:
    assert_envelope(poster.post(lead()), 201)
    info = database["leads"].index_information()
    for name, (keys, options) in LEAD_INDEXES.items():
        assert [tuple(k) for k in info[name]["key"]] == [tuple(k) for k in keys]
        assert bool(info[name].get("unique")) == options.get("unique", False)
        assert bool(info[name].get("sparse")) == options.get("sparse", False)
        assert info[name].get("expireAfterSeconds") == options.get("expireAfterSeconds")
    ensure_indexes(database)  # idempotent
    assert database["leads"].index_information().keys() == info.keys()


def test_accept_is_one_command_and_duplicate_at_most_two(monitored: tuple[Any, CommandLog]) -> None:
    db, log = monitored
    src = create_source(db, "Counted")
    windowed = create_source(db, "Counted, 30 days", dedupe_window_days=30)
    client = make_app(db).test_client()
    p, w = Poster(client, db, src), Poster(client, db, windowed)
    assert_envelope(p.post(lead()), 201)  # warm-up: indexes, source cache
    assert_envelope(w.post(lead()), 201)
    log.commands.clear()
    assert assert_envelope(p.post(lead(email="one@example.com")), 201)["lead_status"] == "accept"
    assert [name for name, _ in log.commands] == ["insert"]
    log.commands.clear()
    # Without a window the error itself says "duplicate": nothing to read.
    assert assert_envelope(p.post(lead(email="one@example.com")), 201)["lead_status"] == "duplicate"
    assert [name for name, _ in log.commands] == ["insert"]
    assert_envelope(w.post(lead(email="one@example.com")), 201)
    log.commands.clear()
    # With a window the stored lead's age is read: one indexed find.
    assert assert_envelope(w.post(lead(email="one@example.com")), 201)["lead_status"] == "duplicate"
    assert [name for name, _ in log.commands] == ["insert", "find"]
    log.commands.clear()
    body = lead(transaction_id="again")
    assert_envelope(p.post(body), 201)
    log.commands.clear()
    assert assert_envelope(p.post(body), 201)["replayed"] is True
    assert [name for name, _ in log.commands] == ["insert", "find"]


def test_every_lookup_uses_an_index(monitored: tuple[Any, CommandLog]) -> None:
    db, log = monitored
    src = create_source(db, "Explained", dedupe_window_days=30)  # a window: duplicates read the stored lead
    p = Poster(make_app(db).test_client(), db, src)
    db["leads"].insert_many([{"source_id": ObjectId(), "transaction_id": str(i), "claims": [f"-{i}"]}
                             for i in range(300)])
    body = lead(transaction_id="explain-me")
    assert_envelope(p.post(body), 201)
    assert_envelope(p.post(body), 201)  # replay: transaction look-up
    assert_envelope(p.post(lead(email=body["email"])), 201)  # duplicate: email look-up
    assert_envelope(p.post(lead(mobile=body["mobile"])), 201)  # duplicate: mobile look-up
    finds = [cmd for name, cmd in log.commands if name == "find" and cmd["find"] == "leads"]
    assert len(finds) == 3
    for cmd in finds:
        plan = db.command("explain", {"find": "leads", "filter": cmd["filter"]}, verbosity="queryPlanner")
        text = repr(plan["queryPlanner"]["winningPlan"])
        assert "IXSCAN" in text and "COLLSCAN" not in text, cmd["filter"]


def test_server_refusing_the_indexes_fails_loudly(real_database: Any, caplog: pytest.LogCaptureFixture) -> None:
    src = create_source(real_database, "Refused")
    # An index of the same name but another shape: createIndexes is refused.
    real_database["leads"].create_index([("transaction_id", 1)], name="pingtree_claims")
    p = Poster(make_app(real_database).test_client(), real_database, src)
    with caplog.at_level(logging.ERROR, logger="pingtree_leads"):
        assert_envelope(p.post(lead()), 500)
    assert any("indexes are not in place" in r.getMessage() for r in caplog.records)
    assert p.count() == 0


def test_missing_indexes_with_create_indexes_off_refuse_every_lead(database: Any, source: Any) -> None:
    p = Poster(make_app(database, create_indexes=False).test_client(), database, source)
    assert_envelope(p.post(lead()), 500)
    assert p.count() == 0
    ensure_indexes(database)
    assert assert_envelope(p.post(lead()), 201)["lead_status"] == "accept"


def test_index_trouble_never_hides_the_auth_answer(database: Any, source: Any) -> None:
    p = Poster(make_app(database, create_indexes=False).test_client(), database, source)
    assert_envelope(p.post(lead(), headers={}), 401)
    assert_envelope(p.post(lead(), headers={"Authorization": "Bearer wrong"}), 401)
    assert_envelope(p.post(lead()), 500)


def test_contention_is_503(poster: Poster, app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from pingtree_leads.transient import ContentionError

    runtime = get_runtime(app)

    def contended(*args: Any, **kwargs: Any) -> Any:
        raise ContentionError("claims kept changing")

    monkeypatch.setattr(runtime.repository, "store", contended)
    response = poster.post(lead())
    assert_envelope(response, 503)
    assert response.headers["Retry-After"] == "2"


def test_unreachable_server_is_503_with_retry_after(database: Any, source: Any) -> None:
    dead = pymongo.MongoClient("mongodb://127.0.0.1:9", serverSelectionTimeoutMS=200, connectTimeoutMS=200)
    p = Poster(make_app(dead["nowhere"], retry_after_seconds=7).test_client(), database, source)
    response = p.post(lead())
    assert_envelope(response, 503)
    assert response.headers["Retry-After"] == "7"
    assert "127.0.0.1" not in response.get_data(as_text=True)
    dead.close()


def _fail_inserts(admin: Any, times: int, **data: Any) -> None:
    admin.command({"configureFailPoint": "failCommand", "mode": {"times": times},
                   "data": {"failCommands": ["insert"], **data}})


@pytest.mark.parametrize(
    "fault",
    [
        {"errorCode": 262},  # ExceededTimeLimit: transient, not a state change
        {"errorCode": 6},  # HostUnreachable
        {"closeConnection": True},
    ],
)
def test_failing_insert_is_503_and_a_retry_stores_exactly_one(
    monitored: tuple[Any, CommandLog], admin: Any, fault: dict[str, Any]
) -> None:
    db, _ = monitored
    src = create_source(db, "Faulty")
    p = Poster(make_app(db).test_client(), db, src)
    assert_envelope(p.post(lead()), 201)  # warm-up
    body = lead(transaction_id=f"fault-{uuid.uuid4().hex[:6]}")
    _fail_inserts(admin, 2, **fault)  # two: pymongo retries a retryable write once
    response = p.post(body)
    assert_envelope(response, 503)
    assert response.headers["Retry-After"] == "2"
    assert db["leads"].count_documents({"transaction_id": body["transaction_id"]}) == 0
    admin.command({"configureFailPoint": "failCommand", "mode": "off"})
    assert assert_envelope(p.post(body), 201)["lead_status"] == "accept"
    assert assert_envelope(p.post(body), 201)["replayed"] is True
    assert db["leads"].count_documents({"transaction_id": body["transaction_id"]}) == 1


def test_write_concern_error_is_503_and_the_retry_converges(monitored: tuple[Any, CommandLog], admin: Any) -> None:
    db, _ = monitored
    src = create_source(db, "WC")
    p = Poster(make_app(db).test_client(), db, src)
    assert_envelope(p.post(lead()), 201)
    body = lead(transaction_id="wc-retry")
    _fail_inserts(admin, 1, writeConcernError={"code": 64, "errmsg": "waiting for replication timed out"})
    assert_envelope(p.post(body), 503)
    data = assert_envelope(p.post(body), 201)
    assert data["lead_status"] == "accept"  # the write had landed: the retry finds it
    assert db["leads"].count_documents({"transaction_id": "wc-retry"}) == 1


def test_non_transient_database_error_is_500_without_internals(
    monitored: tuple[Any, CommandLog], admin: Any
) -> None:
    db, _ = monitored
    src = create_source(db, "Broken")
    p = Poster(make_app(db).test_client(), db, src)
    assert_envelope(p.post(lead()), 201)
    _fail_inserts(admin, 1, errorCode=2, errmsg="BadValue from the server")
    response = p.post(lead())
    assert_envelope(response, 500)
    assert "BadValue" not in response.get_data(as_text=True)
    assert "Retry-After" not in response.headers


def test_unexpected_error_is_500_without_traceback_or_values(
    poster: Poster, app: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = get_runtime(app)

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("secret.person@example.com 5551234567")

    monkeypatch.setattr(runtime.repository, "store", explode)
    with caplog.at_level(logging.DEBUG, logger="pingtree_leads"):
        response = poster.post(lead())
    assert_envelope(response, 500)
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "secret.person" not in text and "ValueError" not in text
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "ValueError" in logged and "secret.person" not in logged and "5551234567" not in logged


@pytest.mark.parametrize("code", [91, 189, 11600, 11602, 10107, 13435])  # shutdown and "not primary" codes
def test_state_change_codes_are_503(code: int) -> None:
    from pymongo.errors import OperationFailure

    from pingtree_leads.transient import is_transient

    assert is_transient(OperationFailure("state change", code=code))
    assert not is_transient(OperationFailure("bad value", code=2))


@pytest.mark.parametrize("code", [91, 11600, 10107])
def test_state_change_faults_on_a_real_mongod(
    server_uri: str, monitored: tuple[Any, CommandLog], admin: Any, code: int
) -> None:
    # SecantusDB rediscovers a server marked Unknown too slowly (pitfalls.md): these run on mongod only.
    if server_uri != os.environ.get("MONGODB_URI"):
        pytest.skip("state-change codes are injected only against a real mongod (MONGODB_URI)")
    db, _ = monitored
    src = create_source(db, "State change")
    p = Poster(make_app(db).test_client(), db, src)
    assert_envelope(p.post(lead()), 201)
    body = lead(transaction_id=f"state-{code}")
    _fail_inserts(admin, 2, errorCode=code)
    assert_envelope(p.post(body), 503)
    admin.command({"configureFailPoint": "failCommand", "mode": "off"})
    assert assert_envelope(p.post(body), 201)["lead_status"] == "accept"
    assert db["leads"].count_documents({"transaction_id": body["transaction_id"]}) == 1


def test_the_old_layout_is_refused_with_what_to_run(database: Any) -> None:
    from pingtree_leads import LeadIndexError
    from pingtree_leads.repository import LeadRepository

    database["leads"].create_index([("source_id", 1), ("transaction_id", 1)], unique=True,
                                   name="pingtree_1_transaction")
    database["leads"].create_index([("dedupe.email", 1)], unique=True, sparse=True, name="pingtree_2_dedupe_email")
    for call in (LeadRepository(database, "leads").check_indexes, LeadRepository(database, "leads").ensure_indexes):
        with pytest.raises(LeadIndexError, match="migrate-storage"):
            call()
    assert "pingtree_claims" not in database["leads"].index_information()  # nothing half-made


def test_migration_moves_old_leads_to_claims_keeping_every_rule(database: Any, clock: Any) -> None:
    import hashlib

    from pingtree_leads import migrate_storage

    def claim_hash_0_1(source_id: ObjectId, field: str, value: str) -> str:  # what 0.1 stored
        return hashlib.sha256(f"{source_id}\x1f{field}\x1f{value}".encode()).hexdigest()[:32]

    src = create_source(database, "Old layout", clock=clock)
    sid = ObjectId(src.id)
    leads = database["leads"]
    leads.create_index([("source_id", 1), ("transaction_id", 1)], unique=True, name="pingtree_1_transaction")
    leads.create_index([("dedupe.email", 1)], unique=True, sparse=True, name="pingtree_2_dedupe_email")
    leads.create_index([("dedupe.mobile", 1)], unique=True, sparse=True, name="pingtree_3_dedupe_mobile")
    old = lead(transaction_id="old-1")
    leads.insert_one({"source_id": sid, "transaction_id": "old-1", **old, "trusted_form": {}, "extra": {},
                      "created_at": clock(), "fingerprint": "x",
                      "dedupe": {f: claim_hash_0_1(sid, f, old[f]) for f in ("email", "mobile")}})
    leads.insert_one({"source_id": sid, "transaction_id": "old-2", "first_name": "Nodedupe", "created_at": clock(),
                      "fingerprint": "y", "dedupe": {}})
    report = migrate_storage(database)
    assert report.leads_rewritten == 2 and set(report.indexes_dropped) == {
        "pingtree_1_transaction", "pingtree_2_dedupe_email", "pingtree_3_dedupe_mobile"}
    assert set(leads.index_information()) == {"_id_", "pingtree_claims", "pingtree_hold_expiry", "pingtree_lead_expiry"}
    assert leads.count_documents({"dedupe": {"$exists": True}}) == 0
    assert migrate_storage(database).leads_rewritten == 0  # idempotent
    # The migrated claims are the ones new leads take: the old lead still blocks its consumer.
    p = Poster(make_app(database, clock=clock).test_client(), database, src)
    dup = assert_envelope(p.post(lead(email=old["email"])), 201)
    assert dup["lead_status"] == "duplicate" and dup["matched_on"] == ["email"]
    assert assert_envelope(p.post(lead(mobile=old["mobile"])), 201)["matched_on"] == ["mobile"]
    assert_envelope(p.post(lead(transaction_id="old-2")), 409)  # its transaction claim holds too
    assert leads.count_documents({"transaction_id": "old-2"}) == 1


def test_every_unique_index_fits_a_collection_sharded_on_source_id() -> None:
    # MongoDB's rules for unique indexes on a sharded collection (sharded on {source_id: 1}):
    # the shard key is a prefix of the index, the index is not hashed, and a rule that
    # depends on sparse or a partial filter would not hold the same way; _id is unique anyway.
    from pingtree_leads.repository import LEAD_INDEXES

    unique = {name: spec for name, spec in LEAD_INDEXES.items() if spec[1].get("unique")}
    assert unique, "the rules live in unique indexes"
    for name, (keys, options) in unique.items():
        assert keys[0] == ("source_id", 1), name
        assert all(direction in (1, -1) for _, direction in keys), name  # no "hashed", "text", ...
        assert not options.get("sparse") and "partialFilterExpression" not in options, name
        assert "source_id" not in [k for k, _ in keys[1:]], name


def test_a_lead_without_dedupe_values_still_holds_a_claim(database: Any, source: Any) -> None:
    # An empty array would be one index key shared by every such lead: the transaction claim prevents it.
    p = Poster(make_app(database).test_client(), database, source)
    for n in range(3):
        assert_envelope(p.post({"first_name": f"N{n}"}), 201)
    for doc in database["leads"].find():
        assert doc["claims"] == ["-" + doc["transaction_id"]]
    assert database["leads"].count_documents({}) == 3


def test_blocked_connection_past_the_timeout_is_503_and_the_retry_converges(server_uri: str, admin: Any) -> None:
    # The app's client gives up after 500 ms; the server holds the insert for 1.5 s.
    client = pymongo.MongoClient(server_uri, socketTimeoutMS=500, serverSelectionTimeoutMS=3000,
                                 appname="ptl-blocked", retryWrites=False)
    name = f"ptl_blocked_{uuid.uuid4().hex[:8]}"
    db = client[name]
    try:
        src = create_source(db, "Blocked")
        p = Poster(make_app(db).test_client(), db, src)
        assert_envelope(p.post(lead()), 201)
        body = lead(transaction_id="blocked-retry")
        admin.command({"configureFailPoint": "failCommand", "mode": {"times": 1},
                       "data": {"failCommands": ["insert"], "blockConnection": True, "blockTimeMS": 1500,
                                "appName": "ptl-blocked"}})
        response = p.post(body)
        assert_envelope(response, 503)
        assert "Retry-After" in response.headers
        time.sleep(1.6)  # let the held insert finish (or not): the retry must converge either way
        data = assert_envelope(p.post(body), 201)
        assert data["lead_status"] == "accept"
        assert db["leads"].count_documents({"transaction_id": "blocked-retry"}) == 1
    finally:
        client.drop_database(name)
        client.close()


def test_migrated_leads_hold_their_consumers_against_pings_too(database: Any, clock: Any) -> None:
    import hashlib

    from pingtree_leads import migrate_storage

    src = create_source(database, "Old pinged", clock=clock)
    sid = ObjectId(src.id)
    leads = database["leads"]
    leads.create_index([("source_id", 1), ("transaction_id", 1)], unique=True, name="pingtree_1_transaction")
    old = hashlib.sha256(f"{sid}\x1femail\x1fold@example.com".encode()).hexdigest()[:32]
    leads.insert_one({"source_id": sid, "transaction_id": "o-1", "email": "old@example.com", "created_at": clock(),
                      "fingerprint": "x", "dedupe": {"email": old}})
    migrate_storage(database)
    client = make_app(database, clock=clock).test_client()
    answer = client.post(f"/api/lead/ping/{src.id}", json={"email": "old@example.com", "hold_seconds": 30},
                         headers={"Authorization": f"Bearer {src.api_key}"})
    assert assert_envelope(answer, 200)["lead_status"] == "duplicate"


def test_the_replay_fingerprint_is_stable_across_versions() -> None:
    """Leads stored by earlier versions must still match their replays: the fingerprint's bytes
    are fixed (sorted keys, compact separators, ASCII escapes), whatever builds them."""
    stored = ValidLead(fields={"email": "zoë@xn--bcher-kva.de", "first_name": "Zoë", "mobile": "5125550123"},
                       trusted_form={"cert_url": "https://cert.trustedform.com/abc"},
                       extra={"consent": True, "page-url": "https://x.example/é", "n": 3}, transaction_id="t-1")
    assert fingerprint(stored) == "2bcac54e7abd5a0e79f4254d214b15fc5f797ac5678be9b7d8a9f868ea49ff1a"
