"""The OpenAPI document: valid, served, and covering every outcome of the contract."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_spec_validator import validate

from pingtree_leads import Settings
from pingtree_leads.openapi import openapi_document
from pingtree_leads.schemas import LEAD_FIELDS, TRUSTED_FORM_FIELDS

from .conftest import Poster, assert_envelope, lead, make_app

CONTRACT_STATUSES = {"201", "400", "401", "403", "404", "405", "409", "413", "415", "500", "503"}


@pytest.mark.parametrize(
    "settings", [Settings(), Settings(allow_get=False, city_allow_punctuation=True, max_extra_fields=3)]
)
def test_document_is_valid_openapi(settings: Settings) -> None:
    validate(openapi_document(settings))


def test_every_contract_outcome_is_documented_with_an_example() -> None:
    doc = openapi_document()
    (path,) = doc["paths"].values()
    for method in ("post", "get"):
        responses = path[method]["responses"]
        assert set(responses) == CONTRACT_STATUSES
        for status, response in responses.items():
            examples = response["content"]["application/json"]["examples"]
            assert examples, status
    examples_201 = path["post"]["responses"]["201"]["content"]["application/json"]["examples"]
    assert {e["value"]["data"]["lead_status"] for e in examples_201.values()} == {"accept", "duplicate"}
    assert any(e["value"]["data"].get("replayed") for e in examples_201.values())
    examples_400 = path["post"]["responses"]["400"]["content"]["application/json"]["examples"]
    assert {e["value"]["data"]["lead_status"] for e in examples_400.values()} == {"missingField", "invalidField"}
    assert "Retry-After" in path["post"]["responses"]["503"]["headers"]
    assert "WWW-Authenticate" in path["post"]["responses"]["401"]["headers"]
    assert "Allow" in path["post"]["responses"]["405"]["headers"]


def test_every_field_is_documented_with_its_rule() -> None:
    doc = openapi_document()
    props = doc["components"]["schemas"]["LeadInput"]["properties"]
    assert set(props) == {*LEAD_FIELDS, "transaction_id", *TRUSTED_FORM_FIELDS}
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
    (path,) = openapi_document(Settings(allow_get=False))["paths"].values()
    assert "get" not in path and "post" in path


def test_document_examples_have_the_shape_of_real_answers(poster: Poster) -> None:
    (path,) = openapi_document()["paths"].values()
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


def test_document_is_served_under_the_blueprint_prefix(database: Any) -> None:
    from flask import Flask

    from pingtree_leads import create_blueprint

    app = Flask("host")
    app.register_blueprint(create_blueprint(database), url_prefix="/x")
    response = app.test_client().get("/x/api/lead/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    doc = response.get_json()
    validate(doc)
    assert list(doc["paths"]) == ["/x/api/lead/create/{db_source_id}"]


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
