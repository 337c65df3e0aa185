"""Database sources: provisioning, key rotation and the in-process config cache.

A source document holds only SHA-256 hashes of its API keys.  Each entry of
``api_keys`` is ``{"hash": <hex>, "expires_at": <datetime or None>}``; the
current key has no expiry, a rotated-out key keeps working until its expiry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import secrets
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from bson import ObjectId
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.write_concern import WriteConcern

from .schemas import DEDUPE_FIELDS, REQUIRABLE_FIELDS
from .settings import Settings, utc_now

API_KEY_PREFIX = "ptl_"


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def acknowledged(database: Database) -> Database:
    """The database as given, unless it writes unacknowledged: then with w=1."""
    concern = getattr(database, "write_concern", None)
    if isinstance(concern, WriteConcern) and not concern.acknowledged:
        return database.with_options(write_concern=WriteConcern(w=1))
    return database


def as_utc(moment: datetime) -> datetime:
    """pymongo returns naive UTC datetimes unless the client is tz_aware."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def parse_object_id(value: str | ObjectId) -> ObjectId | None:
    """A 24-hex string (or ObjectId) as an ObjectId; None for anything else."""
    if isinstance(value, ObjectId):
        return value
    if isinstance(value, str) and len(value) == 24:
        try:
            return ObjectId(value)
        except Exception:  # bson.errors.InvalidId and friends
            return None
    return None


@dataclasses.dataclass(frozen=True)
class CreatedSource:
    """What ``create_source`` returns: the key is shown here once and never stored."""

    id: str
    api_key: str
    name: str


@dataclasses.dataclass(frozen=True)
class SourceConfig:
    """A source as the endpoint needs it, read from its document."""

    id: ObjectId
    name: str
    is_active: bool
    required_fields: tuple[str, ...]
    dedupe_fields: tuple[str, ...]
    dedupe_window_days: float | None
    key_hashes: tuple[tuple[str, datetime | None], ...]

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> SourceConfig:
        return cls(
            id=doc["_id"],
            name=doc.get("name", ""),
            is_active=bool(doc.get("is_active", True)),
            required_fields=tuple(doc.get("required_fields", ())),
            dedupe_fields=tuple(doc.get("dedupe_fields", ())),
            dedupe_window_days=doc.get("dedupe_window_days"),
            key_hashes=tuple(
                (k["hash"], as_utc(k["expires_at"]) if k.get("expires_at") else None) for k in doc.get("api_keys", ())
            ),
        )

    def dedupe_cutoff(self, now: datetime) -> datetime | None:
        """Leads created before this moment no longer count as duplicates."""
        if self.dedupe_window_days is None:
            return None
        return now - timedelta(days=self.dedupe_window_days)


def _check_fields(kind: str, names: Iterable[str], allowed: Sequence[str]) -> list[str]:
    names = list(names)
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise ValueError(f"{kind} may only name {', '.join(allowed)}; got {', '.join(map(str, unknown))}")
    return list(dict.fromkeys(names))


def create_source(
    database: Database,
    name: str,
    *,
    required_fields: Iterable[str] = (),
    dedupe_fields: Iterable[str] = ("email", "mobile"),
    dedupe_window_days: float | None = None,
    is_active: bool = True,
    sources_collection: str = Settings.sources_collection,
    clock: Callable[[], datetime] = utc_now,
) -> CreatedSource:
    """Provision a database source, as the Pingtree dashboard does.

    Returns its id and its API key; only the key's hash is stored.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a source needs a non-empty name")
    if dedupe_window_days is not None and not dedupe_window_days > 0:
        raise ValueError("dedupe_window_days must be positive, or None for forever")
    key = new_api_key()
    now = clock()
    source_id = ObjectId()
    clean_name = name.strip()
    doc = {
        "_id": source_id,
        "name": clean_name,
        "required_fields": _check_fields("required_fields", required_fields, REQUIRABLE_FIELDS),
        "dedupe_fields": _check_fields("dedupe_fields", dedupe_fields, DEDUPE_FIELDS),
        "dedupe_window_days": dedupe_window_days,
        "is_active": bool(is_active),
        "api_keys": [{"hash": hash_api_key(key), "expires_at": None}],
        "created_at": now,
        "updated_at": now,
    }
    acknowledged(database)[sources_collection].insert_one(doc)
    return CreatedSource(id=str(source_id), api_key=key, name=clean_name)


def _source_filter(source_id: str | ObjectId) -> dict[str, Any]:
    oid = parse_object_id(source_id)
    if oid is None:
        raise LookupError("a source id is a 24-hex ObjectId")
    return {"_id": oid}


def rotate_api_key(
    database: Database,
    source_id: str | ObjectId,
    grace_seconds: float = 0,
    *,
    sources_collection: str = Settings.sources_collection,
    clock: Callable[[], datetime] = utc_now,
) -> str:
    """Give a source a new API key and return it.

    Every older key keeps working for at most ``grace_seconds`` more (0: it dies now).
    Endpoints in other processes see the change within their source cache time.
    """
    if grace_seconds < 0:
        raise ValueError("grace_seconds must not be negative")
    collection = acknowledged(database)[sources_collection]
    query = _source_filter(source_id)
    for _ in range(10):  # optimistic: retry if a concurrent rotation changed the keys
        doc = collection.find_one(query, {"api_keys": 1})
        if doc is None:
            raise LookupError("no such database source")
        now = clock()
        until = now + timedelta(seconds=grace_seconds)
        kept = []
        if grace_seconds > 0:
            for entry in doc.get("api_keys", []):
                expires = as_utc(entry["expires_at"]) if entry.get("expires_at") else None
                if expires is None or expires > now:
                    kept.append({"hash": entry["hash"], "expires_at": min(expires or until, until)})
        key = new_api_key()
        kept.append({"hash": hash_api_key(key), "expires_at": None})
        result = collection.update_one(
            {**query, "api_keys": doc.get("api_keys", [])},
            {"$set": {"api_keys": kept, "updated_at": now}},
        )
        if result.matched_count:
            SourceCache.forget_everywhere(query["_id"])
            return key
    raise RuntimeError("the source's keys kept changing; try again")


def set_source_active(
    database: Database,
    source_id: str | ObjectId,
    active: bool,
    *,
    sources_collection: str = Settings.sources_collection,
    clock: Callable[[], datetime] = utc_now,
) -> None:
    """Activate or deactivate a source (an inactive source answers 403)."""
    query = _source_filter(source_id)
    result = acknowledged(database)[sources_collection].update_one(
        query, {"$set": {"is_active": bool(active), "updated_at": clock()}}
    )
    if not result.matched_count:
        raise LookupError("no such database source")
    SourceCache.forget_everywhere(query["_id"])


#: A key that does not match a cached source makes the endpoint re-read that source from
#: MongoDB (it may be a key issued by another process since the entry was read), at most
#: once per source per this many seconds, so guessing keys cannot hammer the database.
#: A new key is refused for at most this long only if a wrong key of the same source
#: already caused a re-read in this process just before the key was issued.
KEY_REFRESH_SECONDS = 1.0


class _Entry:
    """A cached source: trusted until ``expires``; ``refreshed``: last re-read claimed for a key miss."""

    __slots__ = ("config", "expires", "refreshed")

    def __init__(self, config: SourceConfig, expires: float, refreshed: float) -> None:
        self.config = config
        self.expires = expires
        self.refreshed = refreshed


class SourceCache:
    """Source configs trusted for ``ttl`` seconds, at most ``size`` of them.

    Unknown ids are not cached, so a newly created source works at once.
    ``rotate_api_key`` and ``set_source_active`` drop the source from every cache
    in their own process at once; other processes see the change within ``ttl``.
    A key another process has just issued is let in at once by ``refresh``, which the
    endpoint calls when a key does not match a cached source.
    """

    _all: weakref.WeakSet[SourceCache] = weakref.WeakSet()

    def __init__(self, collection: Collection, ttl: float, size: int, refresh_seconds: float | None = None) -> None:
        self._collection = collection
        self._ttl = ttl
        self._size = size
        self._refresh_seconds = KEY_REFRESH_SECONDS if refresh_seconds is None else refresh_seconds
        self._entries: OrderedDict[ObjectId, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._generation = 0  # bumped by forget(), so a read racing with it is not cached
        SourceCache._all.add(self)

    @classmethod
    def forget_everywhere(cls, source_id: ObjectId) -> None:
        for cache in list(cls._all):
            cache.forget(source_id)

    def get(self, source_id: ObjectId) -> SourceConfig | None:
        return self.lookup(source_id)[0]

    def lookup(self, source_id: ObjectId) -> tuple[SourceConfig | None, bool]:
        """The source's config, and whether it came from the cache (rather than a read just now)."""
        now = time.monotonic()
        refreshed = -math.inf
        with self._lock:
            entry = self._entries.get(source_id)
            if entry is not None:
                if entry.expires > now:
                    return entry.config, True
                refreshed = entry.refreshed  # an expiry does not reset the re-read limit
            generation = self._generation
        doc = self._collection.find_one({"_id": source_id})
        if doc is None:
            return None, False
        config = SourceConfig.from_document(doc)
        self._keep(source_id, config, now, refreshed, generation)
        return config, False

    def refresh(self, source_id: ObjectId, seen: SourceConfig) -> SourceConfig | None:
        """After a key did not match ``seen`` (from the cache): the source as it may be now.

        Re-reads the document, bypassing the cache, and keeps what it read, at most once
        per source per ``refresh_seconds``: the first caller claims the re-read under the
        lock, concurrent and later callers get None (nothing newer) until the interval
        is over, or the newer config if the re-read already replaced ``seen``.  None as
        well if the source is no longer cached or no longer exists.
        """
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(source_id)
            if entry is None:
                return None
            if entry.config is not seen:
                return entry.config if entry.expires > now else None
            if now - entry.refreshed < self._refresh_seconds:
                return None
            entry.refreshed = now  # the claim
            generation = self._generation
        doc = self._collection.find_one({"_id": source_id})
        if doc is None:
            with self._lock:
                current = self._entries.get(source_id)
                if current is not None and current.config is seen:
                    del self._entries[source_id]  # deleted: unknown ids are not cached
            return None
        config = SourceConfig.from_document(doc)
        self._keep(source_id, config, now, now, generation)
        return config

    def _keep(self, source_id: ObjectId, config: SourceConfig, read_at: float, refreshed: float,
              generation: int) -> None:
        """Cache ``config``, read from a query started at ``read_at`` (monotonic)."""
        if self._ttl <= 0 or self._size <= 0:
            return
        with self._lock:
            if generation != self._generation:
                return  # forgotten while we read: what we read may be stale, do not keep it
            self._entries[source_id] = _Entry(config, read_at + self._ttl, refreshed)
            self._entries.move_to_end(source_id)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def forget(self, source_id: ObjectId) -> None:
        with self._lock:
            self._entries.pop(source_id, None)
            self._generation += 1

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
