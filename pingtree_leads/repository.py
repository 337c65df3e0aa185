"""Storing leads in MongoDB; deduplication and idempotency by unique indexes.

An accepted lead costs one ``insert``: the insert itself is the check.  Three
unique indexes carry the rules, created in this order (the server reports the
first index an insert violates, in this order, so a replay is recognised before
a duplicate; ``check_indexes`` makes sure the order holds):

* ``(source_id, transaction_id)``: one lead per transaction id and source;
* ``dedupe.email`` and ``dedupe.mobile`` (sparse): a claim, a hash of source id,
  field and value, set only for the source's ``dedupe_fields``.  A claim older
  than the source's window is released (``$unset``) when a new lead needs it,
  so an expired match never blocks, also under races: whoever re-inserts first
  wins and the others meet the new claim.

A duplicate for a source without a window is known from the error alone (the
index the server names), so it costs no more than an accept; with a window, or
for a replay, one indexed ``find`` reads the stored lead.  ``predict`` answers what
``store`` would, with the same judgement and only reads (a dry-run import).  Only plain and sparse
single-field indexes are used: every MongoDB-compatible planner uses them
(partial indexes are not always used) and mongomock enforces them (it does not
enforce uniqueness per element of an array, which rules out one multikey index).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from .errors import LeadStatus
from .mongo import acknowledged, as_utc, stored_cutoff, stored_time
from .schemas import DEDUPE_FIELDS, ValidLead
from .sources import SourceConfig
from .transient import ContentionError

# Servers report the first unique index an insert breaks: mongod in creation order,
# SecantusDB in name order.  Names that sort in creation order make both agree.
TRANSACTION_INDEX = "pingtree_1_transaction"
DEDUPE_INDEX = {field: f"pingtree_{n}_dedupe_{field}" for n, field in enumerate(DEDUPE_FIELDS, start=2)}

#: name -> (keys, options), in the order they must be created.
IndexSpec = tuple[list[tuple[str, int]], dict[str, Any]]
LEAD_INDEXES: dict[str, IndexSpec] = {
    TRANSACTION_INDEX: ([("source_id", ASCENDING), ("transaction_id", ASCENDING)], {"unique": True}),
    **{
        name: ([(f"dedupe.{field}", ASCENDING)], {"unique": True, "sparse": True})
        for field, name in DEDUPE_INDEX.items()
    },
}
_KEY_PATTERNS: dict[tuple[str, ...], str] = {
    ("source_id", "transaction_id"): "transaction_id",
    **{(f"dedupe.{field}",): field for field in DEDUPE_FIELDS},
}
_LOOKUP_FIELDS = ("transaction_id", "fingerprint", "dedupe", "created_at")
_LOOKUP_PROJECTION = dict.fromkeys(_LOOKUP_FIELDS, 1)
# A released claim can be re-taken by a racing request; after this many rounds give up (503).
MAX_ATTEMPTS = 5
DUPLICATE_KEY = 11000


class LeadIndexError(PyMongoError):
    """The lead indexes are missing or could not be created."""


@dataclasses.dataclass(frozen=True)
class StoreResult:
    lead_status: LeadStatus  # ACCEPT, DUPLICATE or CONFLICT
    transaction_id: str
    lead_id: str | None = None
    replayed: bool = False
    matched_on: tuple[str, ...] = ()


def dedupe_claim(source_id: ObjectId, field: str, value: str) -> str:
    """A per-source key for a dedupe value; a hash, so the index holds no PII."""
    return hashlib.sha256(f"{source_id}\x1f{field}\x1f{value}".encode()).hexdigest()[:32]


def fingerprint(lead: ValidLead) -> str:
    """What a replay must match: the lead as stored, after normalisation."""
    content = {"fields": lead.fields, "trusted_form": lead.trusted_form, "extra": lead.extra}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class LeadRepository:
    def __init__(self, database: Database[Any], leads_collection: str) -> None:
        self.leads: Collection[Any] = acknowledged(database)[leads_collection]

    # -- indexes ---------------------------------------------------------------

    def ensure_indexes(self) -> None:
        """Create the unique indexes (idempotent); raise if the server refuses."""
        for name, (keys, options) in LEAD_INDEXES.items():
            self.leads.create_index(keys, name=name, **options)
        self.check_indexes()

    def check_indexes(self) -> None:
        """Raise ``LeadIndexError`` unless every lead index exists, with its shape, in its order."""
        info = self.leads.index_information()
        order = [name for name in info if name in LEAD_INDEXES]
        if order != [name for name in LEAD_INDEXES if name in info]:
            raise LeadIndexError(f"the lead indexes on {self.leads.full_name} are in another order than "
                                 f"{', '.join(LEAD_INDEXES)}: drop them and run ensure-indexes")
        for name, (keys, options) in LEAD_INDEXES.items():
            found = info.get(name)
            if (
                found is None
                or [tuple(k) for k in found["key"]] != [tuple(k) for k in keys]
                or any(bool(found.get(opt)) != value for opt, value in options.items())
            ):
                raise LeadIndexError(f"index {name!r} is missing or has another shape on {self.leads.full_name}: "
                                     "create the indexes with ensure-indexes")

    # -- storing ---------------------------------------------------------------

    def store(self, source: SourceConfig, lead: ValidLead, transaction_id: str, now: datetime) -> StoreResult:
        """Store one lead: one ``insert`` command when it is accepted."""
        return self.store_many(source, [(lead, transaction_id)], now)[0]

    def store_many(
        self, source: SourceConfig, leads: Sequence[tuple[ValidLead, str]], now: datetime
    ) -> list[StoreResult]:
        """Store leads of one source in one insert command (``insert_one`` for one lead, an
        unordered ``insert_many`` for more); a result per lead, in order.

        The endpoint (one lead) and the CSV import (batches) both come through here.
        """
        created_at = stored_time(now)  # what BSON keeps, so what is compared later is what was stored
        docs = [self._document(source, lead, transaction_id, created_at) for lead, transaction_id in leads]
        results: list[StoreResult | None] = [None] * len(docs)
        pending = list(range(len(docs)))
        for _ in range(MAX_ATTEMPTS):
            for i in pending:
                docs[i]["_id"] = ObjectId()
            conflicts = self._insert(docs, pending)
            retry = []
            for i in pending:
                if i not in conflicts:
                    results[i] = StoreResult(LeadStatus.ACCEPT, docs[i]["transaction_id"], lead_id=str(docs[i]["_id"]))
                    continue
                result = self._resolve_conflict(source, docs[i], conflicts[i], now)
                if result is None:
                    retry.append(i)  # a claim was released or vanished: insert again
                else:
                    results[i] = result
            pending = retry
            if not pending:
                return [r for r in results if r is not None]
        raise ContentionError("lead claims kept changing under concurrent writes")

    @staticmethod
    def _document(source: SourceConfig, lead: ValidLead, transaction_id: str, now: datetime) -> dict[str, Any]:
        claims = {
            field: dedupe_claim(source.id, field, lead.fields[field])
            for field in source.dedupe_fields
            if field in lead.fields
        }
        return {
            "source_id": source.id,
            "transaction_id": transaction_id,
            **lead.fields,
            "trusted_form": lead.trusted_form,
            "extra": lead.extra,
            "created_at": now,
            "dedupe": claims,
            "fingerprint": fingerprint(lead),
        }

    def _insert(self, docs: list[dict[str, Any]], pending: list[int]) -> dict[int, str | None]:
        """Insert ``docs[pending]``; returns {doc index: violated rule or None} for duplicate keys."""
        if len(pending) == 1:  # the endpoint's case: insert_one skips the bulk machinery
            try:
                self.leads.insert_one(docs[pending[0]])
            except DuplicateKeyError as exc:
                return {pending[0]: _violated((exc.details or {}).get("keyPattern"))}
            return {}
        try:
            self.leads.insert_many([docs[i] for i in pending], ordered=False)
        except BulkWriteError as exc:
            details = exc.details or {}
            errors = details.get("writeErrors") or []
            if details.get("writeConcernErrors") or any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            return {pending[e["index"]]: _violated(e.get("keyPattern")) for e in errors}
        return {}

    def _resolve_conflict(
        self, source: SourceConfig, doc: dict[str, Any], violated: str | None, now: datetime
    ) -> StoreResult | None:
        claims: dict[str, str] = doc["dedupe"]
        cutoff = stored_cutoff(source.dedupe_cutoff(now))
        if violated in claims and cutoff is None:
            # The transaction index comes first and was not broken, so this is no replay;
            # without a window every match counts: a duplicate, with no read.
            return StoreResult(LeadStatus.DUPLICATE, doc["transaction_id"], matched_on=(violated,))
        # The server names the violated index; mongomock does not, so then look
        # at every rule in index order (transaction first, as the contract says).
        for rule in [violated] if violated else _rules(claims):
            if rule != "transaction_id" and rule not in claims:
                continue
            found = self._holder(source, doc, rule)
            if found is None:
                continue
            result = _judge(found, doc, rule, cutoff)
            if result is not None or cutoff is None:  # without a window _judge always decides
                return result
            theirs = found.get("dedupe") or {}
            self._release_expired(found["_id"], [f for f in claims if theirs.get(f) == claims[f]], cutoff)
            return None
        return None

    def _holder(self, source: SourceConfig, doc: dict[str, Any], rule: str) -> dict[str, Any] | None:
        """The stored lead holding ``doc``'s key for ``rule`` (one indexed ``find``), or None."""
        if rule == "transaction_id":
            query = {"source_id": source.id, "transaction_id": doc["transaction_id"]}
        else:
            query = {f"dedupe.{rule}": doc["dedupe"][rule]}
        found: dict[str, Any] | None = self.leads.find_one(query, _LOOKUP_PROJECTION)
        return found

    # -- predicting (read-only) ------------------------------------------------

    def predict(
        self,
        source: SourceConfig,
        lead: ValidLead,
        transaction_id: str,
        now: datetime,
        *,
        unwritten: UnwrittenLeads | None = None,
    ) -> StoreResult:
        """What ``store`` would answer for this lead at ``now``, without writing anything.

        Read-only: no insert, no claim taken or released, at most one indexed ``find``
        per rule (``(source_id, transaction_id)``, then ``dedupe.<field>`` for each of
        the source's dedupe fields), judged exactly as ``store`` judges a conflict: a
        stored lead with this transaction id makes it a replay (``accept``,
        ``replayed``, its ``lead_id``) or a ``conflict``; a claim held inside the
        source's window a ``duplicate``; a claim past the window does not count
        (``store`` would release it).  Otherwise ``accept`` with ``lead_id`` None.

        ``unwritten``, when given, holds leads to count as stored (looked at before the
        database, so a match there costs no read), and a lead predicted ``accept`` is
        added to it: a dry run of many leads then judges each against the earlier ones
        as a real import would.  What it cannot know: leads other writers store or
        claims they release between this call and a real ``store``.
        """
        doc = self._document(source, lead, transaction_id, stored_time(now))
        cutoff = stored_cutoff(source.dedupe_cutoff(now))
        for rule in _rules(doc["dedupe"]):
            found = unwritten.holder(source, doc, rule) if unwritten is not None else None
            if found is None:
                found = self._holder(source, doc, rule)
            result = _judge(found, doc, rule, cutoff) if found is not None else None
            if result is not None:
                return result
        if unwritten is not None:
            unwritten.add(source, doc)
        return StoreResult(LeadStatus.ACCEPT, transaction_id)

    @staticmethod
    def _replay(found: dict[str, Any], doc: dict[str, Any]) -> StoreResult:
        if found.get("fingerprint") == doc["fingerprint"]:
            lead_id = str(found["_id"]) if "_id" in found else None  # None: an unwritten lead
            return StoreResult(LeadStatus.ACCEPT, doc["transaction_id"], lead_id=lead_id, replayed=True)
        return StoreResult(LeadStatus.CONFLICT, doc["transaction_id"])

    def _release_expired(self, lead_id: ObjectId, fields: list[str], cutoff: datetime) -> None:
        """Drop an old lead's claims that this lead needs, if it is still outside the window."""
        if fields:
            self.leads.update_one(
                {"_id": lead_id, "created_at": {"$lt": cutoff}},
                {"$unset": {f"dedupe.{field}": "" for field in fields}},
            )


class UnwrittenLeads:
    """Leads that ``LeadRepository.predict`` counts as stored although nothing was written.

    Holds only what the rules compare (transaction id, fingerprint, claims, time), in
    memory, for one run (a dry-run import; a test-mode request holds none).
    """

    def __init__(self) -> None:
        self._holders: dict[tuple[str, str], dict[str, Any]] = {}

    def holder(self, source: SourceConfig, doc: dict[str, Any], rule: str) -> dict[str, Any] | None:
        """The unwritten lead holding ``doc``'s key for ``rule``, or None."""
        return self._holders.get(_rule_key(source, doc, rule))

    def add(self, source: SourceConfig, doc: dict[str, Any]) -> None:
        kept = {name: doc[name] for name in _LOOKUP_FIELDS}  # not the projection: mongomock adds _id to it
        for rule in _rules(doc["dedupe"]):
            self._holders[_rule_key(source, doc, rule)] = kept


def _rules(claims: dict[str, str]) -> list[str]:
    """The rules a lead is checked against, in index order: transaction id first, then its claims."""
    return ["transaction_id", *(f for f in DEDUPE_FIELDS if f in claims)]


def _rule_key(source: SourceConfig, doc: dict[str, Any], rule: str) -> tuple[str, str]:
    return (rule, f"{source.id}\x1f{doc['transaction_id']}" if rule == "transaction_id" else doc["dedupe"][rule])


def _judge(found: dict[str, Any], doc: dict[str, Any], rule: str, cutoff: datetime | None) -> StoreResult | None:
    """What ``found``, the lead holding ``doc``'s key for ``rule``, makes of ``doc``:
    a replay or conflict (same transaction id), a duplicate (a claim inside the window),
    or None (a claim past the window: it no longer counts)."""
    if found.get("transaction_id") == doc["transaction_id"]:
        return LeadRepository._replay(found, doc)
    if cutoff is None or as_utc(found["created_at"]) >= cutoff:
        return StoreResult(LeadStatus.DUPLICATE, doc["transaction_id"], matched_on=(rule,))
    return None


def _violated(pattern: Any) -> str | None:
    """Which rule a duplicate-key error broke, from its keyPattern (never from its message: PII)."""
    if not isinstance(pattern, dict):
        return None
    return _KEY_PATTERNS.get(tuple(pattern))
