"""Per-app state: one ``LeadsRuntime`` per mounted blueprint, all in ``app.extensions``.

``app.extensions["pingtree_leads"]`` is an ``AppRuntimes`` mapping each registered
blueprint name to its runtime (one app can mount the endpoint twice under different
names).  It is set when the blueprint is registered, by ``register_blueprint`` and by
``PingtreeLeads.init_app`` alike; nothing else keeps per-app state.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, request
from pymongo.database import Database
from pymongo.errors import PyMongoError

from .auth import bearer_auth
from .openapi import openapi_document
from .repository import LeadRepository
from .settings import Settings
from .source_cache import SourceCache
from .suppression import SuppressionStore
from .validators import LeadValidators

logger = logging.getLogger("pingtree_leads")

#: The key of ``app.extensions``.
EXTENSION_KEY = "pingtree_leads"

#: A view run behind the bearer-key check: ``view(runtime, db_source_id)``.
SourceView = Callable[["LeadsRuntime", str], Response]


class LeadsRuntime:
    """What one mounted blueprint needs to serve leads: settings, source cache, auth, storage.

    Later additions hang off here too (host validators, signals, more views): one
    object per mount, reachable from a request through ``current_runtime()``.
    """

    def __init__(
        self,
        database: Database[Any],
        settings: Settings,
        name: str = EXTENSION_KEY,
        url_prefix: str = "",
        validators: LeadValidators | None = None,
    ) -> None:
        self.name = name
        #: The host's validators (shared with the blueprint or extension that registered them).
        self.validators = validators if validators is not None else LeadValidators()
        #: Where the blueprint is mounted ("" for the root): the OpenAPI document's default prefix.
        self.url_prefix = url_prefix.rstrip("/")
        self.database = database
        self.settings = settings
        self.methods = ("GET", "POST") if settings.allow_get else ("POST",)
        self.sources = SourceCache(
            database[settings.sources_collection], settings.source_cache_seconds, settings.source_cache_size
        )
        self.repository = LeadRepository(database, settings.leads_collection,
                                         allow_after_erasure=settings.allow_after_erasure)
        #: Suppression lists (section 10): read only for a source that names lists.
        self.suppressions = SuppressionStore(database, settings.suppressions_collection)
        self.auth = bearer_auth(self.sources, settings.clock)
        self._protected: dict[SourceView, Callable[[str], Response]] = {}
        self._ready = False
        self._ready_lock = threading.Lock()
        self._openapi: dict[str, str] = {}

    def with_key(self, view: SourceView) -> Callable[[str], Response]:
        """``view`` behind the bearer-key check of this runtime (wrapped once, then reused)."""
        protected = self._protected.get(view)
        if protected is None:
            protected = self.auth.login_required(functools.partial(view, self))
            self._protected[view] = protected
        return protected

    def openapi_json(self, path_prefix: str = "") -> str:
        """The OpenAPI document (JSON text) for the endpoint under ``path_prefix``; built once."""
        if path_prefix not in self._openapi:
            document = openapi_document(self.settings, path_prefix)
            self._openapi[path_prefix] = json.dumps(document, indent=2)
        return self._openapi[path_prefix]

    def ensure_ready(self) -> None:
        """Once per process: make sure the unique indexes exist before any lead is stored."""
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            try:
                if self.settings.create_indexes:
                    self.repository.ensure_indexes()
                else:
                    self.repository.check_indexes()
            except PyMongoError as exc:
                logger.error("lead indexes are not in place (%s); no lead is accepted until they are",
                             type(exc).__name__)
                raise
            self._ready = True


class AppRuntimes(dict[str, LeadsRuntime]):
    """``app.extensions["pingtree_leads"]``: the runtime of each mounted blueprint, by registered name."""

    def only(self) -> LeadsRuntime:
        """The runtime when the app mounts the endpoint once; a clear error otherwise."""
        if len(self) == 1:
            return next(iter(self.values()))
        if not self:
            raise LookupError("pingtree_leads is not mounted on this app")
        raise LookupError(f"pingtree_leads is mounted {len(self)} times on this app: choose one of "
                          f"{', '.join(sorted(self))}")


def app_runtimes(app: Flask) -> AppRuntimes:
    """The app's runtimes (an empty mapping, stored, if none is mounted yet)."""
    runtimes = app.extensions.setdefault(EXTENSION_KEY, AppRuntimes())
    if not isinstance(runtimes, AppRuntimes):
        raise RuntimeError(f"app.extensions[{EXTENSION_KEY!r}] holds something else than pingtree_leads' state")
    return runtimes


def get_runtime(app: Flask | None = None, name: str | None = None) -> LeadsRuntime:
    """The runtime of the blueprint registered as ``name`` on ``app`` (default: the current app,
    and its only mount)."""
    runtimes = app_runtimes(app if app is not None else current_app._get_current_object())  # type: ignore[attr-defined]
    if name is None:
        return runtimes.only()
    try:
        return runtimes[name]
    except KeyError:
        raise LookupError(f"no pingtree_leads blueprint registered as {name!r}; mounted: "
                          f"{', '.join(sorted(runtimes)) or 'none'}") from None


def current_runtime() -> LeadsRuntime:
    """The runtime of the blueprint serving the current request."""
    return get_runtime(name=request.blueprint)


def bind_runtime(app: Flask, name: str, factory: Callable[[], LeadsRuntime]) -> LeadsRuntime:
    """The runtime registered as ``name`` on ``app``, made by ``factory`` on first registration."""
    runtimes = app_runtimes(app)
    if name not in runtimes:
        runtimes[name] = factory()
    return runtimes[name]
