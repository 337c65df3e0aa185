"""Erasing a consumer (contract section 11; GDPR art. 17, CCPA "delete"): every lead of every
source holding their email or mobile is deleted, and a post racing the erasure cannot
store them again.

The order makes it race-safe without a read-then-write check:

1. A PII-free *erasure record* is inserted first into its own collection (``erasures``):
   the SHA-256s of the canonical values (``keys``), the time; the counts when done.
2. For each source and each erased value (whether the source deduplicates on it now or not:
   an endpoint may still trust a cached config that does), a *block* is
   inserted into the leads collection: a document of kind ``"erased"`` holding the value's
   hold twin ``~<field>:<hash>`` in the unique ``(source_id, claims)`` index.  A lead (or a
   pre-ping hold) holding that twin makes the insert fail: it is deleted (index-backed by
   the same claim) and the block inserted again, until it stands.  From then on the index
   itself refuses every lead and hold of the value: a post is ``suppressed``.  A default
   source (dedupe on email and mobile) thus pays nothing new per lead.
3. Then every lead holding an erased value, of any source (a source deleted since
   included), is found by one scan of the leads collection and deleted, whatever the
   sources deduplicate on *now*: a lead stored before its source deduplicated on the field,
   or whose claim a dedupe window released (also a window since dropped), holds no claim
   for a block to meet.  No index serves it (an index on email or mobile would cost every
   lead of every source a key), so an erasure costs one pass over the leads collection,
   not one per source (docs/operations.md "Erasure").
   A post to a source that does not deduplicate on the value reads the erasure records
   before its insert (so a post meeting an erasure under way is ``suppressed``, never a
   ``duplicate`` of a lead about to go) and again *after* it (``taken_back_if_erased``),
   deleting its own lead if the consumer was erased: of the erasure (record, then scan) and
   the post (insert, then read), whichever comes second sees the other's write, so the lead
   never survives both.
4. A source that starts deduplicating on email or mobile later (``create_source``,
   ``update_source``) gets the blocks of every erasure record's value of that field then
   (``block_erased_values``): the block's claim is computed from the record's SHA-256, as a
   hashed pre-ping's is.  Provisioning writes the source first and reads the records after;
   an erasure writes its record first and reads the sources after: whichever comes second
   sees the other's write, so the block exists once both are done.  The source is written
   with a marker (``pending_blocks``) the finished blocks remove: until then its posts treat
   those fields as unblocked (``unblocked_fields``), so a call that stops in between lets no
   erased consumer back; ``complete_pending_blocks`` finishes it.

Idempotent: a second erasure finds the blocks standing and nothing to delete (it is still
recorded: the records are the log of requests).  Nothing here logs or returns a value.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from .errors import LeadStatus
from .mongo import acknowledged, parse_object_id, stored_time
from .repository import (
    DUPLICATE_KEY,
    ERASED_KIND,
    HOLD_KIND,
    LeadRepository,
    StoreResult,
    dedupe_claim,
    hashed_claim,
    hold_twin,
    value_sha256,
)
from .schemas import ValidLead, ping_values, schema_for
from .settings import Settings, utc_now
from .sources import SourceConfig
from .transient import ContentionError

logger = logging.getLogger("pingtree_leads")

#: The fields an erasure is asked for (the consumer's identity across sources).
ERASABLE_FIELDS = ("email", "mobile")
#: The multikey index of the erasure records' ``keys`` (``<field>:<sha256>``).
ERASURE_KEYS_INDEX = "pingtree_erasure_keys"
#: A block that keeps meeting re-created leads is tried this often before giving up (503-like).
MAX_BLOCK_ATTEMPTS = 100
#: Blocks a source that starts deduplicating on a field gets per insert command.
BLOCK_BATCH = 1000


@dataclasses.dataclass(frozen=True)
class ErasureReport:
    """What ``erase_consumer`` removed: leads per source id (24-hex), only sources with some."""

    erasure_id: str
    removed: dict[str, int]
    erased_at: datetime

    @property
    def total(self) -> int:
        return sum(self.removed.values())


def canonical_values(email: str | None = None, mobile: str | None = None) -> dict[str, str]:
    """The values as leads store them: the email's canonical form (canonical.py), the mobile's
    10 digits (punctuation and a leading +1 removed, as a lenient source stores it; a strict
    source stores only 10 digits).  ``ValueError`` names the field, never the value."""
    raw = {name: value for name, value in (("email", email), ("mobile", mobile)) if value is not None}
    for name, value in raw.items():
        if not isinstance(value, str):
            raise TypeError(f"{name} must be text")
    if not raw or not any(value.strip() for value in raw.values()):
        raise ValueError("give the consumer's email, mobile or both")
    values = ping_values(raw, schema_for((), Settings(), True), ERASABLE_FIELDS)
    if values.errors:
        raise ValueError(f"not a valid {', '.join(sorted(values.errors))}: nothing was erased")
    return dict(values.plain)


def erasure_keys(values: Mapping[str, str]) -> list[str]:
    """What an erasure record holds of the values: ``<field>:<SHA-256 of the canonical value>``."""
    return sorted(f"{field}:{value_sha256(value)}" for field, value in values.items())


def erasure_records(database: Database[Any], name: str = Settings.erasures_collection) -> Collection[Any]:
    collection: Collection[Any] = acknowledged(database)[name]
    return collection


def ensure_erasure_index(database: Database[Any], name: str = Settings.erasures_collection) -> None:
    """The index a post's check and a repeated erasure look records up by (idempotent)."""
    erasure_records(database, name).create_index([("keys", ASCENDING)], name=ERASURE_KEYS_INDEX)


def erase_consumer(
    database: Database[Any],
    email: str | None = None,
    mobile: str | None = None,
    *,
    leads_collection: str = Settings.leads_collection,
    sources_collection: str = Settings.sources_collection,
    erasures_collection: str = Settings.erasures_collection,
    clock: Callable[[], datetime] = utc_now,
) -> ErasureReport:
    """Delete every lead of every source holding this email or mobile; block their return.

    The erasure record (no PII) is written first; then every source is blocked for every
    value, then the leads collection is scanned once (module docstring).  Returns the
    counts per source id.  Idempotent; safe while the endpoint runs.  Costs: one insert and
    one update of the record, one read of the sources, per source and erased value
    one insert (plus a find and a delete per lead or hold met), and one scan of the leads
    collection (plus one delete per source with leads found).
    """
    values = canonical_values(email, mobile)
    repository = LeadRepository(database, leads_collection)
    repository.ensure_indexes()
    ensure_erasure_index(database, erasures_collection)
    records = erasure_records(database, erasures_collection)
    now = stored_time(clock())
    erasure_id = ObjectId()
    records.insert_one({"_id": erasure_id, "keys": erasure_keys(values), "erased_at": now, "completed_at": None})
    removed: dict[str, int] = {}
    sources = acknowledged(database)[sources_collection].find({}, {"api_keys": 0}).sort("_id", ASCENDING)
    for doc in sources:
        source = SourceConfig.from_document(doc)
        count = _block_source(repository, source, values, erasure_id, now)
        if count:
            removed[str(source.id)] = count
    # After every block: whatever a source deduplicates on now, a lead may hold no claim.
    for source_id, count in _delete_matching(repository, values).items():
        removed[str(source_id)] = removed.get(str(source_id), 0) + count
    removed = dict(sorted(removed.items()))
    records.update_one({"_id": erasure_id}, {"$set": {
        "removed": [{"source_id": ObjectId(sid), "leads": n} for sid, n in removed.items()],
        "total": sum(removed.values()), "completed_at": stored_time(clock())}})
    logger.info("consumer erased: erasure_id=%s sources=%d leads=%d", erasure_id, len(removed), sum(removed.values()))
    return ErasureReport(str(erasure_id), removed, now)


def _block_source(
    repository: LeadRepository, source: SourceConfig, values: Mapping[str, str], erasure_id: ObjectId, now: datetime
) -> int:
    """Block each erased value in the source, whether or not it deduplicates on the field now; the
    number of leads deleted doing it.  An endpoint of another process may still trust a cached
    config that deduplicates on it (``source_cache_seconds`` after an ``update_source`` there):
    its post claims the value instead of reading the erasure records, and only a block refuses
    it.  A block for a field the source does not claim meets no lead and costs nothing per lead."""
    return sum(_block(repository, source.id, hold_twin(dedupe_claim(source.id, field, value)), erasure_id, now)
               for field, value in values.items())


def _block(repository: LeadRepository, source_id: ObjectId, twin: str, erasure_id: ObjectId,
           now: datetime) -> int:
    """Insert the block holding ``twin`` in source ``source_id``, deleting whatever holds it first."""
    leads = repository.leads
    deleted = 0
    for _ in range(MAX_BLOCK_ATTEMPTS):
        try:
            leads.insert_one(_block_document(source_id, twin, erasure_id, now))
            return deleted
        except DuplicateKeyError:
            pass  # a lead, a hold, or an earlier erasure's block holds the value
        holder = leads.find_one({"source_id": source_id, "claims": twin}, {"kind": 1})
        if holder is None:
            continue  # removed meanwhile: insert again
        if holder.get("kind") == ERASED_KIND:
            return deleted  # already blocked (a repeated erasure)
        gone = leads.delete_one({"_id": holder["_id"], "source_id": source_id}).deleted_count
        if holder.get("kind") != HOLD_KIND:
            deleted += gone
    raise ContentionError("leads of the erased consumer kept being re-created")


def _block_document(source_id: ObjectId, twin: str, erasure_id: ObjectId, now: datetime) -> dict[str, Any]:
    return {"_id": ObjectId(), "source_id": source_id, "kind": ERASED_KIND, "claims": [twin],
            "erasure_id": erasure_id, "created_at": now}


def block_erased_values(
    database: Database[Any],
    source_id: ObjectId,
    dedupe_fields: Iterable[str],
    *,
    leads_collection: str = Settings.leads_collection,
    erasures_collection: str = Settings.erasures_collection,
    clock: Callable[[], datetime] = utc_now,
) -> int:
    """Write a source's blocks for every erased value of the erasable fields it deduplicates on
    (``create_source``, and ``update_source`` given ``dedupe_fields``, call it *after* writing the
    source): a source that starts deduplicating on email or mobile holds no claim for a
    consumer erased before, so without its blocks a post of them would be accepted.

    Idempotent (a block that stands is left; a lead or a hold holding its claim is deleted, as
    an erasure does); returns the number of leads deleted.  Costs: one indexed read of the
    erasure records per erasable field (none for a source deduplicating on neither), then
    one ``insert_many`` per 1,000 blocks, plus one read for the blocks already standing;
    nothing is written when there is no erasure record.
    """
    fields = [field for field in ERASABLE_FIELDS if field in set(dedupe_fields)]
    if not fields:
        return 0
    records = erasure_records(database, erasures_collection)
    twins: dict[str, ObjectId] = {}  # twin -> the first erasure record of its value
    for field in fields:
        # The field's range of the multikey ``keys`` index: "<field>:" up to "<field>;".
        query = {"keys": {"$gte": f"{field}:", "$lt": f"{field};"}}
        for record in records.find(query, {"keys": 1}).sort("_id", ASCENDING):
            for key in record.get("keys") or ():
                if isinstance(key, str) and key.startswith(f"{field}:"):
                    twin = hold_twin(hashed_claim(source_id, field, key.split(":", 1)[1]))
                    twins.setdefault(twin, record["_id"])
    if not twins:
        return 0
    repository = LeadRepository(database, leads_collection)
    repository.ensure_indexes()
    now = stored_time(clock())
    pending = list(twins)
    refused: list[str] = []
    for start in range(0, len(pending), BLOCK_BATCH):
        batch = pending[start:start + BLOCK_BATCH]
        try:
            repository.leads.insert_many([_block_document(source_id, twin, twins[twin], now) for twin in batch],
                                         ordered=False)
        except BulkWriteError as exc:
            details = exc.details or {}
            errors = details.get("writeErrors") or []
            if details.get("writeConcernErrors") or any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            refused.extend(batch[e["index"]] for e in errors)
    if not refused:
        return 0
    standing = {claim for doc in repository.leads.find({"source_id": source_id, "claims": {"$in": refused},
                                                        "kind": ERASED_KIND}, {"claims": 1})
                for claim in doc.get("claims") or ()}
    # A lead or a hold holds the claim (stored under the new settings before this ran): as an erasure.
    return sum(_block(repository, source_id, twin, twins[twin], now) for twin in refused if twin not in standing)


def complete_pending_blocks(
    database: Database[Any],
    *,
    sources_collection: str = Settings.sources_collection,
    leads_collection: str = Settings.leads_collection,
    erasures_collection: str = Settings.erasures_collection,
    clock: Callable[[], datetime] = utc_now,
) -> list[str]:
    """Write the erasure blocks of every source whose ``create_source``/``update_source`` stopped
    before they were written (its document still carries the marker), then remove the marker;
    the ids of those sources.  Idempotent; ``flask pingtree-leads ensure-indexes`` runs it."""
    done = []
    collection = acknowledged(database)[sources_collection]
    for doc in collection.find({"erasure_blocks_pending": {"$exists": True}},
                               {"dedupe_fields": 1, "erasure_blocks_pending": 1}):
        write_pending_blocks(database, doc["_id"], doc.get("dedupe_fields") or (), doc["erasure_blocks_pending"],
                             sources_collection=sources_collection, leads_collection=leads_collection,
                             erasures_collection=erasures_collection, clock=clock)
        done.append(str(doc["_id"]))
    return done


def write_pending_blocks(
    database: Database[Any],
    source_id: ObjectId,
    dedupe_fields: Iterable[str],
    marker: dict[str, Any],
    *,
    sources_collection: str,
    leads_collection: str,
    erasures_collection: str,
    clock: Callable[[], datetime],
) -> None:
    """The second half of a dedupe change: the source's blocks (``block_erased_values``), then
    the removal of the ``pending_blocks`` marker written with the change (``blocks_written``)."""
    block_erased_values(database, source_id, dedupe_fields, leads_collection=leads_collection,
                        erasures_collection=erasures_collection, clock=clock)
    blocks_written(database, sources_collection, source_id, marker)


def _delete_matching(repository: LeadRepository, values: Mapping[str, str]) -> dict[ObjectId, int]:
    """Delete every lead holding any of ``values`` (field -> value), of any source: one scan of
    the collection, not hinted (SecantusDB reads a whole index for a hinted find, and no index
    holds the values), then one delete per source with leads found.  Leads deleted per source."""
    leads = repository.leads
    matches = {"$or": [{field: value} for field, value in values.items()]}
    found: dict[ObjectId, list[Any]] = {}
    for doc in leads.find(matches, {"_id": 1, "source_id": 1}):
        found.setdefault(doc.get("source_id"), []).append(doc["_id"])
    deleted: dict[ObjectId, int] = {}
    for source_id, ids in found.items():
        for start in range(0, len(ids), BLOCK_BATCH):
            query = {"_id": {"$in": ids[start:start + BLOCK_BATCH]}, "source_id": source_id, **matches}
            deleted[source_id] = deleted.get(source_id, 0) + int(leads.delete_many(query).deleted_count)
    return {source_id: count for source_id, count in deleted.items() if count}


def unblocked_fields(source: SourceConfig) -> list[str]:
    """The erasable fields no block of the source can answer for: it does not deduplicate on
    them, or its blocks for them are pending (``pending_blocks``).  Their values are checked
    against the erasure records by posts, tests, pings and the import.  None for a default source."""
    return [field for field in ERASABLE_FIELDS
            if field not in source.dedupe_fields or field in source.erasure_blocks_pending]


def unblocked_values(source: SourceConfig, lead: ValidLead) -> dict[str, str]:
    """The lead's values of ``unblocked_fields``: what a post must check against the erasure records."""
    return {field: value for field in unblocked_fields(source) if isinstance(value := lead.fields.get(field), str)}


def pending_blocks(dedupe_fields: Iterable[str]) -> dict[str, Any] | None:
    """The marker a source document carries from the write that makes it deduplicate on email or
    mobile until its erasure blocks are written (None: no erasable field).  While it is there,
    posts read the erasure records for those values, so an interrupted ``create_source`` or
    ``update_source`` lets no erased consumer back; the token lets only the writer that set
    it remove it (``blocks_written``)."""
    fields = [field for field in ERASABLE_FIELDS if field in set(dedupe_fields)]
    return {"fields": fields, "token": ObjectId()} if fields else None


def blocks_written(database: Database[Any], sources_collection: str, source_id: ObjectId,
                   marker: dict[str, Any]) -> None:
    """Remove the marker ``pending_blocks`` made, unless another write replaced it since."""
    acknowledged(database)[sources_collection].update_one(
        {"_id": source_id, "erasure_blocks_pending.token": marker["token"]},
        {"$unset": {"erasure_blocks_pending": ""}})


def is_erased(database: Database[Any], values: Mapping[str, str],
              collection: str = Settings.erasures_collection) -> bool:
    """Is any of these canonical values erased?  One read through ``pingtree_erasure_keys``."""
    return any_key_erased(database, erasure_keys(values), collection)


def any_key_erased(database: Database[Any], keys: list[str], collection: str = Settings.erasures_collection) -> bool:
    """Is any of these ``<field>:<sha256>`` keys in an erasure record?  No read for none.
    (A hashed pre-ping's ``email_sha256`` is such a SHA-256 already.)"""
    if not keys:
        return False
    query = {"keys": {"$in": keys}}
    return erasure_records(database, collection).find_one(query, {"_id": 1}) is not None


def erased_unblocked(database: Database[Any], settings: Settings, source: SourceConfig, lead: ValidLead) -> bool:
    """Is an erasable value of the lead that the source holds no claim for (so no block can refuse
    it) erased?  One read of the erasure records; none when every erasable value is a dedupe
    claim (a default source) or the host allows posts after erasure.  Read before storage (a
    post, a test, a dry-run import): what ``taken_back_if_erased`` reads after it."""
    values = unblocked_values(source, lead)
    if not values or settings.allow_after_erasure:
        return False
    return is_erased(database, values, settings.erasures_collection)


def taken_back_if_erased(
    database: Database[Any], settings: Settings, source: SourceConfig, lead: ValidLead, result: StoreResult
) -> StoreResult:
    """After storage (a post, an import): a new lead with an erased value its source holds no
    claim for is deleted and answered ``suppressed``.  Of an erasure (record, then scan) and this
    writer (insert, then this read), whichever comes second sees the other's write.  No read for
    a replay, a refusal, or a lead whose erasable values are all claimed (a default source)."""
    if result.lead_status is not LeadStatus.ACCEPT or result.replayed or result.lead_id is None:
        return result
    if not erased_unblocked(database, settings, source, lead):
        return result
    oid = parse_object_id(result.lead_id)
    acknowledged(database)[settings.leads_collection].delete_one({"_id": oid, "source_id": source.id})
    return StoreResult(LeadStatus.SUPPRESSED, result.transaction_id)
