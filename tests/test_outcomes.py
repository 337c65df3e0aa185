"""Every row of the contract's outcome table, on every backend."""

from __future__ import annotations

import io
import json
import re
from typing import Any

from bson import ObjectId

from pingtree_leads import create_source, set_source_active

from .conftest import Poster, assert_envelope, lead, make_app


def test_accept_stores_one_lead_as_the_contract_says(poster: Poster, source: Any) -> None:
    body = lead(email="  Ada@Example.COM ", state="ny", transaction_id="tx-1.a_b")
    data = assert_envelope(poster.post(body), 201)
    assert data["lead_status"] == "accept"
    assert data["transaction_id"] == "tx-1.a_b"
    assert re.fullmatch(r"[0-9a-f]{24}", data["lead_id"])
    docs = list(poster.database["leads"].find())
    assert len(docs) == 1
    doc = docs[0]
    assert doc["_id"] == ObjectId(data["lead_id"])
    assert doc["source_id"] == ObjectId(source.id)
    assert doc["transaction_id"] == "tx-1.a_b"
    assert doc["email"] == "ada@example.com"
    assert doc["state"] == "NY"
    assert doc["first_name"] == "Ada" and doc["city"] == "New York" and doc["zip_code"] == "10001"
    assert doc["trusted_form"] == {} and doc["extra"] == {}
    assert doc["created_at"] is not None


def test_transaction_id_is_generated_when_omitted(poster: Poster) -> None:
    first = assert_envelope(poster.post(lead()), 201)
    second = assert_envelope(poster.post(lead()), 201)
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,128}", first["transaction_id"])
    assert first["transaction_id"] != second["transaction_id"]
    assert {d["transaction_id"] for d in poster.stored()} == {first["transaction_id"], second["transaction_id"]}


def test_duplicate_on_email_case_insensitive_stores_nothing(poster: Poster) -> None:
    assert_envelope(poster.post(lead(email="dup@example.com")), 201)
    data = assert_envelope(poster.post(lead(email="DUP@Example.com", transaction_id="second")), 201)
    assert data == {"lead_status": "duplicate", "transaction_id": "second", "matched_on": ["email"]}
    assert poster.count() == 1


def test_duplicate_on_mobile(poster: Poster) -> None:
    assert_envelope(poster.post(lead(mobile="5551234567")), 201)
    data = assert_envelope(poster.post(lead(mobile="5551234567")), 201)
    assert data["lead_status"] == "duplicate" and data["matched_on"] == ["mobile"]
    assert poster.count() == 1


def test_duplicate_reports_the_field_that_blocked_it(poster: Poster) -> None:
    # Email is checked before mobile: a lead matching on both is reported on email.
    assert_envelope(poster.post(lead(email="both@example.com", mobile="5550000001")), 201)
    data = assert_envelope(poster.post(lead(email="both@example.com", mobile="5550000001")), 201)
    assert data["lead_status"] == "duplicate" and data["matched_on"] == ["email"]
    data = assert_envelope(poster.post(lead(mobile="5550000001")), 201)
    assert data["lead_status"] == "duplicate" and data["matched_on"] == ["mobile"]


def test_replay_with_same_fields_returns_the_original_lead(poster: Poster) -> None:
    body = lead(transaction_id="retry-me")
    first = assert_envelope(poster.post(body), 201)
    # Same lead after normalisation: case and whitespace differ, the stored form does not.
    again = dict(body, email=" " + body["email"].upper(), state="ny")
    data = assert_envelope(poster.post(again), 201)
    assert data == {
        "lead_status": "accept",
        "transaction_id": "retry-me",
        "lead_id": first["lead_id"],
        "replayed": True,
    }
    assert poster.count() == 1


def test_replay_is_checked_before_dedupe(poster: Poster) -> None:
    body = lead(transaction_id="t-replay")
    first = assert_envelope(poster.post(body), 201)
    data = assert_envelope(poster.post(body), 201)
    assert data["lead_status"] == "accept" and data["replayed"] is True and data["lead_id"] == first["lead_id"]


def test_same_transaction_id_with_different_fields_is_409(poster: Poster) -> None:
    assert_envelope(poster.post(lead(transaction_id="t-409")), 201)
    assert_envelope(poster.post(lead(transaction_id="t-409")), 409)
    assert poster.count() == 1


def test_transaction_ids_are_per_source(poster: Poster, database: Any) -> None:
    other = Poster(poster.client, database, create_source(database, "Other"))
    assert_envelope(poster.post(lead(transaction_id="shared")), 201)
    assert assert_envelope(other.post(lead(transaction_id="shared")), 201)["lead_status"] == "accept"
    assert poster.count() == 2


def test_dedupe_is_per_source(poster: Poster, database: Any) -> None:
    other = Poster(poster.client, database, create_source(database, "Other"))
    assert_envelope(poster.post(lead(email="same@example.com")), 201)
    assert assert_envelope(other.post(lead(email="same@example.com")), 201)["lead_status"] == "accept"


def test_dedupe_disabled_stores_repeats(client: Any, database: Any) -> None:
    src = create_source(database, "No dedupe", dedupe_fields=[])
    p = Poster(client, database, src)
    for _ in range(3):
        assert assert_envelope(p.post(lead(email="x@example.com", mobile="5550001111")), 201)["lead_status"] == "accept"
    assert p.count() == 3


def test_dedupe_on_email_only_ignores_mobile(client: Any, database: Any) -> None:
    src = create_source(database, "Email only", dedupe_fields=["email"])
    p = Poster(client, database, src)
    assert_envelope(p.post(lead(mobile="5550001111")), 201)
    assert assert_envelope(p.post(lead(mobile="5550001111")), 201)["lead_status"] == "accept"
    assert assert_envelope(p.post(lead(email="e@example.com")), 201)["lead_status"] == "accept"
    assert assert_envelope(p.post(lead(email="e@example.com")), 201)["lead_status"] == "duplicate"


def test_missing_required_field(client: Any, database: Any) -> None:
    src = create_source(database, "Strict", required_fields=["email", "mobile"])
    p = Poster(client, database, src)
    data = assert_envelope(p.post(lead(mobile=None, email="   ")), 400)
    assert data["lead_status"] == "missingField"
    assert data["fields"] == ["email", "mobile"]
    assert set(data["errors"]) == {"email", "mobile"}
    assert p.count() == 0


def test_missing_wins_over_invalid_and_every_problem_is_listed(client: Any, database: Any) -> None:
    src = create_source(database, "Strict", required_fields=["email"])
    p = Poster(client, database, src)
    data = assert_envelope(p.post(lead(email=None, zip_code="123", state="ZZ")), 400)
    assert data["lead_status"] == "missingField"
    assert data["fields"] == ["email"]
    assert set(data["errors"]) == {"email", "zip_code", "state"}
    assert p.count() == 0


def test_body_without_any_lead_field_is_missing_field(poster: Poster) -> None:
    data = assert_envelope(poster.post({"transaction_id": "t1", "campaign": "x"}), 400)
    assert data["lead_status"] == "missingField"
    assert "_schema" in data["errors"]
    assert poster.count() == 0


def test_empty_post_without_content_type_is_missing_field(poster: Poster) -> None:
    data = assert_envelope(poster.client.post(poster.url, headers=poster.headers), 400)
    assert data["lead_status"] == "missingField"


def test_invalid_field(poster: Poster) -> None:
    data = assert_envelope(poster.post(lead(email="not-an-email", zip_code="1234")), 400)
    assert data["lead_status"] == "invalidField"
    assert sorted(data["fields"]) == ["email", "zip_code"]
    assert set(data["errors"]) == {"email", "zip_code"}
    assert poster.count() == 0


def test_body_that_is_not_a_json_object_is_invalid_field(poster: Poster) -> None:
    for raw in ("[1, 2]", '"text"', "42", "null", "{not json", '{"a": 1, "a": 2}', "NaN"):
        response = poster.client.post(poster.url, data=raw, content_type="application/json", headers=poster.headers)
        data = assert_envelope(response, 400)
        assert data["lead_status"] == "invalidField", raw
        assert "_body" in data["errors"], raw
    assert poster.count() == 0


def test_no_key_is_401_with_www_authenticate(poster: Poster) -> None:
    response = poster.client.post(poster.url, json=lead())
    assert_envelope(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert poster.count() == 0


def test_wrong_key_and_unknown_source_get_the_same_answer(poster: Poster) -> None:
    wrong = poster.client.post(poster.url, json=lead(), headers={"Authorization": "Bearer ptl_wrong"})
    unknown = poster.client.post(f"/api/lead/create/{ObjectId()}", json=lead(), headers=poster.headers)
    for response in (wrong, unknown):
        assert_envelope(response, 401)
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert wrong.get_json() == unknown.get_json()
    assert poster.count() == 0


def test_key_of_another_source_is_401(poster: Poster, database: Any) -> None:
    other = create_source(database, "Other")
    response = poster.client.post(poster.url, json=lead(), headers={"Authorization": f"Bearer {other.api_key}"})
    assert_envelope(response, 401)


def test_inactive_source_is_403(client: Any, database: Any) -> None:
    src = create_source(database, "Paused", is_active=False)
    p = Poster(client, database, src)
    assert_envelope(p.post(lead()), 403)
    # The key is checked first: a wrong key on an inactive source is still 401.
    assert_envelope(p.post(lead(), headers={"Authorization": "Bearer nope"}), 401)
    assert p.count() == 0


def test_deactivation_takes_effect_after_the_cache_time(database: Any) -> None:
    src = create_source(database, "Soon paused")
    p = Poster(make_app(database, source_cache_seconds=0).test_client(), database, src)
    assert_envelope(p.post(lead()), 201)
    set_source_active(database, src.id, False)
    assert_envelope(p.post(lead()), 403)
    set_source_active(database, src.id, True)
    assert_envelope(p.post(lead()), 201)


def test_malformed_source_id_is_404_before_auth(poster: Poster) -> None:
    for bad in ("123", "zz" * 12, "0" * 25, ObjectId().__str__() + "x"):
        response = poster.client.post(f"/api/lead/create/{bad}", json=lead())
        assert_envelope(response, 404)
        assert "WWW-Authenticate" not in response.headers


def test_unknown_route_under_the_url_space_is_json_404(client: Any) -> None:
    for path in ("/api/lead", "/api/lead/", "/api/lead/nope", "/api/lead/create", f"/api/lead/create/{ObjectId()}/x"):
        assert_envelope(client.post(path), 404)
        assert_envelope(client.get(path), 404)


def test_wrong_method_is_405_with_allow(poster: Poster) -> None:
    for method in ("PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"):
        response = poster.client.open(poster.url, method=method, json=lead(), headers=poster.headers)
        assert response.status_code == 405, method
        assert response.headers["Allow"] == "GET, POST"
        if method != "HEAD":  # a HEAD answer has no body
            assert_envelope(response, 405)
    assert poster.count() == 0


def test_get_can_be_switched_off(database: Any, source: Any) -> None:
    p = Poster(make_app(database, allow_get=False).test_client(), database, source)
    response = p.get(lead())
    assert_envelope(response, 405)
    assert response.headers["Allow"] == "POST"
    assert p.count() == 0


def test_get_with_query_string_is_accepted(poster: Poster) -> None:
    data = assert_envelope(poster.get(lead(email="get@example.com")), 201)
    assert data["lead_status"] == "accept"
    assert poster.stored()[0]["email"] == "get@example.com"


def test_form_encoded_post_is_accepted(poster: Poster) -> None:
    response = poster.client.post(poster.url, data=lead(city="Santa Fe"), headers=poster.headers)
    assert assert_envelope(response, 201)["lead_status"] == "accept"
    assert poster.stored()[0]["city"] == "Santa Fe"


def test_multipart_post_is_accepted_but_files_are_not(poster: Poster) -> None:
    response = poster.client.post(poster.url, data=lead(), headers=poster.headers, content_type="multipart/form-data")
    assert assert_envelope(response, 201)["lead_status"] == "accept"
    with_file = dict(lead(), upload=(io.BytesIO(b"x"), "x.txt"))
    response = poster.client.post(
        poster.url, data=with_file, headers=poster.headers, content_type="multipart/form-data"
    )
    assert assert_envelope(response, 400)["lead_status"] == "invalidField"
    assert poster.count() == 1


def test_body_over_the_limit_is_413(database: Any, source: Any) -> None:
    p = Poster(make_app(database, max_body_bytes=1024).test_client(), database, source)
    big = lead(notes="x" * 2000)
    assert_envelope(p.post(big), 413)
    # A chunked body has no Content-Length: the limit still holds.
    response = p.client.post(
        p.url,
        input_stream=io.BytesIO(json.dumps(big).encode()),
        headers={**p.headers, "Transfer-Encoding": "chunked"},
        content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert_envelope(response, 413)
    assert p.count() == 0
    # Just under the limit is fine.
    assert_envelope(p.post(lead(notes="y" * 200)), 201)


def test_unsupported_content_type_is_415(poster: Poster) -> None:
    for ctype in ("text/plain", "application/xml", "application/octet-stream"):
        response = poster.client.post(poster.url, data=b"email=a@b.com", content_type=ctype, headers=poster.headers)
        assert_envelope(response, 415)
    assert poster.count() == 0


def test_checks_run_in_the_contract_order(poster: Poster, database: Any) -> None:
    bad_body = {"data": "x", "content_type": "text/plain"}
    # Malformed id beats missing key.
    assert poster.client.post("/api/lead/create/nope", **bad_body).status_code == 404
    # Missing key beats bad content type.
    assert poster.client.post(poster.url, **bad_body).status_code == 401
    # Inactive beats bad content type.
    inactive = create_source(database, "Off", is_active=False)
    p = Poster(poster.client, database, inactive)
    assert p.client.post(p.url, headers=p.headers, **bad_body).status_code == 403
    # Content type beats field validation.
    assert poster.client.post(poster.url, headers=poster.headers, **bad_body).status_code == 415


def test_host_max_content_length_gives_413_not_a_cut_body(database: Any, source: Any) -> None:
    app = make_app(database, config={"MAX_CONTENT_LENGTH": 300})
    p = Poster(app.test_client(), database, source)
    form = "&".join(f"{k}={v}" for k, v in lead(notes="z" * 400).items()).encode()
    response = p.client.post(
        p.url,
        input_stream=io.BytesIO(form),
        headers={**p.headers, "Transfer-Encoding": "chunked"},
        content_type="application/x-www-form-urlencoded",
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert_envelope(response, 413)
    assert p.count() == 0
