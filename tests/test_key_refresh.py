"""A key issued by another process works at once; revocation reaches us within the cache time.

"Another process" is simulated in-process by switching off ``CACHES.forget_everywhere``
(the only way a rotation reaches this process's caches), so ``rotate_api_key`` and
``set_source_active`` write to MongoDB exactly as a CLI or admin script elsewhere would.
``test_two_web_processes_accept_a_new_key_at_once`` does it for real: two web
processes, the CLI in a third.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mongomock
import pymongo
import pytest
from bson import ObjectId
from pymongo import monitoring

from pingtree_leads import create_blueprint, create_source, rotate_api_key, set_source_active
from pingtree_leads import keys as keys_module
from pingtree_leads import source_cache as sources_module
from pingtree_leads.source_cache import CACHES, SourceCache

from .conftest import Poster, assert_envelope, lead

SOURCES = "database_sources"
REFRESH = 0.5  # KEY_REFRESH_SECONDS in these tests


@pytest.fixture(autouse=True)
def short_refresh_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources_module, "KEY_REFRESH_SECONDS", REFRESH)


@pytest.fixture
def elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rotations and (de)activations from now on behave as if made by another process."""
    monkeypatch.setattr(CACHES, "forget_everywhere", lambda source_id: None)


class SourceReads(monitoring.CommandListener):
    """Counts ``find`` commands on the sources collection (a real server)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and event.command.get("find") == SOURCES:
            with self._lock:
                self.count += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
def counted(
    database: Any, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Any, SourceReads]]:
    """The test's database, seen through a handle that counts reads of the sources collection."""
    reads = SourceReads()
    if isinstance(database, mongomock.Database):
        real_find = mongomock.collection.Collection.find

        def find(self: Any, *args: Any, **kwargs: Any) -> Any:
            if self.name == SOURCES:
                reads.count += 1
            return real_find(self, *args, **kwargs)

        monkeypatch.setattr(mongomock.collection.Collection, "find", find)
        yield database, reads
        return
    backend = request.node.callspec.params["database"]
    uri = request.getfixturevalue("secantus_uri") if backend == "secantus" else os.environ["MONGODB_URI"]
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000, event_listeners=[reads])
    try:
        yield client[database.name], reads
    finally:
        client.close()


def poster(database: Any, src: Any, **options: Any) -> Poster:
    from flask import Flask

    app = Flask("key_refresh_host")
    app.register_blueprint(create_blueprint(database, **options))
    return Poster(app.test_client(), database, src)


def with_key(key: str) -> dict[str, Any]:
    return {"headers": {"Authorization": f"Bearer {key}"}}


# --- a new key -------------------------------------------------------------------


def test_a_key_issued_by_another_process_is_accepted_at_once(database: Any, elsewhere: None) -> None:
    src = create_source(database, "Switching vendor")
    p = poster(database, src, source_cache_seconds=3600)
    assert_envelope(p.post(lead()), 201)  # cached, with the old key only
    new_key = rotate_api_key(database, src.id, grace_seconds=3600)
    for _ in range(5):
        assert_envelope(p.post(lead(), **with_key(new_key)), 201)
        assert_envelope(p.post(lead()), 201)  # the old key, in its grace period


def test_a_new_key_written_straight_into_the_document_is_accepted_at_once(database: Any) -> None:
    src = create_source(database, "Direct write")
    p = poster(database, src, source_cache_seconds=3600)
    assert_envelope(p.post(lead()), 201)
    new_key = keys_module.new_api_key()
    database[SOURCES].update_one(
        {"_id": ObjectId(src.id)},
        {"$push": {"api_keys": {"hash": keys_module.hash_api_key(new_key), "expires_at": None}}},
    )
    assert_envelope(p.post(lead(), **with_key(new_key)), 201)


def test_the_re_read_also_brings_in_a_revocation(database: Any, elsewhere: None) -> None:
    src = create_source(database, "Leaked")
    p = poster(database, src, source_cache_seconds=3600)
    assert_envelope(p.post(lead()), 201)
    new_key = rotate_api_key(database, src.id)  # grace 0: the old key is dead
    assert_envelope(p.post(lead(), **with_key(new_key)), 201)  # re-read ...
    assert_envelope(p.post(lead()), 401)  # ... and the old key is now refused here too


def test_a_new_key_of_a_source_deactivated_elsewhere_is_403(database: Any, elsewhere: None) -> None:
    src = create_source(database, "Switched off")
    p = poster(database, src, source_cache_seconds=3600)
    assert_envelope(p.post(lead()), 201)
    new_key = rotate_api_key(database, src.id, grace_seconds=3600)
    set_source_active(database, src.id, False)
    assert_envelope(p.post(lead(), **with_key(new_key)), 403)


def test_a_source_deleted_elsewhere_is_dropped_on_a_wrong_key(database: Any) -> None:
    src = create_source(database, "Gone")
    p = poster(database, src, source_cache_seconds=3600)
    assert_envelope(p.post(lead()), 201)
    database[SOURCES].delete_one({"_id": ObjectId(src.id)})
    assert_envelope(p.post(lead(), **with_key("ptl_wrong")), 401)
    assert_envelope(p.post(lead()), 401)  # no longer served from the cache


# --- the re-read is bounded ---------------------------------------------------------


def test_wrong_keys_re_read_a_source_at_most_once_per_interval(
    counted: tuple[Any, SourceReads], monkeypatch: pytest.MonkeyPatch
) -> None:
    database, reads = counted
    monkeypatch.setattr(sources_module, "KEY_REFRESH_SECONDS", 1.0)  # 20 requests take ~50 ms
    src = create_source(database, "Guessed at")
    p = poster(database, src, source_cache_seconds=3600)
    assert_envelope(p.post(lead()), 201)
    assert reads.count == 1
    for i in range(20):
        assert_envelope(p.post(lead(), **with_key(f"ptl_guess{i}")), 401)
    assert reads.count == 2  # one re-read for twenty wrong keys
    time.sleep(1.1)
    for i in range(10):
        assert_envelope(p.post(lead(), **with_key(f"ptl_guess{i}")), 401)
    assert reads.count == 3  # and one more per interval
    assert_envelope(p.post(lead()), 201)  # the right key never reads
    assert reads.count == 3


def test_concurrent_wrong_keys_claim_one_re_read(
    counted: tuple[Any, SourceReads], monkeypatch: pytest.MonkeyPatch
) -> None:
    database, reads = counted
    if isinstance(database, mongomock.Database):
        pytest.skip("mongomock is not thread-safe; concurrency runs on the wire servers")
    monkeypatch.setattr(sources_module, "KEY_REFRESH_SECONDS", 60.0)
    src = create_source(database, "Guessed at in parallel")
    p = poster(database, src, source_cache_seconds=3600)
    assert_envelope(p.post(lead()), 201)
    start = reads.count
    statuses: queue.Queue[int] = queue.Queue()
    barrier = threading.Barrier(8)

    def guess(n: int) -> None:
        client = p.client.application.test_client()
        barrier.wait(timeout=10)
        for i in range(5):
            response = client.post(p.url, json=lead(), headers={"Authorization": f"Bearer ptl_{n}_{i}"})
            statuses.put(response.status_code)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert [statuses.get_nowait() for _ in range(statuses.qsize())] == [401] * 40
    assert reads.count - start == 1  # 40 wrong keys, one interval


def test_without_a_cache_a_wrong_key_costs_no_extra_read(counted: tuple[Any, SourceReads]) -> None:
    database, reads = counted
    src = create_source(database, "Uncached")
    p = poster(database, src, source_cache_seconds=0)
    for i in range(5):
        assert_envelope(p.post(lead(), **with_key(f"ptl_guess{i}")), 401)
    assert reads.count == 5


def test_unknown_sources_stay_uncached(counted: tuple[Any, SourceReads]) -> None:
    database, reads = counted
    src = create_source(database, "Late")
    doc = database[SOURCES].find_one_and_delete({"_id": ObjectId(src.id)})
    p = poster(database, src, source_cache_seconds=3600)
    start = reads.count
    for _ in range(3):
        assert_envelope(p.post(lead()), 401)
    assert reads.count - start == 3  # one read each, nothing more, nothing kept
    database[SOURCES].insert_one(doc)
    assert_envelope(p.post(lead()), 201)


# --- revocation and deactivation elsewhere: within source_cache_seconds --------------


def test_an_old_key_revoked_elsewhere_is_refused_within_the_cache_time(database: Any, elsewhere: None) -> None:
    src = create_source(database, "Revoked")
    p = poster(database, src, source_cache_seconds=0.3)
    assert_envelope(p.post(lead()), 201)
    rotate_api_key(database, src.id, grace_seconds=0)
    time.sleep(0.4)
    assert_envelope(p.post(lead()), 401)


def test_a_deactivation_elsewhere_is_seen_within_the_cache_time(database: Any, elsewhere: None) -> None:
    src = create_source(database, "Deactivated")
    p = poster(database, src, source_cache_seconds=0.3)
    assert_envelope(p.post(lead()), 201)
    set_source_active(database, src.id, False)
    time.sleep(0.4)
    assert_envelope(p.post(lead()), 403)


def test_a_grace_end_is_exact_once_the_rotation_is_read(database: Any, elsewhere: None) -> None:
    src = create_source(database, "Graceful")
    p = poster(database, src, source_cache_seconds=3600)
    assert_envelope(p.post(lead()), 201)
    new_key = rotate_api_key(database, src.id, grace_seconds=1.0)
    assert_envelope(p.post(lead(), **with_key(new_key)), 201)  # reads the rotated document
    assert_envelope(p.post(lead()), 201)  # old key inside its grace
    time.sleep(1.1)
    assert_envelope(p.post(lead()), 401)  # expiry compared with the clock, cache or not


# --- the cache itself ---------------------------------------------------------------


def test_a_re_read_racing_with_forget_is_not_kept() -> None:
    collection = mongomock.MongoClient().db[SOURCES]
    src = create_source(collection.database, "Racing")
    cache = SourceCache(collection, ttl=3600, size=10, refresh_seconds=0)
    oid = ObjectId(src.id)
    seen = cache.get(oid)
    assert seen is not None
    real_find_one = collection.find_one

    def find_one_then_forget(*args: Any, **kwargs: Any) -> Any:
        doc = real_find_one(*args, **kwargs)
        cache.forget(oid)  # a rotation in this process lands while we read
        return doc

    collection.find_one = find_one_then_forget  # type: ignore[method-assign]
    fresh = cache.refresh(oid, seen)
    assert fresh is not None and fresh is not seen
    collection.find_one = real_find_one  # type: ignore[method-assign]
    assert cache.get(oid) is not fresh  # not kept: read again


# --- two web processes, the CLI in a third ------------------------------------------

SERVER = Path(__file__).with_name("key_refresh_server.py")
ROOT = Path(__file__).resolve().parent.parent


def http_post(port: int, source_id: str, key: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/lead/create/{source_id}",
        data=__import__("json").dumps(lead()).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def read_port(process: subprocess.Popen[str], timeout: float) -> int:
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError("the web process did not start in time") from None
    assert line.startswith("port "), line
    return int(line.split()[1])


def test_two_web_processes_accept_a_new_key_at_once(secantus_uri: str, tmp_path: Path) -> None:
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(secantus_uri, serverSelectionTimeoutMS=5000)
    db_name = f"ptl_test_{uuid.uuid4().hex[:12]}"
    env = {**os.environ, "MONGODB_URI": secantus_uri, "PTL_TEST_DB": db_name, "PYTHONPATH": str(ROOT)}
    processes: list[subprocess.Popen[str]] = []
    try:
        src = create_source(client[db_name], "Two processes")
        for n in range(2):
            with open(tmp_path / f"server{n}.log", "w") as log:  # the child keeps its own handle
                processes.append(subprocess.Popen([sys.executable, str(SERVER)], cwd=ROOT, env=env, text=True,
                                                  stdout=subprocess.PIPE, stderr=log))
        ports = [read_port(p, timeout=30) for p in processes]
        for port in ports:  # warm both caches (source_cache_seconds=60 there)
            assert http_post(port, src.id, src.api_key) == 201
        rotated = subprocess.run(
            [sys.executable, "-m", "flask", "--app", f"{SERVER}:create_app", "pingtree-leads", "rotate-key",
             src.id, "--grace", "60"],
            cwd=ROOT, env=env, text=True, capture_output=True, timeout=60,
        )
        assert rotated.returncode == 0, rotated.stderr
        new_key = rotated.stdout.split("api key:", 1)[1].strip()
        statuses = [http_post(port, src.id, new_key) for _ in range(5) for port in ports]
        assert statuses == [201] * 10  # zero 401s, in both processes, at once
        assert [http_post(port, src.id, src.api_key) for port in ports] == [201, 201]  # grace
        assert [http_post(port, src.id, "ptl_wrong") for port in ports] == [401, 401]
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            process.wait(timeout=10)
            if process.stdout:
                process.stdout.close()
        client.drop_database(db_name)
        client.close()
