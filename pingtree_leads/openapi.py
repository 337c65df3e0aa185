"""The OpenAPI 3 document of the endpoint, generated from the marshmallow schemas.

Field rules come from ``schemas.LeadSchema`` (each field class states its rule
as OpenAPI properties), so the document cannot drift from the validation.  It
follows the settings: ``GET`` on create only while ``allow_get`` is on, the fetch
operation only while ``allow_fetch`` is on (the route answers 404 otherwise).  The
pre-ping operation (``POST /api/lead/ping/{db_source_id}``) is always there, as its route.
"""

from __future__ import annotations

import copy
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import ValidationError, fields

from .consent import CONSENT_FIELDS
from .errors import (
    ACCEPTED_MESSAGE,
    BAD_SOURCE_ID_MESSAGE,
    BODY_ERROR_MESSAGE,
    CAPPED_MESSAGE,
    DUPLICATE_MESSAGE,
    INVALID_FIELD_MESSAGE,
    MESSAGES,
    MISSING_FIELD_MESSAGE,
    PING_CAPPED_MESSAGE,
    PING_SUPPRESSED_MESSAGE,
    REPLAYED_MESSAGE,
    SUPPRESSED_MESSAGE,
    LeadStatus,
)
from .lenient import ALIASES, apply_aliases
from .schemas import (
    HASH_SUFFIX,
    LATIN_LETTERS,
    LEAD_FIELDS,
    REQUIRED_MESSAGE,
    TEST_FIELD,
    TRANSACTION_ID,
    TRUSTED_FORM_FIELDS,
    US_STATES,
    LeadSchema,
    ping_values,
    pop_test_flag,
)
from .settings import Settings
from .version import __version__

OPENAPI_VERSION = "3.0.3"
SOURCE_ID = "6566f0c2a1b2c3d4e5f60718"
LEAD_ID = "6566f0c2a1b2c3d4e5f6071f"
OBJECT_ID_PATTERN = "^[0-9a-fA-F]{24}$"
#: What ``xxTest`` accepts as text (the server also trims other whitespace); JSON true/false and 0/1 too.
TEST_FLAG_PATTERN = "^ *([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|1|0)? *$"
TEST_FLAG_DESCRIPTION = (
    "Test mode. true or 1 (any case; JSON true): the lead is checked exactly like a real one (key, source, "
    "fields, host validators, duplicates and replays against the stored leads) and answered with the same "
    "status and lead_status plus \"test\": true, but nothing is stored, no claim is held and no signal is sent; "
    "a new lead's answer has no lead_id. false, 0 or blank: a normal request. Anything else is invalidField. "
    "Never stored."
)

#: The fetch operation's answers (views.fetch_lead; tests/test_openapi.py compares them with real ones).
FETCH_FOUND_MESSAGE = "Lead found"
FETCH_NOT_FOUND_MESSAGE = "No such lead for this database source"
FETCH_ONE_PARAMETER = "Give exactly one of lead_id and transaction_id"
FETCH_BAD_LEAD_ID = "lead_id must be a 24-hex ObjectId"
FETCH_BAD_TRANSACTION_ID = "transaction_id is malformed"
#: The lead of the fetch example (the test posts the lead it comes from and compares).
FETCH_EXAMPLE_LEAD: dict[str, Any] = {
    "lead_id": LEAD_ID, "transaction_id": "tx-1001",
    "first_name": "Ada", "last_name": "Lovelace", "email": "ada.lovelace@example.com", "mobile": "2125550123",
    "state": "NY", "zip_code": "10001",
    "trusted_form": {"cert_url": "https://cert.trustedform.com/2f4c1e9a7b3d5f8e0a6c4b2d9e1f3a5c7b9d0e2f"},
    "extra": {"utm_source": "spring_campaign", "coverage_amount": 250000},
    "consent": {"ip_address": "203.0.113.7", "consent_at": "2025-03-14T16:04:51.000+00:00",
                "jornaya_leadid": "0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9"},
    "created_at": "2025-03-14T16:05:09.412+00:00",
}

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
    "lead_status \"duplicate\" (nothing stored); change the email to store another lead. Add \"xxTest\": \"true\" "
    "to check a lead without storing it."
)

#: What a lenient source (create_source(..., lenient=True)) does before a field's rule; added to a
#: field's description unless the schema's own description already says it.
LENIENT_NOTES: dict[str, str] = {
    "mobile": "A lenient source first strips punctuation, spaces and a leading +1 or 1 from a US number: "
              "\"(512) 789-1111\", \"+1 512 789 1111\" and \"512.789.1111\" are 5127891111; Unicode spaces "
              "(no-break, narrow no-break, ...) and dashes (non-breaking hyphen, en dash, minus sign, ...) count as "
              "their ASCII forms.",
    "zip_code": "A lenient source reads ZIP+4 (\"90210-1234\", \"90210 1234\", \"902101234\"; Unicode spaces and "
                "dashes count as their ASCII forms) as the ZIP, keeping the +4 as extra.zip_plus4; a zip_plus4 sent "
                "too (in any case) must agree with it (invalidField otherwise) and is never overwritten.",
    "state": "A lenient source reads a full state or territory name in any case (\"Texas\") or a common "
             "abbreviation (\"Tex.\", \"N.Y.\") as its code.",
    "date_of_birth": "A lenient source reads MM/DD/YYYY (\"01/31/1990\", \"1/31/1990\") as YYYY-MM-DD.",
}

#: ``ping_id`` on create (views.py pops it before the field rules: it is never stored).
PING_FIELD = "ping_id"
PING_ID_PROBLEM = "Must be the 24-hex ping_id of a pre-ping."
PING_ID_DESCRIPTION = (
    "The ping_id a held pre-ping answered (24 hex). While that hold is live and every value it holds equals "
    "this lead's value for that field (the lead may carry more), the lead is decided as if no hold existed and, "
    "once stored, takes the hold over: its lead_id is the ping_id and the hold ends. A ping_id of no live hold "
    "of this source (expired, unknown, or of other values) changes nothing: the lead is decided as usual, and a "
    "live hold of its consumer makes it a duplicate. A post that ends duplicate, replay or 409 leaves the hold "
    "in place; in test mode the hold is honoured but never touched. Blank counts as absent; anything else that "
    "is no 24-hex id is invalidField. Never stored."
)
#: The pre-ping operation's answers (views.ping_lead; tests/test_openapi.py compares them with real ones).
PING_ID = "6566f0c2a1b2c3d4e5f60720"
PING_ACCEPT_MESSAGE = "A post of this consumer now would be accepted"
PING_HELD_MESSAGE = "Would be accepted; held for a post with this ping_id"
PING_DUPLICATE_MESSAGE = "A post of this consumer now would be a duplicate"
PING_NO_VALUE = "A ping needs a dedupe value: email, mobile, a custom dedupe field, or <field>_sha256."
#: Longest hold a ping may ask for, seconds (repository.MAX_HOLD_SECONDS; the test checks they agree).
MAX_HOLD_SECONDS = 300
HOLD_SECONDS_PROBLEM = f"Must be a whole number of seconds from 0 to {MAX_HOLD_SECONDS}."
#: When the held example was answered (the test's clock), and so the example's hold_expires_at.
PING_EXAMPLE_NOW = "2025-03-14T16:05:09.412+00:00"
PING_EXAMPLE_HOLD_SECONDS = 120
PING_EXAMPLE_EXPIRES = "2025-03-14T16:07:09.412+00:00"
#: A hashed dedupe value: the lower-case (or upper-case) hex SHA-256 of the value's canonical form.
SHA256_PATTERN = "^[0-9a-fA-F]{64}$"
#: The names a custom dedupe field's hash may have (an extra-field name, then ``_sha256``).
HASHED_NAME_PATTERN = "^[A-Za-z][A-Za-z0-9_-]{0,63}" + HASH_SUFFIX + "$"
#: hold_seconds as text (form bodies): a whole number 0-300, spaces around ignored, blank = 0.
HOLD_SECONDS_TEXT_PATTERN = "^ *(0*([0-9]{1,2}|[12][0-9]{2}|300))? *$"
#: What Swagger UI's "Try it out" sends to the ping operation: it asks and holds nothing.
PING_REQUEST_EXAMPLE: dict[str, Any] = {"email": "ada.lovelace@example.com", "hold_seconds": 0}
PING_REQUEST_NOTE = (
    "The consumer's dedupe values, plain or hashed, and how long to hold an accept. The example only asks "
    "(hold_seconds 0): it stores nothing. With hold_seconds 1-300 an accept is held: every create post of this "
    "consumer for the source is then duplicate until hold_expires_at, except one carrying the answered ping_id."
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


def _test_flag_errors(value: Any) -> dict[str, list[str]]:
    """The server's own message for a test flag it refuses."""
    _, problems = pop_test_flag({TEST_FIELD: value})
    return {TEST_FIELD: problems}


def _alias_errors(alias: str) -> dict[str, list[str]]:
    """The server's own message for a body sending an alias beside its field."""
    return apply_aliases({alias: "x", ALIASES[alias]: "x"})


def _ping_errors(raw: dict[str, Any]) -> dict[str, list[str]]:
    """The server's own messages for the dedupe values of a ping it refuses."""
    return ping_values(raw, LeadSchema(), ("email", "mobile")).errors


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


def _request_body(schema: dict[str, Any], description: str, example: dict[str, Any]) -> dict[str, Any]:
    """A body read as JSON, form or multipart (the same schema); the JSON example is what "Try it out" sends."""
    return {
        "required": True,
        "description": description,
        "content": {
            "application/json": {"schema": schema, "example": example},
            "application/x-www-form-urlencoded": {"schema": schema},
            "multipart/form-data": {"schema": schema},
        },
    }


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
    rejection["testMissingField"] = _example(
        "error", MISSING_FIELD_MESSAGE,
        {"lead_status": LeadStatus.MISSING_FIELD.value, "fields": ["email"], "errors": {"email": [REQUIRED_MESSAGE]},
         "test": True},
    )
    bad_flag = _test_flag_errors("yes")
    rejection["invalidTestFlag"] = _example(
        "error", INVALID_FIELD_MESSAGE,
        {"lead_status": LeadStatus.INVALID_FIELD.value, "fields": list(bad_flag), "errors": bad_flag},
    )
    both = _alias_errors("phone")
    rejection["aliasAndField"] = _example(
        "error", INVALID_FIELD_MESSAGE,
        {"lead_status": LeadStatus.INVALID_FIELD.value, "fields": list(both), "errors": both},
    )
    rejection["invalidPingId"] = _example(
        "error", INVALID_FIELD_MESSAGE,
        {"lead_status": LeadStatus.INVALID_FIELD.value, "fields": [PING_FIELD],
         "errors": {PING_FIELD: [PING_ID_PROBLEM]}},
    )
    if has_body:
        rejection["invalidBody"] = _example(
            "error", BODY_ERROR_MESSAGE,
            {"lead_status": LeadStatus.INVALID_FIELD.value, "fields": [],
             "errors": {"_body": ["Body must be a JSON object."]}},
        )
    responses: dict[str, Any] = {
        "201": {
            "description": "Accepted (stored), a duplicate (not stored), a replay of an accepted transaction_id, "
                           "or suppressed (a value is on a suppression list the source checks: not stored), "
                           "or capped: the source's cap for the current window is reached, nothing stored, retry at "
                           "retry_at (a replay, a 409 and a duplicate are told before capped). "
                           "A duplicate is a match with a stored lead inside the source's window or with a live "
                           "pre-ping hold; a lead posted with the ping_id of its own live hold takes it over (its "
                           "lead_id is the ping_id). In test mode (xxTest) the same answers with \"test\": true, "
                           "nothing stored, and no lead_id for a new lead. suppressed: the consumer was erased "
                           "(erase_consumer); nothing stored, no reason given.",
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
                        "suppressed": _example("success", SUPPRESSED_MESSAGE, {
                            "lead_status": LeadStatus.SUPPRESSED.value, "transaction_id": "tx-1005"}),
                        "capped": _example("success", CAPPED_MESSAGE, {
                            "lead_status": LeadStatus.CAPPED.value, "transaction_id": "tx-1005",
                            "retry_at": "2025-03-15T05:00:00.000+00:00"}),
                        # Test mode (xxTest): the same answers with "test": true; a new lead gets no lead_id.
                        "testAccept": _example("success", ACCEPTED_MESSAGE, {
                            "lead_status": LeadStatus.ACCEPT.value, "transaction_id": "tx-1003", "test": True}),
                        "testDuplicate": _example("success", DUPLICATE_MESSAGE, {
                            "lead_status": LeadStatus.DUPLICATE.value, "transaction_id": "tx-1004",
                            "matched_on": ["email"], "test": True}),
                        "testReplay": _example("success", REPLAYED_MESSAGE, {
                            "lead_status": LeadStatus.ACCEPT.value, "transaction_id": "tx-1001", "lead_id": LEAD_ID,
                            "replayed": True, "test": True}),
                    },
                }
            },
        },
        "400": {
            "description": "A required field is missing (missingField) or a field breaks its rule (invalidField), "
                           "a host validator's refusal, an alias sent beside its field and a malformed ping_id "
                           "included; \"test\": true in test mode.",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Rejected"}, "examples": rejection}
            },
        },
        "401": _error(401, {"WWW-Authenticate": {"schema": {"type": "string", "example": "Bearer"}}}),
        "403": _error(403),
        "404": _error(404),
        "405": _error(405, {"Allow": {"schema": {"type": "string", "example": allow}}}),
        "409": _error(409, conflict=_example("error", MESSAGES[409], {"transaction_id": "tx-1001"}),
                      testConflict=_example("error", MESSAGES[409], {"transaction_id": "tx-1001", "test": True})),
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
        info={"description": "Add a lead to a database source"
                             + (", read a stored one back" if settings.allow_fetch else "")
                             + ", or ask before sending one whether it would be a duplicate, and hold the answer "
                               "(pre-ping). Every answer is the JSON envelope {status, message, data}."},
    )
    plugin.converter.add_attribute_function(_field_rule)  # type: ignore[union-attr]
    spec.tag({"name": "leads", "description": "Add leads to a database source"
                                              + (", read them back" if settings.allow_fetch else "")
                                              + " and pre-ping them."})
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer",
                                               "description": "The API key of the database source."})
    lead = plugin.converter.schema2jsonschema(LeadSchema)  # type: ignore[union-attr]
    extra_value = {"anyOf": [{"type": "string", "maxLength": settings.extra_value_max_length},
                             {"type": "number"}, {"type": "boolean"}]}
    lead_schema = copy.deepcopy(lead)
    lead_schema["properties"][TEST_FIELD] = {
        "description": TEST_FLAG_DESCRIPTION,
        "oneOf": [{"type": "string", "pattern": TEST_FLAG_PATTERN}, {"type": "boolean"},
                  {"type": "integer", "enum": [0, 1]}],
    }
    lead_schema["properties"][PING_FIELD] = {"type": "string", "pattern": OBJECT_ID_PATTERN,
                                             "description": PING_ID_DESCRIPTION}
    props = lead_schema["properties"]
    city = props["city"]
    if settings.city_allow_punctuation:
        letters = LATIN_LETTERS
        city["pattern"] = f"^[{letters}]+(?:[ .'-]+[{letters}]+)*\\.?$"
    else:  # runs of spaces are one space (and stored so)
        city["pattern"] = city["pattern"].replace("( [", "( +[")
    city["description"] = city.get("description", "").rstrip(".") + (
        ". A run of spaces counts as one space and is stored collapsed (\"New  York\" is stored \"New York\").")
    state = props["state"]
    state["description"] = (
        state.get("description", "").rstrip(".") + ". USPS codes accepted: " + ", ".join(sorted(US_STATES)) + "."
    )
    for name in ("mobile", "zip_code"):  # a JSON integer is also accepted
        as_string = props[name]
        props[name] = {
            "description": as_string.pop("description", ""),
            "oneOf": [as_string, LeadSchema._declared_fields[name].openapi_integer()],  # type: ignore[attr-defined]
        }
    for name, lenient in LENIENT_NOTES.items():
        described = props[name].get("description", "")
        if "lenient" not in described.lower():
            props[name]["description"] = described.rstrip(".") + ". " + lenient
    for alias, field in ALIASES.items():  # read as their field on every source
        others = [name for name, same in ALIASES.items() if same == field and name != alias]
        props[alias] = {**copy.deepcopy(props[field]),
                        "description": f"Alias of {field}: read as {field}, with its rule, and stored as {field}. "
                                       f"Sending both {alias} and {' or '.join([field, *others])} (neither blank) "
                                       f"is invalidField."}
    lead_schema["additionalProperties"] = extra_value
    # xxTest, ping_id and the aliases are no extra fields: they do not use up max_extra_fields.
    lead_schema["maxProperties"] = len(props) + settings.max_extra_fields
    # At least one lead field (an alias of one is that field; consent evidence is none).
    lead_schema["anyOf"] = [{"required": [name]}
                            for name in (*LEAD_FIELDS, *(a for a, f in ALIASES.items() if f in LEAD_FIELDS))]
    # Never an alias beside its lead field (the server allows it only when one of the two is
    # blank).  Jornaya's two names are left to their descriptions: schemathesis cannot
    # generate bodies for a `not` naming them (measured: UnsupportedSchema), and the fuzz
    # tests need it to.
    lead_schema["allOf"] = [{"not": {"required": [alias, field]}}
                            for alias, field in ALIASES.items() if field in LEAD_FIELDS]
    lead_schema["description"] = (
        "At least one of " + ", ".join(LEAD_FIELDS) + " (or an alias: "
        + ", ".join(f"{alias} for {field}" for alias, field in ALIASES.items())
        + "). Which are required is set per database source. These names, transaction_id, the TrustedForm names "
        "and the aliases are read in any case (EMAIL is email, Zip is zip_code); one name in two spellings is "
        "invalidField. Values are trimmed; blank or null counts as absent. "
        "Other names (^[A-Za-z][A-Za-z0-9_-]{0,63}$, scalar values) are kept under `extra`, JSON numbers and "
        "booleans as they are; TrustedForm fields go to `trusted_form` ("
        + ", ".join(f"{k} -> {v}" for k, v in TRUSTED_FORM_FIELDS.items()) + "), consent evidence ("
        + ", ".join(CONSENT_FIELDS) + ", read in any case) to `consent`; a source may require one kind of "
        "evidence (missingField naming the alternatives) and TrustedForm certificates on "
        "cert.trustedform.com. The patterns are the rules of "
        "a strict source (the default); a lenient source normalises mobile, zip_code, state and date_of_birth "
        "first (see each field)."
    )
    spec.components.schema("LeadInput", lead_schema)
    spec.components.schema("Created", _envelope("success", {
        "type": "object",
        "required": ["lead_status", "transaction_id"],
        "properties": {
            "lead_status": {"type": "string", "enum": [LeadStatus.ACCEPT.value, LeadStatus.DUPLICATE.value,
                                                       LeadStatus.SUPPRESSED.value, LeadStatus.CAPPED.value],
                            "description": "suppressed: a value of the lead is on a suppression list the source "
                                           "checks, or the consumer was erased; nothing stored, no list named. "
                                           "capped: over one of the source's caps; nothing stored."},
            "transaction_id": {"type": "string"},
            "lead_id": {"type": "string", "pattern": "^[0-9a-f]{24}$",
                        "description": "The stored lead's id; the ping_id when the post took its hold over."},
            "replayed": {"type": "boolean"},
            "matched_on": {"type": "array", "items": {"type": "string"},
                           "description": "The dedupe field whose value matched: email, mobile, or a custom dedupe "
                                          "field of the source."},
            "retry_at": {"type": "string", "format": "date-time",
                         "description": "With capped: when the latest-resetting full cap window of the source "
                                        "ends (UTC, ISO 8601, milliseconds); a post before then is capped too."},
            "test": {"type": "boolean", "enum": [True], "description": "Test mode (xxTest): nothing was stored."},
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
            "test": {"type": "boolean", "enum": [True], "description": "Test mode (xxTest)."},
        },
    }))
    spec.components.schema("Error", _envelope("error"))

    source_id = {"name": "db_source_id", "in": "path", "required": True,
                 "description": "MongoDB ObjectId of the database source (24 hex digits).",
                 "schema": {"type": "string", "pattern": OBJECT_ID_PATTERN, "example": SOURCE_ID}}
    body_ref = {"$ref": "#/components/schemas/LeadInput"}
    operations: dict[str, Any] = {
        "post": {
            "operationId": "createLead",
            "tags": ["leads"],
            "summary": "Create a lead",
            "security": [{"bearer": []}],
            "parameters": [TEST_QUERY_PARAMETER],
            "requestBody": _request_body(body_ref, REQUEST_EXAMPLE_NOTE, REQUEST_EXAMPLE),
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
    _add_ping(spec, settings, lead_schema, source_id, path_prefix)
    if settings.allow_fetch:
        _add_fetch(spec, settings, lead_schema, extra_value, source_id, path_prefix)
    return spec.to_dict()


#: ``?xxTest=true`` on a POST: test mode without touching the body.
TEST_QUERY_PARAMETER: dict[str, Any] = {
    "name": "xxTest", "in": "query", "required": False,
    "schema": {"type": "string", "example": "true"},
    "description": "Test mode, as the xxTest field: true/1 (any case) is a test, false/0/blank is not, anything "
                   "else is 400 invalidField; given in the body too, the two must agree.",
}


def _hash_property(field: str) -> dict[str, Any]:
    return {"type": "string", "pattern": SHA256_PATTERN,
            "description": f"Hex SHA-256 (either case) of the UTF-8 bytes of the {field}'s canonical form, "
                           f"instead of the {field} itself: the value as the source would store it (for a lenient "
                           f"source after its normalisation). Not together with {field}."}


def _add_ping(spec: APISpec, settings: Settings, lead_schema: dict[str, Any], source_id: dict[str, Any],
              path_prefix: str) -> None:
    """``POST <prefix>/api/lead/ping/{db_source_id}``: the pre-ping (contract section 8), always on."""
    props = lead_schema["properties"]
    spec.components.schema("PingInput", {
        "type": "object",
        "description": (
            "The consumer's dedupe values, each plain or hashed, and hold_seconds. At least one dedupe value: "
            "email, mobile (or its alias phone), a custom dedupe field of the source, or <field>_sha256 for any "
            "of them; without one the ping is invalidField under _schema. Plain values are checked and made canonical "
            "by the lead rules (aliases, a lenient source's normalisation, email canonical form); a value and its "
            "hash together are invalidField. Only the source's own dedupe fields count: a value of another field "
            "is checked and then ignored, so a ping holding none of them answers accept and holds nothing, as on "
            "a source without dedupe. Every other field is ignored and never stored."
        ),
        "properties": {
            "email": {**copy.deepcopy(props["email"]),
                      "description": "The consumer's email, compared in its canonical (stored) spelling."},
            "mobile": {**copy.deepcopy(props["mobile"]),
                       "description": "The consumer's 10-digit mobile (a lenient source normalises it first)."},
            "phone": {**copy.deepcopy(props["phone"]),
                      "description": "Alias of mobile. Sending both phone and mobile (neither blank) is invalidField."},
            "email" + HASH_SUFFIX: _hash_property("email"),
            "mobile" + HASH_SUFFIX: _hash_property("mobile"),
            "hold_seconds": {
                "description": f"How long to hold an accept, 0-{MAX_HOLD_SECONDS} whole seconds (digit strings "
                               "from forms too); absent, blank or 0 only asks. A held accept answers ping_id and "
                               "hold_expires_at: until then every create post of this consumer for the source is "
                               "duplicate, except a post carrying that ping_id whose values include every held "
                               "one, which is decided as if no hold existed (and, when stored, ends the hold). "
                               "After expiry the hold counts for nothing.",
                "oneOf": [{"type": "integer", "minimum": 0, "maximum": MAX_HOLD_SECONDS},
                          {"type": "string", "pattern": HOLD_SECONDS_TEXT_PATTERN}],
            },
        },
        "additionalProperties": {
            "description": "A custom dedupe field of the source: its plain value (an extra field's value rule; "
                           "a JSON number is its digits) or <field>_sha256 (see x-patternProperties). Anything "
                           "else is ignored and never stored."
        },
        # Never a value beside its hash, nor an alias beside its field (unless one of the two is blank).
        "allOf": [{"not": {"required": ["email", "email" + HASH_SUFFIX]}},
                  {"not": {"required": ["mobile", "mobile" + HASH_SUFFIX]}},
                  {"not": {"required": ["phone", "mobile"]}},
                  {"not": {"required": ["phone", "mobile" + HASH_SUFFIX]}}],
        # OpenAPI 3.0 has no patternProperties: the names of hashed custom values, as an extension.
        "x-patternProperties": {HASHED_NAME_PATTERN: {"type": "string", "pattern": SHA256_PATTERN}},
    })
    spec.components.schema("PingAnswer", _envelope("success", {
        "type": "object",
        "required": ["lead_status"],
        "properties": {
            "lead_status": {"type": "string", "enum": [LeadStatus.ACCEPT.value, LeadStatus.DUPLICATE.value,
                                                       LeadStatus.SUPPRESSED.value, LeadStatus.CAPPED.value],
                            "description": "accept: a create post of this consumer now would not be a duplicate; "
                                           "duplicate: it would be (a stored lead inside the source's window, or "
                                           "a live hold); suppressed: a value is on a suppression list the source "
                                           "checks, or the consumer was erased (nothing held, no list named); "
                                           "capped: it would be capped (nothing held)."},
            "retry_at": {"type": "string", "format": "date-time",
                         "description": "With capped: when the source's full cap window ends (UTC, ISO 8601)."},
            "matched_on": {"type": "array", "items": {"type": "string"},
                           "description": "With duplicate: the dedupe field whose value matched, as for create."},
            "ping_id": {"type": "string", "pattern": "^[0-9a-f]{24}$",
                        "description": "With a held accept: send it as ping_id with the create post."},
            "hold_expires_at": {"type": "string", "format": "date-time",
                                "description": "With a held accept: when the hold ends (UTC, ISO 8601, "
                                               "milliseconds). The hold is live while this is after now."},
            "test": {"type": "boolean", "enum": [True],
                     "description": "Test mode (xxTest): answered as usual, nothing held."},
        },
    }))
    spec.components.schema("PingRejected", _envelope("error", {
        "type": "object",
        "required": ["lead_status", "fields", "errors"],
        "properties": {
            "lead_status": {"type": "string", "enum": [LeadStatus.INVALID_FIELD.value]},
            "fields": {"type": "array", "items": {"type": "string"}},
            "errors": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
        },
    }))
    bad = {**_ping_errors({"email" + HASH_SUFFIX: "abc"}), "hold_seconds": [HOLD_SECONDS_PROBLEM]}
    both = _ping_errors({"email": "ada.lovelace@example.com", "email" + HASH_SUFFIX: "0" * 64})
    invalid = LeadStatus.INVALID_FIELD.value
    responses: dict[str, Any] = {
        "200": {
            "description": "Whether a create post of this consumer now would be accepted or a duplicate; a held "
                           "accept also gives ping_id and hold_expires_at. Of concurrent held pings for one "
                           "consumer exactly one is a held accept.",
            "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/PingAnswer"},
                "examples": {
                    "accept": _example("success", PING_ACCEPT_MESSAGE, {"lead_status": LeadStatus.ACCEPT.value}),
                    "held": _example("success", PING_HELD_MESSAGE, {
                        "lead_status": LeadStatus.ACCEPT.value, "ping_id": PING_ID,
                        "hold_expires_at": PING_EXAMPLE_EXPIRES}),
                    "duplicate": _example("success", PING_DUPLICATE_MESSAGE, {
                        "lead_status": LeadStatus.DUPLICATE.value, "matched_on": ["email"]}),
                    "suppressed": _example("success", PING_SUPPRESSED_MESSAGE, {
                        "lead_status": LeadStatus.SUPPRESSED.value}),
                    "capped": _example("success", PING_CAPPED_MESSAGE, {
                        "lead_status": LeadStatus.CAPPED.value, "retry_at": "2025-03-15T05:00:00.000+00:00"}),
                },
            }},
        },
        "400": {
            "description": "No dedupe value, a malformed value or hash, a value and its hash together, a bad "
                           "hold_seconds, or a body that cannot be read.",
            "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/PingRejected"},
                "examples": {
                    "noDedupeValue": _example("error", INVALID_FIELD_MESSAGE, {
                        "lead_status": invalid, "fields": [], "errors": {"_schema": [PING_NO_VALUE]}}),
                    "badHashAndHold": _example("error", INVALID_FIELD_MESSAGE, {
                        "lead_status": invalid, "fields": list(bad), "errors": bad}),
                    "valueAndHash": _example("error", INVALID_FIELD_MESSAGE, {
                        "lead_status": invalid, "fields": list(both), "errors": both}),
                    "invalidBody": _example("error", BODY_ERROR_MESSAGE, {
                        "lead_status": invalid, "fields": [], "errors": {"_body": ["Body must be a JSON object."]}}),
                },
            }},
        },
        "401": _error(401, {"WWW-Authenticate": {"schema": {"type": "string", "example": "Bearer"}}}),
        "403": _error(403),
        "404": _error(404, badSourceId=_example("error", BAD_SOURCE_ID_MESSAGE, {})),
        "405": _error(405, {"Allow": {"schema": {"type": "string", "example": "POST"}}}),
        "413": _error(413),
        "415": _error(415),
        "429": _error(429, {"Retry-After": {"schema": {"type": "integer", "example": 30}}}),
        "500": _error(500),
        "503": _error(503, {"Retry-After": {"schema": {"type": "integer", "example": settings.retry_after_seconds}}}),
    }
    body_ref = {"$ref": "#/components/schemas/PingInput"}
    spec.path(path=f"{path_prefix}/api/lead/ping/{{db_source_id}}", parameters=[source_id], operations={
        "post": {
            "operationId": "pingLead",
            "tags": ["leads"],
            "summary": "Pre-ping: would a post of this consumer be a duplicate? Optionally hold the accept",
            "description": "Ask before sending the PII (ping/post): the consumer's dedupe values, plain or as "
                           "SHA-256 hashes, and optionally hold_seconds to hold an accept. A ping is not a lead: it "
                           "stores no plain PII, is never fetched, signalled or imported, and checks no other "
                           "field. A held ping is one write and one indexed count (a source has at most "
                           f"{settings.max_live_holds} live holds: over it, 429); asking is one indexed read per "
                           "value. xxTest (body or query string) answers as usual and holds nothing.",
            "security": [{"bearer": []}],
            "parameters": [TEST_QUERY_PARAMETER],
            "requestBody": _request_body(body_ref, PING_REQUEST_NOTE, PING_REQUEST_EXAMPLE),
            "responses": dict(sorted(responses.items())),
        }
    })


def _add_fetch(spec: APISpec, settings: Settings, lead_schema: dict[str, Any], extra_value: dict[str, Any],
               source_id: dict[str, Any], path_prefix: str) -> None:
    """``GET <prefix>/api/lead/fetch/{db_source_id}``: only while ``allow_fetch`` is on (else the route is a 404)."""
    stored_fields = {
        name: {"type": "string", "description": lead_schema["properties"][name].get("description", "")}
        for name in LEAD_FIELDS
    }
    spec.components.schema("StoredLead", {
        "type": "object",
        "description": "A stored lead, as fetch answers it and the lead_accepted signal carries it: the standard "
                       "fields that were sent, as stored (email canonical, state upper-case, mobile and zip_code "
                       "digit strings), TrustedForm fields under trusted_form, consent evidence under consent "
                       "({} when none was sent), other fields under extra. Internal "
                       "bookkeeping (source_id, claims, fingerprint) is left out.",
        "required": ["lead_id", "transaction_id", "trusted_form", "extra", "created_at"],
        "properties": {
            "lead_id": {"type": "string", "pattern": "^[0-9a-f]{24}$"},
            "transaction_id": {"type": "string", "description": "As sent, or generated when the post had none."},
            **stored_fields,
            "trusted_form": {
                "type": "object",
                "properties": {key: {"type": "string"} for key in TRUSTED_FORM_FIELDS.values()},
                "additionalProperties": False,
            },
            "extra": {"type": "object", "additionalProperties": extra_value},
            "consent": {
                "type": "object",
                "description": "Consent evidence as stored: ip_address canonical, consent_at in UTC (ISO 8601 with "
                               "milliseconds), jornaya_leadid upper-case, consent_text_sha256 lower-case (also "
                               "computed when only consent_text was sent).",
                "properties": {
                    **{name: {"type": "string"} for name in CONSENT_FIELDS},
                    "consent_at": {"type": "string", "format": "date-time"},
                },
                "additionalProperties": False,
            },
            "created_at": {"type": "string", "format": "date-time",
                           "description": "When it was stored: UTC, ISO 8601 with milliseconds."},
        },
    })
    spec.components.schema("LeadFound", _envelope("success", {
        "type": "object", "required": ["lead"], "properties": {"lead": {"$ref": "#/components/schemas/StoredLead"}},
    }))
    spec.components.schema("QueryRejected", _envelope("error", {
        "type": "object",
        "required": ["fields", "errors"],
        "properties": {
            "fields": {"type": "array", "items": {"type": "string"}},
            "errors": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
        },
    }))
    one = {"fields": ["lead_id", "transaction_id"], "errors": {"_query": [FETCH_ONE_PARAMETER + "."]}}
    responses: dict[str, Any] = {
        "200": {
            "description": "The source's lead with that lead_id or transaction_id.",
            "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/LeadFound"},
                "examples": {"found": _example("success", FETCH_FOUND_MESSAGE, {"lead": FETCH_EXAMPLE_LEAD})},
            }},
        },
        "400": {
            "description": "Neither or both of lead_id and transaction_id, or a malformed one.",
            "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/QueryRejected"},
                "examples": {
                    "notExactlyOne": _example("error", FETCH_ONE_PARAMETER, one),
                    "badLeadId": _example("error", FETCH_BAD_LEAD_ID, {
                        "fields": ["lead_id"], "errors": {"lead_id": ["Must be a 24-hex ObjectId."]}}),
                    "badTransactionId": _example("error", FETCH_BAD_TRANSACTION_ID, {
                        "fields": ["transaction_id"],
                        "errors": {"transaction_id": ["Must be 1-128 of A-Z a-z 0-9 . _ -"]}}),
                },
            }},
        },
        "401": _error(401, {"WWW-Authenticate": {"schema": {"type": "string", "example": "Bearer"}}}),
        "403": _error(403),
        "404": _error(404, notFound=_example("error", FETCH_NOT_FOUND_MESSAGE, {}),
                      badSourceId=_example("error", BAD_SOURCE_ID_MESSAGE, {})),
        "405": _error(405, {"Allow": {"schema": {"type": "string", "example": "GET"}}}),
        "500": _error(500),
        "503": _error(503, {"Retry-After": {"schema": {"type": "integer", "example": settings.retry_after_seconds}}}),
    }
    parameters = [
        {"name": "lead_id", "in": "query", "required": False,
         "description": "The lead_id a 201 accept answered (24 hex). Give this or transaction_id, not both.",
         "schema": {"type": "string", "pattern": OBJECT_ID_PATTERN, "example": LEAD_ID}},
        {"name": "transaction_id", "in": "query", "required": False,
         "description": "The lead's transaction_id (sent or generated). Give this or lead_id, not both.",
         "schema": {"type": "string", "pattern": f"^{TRANSACTION_ID.pattern}$", "example": "tx-1001"}},
    ]
    spec.path(path=f"{path_prefix}/api/lead/fetch/{{db_source_id}}", parameters=[source_id], operations={
        "get": {
            "operationId": "fetchLead",
            "tags": ["leads"],
            "summary": "Read one stored lead of the source back (on because allow_fetch is on)",
            "description": "Returns the lead's PII to whoever holds the source's key: a leaked key reads every "
                           "lead of its source. Another source's lead is not found (404).",
            "security": [{"bearer": []}],
            "parameters": parameters,
            "responses": responses,
        }
    })


def to_yaml(document: dict[str, Any]) -> str:
    """``document`` as YAML text (keys in the document's order); needs PyYAML (the ``yaml`` extra)."""
    try:
        import yaml
    except ImportError:
        raise YAMLUnavailableError(
            "YAML output needs PyYAML: pip install 'pingtree-leads[yaml]' (or ask for JSON)"
        ) from None
    return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False))
