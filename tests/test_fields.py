"""Every row of the contract's field table, through the endpoint, on every backend."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest

from .conftest import Poster, assert_envelope, lead, make_app

TOMORROW_ANYWHERE = (datetime.now(timezone.utc) + timedelta(days=2)).date().isoformat()

# field -> (accepted value, how it is stored)
ACCEPTED = [
    ("first_name", "  Mary Ann  ", "Mary Ann"),
    ("first_name", "x" * 100, "x" * 100),
    ("last_name", "O'Neil-Smith", "O'Neil-Smith"),
    ("email", "First.Last+tag@Sub.Example.COM", "first.last+tag@sub.example.com"),
    ("email", ("a" * 64) + "@" + ("b" * 63) + "." + ("c" * 63) + "." + ("d" * 57) + ".com",
     ("a" * 64) + "@" + ("b" * 63) + "." + ("c" * 63) + "." + ("d" * 57) + ".com"),
    ("mobile", "5551234567", "5551234567"),
    ("mobile", 5551234567, "5551234567"),
    ("address", "1600 Pennsylvania Ave NW, Apt #2", "1600 Pennsylvania Ave NW, Apt #2"),
    ("address", "a" * 200, "a" * 200),
    ("city", "San Luis Obispo", "San Luis Obispo"),
    ("city", "Española", "Española"),
    ("state", "ca", "CA"),
    ("state", "PR", "PR"),
    ("state", "dc", "DC"),
    ("state", "AE", "AE"),
    ("zip_code", "02134", "02134"),
    ("zip_code", 90210, "90210"),
    ("date_of_birth", "1984-02-29", "1984-02-29"),
    ("date_of_birth", date.today().isoformat(), date.today().isoformat()),
]

REJECTED = [
    ("first_name", "x" * 101),
    ("first_name", 12),
    ("first_name", True),
    ("first_name", {"$ne": ""}),
    ("first_name", ["Ada"]),
    ("first_name", "$where"),
    ("first_name", "Ada\x00"),
    ("last_name", "Love\nlace"),
    ("email", "no-at-sign"),
    ("email", "a@b"),
    ("email", "two@@example.com"),
    ("email", ("a" * 250) + "@x.com"),
    ("email", {"$gt": ""}),
    ("mobile", "555123456"),
    ("mobile", "55512345678"),
    ("mobile", "555-123-4567"),
    ("mobile", "(555)1234567"),
    ("mobile", "٥٥٥١٢٣٤٥٦٧"),
    ("mobile", 555123456),
    ("mobile", 5551234567.0),
    ("mobile", True),
    ("address", "a" * 201),
    ("city", "St. Louis"),
    ("city", "Winston-Salem"),
    ("city", "Area 51"),
    ("state", "XX"),
    ("state", "N Y"),
    ("state", "NYC"),
    ("state", "UM"),
    ("zip_code", "1234"),
    ("zip_code", "123456"),
    ("zip_code", "12345-6789"),
    ("zip_code", 2134),
    ("zip_code", "abcde"),
    ("date_of_birth", "1990-02-30"),
    ("date_of_birth", "1990-2-3"),
    ("date_of_birth", "12/10/1990"),
    ("date_of_birth", "19901210"),
    ("date_of_birth", TOMORROW_ANYWHERE),
    ("transaction_id", "has space"),
    ("transaction_id", "x" * 129),
    ("transaction_id", "slash/no"),
    ("transaction_id", 123),
    ("xxTrustedFormCertUrl", "http://cert.trustedform.com/abc"),
    ("xxTrustedFormCertUrl", "not a url"),
    ("xxTrustedFormPingUrl", "ftp://ping.trustedform.com/abc"),
    ("xxTrustedFormToken", {"a": 1}),
]


@pytest.mark.parametrize(("field", "value", "stored"), ACCEPTED)
def test_accepted_values_are_stored_normalised(poster: Poster, field: str, value: Any, stored: str) -> None:
    data = assert_envelope(poster.post(lead(**{field: value})), 201)
    assert data["lead_status"] == "accept"
    assert poster.stored()[0][field] == stored


@pytest.mark.parametrize(("field", "value"), REJECTED)
def test_rejected_values_are_invalid_field_and_store_nothing(poster: Poster, field: str, value: Any) -> None:
    data = assert_envelope(poster.post(lead(**{field: value})), 400)
    assert data["lead_status"] == "invalidField"
    assert data["fields"] == [field]
    assert list(data["errors"]) == [field]
    assert all(isinstance(m, str) and m for m in data["errors"][field])
    assert poster.count() == 0


def test_error_messages_never_echo_the_value(poster: Poster) -> None:
    secret = "leaky.value.123@@example.com"
    # Values that no message's own example ("such as 5551234567") holds.
    response = poster.post(lead(email=secret, mobile="98760", zip_code="abcde"))
    assert_envelope(response, 400)
    text = response.get_data(as_text=True)
    assert secret not in text and "98760" not in text and "abcde" not in text


def test_city_punctuation_option_widens_the_rule(database: Any, source: Any) -> None:
    p = Poster(make_app(database, city_allow_punctuation=True).test_client(), database, source)
    for city in ("St. Louis", "Winston-Salem", "Coeur d'Alene"):
        assert assert_envelope(p.post(lead(city=city)), 201)["lead_status"] == "accept", city
    assert assert_envelope(p.post(lead(city="Area 51")), 400)["fields"] == ["city"]
    assert {d["city"] for d in p.stored()} == {"St. Louis", "Winston-Salem", "Coeur d'Alene"}


def test_punctuated_city_rule_has_no_catastrophic_backtracking(database: Any, source: Any) -> None:
    # With a nested-quantifier regex this input took seconds, doubling per character.
    p = Poster(make_app(database, city_allow_punctuation=True).test_client(), database, source)
    for city in ("a" + "." * 90 + "1", "a" + " -" * 45 + "1", "a'" * 49 + "9"):
        assert assert_envelope(p.post(lead(city=city)), 400)["fields"] == ["city"]


def test_lone_surrogates_are_invalid_not_a_server_error(poster: Poster) -> None:
    for raw in (b'{"first_name": "\\ud800"}', b'{"campaign": "x\\udfff"}'):
        response = poster.client.post(poster.url, data=raw, content_type="application/json", headers=poster.headers)
        assert assert_envelope(response, 400)["lead_status"] in ("invalidField", "missingField"), raw
    assert poster.count() == 0


def test_city_punctuation_option_from_app_config(database: Any, source: Any) -> None:
    app = make_app(database, config={"PINGTREE_LEADS_CITY_ALLOW_PUNCTUATION": True})
    p = Poster(app.test_client(), database, source)
    assert assert_envelope(p.post(lead(city="St. Louis")), 201)["lead_status"] == "accept"


def test_blank_or_null_optional_fields_count_as_absent(poster: Poster) -> None:
    data = assert_envelope(poster.post(lead(address="   ", city=None, transaction_id="", xxTrustedFormToken="")), 201)
    doc = poster.stored()[0]
    assert "address" not in doc and "city" not in doc
    assert doc["trusted_form"] == {}
    assert doc["transaction_id"] == data["transaction_id"] != ""


def test_trusted_form_fields_are_mapped(poster: Poster) -> None:
    body = lead(
        xxTrustedFormToken="abc123",
        xxTrustedFormCertUrl="https://cert.trustedform.com/abc123",
        xxTrustedFormPingUrl="https://ping.trustedform.com/abc123",
    )
    assert_envelope(poster.post(body), 201)
    doc = poster.stored()[0]
    assert doc["trusted_form"] == {
        "token": "abc123",
        "cert_url": "https://cert.trustedform.com/abc123",
        "ping_url": "https://ping.trustedform.com/abc123",
    }
    assert not any(k.startswith("xxTrustedForm") for k in doc)


def test_extra_fields_are_kept_under_extra(poster: Poster) -> None:
    body = lead(campaign="spring", sub_id_2=" x7 ", score=42, ratio=0.5, opted_in=True, empty="  ")
    # json.dumps keeps this order (the test client's own encoder would sort the keys).
    response = poster.client.post(poster.url, data=json.dumps(body), content_type="application/json",
                                  headers=poster.headers)
    assert_envelope(response, 201)
    doc = poster.stored()[0]
    assert doc["extra"] == {"campaign": "spring", "sub_id_2": "x7", "score": 42, "ratio": 0.5, "opted_in": True}
    assert list(doc["extra"]) == ["campaign", "sub_id_2", "score", "ratio", "opted_in"]  # the order sent
    assert "campaign" not in doc


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("$where", "1"),
        ("a.b", "1"),
        ("_private", "1"),
        ("9lives", "1"),
        ("x" * 65, "1"),
        ("campaign", {"nested": 1}),
        ("campaign", [1, 2]),
        ("campaign", "$gt"),
        ("campaign", "x" * 1001),
        ("campaign", 2**70),
        ("campaign", "tab\tinside"),
    ],
)
def test_bad_extra_fields_are_invalid(poster: Poster, name: str, value: Any) -> None:
    data = assert_envelope(poster.post(lead(**{name: value})), 400)
    assert data["lead_status"] == "invalidField"
    assert data["fields"] == [name]
    assert poster.count() == 0


def test_too_many_extra_fields(database: Any, source: Any) -> None:
    p = Poster(make_app(database, max_extra_fields=3).test_client(), database, source)
    assert assert_envelope(p.post(lead(a1="1", a2="2", a3="3")), 201)["lead_status"] == "accept"
    data = assert_envelope(p.post(lead(a1="1", a2="2", a3="3", a4="4")), 400)
    assert data["lead_status"] == "invalidField" and "_schema" in data["errors"]


def test_repeated_form_field_is_invalid(poster: Poster) -> None:
    response = poster.client.post(
        poster.url + "?x=1",
        data="email=a@example.com&email=b@example.com",
        content_type="application/x-www-form-urlencoded",
        headers=poster.headers,
    )
    data = assert_envelope(response, 400)
    assert data["fields"] == ["email"]


def test_invalid_utf8_is_rejected(poster: Poster) -> None:
    for ctype in ("application/json", "application/x-www-form-urlencoded"):
        body = b'{"first_name": "\xff\xfe"}' if ctype == "application/json" else b"first_name=%FF%FE"
        response = poster.client.post(poster.url, data=body, content_type=ctype, headers=poster.headers)
        assert assert_envelope(response, 400)["lead_status"] == "invalidField", ctype
    response = poster.client.get(poster.url + "?first_name=%FF%FE", headers=poster.headers)
    assert assert_envelope(response, 400)["lead_status"] == "invalidField"
    assert poster.count() == 0
