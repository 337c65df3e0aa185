"""Contract §9 (turn 3): test mode everywhere, holds bounded and unguessable, numbers, fetch.

Each test here failed before its fix; all run on every backend (plain mongomock,
SecantusDB, mongod when ``MONGODB_URI`` is set) unless they say otherwise.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from bson import ObjectId
from flask import Flask

from pingtree_leads import PingtreeLeads, create_source, purge_expired_holds, signals
from pingtree_leads.cli import _Progress
from pingtree_leads.repository import HOLD_EXPIRY_INDEX, LEAD_INDEXES

from .conftest import REAL_BACKENDS, FakeClock, assert_envelope, lead, make_app
from .test_ping import Pinger, pinger

# -- test mode wherever the request carries it ---------------------------------------------------


@pytest.mark.parametrize("query", ["xxTest=true", "xxtest=1", "XXTEST=TRUE", "xx%54est=true", "%78%78Test=1",
                                   "xxTest=1&xxTest=true", "a=b&xxTest=+1+"])
def test_xxtest_in_a_posts_query_string_is_a_test(database: Any, clock: FakeClock, query: str) -> None:
    p = pinger(database, clock)
    data = assert_envelope(p.client.post(f"{p.url}?{query}", json=lead(), headers=p.headers), 201)
    assert data["test"] is True and data["lead_status"] == "accept" and "lead_id" not in data
    assert p.count() == 0


def test_xxtest_in_a_form_or_multipart_body_or_any_case_is_a_test(database: Any, clock: FakeClock) -> None:
    p = pinger(database, clock)
    body = {**lead(), "XxTeSt": "true"}
    for kind in ("data", "multipart"):
        sent = {"data": body} if kind == "data" else {"data": body, "content_type": "multipart/form-data"}
        data = assert_envelope(p.client.post(p.url, headers=p.headers, **sent), 201)
        assert data["test"] is True, kind
    assert p.count() == 0


def test_a_percent_encoded_test_ping_holds_nothing(database: Any, clock: FakeClock) -> None:
    p = pinger(database, clock)
    data = assert_envelope(p.client.post(f"{p.ping_url}?xx%54est=true", json={"email": "q@example.com",
                                                                              "hold_seconds": 30},
                                         headers=p.headers), 200)
    assert data == {"lead_status": "accept", "test": True} and p.holds() == []


def test_a_test_with_an_unreadable_body_sends_no_signal(database: Any, clock: FakeClock) -> None:
    p = pinger(database, clock)
    seen: list[Any] = []
    app = p.client.application
    with signals.lead_rejected.connected_to(lambda sender, **kw: seen.append(kw), sender=app):
        answer = p.client.post(f"{p.url}?xxTest=true", data=b"{bad", headers={**p.headers,
                                                                             "Content-Type": "application/json"})
        assert_envelope(answer, 400)
        assert seen == []
        assert_envelope(p.client.post(p.url, data=b"{bad", headers={**p.headers, "Content-Type": "application/json"}),
                        400)
        assert len(seen) == 1  # a real post's refusal is signalled


def test_xxtest_given_twice_must_agree(database: Any, clock: FakeClock) -> None:
    p = pinger(database, clock)
    data = assert_envelope(p.client.post(f"{p.url}?xxTest=true", json={**lead(), "xxTest": "false"},
                                         headers=p.headers), 400)
    assert data["lead_status"] == "invalidField" and data["fields"] == ["xxTest"]
    data = assert_envelope(p.client.post(f"{p.url}?xxTest=perhaps", json=lead(), headers=p.headers), 400)
    assert data["fields"] == ["xxTest"]
    # Both say the same: one test.
    data = assert_envelope(p.client.post(f"{p.url}?xxTest=1", json={**lead(), "xxTest": True}, headers=p.headers), 201)
    assert data["test"] is True
    assert p.count() == 0


def test_a_test_ping_answers_as_usual_and_holds_nothing(database: Any, clock: FakeClock) -> None:
    p = pinger(database, clock)
    for url in (f"{p.ping_url}?xxTest=true", p.ping_url):
        body = {"email": "t@example.com", "hold_seconds": 60}
        if url == p.ping_url:
            body["xxTest"] = "1"
        data = assert_envelope(p.client.post(url, json=body, headers=p.headers), 200)
        assert data == {"lead_status": "accept", "test": True}
    assert p.holds() == []
    assert assert_envelope(p.post(lead(email="t@example.com")), 201)["lead_status"] == "accept"
    data = assert_envelope(p.client.post(f"{p.ping_url}?xxTest=true", json={"email": "t@example.com"},
                                         headers=p.headers), 200)
    assert data == {"lead_status": "duplicate", "matched_on": ["email"], "test": True}


# -- numbers and parameters -------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["9" * 5000, "0" * 5000, "1" + "0" * 4400, "0" * 19 + "30"])
def test_over_long_hold_seconds_is_400_not_500(database: Any, clock: FakeClock, value: str) -> None:
    p = pinger(database, clock)
    for sent in ({"json": {"email": "n@example.com", "hold_seconds": value}},
                 {"data": {"email": "n@example.com", "hold_seconds": value}}):
        data = assert_envelope(p.client.post(p.ping_url, headers=p.headers, **sent), 400)
        assert data["fields"] == ["hold_seconds"]
    assert p.holds() == []
    for value in ("0300", "0" * 18 + "30"):  # leading zeros are fine up to 20 characters
        assert "ping_id" in assert_envelope(p.ping({"email": f"n{len(value)}@example.com", "hold_seconds": value}),
                                            200)


def test_a_repeated_fetch_parameter_is_400(database: Any, clock: FakeClock) -> None:
    src = create_source(database, "Fetched", clock=clock)
    client = make_app(database, clock=clock, allow_fetch=True).test_client()
    headers = {"Authorization": f"Bearer {src.api_key}"}
    stored = assert_envelope(client.post(f"/api/lead/create/{src.id}", json=lead(), headers=headers), 201)
    url = f"/api/lead/fetch/{src.id}"
    assert_envelope(client.get(url, query_string={"lead_id": stored["lead_id"]}, headers=headers), 200)
    for query in (f"lead_id={stored['lead_id']}&lead_id={ObjectId()}", f"lead_id={stored['lead_id']}&lead_id=",
                  "transaction_id=a&transaction_id=b"):
        data = assert_envelope(client.get(f"{url}?{query}", headers=headers), 400)
        assert data["errors"] and data["fields"] == [query.split("=")[0]]


# -- holds ---------------------------------------------------------------------------------------------


def test_a_held_ping_meeting_an_expired_lead_releases_its_claims_for_good(database: Any, clock: FakeClock) -> None:
    p = pinger(database, clock, dedupe_window_days=1)
    assert_envelope(p.post(lead(email="old@example.com", transaction_id="old")), 201)
    clock.advance(days=1, seconds=1)
    assert "ping_id" in assert_envelope(p.ping({"email": "old@example.com", "hold_seconds": 5}), 200)
    old = database["leads"].find_one({"transaction_id": "old"})
    assert [claim for claim in old["claims"] if "email" in claim] == []  # the claim and its twin
    # The source now deduplicates forever: the old lead must not come back for post, test or ping.
    database["database_sources"].update_one({"_id": ObjectId(p.source.id)}, {"$set": {"dedupe_window_days": None}})
    clock.advance(seconds=10)  # the hold has ended
    fresh = Pinger(make_app(database, clock=clock, source_cache_seconds=0).test_client(), database, p.source)
    assert assert_envelope(fresh.ping({"email": "old@example.com"}), 200)["lead_status"] == "accept"
    test = assert_envelope(fresh.post({**lead(email="old@example.com"), "xxTest": True}), 201)
    assert test["lead_status"] == "accept"
    assert assert_envelope(fresh.post(lead(email="old@example.com")), 201)["lead_status"] == "accept"


def test_a_source_holds_at_most_max_live_holds(database: Any, clock: FakeClock) -> None:
    src = create_source(database, "Capped holds", clock=clock)
    p = Pinger(make_app(database, clock=clock, max_live_holds=2).test_client(), database, src)
    assert "ping_id" in assert_envelope(p.ping({"email": "h1@example.com", "hold_seconds": 30}), 200)
    clock.advance(seconds=10)
    assert "ping_id" in assert_envelope(p.ping({"email": "h2@example.com", "hold_seconds": 60}), 200)
    refused = p.ping({"email": "h3@example.com", "hold_seconds": 60})
    assert_envelope(refused, 429)
    assert refused.headers["Retry-After"] == "20"  # when the first hold ends
    assert len(p.holds()) == 2
    # Asking without a hold is still answered, and the consumer refused was not held.
    assert assert_envelope(p.ping({"email": "h3@example.com"}), 200) == {"lead_status": "accept"}
    clock.advance(seconds=21)  # the first hold has ended: room for one
    assert "ping_id" in assert_envelope(p.ping({"email": "h3@example.com", "hold_seconds": 60}), 200)


@pytest.mark.parametrize("database", REAL_BACKENDS, indirect=True)
def test_racing_held_pings_never_exceed_max_live_holds(database: Any) -> None:
    src = create_source(database, "Raced holds")
    app = make_app(database, max_live_holds=5)
    p = Pinger(app.test_client(), database, src)
    assert_envelope(p.post(lead()), 201)  # indexes in place
    answers: list[int] = []
    start = threading.Barrier(24)

    def ping(n: int) -> None:
        client = app.test_client()
        start.wait()
        answers.append(client.post(p.ping_url, json={"email": f"r{n}@example.com", "hold_seconds": 60},
                                   headers=p.headers).status_code)

    threads = [threading.Thread(target=ping, args=(n,)) for n in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(answers) <= {200, 429} and answers.count(200) == 5  # every slot taken, none more
    assert len(p.holds()) == 5
    # The refused consumers were never held: each is accepted now (no false duplicate).
    held = {hold["claims"][-1] for hold in p.holds()}
    assert len(held) == 5
    for n in range(24):
        assert_envelope(p.post(lead(email=f"r{n}@example.com")), 201)
    assert p.leads() == 1 + 19  # the first lead, and the 19 consumers nobody holds


def test_expired_holds_are_removed_by_ttl_or_purge(database: Any, clock: FakeClock) -> None:
    p = pinger(database, clock)
    for n in range(3):
        assert_envelope(p.ping({"email": f"e{n}@example.com", "hold_seconds": (30, 100, 300)[n]}), 200)
    info = database["leads"].index_information()[HOLD_EXPIRY_INDEX]
    assert info["expireAfterSeconds"] == 0 and info["sparse"] is True
    assert LEAD_INDEXES[HOLD_EXPIRY_INDEX][0] == [("hold_expires_at", 1)]
    clock.advance(seconds=150)
    cli_app = Flask("purge")
    PingtreeLeads().init_app(cli_app, database=database, clock=clock)
    result = cli_app.test_cli_runner().invoke(args=["pingtree-leads", "purge-holds"])
    assert result.exit_code == 0 and "expired holds removed: 2" in result.stdout
    assert [h["claims"][-1].startswith("~email:") for h in p.holds()] == [True]
    assert purge_expired_holds(database) == 0  # the real clock: the last hold ends in 300 s


def test_ping_ids_are_not_guessable_from_one_another(database: Any, clock: FakeClock) -> None:
    p = pinger(database, clock)
    ids = [assert_envelope(p.ping({"email": f"g{n}@example.com", "hold_seconds": 30}), 200)["ping_id"]
           for n in range(20)]
    # ObjectId(): 4 bytes of time, 5 bytes fixed per process, a 3-byte counter that counts up.
    tails = [bytes.fromhex(i)[4:] for i in ids]
    assert len({t[:5] for t in tails}) == len(ids)  # no fixed process part
    counters = [int.from_bytes(t[5:], "big") for t in tails]
    assert sum(b - a == 1 for a, b in zip(counters, counters[1:], strict=False)) < 3
    assert all(abs(ObjectId(i).generation_time.timestamp() - clock.now.timestamp()) < 2 for i in ids)


# -- the import's progress line --------------------------------------------------------------------


def test_a_warning_never_lands_on_the_progress_line(capsys: pytest.CaptureFixture[str]) -> None:
    with _Progress(10, "importing", every=0) as bar:
        bar.tty = True  # as on a terminal: the line is redrawn in place
        bar.update(3)
        bar.warn("column 'fone' is not a lead field")
    err = capsys.readouterr().err
    assert "\nWarning: column 'fone'" in err and err.endswith("\n")
    assert not [line for line in err.split("\n") if "rows" in line and "Warning" in line]
    with pytest.raises(RuntimeError), _Progress(10, "importing", every=0) as bar:
        bar.tty = True
        bar.update(3)
        raise RuntimeError("stop")
    assert capsys.readouterr().err.endswith("\n")


# -- names of rules in another case -------------------------------------------------------------------


def test_rules_naming_a_standard_field_in_another_case_name_the_field(database: Any, clock: FakeClock) -> None:
    """The endpoint reads ``Email`` as ``email``: a rule on ``Email`` is the rule on ``email``."""
    src = create_source(database, "Cased rules", dedupe_fields=["Email", "MOBILE"], required_fields=["Zip_Code"])
    stored = database["database_sources"].find_one({"_id": ObjectId(src.id)})
    assert stored["dedupe_fields"] == ["email", "mobile"] and stored["required_fields"] == ["zip_code"]
    p = Pinger(make_app(database, clock=clock).test_client(), database, src)
    assert assert_envelope(p.post({"Email": "same@example.com", "zip": "10001"}), 201)["lead_status"] == "accept"
    assert assert_envelope(p.post({"EMAIL": "same@example.com", "zip": "10001"}), 201)["lead_status"] == "duplicate"
    assert assert_envelope(p.post({"email": "other@example.com"}), 400)["lead_status"] == "missingField"


@pytest.mark.parametrize("name", ["Phone", "ZIP", "xxtest", "XXTEST", "Ping_Id", "HOLD_SECONDS", "Transaction_ID",
                                  "xxtrustedformtoken", "Email_SHA256"])
def test_a_custom_dedupe_field_may_not_be_a_read_name_in_any_case(database: Any, name: str) -> None:
    with pytest.raises(ValueError):
        create_source(database, "Bad rule", dedupe_fields=[name])


def test_a_json_number_too_long_for_python_says_so(database: Any, clock: FakeClock) -> None:
    p = pinger(database, clock)
    answer = p.client.post(p.url, data=b'{"mobile": ' + b"5" * 5000 + b"}",
                           headers={**p.headers, "Content-Type": "application/json"})
    assert assert_envelope(answer, 400)["errors"] == {"_body": ["A JSON number has too many digits."]}
