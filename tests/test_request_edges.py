"""Bodies and paths at the edges: malformed multipart, compressed bodies, amplification, odd paths."""

from __future__ import annotations

import gzip
import io
import json
from typing import Any

import pytest
from werkzeug.test import EnvironBuilder, run_wsgi_app

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


# -- found by attacking the fixes over real HTTP ------------------------------------------------


@pytest.mark.parametrize("method", ["PROPFIND", "FOO", "PURGE", "SEARCH", "QUERY", "MKCOL", "LOCK"])
def test_any_method_on_the_create_path_is_a_json_405(poster: Poster, method: str) -> None:
    response = poster.client.open(poster.url, method=method, headers=poster.headers)
    assert_envelope(response, 405)
    assert response.headers["Allow"] == "GET, POST"


@pytest.mark.parametrize("path", ["/api/lead/zzz", "/api/lead", "/api/lead/"])
def test_any_method_elsewhere_in_the_url_space_is_a_json_404(poster: Poster, path: str) -> None:
    assert_envelope(poster.client.open(path, method="PROPFIND"), 404)


class BrokenStream(io.RawIOBase):
    """A request body whose transfer breaks after a few bytes (bad chunk size, client gone)."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.sent = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self.sent:
            self.sent = True
            buffer[:2] = b'{"'
            return 2
        raise self.error


@pytest.mark.parametrize("error", [OSError("Invalid chunk header"), ValueError("bad chunk size")])
def test_a_broken_transfer_is_a_body_error_not_a_500(poster: Poster, error: Exception) -> None:
    # Straight through WSGI: the test client would try to measure (seek) the stream first.
    environ = EnvironBuilder(path=poster.url, method="POST", headers={
        **poster.headers, "Content-Type": "application/json", "Transfer-Encoding": "chunked"}).get_environ()
    environ.update({"wsgi.input": BrokenStream(error), "wsgi.input_terminated": True})
    environ.pop("CONTENT_LENGTH", None)
    body, status, _ = run_wsgi_app(poster.client.application, environ, buffered=True)
    assert status.startswith("400")
    answer = json.loads(b"".join(body))
    assert answer["data"]["errors"] == {"_body": ["Body could not be read (malformed or incomplete transfer)."]}
    assert poster.count() == 0


class Trickle(io.RawIOBase):
    """A body that arrives a few bytes per read, then ends (maybe before its Content-Length)."""

    def __init__(self, body: bytes, step: int = 3) -> None:
        self.body, self.step = body, step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        part, self.body = self.body[: min(self.step, len(buffer))], self.body[min(self.step, len(buffer)):]
        buffer[: len(part)] = part
        return len(part)


class ChunkParseError(Exception):
    """What gunicorn raises from a request body's read for a malformed chunk (its ParseException
    family derives from Exception, not from OSError or ValueError)."""


def _post_raw(poster: Poster, stream: io.RawIOBase, content_length: int | None,
              terminated: bool) -> tuple[str, dict[str, Any]]:
    """Straight through WSGI. ``terminated``: as gunicorn passes a body (it sets
    wsgi.input_terminated and ends the stream itself, early if the client went away);
    otherwise as werkzeug's dev server passes a Content-Length body."""
    headers = {**poster.headers, "Content-Type": "application/json"}
    if content_length is None:
        headers["Transfer-Encoding"] = "chunked"
    environ = EnvironBuilder(path=poster.url, method="POST", headers=headers).get_environ()
    environ["wsgi.input"] = stream
    environ.pop("CONTENT_LENGTH", None)
    if content_length is not None:
        environ["CONTENT_LENGTH"] = str(content_length)
    environ.pop("wsgi.input_terminated", None)
    if terminated:
        environ["wsgi.input_terminated"] = True
    body, status, _ = run_wsgi_app(poster.client.application, environ, buffered=True)
    return status, json.loads(b"".join(body))


@pytest.mark.parametrize("terminated", [False, True], ids=["dev-server", "gunicorn"])
@pytest.mark.parametrize("stream", ["short", "broken", "server-error"])
def test_a_body_shorter_than_its_content_length_is_a_body_error(poster: Poster, stream: str,
                                                                 terminated: bool) -> None:
    # Found over real HTTP: gunicorn ended a short body without an error and it was stored (201).
    body = json.dumps(lead()).encode()
    given = {"short": lambda: Trickle(body[:-5]), "broken": lambda: BrokenStream(OSError("connection reset")),
             "server-error": lambda: BrokenStream(ChunkParseError("Invalid chunk size"))}[stream]()
    status, answer = _post_raw(poster, given, len(body), terminated)
    assert status.startswith("400")
    assert answer["data"]["errors"] == {"_body": ["Body could not be read (malformed or incomplete transfer)."]}
    assert poster.count() == 0


def test_a_malformed_chunk_the_server_raises_on_is_a_body_error_not_a_500(poster: Poster) -> None:
    # Found over real HTTP: gunicorn's InvalidChunkSize (an Exception) came out as a 500.
    status, answer = _post_raw(poster, BrokenStream(ChunkParseError("Invalid chunk size")), None, terminated=True)
    assert status.startswith("400")
    assert answer["data"]["errors"] == {"_body": ["Body could not be read (malformed or incomplete transfer)."]}
    assert poster.count() == 0


@pytest.mark.parametrize("terminated", [False, True], ids=["dev-server", "gunicorn"])
def test_a_body_read_in_pieces_is_read_whole(poster: Poster, terminated: bool) -> None:
    body = json.dumps(lead()).encode()
    status, answer = _post_raw(poster, Trickle(body + b"trailing bytes past the length"), len(body), terminated)
    assert status.startswith("201") and answer["data"]["lead_status"] == "accept"
    assert poster.count() == 1


def test_a_compressed_transfer_encoding_is_415(poster: Poster) -> None:
    body = gzip.compress(json.dumps(lead()).encode())
    response = poster.client.post(
        poster.url, input_stream=io.BytesIO(body), environ_overrides={"wsgi.input_terminated": True},
        headers={**poster.headers, "Content-Type": "application/json", "Transfer-Encoding": "gzip, chunked"})
    assert_envelope(response, 415)
    assert "Transfer-Encoding gzip" in response.get_json()["message"]


def _emoji_names(count: int) -> dict[str, str]:
    return {"\U0001f600" * 99 + chr(65 + i): "x" for i in range(count)}


@pytest.mark.parametrize("how", ["json", "form", "query", "multipart"])
def test_escaped_names_cannot_inflate_the_answer(poster: Poster, how: str) -> None:
    names = _emoji_names(21) if how != "query" else {"\x01" * 99 + chr(65 + i): "x" for i in range(21)}
    if how == "json":
        raw = json.dumps(names, ensure_ascii=False).encode()
        response = poster.client.post(poster.url, data=raw, headers={**poster.headers,
                                                                     "Content-Type": "application/json"})
    elif how == "form":
        from urllib.parse import urlencode
        raw = urlencode(names).encode()
        response = poster.client.post(poster.url, data=raw, headers={
            **poster.headers, "Content-Type": "application/x-www-form-urlencoded"})
    elif how == "query":
        from urllib.parse import urlencode
        raw = urlencode(names).encode()
        response = poster.client.get(poster.url + "?" + raw.decode(), headers=poster.headers)
    else:
        response = poster.client.post(poster.url, data=names, headers=poster.headers)  # multipart/form-data
    data = assert_envelope(response, 400)
    assert data["truncated"] is True
    assert len(response.get_data()) <= 7 * 1024  # MAX_REJECTION_BYTES plus the envelope
