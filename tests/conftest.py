"""Fixtures: every behaviour test runs on each backend.

* ``mongomock``: in-memory, fast unit tests;
* ``secantus``: SecantusDB, a real MongoDB wire-protocol server on WiredTiger,
  started in-process once per session;
* ``mongod``: a real MongoDB, only when ``MONGODB_URI`` is set.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import mongomock
import pymongo
import pytest
from flask import Flask
from flask.testing import FlaskClient

from pingtree_leads import CreatedSource, create_blueprint, create_source

BACKENDS = ["mongomock", "secantus"] + (["mongod"] if os.environ.get("MONGODB_URI") else [])
REAL_BACKENDS = [b for b in BACKENDS if b != "mongomock"]


@pytest.fixture(scope="session")
def secantus_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from secantus import SecantusDBServer  # GPL-2.0: a test-only dependency

    server = SecantusDBServer(storage_path=str(tmp_path_factory.mktemp("secantus")), port=0)
    server.start()
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture(scope="session")
def clients(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    made: dict[str, Any] = {}
    yield made
    for client in made.values():
        client.close()


def real_client(backend: str, request: pytest.FixtureRequest, clients: dict[str, Any]) -> pymongo.MongoClient:
    if backend not in clients:
        uri = request.getfixturevalue("secantus_uri") if backend == "secantus" else os.environ["MONGODB_URI"]
        clients[backend] = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
    return clients[backend]


def _database(backend: str, request: pytest.FixtureRequest, clients: dict[str, Any]) -> Iterator[Any]:
    name = f"ptl_test_{uuid.uuid4().hex[:12]}"
    if backend == "mongomock":
        yield mongomock.MongoClient()[name]
        return
    client = real_client(backend, request, clients)
    yield client[name]
    client.drop_database(name)


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, clients: dict[str, Any]) -> Iterator[Any]:
    """A fresh, empty database on each backend."""
    yield from _database(request.param, request, clients)


@pytest.fixture(params=REAL_BACKENDS)
def real_database(request: pytest.FixtureRequest, clients: dict[str, Any]) -> Iterator[Any]:
    """A fresh database on the wire-protocol servers only (concurrency, faults, explain)."""
    yield from _database(request.param, request, clients)


class FakeClock:
    """A settable UTC clock for dedupe windows and key grace."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = (start or datetime.now(timezone.utc)).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_app(database: Any, *, config: dict[str, Any] | None = None, **options: Any) -> Flask:
    app = Flask("test_host")
    app.config.update(config or {})
    app.register_blueprint(create_blueprint(database, **options))
    return app


@pytest.fixture
def app_factory(database: Any, clock: FakeClock) -> Callable[..., Flask]:
    def factory(**options: Any) -> Flask:
        options.setdefault("clock", clock)
        return make_app(database, **options)

    return factory


@pytest.fixture
def app(app_factory: Callable[..., Flask]) -> Flask:
    return app_factory()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def source(database: Any, clock: FakeClock) -> CreatedSource:
    """A source with no required fields, deduplicating on email and mobile forever."""
    return create_source(database, "Test source", clock=clock)


class Poster:
    """Posts leads to one source and reads back what was stored."""

    def __init__(self, client: FlaskClient, database: Any, source: CreatedSource) -> None:
        self.client = client
        self.database = database
        self.source = source
        self.url = f"/api/lead/create/{source.id}"
        self.headers = {"Authorization": f"Bearer {source.api_key}"}

    def post(self, body: Any = None, **kwargs: Any) -> Any:
        kwargs.setdefault("headers", self.headers)
        if body is not None:
            kwargs["json"] = body
        return self.client.post(self.url, **kwargs)

    def get(self, query: dict[str, str], **kwargs: Any) -> Any:
        kwargs.setdefault("headers", self.headers)
        return self.client.get(self.url, query_string=query, **kwargs)

    def stored(self) -> list[dict[str, Any]]:
        return list(self.database["leads"].find({}, {"_id": 0}))

    def count(self) -> int:
        return self.database["leads"].count_documents({})


@pytest.fixture
def poster(client: FlaskClient, database: Any, source: CreatedSource) -> Poster:
    return Poster(client, database, source)


def lead(**fields: Any) -> dict[str, Any]:
    """A complete valid lead; keyword arguments replace or add fields (None removes)."""
    base = {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": f"ada.{uuid.uuid4().hex[:8]}@example.com",
        "mobile": "5" + uuid.uuid4().int.__str__()[:9],
        "address": "12 Analytical Row",
        "city": "New York",
        "state": "NY",
        "zip_code": "10001",
        "date_of_birth": "1990-12-10",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def assert_envelope(response: Any, status_code: int) -> dict[str, Any]:
    """The response has the contract's JSON envelope and status; returns its data."""
    assert response.status_code == status_code, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"status", "message", "data"}
    assert body["status"] == ("success" if 200 <= status_code < 300 else "error")
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["data"], dict)
    return body["data"]


EXAMPLE_APP = Path(__file__).resolve().parent.parent / "examples" / "app.py"


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """examples/app.py loaded as a module, its instance directory moved to ``tmp_path``."""
    spec = importlib.util.spec_from_file_location("pingtree_example_app", EXAMPLE_APP)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "INSTANCE", tmp_path)
    monkeypatch.setattr(module, "DATA_DIR", tmp_path / "secantus-data")
    monkeypatch.setattr(module, "DEMO_SOURCE_FILE", tmp_path / "demo_source.json")
    monkeypatch.setattr(module, "SERVER_FILE", tmp_path / "server.json")
    monkeypatch.delenv("MONGODB_URI", raising=False)
    monkeypatch.delenv("PINGTREE_DB", raising=False)
    return module


BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_benchmark(name: str, module_name: str | None = None) -> ModuleType:
    """``benchmarks/<name>.py`` loaded as a module, with its folder on ``sys.path`` as when run
    as a script (the scripts share ``benchmarks/processes.py``)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.append(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(module_name or name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    """A CSV file for the import: ``header``, then ``rows``, UTF-8."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path
