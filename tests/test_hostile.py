"""A corpus of malformed and hostile requests: exact status, JSON envelope, nothing stored."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from typing import Any

import pytest
from bson import ObjectId

from .conftest import Poster, assert_envelope, lead

LIMIT = 64 * 1024
STANDARD = ["first_name", "last_name", "email", "mobile", "address", "city", "state", "zip_code", "date_of_birth"]
OPTIONAL = ["transaction_id", "xxTrustedFormToken", "xxTrustedFormCertUrl", "xxTrustedFormPingUrl"]
MAX_LENGTH = {"first_name": 100, "last_name": 100, "email": 254, "address": 200, "city": 100,
              "transaction_id": 128, "xxTrustedFormToken": 255, "xxTrustedFormCertUrl": 2048}


@dataclasses.dataclass
class Case:
    id: str
    status: int
    lead_status: str | None = None
    json: Any = dataclasses.field(default=None)
    raw: bytes | None = None
    content_type: str | None = "application/json"
    method: str = "POST"
    headers: dict[str, str] | None = None  # None: the right key
    path: str | None = None  # None: the source's URL; may contain {id}
    chunked: bool = False


def body(**fields: Any) -> dict[str, Any]:
    """A valid lead with some fields replaced."""
    return lead(**fields)


CASES: list[Case] = []

# Operator injection in values: never a query, always invalidField.
for field in STANDARD:
    for op in ({"$ne": ""}, {"$gt": ""}, {"$where": "sleep(1000)"}, "$ne", "$where"):
        if isinstance(op, str) and field in ("mobile", "zip_code"):
            continue  # covered by the digits rule below
        label = f"text{op}" if isinstance(op, str) else f"object{next(iter(op))}"
        CASES.append(Case(f"operator-{field}-{label}", 400, "invalidField", json=body(**{field: op})))
# Operator and dotted names as keys.
for key in ("$where", "$set", "a.b", "email.$", "dedupe.email", "_id", "__proto__", "x" * 65, "1abc", "na me", ""):
    CASES.append(Case(f"key-{key[:12] or 'empty'}", 400, "invalidField", json={**body(), key: "1"}))
# Wrong types in every field (null is absent; mobile/zip accept integers of the right size).
for field in STANDARD + OPTIONAL:
    for label, value in (("int", 12), ("bool", True), ("array", ["x"]), ("object", {"a": "b"}), ("float", 1.5)):
        CASES.append(Case(f"type-{field}-{label}", 400, "invalidField", json=body(**{field: value})))
# Over-long values.
for field, length in MAX_LENGTH.items():
    value = "a" * (length + 1)
    if field == "email":
        value = "a" * (length - 11) + "@example.com"
    if field == "xxTrustedFormCertUrl":
        value = "https://cert.trustedform.com/" + "a" * length
    CASES.append(Case(f"too-long-{field}", 400, "invalidField", json=body(**{field: value})))
CASES.append(Case("too-long-extra", 400, "invalidField", json=body(note="n" * 1001)))
# Control characters and invalid text.
for label, value in (("nul", "Ada\x00"), ("newline", "Ada\nLovelace"), ("escape", "\x1b[31mAda"),
                     ("del", "Ada\x7f"), ("surrogate", "\ud800")):
    CASES.append(Case(f"control-{label}", 400, "invalidField", json=body(first_name=value)))
CASES.append(Case("invalid-utf8-json", 400, "invalidField", raw=b'{"first_name": "\xc3\x28"}'))
CASES.append(Case("invalid-utf8-form", 400, "invalidField", raw=b"first_name=%C3%28",
                  content_type="application/x-www-form-urlencoded"))
CASES.append(Case("invalid-utf8-query", 400, "invalidField", method="GET", path="/api/lead/create/{id}?city=%FF"))
# Bodies that are not a JSON object.
for label, raw in (("array", b"[]"), ("string", b'"lead"'), ("number", b"42"), ("true", b"true"),
                   ("null", b"null"), ("truncated", b'{"email": "a@b.com"'), ("trailing", b'{"a": 1} {}'),
                   ("nan", b'{"score": NaN}'), ("infinity", b'{"score": Infinity}'), ("empty-json", b""),
                   ("single-quotes", b"{'email': 'a@b.com'}"), ("bom-only", b"\xef\xbb\xbf")):
    CASES.append(Case(f"body-{label}", 400, "invalidField", raw=raw))
CASES.append(Case("duplicate-keys", 400, "invalidField", raw=b'{"email": "a@example.com", "email": "b@example.com"}'))
CASES.append(Case("duplicate-nested-keys", 400, "invalidField", raw=b'{"x": {"a": 1, "a": 2}, "email": "a@b.com"}'))
CASES.append(Case("deep-nesting", 400, "invalidField", raw=b"[" * 30_000 + b"]" * 30_000))  # under the size limit
CASES.append(Case("deep-object", 400, "invalidField", raw=b'{"a":' * 10_000 + b"1" + b"}" * 10_000))
CASES.append(Case("repeated-form-field", 400, "invalidField", raw=b"email=a@example.com&email=b@example.com",
                  content_type="application/x-www-form-urlencoded"))
CASES.append(Case("multipart-file", 400, "invalidField", raw=None, content_type="multipart/form-data",
                  json="FILE"))
CASES.append(Case("multipart-nameless-part", 400, "invalidField", content_type="multipart/form-data; boundary=b",
                  raw=b'--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b\r\n'
                      b'Content-Disposition: form-data; name="email"\r\n\r\na@example.com\r\n--b--\r\n'))
# Missing lead fields.
CASES.append(Case("empty-object", 400, "missingField", json={}))
CASES.append(Case("only-extras", 400, "missingField", json={"campaign": "x", "transaction_id": "t1"}))
CASES.append(Case("only-blanks", 400, "missingField", json={f: "   " for f in STANDARD}))
CASES.append(Case("only-nulls", 400, "missingField", json={f: None for f in STANDARD}))
# Wrong and missing content types.
for ctype in ("text/plain", "application/xml", "text/html", "application/octet-stream", "image/png",
              "application/jsonx", "text/json"):
    CASES.append(Case(f"ctype-{ctype}", 415, raw=json.dumps(body()).encode(), content_type=ctype))
CASES.append(Case("ctype-missing-with-body", 415, raw=b"first_name=Ada&email=a%40example.com", content_type=None))
# Huge bodies.
CASES.append(Case("huge-json", 413, json=body(note="x" * LIMIT)))
CASES.append(Case("huge-form", 413, raw=b"first_name=" + b"a" * LIMIT,
                  content_type="application/x-www-form-urlencoded"))
CASES.append(Case("huge-chunked", 413, raw=json.dumps(body(note="x" * LIMIT)).encode(), chunked=True))
CASES.append(Case("huge-query", 400, "invalidField", method="GET",
                  path="/api/lead/create/{id}?first_name=" + "a" * 5000))
# Bad Authorization headers.
for label, header in (("none", {}), ("empty", {"Authorization": ""}), ("scheme-only", {"Authorization": "Bearer"}),
                      ("blank-token", {"Authorization": "Bearer   "}), ("basic", {"Authorization": "Basic YTpi"}),
                      ("token-scheme", {"Authorization": "Token {key}"}), ("no-scheme", {"Authorization": "{key}"}),
                      ("suffix", {"Authorization": "Bearer {key}x"}), ("prefix", {"Authorization": "Bearer x{key}"}),
                      ("truncated", {"Authorization": "Bearer {key_short}"}),
                      ("two-keys", {"Authorization": "Bearer {key} {key}"}),
                      ("hash-as-key", {"Authorization": "Bearer {key_hash}"}),
                      ("operator", {"Authorization": 'Bearer {"$ne": ""}'}),
                      ("non-ascii", {"Authorization": "Bearer ключ"}),
                      ("other-header", {"X-API-Key": "{key}"})):
    CASES.append(Case(f"auth-{label}", 401, json=body(), headers=header))
# Malformed source ids (404 before the key is even looked at).
for label, sid in (("short", "abc"), ("long", "a" * 25), ("non-hex", "z" * 24), ("unicode", "é" * 24),
                   ("nul", "%00" * 8), ("dotdot", ".."), ("spaces", "%20" * 24), ("operator", "$ne"),
                   ("json", '{"$gt":""}'), ("empty", "")):
    CASES.append(Case(f"source-id-{label}", 404, json=body(), path=f"/api/lead/create/{sid}"))
CASES.append(Case("source-id-unknown", 401, json=body(), path=f"/api/lead/create/{ObjectId()}"))
# Wrong methods.
for method in ("PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"):
    CASES.append(Case(f"method-{method}", 405, json=body(), method=method))


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 100
    assert len({case.id for case in CASES}) == len(CASES)


def _send(p: Poster, case: Case) -> Any:
    key = p.source.api_key
    placeholders = {"{key}": key, "{key_short}": key[:-4], "{key_hash}": hashlib.sha256(key.encode()).hexdigest()}
    headers = dict(p.headers)
    if case.headers is not None:
        headers = {}
        for name, value in case.headers.items():
            for placeholder, real in placeholders.items():
                value = value.replace(placeholder, real)
            headers[name] = value
    path = (case.path or p.url).replace("{id}", p.source.id)
    kwargs: dict[str, Any] = {"headers": headers, "method": case.method}
    if case.json == "FILE":
        kwargs.update(data={**body(), "upload": (io.BytesIO(b"x"), "x.txt")}, content_type="multipart/form-data")
    elif case.raw is not None:
        if case.chunked:
            kwargs.update(input_stream=io.BytesIO(case.raw), environ_overrides={"wsgi.input_terminated": True})
            headers["Transfer-Encoding"] = "chunked"
        else:
            kwargs["data"] = case.raw
        if case.content_type:
            kwargs["content_type"] = case.content_type
    elif case.json is not None and case.method != "GET":
        kwargs.update(data=json.dumps(case.json), content_type="application/json")
    return p.client.open(path, **kwargs)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_request(poster: Poster, case: Case) -> None:
    response = _send(poster, case)
    data = assert_envelope(response, case.status)
    if case.lead_status:
        assert data["lead_status"] == case.lead_status
        assert isinstance(data["errors"], dict) and data["errors"]
    if case.status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "Traceback" not in response.get_data(as_text=True)
    assert poster.count() == 0
