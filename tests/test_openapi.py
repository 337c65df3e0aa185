"""The OpenAPI document: valid, served, and covering every outcome of the contract."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from openapi_spec_validator import validate

from pingtree_leads import PingtreeLeads, Settings, create_blueprint, create_source, set_source_active
from pingtree_leads import repository as repository_module
from pingtree_leads.consent import CONSENT_FIELDS
from pingtree_leads.lenient import ALIASES
from pingtree_leads.openapi import (
    FETCH_EXAMPLE_LEAD,
    HASHED_NAME_PATTERN,
    HOLD_SECONDS_TEXT_PATTERN,
    LEAD_ID,
    MAX_HOLD_SECONDS,
    PING_EXAMPLE_HOLD_SECONDS,
    PING_EXAMPLE_NOW,
    PING_ID,
    REQUEST_EXAMPLE,
    openapi_document,
)
from pingtree_leads.repository import HOLD_EXPIRY_INDEX
from pingtree_leads.schemas import EXTRA_NAME, LEAD_FIELDS, TEST_FIELD, TRUSTED_FORM_FIELDS, US_STATES
from pingtree_leads.views import _hold_seconds

from .conftest import FakeClock, Poster, assert_envelope, lead, make_app

CREATE_PATH = "/api/lead/create/{db_source_id}"
PING_PATH = "/api/lead/ping/{db_source_id}"
CONTRACT_STATUSES = {"201", "400", "401", "403", "404", "405", "409", "413", "415", "500", "503"}
#: 413 (size limit) and 415 (content type) concern a request body: GET has none.
GET_STATUSES = CONTRACT_STATUSES - {"413", "415"}


@pytest.mark.parametrize(
    "settings", [Settings(), Settings(allow_get=False, city_allow_punctuation=True, max_extra_fields=3),
                 Settings(allow_fetch=True), Settings(allow_fetch=True, allow_get=False)]
)
def test_document_is_valid_openapi(settings: Settings) -> None:
    validate(openapi_document(settings))


def test_every_contract_outcome_is_documented_with_an_example() -> None:
    doc = openapi_document()
    path = doc["paths"][CREATE_PATH]
    for method, statuses in (("post", CONTRACT_STATUSES), ("get", GET_STATUSES)):
        responses = path[method]["responses"]
        assert set(responses) == statuses, method
        for status, response in responses.items():
            examples = response["content"]["application/json"]["examples"]
            assert examples, status
    examples_201 = path["post"]["responses"]["201"]["content"]["application/json"]["examples"]
    assert {e["value"]["data"]["lead_status"] for e in examples_201.values()} == {"accept", "duplicate", "suppressed",
                                                                               "capped"}
    assert any(e["value"]["data"].get("replayed") for e in examples_201.values())
    examples_400 = path["post"]["responses"]["400"]["content"]["application/json"]["examples"]
    assert {e["value"]["data"]["lead_status"] for e in examples_400.values()} == {"missingField", "invalidField"}
    assert "Retry-After" in path["post"]["responses"]["503"]["headers"]
    assert "WWW-Authenticate" in path["post"]["responses"]["401"]["headers"]
    assert "Allow" in path["post"]["responses"]["405"]["headers"]


def test_every_field_is_documented_with_its_rule() -> None:
    doc = openapi_document()
    props = doc["components"]["schemas"]["LeadInput"]["properties"]
    assert set(props) == {*LEAD_FIELDS, "transaction_id", *TRUSTED_FORM_FIELDS, TEST_FIELD, "ping_id", *ALIASES,
                          *CONSENT_FIELDS}
    assert props["first_name"]["maxLength"] == 100
    assert props["email"]["format"] == "email"
    assert props["zip_code"]["oneOf"][0]["pattern"] == "^[0-9]{5}$"
    assert props["date_of_birth"]["format"] == "date"
    assert props["xxTrustedFormCertUrl"]["pattern"] == "^https://"
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "The API key of the database source."
    }
    assert all(prop.get("description") for prop in props.values())


def test_get_is_documented_only_when_allowed() -> None:
    path = openapi_document(Settings(allow_get=False))["paths"][CREATE_PATH]
    assert "get" not in path and "post" in path


def test_test_mode_flag_is_documented_on_post_and_get() -> None:
    doc = openapi_document()
    flag = doc["components"]["schemas"]["LeadInput"]["properties"][TEST_FIELD]
    assert "nothing is stored" in flag["description"] and "Never stored" in flag["description"]
    path = doc["paths"][CREATE_PATH]
    assert any(p["name"] == TEST_FIELD for p in path["get"]["parameters"])
    # xxTest is no extra field: it does not use up one of max_extra_fields.
    lead_input = doc["components"]["schemas"]["LeadInput"]
    assert lead_input["maxProperties"] == len(lead_input["properties"]) + Settings().max_extra_fields
    for status in ("201", "400", "409"):
        examples = path["post"]["responses"][status]["content"]["application/json"]["examples"]
        assert any(e["value"]["data"].get("test") is True for e in examples.values()), status
    test_accept = path["post"]["responses"]["201"]["content"]["application/json"]["examples"]["testAccept"]
    assert "lead_id" not in test_accept["value"]["data"]


FETCH_PATH = "/api/lead/fetch/{db_source_id}"
FETCH_STATUSES = {"200", "400", "401", "403", "404", "405", "500", "503"}


def test_fetch_is_documented_only_when_allowed() -> None:
    assert FETCH_PATH not in openapi_document()["paths"]  # off by default: the route is a 404 then
    doc = openapi_document(Settings(allow_fetch=True))
    fetch = doc["paths"][FETCH_PATH]
    assert set(fetch) == {"get", "parameters"}  # GET only; the db_source_id path parameter
    operation = fetch["get"]
    assert operation["operationId"] == "fetchLead" and operation["security"] == [{"bearer": []}]
    assert {p["name"]: p["in"] for p in operation["parameters"]} == {"lead_id": "query", "transaction_id": "query"}
    assert not any(p["required"] for p in operation["parameters"])
    assert set(operation["responses"]) == FETCH_STATUSES
    for status, response in operation["responses"].items():
        assert response["content"]["application/json"]["examples"], status
    assert operation["responses"]["405"]["headers"]["Allow"]["schema"]["example"] == "GET"
    stored = doc["components"]["schemas"]["StoredLead"]
    assert set(stored["required"]) == {"lead_id", "transaction_id", "trusted_form", "extra", "created_at"}
    assert set(LEAD_FIELDS) <= set(stored["properties"])


def _value(examples: dict[str, Any], name: str) -> dict[str, Any]:
    value: dict[str, Any] = examples[name]["value"]
    return value


def _examples(operation: dict[str, Any], status: str) -> dict[str, Any]:
    examples: dict[str, Any] = operation["responses"][status]["content"]["application/json"]["examples"]
    return examples


def _real(response: Any, status: int) -> dict[str, Any]:
    """The whole answer, with a lead_id (random) replaced by the documents' placeholder."""
    assert_envelope(response, status)
    body: dict[str, Any] = response.get_json()
    if "lead_id" in body["data"]:
        body["data"]["lead_id"] = LEAD_ID
    return body


def test_create_examples_are_real_answers_test_mode_included(poster: Poster, database: Any) -> None:
    path = openapi_document()["paths"][CREATE_PATH]
    post = path["post"]
    created, conflict = _examples(post, "201"), _examples(post, "409")
    stored = {**REQUEST_EXAMPLE, "transaction_id": "tx-1001"}
    assert _real(poster.post(stored), 201) == _value(created, "accept")
    assert _real(poster.post({**stored, TEST_FIELD: "true"}), 201) == _value(created, "testReplay")
    assert _real(poster.post(stored), 201) == _value(created, "replay")
    duplicate = {"email": REQUEST_EXAMPLE["email"], "transaction_id": "tx-1002"}
    assert _real(poster.post(duplicate), 201) == _value(created, "duplicate")
    test_duplicate = {**duplicate, "transaction_id": "tx-1004", TEST_FIELD: "1"}
    assert _real(poster.post(test_duplicate), 201) == _value(created, "testDuplicate")
    new = {**REQUEST_EXAMPLE, "email": "ada.2@example.com", "transaction_id": "tx-1003", TEST_FIELD: True}
    assert _real(poster.post(new), 201) == _value(created, "testAccept")
    other = {**stored, "first_name": "Augusta"}
    assert _real(poster.post({**other, TEST_FIELD: "TRUE"}), 409) == _value(conflict, "testConflict")
    assert _real(poster.post(other), 409) == _value(conflict, "conflict")
    assert poster.count() == 1  # the test-mode posts stored nothing

    rejected = _examples(post, "400")
    assert _real(poster.post({**REQUEST_EXAMPLE, TEST_FIELD: "yes"}), 400) == _value(rejected, "invalidTestFlag")
    needs_email = create_source(database, "Needs email", required_fields=["email"])
    strict = Poster(poster.client, database, needs_email)
    assert _real(strict.post({"first_name": "Ada"}), 400) == _value(rejected, "missingField")
    assert _real(strict.post({"first_name": "Ada", TEST_FIELD: "1"}), 400) == _value(rejected, "testMissingField")


def test_document_examples_have_the_shape_of_real_answers(poster: Poster) -> None:
    path = openapi_document()["paths"][CREATE_PATH]
    examples = path["post"]["responses"]["201"]["content"]["application/json"]["examples"]
    body = lead(transaction_id="shape")
    real = {
        "accept": assert_envelope(poster.post(body), 201),
        "replay": assert_envelope(poster.post(body), 201),
        "duplicate": assert_envelope(poster.post(lead(email=body["email"])), 201),
    }
    for name, data in real.items():
        assert set(examples[name]["value"]["data"]) == set(data), name
    missing = path["post"]["responses"]["400"]["content"]["application/json"]["examples"]["missingField"]
    assert set(missing["value"]["data"]) == set(assert_envelope(poster.post({"campaign": "x"}), 400))


#: The post behind FETCH_EXAMPLE_LEAD: the example is what fetch answers for it.
FETCH_EXAMPLE_POST: dict[str, Any] = {
    "first_name": "Ada", "last_name": "Lovelace", "email": "Ada.Lovelace@Example.com", "mobile": "2125550123",
    "state": "ny", "zip_code": "10001", "transaction_id": "tx-1001",
    "xxTrustedFormCertUrl": FETCH_EXAMPLE_LEAD["trusted_form"]["cert_url"],
    "utm_source": "spring_campaign", "coverage_amount": 250000,
    "ip_address": "203.0.113.7", "consent_at": "2025-03-14T11:04:51-05:00",
    "jornaya_leadid": "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9",
}


def test_fetch_examples_are_real_answers(database: Any) -> None:
    app = make_app(database, allow_fetch=True)
    client = app.test_client()
    source = create_source(database, "Fetched")
    poster = Poster(client, database, source)
    stored = assert_envelope(poster.post(FETCH_EXAMPLE_POST), 201)
    operation = openapi_document(Settings(allow_fetch=True))["paths"][FETCH_PATH]["get"]
    url = f"/api/lead/fetch/{source.id}"

    def fetch(**query: str) -> Any:
        return client.get(url, query_string=query, headers=poster.headers)

    found = _value(_examples(operation, "200"), "found")
    for query in ({"lead_id": stored["lead_id"]}, {"transaction_id": "tx-1001"}):
        real = _real(fetch(**query), 200)
        lead = real["data"]["lead"]
        assert lead["lead_id"] == stored["lead_id"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", lead["created_at"])
        lead.update(lead_id=LEAD_ID, created_at=FETCH_EXAMPLE_LEAD["created_at"])
        assert real == found
    rejected = _examples(operation, "400")
    assert _real(fetch(), 400) == _value(rejected, "notExactlyOne")
    assert _real(fetch(lead_id=LEAD_ID, transaction_id="tx-1001"), 400) == _value(rejected, "notExactlyOne")
    assert _real(fetch(lead_id="nope"), 400) == _value(rejected, "badLeadId")
    assert _real(fetch(transaction_id="bad id!"), 400) == _value(rejected, "badTransactionId")
    not_found = _examples(operation, "404")
    assert _real(fetch(lead_id="0" * 24), 404) == _value(not_found, "notFound")
    assert _real(client.get("/api/lead/fetch/12345?lead_id=x"), 404) == _value(not_found, "badSourceId")
    assert _real(client.get(url, query_string={"lead_id": LEAD_ID}), 401) == _value(_examples(operation, "401"),
                                                                                      "error")
    response = client.post(url, headers=poster.headers)
    assert _real(response, 405) == _value(_examples(operation, "405"), "error")
    assert response.headers["Allow"] == operation["responses"]["405"]["headers"]["Allow"]["schema"]["example"]


def test_schemathesis_finds_fetch_answers_conforming(database: Any) -> None:
    """schemathesis against the fetch operation as documented (the create operations: test_fuzz.py)."""
    import schemathesis
    from schemathesis import GenerationMode

    from .test_fuzz import CHECKS, examples, fuzz_statuses

    app = make_app(database, allow_fetch=True)
    source = create_source(database, "Fuzzed fetch")
    poster = Poster(app.test_client(), database, source)
    stored = assert_envelope(poster.post(FETCH_EXAMPLE_POST), 201)
    operation = schemathesis.openapi.from_wsgi("/api/lead/openapi.json", app)[FETCH_PATH]["GET"]
    auth = {"Authorization": f"Bearer {source.api_key}"}
    statuses = set().union(*(fuzz_statuses(operation, source, mode, examples(database, 60, 20))
                             for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)))
    # 200: schemathesis also sends the parameters' examples, and tx-1001 is the stored lead's id.
    assert statuses <= {200, 400, 404}, statuses
    # The stored lead, by either key, is a conforming 200.
    for query in ({"lead_id": stored["lead_id"]}, {"transaction_id": "tx-1001"}):
        case = operation.Case(path_parameters={"db_source_id": source.id}, headers=auth, query=query)
        response = case.call()
        assert response.status_code == 200
        case.validate_response(response, checks=CHECKS)


def test_alias_and_ping_id_examples_are_real_answers(poster: Poster) -> None:
    rejected = _examples(openapi_document()["paths"][CREATE_PATH]["post"], "400")
    both = lead(phone="5125550143", mobile="5125550143")
    assert _real(poster.post(both), 400) == _value(rejected, "aliasAndField")
    assert _real(poster.post(lead(ping_id="nope")), 400) == _value(rejected, "invalidPingId")
    props = openapi_document()["components"]["schemas"]["LeadInput"]["properties"]
    for alias, field in ALIASES.items():  # an alias has its field's rule
        assert {k: v for k, v in props[alias].items() if k != "description"} == \
            {k: v for k, v in props[field].items() if k != "description"}
        assert f"Alias of {field}" in props[alias]["description"]
    assert "takes the hold over" in props["ping_id"]["description"]
    lead_input = openapi_document()["components"]["schemas"]["LeadInput"]
    assert {"not": {"required": ["phone", "mobile"]}} in lead_input["allOf"]
    assert {"required": ["phone"]} in lead_input["anyOf"]  # an alias is its field
    # Jornaya's names: never two spellings; no lead field (consent evidence), as the server says.
    assert "Sending both leadid_token and jornaya_leadid or universal_leadid" in props["leadid_token"]["description"]
    assert {"required": ["leadid_token"]} not in lead_input["anyOf"]
    assert {"required": ["jornaya_leadid"]} not in lead_input["anyOf"]
    answer = poster.post({"leadid_token": "0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9"})
    assert answer.status_code == 400, answer.get_json()
    assert poster.count() == 0


def test_a_custom_dedupe_field_in_matched_on_conforms(database: Any) -> None:
    """matched_on names any dedupe field (custom ones too), in create's and in ping's answers."""
    import schemathesis

    from .test_fuzz import CHECKS

    app = make_app(database)
    source = create_source(database, "Custom", dedupe_fields=["customer_id"])
    schema = schemathesis.openapi.from_wsgi("/api/lead/openapi.json", app)
    auth = {"Authorization": f"Bearer {source.api_key}"}
    create, ping = schema[CREATE_PATH]["POST"], schema[PING_PATH]["POST"]
    for expected in ("accept", "duplicate"):
        case = create.Case(path_parameters={"db_source_id": source.id}, headers=auth,
                           body={"first_name": "Ada", "customer_id": "C-77"}, media_type="application/json")
        response = case.call()
        assert response.json()["data"]["lead_status"] == expected
        case.validate_response(response, checks=CHECKS)
    case = ping.Case(path_parameters={"db_source_id": source.id}, headers=auth, body={"customer_id": "C-77"},
                     media_type="application/json")
    response = case.call()
    assert response.json()["data"] == {"lead_status": "duplicate", "matched_on": ["customer_id"]}
    case.validate_response(response, checks=CHECKS)


# -- the pre-ping operation ------------------------------------------------------------------------

PING_STATUSES = {"200", "400", "401", "403", "404", "405", "413", "415", "429", "500", "503"}


@pytest.mark.parametrize("settings", [Settings(), Settings(allow_fetch=True, allow_get=False)])
def test_ping_is_documented_with_every_outcome(settings: Settings) -> None:
    doc = openapi_document(settings)
    ping = doc["paths"][PING_PATH]
    assert set(ping) == {"post", "parameters"}  # POST only; the db_source_id path parameter
    operation = ping["post"]
    assert operation["operationId"] == "pingLead" and operation["security"] == [{"bearer": []}]
    assert set(operation["requestBody"]["content"]) == {
        "application/json", "application/x-www-form-urlencoded", "multipart/form-data"}
    assert set(operation["responses"]) == PING_STATUSES
    for status, response in operation["responses"].items():
        assert response["content"]["application/json"]["examples"], status
    assert operation["responses"]["405"]["headers"]["Allow"]["schema"]["example"] == "POST"
    assert "Retry-After" in operation["responses"]["503"]["headers"]
    assert "Retry-After" in operation["responses"]["429"]["headers"]
    assert [p["name"] for p in operation["parameters"]] == ["xxTest"]  # test mode from the query string
    assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
    assert set(_examples(operation, "200")) == {"accept", "held", "duplicate", "suppressed", "capped"}
    body = doc["components"]["schemas"]["PingInput"]
    props = body["properties"]
    assert set(props) == {"email", "mobile", "phone", "email_sha256", "mobile_sha256", "hold_seconds"}
    assert props["email_sha256"]["pattern"] == props["mobile_sha256"]["pattern"] == "^[0-9a-fA-F]{64}$"
    assert props["hold_seconds"]["oneOf"][0] == {"type": "integer", "minimum": 0, "maximum": MAX_HOLD_SECONDS}
    assert MAX_HOLD_SECONDS == repository_module.MAX_HOLD_SECONDS
    assert body["x-patternProperties"] == {HASHED_NAME_PATTERN: {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}}
    assert "ignored" in body["additionalProperties"]["description"]
    answer = doc["components"]["schemas"]["PingAnswer"]["properties"]["data"]
    assert set(answer["properties"]) == {"lead_status", "matched_on", "ping_id", "hold_expires_at", "retry_at", "test"}


def test_ping_text_patterns_say_what_the_server_accepts() -> None:
    for text in ("", "  ", "0", "7", "007", "99", "120", "299", "300", " 42 ", "301", "0301", "1000", "-1", "1.5",
                 "1e2", "abc", "+5", "3 0"):
        assert bool(re.fullmatch(HOLD_SECONDS_TEXT_PATTERN, text)) == (not _hold_seconds(text)[1]), text
    for name in ("customer_id_sha256", "page-url_sha256", "a_sha256", "_sha256", "1x_sha256", "customer_id"):
        hashed = re.fullmatch(HASHED_NAME_PATTERN, name)
        assert bool(hashed) == (name.endswith("_sha256") and bool(EXTRA_NAME.fullmatch(name[:-7]))), name


def test_ping_examples_are_real_answers(database: Any) -> None:
    clock = FakeClock()
    clock.now = datetime.fromisoformat(PING_EXAMPLE_NOW)
    client = make_app(database, clock=clock).test_client()
    source = create_source(database, "Pinged", clock=clock)
    poster = Poster(client, database, source)
    operation = openapi_document()["paths"][PING_PATH]["post"]
    url = f"/api/lead/ping/{source.id}"

    def ping(body: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("headers", poster.headers)
        return client.post(url, json=body, **kwargs)

    answered = _examples(operation, "200")
    example = operation["requestBody"]["content"]["application/json"]["example"]
    assert _real(ping(example), 200) == _value(answered, "accept")
    assert database["leads"].count_documents({}) == 0  # asking stores nothing
    # TTL monitors (mongomock's included) go by the real clock, and this one is in 2025.
    database["leads"].drop_index(HOLD_EXPIRY_INDEX)
    real = _real(ping({**example, "hold_seconds": PING_EXAMPLE_HOLD_SECONDS}), 200)
    ping_id = real["data"]["ping_id"]
    assert re.fullmatch(r"[0-9a-f]{24}", ping_id)
    real["data"]["ping_id"] = PING_ID
    assert real == _value(answered, "held")
    assert _real(ping(example), 200) == _value(answered, "duplicate")  # the hold
    # The create post with the ping_id takes the hold over: its lead_id is the ping_id.
    created = assert_envelope(poster.post({**REQUEST_EXAMPLE, "ping_id": ping_id}), 201)
    assert created["lead_status"] == "accept" and created["lead_id"] == ping_id
    assert _real(ping(example), 200) == _value(answered, "duplicate")  # now the lead

    rejected = _examples(operation, "400")
    assert _real(ping({"zip_code": "10001", "first_name": "Ada"}), 400) == _value(rejected, "noDedupeValue")
    assert _real(ping({"email_sha256": "abc", "hold_seconds": 301}), 400) == _value(rejected, "badHashAndHold")
    both = {"email": "ada.lovelace@example.com", "email_sha256": "0" * 64}
    assert _real(ping(both), 400) == _value(rejected, "valueAndHash")
    unreadable = client.post(url, data=b"[1]", content_type="application/json", headers=poster.headers)
    assert _real(unreadable, 400) == _value(rejected, "invalidBody")

    assert _real(ping(example, headers={}), 401) == _value(_examples(operation, "401"), "error")
    assert _real(client.post("/api/lead/ping/12345", json=example), 404) == _value(_examples(operation, "404"),
                                                                                     "badSourceId")
    response = client.get(url, headers=poster.headers)
    assert _real(response, 405) == _value(_examples(operation, "405"), "error")
    assert response.headers["Allow"] == operation["responses"]["405"]["headers"]["Allow"]["schema"]["example"]
    too_big = client.post(url, data=b'{"email": "' + b"x" * 70_000 + b'"}', content_type="application/json",
                          headers=poster.headers)
    assert _real(too_big, 413) == _value(_examples(operation, "413"), "error")
    text = client.post(url, data=b"email=a@example.com", content_type="text/plain", headers=poster.headers)
    assert _real(text, 415) == _value(_examples(operation, "415"), "error")
    set_source_active(database, source.id, False)
    assert _real(ping(example), 403) == _value(_examples(operation, "403"), "error")


def test_schemathesis_finds_ping_answers_conforming(database: Any) -> None:
    """schemathesis against the pre-ping operation as documented."""
    import schemathesis
    from schemathesis import GenerationMode

    from .test_fuzz import CHECKS, examples, fuzz_statuses

    app = make_app(database)
    source = create_source(database, "Fuzzed ping")
    poster = Poster(app.test_client(), database, source)
    assert_envelope(poster.post({**REQUEST_EXAMPLE, "mobile": "2125550123"}), 201)  # something to meet
    operation = schemathesis.openapi.from_wsgi("/api/lead/openapi.json", app)[PING_PATH]["POST"]
    auth = {"Authorization": f"Bearer {source.api_key}"}
    statuses = {mode: fuzz_statuses(operation, source, mode, examples(database, 80, 25))
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)}
    assert set().union(*statuses.values()) <= {200, 400, 413, 415}, statuses
    assert 200 in statuses[GenerationMode.POSITIVE]
    # The stored lead's email, plain and hashed, is a conforming duplicate; a held ping a conforming accept.
    digest = hashlib.sha256(REQUEST_EXAMPLE["email"].encode()).hexdigest()
    for body, status in (({"email": REQUEST_EXAMPLE["email"]}, "duplicate"), ({"email_sha256": digest}, "duplicate"),
                         ({"mobile_sha256": digest.upper(), "hold_seconds": "30"}, "accept")):
        case = operation.Case(path_parameters={"db_source_id": source.id}, headers=auth, body=body,
                              media_type="application/json")
        response = case.call()
        assert response.status_code == 200 and response.json()["data"]["lead_status"] == status, body
        case.validate_response(response, checks=CHECKS)


def test_document_is_served_under_the_blueprint_prefix(database: Any) -> None:
    from flask import Flask

    from pingtree_leads import create_blueprint

    app = Flask("host")
    app.register_blueprint(create_blueprint(database), url_prefix="/x")
    response = app.test_client().get("/x/api/lead/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    doc = response.get_json()
    validate(doc)
    assert list(doc["paths"]) == ["/x" + CREATE_PATH, "/x" + PING_PATH]
    # With fetch on, its path is there too, under the same prefix (served and printed by the CLI alike).
    on = Flask("host_with_fetch")
    PingtreeLeads(allow_fetch=True).init_app(on, database=database, url_prefix="/x")
    served = on.test_client().get("/x/api/lead/openapi.json").get_json()
    validate(served)
    assert list(served["paths"]) == ["/x" + CREATE_PATH, "/x" + PING_PATH, "/x" + FETCH_PATH]
    assert json.loads(cli(on).stdout) == served


def test_document_route_is_configurable(database: Any) -> None:
    client = make_app(database, openapi_route="/api/lead/spec").test_client()
    assert client.get("/api/lead/spec").status_code == 200
    assert_envelope(client.get("/api/lead/openapi.json"), 404)
    off = make_app(database, openapi_route=None).test_client()
    assert_envelope(off.get("/api/lead/openapi.json"), 404)


def test_document_route_answers_json_405_to_other_methods(client: Any) -> None:
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        response = client.open("/api/lead/openapi.json", method=method)
        assert_envelope(response, 405)
        assert response.headers["Allow"] == "GET, HEAD"


def test_get_lists_no_body_outcomes_and_never_answers_them(poster: Poster) -> None:
    path = openapi_document()["paths"][CREATE_PATH]
    assert not {"413", "415"} & set(path["get"]["responses"])
    assert "invalidBody" not in path["get"]["responses"]["400"]["content"]["application/json"]["examples"]
    # What GET ignores: a body, its content type, its size (the fields come from the query string).
    response = poster.client.get(poster.url, query_string={"email": "get.body@example.com"}, headers=poster.headers,
                                 data=b"x" * 100_000, content_type="application/zip")
    assert assert_envelope(response, 201)["lead_status"] == "accept"


def test_request_example_tried_twice_is_neither_a_replay_nor_a_conflict(poster: Poster) -> None:
    path = openapi_document()["paths"][CREATE_PATH]
    body = path["post"]["requestBody"]
    example = body["content"]["application/json"]["example"]
    assert example == REQUEST_EXAMPLE
    assert "transaction_id" not in example and "mobile" not in example
    assert "duplicate" in body["description"] and "transaction_id" in body["description"]
    # What Swagger UI's "Try it out" does: send the example as it is, twice.
    first = assert_envelope(poster.post(example), 201)
    second = assert_envelope(poster.post(example), 201)
    assert first["lead_status"] == "accept" and "replayed" not in first
    assert second["lead_status"] == "duplicate" and second["matched_on"] == ["email"]
    assert second["transaction_id"] != first["transaction_id"]
    # Changing only the email stores the lead again (the example carries no mobile to match on).
    third = assert_envelope(poster.post({**example, "email": "ada.2@example.com"}), 201)
    assert third["lead_status"] == "accept" and poster.count() == 2


def test_state_names_the_usps_codes_and_the_invalid_example_is_the_real_answer(poster: Poster) -> None:
    doc = openapi_document()
    state = doc["components"]["schemas"]["LeadInput"]["properties"]["state"]
    assert "USPS" in state["description"]
    assert all(code in state["description"] for code in US_STATES)
    path = doc["paths"][CREATE_PATH]
    parameter = next(p for p in path["get"]["parameters"] if p["name"] == "state")
    assert parameter["description"] == state["description"]
    example = path["post"]["responses"]["400"]["content"]["application/json"]["examples"]["invalidField"]["value"]
    real = assert_envelope(poster.post({"state": "XX", "zip_code": "1234"}), 400)
    assert example["data"] == real
    assert "USPS" in real["errors"]["state"][0]


# -- flask pingtree-leads openapi ----------------------------------------------------------------

def cli(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["pingtree-leads", "openapi", *args])


PARTNERS = ["/partners" + CREATE_PATH, "/partners" + PING_PATH]


@pytest.mark.parametrize("mount", ["init_app", "register_blueprint"])
def test_cli_document_defaults_to_where_the_blueprint_is_mounted(database: Any, mount: str) -> None:
    app = Flask("partners_host")
    if mount == "init_app":
        PingtreeLeads().init_app(app, database=database, url_prefix="/partners")
    else:
        app.register_blueprint(create_blueprint(database), url_prefix="/partners")
    result = cli(app)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    validate(doc)
    assert list(doc["paths"]) == PARTNERS
    # The same paths the running app serves, and the served document agrees.
    assert app.test_client().get("/partners/api/lead/openapi.json").get_json() == doc
    assert list(json.loads(cli(app, "--prefix", "/other/").stdout)["paths"]) == [
        "/other" + CREATE_PATH, "/other" + PING_PATH]
    assert list(json.loads(cli(app, "--prefix", "").stdout)["paths"]) == [CREATE_PATH, PING_PATH]


@pytest.fixture
def partners_app(database: Any) -> Flask:
    app = Flask("partners_host")
    PingtreeLeads().init_app(app, database=database, url_prefix="/partners")
    return app


def test_cli_writes_json_or_yaml_to_a_file(partners_app: Flask, tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    as_json = tmp_path / "spec.json"
    result = cli(partners_app, "--output", str(as_json))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert str(as_json) in result.stderr
    doc = json.loads(as_json.read_text(encoding="utf-8"))
    validate(doc)
    assert list(doc["paths"]) == PARTNERS
    # YAML: by --format, or by the file's suffix; the same document either way.
    for args, target in ((["--format", "yaml", "-o", str(tmp_path / "a.txt")], tmp_path / "a.txt"),
                         (["-o", str(tmp_path / "b.yaml")], tmp_path / "b.yaml"),
                         (["-o", str(tmp_path / "c.YML")], tmp_path / "c.YML")):
        result = cli(partners_app, *args)
        assert result.exit_code == 0, result.output
        text = target.read_text(encoding="utf-8")
        assert text.startswith(("openapi:", "paths:", "info:")) and not text.lstrip().startswith("{")
        assert yaml.safe_load(text) == doc
    # --format wins over the suffix.
    assert cli(partners_app, "--format", "json", "-o", str(tmp_path / "d.yaml")).exit_code == 0
    assert json.loads((tmp_path / "d.yaml").read_text(encoding="utf-8")) == doc


def test_cli_prints_yaml_to_stdout(partners_app: Flask) -> None:
    yaml = pytest.importorskip("yaml")
    result = cli(partners_app, "--format", "yaml")
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(result.stdout)
    validate(doc)
    assert doc == json.loads(cli(partners_app).stdout)


def test_cli_yaml_without_pyyaml_says_how_to_get_it(partners_app: Flask, monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml -> ImportError
    target = tmp_path / "spec.yaml"
    result = cli(partners_app, "-o", str(target))
    assert result.exit_code == 1
    assert "pip install 'pingtree-leads[yaml]'" in result.output and "Traceback" not in result.output
    assert not target.exists()
    assert cli(partners_app, "--format", "json").exit_code == 0  # JSON never needs it


def test_cli_bad_output_or_format_is_one_line(partners_app: Flask, tmp_path: Path) -> None:
    result = cli(partners_app, "-o", str(tmp_path / "no" / "such" / "dir" / "spec.json"))
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot write") and "Traceback" not in result.output
    assert cli(partners_app, "--format", "xml").exit_code == 2
    assert cli(partners_app, "-o", str(tmp_path)).exit_code == 2  # a directory
