"""Retention and erasure (contract section 11)."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId
from flask import Flask

from pingtree_leads import (
    CreatedSource,
    PingtreeLeads,
    complete_pending_blocks,
    create_source,
    erase_consumer,
    erasure,
    find_lead,
    provisioning,
    rotate_api_key,
    signals,
    suppress,
    update_source,
)
from pingtree_leads.errors import SUPPRESSED_MESSAGE
from pingtree_leads.mongo import as_utc
from pingtree_leads.repository import LEAD_EXPIRY_INDEX, LEAD_INDEXES

from .conftest import FakeClock, Poster, assert_envelope, lead, make_app
from .test_storage import CommandLog, monitored, server_uri  # noqa: F401  (fixtures)

EMAIL = "Erase.Me@Example.COM"
STORED_EMAIL = "erase.me@example.com"
MOBILE = "5551234567"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def consumer_leads(database: Any) -> int:
    return int(database["leads"].count_documents({"$or": [{"email": STORED_EMAIL}, {"mobile": MOBILE}]}))


class Sources:
    """One source of each kind an erasure must handle."""

    def __init__(self, database: Any, clock: FakeClock) -> None:
        self.default = create_source(database, "Default", clock=clock)  # email + mobile
        self.email_only = create_source(database, "Email only", dedupe_fields=["email"], clock=clock)
        self.none = create_source(database, "No dedupe", dedupe_fields=[], clock=clock)
        self.lenient = create_source(database, "Lenient", lenient=True, clock=clock)
        self.windowed = create_source(database, "Windowed", dedupe_fields=["email"], dedupe_window_days=7,
                                      clock=clock)

    def all(self) -> list[CreatedSource]:
        return [self.default, self.email_only, self.none, self.lenient, self.windowed]


def posters(app: Flask, database: Any, sources: Sources) -> dict[str, Poster]:
    client = app.test_client()
    return {src.name: Poster(client, database, src) for src in sources.all()}


def stored_of(database: Any, src: CreatedSource) -> int:
    return int(database["leads"].count_documents({"source_id": ObjectId(src.id), "kind": {"$exists": False}}))


# -- retention --------------------------------------------------------------------------------------


def test_retention_sets_expires_at_and_a_sparse_ttl_index(database: Any, clock: FakeClock) -> None:
    kept = create_source(database, "Kept", clock=clock)
    month = create_source(database, "Month", retention_days=30, clock=clock)
    client = make_app(database, clock=clock).test_client()
    assert_envelope(Poster(client, database, kept).post(lead(transaction_id="k")), 201)
    assert_envelope(Poster(client, database, month).post(lead(transaction_id="m")), 201)
    info = database["leads"].index_information()[LEAD_EXPIRY_INDEX]
    assert [tuple(k) for k in info["key"]] == [("expires_at", 1)]
    assert info["expireAfterSeconds"] == 0 and info["sparse"] is True
    assert LEAD_INDEXES[LEAD_EXPIRY_INDEX] == ([("expires_at", 1)], {"expireAfterSeconds": 0, "sparse": True})
    kept_doc = database["leads"].find_one({"transaction_id": "k"})
    assert "expires_at" not in kept_doc  # no key in the TTL index for a source without retention
    doc = database["leads"].find_one({"transaction_id": "m"})
    assert as_utc(doc["expires_at"]) == as_utc(doc["created_at"]) + timedelta(days=30)
    assert database["database_sources"].find_one({"_id": ObjectId(month.id)})["retention_days"] == 30
    assert "retention_days" not in database["database_sources"].find_one({"_id": ObjectId(kept.id)})
    # Fetch and signals never show the internal field.
    assert "expires_at" not in (find_lead(database, month.id, transaction_id="m") or {"expires_at": 1})


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, True, "30"])
def test_retention_must_be_a_positive_number(database: Any, bad: Any) -> None:
    with pytest.raises(ValueError, match="retention_days"):
        create_source(database, "Bad", retention_days=bad)
    assert database["database_sources"].count_documents({}) == 0


def test_a_lead_past_its_retention_counts_for_nothing(database: Any, clock: FakeClock) -> None:
    src = create_source(database, "Day", retention_days=1, clock=clock)
    app = make_app(database, clock=clock, allow_fetch=True)
    p = Poster(app.test_client(), database, src)
    body = lead(transaction_id="old", email="kept@example.com")
    first = assert_envelope(p.post(body), 201)
    assert assert_envelope(p.post(lead(email="kept@example.com")), 201)["lead_status"] == "duplicate"
    clock.advance(days=1, seconds=1)
    # mongomock's and the servers' TTL monitors go by the real clock: the lead is still stored.
    assert database["leads"].count_documents({"transaction_id": "old"}) == 1
    fetched = app.test_client().get(f"/api/lead/fetch/{src.id}", query_string={"lead_id": first["lead_id"]},
                                    headers=p.headers)
    assert_envelope(fetched, 404)
    ping = app.test_client().post(f"/api/lead/ping/{src.id}", json={"email": "kept@example.com"}, headers=p.headers)
    assert assert_envelope(ping, 200)["lead_status"] == "accept"
    test = assert_envelope(p.post({**lead(email="kept@example.com"), "xxTest": True}), 201)
    assert test["lead_status"] == "accept" and "lead_id" not in test
    again = assert_envelope(p.post(lead(email="kept@example.com")), 201)
    assert again["lead_status"] == "accept"
    assert database["leads"].count_documents({"email": "kept@example.com"}) == 1  # the old one was removed
    # The expired lead was deleted with its transaction claim: the id is free again.
    assert assert_envelope(p.post({**body, "email": "new@example.com"}), 201)["lead_status"] == "accept"


def test_create_source_cli_takes_retention_days(database: Any) -> None:
    app = Flask("cli")
    PingtreeLeads().init_app(app, database=database)
    result = app.test_cli_runner().invoke(args=["pingtree-leads", "create-source", "Kept 90", "--retention-days", "90"])
    assert result.exit_code == 0, result.output
    assert database["database_sources"].find_one({"name": "Kept 90"})["retention_days"] == 90
    refused = app.test_cli_runner().invoke(args=["pingtree-leads", "create-source", "Never", "--retention-days", "0"])
    assert refused.exit_code == 2


# -- erasure ------------------------------------------------------------------------------------------


def fill(database: Any, clock: FakeClock, sources: Sources, app: Flask) -> dict[str, Poster]:
    """The consumer in every source (twice in the windowed one), and another consumer beside."""
    p = posters(app, database, sources)
    for src in (sources.default, sources.email_only, sources.none):
        assert_envelope(p[src.name].post(lead(email=EMAIL, mobile=MOBILE)), 201)
        assert_envelope(p[src.name].post(lead(email="other@example.com", mobile="5559990000")), 201)
    # Only the mobile: found by a scan where the source holds no mobile claim.
    assert_envelope(p[sources.email_only.name].post(lead(email="alias@example.com", mobile=MOBILE)), 201)
    assert_envelope(p[sources.lenient.name].post(lead(email="x@example.com", mobile="+1 (555) 123-4567")), 201)
    assert_envelope(p[sources.windowed.name].post(lead(email=STORED_EMAIL)), 201)
    clock.advance(days=8)
    assert assert_envelope(p[sources.windowed.name].post(lead(email=EMAIL)), 201)["lead_status"] == "accept"
    assert consumer_leads(database) == 7
    return p


def test_erasure_deletes_the_consumer_in_every_source(database: Any, clock: FakeClock) -> None:
    sources = Sources(database, clock)
    fill(database, clock, sources, make_app(database, clock=clock))
    others = database["leads"].count_documents({"email": "other@example.com"})
    report = erase_consumer(database, email=" ERASE.me@example.com ", mobile="+1 555.123.4567", clock=clock)
    assert report.removed == {sources.default.id: 1, sources.email_only.id: 2, sources.none.id: 1,
                              sources.lenient.id: 1, sources.windowed.id: 2}
    assert report.total == 7
    assert consumer_leads(database) == 0
    assert database["leads"].count_documents({"email": "other@example.com"}) == others == 3
    # A block per source and value, also where the source claims no such value now (an endpoint
    # may still trust a cached config that does); blocks are no leads.
    blocks = list(database["leads"].find({"kind": "erased"}))
    assert Counter(str(b["source_id"]) for b in blocks) == {src.id: 2 for src in sources.all()}
    assert find_lead(database, sources.default.id, lead_id=blocks[0]["_id"]) is None


def test_erasure_is_idempotent_and_its_record_holds_no_pii(
    database: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    sources = Sources(database, clock)
    app = make_app(database, clock=clock)
    fill(database, clock, sources, app)
    with caplog.at_level(logging.DEBUG, logger="pingtree_leads"):
        first = erase_consumer(database, email=EMAIL, mobile=MOBILE, clock=clock)
        second = erase_consumer(database, email=EMAIL, mobile=MOBILE, clock=clock)
        posted = posters(app, database, sources)[sources.none.name].post(lead(email=EMAIL))
        assert assert_envelope(posted, 201)["lead_status"] == "suppressed"
    assert first.total == 7 and second.total == 0 and second.removed == {}
    assert database["leads"].count_documents({"kind": "erased"}) == 10  # no second block
    records = list(database["erasures"].find())
    assert len(records) == 2
    for record in records:
        assert record["keys"] == sorted([f"email:{sha(STORED_EMAIL)}", f"mobile:{sha(MOBILE)}"])
        assert record["completed_at"] is not None and record["erased_at"] is not None
        text = json.dumps(record, default=str).lower()
        assert "erase.me" not in text and "example.com" not in text and MOBILE not in text
    assert records[0]["total"] == 7
    assert {str(r["source_id"]): r["leads"] for r in records[0]["removed"]} == first.removed
    logged = "\n".join(r.getMessage() for r in caplog.records).lower()
    assert "erase.me" not in logged and MOBILE not in logged and "consumer erased" in logged
    blocks = json.dumps(list(database["leads"].find({"kind": "erased"})), default=str).lower()
    assert "erase.me" not in blocks and MOBILE not in blocks


def test_erasure_needs_a_valid_value_and_names_no_value(database: Any) -> None:
    with pytest.raises(ValueError, match="email, mobile or both"):
        erase_consumer(database)
    with pytest.raises(ValueError, match="email") as caught:
        erase_consumer(database, email="not-an-address")
    assert "not-an-address" not in str(caught.value)
    with pytest.raises(ValueError, match="mobile"):
        erase_consumer(database, mobile="12")
    assert "erasures" not in database.list_collection_names() or database["erasures"].count_documents({}) == 0


def test_posts_pings_and_tests_after_erasure_are_suppressed(database: Any, clock: FakeClock) -> None:
    sources = Sources(database, clock)
    app = make_app(database, clock=clock)
    p = fill(database, clock, sources, app)
    erase_consumer(database, email=EMAIL, mobile=MOBILE, clock=clock)
    accepted: list[Any] = []
    signals.lead_accepted.connect(lambda sender, **kw: accepted.append(kw), app, weak=False)
    for src in sources.all():
        poster = p[src.name]
        for body in (lead(email=EMAIL), lead(mobile="555-123-4567" if src is sources.lenient else MOBILE)):
            response = poster.post(body)
            data = assert_envelope(response, 201)
            assert data["lead_status"] == "suppressed", src.name
            assert response.get_json()["message"] == SUPPRESSED_MESSAGE
            assert set(data) == {"lead_status", "transaction_id"}
        test = assert_envelope(poster.post({**lead(email=EMAIL), "xxTest": "true"}), 201)
        assert test["lead_status"] == "suppressed" and test["test"] is True, src.name
        url = f"/api/lead/ping/{src.id}"
        for ping in ({"email": EMAIL, "hold_seconds": 60}, {"email_sha256": sha(STORED_EMAIL)},
                     {"mobile_sha256": sha(MOBILE).upper(), "hold_seconds": 30}):
            answer = assert_envelope(app.test_client().post(url, json=ping, headers=poster.headers), 200)
            assert answer == {"lead_status": "suppressed"}, (src.name, ping)
    assert consumer_leads(database) == 0 and accepted == []
    assert database["leads"].count_documents({"kind": "hold"}) == 0
    # Other consumers are decided as ever.
    fresh = assert_envelope(p[sources.default.name].post(lead(email="fresh@example.com")), 201)
    assert fresh["lead_status"] == "accept"


def test_a_live_hold_of_the_consumer_is_removed_and_cannot_be_taken_over(database: Any, clock: FakeClock) -> None:
    src = create_source(database, "Held", clock=clock)
    app = make_app(database, clock=clock)
    p = Poster(app.test_client(), database, src)
    ping = {"email": EMAIL, "hold_seconds": 300}
    held = assert_envelope(app.test_client().post(f"/api/lead/ping/{src.id}", json=ping, headers=p.headers), 200)
    assert erase_consumer(database, email=EMAIL, clock=clock).total == 0  # a hold is no lead
    assert database["leads"].count_documents({"kind": "hold"}) == 0
    data = assert_envelope(p.post({**lead(email=EMAIL), "ping_id": held["ping_id"]}), 201)
    assert data["lead_status"] == "suppressed" and consumer_leads(database) == 0


def test_allow_after_erasure_lets_the_consumer_back(database: Any, clock: FakeClock) -> None:
    sources = Sources(database, clock)
    fill(database, clock, sources, make_app(database, clock=clock))
    erase_consumer(database, email=EMAIL, mobile=MOBILE, clock=clock)
    app = make_app(database, clock=clock, config={"PINGTREE_LEADS_ALLOW_AFTER_ERASURE": "yes"})  # env text
    p = posters(app, database, sources)
    for src in sources.all():
        ping = app.test_client().post(f"/api/lead/ping/{src.id}", json={"email": EMAIL}, headers=p[src.name].headers)
        assert assert_envelope(ping, 200)["lead_status"] == "accept", src.name
        assert assert_envelope(p[src.name].post(lead(email=EMAIL, mobile=MOBILE)), 201)["lead_status"] == "accept"
    assert consumer_leads(database) == 5
    # The block was taken over: dedupe works on the new lead again.
    again = assert_envelope(p[sources.default.name].post(lead(email=EMAIL)), 201)
    assert again == {**again, "lead_status": "duplicate", "matched_on": ["email"]}


def test_erase_cli_prints_counts_never_values(database: Any, clock: FakeClock) -> None:
    sources = Sources(database, clock)
    fill(database, clock, sources, make_app(database, clock=clock))
    app = Flask("cli")
    PingtreeLeads().init_app(app, database=database, clock=clock)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["pingtree-leads", "erase", "--email", EMAIL, "--mobile", MOBILE])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    record = database["erasures"].find_one()
    assert lines[0] == f"erasure {record['_id']}: 7 lead(s) removed"
    assert sorted(line.split()[:2] for line in lines[1:]) == sorted(
        [[sources.default.id, "1"], [sources.email_only.id, "2"], [sources.none.id, "1"],
         [sources.lenient.id, "1"], [sources.windowed.id, "2"]])
    assert "Email only" in result.output
    assert "erase.me" not in result.output.lower() and MOBILE not in result.output
    again = runner.invoke(args=["pingtree-leads", "erase", "--mobile", "555 123 4567"])
    assert again.exit_code == 0 and again.output.splitlines()[0].endswith(": 0 lead(s) removed")
    assert runner.invoke(args=["pingtree-leads", "erase"]).exit_code == 2
    bad = runner.invoke(args=["pingtree-leads", "erase", "--email", "secret-not-an-address"])
    assert bad.exit_code == 2 and "secret-not-an-address" not in bad.output


# -- costs and plans (wire servers) --------------------------------------------------------------------


def test_a_default_source_pays_nothing_new(monitored: tuple[Any, CommandLog]) -> None:  # noqa: F811
    db, log = monitored
    default = create_source(db, "Default")
    retained = create_source(db, "Retained", retention_days=30)
    email_only = create_source(db, "Email only", dedupe_fields=["email"])
    client = make_app(db).test_client()
    d, r, e = (Poster(client, db, s) for s in (default, retained, email_only))
    for poster in (d, r, e):
        assert_envelope(poster.post(lead()), 201)  # warm-up
    erase_consumer(db, email="someone@example.com", mobile="5550000000")
    log.commands.clear()
    assert assert_envelope(d.post(lead()), 201)["lead_status"] == "accept"
    assert assert_envelope(r.post(lead()), 201)["lead_status"] == "accept"
    assert [name for name, _ in log.commands] == ["insert", "insert"]
    log.commands.clear()
    # A source that holds no mobile claim reads the erasure records before its insert and after it.
    assert assert_envelope(e.post(lead()), 201)["lead_status"] == "accept"
    assert [(name, cmd.get(name)) for name, cmd in log.commands] == [
        ("find", "erasures"), ("insert", "leads"), ("find", "erasures")]
    log.commands.clear()
    # An erased consumer there is refused by the first read: nothing is written.
    assert assert_envelope(e.post(lead(mobile="5550000000")), 201)["lead_status"] == "suppressed"
    assert [(name, cmd.get(name)) for name, cmd in log.commands] == [("find", "erasures")]
    log.commands.clear()
    assert assert_envelope(d.post(lead(email="someone@example.com")), 201)["lead_status"] == "suppressed"
    assert [name for name, _ in log.commands] == ["insert", "find"]  # the block is read to tell it from a lead


def test_an_erasure_scans_the_leads_once_and_every_other_lookup_uses_an_index(
    monitored: tuple[Any, CommandLog],  # noqa: F811
) -> None:
    """One pass over the leads collection whatever the number of sources (the values are in no
    index: one would cost every lead a key); the blocks' and the records' reads are indexed."""
    db, log = monitored
    sources = Sources(db, FakeClock())
    client = make_app(db).test_client()
    for src in sources.all():
        for _ in range(30):
            assert_envelope(Poster(client, db, src).post(lead()), 201)
        assert_envelope(Poster(client, db, src).post(lead(email=EMAIL, mobile=MOBILE)), 201)
    log.commands.clear()
    erase_consumer(db, email=EMAIL, mobile=MOBILE)
    assert_envelope(Poster(client, db, sources.none).post(lead(email=EMAIL)), 201)  # the post's check
    finds = [cmd for name, cmd in log.commands if name == "find" and cmd["find"] in ("leads", "erasures")]
    scans = [cmd for cmd in finds if "$or" in cmd["filter"]]
    assert len(scans) == 1 and scans[0]["find"] == "leads" and "hint" not in scans[0]
    assert scans[0]["filter"] == {"$or": [{"email": EMAIL.lower()}, {"mobile": MOBILE}]}
    lookups = [cmd for cmd in finds if cmd not in scans]
    assert {cmd["find"] for cmd in lookups} == {"leads", "erasures"}
    for cmd in lookups:
        query = {"find": cmd["find"], "filter": cmd["filter"], **({"hint": cmd["hint"]} if "hint" in cmd else {})}
        plan = db.command("explain", query, verbosity="queryPlanner")
        text = repr(plan["queryPlanner"]["winningPlan"])
        assert "IXSCAN" in text and "COLLSCAN" not in text, cmd["filter"]
    deletes = [cmd for name, cmd in log.commands if name == "delete" and cmd["delete"] == "leads"]
    assert len(deletes) <= len(sources.all()) * 3  # per source: a block's delete per value met, one for the scan


def test_an_erasure_also_deletes_the_leads_of_a_source_deleted_since(database: Any, clock: FakeClock) -> None:
    """A lead whose source document is gone is still the consumer's data: the scan is of the
    collection, not of the sources' ranges."""
    sources = Sources(database, clock)
    client = make_app(database, clock=clock).test_client()
    assert_envelope(Poster(client, database, sources.none).post(lead(email=EMAIL)), 201)
    assert_envelope(Poster(client, database, sources.default).post(lead(email=EMAIL)), 201)
    database["database_sources"].delete_one({"_id": ObjectId(sources.none.id)})
    report = erase_consumer(database, email=EMAIL, clock=clock)
    assert report.removed == {sources.default.id: 1, sources.none.id: 1}
    assert consumer_leads(database) == 0


# -- races (wire servers) ----------------------------------------------------------------------------------


def test_erasure_racing_posts_leaves_no_lead_of_the_consumer(real_database: Any) -> None:
    db = real_database
    default = create_source(db, "Default")
    email_only = create_source(db, "Email only", dedupe_fields=["email"])
    none = create_source(db, "None", dedupe_fields=[])
    sources = [default, email_only, none]
    app = make_app(db)
    for src in sources:
        assert_envelope(Poster(app.test_client(), db, src).post(lead()), 201)  # indexes, caches
    threads = 6
    start = threading.Barrier(threads + 1)
    erased = threading.Event()

    def consumer_poster(n: int) -> Counter[str]:
        client = app.test_client()
        src = sources[n % len(sources)]
        headers = {"Authorization": f"Bearer {src.api_key}"}
        seen: Counter[str] = Counter()
        start.wait()
        after = 0
        while after < 5:  # keep posting until a few posts after the erasure ended
            if erased.is_set():
                after += 1
            body = lead(email=EMAIL, mobile=MOBILE) if n % 2 else lead(mobile=MOBILE)
            response = client.post(f"/api/lead/create/{src.id}", json=body, headers=headers)
            assert response.status_code == 201, response.get_data(as_text=True)
            status = response.get_json()["data"]["lead_status"]
            seen[status] += 1
            if erased.is_set() and after:
                assert status == "suppressed"
        return seen

    def others_poster() -> list[str]:
        client = app.test_client()
        start.wait()
        out = []
        for i in range(30):
            src = sources[i % len(sources)]
            body = lead(email=f"bystander{i}@example.com", mobile=f"55500{i:05d}")
            response = client.post(f"/api/lead/create/{src.id}", json=body,
                                   headers={"Authorization": f"Bearer {src.api_key}"})
            out.append(response.get_json()["data"]["lead_status"])
        return out

    with ThreadPoolExecutor(threads + 1) as pool:
        posting = [pool.submit(consumer_poster, n) for n in range(threads - 1)]
        others = pool.submit(others_poster)
        start.wait()
        report = erase_consumer(db, email=EMAIL, mobile=MOBILE)
        erased.set()
        seen = sum((f.result() for f in posting), Counter())
        bystanders = others.result()
    assert consumer_leads(db) == 0, report
    assert seen["suppressed"] > 0
    assert bystanders == ["accept"] * 30
    assert db["leads"].count_documents({"email": {"$regex": "^bystander"}}) == 30


def test_suppressed_examples_of_the_document_are_real_answers(database: Any, clock: FakeClock) -> None:
    from pingtree_leads.openapi import openapi_document

    src = create_source(database, "Documented", clock=clock)
    app = make_app(database, clock=clock)
    p = Poster(app.test_client(), database, src)
    erase_consumer(database, email=EMAIL, clock=clock)
    paths = openapi_document()["paths"]
    created = paths["/api/lead/create/{db_source_id}"]["post"]["responses"]["201"]["content"]["application/json"]
    pinged = paths["/api/lead/ping/{db_source_id}"]["post"]["responses"]["200"]["content"]["application/json"]
    answer = p.post(lead(email=EMAIL, transaction_id="tx-1005"))
    assert answer.get_json() == created["examples"]["suppressed"]["value"]
    ping = app.test_client().post(f"/api/lead/ping/{src.id}", json={"email": EMAIL}, headers=p.headers)
    assert ping.get_json() == pinged["examples"]["suppressed"]["value"]


# -- defects a hostile tester found ------------------------------------------------------------------


def test_erasure_deletes_a_lead_stored_before_its_source_deduplicated_on_the_value(
    database: Any, clock: FakeClock
) -> None:
    src = create_source(database, "s", dedupe_fields=[], clock=clock)
    p = Poster(make_app(database, clock=clock).test_client(), database, src)
    assert assert_envelope(p.post(lead(email="u1@example.com")), 201)["lead_status"] == "accept"
    update_source(database, src.id, dedupe_fields=["email", "mobile"], clock=clock)
    report = erase_consumer(database, email="u1@example.com", clock=clock)
    assert report.removed == {src.id: 1}
    assert database["leads"].count_documents({"email": "u1@example.com"}) == 0


def test_erasure_deletes_a_lead_whose_claims_a_window_released_before_the_window_was_dropped(
    database: Any, clock: FakeClock
) -> None:
    src = create_source(database, "w", dedupe_fields=["email"], dedupe_window_days=1, clock=clock)
    p = Poster(make_app(database, clock=clock).test_client(), database, src)
    assert assert_envelope(p.post(lead(email="u5@example.com")), 201)["lead_status"] == "accept"
    clock.advance(days=3)
    assert assert_envelope(p.post(lead(email="u5@example.com")), 201)["lead_status"] == "accept"  # A released
    update_source(database, src.id, dedupe_window_days=None, clock=clock)
    report = erase_consumer(database, email="u5@example.com", clock=clock)
    assert report.removed == {src.id: 2}
    assert database["leads"].count_documents({"email": "u5@example.com"}) == 0


def test_a_source_that_starts_deduplicating_on_an_erased_value_still_refuses_it(
    database: Any, clock: FakeClock
) -> None:
    s = create_source(database, "s2", dedupe_fields=["mobile"], clock=clock)
    app = make_app(database, clock=clock)
    p = Poster(app.test_client(), database, s)
    erase_consumer(database, email="u2@example.com", clock=clock)
    erase_consumer(database, mobile="5557654321", clock=clock)
    assert assert_envelope(p.post(lead(email="u2@example.com")), 201)["lead_status"] == "suppressed"
    update_source(database, s.id, dedupe_fields=["email", "mobile"], clock=clock)
    answer = assert_envelope(p.post(lead(email="u2@example.com", mobile="5550001111")), 201)
    assert answer["lead_status"] == "suppressed"
    # Again (idempotent: the blocks stand, nothing more is written).
    update_source(database, s.id, dedupe_fields=["mobile", "email"], clock=clock)
    later = create_source(database, "later", clock=clock)  # created after the erasures: default dedupe
    q = Poster(app.test_client(), database, later)
    for poster in (p, q):
        for body in (lead(email="U2@example.com"), lead(mobile="5557654321")):
            assert assert_envelope(poster.post(body), 201)["lead_status"] == "suppressed", poster.source.name
        url = f"/api/lead/ping/{poster.source.id}"
        for ping in ({"email": "u2@example.com", "hold_seconds": 60}, {"email_sha256": sha("u2@example.com")},
                     {"mobile": "5557654321", "hold_seconds": 30}):
            answer = assert_envelope(app.test_client().post(url, json=ping, headers=poster.headers), 200)
            assert answer == {"lead_status": "suppressed"}, (poster.source.name, ping)
    assert database["leads"].count_documents({"$or": [{"email": "u2@example.com"}, {"mobile": "5557654321"}]}) == 0
    blocks = Counter((str(b["source_id"]), b["claims"][0].split(":")[0])
                     for b in database["leads"].find({"kind": "erased"}))
    assert blocks == {(s.id, "~mobile"): 1, (s.id, "~email"): 1, (later.id, "~email"): 1, (later.id, "~mobile"): 1}
    # Another consumer is decided as ever.
    assert assert_envelope(q.post(lead(email="fresh2@example.com")), 201)["lead_status"] == "accept"


class Interrupted(Exception):
    """A create_source or update_source stopped between writing the source and its erasure blocks."""


def _interrupt_blocks(*_args: Any, **_kwargs: Any) -> int:
    raise Interrupted


@pytest.mark.parametrize("how", ["update_source", "create_source"])
def test_an_interrupted_provisioning_lets_no_erased_consumer_back(
    database: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """The source's new dedupe fields are written with a marker the blocks remove; while it is
    there, posts, tests and pings read the erasure records for those values.  ensure-indexes
    finishes the blocks."""
    app = make_app(database, clock=clock)
    erase_consumer(database, email=EMAIL, mobile=MOBILE, clock=clock)
    monkeypatch.setattr(erasure, "block_erased_values", _interrupt_blocks)
    if how == "update_source":
        src = create_source(database, "Grows", dedupe_fields=[], clock=clock)
        with pytest.raises(Interrupted):
            update_source(database, src.id, dedupe_fields=["email", "mobile"], clock=clock)
    else:
        with pytest.raises(Interrupted):
            create_source(database, "Half made", clock=clock)
        doc = database["database_sources"].find_one({"name": "Half made"})
        rotated = rotate_api_key(database, doc["_id"])
        src = CreatedSource(id=str(doc["_id"]), api_key=rotated, name="Half made")
    monkeypatch.undo()
    stored = database["database_sources"].find_one({"_id": ObjectId(src.id)})
    assert stored["erasure_blocks_pending"]["fields"] == ["email", "mobile"]
    assert database["leads"].count_documents({"kind": "erased", "source_id": ObjectId(src.id)}) == 0  # no block
    p = Poster(app.test_client(), database, src)
    for body in (lead(email=EMAIL), lead(mobile=MOBILE), lead(email=EMAIL, xxTest=True)):
        assert assert_envelope(p.post(body), 201)["lead_status"] == "suppressed", body
    ping = app.test_client().post(f"/api/lead/ping/{src.id}", json={"email_sha256": sha(STORED_EMAIL)},
                                  headers=p.headers)
    assert assert_envelope(ping, 200)["lead_status"] == "suppressed"
    assert consumer_leads(database) == 0
    result = app.test_cli_runner().invoke(args=["pingtree-leads", "ensure-indexes"])
    assert result.exit_code == 0, result.output
    assert f"erasure blocks completed for 1 source(s): {src.id}" in result.output
    assert "erasure_blocks_pending" not in database["database_sources"].find_one({"_id": ObjectId(src.id)})
    assert database["leads"].count_documents({"kind": "erased", "source_id": ObjectId(src.id)}) == 2
    assert assert_envelope(p.post(lead(email=EMAIL, transaction_id="after")), 201)["lead_status"] == "suppressed"
    assert consumer_leads(database) == 0
    assert complete_pending_blocks(database) == []  # nothing left: idempotent
    assert "erasure blocks completed" not in app.test_cli_runner().invoke(
        args=["pingtree-leads", "ensure-indexes"]).output


def test_a_finished_provisioning_leaves_no_marker_and_only_its_own_writer_removes_one(
    database: Any, clock: FakeClock
) -> None:
    src = create_source(database, "Done", clock=clock)
    plain = create_source(database, "Plain", dedupe_fields=["customer_id"], clock=clock)
    update_source(database, plain.id, dedupe_fields=["customer_id", "email"], clock=clock)
    for created in (src, plain):  # the document has the shape it had before markers existed
        assert "erasure_blocks_pending" not in database["database_sources"].find_one({"_id": ObjectId(created.id)})
    # A writer removes only the marker it wrote: a later update's marker stays until its own blocks stand.
    first, second = erasure.pending_blocks(["email"]), erasure.pending_blocks(["email", "mobile"])
    assert first is not None and second is not None and first["token"] != second["token"]
    database["database_sources"].update_one({"_id": ObjectId(src.id)}, {"$set": {"erasure_blocks_pending": second}})
    erasure.blocks_written(database, "database_sources", ObjectId(src.id), first)
    assert database["database_sources"].find_one({"_id": ObjectId(src.id)})["erasure_blocks_pending"] == second
    erasure.blocks_written(database, "database_sources", ObjectId(src.id), second)
    assert "erasure_blocks_pending" not in database["database_sources"].find_one({"_id": ObjectId(src.id)})
    assert erasure.pending_blocks(["customer_id"]) is None


def test_a_new_block_deletes_a_lead_of_the_consumer_that_holds_its_claim(database: Any, clock: FakeClock) -> None:
    """A lead stored under the new settings before the blocks are written (a race with update_source,
    here: a host that lets the consumer back) is deleted when the block goes in."""
    s = create_source(database, "s3", dedupe_fields=["email"], clock=clock)
    erase_consumer(database, email="u3@example.com", clock=clock)
    allowing = make_app(database, clock=clock, allow_after_erasure=True)
    p = Poster(allowing.test_client(), database, s)
    assert assert_envelope(p.post(lead(email="u3@example.com")), 201)["lead_status"] == "accept"  # took it over
    update_source(database, s.id, dedupe_fields=["email", "mobile"], clock=clock)
    assert database["leads"].count_documents({"email": "u3@example.com"}) == 0
    assert database["leads"].count_documents({"kind": "erased", "source_id": ObjectId(s.id)}) == 1


def test_a_suppressed_post_is_no_replay_of_an_expired_lead(database: Any, clock: FakeClock) -> None:
    src = create_source(database, "r", retention_days=1, suppression_lists=["L"], clock=clock)
    app = make_app(database, clock=clock, allow_fetch=True)
    p = Poster(app.test_client(), database, src)
    body = lead(email="d6@example.com", transaction_id="T7")
    first = assert_envelope(p.post(body), 201)
    assert first["lead_status"] == "accept"
    clock.advance(days=1, seconds=1)  # expired; the TTL monitor (real clock) has not removed it
    suppress(database, "L", emails=["d6@example.com"], now=clock())
    again = assert_envelope(p.post(body), 201)
    assert again == {"lead_status": "suppressed", "transaction_id": "T7"}
    fetched = app.test_client().get(f"/api/lead/fetch/{src.id}", query_string={"lead_id": first["lead_id"]},
                                    headers=p.headers)
    assert_envelope(fetched, 404)


def test_a_post_meeting_an_erasure_under_way_is_suppressed_not_a_duplicate(database: Any, clock: FakeClock) -> None:
    """The erasure's record is written, its scan has not reached the source yet (or a racing post
    stored the lead and has not read the records yet): a post of the consumer is ``suppressed``,
    never a ``duplicate`` of the lead about to go."""
    src = create_source(database, "m", dedupe_fields=["mobile"], clock=clock)
    app = make_app(database, clock=clock)
    p = Poster(app.test_client(), database, src)
    assert assert_envelope(p.post(lead(email="u8@example.com", mobile="5551112222")), 201)["lead_status"] == "accept"
    database["erasures"].insert_one({"keys": [f"email:{sha('u8@example.com')}"], "erased_at": clock.now,
                                     "completed_at": None})
    duplicates: list[Any] = []
    signals.lead_duplicate.connect(lambda sender, **kw: duplicates.append(kw), app, weak=False)
    answer = assert_envelope(p.post(lead(email="u8@example.com", mobile="5551112222")), 201)
    assert answer["lead_status"] == "suppressed" and duplicates == []
    # A retry of a transaction id this source accepted is still its replay (replays come first).
    kept = lead(email="keep8@example.com", transaction_id="T8")
    assert_envelope(p.post(kept), 201)
    database["erasures"].insert_one({"keys": [f"email:{sha('keep8@example.com')}"], "erased_at": clock.now,
                                     "completed_at": None})
    assert assert_envelope(p.post({**kept, "first_name": "Other"}), 409) is not None


def test_provisioning_blocks_through_the_app_s_collections_and_an_index(
    monitored: tuple[Any, CommandLog],  # noqa: F811
) -> None:
    db, log = monitored
    app = Flask("cli")
    names = {"leads_collection": "my_leads", "erasures_collection": "my_erasures"}
    PingtreeLeads().init_app(app, database=db, **names)
    erase_consumer(db, email="u9@example.com", mobile="5559990009", **names)
    runner = app.test_cli_runner()
    made = runner.invoke(args=["pingtree-leads", "create-source", "Later", "--dedupe", "email"])
    assert made.exit_code == 0, made.output
    source_id = made.output.split()[1]
    changed = runner.invoke(args=["pingtree-leads", "update-source", source_id, "--dedupe", "email,mobile"])
    assert changed.exit_code == 0, changed.output
    blocks = sorted(b["claims"][0].split(":")[0] for b in db["my_leads"].find({"kind": "erased"}))
    assert blocks == ["~email", "~mobile"] and "leads" not in db.list_collection_names()
    finds = [cmd for name, cmd in log.commands if name == "find" and cmd["find"] == "my_erasures"]
    assert finds
    for cmd in finds:
        plan = db.command("explain", {"find": "my_erasures", "filter": cmd["filter"]}, verbosity="queryPlanner")
        text = repr(plan["queryPlanner"]["winningPlan"])
        assert "IXSCAN" in text and "COLLSCAN" not in text, cmd["filter"]
    client = app.test_client()
    headers = {"Authorization": f"Bearer {made.output.split()[4]}"}
    for body in (lead(email="u9@example.com"), lead(mobile="5559990009")):
        answer = client.post(f"/api/lead/create/{source_id}", json=body, headers=headers)
        assert assert_envelope(answer, 201)["lead_status"] == "suppressed"


# -- the CSV import meets an erasure as a post does ---------------------------------------------------


@pytest.mark.parametrize("dedupe", [["email", "mobile"], []])
def test_the_import_answers_an_erased_consumer_suppressed_and_stores_nothing(
    database: Any, tmp_path: Any, dedupe: list[str],
) -> None:
    """Found open at the stop of 2026-12-07: a blocked row was reported as a conflict, and a source
    not deduplicating on email stored the erased consumer's row."""
    from flask import Flask

    from pingtree_leads import PingtreeLeads, create_source, erase_consumer

    from .conftest import write_csv

    src = create_source(database, "Imported", dedupe_fields=dedupe)
    erase_consumer(database, email="gone@example.com")
    app = Flask("import_after_erasure")
    PingtreeLeads().init_app(app, database=database)
    path = write_csv(tmp_path / "rows.csv", ["email", "first_name"],
                     [["gone@example.com", "Gone"], ["kept@example.com", "Kept"]])
    for extra in (["--dry-run"], []):
        result = app.test_cli_runner().invoke(args=["pingtree-leads", "import", src.id, str(path), "--json", *extra])
        assert result.exit_code == 0, result.output
        counts = json.loads(result.stdout)["counts"]
        assert counts["suppressed"] == 1 and counts["accepted"] == 1 and counts["conflict"] == 0, extra
    stored = [doc["email"] for doc in database["leads"].find({"kind": {"$exists": False}})]
    assert stored == ["kept@example.com"]


# -- found by the attack of 2026-12-07 (branch attack-s20) ------------------------------------------


@pytest.mark.parametrize("dedupe", [["email", "mobile"], ["email"], ["mobile"]])
def test_an_endpoint_still_caching_the_old_dedupe_fields_cannot_store_an_erased_consumer(
    database: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, dedupe: list[str],
) -> None:
    """Another process (a second gunicorn worker) stops the source deduplicating on email and
    mobile; this endpoint trusts its cached config, which still claims them, for up to
    ``source_cache_seconds``.  An erasure then must still refuse the consumer here: the post
    neither reads the erasure records (its config says a block answers for the values) nor
    met a block (the erasure saw a source deduplicating on nothing)."""
    src = create_source(database, "Cached", dedupe_fields=dedupe, clock=clock)
    app = make_app(database, clock=clock)
    p = Poster(app.test_client(), database, src)
    assert_envelope(p.post(lead()), 201)  # the endpoint caches the source (5 s by default)
    with monkeypatch.context() as other_process:  # update_source in another process: our caches keep it
        other_process.setattr(provisioning.CACHES, "forget_everywhere", lambda source_id: None)
        update_source(database, src.id, dedupe_fields=[], clock=clock)
    erase_consumer(database, email=EMAIL, mobile=MOBILE, clock=clock)
    for body in (lead(email=EMAIL), lead(mobile=MOBILE)):
        assert assert_envelope(p.post(body), 201)["lead_status"] == "suppressed", body
    ping = app.test_client().post(f"/api/lead/ping/{src.id}", json={"email": EMAIL, "hold_seconds": 60},
                                  headers=p.headers)
    assert assert_envelope(ping, 200) == {"lead_status": "suppressed"}
    assert consumer_leads(database) == 0
