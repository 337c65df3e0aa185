"""Small MongoDB helpers every storage module shares: ids, times, write concern."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from bson import ObjectId
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.write_concern import WriteConcern

from .mongomock_support import enforce_multikey_unique

OBJECT_ID_LENGTH = 24  # hex characters


def acknowledged(database: Database[Any]) -> Database[Any]:
    """The database as given, unless it writes unacknowledged: then with w=1."""
    concern = getattr(database, "write_concern", None)
    if isinstance(concern, WriteConcern) and not concern.acknowledged:
        return database.with_options(write_concern=WriteConcern(w=1))
    return database


def leads_collection(database: Database[Any], name: str) -> Collection[Any]:
    """The leads collection the library writes to: acknowledged writes, and MongoDB's
    per-element rule for its unique multikey index also on a plain mongomock database."""
    collection: Collection[Any] = enforce_multikey_unique(acknowledged(database)[name])
    return collection


def as_utc(moment: datetime) -> datetime:
    """pymongo returns naive UTC datetimes unless the client is tz_aware."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def parse_object_id(value: str | ObjectId) -> ObjectId | None:
    """A 24-hex string (or ObjectId) as an ObjectId; None for anything else."""
    if isinstance(value, ObjectId):
        return value
    if isinstance(value, str) and len(value) == OBJECT_ID_LENGTH:
        try:
            return ObjectId(value)
        except Exception:  # bson.errors.InvalidId and friends
            return None
    return None


def stored_time(moment: datetime) -> datetime:
    """``moment`` at the precision BSON stores (milliseconds, rounded down as the server does)."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def stored_cutoff(cutoff: datetime | None) -> datetime | None:
    """A window's cutoff for comparing with stored (millisecond) times, rounded up.

    A stored time is before ``cutoff`` exactly when it is before the cutoff rounded up
    to the next millisecond; sent as it is, the server would round the cutoff down,
    and a lead 1 µs past its window would match nothing in the release and retry forever.
    """
    if cutoff is None:
        return None
    floor = stored_time(cutoff)
    return floor if floor == cutoff else floor + timedelta(milliseconds=1)
