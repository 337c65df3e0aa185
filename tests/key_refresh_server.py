"""A web process for test_key_refresh.py: the endpoint on MONGODB_URI / PTL_TEST_DB.

``python tests/key_refresh_server.py`` serves on 127.0.0.1, a free port, and prints
``port <n>`` as its first line.  ``create_app`` is also the app of
``flask --app tests/key_refresh_server.py:create_app pingtree-leads ...``.
"""

from __future__ import annotations

import os

from flask import Flask
from pymongo import MongoClient
from werkzeug.serving import make_server

from pingtree_leads import create_blueprint

#: Far longer than the test runs: only the re-read on an unknown key can let a new key in.
CACHE_SECONDS = 60.0


def create_app() -> Flask:
    client: MongoClient = MongoClient(os.environ["MONGODB_URI"], serverSelectionTimeoutMS=5000)
    app = Flask("key_refresh_server")
    app.register_blueprint(create_blueprint(client[os.environ["PTL_TEST_DB"]], source_cache_seconds=CACHE_SECONDS))
    return app


def main() -> None:
    server = make_server("127.0.0.1", 0, create_app(), threaded=True)
    print(f"port {server.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
