"""The answer contract: one JSON envelope, the outcome statuses and every message text.

Every response is ``{"status": "success"|"error", "message": str, "data": {...}}``.
HTTP errors keep their code and headers (``Allow``, ``WWW-Authenticate``);
database outages (``transient.is_transient``) become 503 with ``Retry-After``;
anything else is a 500 whose body says nothing about internals.  Log lines name
the error's type and code, never its message (a DuplicateKeyError's message holds
the duplicated email).  The OpenAPI document reads its texts from here too.
"""

from __future__ import annotations

import enum
import json
import logging
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from flask import Blueprint, Response
from pymongo.errors import PyMongoError
from werkzeug.exceptions import HTTPException

from .transient import is_transient

logger = logging.getLogger("pingtree_leads")


class LeadStatus(str, enum.Enum):
    """``data.lead_status`` of an answer (CONFLICT is the 409, which carries no lead_status)."""

    ACCEPT = "accept"
    DUPLICATE = "duplicate"
    MISSING_FIELD = "missingField"
    INVALID_FIELD = "invalidField"
    CONFLICT = "conflict"
    #: Over one of the source's caps (contract section 10): nothing stored; ``retry_at`` says when.
    CAPPED = "capped"
    #: On a suppression list the source checks, or an erased consumer: nothing stored, no list named.
    SUPPRESSED = "suppressed"

    def __str__(self) -> str:
        return self.value


#: ``message`` of each HTTP error answer.
MESSAGES = {
    400: "Bad request",
    401: "Missing or invalid API key",
    403: "Database source is inactive",
    404: "Not found",
    405: "Method not allowed",
    409: "transaction_id was already used for a different lead",
    413: "Request body too large",
    415: "Unsupported content type: use application/json, application/x-www-form-urlencoded or multipart/form-data",
    429: "This database source holds as many pre-ping holds as it may; retry after Retry-After seconds",
    500: "Internal server error",
    503: "Lead storage is temporarily unavailable; retry with the same transaction_id",
}

#: ``message`` of the create-lead outcomes.
ACCEPTED_MESSAGE = "Lead accepted"
REPLAYED_MESSAGE = "Lead already accepted with this transaction_id"
DUPLICATE_MESSAGE = "Duplicate lead: not stored"
CAPPED_MESSAGE = "Source cap reached: not stored; retry at retry_at"
#: A ping's answer when a post now would be capped (caps.py).
PING_CAPPED_MESSAGE = "A post now would be capped: the source's cap is reached until retry_at"
SUPPRESSED_MESSAGE = "Lead not accepted: not stored"
#: A pre-ping's answer for a consumer on a suppression list or erased (no list named).
PING_SUPPRESSED_MESSAGE = "A post of this consumer now would not be accepted"
MISSING_FIELD_MESSAGE = "Missing required field(s)"
INVALID_FIELD_MESSAGE = "Invalid field(s)"
BODY_ERROR_MESSAGE = "Request body is not a valid lead"
BAD_SOURCE_ID_MESSAGE = "Unknown database source id: it must be a 24-hex ObjectId"


class ApiError(HTTPException):
    """An HTTP error with the envelope's message and data."""

    def __init__(
        self,
        code: int,
        message: str | None = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(description=message or MESSAGES.get(code, "Error"))
        self.code = code
        self.data = dict(data or {})
        self.extra_headers = dict(headers or {})


#: One encoder for every answer: ``json.dumps`` with options builds a new one per call.
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def envelope(code: int, message: str, data: Mapping[str, Any] | None = None) -> Response:
    body = {"status": "success" if 200 <= code < 300 else "error", "message": message, "data": dict(data or {})}
    return Response(_COMPACT.encode(body), status=code, mimetype="application/json")


def http_error_response(exc: HTTPException) -> Response:
    code = exc.code or 500
    if isinstance(exc, ApiError):
        response = envelope(code, exc.description or "", exc.data)
        response.headers.update(exc.extra_headers)
        return response
    response = envelope(code, MESSAGES.get(code, exc.name))
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def unauthorized_response() -> Response:
    """The 401, built like every other error; RFC 6750 names the scheme to use."""
    return http_error_response(ApiError(401, headers={"WWW-Authenticate": "Bearer"}))


def body_error(message: str) -> ApiError:
    """400 invalidField for a body that is not a usable set of fields."""
    return ApiError(
        400, BODY_ERROR_MESSAGE,
        {"lead_status": LeadStatus.INVALID_FIELD, "fields": [], "errors": {"_body": [message]}},
    )


def database_error_response(exc: PyMongoError, retry_after: int) -> Response:
    code = getattr(exc, "code", None)
    if is_transient(exc):
        logger.warning("database unavailable: %s (code %s); answered 503", type(exc).__name__, code)
        response = ApiError(503, headers={"Retry-After": str(retry_after)})
        return http_error_response(response)
    logger.error("database error: %s (code %s); answered 500", type(exc).__name__, code)
    return envelope(500, MESSAGES[500])


def unexpected_error_response(exc: Exception) -> Response:
    # Where it happened helps operators; the message and source lines may hold a value, so they are left out.
    stack = reversed(traceback.extract_tb(exc.__traceback__))
    frames = " <- ".join(f"{frame.filename}:{frame.lineno} in {frame.name}" for frame in stack)
    logger.error("unexpected %s; answered 500 at %s", type(exc).__name__, frames)
    return envelope(500, MESSAGES[500])


def register_error_handlers(blueprint: Blueprint, retry_after: Callable[[], int]) -> None:
    """JSON errors for everything raised inside the blueprint's views.

    ``retry_after`` is a callable giving the Retry-After seconds for the current app.
    """
    blueprint.register_error_handler(HTTPException, http_error_response)
    blueprint.register_error_handler(PyMongoError, lambda exc: database_error_response(exc, retry_after()))
    blueprint.register_error_handler(Exception, unexpected_error_response)
