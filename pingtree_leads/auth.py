"""Bearer-key authentication for a database source, on flask-httpauth.

The key is hashed with SHA-256 and compared in constant time with every key
hash of the source; an unknown source is compared against a dummy hash, so a
wrong key and an unknown source take the same path and get the same 401.
A key that does not match a *cached* source gets one more chance: the source is
re-read from MongoDB (``SourceCache.refresh``, rate-limited per source), so a key
issued by another process works at once.

Every refusal is the same 401 with ``WWW-Authenticate: Bearer``.  Its message says how
to send the key (``BEARER_HINT_MESSAGE``) when the request carries one the wrong way: an
``Authorization`` header without the Bearer scheme or without a key after it, or, with no
``Authorization`` header, a key-like header or query parameter (``X-Api-Key``,
``?api_key=``).  That depends on the request's shape only, never on the source or the
key, so a wrong key and an unknown source still get the same answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from flask import Response, request
from flask_httpauth import HTTPTokenAuth

from .errors import MESSAGES, ApiError, http_error_response, unauthorized_response
from .keys import key_matches
from .mongo import parse_object_id
from .source_cache import SourceCache
from .sources import SourceConfig

logger = logging.getLogger("pingtree_leads")

#: The 401's message when the key was sent, but not as ``Authorization: Bearer <api key>``.
BEARER_HINT_MESSAGE = f"{MESSAGES[401]}: send it as the header 'Authorization: Bearer <api key>'"
#: Where senders used to other APIs put a key (lower case; headers compared so too).
KEY_HEADERS = frozenset({"x-api-key", "api-key", "apikey", "x-auth-token", "x-access-token"})
KEY_PARAMETERS = frozenset({"api_key", "apikey", "api-key", "access_token", "token", "key"})


def key_sent_the_wrong_way() -> bool:
    """True if the request carries a key, but not as ``Authorization: Bearer <key>``.

    Looks at the request's shape only (never at a value, never at the source), so it
    cannot tell a wrong key from an unknown source.  The body is not read.
    """
    header = request.headers.get("Authorization")
    if header is not None:
        parts = header.split(None, 1)  # as flask-httpauth reads it: the scheme is matched in any case
        return len(parts) < 2 or parts[0].lower() != "bearer" or not parts[1].strip()
    return (any(name.lower() in KEY_HEADERS for name in request.headers.keys())
            or any(name.lower() in KEY_PARAMETERS for name in request.args.keys()))


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
        if key_sent_the_wrong_way():
            return http_error_response(ApiError(401, BEARER_HINT_MESSAGE, headers={"WWW-Authenticate": "Bearer"}))
        return unauthorized_response()

    return auth
