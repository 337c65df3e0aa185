"""The create-lead endpoint: ``POST|GET /api/lead/create/<db_source_id>``.

A request goes: method (405) -> source id shape (404) -> key (401, auth.py)
-> active (403) -> body (413/415/400, http.py) -> fields (400, schemas.py)
-> storage (201/409/503, repository.py) -> the JSON envelope (errors.py).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
import weakref
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from flask.sansio.blueprints import BlueprintSetupState
from pymongo.database import Database
from pymongo.errors import PyMongoError
from werkzeug.routing import PathConverter

from .auth import bearer_auth
from .cli import register_commands
from .errors import MESSAGES, ApiError, envelope, register_error_handlers
from .http import lead_fields
from .openapi import openapi_document
from .repository import LeadRepository, StoreResult
from .schemas import DECLARED_FIELDS, STATUS_MISSING, LeadRejection, schema_for, validate_lead
from .settings import Settings
from .sources import SourceCache, SourceConfig, parse_object_id

logger = logging.getLogger("pingtree_leads")

CLI_GROUP = "pingtree-leads"
CREATE_RULE = "/api/lead/create/<db_source_id>"
#: Everything under this path answers JSON, also for unknown routes.
URL_SPACE = "/api/lead"
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]


class LeadsRuntime:
    """What one app needs to serve leads: settings, source cache, auth, storage."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database
        self.settings = settings
        self.methods = ("GET", "POST") if settings.allow_get else ("POST",)
        self.sources = SourceCache(
            database[settings.sources_collection], settings.source_cache_seconds, settings.source_cache_size
        )
        self.repository = LeadRepository(database, settings.leads_collection)
        self.auth = bearer_auth(self.sources, settings.clock, lambda status: envelope(status, MESSAGES[status]))
        self.create_authorized = self.auth.login_required(self._create)
        self._ready = False
        self._ready_lock = threading.Lock()
        self._openapi: dict[str, str] = {}

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

    def _create(self, db_source_id: str) -> Response:
        source: SourceConfig = self.auth.current_user()
        if not source.is_active:
            logger.info("lead refused: source inactive, source=%s", db_source_id)
            raise ApiError(403)
        raw = lead_fields(request, self.settings.max_body_bytes)
        checked = validate_lead(raw, schema_for(source.required_fields, self.settings))
        if isinstance(checked, LeadRejection):
            # Only standard names: an unknown field's name is the client's text and could hold anything.
            data = checked.as_data()
            named = [f if f in DECLARED_FIELDS else "<extra>" for f in data["fields"]]
            logger.info("lead %s source=%s fields=%s%s", checked.status, db_source_id, ",".join(named),
                        " (truncated)" if data.get("truncated") else "")
            message = "Missing required field(s)" if checked.status == STATUS_MISSING else "Invalid field(s)"
            return envelope(400, message, data)
        transaction_id = checked.transaction_id or uuid.uuid4().hex
        self.ensure_ready()
        result = self.repository.store(source, checked, transaction_id, self.settings.clock())
        logger.info(
            "lead %s source=%s transaction_id=%s lead_id=%s%s",
            result.lead_status, db_source_id, transaction_id, result.lead_id, " (replay)" if result.replayed else "",
        )
        return outcome_response(result)


def outcome_response(result: StoreResult) -> Response:
    if result.lead_status == "conflict":
        raise ApiError(409, data={"transaction_id": result.transaction_id})
    data: dict[str, Any] = {"lead_status": result.lead_status, "transaction_id": result.transaction_id}
    if result.lead_status == "duplicate":
        data["matched_on"] = list(result.matched_on)
        return envelope(201, "Duplicate lead: not stored", data)
    data["lead_id"] = result.lead_id
    if result.replayed:
        data["replayed"] = True
        return envelope(201, "Lead already accepted with this transaction_id", data)
    return envelope(201, "Lead accepted", data)


class AnyRestConverter(PathConverter):
    """The rest of a path, empty segments and a leading slash included."""

    regex = ".*"
    part_isolating = False  # werkzeug would infer True: the regex names no "/"


REST_CONVERTER = "pingtree_leads_rest"


class LeadsBlueprint(Blueprint):
    """The blueprint ``create_blueprint`` returns; it keeps one runtime per app."""

    def __init__(self, database: Database, options: dict[str, Any], name: str = "pingtree_leads") -> None:
        super().__init__(name, __name__, cli_group=CLI_GROUP)
        Settings.resolve(None, **options)  # fail fast on unknown or bad options
        self.database = database
        self.options = options
        self._runtimes: weakref.WeakKeyDictionary[Any, LeadsRuntime] = weakref.WeakKeyDictionary()
        # merge_slashes=False: werkzeug would answer "/api/lead//create/<id>" with an HTML 308
        # redirect (routing redirects never reach error handlers); the catch-all answers JSON 404.
        self.add_url_rule(CREATE_RULE, "create_lead", self._view, methods=ALL_METHODS,
                          provide_automatic_options=False, merge_slashes=False)
        register_error_handlers(self, lambda: self.runtime().settings.retry_after_seconds)
        self.record(self._on_register)
        register_commands(self)

    def _on_register(self, state: BlueprintSetupState) -> None:
        # The catch-all needs a converter that also takes empty segments ("//"); the host's
        # map gets it under a name of ours before the rule that uses it.
        state.app.url_map.converters.setdefault(REST_CONVERTER, AnyRestConverter)
        for rule in (URL_SPACE, URL_SPACE + "/", f"{URL_SPACE}/<{REST_CONVERTER}:rest>"):
            state.add_url_rule(rule, "not_found", _not_found, methods=ALL_METHODS, provide_automatic_options=False,
                               merge_slashes=False)
        if state.app not in self._runtimes:
            self._runtimes[state.app] = LeadsRuntime(self.database, Settings.resolve(state.app.config, **self.options))
        route = self._runtimes[state.app].settings.openapi_route
        if route:
            state.add_url_rule(route, "openapi", self._openapi_view, methods=ALL_METHODS,
                               provide_automatic_options=False, merge_slashes=False)

    def runtime(self, app: Flask | None = None) -> LeadsRuntime:
        """The runtime of ``app`` (default: the current app)."""
        return self._runtimes[app if app is not None else current_app._get_current_object()]  # type: ignore[attr-defined]

    def _view(self, db_source_id: str) -> Response:
        runtime = self.runtime()
        if request.method not in runtime.methods:
            raise ApiError(405, headers={"Allow": ", ".join(runtime.methods)})
        if parse_object_id(db_source_id) is None:
            raise ApiError(404, "Unknown database source id: it must be a 24-hex ObjectId")
        return runtime.create_authorized(db_source_id)

    def _openapi_view(self) -> Response:
        if request.method not in ("GET", "HEAD"):
            raise ApiError(405, headers={"Allow": "GET, HEAD"})
        runtime = self.runtime()
        route = runtime.settings.openapi_route or ""
        prefix = request.path[: len(request.path) - len(route)]
        return Response(runtime.openapi_json(prefix), mimetype="application/json")


def _not_found(rest: str = "") -> Response:
    raise ApiError(404)


def create_blueprint(database: Database, *, name: str = "pingtree_leads", **options: Any) -> LeadsBlueprint:
    """A blueprint serving ``POST|GET /api/lead/create/<db_source_id>`` from ``database``.

    ``options`` are the settings of ``pingtree_leads.settings.Settings``; they win
    over ``PINGTREE_LEADS_*`` keys of the app's config.
    """
    return LeadsBlueprint(database, options, name=name)
