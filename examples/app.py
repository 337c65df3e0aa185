"""A small host Flask app that mounts pingtree_leads.

Run it with ``python examples/app.py`` (or ``bash examples/quickstart.sh``).

Database: ``MONGODB_URI`` (database name from ``PINGTREE_DB``, default
``pingtree_example``) if set; otherwise an embedded SecantusDB server started
in this process, storing its data under ``instance/secantus-data`` so leads
survive a restart.  SecantusDB is GPL-2.0: only this example imports it, the
library itself never does.

``create_app()`` without arguments is the app factory of ``flask --app examples.app
pingtree-leads ...``: it uses ``MONGODB_URI`` if set, else the embedded server of the
example running now.  A second process cannot open the same database files, so the
running example writes its server's address to ``instance/server.json`` (removed when
it stops) and the factory connects there.

On start the app makes sure a demo database source exists (its id and API key
are kept in ``instance/demo_source.json``: the library stores only key hashes)
and prints a curl command that posts a lead to it.  Interactive API docs
(Swagger UI, served from the ``swagger-ui-bundle`` package, no CDN) are at ``/docs``.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shlex
import signal
import socket
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click
from bson import ObjectId
from flask import Flask
from pymongo import MongoClient
from pymongo.database import Database

from pingtree_leads import LeadsRuntime, PingtreeLeads, PublicSource, create_source, get_runtime, signals
from pingtree_leads.docs_page import create_docs_blueprint

ROOT = Path(__file__).resolve().parent.parent
#: PINGTREE_INSTANCE moves it (two examples side by side, the tests).
INSTANCE = Path(os.environ.get("PINGTREE_INSTANCE") or ROOT / "instance").resolve()
DATA_DIR = INSTANCE / "secantus-data"
DEMO_SOURCE_FILE = INSTANCE / "demo_source.json"
#: Where the running example says which embedded server holds its database.
SERVER_FILE = INSTANCE / "server.json"
HOST = "127.0.0.1"
#: The example validator refuses these addresses (a host's suppression list would live in its database).
SUPPRESSED = frozenset({"do-not-contact@example.com"})
DEFAULT_PORT = 5000
DEFAULT_DB = "pingtree_example"
START_HINT = "start the example first (bash examples/quickstart.sh) or set MONGODB_URI"
#: How the embedded SecantusDB server runs (``SecantusDBServer(**EMBEDDED_SERVER_OPTIONS)``):
#:
#: - ``replica_set_name=None``: standalone. As a single-member replica set (SecantusDB's
#:   default) every write also appends to an oplog whose cost grows with each write: posts
#:   to this example went from a 3.6 ms to a 15.6 ms median over 20,000 leads. Standalone
#:   they stay level (docs/performance.md, "Embedded default: flat over 20,000 posts").
#:   Nothing here needs a replica set: the library uses no transactions and no change
#:   streams (pymongo's retryable writes need one, and the library's transaction-id
#:   rule makes a sender's retry converge without them).
#: - ``durable=True``: the WiredTiger journal is on and the data is checkpointed every
#:   60 s and on a clean stop, whatever ``SECANTUS_TEST_FAST_STORAGE`` says (the tests'
#:   fast mode). Alone it does not write each commit's journal record out before the
#:   write is acknowledged (as mongod's default ``j: false``): measured, a ``kill -9``
#:   right after 30 accepted posts lost from 1 to all 30 of them (7 runs, either mode).
#: - ``sync_on_commit=True``: so every commit is written and fsynced to the journal before
#:   it is acknowledged, for every client (this app, ``flask --app examples.app``): a lead
#:   answered ``201`` survives a killed process (measured: 30 of 30, five times;
#:   tests/test_serving.py). Its cost did not stand out from the noise of the figures.
EMBEDDED_SERVER_OPTIONS: dict[str, Any] = {"replica_set_name": None, "durable": True, "sync_on_commit": True}


class ExampleError(click.ClickException):
    """A problem the user fixes, said in one line without a traceback (by ``flask`` and by ``main``)."""


def create_app(database: Database[Any] | None = None) -> Flask:
    """The host app: its own routes, plus the create-lead endpoint and its docs page from the library.

    Without ``database`` (as ``flask --app examples.app ...`` calls it) it connects to
    ``MONGODB_URI``, or else to the database of the example running now.
    """
    if database is None:
        database = database_from_environment()
    app = Flask(__name__)
    leads = PingtreeLeads()

    @leads.lead_validator  # a host rule, after the built-in ones: a suppression list
    def suppressed(lead: Mapping[str, Any], source: PublicSource) -> dict[str, list[str]] | None:
        return {"email": ["On the suppression list."]} if lead.get("email") in SUPPRESSED else None

    leads.init_app(app, database=database)

    @signals.lead_accepted.connect_via(app)  # the host's ping tree starts here
    def route_to_buyers(sender: Flask, source: PublicSource, lead: dict[str, Any], **extra: Any) -> None:
        sender.logger.info("accepted lead %s from source %s: route it to the buyers", lead["lead_id"], source.id)

    # Swagger UI for the document the endpoint serves at /api/lead/openapi.json.
    app.register_blueprint(create_docs_blueprint("/api/lead/openapi.json"), url_prefix="/docs")

    @app.get("/")
    def index() -> tuple[str, int, dict[str, str]]:
        text = (
            "pingtree_leads example host app\n\n"
            "This page is the host's own route; the library serves\n"
            "POST|GET /api/lead/create/<db_source_id> next to it,\n"
            "its OpenAPI document at /api/lead/openapi.json\n"
            "and interactive API docs at /docs.\n"
        )
        return text, 200, {"Content-Type": "text/plain; charset=utf-8"}

    return app


def running_server() -> dict[str, Any] | None:
    """What the running example wrote to SERVER_FILE (``uri``, ``database``, ``pid``), if it is still running."""
    try:
        saved = json.loads(SERVER_FILE.read_text(encoding="utf-8"))
        uri, name, pid = str(saved["uri"]), str(saved["database"]), int(saved["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)  # signal 0: is that process alive?
    except ProcessLookupError:
        return None  # left behind by an example that was killed
    except PermissionError:
        pass  # alive, another user's
    return {"uri": uri, "database": name, "pid": pid}


def database_from_environment() -> Database[Any]:
    """MONGODB_URI's database, else the running example's; a clear error when there is neither."""
    uri = os.environ.get("MONGODB_URI")
    name = os.environ.get("PINGTREE_DB")
    if not uri:
        server = running_server()
        if server is None:
            raise ExampleError(f"the example is not running (no live {SERVER_FILE}): {START_HINT}")
        uri, name = server["uri"], name or server["database"]
    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=5000)
    return client[name or DEFAULT_DB]


def publish_server(uri: str, database_name: str, stack: ExitStack) -> None:
    """Tell ``flask --app examples.app`` where the embedded server is, until ``stack`` closes."""
    INSTANCE.mkdir(parents=True, exist_ok=True)
    tmp = SERVER_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps({"uri": uri, "database": database_name, "pid": os.getpid()}) + "\n",
                   encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(SERVER_FILE)

    def forget() -> None:
        saved = running_server()
        if saved is not None and saved["pid"] == os.getpid():
            SERVER_FILE.unlink(missing_ok=True)

    stack.callback(forget)


def open_database(stack: ExitStack) -> Database[Any]:
    """Connect to MONGODB_URI, or start the embedded SecantusDB server.

    Everything opened here is closed by ``stack``: the client first, then the server.
    """
    name = os.environ.get("PINGTREE_DB") or DEFAULT_DB
    uri = os.environ.get("MONGODB_URI")
    if not uri:
        other = running_server()
        if other is not None:  # its server holds the database files: a second one cannot open them
            raise ExampleError(
                f"the example is already running (pid {other['pid']}) on the database in {DATA_DIR}: use it, or "
                "stop it first (Ctrl-C in its terminal)"
            )
        from secantus import SecantusDBServer  # GPL-2.0: imported only by this example

        DATA_DIR.mkdir(parents=True, exist_ok=True)
        server = SecantusDBServer(storage_path=str(DATA_DIR), port=0, **EMBEDDED_SERVER_OPTIONS)
        stack.enter_context(server)  # start() now, stop() (checkpoint + close) on exit
        uri = server.uri
        publish_server(uri, name, stack)
        print(f"Embedded SecantusDB at {uri} (data in {DATA_DIR})", flush=True)
    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    stack.callback(client.close)
    return client[name]


def port_from_environment() -> int:
    text = os.environ.get("PORT") or str(DEFAULT_PORT)
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise ExampleError(f"PORT must be a number from 1 to 65535, got {text!r}")
    return port


def check_port_free(port: int) -> None:
    """A clear error, before the database starts, when the app could not listen on ``port``."""
    other = port + 1 if port < 65535 else DEFAULT_PORT + 1
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug does
        try:
            probe.bind((HOST, port))
        except OSError as exc:
            busy = exc.errno == errno.EADDRINUSE
            why = "is in use by another program" if busy else f"cannot be used ({exc.strerror})"
            raise ExampleError(
                f"port {port} on {HOST} {why}. Pick another port: PORT={other} bash examples/quickstart.sh"
            ) from None


def ensure_demo_source(database: Database[Any], runtime: LeadsRuntime) -> tuple[str, str]:
    """The demo source's (id, api_key): reused from instance/demo_source.json, or created."""
    sources = runtime.settings.sources_collection
    try:
        saved = json.loads(DEMO_SOURCE_FILE.read_text())
        source_id, api_key = str(saved["id"]), str(saved["api_key"])
        if ObjectId.is_valid(source_id) and database[sources].find_one({"_id": ObjectId(source_id)}, {"_id": 1}):
            return source_id, api_key
    except (OSError, ValueError, KeyError, TypeError):
        pass  # missing or unreadable: make a new one
    source = create_source(
        database,
        "Demo source",
        required_fields=["first_name", "email"],
        dedupe_fields=["email", "mobile"],
        sources_collection=sources,
    )
    # The key is shown only once by the library, so keep it (readable by the owner only).
    INSTANCE.mkdir(parents=True, exist_ok=True)
    tmp = DEMO_SOURCE_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps({"id": source.id, "api_key": source.api_key}, indent=2) + "\n")
    tmp.chmod(0o600)
    tmp.replace(DEMO_SOURCE_FILE)
    return source.id, source.api_key


def demo_curl(port: int, source_id: str, api_key: str) -> str:
    """A curl command whose lead is accepted: the email is new on every start."""
    lead = {"first_name": "Ada", "last_name": "Lovelace", "email": f"demo-{secrets.token_hex(4)}@example.com"}
    return (
        f"curl -sS -i -X POST http://{HOST}:{port}/api/lead/create/{source_id} \\\n"
        f"  -H {shlex.quote('Authorization: Bearer ' + api_key)} \\\n"
        f"  -H 'Content-Type: application/json' \\\n"
        f"  -d {shlex.quote(json.dumps(lead))}"
    )


def ignore_stop_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def main() -> None:
    try:
        run()
    except ExampleError as exc:
        exc.show()  # "Error: ..." on stderr
        raise SystemExit(exc.exit_code) from None


def run() -> None:
    port = port_from_environment()
    check_port_free(port)  # before the database starts: a busy port says what to do, not a traceback
    # Ctrl-C (SIGINT) and `kill` (SIGTERM) both stop the server the same way, so the
    # database is closed cleanly; SIGINT is set explicitly because a shell starting
    # us in the background hands it down ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with ExitStack() as stack:
        database = open_database(stack)
        # Callbacks run last-in first-out: from here on, closing starts by ignoring
        # a second Ctrl-C or kill, so the server's shutdown is not cut short.
        stack.callback(ignore_stop_signals)
        app = create_app(database)
        source_id, api_key = ensure_demo_source(database, get_runtime(app))
        print(
            f"\nDemo database source: {source_id}\n"
            f"API key:              {api_key}\n\n"
            'Post a lead (expect HTTP 201 with "lead_status": "accept"):\n\n'
            f"{demo_curl(port, source_id, api_key)}\n\n"
            'Run the same command again: it answers 201 with "lead_status": "duplicate"\n'
            "(a new transaction_id is generated each time, but the email matches).\n\n"
            f"Interactive API docs: http://{HOST}:{port}/docs\n"
            "Manage sources while it runs (from the repository root):\n"
            "  .venv/bin/flask --app examples.app pingtree-leads list-sources\n"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )
        # Werkzeug returns from run() on Ctrl-C; the ExitStack then closes the client and the server.
        app.run(host=HOST, port=port, threaded=True, use_reloader=False)
    print("Stopped; database closed.", flush=True)


if __name__ == "__main__":
    main()
