"""Property tests (hypothesis) and schema fuzzing (schemathesis) against the app in-process."""

from __future__ import annotations

import json
import string
from datetime import date
from typing import Any

import pytest
import schemathesis
from bson import ObjectId
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import Schema, ValidationError
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pingtree_leads import create_blueprint, create_source
from pingtree_leads.schemas import (
    _ASCII_CITY,
    EXTRA_NAME,
    LEAD_FIELDS,
    PLAIN_HTTPS_URL,
    US_STATES,
    City,
    LeadSchema,
    ValidLead,
    is_https_url,
    normalize_input,
)
from pingtree_leads.settings import Settings

from .conftest import Poster, assert_envelope

KNOWN = sorted(LeadSchema._declared_fields)
FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
                      deadline=None)


def examples(database: Any, mock: int, real: int) -> int:
    return mock if type(database).__module__.startswith("mongomock") else real


json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)
any_object = st.dictionaries(st.sampled_from(KNOWN) | st.text(max_size=70), json_values, max_size=15)


@FIXTURE_OK
@given(body=any_object)
def test_any_json_object_gets_201_400_or_409_never_5xx(poster: Poster, body: dict[str, Any]) -> None:
    before = poster.count()
    response = poster.client.post(poster.url, data=json.dumps(body), content_type="application/json",
                                  headers=poster.headers)
    assert response.status_code in (201, 400, 409), response.get_data(as_text=True)
    data = assert_envelope(response, response.status_code)
    accepted = response.status_code == 201 and data["lead_status"] == "accept" and not data.get("replayed")
    assert poster.count() == before + (1 if accepted else 0)


def generic_then_fast(schema: LeadSchema, data: dict[str, Any]) -> tuple[Any, Any]:
    """What marshmallow's own ``Schema.load`` and ``LeadSchema.load_lead`` make of ``data``."""
    answers = []
    for load in (lambda: Schema.load(schema, data), lambda: schema.load_lead(data)):
        try:
            answers.append(load())
        except ValidationError as exc:
            answers.append(exc.normalized_messages())
    return answers[0], answers[1]


# Mostly plausible values, so that both valid leads and every kind of error come up.
plausible = (st.sampled_from(["Ada", "ada@example.com", "2125550123", "NY", "ny", "10001", "New York",
                              "1985-12-10", "2999-01-01", "tx-1", "https://cert.trustedform.com/1", "$x", "a\x00b",
                              "http://x", "not an email", "New York 2", "1234"])
             | st.integers(0, 10**11) | st.booleans() | st.floats() | st.text(max_size=8)
             | st.lists(st.integers(), max_size=2))
lead_like = st.dictionaries(st.sampled_from(KNOWN) | st.text(max_size=70), plausible, max_size=16)


@settings(max_examples=400, deadline=None)
@given(data=lead_like, required=st.lists(st.sampled_from(LEAD_FIELDS), max_size=3, unique=True))
def test_load_lead_gives_what_marshmallow_load_gives(data: dict[str, Any], required: list[str]) -> None:
    schema = LeadSchema(required, Settings())
    generic, fast = generic_then_fast(schema, normalize_input(data))
    assert isinstance(fast, (ValidLead, dict))
    if isinstance(fast, dict):  # errors: the same, in the same order (the answer's `fields` follows it)
        assert list(fast.items()) == list(generic.items())
    else:
        assert fast == generic


# URL-ish text: every character the fast pattern cares about, and some it refuses.
url_like = st.builds(lambda head, tail: head + tail,
                     st.sampled_from(["https://", "HTTPS://", "http://", "https:", "https:///", "https://[",
                                      "https://xn--", "https://a.b:6553", ""]),
                     st.text(string.ascii_letters + string.digits + ".-:/?#@[]% \t\u00a0\u3002é\\\u200b\u2011\x7f",
                             max_size=30))


@settings(max_examples=2000, deadline=None)
@given(value=url_like)
def test_plain_https_url_shortcut_never_accepts_what_urlsplit_refuses(value: str) -> None:
    """The TrustedForm URL fast path is only a shortcut: what it matches, the full rule accepts."""
    if PLAIN_HTTPS_URL.fullmatch(value):
        assert is_https_url(value), value


@pytest.mark.parametrize("value", ["https://cert.trustedform.com/0123abc", "https://a.example:8443/x?y=1#z",
                                   "https://localhost", "https://a.b./c", "https://a.com:65535/x"])
def test_plain_https_urls_take_the_shortcut(value: str) -> None:
    assert PLAIN_HTTPS_URL.fullmatch(value) and is_https_url(value)


@pytest.mark.parametrize("value", ["https://a.com:99999/x", "https://a.com:0", "https://a.com\\@b.com",
                                   "https://u@a.com", "https://%61.com", "https://a.com/\u200b", "https://1.2",
                                   "https://xn--zz.com"])
def test_neither_the_shortcut_nor_the_full_rule_takes_these(value: str) -> None:
    assert not PLAIN_HTTPS_URL.fullmatch(value) and not is_https_url(value)


@settings(max_examples=1000, deadline=None)
@given(value=st.text(string.ascii_letters + " .'-é0\u0301", max_size=20))
def test_ascii_city_shortcut_never_accepts_what_a_city_rule_refuses(value: str) -> None:
    if _ASCII_CITY.fullmatch(value):
        assert City._plain.fullmatch(value) and City._punctuated.fullmatch(value), value


letters = st.text(string.ascii_letters, min_size=1, max_size=12)
padding = st.sampled_from(["", " ", "  ", "\t"])


@st.composite
def valid_leads(draw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what is posted, what must be stored) for a lead every rule accepts."""
    first, last = draw(letters), draw(letters)
    local, domain = draw(st.text(string.ascii_letters + string.digits, min_size=1, max_size=20)), draw(letters)
    email = f"{local}@{domain}.com"
    state = draw(st.sampled_from(sorted(US_STATES)))
    city = " ".join(draw(st.lists(letters, min_size=1, max_size=3)))
    mobile, zip_code = draw(st.from_regex(r"\A[0-9]{10}\Z")), draw(st.from_regex(r"\A[0-9]{5}\Z"))
    born = draw(st.dates(min_value=date(1900, 1, 1), max_value=date(2005, 12, 31))).isoformat()
    reserved = set(KNOWN)
    extra = draw(st.dictionaries(st.from_regex(EXTRA_NAME, fullmatch=True).filter(lambda n: n not in reserved),
                                 st.integers(-1000, 1000) | st.booleans() | letters, max_size=4))
    sent = {"first_name": draw(padding) + first + draw(padding), "last_name": last,
            "email": email.upper() if draw(st.booleans()) else email, "mobile": mobile,
            "state": state.lower() if draw(st.booleans()) else state, "city": city, "zip_code": zip_code,
            "date_of_birth": born, **extra}
    stored = {"first_name": first, "last_name": last, "email": email.lower(), "mobile": mobile, "state": state,
              "city": city, "zip_code": zip_code, "date_of_birth": born, "extra": extra}
    return sent, stored


@FIXTURE_OK
@given(pair=valid_leads())
def test_valid_leads_round_trip(client: Any, database: Any, pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    sent, expected = pair
    src = create_source(database, "Round trip", dedupe_fields=[])
    p = Poster(client, database, src)
    data = assert_envelope(p.post(sent), 201)
    assert data["lead_status"] == "accept"
    doc = database["leads"].find_one({"source_id": ObjectId(src.id)}, {"_id": 0})
    assert {k: doc.get(k) for k in expected} == expected
    assert doc["transaction_id"] == data["transaction_id"]


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


def fuzz_statuses(operation: Any, source: Any, mode: GenerationMode, max_examples: int) -> set[int]:
    """Run schemathesis's cases for ``operation`` as ``source`` (its key, its id in the path);
    every answer must conform to the document (``CHECKS``). Returns the statuses seen."""
    statuses: set[int] = set()

    @settings(max_examples=max_examples, suppress_health_check=list(HealthCheck), deadline=None)
    @given(case=operation.as_strategy(mode))
    def check(case: Any) -> None:
        case.path_parameters = {"db_source_id": source.id}
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {source.api_key}"}
        response = case.call()
        statuses.add(response.status_code)
        case.validate_response(response, checks=CHECKS)

    check()
    return statuses


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_schemathesis_zero_server_errors_and_conforming_answers(database: Any, method: str,
                                                               mode: GenerationMode) -> None:
    app = Flask("fuzzed")
    app.register_blueprint(create_blueprint(database))
    src = create_source(database, "Fuzzed")
    schema = schemathesis.openapi.from_wsgi("/api/lead/openapi.json", app)
    operation = schema["/api/lead/create/{db_source_id}"][method]
    # Positive GETs are accepted about one time in six (the schema cannot say "a real date
    # in the past"), so 40 cases found no 201 now and then: 80 make that vanishingly rare.
    statuses = fuzz_statuses(operation, src, mode, examples(database, 150, 80))
    assert statuses <= {201, 400, 409, 413, 415}, statuses
    if mode is GenerationMode.POSITIVE:
        assert 201 in statuses
