"""MongoDB's unique-index rule for arrays, on the library's own mongomock collections.

The leads collection keeps every rule in one unique *multikey* index: MongoDB indexes
each element of ``claims`` and refuses a second document holding any of them, naming
the key that collided (``keyPattern``/``keyValue``).  mongomock 4.3 checks a unique
index by querying for the document's whole value, so two leads sharing one claim both
get in: on a plain ``mongomock.MongoClient()[name]`` database duplicates would be
stored, a reused transaction id would store a second lead, and holds would hold nothing.

``enforce_multikey_unique`` gives one mongomock collection *object* MongoDB's rule (an
instance attribute: mongomock's class, and so the host's own collections, are left as
they are).  The library calls it on every leads collection it writes to; for any other
database it does nothing.  mongomock is never imported unless the database is one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pymongo.errors import DuplicateKeyError


def is_mongomock(collection: Any) -> bool:
    """True for a mongomock collection (checked by its class's module: no import)."""
    return type(collection).__module__.split(".", 1)[0] == "mongomock"


def enforce_multikey_unique(collection: Any) -> Any:
    """``collection``, made to enforce unique indexes per array element if it is mongomock's."""
    if is_mongomock(collection):
        collection._ensure_uniques = _UniquePerElement(collection)  # mongomock calls it on insert and update
    return collection


class _UniquePerElement:
    """mongomock's ``Collection._ensure_uniques`` with MongoDB's per-element rule."""

    def __init__(self, collection: Any) -> None:
        self.collection = collection

    def __call__(self, new_data: dict[str, Any]) -> None:
        # As in mongomock's own check, new_data is already in the store.
        collection = self.collection
        for index in collection._store.indexes.values():
            if not index.get("unique"):
                continue
            keys = list(_index_keys(index, new_data))
            if index.get("sparse") and all(value is None for value in keys[0].values()):
                continue
            partial = index.get("partialFilterExpression")
            for key_value in keys:
                query: dict[str, Any] = {k: ({"$size": 0} if v == [] else v) for k, v in key_value.items()}
                if partial is not None:
                    query = {"$and": [partial, query]}
                if _more_than_one(collection._iter_documents(query)):
                    raise DuplicateKeyError(
                        f"E11000 duplicate key error collection: {collection.full_name} "
                        f"index: {index.get('name', '')}",
                        11000, {"keyPattern": dict(index["key"]), "keyValue": key_value},
                    )


def _index_keys(index: dict[str, Any], document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The index keys ``document`` makes: one per element of its array field, in index order."""
    from mongomock import helpers  # only ever reached with a mongomock collection

    values: dict[str, Any] = {}
    for key, _ in index["key"]:
        try:
            values[key] = helpers.get_value_by_dot(document, key)  # type: ignore[no-untyped-call]
        except KeyError:
            values[key] = None
    arrays = [key for key, value in values.items() if isinstance(value, list)]
    if not arrays:
        yield values
        return
    key = arrays[0]  # MongoDB allows at most one array field per compound index key
    # Each distinct element once (elements may be unhashable documents).
    elements = sorted({repr(e): e for e in values[key]}.values(), key=repr) if values[key] else [[]]
    for element in elements:
        yield {**values, key: element}


def _more_than_one(documents: Iterator[Any]) -> bool:
    return next(documents, None) is not None and next(documents, None) is not None
