"""The OpenAPI 3 document of the endpoint, generated from the marshmallow schemas.

Field rules come from ``schemas.LeadSchema`` (each field class states its rule
as OpenAPI properties), so the document cannot drift from the validation.
"""

from __future__ import annotations

import copy
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import ValidationError, fields

from .errors import (
    ACCEPTED_MESSAGE,
    BODY_ERROR_MESSAGE,
    DUPLICATE_MESSAGE,
    INVALID_FIELD_MESSAGE,
    MESSAGES,
    MISSING_FIELD_MESSAGE,
    REPLAYED_MESSAGE,
    LeadStatus,
)
from .schemas import (
    DEDUPE_FIELDS,
    LATIN_LETTERS,
    LEAD_FIELDS,
    REQUIRED_MESSAGE,
    TRUSTED_FORM_FIELDS,
    US_STATES,
    LeadSchema,
)
from .settings import Settings
from .version import __version__

OPENAPI_VERSION = "3.0.3"
SOURCE_ID = "6566f0c2a1b2c3d4e5f60718"
LEAD_ID = "6566f0c2a1b2c3d4e5f6071f"

#: The request body Swagger UI's "Try it out" starts from (it sends an example as it is).
#: No transaction_id: the server generates a new one per request, so a second try is not a
#: replay and never a 409.  No mobile: a source deduplicating on email and mobile then
#: takes the lead again once the email is changed.  The email cannot be left out (sources
#: commonly require it): a second try with it unchanged answers 201 "duplicate".
REQUEST_EXAMPLE: dict[str, str] = {
    "first_name": "Ada", "last_name": "Lovelace", "email": "ada.lovelace@example.com",
    "state": "NY", "zip_code": "10001",
}
REQUEST_EXAMPLE_NOTE = (
    "The example has no transaction_id, so the server generates one and trying it twice is never a replay "
    "or a 409. Its email is fixed: on a source that deduplicates on email, the second try answers 201 with "
    "lead_status \"duplicate\" (nothing stored); change the email to store another lead."
)


class YAMLUnavailableError(RuntimeError):
    """YAML output was asked for but PyYAML is not installed."""


def _rule_errors(values: dict[str, str]) -> dict[str, list[str]]:
    """The server's own messages for ``values`` (so the examples cannot drift from the rules)."""
    try:
        LeadSchema().load_lead(values)
    except ValidationError as exc:
        return {name: list(messages) for name, messages in exc.messages_dict.items()}
    raise AssertionError(f"{values!r} is valid")  # pragma: no cover - a broken example


def _field_rule(converter: Any, field: fields.Field[Any], **kwargs: Any) -> dict[str, Any]:
    openapi = getattr(field, "openapi", None)
    return openapi() if callable(openapi) else {}


def _envelope(status: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["status", "message", "data"],
        "properties": {
            "status": {"type": "string", "enum": [status]},
            "message": {"type": "string"},
            "data": data or {"type": "object"},
        },
    }


def _example(status: str, message: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"value": {"status": status, "message": message, "data": data}}


def _error(code: int, headers: dict[str, Any] | None = None, **examples: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": MESSAGES[code],
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/Error"},
                "examples": examples or {"error": _example("error", MESSAGES[code], {})},
            }
        },
    }
    if headers:
        response["headers"] = headers
    return response


def _responses(settings: Settings, has_body: bool) -> dict[str, Any]:
    """Every outcome of one operation; 413 and 415 only where there is a body (POST)."""
    allow = "GET, POST" if settings.allow_get else "POST"
    invalid = _rule_errors({"state": "XX", "zip_code": "1234"})
    rejection = {
        "missingField": _example(
            "error", MISSING_FIELD_MESSAGE,
            {"lead_status": LeadStatus.MISSING_FIELD.value, "fields": ["email"],
             "errors": {"email": [REQUIRED_MESSAGE]}},
        ),
        "invalidField": _example(
            "error", INVALID_FIELD_MESSAGE,
            {"lead_status": LeadStatus.INVALID_FIELD.value, "fields": list(invalid), "errors": invalid},
        ),
    }
    if has_body:
        rejection["invalidBody"] = _example(
            "error", BODY_ERROR_MESSAGE,
            {"lead_status": LeadStatus.INVALID_FIELD.value, "fields": [],
             "errors": {"_body": ["Body must be a JSON object."]}},
        )
    responses: dict[str, Any] = {
        "201": {
            "description": "Accepted (stored), a duplicate (not stored), or a replay of an accepted transaction_id.",
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/Created"},
                    "examples": {
                        "accept": _example("success", ACCEPTED_MESSAGE, {
                            "lead_status": LeadStatus.ACCEPT.value, "transaction_id": "tx-1001", "lead_id": LEAD_ID}),
                        "duplicate": _example("success", DUPLICATE_MESSAGE, {
                            "lead_status": LeadStatus.DUPLICATE.value, "transaction_id": "tx-1002",
                            "matched_on": ["email"]}),
                        "replay": _example("success", REPLAYED_MESSAGE, {
                            "lead_status": LeadStatus.ACCEPT.value, "transaction_id": "tx-1001", "lead_id": LEAD_ID,
                            "replayed": True}),
                    },
                }
            },
        },
        "400": {
            "description": "A required field is missing (missingField) or a field breaks its rule (invalidField).",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Rejected"}, "examples": rejection}
            },
        },
        "401": _error(401, {"WWW-Authenticate": {"schema": {"type": "string", "example": "Bearer"}}}),
        "403": _error(403),
        "404": _error(404),
        "405": _error(405, {"Allow": {"schema": {"type": "string", "example": allow}}}),
        "409": _error(409, conflict=_example("error", MESSAGES[409], {"transaction_id": "tx-1001"})),
        "500": _error(500),
        "503": _error(503, {"Retry-After": {"schema": {"type": "integer", "example": settings.retry_after_seconds}}}),
    }
    if has_body:  # the size limit and the content type concern a body: a GET has none
        responses["413"] = _error(413)
        responses["415"] = _error(415)
    return dict(sorted(responses.items()))


def openapi_document(settings: Settings | None = None, path_prefix: str = "") -> dict[str, Any]:
    """The OpenAPI document for an endpoint mounted under ``path_prefix`` with ``settings``."""
    settings = settings or Settings()
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title="Pingtree Create Lead API",
        version=__version__,
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={"description": "Add a lead to a database source. Every answer is the JSON envelope "
                             "{status, message, data}."},
    )
    plugin.converter.add_attribute_function(_field_rule)  # type: ignore[union-attr]
    spec.tag({"name": "leads", "description": "Add leads to a database source."})
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer",
                                               "description": "The API key of the database source."})
    lead = plugin.converter.schema2jsonschema(LeadSchema)  # type: ignore[union-attr]
    extra_value = {"anyOf": [{"type": "string", "maxLength": settings.extra_value_max_length},
                             {"type": "number"}, {"type": "boolean"}]}
    lead_schema = copy.deepcopy(lead)
    lead_schema["additionalProperties"] = extra_value
    lead_schema["maxProperties"] = len(lead["properties"]) + settings.max_extra_fields
    lead_schema["anyOf"] = [{"required": [name]} for name in LEAD_FIELDS]  # at least one lead field
    lead_schema["description"] = (
        "At least one of " + ", ".join(LEAD_FIELDS) + ". Which are required is set per database source. "
        "Values are trimmed; blank or null counts as absent. Other names (^[A-Za-z][A-Za-z0-9_]{0,63}$, scalar "
        "values) are kept under `extra`; TrustedForm fields go to `trusted_form` ("
        + ", ".join(f"{k} -> {v}" for k, v in TRUSTED_FORM_FIELDS.items()) + ")."
    )
    if settings.city_allow_punctuation:
        letters = LATIN_LETTERS
        lead_schema["properties"]["city"]["pattern"] = f"^[{letters}]+(?:[ .'-]+[{letters}]+)*\\.?$"
    state = lead_schema["properties"]["state"]
    state["description"] = (
        state.get("description", "").rstrip(".") + ". USPS codes accepted: " + ", ".join(sorted(US_STATES)) + "."
    )
    for name in ("mobile", "zip_code"):  # a JSON integer is also accepted
        as_string = lead_schema["properties"][name]
        lead_schema["properties"][name] = {
            "description": as_string.pop("description", ""),
            "oneOf": [as_string, LeadSchema._declared_fields[name].openapi_integer()],  # type: ignore[attr-defined]
        }
    spec.components.schema("LeadInput", lead_schema)
    spec.components.schema("Created", _envelope("success", {
        "type": "object",
        "required": ["lead_status", "transaction_id"],
        "properties": {
            "lead_status": {"type": "string", "enum": [LeadStatus.ACCEPT.value, LeadStatus.DUPLICATE.value]},
            "transaction_id": {"type": "string"},
            "lead_id": {"type": "string", "pattern": "^[0-9a-f]{24}$"},
            "replayed": {"type": "boolean"},
            "matched_on": {"type": "array", "items": {"type": "string", "enum": list(DEDUPE_FIELDS)}},
        },
    }))
    spec.components.schema("Rejected", _envelope("error", {
        "type": "object",
        "required": ["lead_status", "fields", "errors"],
        "properties": {
            "lead_status": {"type": "string",
                            "enum": [LeadStatus.MISSING_FIELD.value, LeadStatus.INVALID_FIELD.value]},
            "fields": {"type": "array", "items": {"type": "string"}},
            "errors": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
        },
    }))
    spec.components.schema("Error", _envelope("error"))

    source_id = {"name": "db_source_id", "in": "path", "required": True,
                 "description": "MongoDB ObjectId of the database source (24 hex digits).",
                 "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{24}$", "example": SOURCE_ID}}
    body_ref = {"$ref": "#/components/schemas/LeadInput"}
    operations: dict[str, Any] = {
        "post": {
            "operationId": "createLead",
            "tags": ["leads"],
            "summary": "Create a lead",
            "security": [{"bearer": []}],
            "requestBody": {
                "required": True,
                "description": REQUEST_EXAMPLE_NOTE,
                "content": {
                    "application/json": {"schema": body_ref, "example": REQUEST_EXAMPLE},
                    "application/x-www-form-urlencoded": {"schema": body_ref},
                    "multipart/form-data": {"schema": body_ref},
                },
            },
            "responses": _responses(settings, has_body=True),
        }
    }
    if settings.allow_get:
        operations["get"] = {
            "operationId": "createLeadByQuery",
            "tags": ["leads"],
            "summary": "Create a lead from query-string fields (puts PII into URLs; can be switched off)",
            "security": [{"bearer": []}],
            "parameters": [
                {"name": name, "in": "query", "required": False, "schema": prop,
                 **({"description": prop["description"]} if "description" in prop else {})}
                for name, prop in lead_schema["properties"].items()
            ],
            "responses": _responses(settings, has_body=False),
        }
    spec.path(path=f"{path_prefix}/api/lead/create/{{db_source_id}}",
              parameters=[source_id], operations=operations)
    return spec.to_dict()


def to_yaml(document: dict[str, Any]) -> str:
    """``document`` as YAML text (keys in the document's order); needs PyYAML (the ``yaml`` extra)."""
    try:
        import yaml
    except ImportError:
        raise YAMLUnavailableError(
            "YAML output needs PyYAML: pip install 'pingtree-leads[yaml]' (or ask for JSON)"
        ) from None
    return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False))
