"""Moving a leads collection from the 0.1 index layout to the shard-ready claims layout.

0.1 kept one sparse unique index per dedupe field (``dedupe.email``, ``dedupe.mobile``)
beside ``(source_id, transaction_id)``; a sparse index and an index without the shard
key in front cannot live on a sharded collection.  The claims layout keeps every rule in
one ``(source_id, claims)`` index (repository.py).  Each lead's claims are built from the
values it stores, for the fields it held a 0.1 claim for (a claim released after its
window stays released).

Run it with the writers stopped (``flask pingtree-leads migrate-storage``): while it
runs, neither layout's rules hold for every lead.  It is idempotent: a second run finds
nothing to do.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pymongo.database import Database

from .mongo import leads_collection as leads_of
from .repository import OLD_INDEXES, LeadIndexError, LeadRepository, claims_array, dedupe_claim, transaction_claim


@dataclasses.dataclass(frozen=True)
class MigrationReport:
    leads_rewritten: int
    indexes_dropped: tuple[str, ...]


def migrate_storage(database: Database[Any], leads_collection: str = "leads") -> MigrationReport:
    """Give every lead its ``claims``, drop the 0.1 indexes, create the claims index."""
    leads = leads_of(database, leads_collection)
    rewritten = 0
    # One update per lead: simple and resumable (a lead with claims is done).  mongomock cannot
    # run pymongo 4.20's bulk UpdateOne, and the suite migrates on mongomock too.
    for doc in leads.find({"claims": {"$exists": False}}):
        if not isinstance(doc.get("transaction_id"), str):
            raise LeadIndexError(f"lead {doc['_id']} in {leads.full_name} has no transaction_id: it was not stored "
                                 "by pingtree_leads; give it one (or remove it) and run the migration again")
        # 0.1 hashed the value itself; claims hash its SHA-256 (so pings can send hashes): built
        # again from the stored value of each field the lead held a claim for.
        held = [field for field in doc.get("dedupe") or {} if isinstance(doc.get(field), str)]
        claims = claims_array({"transaction_id": transaction_claim(doc["transaction_id"]),
                               **{field: dedupe_claim(doc["source_id"], field, doc[field]) for field in held}})
        result = leads.update_one({"_id": doc["_id"], "claims": {"$exists": False}},
                                  {"$set": {"claims": claims}, "$unset": {"dedupe": ""}})
        rewritten += result.modified_count
    dropped = tuple(name for name, spec in leads.index_information().items()
                    if name in OLD_INDEXES or any(key.startswith("dedupe.") for key, _ in spec["key"]))
    for name in dropped:
        leads.drop_index(name)
    LeadRepository(database, leads_collection).ensure_indexes()
    return MigrationReport(rewritten, dropped)
