"""Test helpers for host apps: a pytest plugin with a database and a source factory.

Opt in from your ``conftest.py``::

    pytest_plugins = ["pingtree_leads.testing"]

    @pytest.fixture
    def app(pingtree_leads_database):
        return create_app(database=pingtree_leads_database)   # your factory

    def test_duplicate(app, pingtree_leads_source):
        source = pingtree_leads_source(required_fields=["email"])
        client = app.test_client()
        first = client.post(create_url(source), json={"email": "a@example.com"}, headers=bearer(source))
        ...

``pingtree_leads_database`` is a fresh plain ``mongomock`` database (needs the
``mongomock`` package), or, when ``PINGTREE_TEST_MONGODB_URI`` is set, a fresh
database on that server, dropped afterwards.  Nothing needs patching: the library
gives its own mongomock collections MongoDB's unique-index rule (dedupe, replay,
``409``, holds and import behave as on a server; see docs/host-quickstart.md).
pytest and mongomock are needed only where this module is used, never at run time.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pymongo.database import Database

from .provisioning import create_source
from .sources import CreatedSource

#: A real server for the fixtures instead of mongomock (a fresh database per test, dropped after).
#: Not ``PINGTREE_LEADS_...``: that prefix is the library's config namespace, and a host copying
#: its environment into ``app.config`` would meet an unknown key.
URI_VARIABLE = "PINGTREE_TEST_MONGODB_URI"

SourceFactory = Callable[..., CreatedSource]


def bearer(source: CreatedSource) -> dict[str, str]:
    """The ``Authorization`` header for posts to ``source``."""
    return {"Authorization": f"Bearer {source.api_key}"}


def create_url(source: CreatedSource, url_prefix: str = "") -> str:
    """The create-lead URL of ``source`` (give the blueprint's ``url_prefix`` if it has one)."""
    return f"{url_prefix}/api/lead/create/{source.id}"


def ping_url(source: CreatedSource, url_prefix: str = "") -> str:
    """The pre-ping URL of ``source``."""
    return f"{url_prefix}/api/lead/ping/{source.id}"


def fresh_database(uri: str | None = None) -> Iterator[Database[Any]]:
    """A generator of one fresh database: mongomock's, or a new one on ``uri`` (dropped after)."""
    name = f"pingtree_leads_test_{uuid.uuid4().hex[:12]}"
    if not uri:
        import mongomock  # a test dependency of the host, never of the library

        yield mongomock.MongoClient()[name]
        return
    from pymongo import MongoClient

    client: MongoClient[Any] = MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        yield client[name]
        client.drop_database(name)
    finally:
        client.close()


@pytest.fixture
def pingtree_leads_database() -> Iterator[Database[Any]]:
    """A fresh, empty database for one test (see the module's docstring)."""
    yield from fresh_database(os.environ.get(URI_VARIABLE))


@pytest.fixture
def pingtree_leads_source(pingtree_leads_database: Database[Any]) -> SourceFactory:
    """``make(name="Test source", **create_source_options)``: a new database source in
    ``pingtree_leads_database``; its ``api_key`` is readable (``bearer(source)``)."""

    def make(name: str = "Test source", **options: Any) -> CreatedSource:
        return create_source(pingtree_leads_database, name, **options)

    return make
