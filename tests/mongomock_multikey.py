"""Teach mongomock MongoDB's rule for unique indexes over arrays (multikey indexes).

mongomock 4.3 checks a unique index by querying for the document's whole value, so
two leads sharing one element of their ``claims`` arrays both get in: it does not
enforce uniqueness per array element, and its DuplicateKeyError carries no
``keyPattern``/``keyValue``.  MongoDB (and SecantusDB) index every element and refuse
a second document holding any of them, naming the index key that collided.  This
patch makes mongomock do the same, so the fast unit tests exercise the same rules
as the wire-protocol servers.  It is applied once by ``tests/conftest.py``.

Host apps that test their own code on mongomock can copy this file: without it,
mongomock accepts duplicates that MongoDB refuses (docs/testing.md).
"""

from __future__ import annotations

from typing import Any

from mongomock import helpers
from mongomock.collection import Collection
from pymongo.errors import DuplicateKeyError

_original = Collection._ensure_uniques


def _index_keys(index: dict[str, Any], document: dict[str, Any]) -> list[dict[str, Any]]:
    """The index keys ``document`` makes: one per element of its array field, in index order."""
    values: dict[str, Any] = {}
    for key, _ in index["key"]:
        try:
            values[key] = helpers.get_value_by_dot(document, key)
        except KeyError:
            values[key] = None
    arrays = [key for key, value in values.items() if isinstance(value, list)]
    if not arrays:
        return [values]
    key = arrays[0]  # MongoDB allows at most one array field per compound index key
    elements = sorted(set(values[key]), key=repr) if values[key] else [[]]
    return [{**values, key: element} for element in elements]


def _ensure_uniques(self: Collection, new_data: dict[str, Any]) -> None:
    # new_data is already in the store, as in mongomock's own check.
    for index in self._store.indexes.values():
        if not index.get("unique"):
            continue
        keys = _index_keys(index, new_data)
        if index.get("sparse") and all(value is None for value in keys[0].values()):
            continue
        partial = index.get("partialFilterExpression")
        for key_value in keys:
            query = {k: ({"$size": 0} if v == [] else v) for k, v in key_value.items()}
            if partial is not None:
                query = {"$and": [partial, query]}
            if len(list(self._iter_documents(query))) > 1:
                pattern = dict(index["key"])
                raise DuplicateKeyError(
                    f"E11000 duplicate key error collection: {self.full_name} index: {index.get('name', '')}",
                    11000, {"keyPattern": pattern, "keyValue": key_value},
                )


def install() -> None:
    """Replace mongomock's unique-index check (idempotent)."""
    Collection._ensure_uniques = _ensure_uniques  # type: ignore[method-assign]
