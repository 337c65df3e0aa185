"""The views behind the bearer key: what a request does once its source is known.

``create_lead``: active (403) -> body (413/415/400, http.py) -> fields (400,
schemas.py) -> storage (201/409/503, repository.py) -> the answer (errors.py).
Host validators and signals (the host app's hooks) belong between the fields and
storage, and after storage; a fetch view sits beside ``create_lead``.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from flask import Response, request

from .errors import (
    ACCEPTED_MESSAGE,
    DUPLICATE_MESSAGE,
    INVALID_FIELD_MESSAGE,
    MISSING_FIELD_MESSAGE,
    REPLAYED_MESSAGE,
    ApiError,
    LeadStatus,
    envelope,
)
from .http import lead_fields
from .repository import StoreResult
from .runtime import LeadsRuntime
from .schemas import DECLARED_FIELDS, LeadRejection, schema_for, validate_lead
from .sources import SourceConfig

logger = logging.getLogger("pingtree_leads")


def create_lead(runtime: LeadsRuntime, db_source_id: str) -> Response:
    """``POST|GET /api/lead/create/<db_source_id>`` once the key has been checked."""
    source: SourceConfig = runtime.auth.current_user()
    if not source.is_active:
        logger.info("lead refused: source inactive, source=%s", db_source_id)
        raise ApiError(403)
    settings = runtime.settings
    raw = lead_fields(request, settings.max_body_bytes)
    checked = validate_lead(raw, schema_for(source.required_fields, settings))
    if isinstance(checked, LeadRejection):
        return rejection_response(checked, db_source_id)
    transaction_id = checked.transaction_id or uuid.uuid4().hex
    runtime.ensure_ready()
    result = runtime.repository.store(source, checked, transaction_id, settings.clock())
    logger.info(
        "lead %s source=%s transaction_id=%s lead_id=%s%s",
        result.lead_status, db_source_id, transaction_id, result.lead_id, " (replay)" if result.replayed else "",
    )
    return outcome_response(result)


def rejection_response(rejection: LeadRejection, db_source_id: str) -> Response:
    data = rejection.as_data()
    # Only standard names: an unknown field's name is the client's text and could hold anything.
    named = [f if f in DECLARED_FIELDS else "<extra>" for f in data["fields"]]
    logger.info("lead %s source=%s fields=%s%s", rejection.status, db_source_id, ",".join(named),
                " (truncated)" if data.get("truncated") else "")
    missing = rejection.status is LeadStatus.MISSING_FIELD
    return envelope(400, MISSING_FIELD_MESSAGE if missing else INVALID_FIELD_MESSAGE, data)


def outcome_response(result: StoreResult) -> Response:
    if result.lead_status is LeadStatus.CONFLICT:
        raise ApiError(409, data={"transaction_id": result.transaction_id})
    data: dict[str, Any] = {"lead_status": result.lead_status, "transaction_id": result.transaction_id}
    if result.lead_status is LeadStatus.DUPLICATE:
        data["matched_on"] = list(result.matched_on)
        return envelope(201, DUPLICATE_MESSAGE, data)
    data["lead_id"] = result.lead_id
    if result.replayed:
        data["replayed"] = True
        return envelope(201, REPLAYED_MESSAGE, data)
    return envelope(201, ACCEPTED_MESSAGE, data)
