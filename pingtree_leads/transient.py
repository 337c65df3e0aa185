"""Which database errors are transient: the one place that decides 503 or 500.

Built on pymongo's own error classes and labels plus the server codes of the MongoDB
driver specs (retryable reads, retryable writes, SDAM) and of the server's own error
categories.  The endpoint answers a transient error with 503 and ``Retry-After``; a
retry with the same ``transaction_id`` converges on exactly one lead.
"""

from __future__ import annotations

from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    WriteConcernError,
    WTimeoutError,
)

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
