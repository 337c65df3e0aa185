"""Picking a cap slot for a lead, so that the lead's own insert is the cap's check.

A lead of a capped source takes, per cap, the claim of one slot ``n < max`` of the
current window (caps.py); the unique claims index refuses a slot that another lead
holds, so no more than ``max`` leads are ever stored in a window, whatever the
concurrency.  What costs is *finding* a free slot without a read per lead:

* each process keeps, per (source, cap window), the slots it knows are used and the ones
  it has handed to inserts in flight; the first lead of a window in the process reads the
  window's used slots once (one indexed range of the claims index), later leads take the
  lowest slot the process believes free: no read;
* a slot refused by the index (another process took it) makes the process read the
  window's slots again and pick at random among the free ones (so racing processes
  rarely pick the same), or answer ``capped`` when none is free;
* a window the process believes full is read again before ``capped`` is answered (a
  higher ``max`` or an erased lead frees slots).

Hints are only hints: being wrong costs a refused insert and a read, never a lead too many.

A window counts every slot its leads hold, also slots at or above a ``max`` lowered since
they were taken: only the lowest ``max - held`` free slots below ``max`` may be taken
(``allowed``), and ``update_source`` moves a lowered window's high slots down
(``compact``), so the index alone keeps the window at ``max`` again.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Iterable, MutableMapping
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from .caps import Cap, is_cap_claim, slot_number
from .sources import SourceConfig

#: Windows a process remembers at most (oldest dropped first; a dropped one is read again).
MAX_WINDOWS = 10_000


#: Slots a fresh pick chooses among at random (the lowest allowed ones): enough that racing
#: processes rarely pick the same, few enough that a cap of 100,000 costs no long list per lead.
PICK_AMONG = 64


def allowed(used: set[int], cap_max: int, most: int = PICK_AMONG, start: int = 0) -> list[int]:
    """The lowest (at most ``most``) of the slots a new lead may take: the lowest
    ``cap_max - len(used)`` free slots below ``cap_max``.  ``used`` counts every held slot,
    those at or above a lowered ``max`` too, so a window is full once it holds ``cap_max``
    leads however they are numbered; and every taker choosing among the same lowest free
    slots keeps racing takers within that count.  Walks only as far as it needs, from ``start``
    (every slot below it is known to be held or handed out)."""
    room = min(cap_max - len(used), most)
    found: list[int] = []
    number = start
    while len(found) < room and number < cap_max:
        if number not in used:
            found.append(number)
        number += 1
    return found


@dataclasses.dataclass
class _Window:
    end: datetime
    used: set[int] = dataclasses.field(default_factory=set)
    reserved: set[int] = dataclasses.field(default_factory=set)
    #: Every slot below it is used or reserved: where the next pick starts looking (so a nearly
    #: full window of a large cap costs no walk over its used slots per lead).
    low: int = 0


@dataclasses.dataclass(frozen=True)
class SlotPick:
    """Slot claims for one lead (one per cap), or ``retry_at``: a cap is full until then."""

    claims: tuple[str, ...] = ()
    retry_at: datetime | None = None


class CapSlots:
    """The per-process slot hints of one leads collection; thread-safe."""

    def __init__(self, collection: Collection[Any], index: str) -> None:
        self._collection = collection
        self._index = index
        self._windows: dict[tuple[ObjectId, str], _Window] = {}
        self._lock = threading.Lock()

    # -- reading ---------------------------------------------------------------

    def used(self, source: SourceConfig, cap: Cap, start: datetime) -> set[int]:
        """The slots of the window that leads hold now: one read, a tight range of the claims
        index, which every planner picks for this filter (no hint: a hinted find makes SecantusDB
        read the whole index, ~240 ms at 5,000 leads, measured)."""
        prefix = cap.window_prefix(start)
        query = {"source_id": source.id, "claims": {"$gte": prefix + ":", "$lt": prefix + ";"}}
        numbers: set[int] = set()
        for doc in self._collection.find(query, {"claims": 1, "_id": 0}):
            for claim in doc.get("claims") or ():
                if isinstance(claim, str) and claim.startswith(prefix + ":"):
                    number = slot_number(claim)
                    if number is not None:
                        numbers.add(number)
        return numbers

    def full_until(
        self, source: SourceConfig, now: datetime, counted: MutableMapping[tuple[ObjectId, str], int] | None = None
    ) -> datetime | None:
        """When a post now would be ``capped``: the end of the latest-resetting full window,
        or None.  Read-only: one read per cap (``counted``, a dry run's running counts, is
        read once per window and then counted in memory)."""
        ends = []
        for cap in source.caps:
            start, end = cap.window(now)
            key = (source.id, cap.window_prefix(start))
            if counted is not None and key in counted:
                taken = counted[key]
            else:
                taken = len(self.used(source, cap, start))  # every held slot, above a lowered max too
                if counted is not None:
                    counted[key] = taken
            if taken >= cap.max:
                ends.append(end)
        return max(ends) if ends else None

    # -- picking ---------------------------------------------------------------

    def take(self, source: SourceConfig, now: datetime) -> SlotPick:
        """A slot per cap for one lead; no read when this process already knows the window."""
        taken: list[str] = []
        full: list[datetime] = []
        for cap in source.caps:
            claim, end = self._pick(source, cap, now, fresh=False)
            if claim is None:
                full.append(end)
            else:
                taken.append(claim)
        if full:
            self.done(source, taken, stored=False)
            return SlotPick(retry_at=max(full))
        return SlotPick(tuple(taken))

    def refused(self, source: SourceConfig, now: datetime, claims: Iterable[str], refused: str) -> SlotPick:
        """``refused``, a slot claim of ``claims``, is held by another lead: the lead's slot claims
        with that cap's slot picked again from a fresh read, or ``retry_at`` if it is full."""
        self._settle(source, [refused], stored=True)  # someone holds it: used
        mine = [claim for claim in claims if is_cap_claim(claim) and claim != refused]
        prefix = refused.rsplit(":", 1)[0]
        for cap in source.caps:
            if cap.window_prefix(cap.window(now)[0]) == prefix:
                claim, end = self._pick(source, cap, now, fresh=True)
                if claim is None:
                    self.done(source, mine, stored=False)
                    return SlotPick(retry_at=end)
                return SlotPick(tuple(sorted([*mine, claim])))
        # The caps changed under the lead: pick every slot again.
        self.done(source, mine, stored=False)
        return self.take(source, now)

    def done(self, source: SourceConfig, claims: Iterable[str], stored: bool) -> None:
        """The insert holding these slot claims is over: stored (the slots are used) or not."""
        self._settle(source, [claim for claim in claims if is_cap_claim(claim)], stored)

    def _settle(self, source: SourceConfig, claims: list[str], stored: bool) -> None:
        with self._lock:
            for claim in claims:
                prefix, _, number = claim.rpartition(":")
                window = self._windows.get((source.id, prefix))
                if window is None or not number.isdigit():
                    continue
                window.reserved.discard(int(number))
                if stored:
                    window.used.add(int(number))
                else:
                    window.low = min(window.low, int(number))  # handed back: free again

    def _pick(self, source: SourceConfig, cap: Cap, now: datetime, fresh: bool) -> tuple[str | None, datetime]:
        start, end = cap.window(now)
        key = (source.id, cap.window_prefix(start))
        if not fresh:
            with self._lock:
                window = self._windows.get(key)
                if window is not None:
                    number = next((n for n in allowed(window.used, cap.max, len(window.reserved) + 1, window.low)
                                   if n not in window.reserved), None)
                    if number is not None:
                        window.reserved.add(number)
                        window.low = number if all(n in window.used or n in window.reserved
                                                   for n in range(window.low, number)) else window.low
                        return cap.slot_claim(start, number), end
                    fresh = True  # believed full: make sure before answering capped
        used = self.used(source, cap, start)
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                self._forget_old(now)
                window = self._windows[key] = _Window(end)
            window.used, window.low = used, 0
            free = allowed(used, cap.max)
            if not free:
                return None, end
            spare = [n for n in free if n not in window.reserved]
            # First sight: the lowest spare slot; after a refusal, at random among the free
            # ones (a slot reserved here may still be lost by its insert: then it is fair game).
            number = random.choice(spare or free) if fresh else (spare or free)[0]
            window.reserved.add(number)
            return cap.slot_claim(start, number), end

    def _forget_old(self, now: datetime) -> None:
        """Drop windows that have ended, and the oldest ones past ``MAX_WINDOWS`` (lock held)."""
        for key in [key for key, window in self._windows.items() if window.end <= now]:
            del self._windows[key]
        while len(self._windows) >= MAX_WINDOWS:
            del self._windows[next(iter(self._windows))]


def compact_window(collection: Collection[Any], index: str, source_id: ObjectId, cap: Cap, now: datetime) -> int:
    """Move the current window's slots at or above ``cap.max`` (a ``max`` lowered mid-window)
    down into free slots below it, one lead at a time; returns how many moved.

    Afterwards either every held slot is below ``max`` (the index alone keeps the window at
    ``max``, as for a window never lowered), or every slot below ``max`` is held (the window is
    full until it ends).  Each move is one update of one lead's slot claim, refused by the
    unique index if a racing insert took the target slot first: then the next free one is tried.
    """
    start, _ = cap.window(now)
    prefix = cap.window_prefix(start)
    query = {"source_id": source_id, "claims": {"$gte": prefix + ":", "$lt": prefix + ";"}}
    moved = 0
    for _ in range(cap.max + 16):  # every round moves one lead, or learns of a taken slot
        holders: list[tuple[int, Any, list[str]]] = []
        for doc in collection.find(query, {"claims": 1}):
            claims = list(doc.get("claims") or ())
            for claim in claims:
                number = slot_number(claim) if isinstance(claim, str) and claim.startswith(prefix + ":") else None
                if number is not None:
                    holders.append((number, doc["_id"], claims))
        used = {number for number, _, _ in holders}
        high = sorted((h for h in holders if h[0] >= cap.max), key=lambda h: h[0])
        free = [n for n in range(cap.max) if n not in used]
        if not high or not free:
            return moved
        number, lead_id, claims = high[-1]
        old, new = cap.slot_claim(start, number), cap.slot_claim(start, free[0])
        # The whole array, matched as read: a lead whose claims changed meanwhile is read again.
        try:
            result = collection.update_one({"_id": lead_id, "source_id": source_id, "claims": claims},
                                           {"$set": {"claims": sorted(new if c == old else c for c in claims)}})
        except DuplicateKeyError:
            continue  # a racing insert took that slot: read again
        moved += result.modified_count
    return moved
