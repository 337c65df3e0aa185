"""Storing leads in MongoDB; deduplication and idempotency by one unique index.

An accepted lead costs one ``insert``: the insert itself is the check.  Every rule
is a *claim* in the lead's ``claims`` array, and one unique multikey index,
``(source_id, claims)``, holds them all (uniqueness holds per array element):

* ``-<transaction_id>``: one lead per transaction id and source;
* ``<field>:<hash>`` for each of the source's ``dedupe_fields`` the lead has: a hash
  of source id, field and value, so the index holds no PII.

The array is kept sorted, and ``-`` sorts before every field name, so the server
reports the transaction claim first when a post breaks several rules (mongod reports
the first key in index order, SecantusDB the first in array order: both agree), and
a replay is recognised before a duplicate; between fields the alphabetical first
is reported (``email`` before ``mobile``).  A claim older than the source's window
is released (``$pull``) when a new lead needs it, so an expired match never blocks,
also under races: whoever re-inserts first wins and the others meet the new claim.
The transaction claim is never released, so the array is never empty.

The index starts with ``source_id`` and uses neither ``sparse`` nor a partial filter,
so the collection can be sharded on ``{source_id: 1}`` (docs/operations.md) and every
planner uses it.  A duplicate for a source without a window is known from the error
alone (the claim the server names), so it costs no more than an accept; with a window,
or for a replay, one indexed ``find`` reads the stored lead.  ``predict`` answers what
``store`` would, with the same judgement and only reads (a dry-run import).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from .cap_slots import CapSlots
from .caps import is_cap_claim
from .errors import LeadStatus
from .mongo import as_utc, leads_collection, parse_object_id, stored_cutoff, stored_time
from .schemas import ValidLead, dedupe_text
from .sources import SourceConfig
from .transient import ContentionError

#: The one unique index every rule of the leads collection lives in.
CLAIMS_INDEX = "pingtree_claims"
#: The TTL index that removes expired pre-ping holds (sparse: only holds have the field, so
#: a lead's insert pays nothing for it; it carries no rule).
HOLD_EXPIRY_INDEX = "pingtree_hold_expiry"
#: The TTL index that removes the leads of a source with ``retention_days`` (contract section 11):
#: sparse, so a lead of a source without retention adds no key to it.
LEAD_EXPIRY_INDEX = "pingtree_lead_expiry"
#: The field holding when a lead expires (set at insert; only leads of sources with retention).
EXPIRY_FIELD = "expires_at"
#: name -> (keys, options).
IndexSpec = tuple[list[tuple[str, int]], dict[str, Any]]
LEAD_INDEXES: dict[str, IndexSpec] = {
    CLAIMS_INDEX: ([("source_id", ASCENDING), ("claims", ASCENDING)], {"unique": True}),
    HOLD_EXPIRY_INDEX: ([("hold_expires_at", ASCENDING)], {"expireAfterSeconds": 0, "sparse": True}),
    LEAD_EXPIRY_INDEX: ([(EXPIRY_FIELD, ASCENDING)], {"expireAfterSeconds": 0, "sparse": True}),
}
#: The indexes the endpoint cannot work without (checked when ``create_indexes`` is off);
#: without the TTL index holds still expire, and ``purge-holds`` removes them.
REQUIRED_INDEXES = (CLAIMS_INDEX,)
#: The indexes of the layout before claims (pingtree_leads 0.1): not shard-ready.
OLD_INDEXES = ("pingtree_1_transaction", "pingtree_2_dedupe_email", "pingtree_3_dedupe_mobile")
TRANSACTION_RULE = "transaction_id"
_LOOKUP_FIELDS = ("transaction_id", "fingerprint", "claims", "created_at", "kind", "hold_expires_at", EXPIRY_FIELD)
#: A pre-ping's hold is a document of its own in the leads collection (so one unique index
#: decides between holds and leads, atomically); it is never a lead.
HOLD_KIND = "hold"
#: An erased consumer's block (erasure.py): a document holding the hold twins of the erased
#: values in one source, never expiring; a post meeting it is ``suppressed``.
ERASED_KIND = "erased"
#: Prefix of a hold twin: every dedupe claim also exists as ``~<field>:<hash>``, which holds
#: take too.  ``~`` sorts after every field name, so a post meeting a lead is told so
#: before it is told about a hold.
HOLD_PREFIX = "~"
#: Longest hold a ping may ask for, seconds.
MAX_HOLD_SECONDS = 300
#: Every hold also takes one of its source's ``max_live_holds`` slots, the claim ``!<n>``: the
#: unique index then keeps the source's holds to that number.  ``!`` sorts below every other
#: claim (``"`` is the next character), so one tight range of the index finds a source's holds.
HOLD_MARK = "!"
_AFTER_HOLD_MARK = '"'
#: Random slots a held ping tries before it reads which ones are free.
SLOT_GUESSES = 3
#: A lead of a capped source also holds one cap slot claim per cap (``~~...``, caps.py): they
#: sort after every other claim, so a replay or a duplicate is reported before a full slot.
CAP_RULE = "cap"
#: Extra insert rounds a lead of a capped source may spend on slots other leads took first
#: (each refusal means another lead was stored in the window, so the rounds are few).
CAP_SLOT_ROUNDS = 32


def hold_slot(number: int) -> str:
    """The claim of hold slot ``number``."""
    return f"{HOLD_MARK}{number}"
_LOOKUP_PROJECTION = dict.fromkeys(_LOOKUP_FIELDS, 1)
# A released claim can be re-taken by a racing request; after this many rounds give up (503).
MAX_ATTEMPTS = 5
DUPLICATE_KEY = 11000


class _SlotRefused(Exception):
    """A lead's insert was refused on a cap slot claim (``claim``) another lead holds."""

    def __init__(self, claim: str) -> None:
        super().__init__("cap slot taken")
        self.claim = claim


class LeadIndexError(PyMongoError):
    """The lead indexes are missing or could not be created."""


class TooManyHolds(Exception):
    """A source already has its most live pre-ping holds; ``retry_at`` is when the first ends."""

    def __init__(self, retry_at: datetime) -> None:
        super().__init__("too many live holds")
        self.retry_at = retry_at


def unguessable_object_id(now: float | None = None) -> ObjectId:
    """An ObjectId whose 8 bytes after the timestamp are random: ``ObjectId()`` counts up, so
    one ping's id would give away the next ones."""
    seconds = int(time.time() if now is None else now)
    return ObjectId(seconds.to_bytes(4, "big") + os.urandom(8))


@dataclasses.dataclass(frozen=True)
class StoreResult:
    lead_status: LeadStatus  # ACCEPT, DUPLICATE, CONFLICT or SUPPRESSED (an erased consumer)
    transaction_id: str
    lead_id: str | None = None
    replayed: bool = False
    matched_on: tuple[str, ...] = ()
    retry_at: datetime | None = None  # CAPPED: when the latest-resetting full cap window ends


def value_sha256(value: str) -> str:
    """The lower-case hex SHA-256 of a dedupe value's canonical text (what a hashed ping sends)."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def claim_hash(source_id: ObjectId, field: str, value: str) -> str:
    """A per-source key for a dedupe value; a hash, so the index holds no PII."""
    return claim_hash_of_sha256(source_id, field, value_sha256(value))


def claim_hash_of_sha256(source_id: ObjectId, field: str, sha256_hex: str) -> str:
    """The same key from the value's SHA-256 alone: a seller can ask about a consumer
    without sending the value (pre-ping), and the claim is still the lead's claim."""
    return hashlib.sha256(f"{source_id}\x1f{field}\x1f{sha256_hex}".encode()).hexdigest()[:32]


def dedupe_claim(source_id: ObjectId, field: str, value: str) -> str:
    """The claim a lead holds for one dedupe value: ``<field>:<hash>``."""
    return f"{field}:{claim_hash(source_id, field, value)}"


def hashed_claim(source_id: ObjectId, field: str, sha256_hex: str) -> str:
    """The claim for a dedupe value known only by its SHA-256 (a pre-ping's ``<field>_sha256``)."""
    return f"{field}:{claim_hash_of_sha256(source_id, field, sha256_hex.lower())}"


def transaction_claim(transaction_id: str) -> str:
    """The claim a lead holds for its transaction id (ids never hold ``:``; fields never start with ``-``)."""
    return "-" + transaction_id


def claim_rule(claim: str) -> str:
    """The rule a claim stands for: ``transaction_id``, ``cap`` (a cap slot) or the dedupe field's name."""
    if is_cap_claim(claim):
        return CAP_RULE
    return TRANSACTION_RULE if claim.startswith("-") else claim.removeprefix(HOLD_PREFIX).split(":", 1)[0]


def hold_twin(claim: str) -> str:
    """The twin of a dedupe claim, which leads and holds both take."""
    return HOLD_PREFIX + claim


def claims_array(claims: dict[str, str]) -> list[str]:
    """What a lead stores in ``claims``: its claims and the hold twin of each dedupe claim, sorted
    (the order the server checks and reports them in: transaction, dedupe claims, twins)."""
    twins = [hold_twin(claim) for rule, claim in claims.items() if rule != TRANSACTION_RULE]
    return sorted([*claims.values(), *twins])


def lead_claims(source: SourceConfig, transaction_id: str, lead: ValidLead) -> dict[str, str]:
    """rule -> claim for one lead, in the order the server reports them (transaction first).

    A dedupe field is a standard field or, for custom dedupe, an extra field.
    """
    claims: dict[str, str] = {}
    for field in source.dedupe_fields:
        value = lead.fields.get(field, lead.extra.get(field))
        if value is not None:
            claims[field] = dedupe_claim(source.id, field, dedupe_text(value))
    return {TRANSACTION_RULE: transaction_claim(transaction_id), **dict(sorted(claims.items(), key=lambda i: i[1]))}


#: ``json.dumps(..., sort_keys=True, separators=(",", ":"))``, built once (stored fingerprints
#: depend on these exact bytes).
_FINGERPRINT_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def fingerprint(lead: ValidLead) -> str:
    """What a replay must match: the lead as stored, after normalisation."""
    content: dict[str, Any] = {"fields": lead.fields, "trusted_form": lead.trusted_form, "extra": lead.extra}
    if lead.consent:  # only then: a lead without consent keeps the fingerprint it always had
        content["consent"] = consent_view(lead.consent)
    return hashlib.sha256(_FINGERPRINT_JSON.encode(content).encode()).hexdigest()


def consent_view(consent: Mapping[str, Any]) -> dict[str, Any]:
    """Stored consent evidence, JSON-ready: ``consent_at`` as ISO 8601 UTC with milliseconds."""
    moment = consent.get("consent_at")
    if not isinstance(moment, datetime):
        return dict(consent)
    return {**consent, "consent_at": as_utc(moment).isoformat(timespec="milliseconds")}


class LeadRepository:
    def __init__(self, database: Database[Any], collection_name: str, *, allow_after_erasure: bool = False) -> None:
        self.leads: Collection[Any] = leads_collection(database, collection_name)
        #: A post or held ping meeting an erased consumer's block takes it over (deletes it) instead
        #: of being ``suppressed`` (the ``allow_after_erasure`` option).
        self.allow_after_erasure = allow_after_erasure
        self.cap_slots = CapSlots(self.leads, CLAIMS_INDEX)

    # -- indexes ---------------------------------------------------------------

    def ensure_indexes(self) -> None:
        """Create the unique index and the holds' TTL index (idempotent); raise if the server refuses or the
        old layout is there."""
        self._refuse_old_layout(self.leads.index_information())
        for name, (keys, options) in LEAD_INDEXES.items():
            self.leads.create_index(keys, name=name, **options)
        self.check_indexes()

    def check_indexes(self) -> None:
        """Raise ``LeadIndexError`` unless the claims index exists with its shape (and no old layout)."""
        info = self.leads.index_information()
        self._refuse_old_layout(info)
        for name in REQUIRED_INDEXES:
            keys, options = LEAD_INDEXES[name]
            found = info.get(name)
            if (
                found is None
                or [tuple(k) for k in found["key"]] != [tuple(k) for k in keys]
                or any(bool(found.get(opt)) != value for opt, value in options.items())
                or found.get("sparse")
                or "partialFilterExpression" in found
            ):
                raise LeadIndexError(f"index {name!r} is missing or has another shape on {self.leads.full_name}: "
                                     "create the indexes with ensure-indexes")

    def _refuse_old_layout(self, info: Mapping[str, Any]) -> None:
        old = [name for name, spec in info.items()
               if name in OLD_INDEXES or any(key.startswith("dedupe.") for key, _ in spec["key"])]
        if old:
            raise LeadIndexError(
                f"{self.leads.full_name} has the index layout of pingtree_leads 0.1 ({', '.join(old)}), which cannot "
                "be sharded: stop the writers and run 'flask pingtree-leads migrate-storage' "
                "(or pingtree_leads.migrate_storage(database)) to move it to the claims layout"
            )

    # -- storing ---------------------------------------------------------------

    def store(
        self, source: SourceConfig, lead: ValidLead, transaction_id: str, now: datetime,
        ping_id: ObjectId | None = None,
    ) -> StoreResult:
        """Store one lead: one ``insert`` command when it is accepted.

        With ``ping_id``, a live hold of this source whose values the lead matches is taken
        over first: the hold document becomes the lead in one replace (so nobody can slip
        in between; the lead's id is the ping's).  If the lead cannot be stored (a replay, a
        409, a duplicate of another lead) the replace is refused and the hold stays.
        """
        if ping_id is not None:
            taken = self._take_over(source, lead, transaction_id, now, ping_id)
            if taken is not None:
                return taken
        return self.store_many(source, [(lead, transaction_id)], now)[0]

    def _take_over(
        self, source: SourceConfig, lead: ValidLead, transaction_id: str, now: datetime, ping_id: ObjectId
    ) -> StoreResult | None:
        doc = self._document(source, lead, transaction_id, stored_time(now))
        if source.caps:
            pick = self.cap_slots.take(source, now)
            if pick.retry_at is not None:
                return self._capped(source, lead, transaction_id, now, pick.retry_at, ping_id)
            doc["claims"] = sorted([*doc["claims"], *pick.claims])
        stored = False
        try:
            result = self._take_over_hold(source, lead, transaction_id, now, ping_id, doc)
            stored = result is not None and result.lead_id == str(ping_id)
            return result
        finally:
            self.cap_slots.done(source, doc["claims"], stored)

    def _take_over_hold(
        self, source: SourceConfig, lead: ValidLead, transaction_id: str, now: datetime, ping_id: ObjectId,
        doc: dict[str, Any],
    ) -> StoreResult | None:
        for _ in range(MAX_ATTEMPTS + (CAP_SLOT_ROUNDS if source.caps else 0)):
            hold = self.leads.find_one({"_id": ping_id}, {**_LOOKUP_PROJECTION, "source_id": 1})
            if (hold is None or hold.get("kind") != HOLD_KIND or hold.get("source_id") != source.id
                    or not _hold_live(hold, now) or not _fits(hold, doc)):
                return None  # no such live hold of these values: decided as if there were none
            doc["_id"] = ping_id
            try:
                replaced = self.leads.replace_one(
                    {"_id": ping_id, "kind": HOLD_KIND, "claims": hold["claims"],
                     "hold_expires_at": hold["hold_expires_at"]}, doc)
            except DuplicateKeyError as exc:
                # The lead breaks a rule of its own (replay, 409, another lead): the hold stays.
                try:
                    result = self._resolve_conflict(source, doc, _violated(exc.details or {}), now)
                except _SlotRefused as refused:
                    result = self._next_slots(source, doc, refused.claim, now)
                if result is not None:
                    return result
                continue  # an expired claim was released: take the hold over again
            if replaced.matched_count:
                return StoreResult(LeadStatus.ACCEPT, transaction_id, lead_id=str(ping_id))
            return None  # expired or taken meanwhile
        raise ContentionError("lead claims kept changing under concurrent writes")

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
        if source.caps:  # a slot per cap for each lead: no read when the process knows the window
            pending = []
            for i, (lead, transaction_id) in enumerate(leads):
                pick = self.cap_slots.take(source, now)
                if pick.retry_at is not None:
                    results[i] = self._capped(source, lead, transaction_id, now, pick.retry_at)
                else:
                    docs[i]["claims"] = sorted([*docs[i]["claims"], *pick.claims])
                    pending.append(i)
        try:
            return self._store_docs(source, docs, results, pending, now)
        finally:
            if source.caps:
                for i, doc in enumerate(docs):
                    result = results[i]
                    self.cap_slots.done(source, doc["claims"], result is not None and doc.get("_id") is not None
                                        and result.lead_id == str(doc["_id"]) and not result.replayed)

    def _store_docs(
        self, source: SourceConfig, docs: list[dict[str, Any]], results: list[StoreResult | None],
        pending: list[int], now: datetime,
    ) -> list[StoreResult]:
        for _ in range(MAX_ATTEMPTS + (CAP_SLOT_ROUNDS if source.caps else 0)):
            if not pending:
                break
            for i in pending:
                docs[i]["_id"] = ObjectId()
            conflicts = self._insert(docs, pending)
            retry = []
            for i in pending:
                if i not in conflicts:
                    results[i] = StoreResult(LeadStatus.ACCEPT, docs[i]["transaction_id"], lead_id=str(docs[i]["_id"]))
                    continue
                try:
                    result = self._resolve_conflict(source, docs[i], conflicts[i], now)
                except _SlotRefused as refused:
                    result = self._next_slots(source, docs[i], refused.claim, now)
                if result is None:
                    retry.append(i)  # a claim was released or vanished, or a slot was taken: insert again
                else:
                    results[i] = result
            pending = retry
        if pending:
            raise ContentionError("lead claims kept changing under concurrent writes")
        return [r for r in results if r is not None]

    def _next_slots(self, source: SourceConfig, doc: dict[str, Any], refused: str, now: datetime) -> StoreResult | None:
        """After an insert refused on a cap slot: the doc gets another free slot (None: insert
        again), or the lead is ``capped``.  The server checks claims in sorted order and slot
        claims sort last, so a slot refusal means no replay and no duplicate: no more reads."""
        pick = self.cap_slots.refused(source, now, doc["claims"], refused)
        if pick.retry_at is not None:
            doc["claims"] = [claim for claim in doc["claims"] if not is_cap_claim(claim)]
            return StoreResult(LeadStatus.CAPPED, doc["transaction_id"], retry_at=pick.retry_at)
        doc["claims"] = sorted([*(claim for claim in doc["claims"] if not is_cap_claim(claim)), *pick.claims])
        return None

    def _capped(
        self, source: SourceConfig, lead: ValidLead, transaction_id: str, now: datetime, retry_at: datetime,
        ping_id: ObjectId | None = None,
    ) -> StoreResult:
        """A lead a full cap keeps out: a replay, a 409 or a duplicate still says so (they come
        first, as the index would report them; read-only, nothing is stored either way), else
        ``capped``.  Costs the reads of ``predict`` (a capped lead is no normal case)."""
        ruled = self.predict(dataclasses.replace(source, caps=()), lead, transaction_id, now, ping_id=ping_id)
        if ruled.lead_status is LeadStatus.ACCEPT and not ruled.replayed:
            return StoreResult(LeadStatus.CAPPED, transaction_id, retry_at=retry_at)
        return ruled

    @staticmethod
    def _document(source: SourceConfig, lead: ValidLead, transaction_id: str, now: datetime) -> dict[str, Any]:
        doc = {
            "source_id": source.id,
            "transaction_id": transaction_id,
            **lead.fields,
            "trusted_form": lead.trusted_form,
            "extra": lead.extra,
            "created_at": now,
            "claims": claims_array(lead_claims(source, transaction_id, lead)),
            "fingerprint": fingerprint(lead),
        }
        expires = source.expires_at(now)
        if expires is not None:  # only a source with retention: the TTL index is sparse
            doc[EXPIRY_FIELD] = expires
        if lead.consent:  # consent evidence (consent.py): a lead without any stores no key for it
            doc["consent"] = lead.consent
        return doc

    def _insert(self, docs: list[dict[str, Any]], pending: list[int]) -> dict[int, str | None]:
        """Insert ``docs[pending]``; returns {doc index: violated claim or None} for duplicate keys."""
        if len(pending) == 1:  # the endpoint's case: insert_one skips the bulk machinery
            try:
                self.leads.insert_one(docs[pending[0]])
            except DuplicateKeyError as exc:
                return {pending[0]: _violated(exc.details or {})}
            return {}
        try:
            self.leads.insert_many([docs[i] for i in pending], ordered=False)
        except BulkWriteError as exc:
            details = exc.details or {}
            errors = details.get("writeErrors") or []
            if details.get("writeConcernErrors") or any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            return {pending[e["index"]]: _violated(e) for e in errors}
        return {}

    def _resolve_conflict(
        self, source: SourceConfig, doc: dict[str, Any], violated: str | None, now: datetime
    ) -> StoreResult | None:
        if violated is not None and is_cap_claim(violated):
            raise _SlotRefused(violated)
        claims = _claim_map(doc["claims"])
        cutoff = stored_cutoff(source.dedupe_cutoff(now))
        rule = claim_rule(violated) if violated is not None else None
        if violated in claims.values() and rule != TRANSACTION_RULE and cutoff is None and not source.retention_days:
            # The transaction claim sorts first and was not the one broken, so this is no
            # replay; without a window every match counts: a duplicate, with no read.
            return StoreResult(LeadStatus.DUPLICATE, doc["transaction_id"], matched_on=(str(rule),))
        # The server names the violated claim; mongomock does not, so then look at
        # every claim in report order (transaction first, as the contract says).
        order = [violated] if violated in doc["claims"] else sorted(doc["claims"])
        for claim in order:
            assert claim is not None
            found = self._holder(source, claim)
            if found is None:
                continue
            if is_cap_claim(claim):  # sorted last: nothing before it is held
                raise _SlotRefused(claim)
            rule = claim_rule(claim)
            if found.get("kind") == ERASED_KIND or _lead_expired(found, now):
                return self._meet_erased_or_expired(source, doc, found, now)
            if found.get("kind") == HOLD_KIND:
                if _hold_live(found, now):
                    return StoreResult(LeadStatus.DUPLICATE, doc["transaction_id"], matched_on=(rule,))
                self._drop_expired_hold(source, found["_id"], now)
                return None
            result = _judge(found, doc, rule, cutoff)
            if result is not None or cutoff is None:  # without a window _judge always decides
                return result
            shared = sorted(set(found.get("claims") or ()) & set(doc["claims"]) - {claims[TRANSACTION_RULE]})
            self._release_expired(source, found["_id"], shared, cutoff)
            return None
        return None

    def _meet_erased_or_expired(
        self, source: SourceConfig, doc: Mapping[str, Any], found: Mapping[str, Any], now: datetime
    ) -> StoreResult | None:
        """An erased consumer's block is ``suppressed`` (None after deleting it when the host allows
        posts after erasure); a lead past its retention counts for nothing: it is deleted, as the
        TTL monitor would, and the insert retried (None)."""
        if found.get("kind") == ERASED_KIND and not self.allow_after_erasure:
            return StoreResult(LeadStatus.SUPPRESSED, doc["transaction_id"])
        self._drop_erased_or_expired(source, found, now)
        return None

    def _drop_erased_or_expired(self, source: SourceConfig, found: Mapping[str, Any], now: datetime) -> None:
        if found.get("kind") == ERASED_KIND:
            self.leads.delete_one({"_id": found["_id"], "source_id": source.id, "kind": ERASED_KIND})
        else:
            self.leads.delete_one({"_id": found["_id"], "source_id": source.id,
                                   EXPIRY_FIELD: {"$lte": stored_time(now)}})

    def _drop_expired_hold(self, source: SourceConfig, hold_id: Any, now: datetime) -> None:
        """Delete a hold that has expired (it counts for nothing); a live one stays."""
        self.leads.delete_one({"_id": hold_id, "source_id": source.id, "kind": HOLD_KIND,
                               "hold_expires_at": {"$lte": stored_time(now)}})

    def _holder(self, source: SourceConfig, claim: str) -> dict[str, Any] | None:
        """The stored lead of ``source`` holding ``claim`` (one indexed ``find``), or None."""
        found: dict[str, Any] | None = self.leads.find_one({"source_id": source.id, "claims": claim},
                                                           _LOOKUP_PROJECTION)
        return found

    def replay_of(
        self, source: SourceConfig, lead: ValidLead, transaction_id: str, now: datetime
    ) -> StoreResult | None:
        """The replay (or 409) this lead would be, from the stored lead of its transaction id
        (one indexed read), or None when there is none: what decides a lead refused before
        storage (suppressed), as replays are decided before any other rule.  A lead past its
        retention at ``now`` is none (as everywhere: it counts for nothing, fetch cannot find it)."""
        found = self._holder(source, transaction_claim(transaction_id))
        if found is None or found.get("kind") in (HOLD_KIND, ERASED_KIND) or _lead_expired(found, now):
            return None
        return self._replay(found, {"transaction_id": transaction_id, "fingerprint": fingerprint(lead)})

    # -- predicting (read-only) ------------------------------------------------

    def predict(
        self,
        source: SourceConfig,
        lead: ValidLead,
        transaction_id: str,
        now: datetime,
        *,
        unwritten: UnwrittenLeads | None = None,
        ping_id: ObjectId | None = None,
    ) -> StoreResult:
        """What ``store`` would answer for this lead at ``now``, without writing anything.

        Read-only: no insert, no claim taken or released, at most one indexed ``find``
        per claim (the transaction claim first, then the lead's dedupe claims), judged
        exactly as ``store`` judges a conflict: a stored lead with this transaction id
        makes it a replay (``accept``, ``replayed``, its ``lead_id``) or a ``conflict``;
        a claim held inside the source's window a ``duplicate``; a claim past the window
        does not count (``store`` would release it).  Otherwise ``accept`` with
        ``lead_id`` None.

        ``unwritten``, when given, holds leads to count as stored (looked at before the
        database, so a match there costs no read), and a lead predicted ``accept`` is
        added to it: a dry run of many leads then judges each against the earlier ones
        as a real import would.  What it cannot know: leads other writers store or
        claims they release between this call and a real ``store``.
        """
        doc = self._document(source, lead, transaction_id, stored_time(now))
        cutoff = stored_cutoff(source.dedupe_cutoff(now))
        for rule, claim in _claim_map(doc["claims"]).items():
            # A dedupe value is looked up by its hold twin: that one read finds a lead or a hold.
            looked_up = claim if rule == TRANSACTION_RULE else hold_twin(claim)
            found = unwritten.holder(source, claim) if unwritten is not None else None
            if found is None:
                found = self._holder(source, looked_up)
            if found is not None and (found.get("kind") == ERASED_KIND or _lead_expired(found, now)):
                if found.get("kind") == ERASED_KIND and not self.allow_after_erasure:
                    return StoreResult(LeadStatus.SUPPRESSED, transaction_id)
                continue  # a lead past its retention, or a block the host lets posts take over
            if found is not None and found.get("kind") == HOLD_KIND:
                taken_over = ping_id is not None and found.get("_id") == ping_id and _fits(found, doc)
                if _hold_live(found, now) and not taken_over:
                    return StoreResult(LeadStatus.DUPLICATE, transaction_id, matched_on=(rule,))
                continue  # expired, or the post's own hold: as if there were none
            result = _judge(found, doc, rule, cutoff) if found is not None else None
            if result is not None:
                return result
        if source.caps:  # a new lead: would a cap keep it out?  One read per cap
            retry_at = self.cap_slots.full_until(source, now, unwritten.cap_use if unwritten is not None else None)
            if retry_at is not None:
                return StoreResult(LeadStatus.CAPPED, transaction_id, retry_at=retry_at)
        if unwritten is not None:
            unwritten.add(source, doc)
            unwritten.count_caps(source, now)
        return StoreResult(LeadStatus.ACCEPT, transaction_id)

    # -- pre-ping ----------------------------------------------------------------

    def ping(
        self, source: SourceConfig, claims: Mapping[str, str], hold_seconds: int, now: datetime, *,
        max_holds: int,
    ) -> PingResult:
        """Would a post of the consumer with these dedupe ``claims`` (field -> claim) be a
        duplicate now?  With ``hold_seconds`` > 0 an ``accept`` is held: one insert of a hold
        that every other post of the consumer meets until it expires.

        Of concurrent held pings for one consumer exactly one is held: the unique index
        decides.  Without a hold, one indexed read per value (its hold twin finds a lead
        or a hold alike).  An empty ``claims`` (a source without dedupe) holds nothing.

        A source has at most ``max_holds`` live holds, by the same index: each hold also
        takes one of the source's ``max_holds`` *slots* (the claim ``!<n>``), picked at random;
        a slot taken by another hold is a refused insert like any other, and after a few such
        refusals the source's holds are read to pick a free slot, or to raise ``TooManyHolds``
        (with the time the first live hold ends) when there is none.
        """
        if source.caps:  # one read per cap; a full cap: a duplicate still says so, holding nothing
            retry_at = self.cap_slots.full_until(source, now)
            if retry_at is not None:
                asked = self.ping(dataclasses.replace(source, caps=()), claims, 0, now, max_holds=max_holds)
                return asked if asked.lead_status is not LeadStatus.ACCEPT else PingResult(LeadStatus.CAPPED,
                                                                                          retry_at=retry_at)
        twins = {field: hold_twin(claim) for field, claim in sorted(claims.items(), key=lambda i: i[1])}
        if not twins:
            return PingResult(LeadStatus.ACCEPT)
        cutoff = stored_cutoff(source.dedupe_cutoff(now))
        created = stored_time(now)
        if hold_seconds <= 0:
            for field, twin in twins.items():
                found = self._holder(source, twin)
                if found is not None and found.get("kind") == ERASED_KIND and not self.allow_after_erasure:
                    return PingResult(LeadStatus.SUPPRESSED)
                if found is not None and self._counts(found, cutoff, now):
                    return PingResult(LeadStatus.DUPLICATE, (field,))
            return PingResult(LeadStatus.ACCEPT)
        expires = created + timedelta(seconds=hold_seconds)
        held = sorted(twins.values())
        slot = hold_slot(random.randrange(max_holds))
        slot_refusals = 0
        for _ in range(MAX_ATTEMPTS + SLOT_GUESSES + 1):
            hold_id = unguessable_object_id(now.timestamp())
            try:
                self.leads.insert_one({"_id": hold_id, "source_id": source.id, "kind": HOLD_KIND,
                                       "claims": [slot, *held], "hold_expires_at": expires, "created_at": created})
            except DuplicateKeyError as exc:
                violated = _violated(exc.details or {})
                order = [violated] if violated in held else [] if violated == slot else held
                for twin in order:
                    found = self._holder(source, str(twin))
                    if found is None:
                        continue
                    if found.get("kind") == ERASED_KIND or _lead_expired(found, now):
                        if found.get("kind") == ERASED_KIND and not self.allow_after_erasure:
                            return PingResult(LeadStatus.SUPPRESSED)
                        self._drop_erased_or_expired(source, found, now)
                        break
                    if self._counts(found, cutoff, now):
                        return PingResult(LeadStatus.DUPLICATE, (claim_rule(str(twin)),))
                    if found.get("kind") == HOLD_KIND:
                        self._drop_expired_hold(source, found["_id"], now)
                    else:
                        # A lead past its window: released for good, the claims and their twins,
                        # as a post releases them (so a later post, ping or test agree on it).
                        wanted = {*held, *(twin.removeprefix(HOLD_PREFIX) for twin in held)}
                        shared = sorted(set(found.get("claims") or ()) & wanted)
                        self._release_expired(source, found["_id"], shared, cutoff or created)
                    break
                else:  # no value is held by anyone: the slot was taken
                    slot_refusals += 1
                    slot = (hold_slot(random.randrange(max_holds)) if slot_refusals < SLOT_GUESSES
                            else self._free_slot(source, max_holds, now))
                continue
            return PingResult(LeadStatus.ACCEPT, ping_id=str(hold_id), hold_expires_at=expires)
        raise ContentionError("holds kept changing under concurrent writes")

    def _free_slot(self, source: SourceConfig, max_holds: int, now: datetime) -> str:
        """A slot no live hold of ``source`` takes (an expired hold in it is deleted first);
        ``TooManyHolds`` when every one of the ``max_holds`` slots is live.  One read of the
        source's holds: a tight range of the claims index (no hint: SecantusDB reads the whole
        index for a hinted find; with the range alone every planner picks it)."""
        live: set[str] = set()
        expired: dict[str, Any] = {}
        first_end: datetime | None = None
        mine = {"source_id": source.id, "claims": {"$gte": HOLD_MARK, "$lt": _AFTER_HOLD_MARK}}
        for hold in self.leads.find(mine, {"claims": 1, "hold_expires_at": 1}):
            slots = [claim for claim in hold.get("claims") or () if claim.startswith(HOLD_MARK)]
            if _hold_live(hold, now):
                live.update(slots)
                ends = as_utc(hold["hold_expires_at"])
                first_end = ends if first_end is None else min(first_end, ends)
            else:
                expired.update(dict.fromkeys(slots, hold["_id"]))
        free = [slot for slot in map(hold_slot, range(max_holds)) if slot not in live]
        if not free:
            raise TooManyHolds(first_end or now + timedelta(seconds=1))
        slot = random.choice(free)
        if slot in expired:
            self._drop_expired_hold(source, expired[slot], now)
        return slot

    def purge_expired_holds(self, now: datetime, batch_size: int = 1000) -> int:
        """Delete every hold that has expired (what the TTL index does on a server, and all that
        removes them on mongomock); returns how many.  Found through the TTL index, deleted by id."""
        expired = {"hold_expires_at": {"$lte": stored_time(now)}, "kind": HOLD_KIND}
        deleted = 0
        while True:
            ids = [doc["_id"] for doc in self.leads.find(expired, {"_id": 1}).hint(HOLD_EXPIRY_INDEX).limit(batch_size)]
            if not ids:
                return deleted
            deleted += int(self.leads.delete_many({"_id": {"$in": ids}, **expired}).deleted_count)

    @staticmethod
    def _counts(found: Mapping[str, Any], cutoff: datetime | None, now: datetime) -> bool:
        """Does ``found`` (a lead or a hold holding a value) make a post of it a duplicate now?"""
        if found.get("kind") == HOLD_KIND:
            return _hold_live(found, now)
        if found.get("kind") == ERASED_KIND or _lead_expired(found, now):
            return False  # a block the host lets pings ignore; a lead past its retention
        return cutoff is None or as_utc(found["created_at"]) >= cutoff

    # -- reading ----------------------------------------------------------------

    def find(
        self, source_id: str | ObjectId, *, lead_id: str | ObjectId | None = None, transaction_id: str | None = None,
        now: datetime | None = None,
    ) -> dict[str, Any] | None:
        """One stored lead of ``source_id`` by ``lead_id`` or ``transaction_id`` (``lead_view``), or None.

        A lead past its retention (``expires_at`` <= ``now``, default the real time) is not
        found, although the TTL monitor may not have removed it yet."""
        source = parse_object_id(source_id)
        if source is None:
            return None
        if lead_id is not None:
            oid = parse_object_id(lead_id)
            if oid is None:
                return None
            # By _id alone: SecantusDB's planner scans the collection for {_id, source_id}.
            doc = self.leads.find_one({"_id": oid})
            if doc is not None and (doc.get("source_id") != source or doc.get("kind") in (HOLD_KIND, ERASED_KIND)):
                doc = None  # another source's lead, a pre-ping's hold or an erasure's block is not found
        else:
            doc = self.leads.find_one({"source_id": source, "claims": transaction_claim(str(transaction_id))})
        if doc is not None and _lead_expired(doc, datetime.now(timezone.utc) if now is None else now):
            doc = None
        return lead_view(doc) if doc is not None else None

    @staticmethod
    def _replay(found: dict[str, Any], doc: dict[str, Any]) -> StoreResult:
        if found.get("fingerprint") == doc["fingerprint"]:
            lead_id = str(found["_id"]) if "_id" in found else None  # None: an unwritten lead
            return StoreResult(LeadStatus.ACCEPT, doc["transaction_id"], lead_id=lead_id, replayed=True)
        return StoreResult(LeadStatus.CONFLICT, doc["transaction_id"])

    def _release_expired(self, source: SourceConfig, lead_id: ObjectId, claims: list[str], cutoff: datetime) -> None:
        """Drop an old lead's claims that this lead needs, if it is still outside the window.

        Its transaction claim stays, so its ``claims`` array is never empty.  ``source_id``
        is in the filter so that mongos sends the update to one shard only.
        """
        if claims:
            self.leads.update_one(
                {"_id": lead_id, "source_id": source.id, "created_at": {"$lt": cutoff}},
                {"$pull": {"claims": {"$in": claims}}},
            )


def lead_view(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A stored lead as fetch answers it and signals carry it (JSON-ready; no internals)."""
    hidden = {"_id", "source_id", "claims", "fingerprint", "created_at", "transaction_id", "consent", EXPIRY_FIELD}
    created = doc.get("created_at")
    return {
        "lead_id": str(doc["_id"]),
        "transaction_id": doc.get("transaction_id"),
        **{k: v for k, v in doc.items() if k not in hidden},
        "consent": consent_view(doc.get("consent") or {}),  # always there, {} for a lead without evidence
        "created_at": as_utc(created).isoformat(timespec="milliseconds") if isinstance(created, datetime) else None,
    }


def stored_lead_view(lead: ValidLead, transaction_id: str, lead_id: str, now: datetime) -> dict[str, Any]:
    """``lead_view`` of a lead just stored at ``now``, built without reading it back."""
    return lead_view({"_id": lead_id, **lead.as_stored(transaction_id), "created_at": stored_time(now)})


def find_lead(
    database: Database[Any],
    source_id: str | ObjectId,
    lead_id: str | ObjectId | None = None,
    transaction_id: str | None = None,
    *,
    leads_collection: str = "leads",
) -> dict[str, Any] | None:
    """The stored lead of ``source_id`` with that ``lead_id`` or ``transaction_id`` (give
    exactly one), as the fetch endpoint answers it; None if that source has no such lead.

    Index-backed: ``_id``, or the transaction claim in ``(source_id, claims)``.  Another
    source's lead is not found.  A malformed id finds nothing.
    """
    if (lead_id is None) == (transaction_id is None):
        raise ValueError("find_lead needs exactly one of lead_id and transaction_id")
    return LeadRepository(database, leads_collection).find(source_id, lead_id=lead_id, transaction_id=transaction_id)


@dataclasses.dataclass(frozen=True)
class PingResult:
    lead_status: LeadStatus  # ACCEPT, DUPLICATE, SUPPRESSED (an erased consumer) or CAPPED
    matched_on: tuple[str, ...] = ()
    ping_id: str | None = None
    hold_expires_at: datetime | None = None
    retry_at: datetime | None = None  # CAPPED


class UnwrittenLeads:
    """Leads that ``LeadRepository.predict`` counts as stored although nothing was written.

    Holds only what the rules compare (transaction id, fingerprint, claims, time), in
    memory, for one run (a dry-run import; a test-mode request holds none).
    """

    def __init__(self) -> None:
        self._holders: dict[tuple[ObjectId, str], dict[str, Any]] = {}
        #: (source, cap window) -> leads counted in it: stored ones (read once) and unwritten ones.
        self.cap_use: dict[tuple[ObjectId, str], int] = {}

    def count_caps(self, source: SourceConfig, now: datetime) -> None:
        """One more unwritten lead in each of the source's current cap windows."""
        for cap in source.caps:
            key = (source.id, cap.window_prefix(cap.window(now)[0]))
            self.cap_use[key] = self.cap_use.get(key, 0) + 1

    def holder(self, source: SourceConfig, claim: str) -> dict[str, Any] | None:
        """The unwritten lead of ``source`` holding ``claim``, or None."""
        return self._holders.get((source.id, claim))

    def add(self, source: SourceConfig, doc: dict[str, Any]) -> None:
        kept = {name: doc[name] for name in _LOOKUP_FIELDS if name in doc}  # not the projection: mongomock adds _id
        for claim in doc["claims"]:
            self._holders[(source.id, claim)] = kept


def _claim_map(claims: Sequence[str]) -> dict[str, str]:
    """rule -> claim for a lead's sorted ``claims`` (transaction first, as the server reports
    them), hold twins and cap slots (``~~``) left out."""
    return {claim_rule(claim): claim for claim in claims if not claim.startswith(HOLD_PREFIX)}


def _fits(hold: Mapping[str, Any], doc: Mapping[str, Any]) -> bool:
    """True if every value the hold holds is the lead's value for that field."""
    held = {claim for claim in hold.get("claims") or () if not claim.startswith(HOLD_MARK)}
    return held <= set(doc["claims"])


def _lead_expired(lead: Mapping[str, Any], now: datetime) -> bool:
    """A lead of a source with retention counts for nothing once ``expires_at`` <= now (stored
    precision), whether or not the TTL monitor (every 60 s) has removed it yet."""
    expires = lead.get(EXPIRY_FIELD)
    return isinstance(expires, datetime) and as_utc(expires) <= stored_time(now)


def _hold_live(hold: Mapping[str, Any], now: datetime) -> bool:
    """A hold is live while its expiry is after now, compared at the stored (millisecond) precision."""
    expires = hold.get("hold_expires_at")
    return isinstance(expires, datetime) and as_utc(expires) > stored_time(now)


def _judge(found: dict[str, Any], doc: dict[str, Any], rule: str, cutoff: datetime | None) -> StoreResult | None:
    """What ``found``, the lead holding ``doc``'s claim for ``rule``, makes of ``doc``:
    a replay or conflict (same transaction id), a duplicate (a claim inside the window),
    or None (a claim past the window: it no longer counts)."""
    if found.get("transaction_id") == doc["transaction_id"]:
        return LeadRepository._replay(found, doc)
    if cutoff is None or as_utc(found["created_at"]) >= cutoff:
        return StoreResult(LeadStatus.DUPLICATE, doc["transaction_id"], matched_on=(rule,))
    return None


def _violated(details: Mapping[str, Any]) -> str | None:
    """The claim a duplicate-key error names in its keyValue (a hash or a transaction id;
    never read from its message).  None when the server does not say."""
    pattern, value = details.get("keyPattern"), details.get("keyValue")
    if not isinstance(pattern, dict) or list(pattern) != ["source_id", "claims"] or not isinstance(value, dict):
        return None
    claim = value.get("claims")
    return claim if isinstance(claim, str) else None
