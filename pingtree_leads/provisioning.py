"""Provisioning database sources, as the Pingtree dashboard does: create, rotate a key,
switch on or off.  Each change made here reaches every source cache of this process at
once (``source_cache.CACHES``); other processes see it as docs/configuration.md says."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo.database import Database

from .cap_slots import compact_window
from .caps import Cap, check_caps
from .consent import check_require_any_of
from .erasure import pending_blocks, write_pending_blocks
from .keys import hash_api_key, new_api_key
from .mongo import acknowledged, as_utc, parse_object_id
from .mongo import leads_collection as leads_collection_of
from .repository import CLAIMS_INDEX
from .schemas import LEAD_FIELDS, LEAD_NAMES, MAX_DEDUPE_FIELDS, REQUIRABLE_FIELDS, dedupe_field_ok
from .settings import Settings, utc_now
from .source_cache import CACHES
from .sources import CreatedSource
from .suppression import check_list_names

#: A rotation reads the keys and writes them back only if unchanged; it tries this often.
MAX_ROTATION_ATTEMPTS = 10


def field_list(kind: str, names: Iterable[str]) -> list[str]:
    """``names`` as a list; one string (or bytes) is a ``TypeError``, never the list of its letters."""
    if isinstance(names, (str, bytes, bytearray, memoryview)):
        one = repr(names) if isinstance(names, str) else "'<field>'"
        raise TypeError(f"{kind} is a list of field names, not one {type(names).__name__} "
                        f"(write {kind}=[{one}] for one field, [] for none)")
    try:
        return list(names)
    except TypeError:
        raise TypeError(f"{kind} is a list of field names, not {type(names).__name__}") from None


def standard_spelling(name: Any) -> Any:
    """A standard field's name in another case (``Email``) as the field (``email``): the endpoint
    reads ``Email`` as ``email``, so a rule naming ``Email`` could never match anything else."""
    if isinstance(name, str) and name.isascii():
        own = LEAD_NAMES.folded.get(name.lower())
        if own in LEAD_FIELDS:
            return own
    return name


def _check_fields(kind: str, names: Iterable[str], allowed: Sequence[str]) -> list[str]:
    names = [standard_spelling(name) for name in field_list(kind, names)]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise ValueError(f"{kind} may only name {', '.join(allowed)}; got {', '.join(map(str, unknown))}")
    return list(dict.fromkeys(names))


def check_dedupe_fields(names: Iterable[str]) -> list[str]:
    """A source's dedupe fields: standard fields or extra field names, at most ``MAX_DEDUPE_FIELDS``."""
    names = list(dict.fromkeys(standard_spelling(name) for name in field_list("dedupe_fields", names)))
    bad = [n for n in names if not isinstance(n, str) or not (n in LEAD_FIELDS or dedupe_field_ok(n))]
    if bad:
        raise ValueError(f"dedupe_fields may name standard fields ({', '.join(LEAD_FIELDS)}) or extra field names "
                         f"(^[A-Za-z][A-Za-z0-9_-]{{0,63}}$, not an alias or a reserved name); got "
                         f"{', '.join(map(repr, bad))}")
    if len(names) > MAX_DEDUPE_FIELDS:
        raise ValueError(f"a source deduplicates on at most {MAX_DEDUPE_FIELDS} fields; got {len(names)}")
    return names


def check_retention_days(days: Any) -> None:
    """A retention is a positive, finite number of days (a bool is no number here), or None."""
    if days is None:
        return
    if isinstance(days, bool) or not isinstance(days, (int, float)) or not math.isfinite(days) or days <= 0:
        raise ValueError("retention_days must be a positive number of days, or None to keep leads")


#: The longest a cap's window lasts, days (a month has at most 31 days; a DST day 25 hours).
LONGEST_WINDOW_DAYS = {"hour": 2 / 24, "day": 25 / 24, "week": 7 + 1 / 24, "month": 31 + 1 / 24}


def check_retention_outlives_caps(retention_days: float | None, caps: Iterable[Cap]) -> None:
    """A lead holds its cap slots until MongoDB removes it: a lead removed before its window
    ended would free a slot, and the window would store more than ``max``.  So a source keeps
    its leads at least as long as its longest cap window lasts."""
    if retention_days is None:
        return
    for cap in caps:
        if retention_days < LONGEST_WINDOW_DAYS[cap.per]:
            raise ValueError(f"retention_days ({retention_days:g}) is shorter than the source's {cap.per} cap "
                             f"window ({LONGEST_WINDOW_DAYS[cap.per]:g} days at most): a lead removed before its "
                             "window ended would free its slot, and the window would take more than max")


def create_source(
    database: Database[Any],
    name: str,
    *,
    required_fields: Iterable[str] = (),
    dedupe_fields: Iterable[str] = ("email", "mobile"),
    dedupe_window_days: float | None = None,
    is_active: bool = True,
    lenient: bool = False,
    sources_collection: str = Settings.sources_collection,
    clock: Callable[[], datetime] = utc_now,
    suppression_lists: Iterable[str] = (),
    retention_days: float | None = None,
    require_any_of: Iterable[str] = (),
    require_trusted_form_host: bool = False,
    caps: Iterable[Mapping[str, Any] | Cap] | None = None,
    leads_collection: str = Settings.leads_collection,
    erasures_collection: str = Settings.erasures_collection,
) -> CreatedSource:
    """Provision a database source, as the Pingtree dashboard does.

    ``dedupe_fields`` may name standard fields or extra field names (custom dedupe, at
    most ``MAX_DEDUPE_FIELDS``); ``lenient`` makes the source normalise phone numbers,
    ZIP+4, state names and US dates before its rules run (lenient.py).  ``caps``:
    ``[{"max": 500, "per": "day", "tz": "America/Chicago"}, ...]`` (caps.py; ``tz`` is
    ``"UTC"`` when omitted): at most ``max`` new leads per window, every cap applies.
    Returns its id and its API key; only the key's hash is stored.

    ``suppression_lists`` names the suppression lists its leads are checked against
    (suppression.py); a name with no entry yet is allowed (a list exists once it has one).
    ``retention_days`` (None = keep): each lead gets ``expires_at`` = ``created_at`` + that many
    days, and MongoDB removes it then (the TTL index ``pingtree_lead_expiry``).

    Consent evidence (consent.py): ``require_any_of`` names kinds of evidence of which a lead
    must carry one (``"trusted_form"`` for ``xxTrustedFormCertUrl``, or a consent field name);
    ``require_trusted_form_host`` makes ``xxTrustedFormCertUrl`` valid only on
    ``cert.trustedform.com``.

    A source deduplicating on email or mobile gets the blocks of every consumer erased before
    (erasure.py, ``block_erased_values``; ``leads_collection``/``erasures_collection`` name
    where): one read of the erasure records per such field, one insert per 1,000 erasures,
    and one update removing the marker that made posts read the records meanwhile.
    """
    clean_name = _check_name(name)
    _check_window(dedupe_window_days)
    lists = check_list_names(suppression_lists)
    check_retention_days(retention_days)
    checked_caps = check_caps(caps)
    check_retention_outlives_caps(retention_days, checked_caps)
    key = new_api_key()
    now = clock()
    source_id = ObjectId()
    required = _check_fields("required_fields", required_fields, REQUIRABLE_FIELDS)
    dedupe = check_dedupe_fields(dedupe_fields)  # in this order, as before: the first problem is raised
    doc: dict[str, Any] = {
        "_id": source_id,
        "name": clean_name,
        "required_fields": required,
        "dedupe_fields": dedupe,
        "lenient": bool(lenient),
        "require_any_of": check_require_any_of(require_any_of),
        "require_trusted_form_host": bool(require_trusted_form_host),
        "dedupe_window_days": dedupe_window_days,
        "is_active": bool(is_active),
        "api_keys": [{"hash": hash_api_key(key), "expires_at": None}],
        "created_at": now,
        "updated_at": now,
        **({"suppression_lists": lists} if lists else {}),  # a source without lists: its document unchanged
    }
    if retention_days is not None:  # absent, not null: a source without retention stays as it was
        doc["retention_days"] = retention_days
    if checked_caps:  # a source without caps stores no field: nothing new for it anywhere
        doc["caps"] = [cap.as_document() for cap in checked_caps]
    marker = pending_blocks(dedupe)
    if marker:  # removed once the blocks are written: until then posts read the erasure records
        doc["erasure_blocks_pending"] = marker
    acknowledged(database)[sources_collection].insert_one(doc)
    if marker:  # -- erasure (contract section 11): blocks for consumers erased before; after the insert --
        write_pending_blocks(database, source_id, dedupe, marker, sources_collection=sources_collection,
                             leads_collection=leads_collection, erasures_collection=erasures_collection, clock=clock)
        CACHES.forget_everywhere(source_id)
    return CreatedSource(id=str(source_id), api_key=key, name=clean_name)


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a source needs a non-empty name")
    return name.strip()


def _check_window(days: Any) -> None:
    if days is not None and (isinstance(days, bool) or not isinstance(days, (int, float)) or not days > 0):
        raise ValueError("dedupe_window_days must be positive, or None for forever")


class _Unchanged:
    """The default of ``update_source``'s keywords: leave that setting as it is."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Any = _Unchanged()


def update_source(
    database: Database[Any],
    source_id: str | ObjectId,
    *,
    name: str = UNCHANGED,
    required_fields: Iterable[str] = UNCHANGED,
    dedupe_fields: Iterable[str] = UNCHANGED,
    dedupe_window_days: float | None = UNCHANGED,
    lenient: bool = UNCHANGED,
    caps: Iterable[Mapping[str, Any] | Cap] | None = UNCHANGED,
    sources_collection: str = Settings.sources_collection,
    clock: Callable[[], datetime] = utc_now,
    leads_collection: str = Settings.leads_collection,
    erasures_collection: str = Settings.erasures_collection,
) -> None:
    """Change a source's settings: only the keywords given change, checked as ``create_source``
    checks them (``ValueError``/``TypeError``; nothing changes then); ``LookupError`` if there
    is no such source.  ``caps=None`` or ``[]`` removes every cap.

    A new ``max`` applies to the current window at once: every lead stored in the window counts,
    and a lowered ``max`` moves the window's slots above it down (cap_slots.compact_window), so
    the window takes no more than the new ``max`` leads, under any concurrency.  Leads already stored
    keep their claims: changing ``dedupe_fields`` affects leads stored from now on.  Every
    source cache of this process forgets the source at once; other processes see the change
    within their source cache time (docs/configuration.md).

    Given ``dedupe_fields``, the source gets (after the change is written) the blocks of every
    erased consumer for the erasable fields it names, as ``create_source`` does.  The change
    is written with a marker (``erasure_blocks_pending``) removed once the blocks stand; while
    it is there posts check those values against the erasure records, so an interrupted call
    lets no erased consumer back.  Calling it again, or ``complete_pending_blocks``
    (``flask pingtree-leads ensure-indexes``), finishes the blocks.
    """
    changes: dict[str, Any] = {}
    if name is not UNCHANGED:
        changes["name"] = _check_name(name)
    if required_fields is not UNCHANGED:
        changes["required_fields"] = _check_fields("required_fields", required_fields, REQUIRABLE_FIELDS)
    if dedupe_fields is not UNCHANGED:
        changes["dedupe_fields"] = check_dedupe_fields(dedupe_fields)
    if dedupe_window_days is not UNCHANGED:
        _check_window(dedupe_window_days)
        changes["dedupe_window_days"] = dedupe_window_days
    if lenient is not UNCHANGED:
        changes["lenient"] = bool(lenient)
    update: dict[str, Any] = {}
    if caps is not UNCHANGED:
        checked = check_caps(caps)
        if checked:
            stored = acknowledged(database)[sources_collection].find_one(_source_filter(source_id),
                                                                         {"retention_days": 1})
            check_retention_outlives_caps((stored or {}).get("retention_days"), checked)
            changes["caps"] = [cap.as_document() for cap in checked]
        else:
            update["$unset"] = {"caps": ""}
    query = _source_filter(source_id)
    update["$set"] = {**changes, "updated_at": clock()}
    marker = pending_blocks(changes["dedupe_fields"]) if "dedupe_fields" in changes else None
    if marker:  # in the same write as the new fields: posts read the erasure records until the blocks stand
        update["$set"]["erasure_blocks_pending"] = marker
    elif "dedupe_fields" in changes:  # no erasable field: nothing to block, every value is read
        update.setdefault("$unset", {})["erasure_blocks_pending"] = ""
    result = acknowledged(database)[sources_collection].update_one(query, update)
    if not result.matched_count:
        raise LookupError("no such database source")
    CACHES.forget_everywhere(query["_id"])
    if caps is not UNCHANGED and checked:
        leads = leads_collection_of(database, leads_collection)
        if CLAIMS_INDEX in leads.index_information():  # without it no lead was ever stored
            for cap in checked:
                compact_window(leads, CLAIMS_INDEX, query["_id"], cap, clock())
    if marker:  # -- erasure (contract section 11): after the change is written --
        write_pending_blocks(database, query["_id"], changes["dedupe_fields"], marker,
                             sources_collection=sources_collection, leads_collection=leads_collection,
                             erasures_collection=erasures_collection, clock=clock)
        CACHES.forget_everywhere(query["_id"])


def _source_filter(source_id: str | ObjectId) -> dict[str, Any]:
    oid = parse_object_id(source_id)
    if oid is None:
        raise LookupError("a source id is a 24-hex ObjectId")
    return {"_id": oid}


def rotate_api_key(
    database: Database[Any],
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
    for _ in range(MAX_ROTATION_ATTEMPTS):  # optimistic: retry if a concurrent rotation changed the keys
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
            CACHES.forget_everywhere(query["_id"])
            return key
    raise RuntimeError("the source's keys kept changing; try again")


def set_source_active(
    database: Database[Any],
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
    CACHES.forget_everywhere(query["_id"])


def set_suppression_lists(
    database: Database[Any],
    source_id: str | ObjectId,
    suppression_lists: Iterable[str],
    *,
    sources_collection: str = Settings.sources_collection,
    clock: Callable[[], datetime] = utc_now,
) -> None:
    """Name the suppression lists a source checks (``[]``: none, so its leads cost no read)."""
    lists = check_list_names(suppression_lists)
    query = _source_filter(source_id)
    change: dict[str, Any] = ({"$set": {"suppression_lists": lists, "updated_at": clock()}} if lists else
                              {"$unset": {"suppression_lists": ""}, "$set": {"updated_at": clock()}})
    result = acknowledged(database)[sources_collection].update_one(query, change)
    if not result.matched_count:
        raise LookupError("no such database source")
    CACHES.forget_everywhere(query["_id"])
