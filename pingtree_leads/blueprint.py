"""The blueprint: routes, registration and the JSON error contract for its URL space.

A request goes: method (405) -> source id shape (404) -> key (401, auth.py)
-> active (403) -> body (413/415/400, http.py) -> fields (400, schemas.py)
-> storage (201/409/503, repository.py) -> the JSON envelope (errors.py).
The first three happen here; the rest in ``views.create_lead``.  Per-app state
is the ``LeadsRuntime`` in ``app.extensions["pingtree_leads"]`` (runtime.py).
"""

from __future__ import annotations

from typing import Any, cast

from flask import Blueprint, Flask, Response, request
from flask.sansio.blueprints import BlueprintSetupState
from pymongo.database import Database
from werkzeug.routing import PathConverter

from .cli import COMMANDS
from .errors import BAD_SOURCE_ID_MESSAGE, ApiError, register_error_handlers
from .mongo import parse_object_id
from .runtime import LeadsRuntime, SourceView, bind_runtime, current_runtime
from .settings import Settings
from .validators import LeadValidator, LeadValidators
from .views import create_lead, fetch_lead, ping_lead

CLI_GROUP = "pingtree-leads"
CREATE_RULE = "/api/lead/create/<db_source_id>"
FETCH_RULE = "/api/lead/fetch/<db_source_id>"
PING_RULE = "/api/lead/ping/<db_source_id>"
#: Everything under this path answers JSON, also for unknown routes.
URL_SPACE = "/api/lead"
DEFAULT_NAME = "pingtree_leads"


class AnyRestConverter(PathConverter):
    """The rest of a path, empty segments and a leading slash included."""

    regex = ".*"
    part_isolating = False  # werkzeug would infer True: the regex names no "/"


REST_CONVERTER = "pingtree_leads_rest"


class LeadsBlueprint(Blueprint):
    """The blueprint ``create_blueprint`` returns.

    It holds only what it was made with (database, options); each registration makes
    its runtime from those and the app's config, and keeps it in ``app.extensions``.
    """

    def __init__(
        self,
        database: Database[Any],
        options: dict[str, Any],
        name: str = DEFAULT_NAME,
        validators: LeadValidators | None = None,
    ) -> None:
        super().__init__(name, __name__, cli_group=CLI_GROUP)
        Settings.resolve(None, **options)  # fail fast on unknown or bad options
        self.database = database
        self.options = options
        #: Host validators (configuration, like the options): every app mounting this blueprint runs them.
        self.validators = validators if validators is not None else LeadValidators()
        register_error_handlers(self, lambda: current_runtime().settings.retry_after_seconds)
        self.record(self._on_register)
        for command in COMMANDS:
            self.cli.add_command(command)

    def lead_validator(self, validator: LeadValidator) -> LeadValidator:
        """Decorator: a host rule run after the built-in ones, before storage (validators.py)."""
        return self.validators.register(validator)

    def _on_register(self, state: BlueprintSetupState) -> None:
        # The catch-all needs a converter that also takes empty segments ("//"); the host's
        # map gets it under a name of ours before the rule that uses it.
        state.app.url_map.converters.setdefault(REST_CONVERTER, AnyRestConverter)
        _add_any_method_rule(state, CREATE_RULE, "create_lead", _create_view)
        _add_any_method_rule(state, FETCH_RULE, "fetch_lead", _fetch_view)
        _add_any_method_rule(state, PING_RULE, "ping_lead", _ping_view)
        for rule in (URL_SPACE, URL_SPACE + "/", f"{URL_SPACE}/<{REST_CONVERTER}:rest>"):
            _add_any_method_rule(state, rule, "not_found", _not_found)
        name = f"{state.name_prefix}.{state.name}".lstrip(".")
        app = cast(Flask, state.app)
        settings = Settings.resolve(app.config, **self.options)
        runtime = bind_runtime(
            app, name, lambda: LeadsRuntime(self.database, settings, name, state.url_prefix or "", self.validators)
        )
        route = runtime.settings.openapi_route
        if route:
            _add_any_method_rule(state, route, "openapi", _openapi_view)


def _add_any_method_rule(state: BlueprintSetupState, rule: str, endpoint: str, view: Any) -> None:
    """``state.add_url_rule`` for a rule that matches every method, and never merges slashes.

    Flask always gives a rule a method list, and werkzeug answers a method outside every
    list with its own HTML 405 before any error handler runs; the views here answer 405
    themselves, as JSON with the right ``Allow``.  merge_slashes=False: werkzeug would
    answer "/api/lead//create/<id>" with an HTML 308 redirect; the catch-all answers 404.
    """
    if state.url_prefix is not None:
        rule = "/".join((state.url_prefix.rstrip("/"), rule.lstrip("/"))) if rule else state.url_prefix
    name = f"{state.name_prefix}.{state.name}.{endpoint}".lstrip(".")
    app = state.app
    app.url_map.add(app.url_rule_class(rule, endpoint=name, methods=None, subdomain=state.subdomain,
                                       defaults=state.url_defaults or None, merge_slashes=False))
    app.view_functions[name] = view


def _keyed(runtime: LeadsRuntime, view: SourceView, methods: tuple[str, ...], db_source_id: str) -> Response:
    """The checks before a key is looked at: method (405), source id shape (404); then ``view``."""
    if request.method not in methods:
        raise ApiError(405, headers={"Allow": ", ".join(methods)})
    if parse_object_id(db_source_id) is None:
        raise ApiError(404, BAD_SOURCE_ID_MESSAGE)
    return runtime.with_key(view)(db_source_id)


def _create_view(db_source_id: str) -> Response:
    runtime = current_runtime()
    return _keyed(runtime, create_lead, runtime.methods, db_source_id)


def _fetch_view(db_source_id: str) -> Response:
    runtime = current_runtime()
    if not runtime.settings.allow_fetch:
        raise ApiError(404)  # off: as if there were no such route (the key is not even checked)
    return _keyed(runtime, fetch_lead, ("GET",), db_source_id)


def _ping_view(db_source_id: str) -> Response:
    return _keyed(current_runtime(), ping_lead, ("POST",), db_source_id)


def _openapi_view() -> Response:
    if request.method not in ("GET", "HEAD"):
        raise ApiError(405, headers={"Allow": "GET, HEAD"})
    runtime = current_runtime()
    route = runtime.settings.openapi_route or ""
    prefix = request.path[: len(request.path) - len(route)]
    return Response(runtime.openapi_json(prefix), mimetype="application/json")


def _not_found(rest: str = "") -> Response:
    raise ApiError(404)


def create_blueprint(
    database: Database[Any], *, name: str = DEFAULT_NAME, validators: LeadValidators | None = None, **options: Any
) -> LeadsBlueprint:
    """A blueprint serving ``POST|GET /api/lead/create/<db_source_id>`` from ``database``.

    ``options`` are the settings of ``pingtree_leads.settings.Settings``; they win
    over ``PINGTREE_LEADS_*`` keys of the app's config.  Add host validators with the
    blueprint's ``lead_validator`` decorator.
    """
    return LeadsBlueprint(database, options, name=name, validators=validators)
