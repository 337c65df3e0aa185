"""Reading a create-lead request: its body and its fields.

The body is read by hand, one byte past the limit, because werkzeug cuts a
chunked body at ``MAX_CONTENT_LENGTH`` instead of refusing it.
"""

from __future__ import annotations

import io
import json
from typing import IO, Any
from urllib.parse import parse_qsl

from flask import Request
from werkzeug.datastructures import MultiDict
from werkzeug.formparser import FormDataParser
from werkzeug.wsgi import get_content_length, get_input_stream

from .errors import ApiError, body_error

JSON_TYPES = ("application/json",)
FORM_TYPE = "application/x-www-form-urlencoded"
MULTIPART_TYPE = "multipart/form-data"
UNREADABLE_BODY = "Body could not be read (malformed or incomplete transfer)."
#: Content codings of the IANA registry, named back in a 415 (any other text is not echoed).
KNOWN_CODINGS = frozenset({"gzip", "x-gzip", "deflate", "br", "compress", "x-compress", "zstd", "aes128gcm",
                           "exi", "pack200-gzip", "dcb", "dcz"})


def read_body(request: Request, limit: int) -> bytes:
    host_limit = request.max_content_length  # the host app's MAX_CONTENT_LENGTH, if any
    if host_limit is not None:
        limit = min(limit, host_limit)
    environ = request.environ
    length = get_content_length(environ)  # request.content_length, without the header lookups
    if length is not None and length > limit:
        raise ApiError(413)
    if length is not None:
        # Exactly Content-Length bytes, whoever ends the stream: a server that terminates it
        # itself (gunicorn sets wsgi.input_terminated) ends it early, without an error, when
        # the client goes away mid-body, and such a cut body must not be stored.
        body = _read(environ["wsgi.input"], length)
        if len(body) < length:
            raise body_error(UNREADABLE_BODY)
        return body
    # A chunked body (or none). Not request.stream: with MAX_CONTENT_LENGTH set, it silently
    # cuts a chunked body.
    body = _read(get_input_stream(environ, max_content_length=None), limit + 1)
    if len(body) > limit:
        raise ApiError(413)
    return body


def _read(stream: IO[bytes], size: int) -> bytes:
    """Up to ``size`` bytes of ``stream`` (fewer only if it ends first)."""
    chunks = []
    remaining = size
    try:
        while remaining > 0:
            chunk = stream.read(remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except Exception:
        # A malformed chunked encoding or a client gone mid-body, in whatever class the WSGI
        # server raises it (OSError, ValueError, werkzeug's ClientDisconnected, gunicorn's
        # ParseException family...): the body's fault, not ours.
        raise body_error(UNREADABLE_BODY) from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def check_content_encoding(request: Request) -> None:
    """415 for a compressed body: it is not decoded (so no decompression bomb can get past the size limit).

    Checks ``Content-Encoding`` and the codings of ``Transfer-Encoding`` other than
    ``chunked`` (which the WSGI server has already decoded).
    """
    environ = request.environ
    if not environ.get("HTTP_CONTENT_ENCODING") and not environ.get("HTTP_TRANSFER_ENCODING"):
        return  # the usual request: neither header
    for header, plain in (("Content-Encoding", {"identity"}), ("Transfer-Encoding", {"identity", "chunked"})):
        codings = [c.strip().lower() for c in request.headers.get(header, "").split(",") if c.strip()]
        unsupported = [c for c in codings if c not in plain]
        if unsupported:
            # Name the coding only if it is a registered one: the header is the client's text.
            named = next((c for c in unsupported if c in KNOWN_CODINGS), None)
            what = f"{header} {named}" if named else f"this {header}"
            raise ApiError(415, f"Unsupported {what}: send the body uncompressed",
                           headers={"Accept-Encoding": "identity"})


def lead_fields(request: Request, limit: int) -> dict[str, Any]:
    """The raw fields of the lead: query string for GET, else the body."""
    if request.method == "GET":
        return parse_urlencoded(request.query_string)
    body = read_body(request, limit)  # 413 first, as the contract orders the checks
    check_content_encoding(request)
    mimetype = request.mimetype
    if mimetype in JSON_TYPES or (mimetype.startswith("application/") and mimetype.endswith("+json")):
        return parse_json(body)
    if mimetype in ("", FORM_TYPE) and looks_like_json_object(body):
        # What `curl -d '{...}'` sends (form type), or a client that sets no type: a JSON
        # object cannot be a useful form body, so it is read as the JSON it is.
        try:
            return parse_json(body)
        except ApiError as exc:
            sent_as = f"sent as {FORM_TYPE}" if mimetype else "sent without a Content-Type"
            raise body_error(f"Body starts like a JSON object ({sent_as}) but is not a valid JSON object: "
                             f"{exc.data['errors']['_body'][0]}") from None
    if mimetype == FORM_TYPE:
        return parse_urlencoded(body)
    if mimetype == MULTIPART_TYPE:
        return _from_multidict(_parse_multipart(body, request))
    if not body and not mimetype:
        return {}
    raise ApiError(415)


def looks_like_json_object(body: bytes) -> bool:
    """True if ``body`` starts like a JSON object (after a BOM and white space)."""
    return body.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")[:1] == b"{"


def parse_urlencoded(raw: bytes) -> dict[str, Any]:
    """A query string or form body; werkzeug would quietly re-quote invalid UTF-8."""
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise body_error("Fields are not valid UTF-8.") from None
    return _one_per_name(MultiDict(pairs))


def _parse_multipart(body: bytes, request: Request) -> MultiDict[str, Any]:
    # silent=False: werkzeug's default swallows a malformed body and returns no fields at all.
    parser = FormDataParser(max_content_length=len(body), silent=False)
    try:
        _, form, files = parser.parse(io.BytesIO(body), MULTIPART_TYPE, len(body), request.mimetype_params)
    except ValueError:
        raise body_error("Form body could not be parsed.") from None
    if files:
        raise body_error("File uploads are not accepted.")
    return form


def _from_multidict(values: MultiDict[str, Any]) -> dict[str, Any]:
    """Multipart fields, checked for what werkzeug's parser lets through."""
    for name, items in values.lists():
        if not isinstance(name, str):  # a multipart part without a name
            raise body_error("Every form field needs a name.")
        # werkzeug decodes multipart fields with errors="replace".
        if "\ufffd" in name or any("\ufffd" in item for item in items):
            raise body_error("Fields are not valid UTF-8.")
    return _one_per_name(values)


def _one_per_name(values: MultiDict[str, Any]) -> dict[str, Any]:
    """One value per name; a repeated name keeps all its values, and fails as a list."""
    return {name: items[0] if len(items) == 1 else list(items) for name, items in values.lists()}


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


#: What ``json.loads(text, object_pairs_hook=..., parse_constant=...)`` builds on every call.
_DECODER = json.JSONDecoder(object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant)


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise body_error("Body is not valid UTF-8.") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise body_error("JSON is nested too deeply.") from None
    except ValueError as exc:
        reason = str(exc)
        if "duplicate key" in reason:
            message = "JSON object has a duplicate key."
        elif "integer string conversion" in reason:  # Python reads at most 4,300 digits
            message = "A JSON number has too many digits."
        else:
            message = "Body is not valid JSON."
        raise body_error(message) from None
    if not isinstance(value, dict):
        raise body_error("Body must be a JSON object.")
    return value
