"""Database sources as the library sees them: what ``create_source`` returns and
what the endpoint reads from a source document."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

from .caps import Cap, caps_from_document
from .mongo import as_utc


@dataclasses.dataclass(frozen=True)
class CreatedSource:
    """What ``create_source`` returns: the key is shown here once and never stored.

    ``repr()`` and ``str()`` never show the key (they end up in logs and tracebacks).
    """

    id: str
    api_key: str = dataclasses.field(repr=False)
    name: str

    def __str__(self) -> str:
        return f"database source {self.id} ({self.name})"


@dataclasses.dataclass(frozen=True)
class PublicSource:
    """A source as host validators and signal receivers see it: ``id`` is the 24-hex string."""

    id: str
    name: str
    is_active: bool
    required_fields: tuple[str, ...]
    dedupe_fields: tuple[str, ...]
    dedupe_window_days: float | None
    lenient: bool = False
    #: The suppression lists a lead of this source is checked against (section 10).
    suppression_lists: tuple[str, ...] = ()
    #: Days a lead is kept before MongoDB removes it (contract section 11); None: kept.
    retention_days: float | None = None
    #: Consent evidence (consent.py): one of these kinds must be present; the TrustedForm cert host rule.
    require_any_of: tuple[str, ...] = ()
    require_trusted_form_host: bool = False
    #: At most ``max`` new leads per window (caps.py); () = no cap.
    caps: tuple[Cap, ...] = ()


@dataclasses.dataclass(frozen=True)
class SourceConfig:
    """A source as the endpoint needs it, read from its document."""

    id: ObjectId
    name: str
    is_active: bool
    required_fields: tuple[str, ...]
    dedupe_fields: tuple[str, ...]
    dedupe_window_days: float | None
    key_hashes: tuple[tuple[str, datetime | None], ...]
    lenient: bool = False
    #: The suppression lists a lead of this source is checked against (section 10); () = none, no read.
    suppression_lists: tuple[str, ...] = ()
    #: Days a lead is kept (its ``expires_at`` is set at insert, a TTL index removes it); None: kept.
    retention_days: float | None = None
    require_any_of: tuple[str, ...] = ()
    require_trusted_form_host: bool = False
    caps: tuple[Cap, ...] = ()
    #: Erasable dedupe fields whose erasure blocks are not all written yet (a create_source or
    #: update_source under way, or interrupted): posts check their values as unblocked ones.
    erasure_blocks_pending: tuple[str, ...] = ()

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> SourceConfig:
        return cls(
            id=doc["_id"],
            name=doc.get("name", ""),
            is_active=bool(doc.get("is_active", True)),
            required_fields=tuple(doc.get("required_fields", ())),
            dedupe_fields=tuple(doc.get("dedupe_fields", ())),
            dedupe_window_days=doc.get("dedupe_window_days"),
            key_hashes=tuple(
                (k["hash"], as_utc(k["expires_at"]) if k.get("expires_at") else None) for k in doc.get("api_keys", ())
            ),
            lenient=bool(doc.get("lenient", False)),
            suppression_lists=tuple(doc.get("suppression_lists", ())),
            retention_days=doc.get("retention_days"),
            require_any_of=tuple(doc.get("require_any_of", ())),
            require_trusted_form_host=bool(doc.get("require_trusted_form_host", False)),
            caps=caps_from_document(doc.get("caps")),
            erasure_blocks_pending=tuple((doc.get("erasure_blocks_pending") or {}).get("fields", ())),
        )

    def public(self) -> PublicSource:
        """What host validators and signal receivers see of the source (no key hashes)."""
        return PublicSource(
            id=str(self.id), name=self.name, is_active=self.is_active, required_fields=self.required_fields,
            dedupe_fields=self.dedupe_fields, dedupe_window_days=self.dedupe_window_days, lenient=self.lenient,
            suppression_lists=self.suppression_lists,
            retention_days=self.retention_days,
            require_any_of=self.require_any_of, require_trusted_form_host=self.require_trusted_form_host,
            caps=self.caps,
        )

    def dedupe_cutoff(self, now: datetime) -> datetime | None:
        """Leads created before this moment no longer count as duplicates."""
        if self.dedupe_window_days is None:
            return None
        return now - timedelta(days=self.dedupe_window_days)

    def expires_at(self, created_at: datetime) -> datetime | None:
        """When a lead stored at ``created_at`` expires (None: kept for good)."""
        if self.retention_days is None:
            return None
        return created_at + timedelta(days=self.retention_days)
