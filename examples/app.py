"""A small host Flask app that mounts pingtree_leads.

Run it with ``python examples/app.py`` (or ``bash examples/quickstart.sh``).

Database: ``MONGODB_URI`` (database name from ``PINGTREE_DB``, default
``pingtree_example``) if set; otherwise an embedded SecantusDB server started
in this process, storing its data under ``instance/secantus-data`` so leads
survive a restart.  SecantusDB is GPL-2.0: only this example imports it, the
library itself never does.

On start the app makes sure a demo database source exists (its id and API key
are kept in ``instance/demo_source.json``: the library stores only key hashes)
and prints a curl command that posts a lead to it.  Interactive API docs
(Swagger UI, served from the ``swagger-ui-bundle`` package, no CDN) are at ``/docs``.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bson import ObjectId
from flask import Flask
from pymongo import MongoClient
from pymongo.database import Database

from pingtree_leads import LeadsRuntime, PingtreeLeads, create_source, get_runtime
from pingtree_leads.docs_page import create_docs_blueprint

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = ROOT / "instance"
DATA_DIR = INSTANCE / "secantus-data"
DEMO_SOURCE_FILE = INSTANCE / "demo_source.json"
HOST = "127.0.0.1"


def create_app(database: Database[Any]) -> Flask:
    """The host app: its own routes, plus the create-lead endpoint and its docs page from the library."""
    app = Flask(__name__)
    PingtreeLeads().init_app(app, database=database)
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


def open_database(stack: ExitStack) -> Database[Any]:
    """Connect to MONGODB_URI, or start the embedded SecantusDB server.

    Everything opened here is closed by ``stack``: the client first, then the server.
    """
    name = os.environ.get("PINGTREE_DB", "pingtree_example")
    uri = os.environ.get("MONGODB_URI")
    if not uri:
        from secantus import SecantusDBServer  # GPL-2.0: imported only by this example

        DATA_DIR.mkdir(parents=True, exist_ok=True)
        # durable=True: journal on, whatever SECANTUS_TEST_FAST_STORAGE says.
        server = SecantusDBServer(storage_path=str(DATA_DIR), port=0, durable=True)
        stack.enter_context(server)  # start() now, stop() (checkpoint + close) on exit
        uri = server.uri
        print(f"Embedded SecantusDB at {uri} (data in {DATA_DIR})", flush=True)
    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    stack.callback(client.close)
    return client[name]


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
    port = int(os.environ.get("PORT", "5000"))
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
            "Press Ctrl-C to stop.\n",
            flush=True,
        )
        # Werkzeug returns from run() on Ctrl-C; the ExitStack then closes the client and the server.
        app.run(host=HOST, port=port, threaded=True, use_reloader=False)
    print("Stopped; database closed.", flush=True)


if __name__ == "__main__":
    main()
