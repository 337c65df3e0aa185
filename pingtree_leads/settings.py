"""Every option of pingtree_leads and its default, in one place.

An option is resolved, first match wins, from: the keyword argument given to
``create_blueprint`` / ``PingtreeLeads.init_app``, the ``PINGTREE_LEADS_<NAME>``
key in ``app.config``, then the default below.  docs/configuration.md lists them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

CONFIG_PREFIX = "PINGTREE_LEADS_"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclasses.dataclass(frozen=True)
class Settings:
    #: Collection holding the database sources (their config and key hashes).
    sources_collection: str = "database_sources"
    #: Collection holding accepted leads.
    leads_collection: str = "leads"
    #: Accept ``GET`` with the fields in the query string (puts PII into URLs).
    allow_get: bool = True
    #: Largest request body accepted, in bytes; larger bodies get 413.
    max_body_bytes: int = 64 * 1024
    #: How long a source document is trusted from the in-process cache, seconds.
    source_cache_seconds: float = 5.0
    #: Most source documents kept in the cache.
    source_cache_size: int = 10_000
    #: Also accept ``.``, ``-`` and ``'`` in city names ("St. Louis").
    city_allow_punctuation: bool = False
    #: Most extra (non-standard) fields in one lead.
    max_extra_fields: int = 50
    #: Longest text value of an extra field, in characters.
    extra_value_max_length: int = 1000
    #: Value of the ``Retry-After`` header on 503 answers, seconds.
    retry_after_seconds: int = 2
    #: Create the unique indexes on first use; if False, only check they exist.
    create_indexes: bool = True
    #: Route of the OpenAPI document, under the blueprint's prefix; None: not served.
    openapi_route: str | None = "/api/lead/openapi.json"
    #: Clock used for created_at, dedupe windows and key grace (tests replace it).
    clock: Callable[[], datetime] = utc_now

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def resolve(cls, config: Mapping[str, Any] | None = None, **overrides: Any) -> Settings:
        """Build settings from keyword overrides, then ``app.config``, then defaults."""
        unknown = set(overrides) - set(cls.names())
        if unknown:
            raise TypeError(f"unknown pingtree_leads option(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name in cls.names():
            key = CONFIG_PREFIX + name.upper()
            if name in overrides:
                values[name] = overrides[name]
            elif config is not None and key in config:
                values[name] = config[key]
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if self.max_body_bytes < 1:
            raise ValueError("max_body_bytes must be at least 1")
        if self.source_cache_seconds < 0 or self.source_cache_size < 0:
            raise ValueError("source cache settings must not be negative")
        if self.max_extra_fields < 0 or self.extra_value_max_length < 1:
            raise ValueError("extra field limits must be positive")
        if not self.sources_collection or not self.leads_collection:
            raise ValueError("collection names must not be empty")
