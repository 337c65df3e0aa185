"""The database server stops and starts again mid-run: the app recovers on its own."""

from __future__ import annotations

import socket
from pathlib import Path

import pymongo
from flask import Flask

from pingtree_leads import create_blueprint, create_source

from .conftest import Poster, assert_envelope, lead


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_server_restart_mid_run_is_recovered_without_restarting_the_app(tmp_path: Path) -> None:
    from secantus import SecantusDBServer  # GPL-2.0: test-only

    port, storage = free_port(), str(tmp_path / "data")
    server = SecantusDBServer(port=port, storage_path=storage)
    server.start()
    client = pymongo.MongoClient(f"mongodb://127.0.0.1:{port}/", serverSelectionTimeoutMS=1500,
                                 connectTimeoutMS=1000, socketTimeoutMS=3000)
    try:
        db = client["restart"]
        src = create_source(db, "Restart")
        app = Flask("restart")
        app.register_blueprint(create_blueprint(db, source_cache_seconds=3600))
        p = Poster(app.test_client(), db, src)
        assert_envelope(p.post(lead()), 201)

        server.stop()
        body = lead(transaction_id="during-outage")
        response = p.post(body)
        assert_envelope(response, 503)
        assert "Retry-After" in response.headers

        server = SecantusDBServer(port=port, storage_path=storage)
        server.start()
        # The same app, the same client: the retry with the same transaction_id lands once.
        assert assert_envelope(p.post(body), 201)["lead_status"] == "accept"
        assert assert_envelope(p.post(body), 201)["replayed"] is True
        assert db["leads"].count_documents({"transaction_id": "during-outage"}) == 1
        assert db["leads"].count_documents({}) == 2  # the lead from before the restart survived
    finally:
        client.close()
        server.stop()
