"""Bodies and paths at the edges: malformed multipart, compressed bodies, amplification, odd paths."""

from __future__ import annotations

import gzip
import io
import json
from typing import Any

import pytest

from pingtree_leads.schemas import MAX_REPORTED_FIELDS

from .conftest import Poster, assert_envelope, lead, make_app

GOOD_PART = b'--xx\r\nContent-Disposition: form-data; name="email"\r\n\r\nann@example.com\r\n--xx--\r\n'
MALFORMED_MULTIPART = {
    "no boundary": ("multipart/form-data", GOOD_PART),
    "not multipart at all": ("multipart/form-data; boundary=xx", b"email=ann%40example.com"),
    "truncated": ("multipart/form-data; boundary=xx", GOOD_PART[:45]),
    "cut before the closing boundary": ("multipart/form-data; boundary=xx", GOOD_PART[:-8]),
    "malformed part header": ("multipart/form-data; boundary=xx",
                              b"--xx\r\nContent-Disposition form-data name\r\n\r\nann@example.com\r\n--xx--\r\n"),
    "part without a disposition": ("multipart/form-data; boundary=xx",
                                   b"--xx\r\nX-Other: 1\r\n\r\nann@example.com\r\n--xx--\r\n"),
    "empty body": ("multipart/form-data; boundary=xx", b""),
}


@pytest.mark.parametrize(("content_type", "body"), list(MALFORMED_MULTIPART.values()), ids=list(MALFORMED_MULTIPART))
def test_malformed_multipart_is_a_body_error(poster: Poster, content_type: str, body: bytes) -> None:
    # input_stream: the test client would build a multipart body of its own for data=b"".
    response = poster.client.post(poster.url, input_stream=io.BytesIO(body), content_length=len(body),
                                  headers={**poster.headers, "Content-Type": content_type})
    data = assert_envelope(response, 400)
    assert data == {"lead_status": "invalidField", "fields": [],
                    "errors": {"_body": ["Form body could not be parsed."]}}
    assert poster.count() == 0


def test_well_formed_multipart_still_works(poster: Poster) -> None:
    response = poster.client.post(poster.url, data=GOOD_PART,
                                  headers={**poster.headers, "Content-Type": "multipart/form-data; boundary=xx"})
    assert assert_envelope(response, 201)["lead_status"] == "accept"


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "GZIP", "gzip, identity"])
def test_a_compressed_body_is_415_naming_the_encoding(poster: Poster, coding: str) -> None:
    body = gzip.compress(json.dumps(lead()).encode())
    response = poster.client.post(poster.url, data=body, headers={
        **poster.headers, "Content-Type": "application/json", "Content-Encoding": coding})
    assert_envelope(response, 415)
    name = coding.split(",")[0].strip().lower()
    assert response.get_json()["message"] == f"Unsupported Content-Encoding {name}: send the body uncompressed"
    assert response.headers["Accept-Encoding"] == "identity"
    assert poster.count() == 0


def test_an_unknown_encoding_is_415_without_echoing_it(poster: Poster) -> None:
    response = poster.client.post(poster.url, data=json.dumps(lead()), headers={
        **poster.headers, "Content-Type": "application/json", "Content-Encoding": "x-<script>evil"})
    assert_envelope(response, 415)
    assert "script" not in response.get_data(as_text=True)


def test_a_decompression_bomb_over_the_limit_is_413(poster: Poster) -> None:
    bomb = gzip.compress(b"{" + b" " * 10_000_000 + b"}")  # ~10 KB compressed, 10 MB decoded
    big = bomb * 8  # past the 64 KiB limit even compressed
    response = poster.client.post(poster.url, data=big, headers={
        **poster.headers, "Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert_envelope(response, 413)


def test_identity_encoding_is_a_plain_body(poster: Poster) -> None:
    response = poster.client.post(poster.url, data=json.dumps(lead()), headers={
        **poster.headers, "Content-Type": "application/json", "Content-Encoding": "identity"})
    assert assert_envelope(response, 201)["lead_status"] == "accept"


def test_thousands_of_bad_names_draw_a_bounded_answer(poster: Poster) -> None:
    body = {f"{i}b": "x" for i in range(5500)}  # names must start with a letter
    raw = json.dumps(body, separators=(",", ":")).encode()
    assert len(raw) < 64 * 1024
    response = poster.client.post(poster.url, data=raw, headers={**poster.headers, "Content-Type": "application/json"})
    data = assert_envelope(response, 400)
    assert len(data["fields"]) <= MAX_REPORTED_FIELDS and len(data["errors"]) <= MAX_REPORTED_FIELDS
    assert data["truncated"] is True
    assert len(response.get_data()) < 8 * 1024


def test_standard_fields_are_reported_before_extras(poster: Poster) -> None:
    body = {**{f"{i}bad": "x" for i in range(100)}, "email": "not-an-email", "state": "ZZ"}
    data = assert_envelope(poster.post(body), 400)
    assert data["fields"][:2] == ["email", "state"]
    assert set(data["errors"]) >= {"email", "state", "_schema"}


def test_a_long_bad_name_is_echoed_cut(poster: Poster) -> None:
    name = "9" + "x" * 30_000
    raw = json.dumps({name: "v", "email": "a@example.com"})
    response = poster.client.post(poster.url, data=raw, headers={**poster.headers, "Content-Type": "application/json"})
    data = assert_envelope(response, 400)
    assert len(response.get_data()) < 2048
    (reported,) = data["fields"]
    assert reported.endswith("…") and name.startswith(reported[:-1])


def test_a_few_errors_are_reported_in_full(poster: Poster) -> None:
    data = assert_envelope(poster.post(lead(email="bad", state="ZZ", zip_code="1")), 400)
    assert sorted(data["fields"]) == ["email", "state", "zip_code"] and "truncated" not in data


@pytest.mark.parametrize("body", [
    {f"{i}bad": "x" * 40 for i in range(1000)},
    {f"{i}bad": "x" for i in range(30)},
    {"9" + "y" * 200: ["a", "b"], "email": "x"},
    {"_x": 1},
])
def test_an_answer_is_never_much_larger_than_the_request(poster: Poster, body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    response = poster.client.post(poster.url, data=raw, headers={**poster.headers, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert len(response.get_data()) <= len(raw) + 4096


@pytest.mark.parametrize("path", [
    "/api/lead//create/{id}", "/api/lead/create//{id}", "/api/lead///", "/api/lead/create/{id}/",
    "/api/lead//openapi.json", "/api/lead/x//y",
])
@pytest.mark.parametrize("method", ["GET", "POST", "PUT"])
def test_everything_under_the_url_space_answers_json(poster: Poster, path: str, method: str) -> None:
    response = poster.client.open(path.format(id=poster.source.id), method=method, headers=poster.headers)
    assert_envelope(response, 404)
    assert "Location" not in response.headers


def test_the_host_keeps_its_own_slash_handling(database: Any) -> None:
    app = make_app(database)

    @app.route("/host/page")
    def page() -> str:
        return "host"

    client = app.test_client()
    assert client.get("/host//page").status_code == 308  # werkzeug's default, untouched for the host
    assert client.get("/elsewhere").mimetype == "text/html"
