"""The in-process cache of source configs, and the registry of every cache in the process.

Each app runtime has one ``SourceCache``; every cache registers in ``CACHES`` so that a
change made through ``provisioning`` in this process reaches all of them at once.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections import OrderedDict
from typing import Any

from bson import ObjectId
from pymongo.collection import Collection

from .sources import SourceConfig

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

    def __init__(
        self, collection: Collection[Any], ttl: float, size: int, refresh_seconds: float | None = None
    ) -> None:
        self._collection = collection
        self._ttl = ttl
        self._size = size
        self._refresh_seconds = KEY_REFRESH_SECONDS if refresh_seconds is None else refresh_seconds
        self._entries: OrderedDict[ObjectId, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._generation = 0  # bumped by forget(), so a read racing with it is not cached
        CACHES.register(self)

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


class CacheRegistry:
    """Every ``SourceCache`` of this process (weakly held: a dropped app frees its cache)."""

    def __init__(self) -> None:
        self._caches: weakref.WeakSet[SourceCache] = weakref.WeakSet()
        self._lock = threading.Lock()

    def register(self, cache: SourceCache) -> None:
        with self._lock:
            self._caches.add(cache)

    def forget_everywhere(self, source_id: ObjectId) -> None:
        """Drop ``source_id`` from every cache of this process (after a change to the source)."""
        with self._lock:
            caches = list(self._caches)
        for cache in caches:
            cache.forget(source_id)


#: The process-wide registry ``provisioning`` invalidates after each change it makes.
CACHES = CacheRegistry()
