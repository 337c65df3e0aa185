"""One JSON envelope for every answer, and the error contract.

Every response is ``{"status": "success"|"error", "message": str, "data": {...}}``.
HTTP errors keep their code and headers (``Allow``, ``WWW-Authenticate``);
database outages become 503 with ``Retry-After``; anything else is a 500 whose
body says nothing about internals.  Log lines name the error's type and code,
never its message (a DuplicateKeyError's message holds the duplicated email).
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    WriteConcernError,
    WTimeoutError,
)
from werkzeug.exceptions import HTTPException

logger = logging.getLogger("pingtree_leads")

MESSAGES = {
    400: "Bad request",
    401: "Missing or invalid API key",
    403: "Database source is inactive",
    404: "Not found",
    405: "Method not allowed",
    409: "transaction_id was already used for a different lead",
    413: "Request body too large",
    415: "Unsupported content type: use application/json, application/x-www-form-urlencoded or multipart/form-data",
    500: "Internal server error",
    503: "Lead storage is temporarily unavailable; retry with the same transaction_id",
}

# -- what counts as transient: the one place ------------------------------------------------
# Server error codes that mean "the same request will succeed later".  Names and categories are
# those of MongoDB's src/mongo/base/error_codes.yml.

#: Retryable writes and retryable reads specs ("retryable error" codes a driver retries once;
#: pymongo's helpers_shared._RETRYABLE_ERROR_CODES without the SDAM codes below): HostUnreachable,
#: HostNotFound, NetworkTimeout, ReadConcernMajorityNotAvailableYet (reads), ExceededTimeLimit,
#: SocketException.
SPEC_RETRYABLE_CODES = frozenset({6, 7, 89, 134, 262, 9001})
#: SDAM spec: "not writable primary" (LegacyNotPrimary, NotWritablePrimary, NotPrimaryNoSecondaryOk)
#: and "node is recovering" (ShutdownInProgress, PrimarySteppedDown, InterruptedAtShutdown,
#: InterruptedDueToReplStateChange, NotPrimaryOrSecondary) codes: an election or restart is under way.
STATE_CHANGE_CODES = frozenset({91, 189, 10058, 10107, 11600, 11602, 13435, 13436})
#: Time limits: MaxTimeMSExpired (pymongo's ExecutionTimeout), WriteConcernTimeout (was
#: WriteConcernFailed; pymongo's WTimeoutError), NetworkInterfaceExceededTimeLimit (mongos -> shard),
#: LockTimeout (a lock wait under contention timed out).
TIME_LIMIT_CODES = frozenset({24, 50, 64, 202})
#: Nobody can serve the request right now: FailedToSatisfyReadPreference (no eligible member, e.g.
#: during an election), TemporarilyUnavailable (storage engine cache pressure; the server asks to retry).
UNAVAILABLE_CODES = frozenset({133, 365})
#: The server's SystemOverloadedError category (client backpressure spec): AdmissionQueueOverflow,
#: RateLimitExceeded, PooledConnectionAcquisitionRejected, IngressRequestRateLimitExceeded.
OVERLOAD_CODES = frozenset({433, 449, 450, 462})
#: The rest of the server's RetriableError category that reaches clients (mongod labels these
#: RetryableWriteError on a retryable write): InternalTransactionNotSupported, ResourceExhausted,
#: MigrationBlockingOperationCoordinatorCleaningUp, PooledConnectionAcquisitionExceededTimeLimit,
#: UpdatesStillPending, InterruptedDueToReshardingCriticalSection,
#: BackupCursorOpenConflictWithCheckpoint, RetriableRemoteCommandFailure, InterruptedDueToFCVChange.
SERVER_RETRIABLE_CODES = frozenset({358, 402, 406, 407, 412, 453, 50915, 91331, 10045600})
#: Codes mongod labels TransientTransactionError (a concurrent writer, migration or stale routing;
#: the retry succeeds): WriteConflict, StaleEpoch, SnapshotTooOld, SnapshotUnavailable,
#: StaleChunkHistory, NoSuchTransaction, PreparedTransactionInProgress, MigrationConflict.
CONFLICT_CODES = frozenset({112, 150, 239, 246, 250, 251, 267, 272})

TRANSIENT_CODES = (
    SPEC_RETRYABLE_CODES | STATE_CHANGE_CODES | TIME_LIMIT_CODES | UNAVAILABLE_CODES | OVERLOAD_CODES
    | SERVER_RETRIABLE_CODES | CONFLICT_CODES
)
#: Error labels a server or pymongo puts on an error worth retrying (retryable writes, transactions,
#: client backpressure specs).
TRANSIENT_LABELS = ("RetryableWriteError", "TransientTransactionError", "SystemOverloadedError", "RetryableError")
#: pymongo's own "try again" classes: network errors, timeouts, elections (NotPrimaryError and
#: ServerSelectionTimeoutError are AutoReconnect, a ConnectionFailure), write concern failures.
TRANSIENT_CLASSES: tuple[type[PyMongoError], ...] = (
    ConnectionFailure, ExecutionTimeout, WTimeoutError, WriteConcernError,
)
DUPLICATE_KEY = 11000


class ContentionError(PyMongoError):
    """A lead kept meeting claims that vanished before it could read them: retry later."""


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


def envelope(code: int, message: str, data: Mapping[str, Any] | None = None) -> Response:
    body = {"status": "success" if 200 <= code < 300 else "error", "message": message, "data": dict(data or {})}
    return Response(json.dumps(body, separators=(",", ":")), status=code, mimetype="application/json")


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


def is_transient(exc: PyMongoError) -> bool:
    """Would the same request succeed later?  (Then 503, else 500.)

    The one classification, for reads and writes alike: pymongo's transient classes, a
    transient error label, or a transient server code.  A ``BulkWriteError`` is transient when
    a write concern failed (a duplicate key beside it included: the retry converges), or when
    every write error is transient or a duplicate key and at least one is transient.
    """
    if isinstance(exc, (*TRANSIENT_CLASSES, ContentionError)) or exc.timeout:
        return True
    if any(exc.has_error_label(label) for label in TRANSIENT_LABELS):
        return True
    if isinstance(exc, BulkWriteError):
        details = exc.details or {}
        if details.get("writeConcernErrors"):
            return True
        codes = [error.get("code") for error in details.get("writeErrors") or ()]
        return any(code in TRANSIENT_CODES for code in codes) and all(
            code in TRANSIENT_CODES or code == DUPLICATE_KEY for code in codes
        )
    return isinstance(exc, OperationFailure) and exc.code in TRANSIENT_CODES


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


def register_error_handlers(blueprint: Blueprint, retry_after: Any) -> None:
    """JSON errors for everything raised inside the blueprint's views.

    ``retry_after`` is a callable giving the Retry-After seconds for the current app.
    """
    blueprint.register_error_handler(HTTPException, http_error_response)
    blueprint.register_error_handler(PyMongoError, lambda exc: database_error_response(exc, retry_after()))
    blueprint.register_error_handler(Exception, unexpected_error_response)
