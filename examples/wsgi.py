"""The example host app for a production WSGI server (gunicorn), one MongoDB client per worker.

From the repository root, with ``pip install -e '.[examples]'`` (which brings gunicorn)::

    MONGODB_URI='mongodb://127.0.0.1:27017/?w=majority' \\
        gunicorn -w 2 -k gthread --threads 8 -b 127.0.0.1:8000 'examples.wsgi:create_app()'

``create_app()`` is called by gunicorn in each worker, after the fork, so each worker
makes its own ``MongoClient``. Do not add ``--preload``: it calls the factory once in
the master, before the fork, and every worker would inherit that client, its sockets and
its monitor threads. pymongo's clients are not fork-safe (pymongo warns "MongoClient
opened before fork"); a client must be created in the process that uses it. If you need
``--preload`` (to share memory), create the client in a gunicorn ``post_fork`` hook
instead of in the factory. docs/integration.md, "Serving in production", says more.

Environment: ``MONGODB_URI`` (required: a production server has no embedded database;
put the write concern, e.g. ``w=majority``, in it), ``PINGTREE_DB`` (database name,
default ``pingtree_example``). Unless the URI says otherwise, the client waits at most
5 s for a server and 10 s for an operation (``serverSelectionTimeoutMS``,
``timeoutMS``), below gunicorn's 30 s worker timeout, so an unreachable database is a
``503``, not a killed worker.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from flask import Flask
from pymongo import MongoClient

from examples.app import DEFAULT_DB
from examples.app import create_app as create_host_app

#: Client options used unless the URI sets them (compared case-insensitively, as pymongo does).
CLIENT_DEFAULTS: dict[str, Any] = {"serverSelectionTimeoutMS": 5_000, "timeoutMS": 10_000,
                                   "appname": "pingtree-leads-example"}


def client_options(uri: str) -> dict[str, Any]:
    """CLIENT_DEFAULTS less what ``uri`` sets itself (a keyword argument would override the URI)."""
    in_uri = {key.lower() for key, _ in parse_qsl(urlsplit(uri).query)}
    return {key: value for key, value in CLIENT_DEFAULTS.items() if key.lower() not in in_uri}


def create_app() -> Flask:
    """The example host app on ``MONGODB_URI``, with a client made in this process (this worker)."""
    uri = os.environ.get("MONGODB_URI")
    if not uri:
        raise RuntimeError("MONGODB_URI is not set: examples.wsgi serves the example on your MongoDB, "
                           "e.g. MONGODB_URI='mongodb://127.0.0.1:27017/?w=majority'")
    client: MongoClient[dict[str, Any]] = MongoClient(uri, **client_options(uri))
    return create_host_app(client[os.environ.get("PINGTREE_DB") or DEFAULT_DB])
