"""Suppression lists (contract section 10): named lists of email, mobile and custom-field
values a source refuses, stored only as hashes.

An entry is one document of the suppressions collection (``suppressions`` by default)::

    {_id: "dnc email:<sha256 hex>", list: "dnc", key: "email:<sha256 hex>", field: "email",
     created_at, updated_at, expires_at?}

``key`` is ``<field>:<sha256>`` of the value's canonical text (the form a pre-ping hashes:
docs/endpoint.md "Plain or hashed values"), or ``<field>:md5:<md5>`` for an entry imported
as MD5 from another platform.  The ``_id`` is ``<list> <key>`` (a list name has no space),
so the intake check of every list a source names is one read on the ``_id`` index:
``{_id: {$in: [each list x each key]}}`` -- the lead's values hashed both ways, so SHA-256
and MD5 entries match alike.  Adding is an upsert by ``_id`` (idempotent), removing a
delete by ``_id``, clearing a list a delete of its entries' ``_id`` range (never of its field
registry, below).  The TTL index on
``expires_at`` removes expired entries, and the read itself ignores entries whose time has
passed (the TTL monitor runs only once a minute).

Custom fields: a lead may carry up to ``max_extra_fields`` of them, and asking for each in each
list would let a sender make the read ask for thousands of ids (measured: 14 ms for 50
fields and 20 lists, against 1.9 ms without).  So each list has a *field registry*, the
document ``{_id: "<list> !fields", fields: [...]}`` (``!`` sorts before any field name), to
which ``add`` adds a custom field *before* writing its entries.  A process keeps the
registries it has read; the intake read asks for the lead's email and mobile keys, its
custom keys of the fields the kept registries name, and each list's registry itself.  When
a registry read names a field the process did not know, the keys of that field are read at
once (a second read, only then).  An entry acknowledged before a post's read began had its
field registered before it, so that read sees the field and the entry is found, by the read
or by the one that follows it.

Race-safety with adds: the check is one read, made after the field rules and before the
insert.  An add acknowledged before the read starts is visible to it (reads go to the
primary), so the post is suppressed; an add that completes later could only have stopped
the post had it come first.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pymongo import ASCENDING, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, PyMongoError

from .mongo import acknowledged, as_utc, stored_time
from .mongomock_support import is_mongomock
from .schemas import LEAD_FIELDS, ValidLead, dedupe_field_ok, dedupe_text, ping_values, schema_for
from .settings import Settings, utc_now

#: The TTL index that removes entries past their ``expires_at`` (sparse: permanent entries have
#: no key in it).  The only index the collection needs besides ``_id``, which holds one entry
#: per list and value and serves every read and write (so the collection shards on ``_id``).
SUPPRESSION_EXPIRY_INDEX = "pingtree_suppression_expiry"
SUPPRESSION_INDEXES: dict[str, tuple[list[tuple[str, int]], dict[str, Any]]] = {
    SUPPRESSION_EXPIRY_INDEX: ([("expires_at", ASCENDING)], {"expireAfterSeconds": 0, "sparse": True}),
}
#: A list's name: what ``create_source(suppression_lists=...)`` and the CLI accept.
LIST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: Most lists one source checks (the intake read asks for each key in each list).
MAX_SOURCE_LISTS = 20
#: The fields an entry may be for besides custom (extra) fields: what a lead is checked on.
STANDARD_FIELDS = ("email", "mobile")
_MD5 = ":md5:"
_HEX = {"sha256": re.compile(r"[0-9a-fA-F]{64}"), "md5": re.compile(r"[0-9a-fA-F]{32}")}
#: Entries written per bulk command (add, import).
BATCH_SIZE = 1000
#: The suffix of a list's field registry id (``"<list> !fields"``); ``!`` sorts before any field name.
FIELDS_ID = "!fields"
#: Most ``_id`` values one intake read asks for (an import batch checks up to 1,000 rows x
#: 4 keys x ``MAX_SOURCE_LISTS`` lists; a post at most a few hundred).
READ_IDS = 10_000

HashKind = Literal["plain", "sha256", "md5"]


class SuppressionIndexError(PyMongoError):
    """The suppression indexes are missing (``create_indexes=False``) or have another shape."""


def check_list_names(names: Iterable[str]) -> list[str]:
    """A source's ``suppression_lists``: valid names, each once, at most ``MAX_SOURCE_LISTS``.

    A name no entry has yet is allowed: a list exists once it has an entry, so a source can
    be provisioned before its lists are filled (and an emptied list stays named).
    """
    if isinstance(names, (str, bytes)):
        raise TypeError("suppression_lists is a list of list names, not one string "
                        f"(write suppression_lists=[{names!r}])")
    names = list(dict.fromkeys(names))
    bad = [name for name in names if not isinstance(name, str) or not LIST_NAME.fullmatch(name)]
    if bad:
        raise ValueError(f"a suppression list name is 1-64 of A-Z a-z 0-9 _ . - (starting with a letter or digit); "
                         f"got {', '.join(map(repr, bad))}")
    if len(names) > MAX_SOURCE_LISTS:
        raise ValueError(f"a source checks at most {MAX_SOURCE_LISTS} suppression lists; got {len(names)}")
    return names


def check_list_name(name: str) -> str:
    [checked] = check_list_names([name])
    return checked


# -- keys ------------------------------------------------------------------------------------


def entry_id(list_name: str, key: str) -> str:
    """An entry's ``_id``: its list and key, so one ``_id`` read checks every list."""
    return f"{list_name} {key}"


def key_field(key: str) -> str:
    """The field of a key (``customer_id`` of ``customer_id:<sha256>``)."""
    return key.split(":", 1)[0]


def sha256_key(field: str, sha256_hex: str) -> str:
    return f"{field}:{sha256_hex.lower()}"


def md5_key(field: str, md5_hex: str) -> str:
    return f"{field}{_MD5}{md5_hex.lower()}"


def value_keys(field: str, canonical: str) -> tuple[str, str]:
    """Both keys a canonical value matches: its SHA-256 entry and its MD5 entry."""
    data = canonical.encode("utf-8", "surrogatepass")
    return sha256_key(field, hashlib.sha256(data).hexdigest()), md5_key(field, hashlib.md5(data).hexdigest())


def lead_keys(lead: ValidLead) -> list[str]:
    """The keys a lead is checked on: its email, its mobile, and each custom (extra) field,
    as stored (so a lenient source's normalised mobile)."""
    keys: list[str] = []
    for field in STANDARD_FIELDS:
        value = lead.fields.get(field)
        if value is not None:
            keys.extend(value_keys(field, value))
    for field, value in lead.extra.items():
        if value is not None:
            keys.extend(value_keys(field, dedupe_text(value)))
    return keys


def ping_keys(plain: Mapping[str, str], hashed: Mapping[str, str]) -> list[str]:
    """The keys a pre-ping is checked on.  A hashed value is its SHA-256 already, so it is
    looked up directly; it cannot match an MD5 entry (documented)."""
    keys = [key for field, value in plain.items() for key in value_keys(field, value)]
    keys.extend(sha256_key(field, digest) for field, digest in hashed.items())
    return keys


_CANONICAL_SCHEMA = schema_for((), Settings(), lenient=True)


def canonical_value(field: str, value: Any) -> str:
    """``value`` of ``field`` as intake compares it, or ``ValueError`` (never naming the value).

    Read exactly as a pre-ping reads it, with a lenient source's normalisation (a list is
    not tied to a source: ``(555) 123-4567`` is the entry of ``5551234567``)."""
    read = ping_values({field: value}, _CANONICAL_SCHEMA, [field])
    if field not in read.plain:
        problems = " ".join(message for messages in read.errors.values() for message in messages)
        raise ValueError(f"not a valid {field} value: {problems or 'blank'}")
    return read.plain[field]


def check_entry_field(field: str) -> str:
    """An entry's field: ``email``, ``mobile`` or a custom field name (an extra field's)."""
    if field in STANDARD_FIELDS:
        return field
    if not isinstance(field, str) or field in LEAD_FIELDS or not dedupe_field_ok(field):
        raise ValueError(f"a suppression entry is for email, mobile or a custom (extra) field name; got {field!r}")
    return field


def entry_key(field: str, value: Any, kind: HashKind = "plain") -> list[str]:
    """The key(s) of one entry given as ``kind``: a plain value (both keys, so removing it also
    removes an MD5 entry of it), a SHA-256 or an MD5 hex digest."""
    field = check_entry_field(field)
    if kind == "plain":
        return list(value_keys(field, canonical_value(field, value)))
    pattern = _HEX.get(kind)
    if pattern is None:
        raise ValueError(f"hash is one of plain, sha256, md5; got {kind!r}")
    if not isinstance(value, str) or not pattern.fullmatch(value.strip()):
        raise ValueError(f"not a {kind} hex digest")
    return [sha256_key(field, value.strip()) if kind == "sha256" else md5_key(field, value.strip())]


def _given_keys(
    emails: Iterable[str], mobiles: Iterable[str], values: Mapping[str, Iterable[Any]],
    sha256: Mapping[str, Iterable[str]], md5: Mapping[str, Iterable[str]], *, plain_md5: bool,
) -> list[tuple[str, str]]:
    """(field, key) for every value given to ``suppress``/``unsuppress``."""
    groups: list[tuple[str, Iterable[Any], HashKind]] = [("email", _many(emails, "emails"), "plain"),
                                                          ("mobile", _many(mobiles, "mobiles"), "plain")]
    groups += [(field, _many(items, field), "plain") for field, items in values.items()]
    groups += [(field, _many(items, field), "sha256") for field, items in sha256.items()]
    groups += [(field, _many(items, field), "md5") for field, items in md5.items()]
    found: dict[str, str] = {}
    for field, items, kind in groups:
        for item in items:
            keys = entry_key(field, item, kind)
            for key in keys if plain_md5 else keys[:1]:
                found[key] = field
    return [(field, key) for key, field in found.items()]


def _many(items: Iterable[Any], what: str) -> Iterable[Any]:
    if isinstance(items, (str, bytes)):
        raise TypeError(f"{what} takes a list of values, not one string")
    return items


# -- the store -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SuppressionWrite:
    """What ``suppress`` / ``import_suppressions`` did: entries new to the list, entries already
    there (their expiry set again), and the 1-based rows an import could not read (never their values)."""

    added: int = 0
    updated: int = 0
    invalid_rows: tuple[int, ...] = ()

    @property
    def invalid(self) -> int:
        return len(self.invalid_rows)


class SuppressionStore:
    """The suppressions collection: the intake read, writes, counts and its indexes."""

    def __init__(self, database: Database[Any], collection_name: str = Settings.suppressions_collection) -> None:
        self.collection: Collection[Any] = acknowledged(database)[collection_name]
        self._ready = False
        self._lock = threading.Lock()
        #: The custom fields each list's registry named when this process last read it (never fewer).
        self._fields: dict[str, frozenset[str]] = {}

    def ensure_indexes(self) -> None:
        for name, (keys, options) in SUPPRESSION_INDEXES.items():
            self.collection.create_index(keys, name=name, **options)
        self.check_indexes()

    def check_indexes(self) -> None:
        """The expiry index is there (a ``create_indexes=False`` deployment must create it: without
        it expired entries are never removed, though they stop suppressing at their time)."""
        keys, options = SUPPRESSION_INDEXES[SUPPRESSION_EXPIRY_INDEX]
        found = self.collection.index_information().get(SUPPRESSION_EXPIRY_INDEX)
        if (found is None or [tuple(k) for k in found["key"]] != [tuple(k) for k in keys]
                or found.get("expireAfterSeconds") != options["expireAfterSeconds"]):
            raise SuppressionIndexError(f"index {SUPPRESSION_EXPIRY_INDEX!r} is missing or has another shape on "
                                        f"{self.collection.full_name}: create it with "
                                        "ensure_suppression_indexes(db) or 'flask pingtree-leads suppress add'")

    def ensure_ready(self, create: bool) -> None:
        """Once per process, before the first check: the indexes (created, or only checked)."""
        if self._ready:
            return
        with self._lock:
            if not self._ready:
                self.ensure_indexes() if create else self.check_indexes()
                self._ready = True

    def matching(self, lists: Sequence[str], keys: Sequence[str], now: datetime, *, limit: int = 1) -> set[str]:
        """The keys among ``keys`` that a live entry of one of ``lists`` holds (at most ``limit``
        of them; 0: all).  One read on the ``_id`` index for every list at once (for a batch
        too large for one command, one per ``READ_IDS`` ids): the email and mobile keys, the
        custom keys of fields the list's registry names, and the registries (module docstring);
        a second read only for a field a registry names that this process did not know.  The
        entries found are checked for expiry here.  Not ``list: {$in: ...}``, an ``$or`` per
        list, nor the expiry in the filter: SecantusDB's planner scans the collection for
        those, and a hint makes it read the whole index; an ``_id`` ``$in`` is a plain IXSCAN
        on every server (benchmarks: 0.43 ms for three lists, where a read per list took 1.3 ms)."""
        if not lists or not keys:
            return set()
        names = list(dict.fromkeys(lists))
        by_field: dict[str, list[str]] = {}
        for key in dict.fromkeys(keys):
            by_field.setdefault(key_field(key), []).append(key)
        known = {name: self._fields.get(name, frozenset()) for name in names}
        ids = [entry_id(name, FIELDS_ID) for name in names]
        ids += [entry_id(name, key) for name in names for field, field_keys in by_field.items()
                if field in STANDARD_FIELDS or field in known[name] for key in field_keys]
        cutoff = stored_time(now)
        found, registries = self._read(ids, cutoff, limit)
        unknown: list[str] = []
        for name, fields in registries.items():
            new = fields - known[name]
            if new:
                with self._lock:  # merged, so a thread learning other fields at once loses none
                    self._fields[name] = self._fields.get(name, frozenset()) | fields
                unknown += [entry_id(name, key) for field in sorted(new) for key in by_field.get(field, ())]
        if unknown and not (limit and len(found) >= limit):
            found |= self._read(unknown, cutoff, limit - len(found) if limit else 0)[0]
        return set(sorted(found)[:limit]) if limit else found

    def _read(self, ids: list[str], cutoff: datetime, limit: int) -> tuple[set[str], dict[str, frozenset[str]]]:
        """The live entries' keys and the registries among ``ids`` (by list), ``READ_IDS`` per command."""
        found: set[str] = set()
        registries: dict[str, frozenset[str]] = {}
        for start in range(0, len(ids), READ_IDS):
            for doc in self.collection.find({"_id": {"$in": ids[start:start + READ_IDS]}},
                                            {"key": 1, "expires_at": 1, "fields": 1}):
                if "key" in doc:
                    if not _expired(doc.get("expires_at"), cutoff):
                        found.add(doc["key"])
                elif isinstance(doc.get("fields"), list) and isinstance(doc["_id"], str):
                    registries[doc["_id"].split(" ", 1)[0]] = frozenset(f for f in doc["fields"] if isinstance(f, str))
            if limit and len(found) >= limit:
                break
        return found, registries

    def register_fields(self, list_name: str, fields: Iterable[str]) -> None:
        """Name custom ``fields`` in ``list_name``'s registry (before any entry of them is written)."""
        custom = sorted({field for field in fields if field not in STANDARD_FIELDS})
        if not custom:
            return
        for attempt in range(2):  # two upserts of one new _id at once: one of them may meet the other's insert
            try:
                self.collection.update_one({"_id": entry_id(list_name, FIELDS_ID)},
                                           {"$addToSet": {"fields": {"$each": custom}}}, upsert=True)
                return
            except DuplicateKeyError:
                if attempt:
                    raise

    def add(self, list_name: str, entries: Sequence[tuple[str, str]], expires_at: datetime | None,
            now: datetime) -> SuppressionWrite:
        """Upsert ``(field, key)`` entries into ``list_name``; an entry already there gets this expiry
        (None: never expires).  Acknowledged before it returns."""
        list_name = check_list_name(list_name)
        if expires_at is not None and expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware (UTC)")
        self.register_fields(list_name, {field for field, _ in entries})  # first: see the module docstring
        added = updated = 0
        for start in range(0, len(entries), BATCH_SIZE):
            writes = [({"_id": entry_id(list_name, key)}, _entry_update(list_name, key, field, expires_at, now))
                      for field, key in entries[start:start + BATCH_SIZE]]
            if writes and is_mongomock(self.collection):
                # mongomock's bulk_write does not take pymongo 4.9's UpdateOne: one update each (tests only).
                for query, update in writes:
                    one = self.collection.update_one(query, update, upsert=True)
                    added, updated = added + (one.upserted_id is not None), updated + one.matched_count
            elif writes:
                result = self.collection.bulk_write([UpdateOne(q, u, upsert=True) for q, u in writes], ordered=False)
                added += result.upserted_count
                updated += result.matched_count
        return SuppressionWrite(added, updated)

    def remove(self, list_name: str, keys: Sequence[str]) -> int:
        list_name = check_list_name(list_name)
        removed = 0
        for start in range(0, len(keys), BATCH_SIZE):
            batch = list(keys[start:start + BATCH_SIZE])
            ids = [entry_id(list_name, key) for key in batch]
            removed += int(self.collection.delete_many({"_id": {"$in": ids}}).deleted_count)
        return removed

    def clear(self, list_name: str) -> int:
        # Every id of the list starts with "<list> "; a space sorts before any character a name
        # may continue with, so the range holds this list's entries and no other list's.
        prefix = check_list_name(list_name) + " "
        in_list = {"_id": {"$gte": prefix, "$lt": prefix[:-1] + "!"}}
        # The registry stays: an add racing the clear may have registered its field and written its
        # entry after the entries' delete, and without the registry no endpoint new to the list would
        # ask for that entry.  A field no entry holds costs a few ids per read, nothing else.
        return int(self.collection.delete_many({**in_list, "key": {"$exists": True}}).deleted_count)

    def counts(self, now: datetime) -> dict[str, int]:
        """Live entries per list, by name (an admin read: it groups the whole collection)."""
        pipeline: list[dict[str, Any]] = [
            {"$match": {"key": {"$exists": True}, "expires_at": {"$not": {"$lte": stored_time(now)}}}},
            {"$group": {"_id": "$list", "entries": {"$sum": 1}}},
        ]
        return {doc["_id"]: int(doc["entries"]) for doc in sorted(self.collection.aggregate(pipeline),
                                                                    key=lambda d: str(d["_id"]))}


def _expired(expires_at: Any, cutoff: datetime) -> bool:
    """An entry stops suppressing at its expiry (pymongo returns naive UTC datetimes)."""
    return isinstance(expires_at, datetime) and as_utc(expires_at) <= cutoff


def _entry_update(list_name: str, key: str, field: str, expires_at: datetime | None,
                  now: datetime) -> dict[str, Any]:
    update: dict[str, Any] = {"$set": {"field": field, "updated_at": now},
                              "$setOnInsert": {"list": list_name, "key": key, "created_at": now}}
    if expires_at is None:
        update["$unset"] = {"expires_at": ""}
    else:
        update["$set"]["expires_at"] = as_utc(expires_at)
    return update


# -- the Python API ----------------------------------------------------------------------------


def _store(database: Database[Any], collection: str) -> SuppressionStore:
    store = SuppressionStore(database, collection)
    store.ensure_indexes()  # idempotent; the lists' writers make them, so the endpoint's first read finds them
    return store


def suppress(
    database: Database[Any],
    list_name: str,
    *,
    emails: Iterable[str] = (),
    mobiles: Iterable[str] = (),
    values: Mapping[str, Iterable[Any]] | None = None,
    sha256: Mapping[str, Iterable[str]] | None = None,
    md5: Mapping[str, Iterable[str]] | None = None,
    expires_at: datetime | None = None,
    suppressions_collection: str = Settings.suppressions_collection,
    now: datetime | None = None,
) -> SuppressionWrite:
    """Add values to the suppression list ``list_name`` (created by its first entry).

    ``emails``, ``mobiles``: plain values, made canonical as intake makes them (an email in
    any case or IDNA spelling; a mobile in any US spelling); ``values``: {custom field: plain
    values}; ``sha256`` / ``md5``: {field: hex digests of the canonical text}.  Only hashes
    are stored.  ``expires_at`` (aware datetime): the entries stop suppressing then and are
    removed by the TTL index; None keeps them.  Adding an entry again sets its expiry again.
    A value that cannot be read raises ``ValueError`` before anything is written.
    """
    entries = _given_keys(emails, mobiles, values or {}, sha256 or {}, md5 or {}, plain_md5=False)
    return _store(database, suppressions_collection).add(list_name, entries, expires_at, now or utc_now())


def unsuppress(
    database: Database[Any],
    list_name: str,
    *,
    emails: Iterable[str] = (),
    mobiles: Iterable[str] = (),
    values: Mapping[str, Iterable[Any]] | None = None,
    sha256: Mapping[str, Iterable[str]] | None = None,
    md5: Mapping[str, Iterable[str]] | None = None,
    suppressions_collection: str = Settings.suppressions_collection,
) -> int:
    """Remove values from ``list_name``; returns how many entries went.  A plain value removes
    its SHA-256 entry and its MD5 entry (an imported MD5 of it)."""
    entries = _given_keys(emails, mobiles, values or {}, sha256 or {}, md5 or {}, plain_md5=True)
    return SuppressionStore(database, suppressions_collection).remove(list_name, [key for _, key in entries])


def clear_suppression_list(
    database: Database[Any], list_name: str, *, suppressions_collection: str = Settings.suppressions_collection,
) -> int:
    """Remove every entry of ``list_name``; returns how many.  Sources naming it keep the name."""
    return SuppressionStore(database, suppressions_collection).clear(list_name)


def suppression_lists(
    database: Database[Any], *, suppressions_collection: str = Settings.suppressions_collection,
    now: datetime | None = None,
) -> dict[str, int]:
    """{list name: live entries}, sorted by name; a list with no live entry is not there."""
    return SuppressionStore(database, suppressions_collection).counts(now or utc_now())


def ensure_suppression_indexes(
    database: Database[Any], *, suppressions_collection: str = Settings.suppressions_collection,
) -> None:
    """Create the suppressions collection's indexes (idempotent), for ``create_indexes=False`` deployments."""
    SuppressionStore(database, suppressions_collection).ensure_indexes()


def _rows(source: str | Path | Iterable[str]) -> Iterator[str]:
    """The first cell of each row of a CSV file (or each given string); blank rows skipped by the caller.
    A row the csv module cannot read (a cell over its field limit, as an unterminated quote
    makes one) is a ``ValueError`` naming the row, never its text."""
    if isinstance(source, (str, Path)):
        with Path(source).open(encoding="utf-8-sig", newline="") as handle:
            number = 0
            reader = csv.reader(handle)
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    raise ValueError(f"{source}: row {number + 1} is not readable CSV ({exc}); "
                                     "the rows before it were added") from None
                number += 1
                yield row[0] if row else ""
    else:
        yield from source


def import_suppressions(
    database: Database[Any],
    list_name: str,
    source: str | Path | Iterable[str],
    *,
    hash: HashKind = "plain",  # noqa: A002 - the name users know the option by (CLI --hash)
    field: str = "email",
    expires_at: datetime | None = None,
    suppressions_collection: str = Settings.suppressions_collection,
    now: datetime | None = None,
) -> SuppressionWrite:
    """Add the values of a file (a CSV file's first column, or one value per line) or of an
    iterable of strings to ``list_name``, all for ``field``.

    ``hash``: ``plain`` (made canonical and hashed here), ``sha256`` or ``md5`` (hex digests of
    the canonical text, as other platforms export them).  A first row that is not a valid value,
    or is the field's name (any case: a custom field takes any text), is a header and skipped;
    any other unreadable row is counted in ``invalid_rows`` (its number,
    never its value) and the rest are added.  Blank rows are skipped.
    """
    field = check_entry_field(field)
    list_name = check_list_name(list_name)
    if hash not in ("plain", "sha256", "md5"):
        raise ValueError(f"hash is one of plain, sha256, md5; got {hash!r}")
    store = _store(database, suppressions_collection)
    moment = now or datetime.now(timezone.utc)
    invalid: list[int] = []
    added = updated = 0
    batch: dict[str, str] = {}
    for number, value in enumerate(_rows(source), start=1):
        if not isinstance(value, str) or not value.strip():
            continue
        if number == 1 and value.strip().lower() == field.lower():
            continue  # the header of a custom field's file is a valid value of it
        try:
            key = entry_key(field, value, hash)[0]
        except ValueError:
            if number > 1:
                invalid.append(number)
            continue
        batch[key] = field
        if len(batch) >= BATCH_SIZE:
            written = store.add(list_name, [(f, k) for k, f in batch.items()], expires_at, moment)
            added, updated, batch = added + written.added, updated + written.updated, {}
    if batch:
        written = store.add(list_name, [(f, k) for k, f in batch.items()], expires_at, moment)
        added, updated = added + written.added, updated + written.updated
    return SuppressionWrite(added, updated, tuple(invalid))
