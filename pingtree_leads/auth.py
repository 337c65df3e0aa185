"""Bearer-key authentication for a database source, on flask-httpauth.

The key is hashed with SHA-256 and compared in constant time with every key
hash of the source; an unknown source is compared against a dummy hash, so a
wrong key and an unknown source take the same path and get the same 401.
A key that does not match a *cached* source gets one more chance: the source is
re-read from MongoDB (``SourceCache.refresh``, rate-limited per source), so a key
issued by another process works at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from flask import Response, request
from flask_httpauth import HTTPTokenAuth

from .errors import unauthorized_response
from .keys import key_matches
from .mongo import parse_object_id
from .source_cache import SourceCache
from .sources import SourceConfig

logger = logging.getLogger("pingtree_leads")

def bearer_auth(sources: SourceCache, clock: Callable[[], datetime]) -> HTTPTokenAuth:
    """An ``HTTPTokenAuth`` whose user is the ``SourceConfig`` named in the URL."""
    auth = HTTPTokenAuth(scheme="Bearer")

    @auth.verify_token  # type: ignore[untyped-decorator]  # flask-httpauth ships no type hints
    def verify(token: str) -> SourceConfig | None:
        args = request.view_args or {}
        source_id = parse_object_id(args.get("db_source_id", ""))
        source, cached = sources.lookup(source_id) if source_id is not None else (None, False)
        if key_matches(token or "", source, clock()):
            return source
        if cached and source is not None:
            # The key may have been issued by another process after we cached the source:
            # re-read it (at most once per source per KEY_REFRESH_SECONDS) before refusing.
            fresh = sources.refresh(source.id, source)
            if fresh is not None and key_matches(token or "", fresh, clock()):
                return fresh
        return None

    @auth.error_handler  # type: ignore[untyped-decorator]
    def unauthorized(status: int) -> Response:
        # For monitoring key guessing: the source id only (already checked to be 24 hex), never the key.
        logger.info("lead refused: no valid key, source=%s", (request.view_args or {}).get("db_source_id"))
        return unauthorized_response()

    return auth
