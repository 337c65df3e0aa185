"""The views behind the bearer key: what a request does once its source is known.

``create_lead``: active (403) -> body (413/415/400, http.py) -> fields (400,
schemas.py) -> host validators (400) -> storage, or the read-only prediction in test
mode (201/409/503, repository.py) -> signals -> the answer (errors.py).
``fetch_lead``: active (403) -> parameters (400) -> one indexed read (200/404).
"""

from __future__ import annotations

import logging
import math
import uuid
from datetime import datetime
from typing import Any

from bson import ObjectId
from flask import Flask, Response, current_app, request

from . import signals
from .caps import iso_utc
from .erasure import any_key_erased, erased_unblocked, taken_back_if_erased, unblocked_fields
from .errors import (
    ACCEPTED_MESSAGE,
    CAPPED_MESSAGE,
    DUPLICATE_MESSAGE,
    INVALID_FIELD_MESSAGE,
    MISSING_FIELD_MESSAGE,
    PING_CAPPED_MESSAGE,
    PING_SUPPRESSED_MESSAGE,
    REPLAYED_MESSAGE,
    SUPPRESSED_MESSAGE,
    ApiError,
    LeadStatus,
    envelope,
)
from .http import lead_fields, parse_urlencoded
from .mongo import parse_object_id
from .repository import (
    MAX_HOLD_SECONDS,
    PingResult,
    StoreResult,
    TooManyHolds,
    dedupe_claim,
    hashed_claim,
    stored_lead_view,
    value_sha256,
)
from .runtime import LeadsRuntime
from .schemas import (
    DECLARED_FIELDS,
    DEDUPE_FIELDS,
    TEST_FIELD,
    TRANSACTION_ID,
    LeadRejection,
    ValidLead,
    ping_values,
    pop_test_flag,
    schema_for,
    validate_lead,
)
from .sources import SourceConfig
from .suppression import lead_keys, ping_keys

logger = logging.getLogger("pingtree_leads")

FETCH_PARAMETERS = ("lead_id", "transaction_id")
#: A post's reference to its pre-ping (not lead data: never stored).
PING_FIELD = "ping_id"
#: How long a pre-ping holds its answer, seconds.
HOLD_FIELD = "hold_seconds"
#: Longest digit text read as a number (``hold_seconds``); longer is 400, never a 500.
MAX_NUMBER_TEXT = 20


def _active_source(runtime: LeadsRuntime, db_source_id: str) -> SourceConfig:
    source: SourceConfig = runtime.auth.current_user()
    if not source.is_active:
        logger.info("lead refused: source inactive, source=%s", db_source_id)
        raise ApiError(403)
    return source


def create_lead(runtime: LeadsRuntime, db_source_id: str) -> Response:
    """``POST|GET /api/lead/create/<db_source_id>`` once the key has been checked."""
    source = _active_source(runtime, db_source_id)
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    settings = runtime.settings
    in_query = _query_test_values()
    try:
        raw = lead_fields(request, settings.max_body_bytes)
    except ApiError as exc:
        # A body that is no set of fields: a refusal like any other, unless the query says test.
        if exc.code == 400 and not _test_flag({}, in_query)[0]:
            signals.send(signals.lead_rejected, app, source=source.public(),
                         lead_status=LeadStatus.INVALID_FIELD.value, fields=[])
        raise
    test, test_problems = _test_flag(raw, in_query)
    ping_id, ping_problems = _pop_ping_id(raw)
    checked = validate_lead(raw, schema_for(source.required_fields, settings, source.lenient,
                                            source.require_any_of, source.require_trusted_form_host))
    if test_problems or ping_problems:
        checked = _with_errors(checked, {**({TEST_FIELD: test_problems} if test_problems else {}),
                                         **({PING_FIELD: ping_problems} if ping_problems else {})})
    transaction_id = ""
    if isinstance(checked, ValidLead):
        transaction_id = checked.transaction_id or uuid.uuid4().hex
        if runtime.validators:
            refused = runtime.validators.run(checked.as_stored(transaction_id), source.public())
            if refused:
                checked = _with_errors(checked, refused)
    if isinstance(checked, LeadRejection):
        if not test:
            signals.send(signals.lead_rejected, app, source=source.public(), lead_status=checked.status.value,
                         fields=checked.as_data()["fields"])
        return rejection_response(checked, db_source_id, test)
    runtime.ensure_ready()  # the indexes, also for a test: its look-ups use them
    now = settings.clock()
    if source.suppression_lists:  # section 10: one read, only for a source that checks lists
        suppressed = _suppressed(runtime, source, checked, transaction_id, now, test)
        if suppressed is not None:
            return suppressed
    # Section 11: a read, only where no block decides; so a post meeting an erasure under way is
    # suppressed, never a duplicate of a lead about to be erased (the read after the insert stays
    # for the race; a test stores nothing and needs only this one).
    if erased_unblocked(runtime.database, settings, source, checked):
        return _refused_before_storage(runtime, source, checked, transaction_id, now, test)
    if test:
        result = runtime.repository.predict(source, checked, transaction_id, now, ping_id=ping_id)
    else:
        result = runtime.repository.store(source, checked, transaction_id, now, ping_id=ping_id)
        result = taken_back_if_erased(runtime.database, settings, source, checked, result)
    logger.info(
        "lead %s source=%s transaction_id=%s lead_id=%s%s%s",
        result.lead_status, db_source_id, transaction_id, result.lead_id, " (replay)" if result.replayed else "",
        " (test)" if test else "",
    )
    if not test:
        _notify(app, source, checked, result, now)
    return outcome_response(result, test)


def _suppressed(
    runtime: LeadsRuntime, source: SourceConfig, lead: ValidLead, transaction_id: str, now: datetime, test: bool,
) -> Response | None:
    """The answer for a lead on a list the source checks (201 ``suppressed``, nothing stored, no
    signal, no list named in the answer or the log), or None.  A retry of a transaction id this
    source already accepted is still its replay (or 409), as replays come before every other
    rule: one more indexed read, only on this path and only for a sent transaction id."""
    runtime.suppressions.ensure_ready(runtime.settings.create_indexes)
    if not runtime.suppressions.matching(source.suppression_lists, lead_keys(lead), now):
        return None
    return _refused_before_storage(runtime, source, lead, transaction_id, now, test)


def _refused_before_storage(
    runtime: LeadsRuntime, source: SourceConfig, lead: ValidLead, transaction_id: str, now: datetime, test: bool,
) -> Response:
    """201 ``suppressed`` for a lead refused before storage (a suppression list, an erased consumer),
    unless it retries a transaction id this source accepted: then its replay (or 409), as replays
    come before every other rule (one more indexed read, only for a sent transaction id)."""
    if lead.transaction_id is not None:
        replay = runtime.repository.replay_of(source, lead, transaction_id, now)
        if replay is not None:
            logger.info("lead %s source=%s transaction_id=%s lead_id=%s (replay)%s", replay.lead_status, source.id,
                        transaction_id, replay.lead_id, " (test)" if test else "")
            return outcome_response(replay, test)
    logger.info("lead suppressed source=%s transaction_id=%s%s", source.id, transaction_id, " (test)" if test else "")
    data = {"lead_status": LeadStatus.SUPPRESSED, "transaction_id": transaction_id, **({"test": True} if test else {})}
    return envelope(201, SUPPRESSED_MESSAGE, data)


def _query_test_values() -> list[Any] | str:
    """The ``xxTest`` values of a POST's query string (names decoded, in any case); for a GET
    the query string is the fields, read with them.  A query string that cannot be decoded
    is its problem (a str)."""
    query = request.query_string
    if request.method == "GET" or not query:
        return []
    try:
        fields = parse_urlencoded(query)
    except ApiError:
        return "The query string is not valid UTF-8."
    return [value for name, value in fields.items() if name.lower() == _TEST_NAME]


def _test_flag(raw: dict[str, Any], in_query: list[Any] | str) -> tuple[bool, list[str]]:
    """``xxTest`` wherever the request carries it, taken out of ``raw``: the fields (JSON, form,
    multipart, or a GET's query string) and a POST's query string (``in_query``); the name in
    any case.  (is a test, problems): sent more than once, the values must agree."""
    if isinstance(in_query, str):
        return False, [in_query]
    # A name repeated in the query string arrives as the list of its values (in a body, a list
    # may be a JSON array: that stays a value, and an invalid one).
    sent = [item for value in in_query for item in (value if isinstance(value, list) else [value])]
    sent += [raw.pop(name) for name in [name for name in raw if name.lower() == _TEST_NAME]]
    if not sent:
        return False, []
    answers = [pop_test_flag({TEST_FIELD: value}) for value in sent]
    problems = [problem for _, found in answers for problem in found]
    if not problems and len({flag for flag, _ in answers}) > 1:
        problems = ["Given more than once with different values."]
    return (answers[0][0] and not problems), problems


_TEST_NAME = TEST_FIELD.lower()


def _pop_ping_id(raw: dict[str, Any]) -> tuple[ObjectId | None, list[str]]:
    """Take ``ping_id`` out of the fields (it is not lead data): (the id, problems)."""
    value = raw.pop(PING_FIELD, None)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, []
    oid = parse_object_id(value.strip()) if isinstance(value, str) else None
    return (oid, []) if oid is not None else (None, ["Must be the 24-hex ping_id of a pre-ping."])


def _with_errors(checked: ValidLead | LeadRejection, errors: dict[str, list[str]]) -> LeadRejection:
    """``checked`` refused (also) for ``errors``: invalidField, unless a field is missing."""
    if isinstance(checked, LeadRejection):
        merged = {**checked.errors}
        for name, messages in errors.items():
            merged.setdefault(name, []).extend(messages)
        extra = [name for name in errors if name not in checked.fields]
        return LeadRejection(checked.status, [*checked.fields, *extra], merged, checked.message)
    return LeadRejection(LeadStatus.INVALID_FIELD, list(errors), dict(errors))


def _notify(app: Flask, source: SourceConfig, lead: ValidLead, result: StoreResult, now: datetime) -> None:
    """The signals of a stored request, after MongoDB acknowledged the write."""
    if result.lead_status is LeadStatus.ACCEPT and not result.replayed and result.lead_id is not None:
        if signals.listened(signals.lead_accepted):  # building the lead costs: only for a listener
            stored = stored_lead_view(lead, result.transaction_id, result.lead_id, now)
            signals.send(signals.lead_accepted, app, source=source.public(), lead=stored)
    elif result.lead_status is LeadStatus.DUPLICATE:
        signals.send(signals.lead_duplicate, app, source=source.public(), transaction_id=result.transaction_id,
                     matched_on=list(result.matched_on))


def rejection_response(rejection: LeadRejection, db_source_id: str, test: bool = False) -> Response:
    data = rejection.as_data()
    # Only standard names: an unknown field's name is the client's text and could hold anything.
    named = [f if f in DECLARED_FIELDS else "<extra>" for f in data["fields"]]
    logger.info("lead %s source=%s fields=%s%s%s", rejection.status, db_source_id, ",".join(named),
                " (truncated)" if data.get("truncated") else "", " (test)" if test else "")
    if test:
        data["test"] = True
    missing = rejection.status is LeadStatus.MISSING_FIELD
    message = rejection.message or (MISSING_FIELD_MESSAGE if missing else INVALID_FIELD_MESSAGE)
    return envelope(400, message, data)


def outcome_response(result: StoreResult, test: bool = False) -> Response:
    marker = {"test": True} if test else {}
    if result.lead_status is LeadStatus.CONFLICT:
        raise ApiError(409, data={"transaction_id": result.transaction_id, **marker})
    data: dict[str, Any] = {"lead_status": result.lead_status, "transaction_id": result.transaction_id}
    if result.lead_status is LeadStatus.SUPPRESSED:  # an erased consumer: nothing stored, no reason given
        return envelope(201, SUPPRESSED_MESSAGE, {**data, **marker})
    if result.lead_status is LeadStatus.CAPPED and result.retry_at is not None:  # caps.py: nothing stored
        return envelope(201, CAPPED_MESSAGE, {**data, "retry_at": iso_utc(result.retry_at), **marker})
    if result.lead_status is LeadStatus.DUPLICATE:
        data["matched_on"] = list(result.matched_on)
        return envelope(201, DUPLICATE_MESSAGE, {**data, **marker})
    if result.lead_id is not None:  # a test of a new lead has none: nothing was stored
        data["lead_id"] = result.lead_id
    if result.replayed:
        data["replayed"] = True
        return envelope(201, REPLAYED_MESSAGE, {**data, **marker})
    return envelope(201, ACCEPTED_MESSAGE, {**data, **marker})


def ping_lead(runtime: LeadsRuntime, db_source_id: str) -> Response:
    """``POST /api/lead/ping/<db_source_id>``: would this consumer be a duplicate, and hold the answer."""
    source = _active_source(runtime, db_source_id)
    raw = lead_fields(request, runtime.settings.max_body_bytes)
    test, test_problems = _test_flag(raw, _query_test_values())
    hold_seconds, hold_problems = _hold_seconds(raw.pop(HOLD_FIELD, None))
    candidates = [*source.dedupe_fields, *(f for f in DEDUPE_FIELDS if f not in source.dedupe_fields)]
    values = ping_values(raw, schema_for((), runtime.settings, source.lenient), candidates)
    errors = {**values.errors, **({HOLD_FIELD: hold_problems} if hold_problems else {}),
              **({TEST_FIELD: test_problems} if test_problems else {})}
    if not errors and not values.plain and not values.hashed:
        errors["_schema"] = ["A ping needs a dedupe value: email, mobile, a custom dedupe field, or <field>_sha256."]
    if errors:
        rejection = LeadRejection(LeadStatus.INVALID_FIELD, [n for n in errors if n != "_schema"], errors)
        logger.info("ping invalidField source=%s%s", db_source_id, " (test)" if test else "")
        return envelope(400, INVALID_FIELD_MESSAGE, {**rejection.as_data(), **({"test": True} if test else {})})
    # Only the source's own dedupe fields count; a source without dedupe holds nothing.
    claims = {field: dedupe_claim(source.id, field, values.plain[field]) for field in source.dedupe_fields
              if field in values.plain}
    claims.update({field: hashed_claim(source.id, field, values.hashed[field]) for field in source.dedupe_fields
                   if field in values.hashed})
    runtime.ensure_ready()
    now = runtime.settings.clock()
    if source.suppression_lists:  # section 10: before any hold; one read, only for a source with lists
        runtime.suppressions.ensure_ready(runtime.settings.create_indexes)
        if runtime.suppressions.matching(source.suppression_lists, ping_keys(values.plain, values.hashed), now):
            logger.info("ping suppressed source=%s%s", db_source_id, " (test)" if test else "")
            return envelope(200, PING_SUPPRESSED_MESSAGE,
                            {"lead_status": LeadStatus.SUPPRESSED, **({"test": True} if test else {})})
    # Erased values the source holds no claim for (blocks answer for the others): one read, before
    # anything is held.  A ping stores no lead, so reading first cannot let a lead through.
    keys = [] if runtime.settings.allow_after_erasure else [
        f"{field}:{value_sha256(values.plain[field])}" if field in values.plain else f"{field}:{values.hashed[field]}"
        for field in unblocked_fields(source) if field in values.plain or field in values.hashed]
    try:
        if any_key_erased(runtime.database, keys, runtime.settings.erasures_collection):
            result = PingResult(LeadStatus.SUPPRESSED)
        else:  # A test ping answers as usual and holds nothing.
            result = runtime.repository.ping(source, claims, 0 if test else hold_seconds, now,
                                             max_holds=runtime.settings.max_live_holds)
    except TooManyHolds as exc:
        wait = max(1, math.ceil((exc.retry_at - now).total_seconds()))
        logger.warning("ping refused: source=%s has its most live holds (%d); answered 429", db_source_id,
                       runtime.settings.max_live_holds)
        raise ApiError(429, headers={"Retry-After": str(wait)}) from None
    logger.info("ping %s source=%s held=%s%s", result.lead_status, db_source_id, result.ping_id is not None,
                " (test)" if test else "")
    data: dict[str, Any] = {"lead_status": result.lead_status, **({"test": True} if test else {})}
    if result.lead_status is LeadStatus.SUPPRESSED:  # an erased consumer: nothing held
        return envelope(200, PING_SUPPRESSED_MESSAGE, data)
    if result.lead_status is LeadStatus.DUPLICATE:
        data["matched_on"] = list(result.matched_on)
        return envelope(200, "A post of this consumer now would be a duplicate", data)
    if result.lead_status is LeadStatus.CAPPED and result.retry_at is not None:
        data["retry_at"] = iso_utc(result.retry_at)
        return envelope(200, PING_CAPPED_MESSAGE, data)
    if result.ping_id is not None and result.hold_expires_at is not None:
        data["ping_id"] = result.ping_id
        data["hold_expires_at"] = result.hold_expires_at.isoformat(timespec="milliseconds")
        return envelope(200, "Would be accepted; held for a post with this ping_id", data)
    return envelope(200, "A post of this consumer now would be accepted", data)


def _hold_seconds(value: Any) -> tuple[int, list[str]]:
    """``hold_seconds``: a whole number 0-300 (digit strings from forms too); absent or blank is 0."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return 0, []
    # ASCII digits, leading zeros allowed, at most MAX_NUMBER_TEXT of them: int() refuses
    # (ValueError) texts of over 4,300 digits, and no longer text is a hold anyone means.
    text = value.strip() if isinstance(value, str) else ""
    if text.isdigit() and text.isascii() and len(text) <= MAX_NUMBER_TEXT:
        value = int(text)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_HOLD_SECONDS:
        return value, []
    return 0, [f"Must be a whole number of seconds from 0 to {MAX_HOLD_SECONDS}."]


def fetch_lead(runtime: LeadsRuntime, db_source_id: str) -> Response:
    """``GET /api/lead/fetch/<db_source_id>?lead_id=…|transaction_id=…`` once the key has been checked."""
    _active_source(runtime, db_source_id)
    repeated = [name for name in FETCH_PARAMETERS if len(request.args.getlist(name)) > 1]
    if repeated:
        raise ApiError(400, f"Give {repeated[0]} once", {"fields": repeated,
                                                          "errors": {name: ["Given more than once."]
                                                                     for name in repeated}})
    given = {name: request.args.get(name, "").strip() for name in FETCH_PARAMETERS}
    given = {name: value for name, value in given.items() if value}
    if len(given) != 1:
        raise ApiError(400, "Give exactly one of lead_id and transaction_id",
                       {"fields": list(FETCH_PARAMETERS), "errors": {"_query": ["Give exactly one of lead_id and "
                                                                                 "transaction_id."]}})
    [(name, value)] = given.items()
    if name == "lead_id" and parse_object_id(value) is None:
        raise ApiError(400, "lead_id must be a 24-hex ObjectId",
                       {"fields": ["lead_id"], "errors": {"lead_id": ["Must be a 24-hex ObjectId."]}})
    if name == "transaction_id" and not TRANSACTION_ID.fullmatch(value):
        raise ApiError(400, "transaction_id is malformed",
                       {"fields": ["transaction_id"], "errors": {"transaction_id": ["Must be 1-128 of A-Z a-z 0-9 "
                                                                                    ". _ -"]}})
    found = runtime.repository.find(db_source_id, **{name: value}, now=runtime.settings.clock())
    # Never the looked-up value in the log: a transaction id may be a sender's internal reference.
    logger.info("lead fetch source=%s by=%s found=%s", db_source_id, name, found is not None)
    if found is None:
        raise ApiError(404, "No such lead for this database source")
    return envelope(200, "Lead found", {"lead": found})

