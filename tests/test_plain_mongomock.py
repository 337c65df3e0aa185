"""A host's plain ``mongomock.MongoClient()[name]`` behaves as MongoDB (contract §9).

The suite patches nothing (tests/conftest.py hands every test a plain mongomock
database); these tests pin the defects a host app met: duplicates stored, a reused
transaction id storing a second lead, holds holding nothing, on a database made
exactly as a host's own tests make it, and the shipped pytest plugin.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import mongomock
import pytest
from flask import Flask

from pingtree_leads import PingtreeLeads, create_source
from pingtree_leads.mongomock_support import enforce_multikey_unique
from pingtree_leads.testing import bearer, create_url, fresh_database, ping_url

from .conftest import lead, write_csv

ORIGINAL_CHECK = mongomock.collection.Collection._ensure_uniques


def host_app(db: Any) -> Flask:
    app = Flask("plain_mongomock_host")
    PingtreeLeads().init_app(app, database=db)
    return app


def test_a_plain_mongomock_database_dedupes_refuses_409_and_holds() -> None:
    db = mongomock.MongoClient().db  # exactly what the host's own tests did
    source = create_source(db, "Host test")
    client = host_app(db).test_client()
    url, headers = create_url(source), bearer(source)
    first = lead(transaction_id="t-1")
    assert client.post(url, json=first, headers=headers).get_json()["data"]["lead_status"] == "accept"
    # Same email, new transaction id: a duplicate on MongoDB, stored by mongomock before.
    again = client.post(url, json=lead(email=first["email"], transaction_id="t-2"), headers=headers)
    assert again.status_code == 201 and again.get_json()["data"]["lead_status"] == "duplicate"
    assert again.get_json()["data"]["matched_on"] == ["email"]
    # The same transaction id with other fields: 409, never a second lead.
    assert client.post(url, json=lead(transaction_id="t-1"), headers=headers).status_code == 409
    # A held ping blocks a post of that consumer.
    held = client.post(ping_url(source), json={"email": "held@example.com", "hold_seconds": 60}, headers=headers)
    assert held.get_json()["data"]["ping_id"]
    blocked = client.post(url, json=lead(email="held@example.com"), headers=headers)
    assert blocked.get_json()["data"]["lead_status"] == "duplicate"
    assert db["leads"].count_documents({"kind": {"$ne": "hold"}}) == 1


def test_a_plain_mongomock_import_dedupes_within_the_file(tmp_path: Path) -> None:
    db = mongomock.MongoClient()["host_import"]
    source = create_source(db, "Import")
    csv_path = write_csv(tmp_path / "leads.csv", ["email", "mobile"],
                         [["a@example.com", "5550000001"], ["A@example.com", "5550000002"],
                          ["b@example.com", "5550000001"]])
    result = host_app(db).test_cli_runner().invoke(args=["pingtree-leads", "import", source.id, str(csv_path),
                                                         "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"]["duplicate"] == 2
    assert db["leads"].count_documents({}) == 1


def test_the_library_leaves_mongomock_itself_unpatched() -> None:
    """Only the library's own collection objects get MongoDB's rule: the host's stay mongomock's."""
    db = mongomock.MongoClient()["host_own"]
    source = create_source(db, "Own")
    host_app(db).test_client().post(create_url(source), json=lead(), headers=bearer(source))
    assert mongomock.collection.Collection._ensure_uniques is ORIGINAL_CHECK
    own = db["things"]
    own.create_index([("tags", 1)], unique=True)
    own.insert_one({"tags": ["a", "b"]})
    own.insert_one({"tags": ["a", "c"]})  # mongomock's own (whole-array) rule, as the host had it
    assert own.count_documents({}) == 2


def test_the_per_element_rule_names_the_key_as_a_server_does() -> None:
    things = enforce_multikey_unique(mongomock.MongoClient()["rule"]["things"])
    things.create_index([("owner", 1), ("tags", 1)], unique=True, name="owner_tags")
    things.insert_one({"owner": 1, "tags": ["a", "b"]})
    things.insert_one({"owner": 2, "tags": ["a"]})  # another owner: no clash
    with pytest.raises(mongomock.DuplicateKeyError) as caught:
        things.insert_one({"owner": 1, "tags": ["c", "b"]})
    assert caught.value.details == {"keyPattern": {"owner": 1, "tags": 1}, "keyValue": {"owner": 1, "tags": "b"}}
    assert things.count_documents({}) == 2  # rolled back
    with pytest.raises(mongomock.DuplicateKeyError):
        things.update_one({"owner": 2}, {"$set": {"owner": 1}})
    assert things.count_documents({"owner": 1}) == 1
    assert enforce_multikey_unique(things) is things  # idempotent; anything else passes through
    plain: dict[str, Any] = {}
    assert enforce_multikey_unique(plain) is plain


def test_fresh_database_on_mongomock_is_new_each_time() -> None:
    first, second = (next(fresh_database()) for _ in range(2))
    assert first.name != second.name and isinstance(first, mongomock.Database)


HOST_CONFTEST = """
import pytest
from flask import Flask
from pingtree_leads import PingtreeLeads

pytest_plugins = ["pingtree_leads.testing"]


@pytest.fixture
def app(pingtree_leads_database):
    app = Flask("host")
    PingtreeLeads().init_app(app, database=pingtree_leads_database)
    return app
"""

HOST_TEST = """
from pingtree_leads.testing import bearer, create_url


def test_one_consumer_is_one_lead(app, pingtree_leads_source, pingtree_leads_database):
    source = pingtree_leads_source(required_fields=["email"])
    client = app.test_client()
    answers = [client.post(create_url(source), json={"email": email, "transaction_id": tid},
                           headers=bearer(source)).get_json()["data"]["lead_status"]
               for email, tid in [("a@example.com", "t1"), ("A@EXAMPLE.com", "t2")]]
    assert answers == ["accept", "duplicate"]
    assert client.post(create_url(source), json={"email": "b@example.com", "transaction_id": "t1"},
                       headers=bearer(source)).status_code == 409
    assert pingtree_leads_database["leads"].count_documents({}) == 1
"""


def test_the_pytest_plugin_works_in_a_host_project(tmp_path: Path) -> None:
    """A host project opts in with one line in its conftest and copies nothing."""
    (tmp_path / "conftest.py").write_text(textwrap.dedent(HOST_CONFTEST))
    (tmp_path / "test_host.py").write_text(textwrap.dedent(HOST_TEST))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
