"""Every option of pingtree_leads and its default, in one place.

An option is resolved, first match wins, from: the keyword argument given to
``create_blueprint`` / ``PingtreeLeads.init_app``, the ``PINGTREE_LEADS_<NAME>``
key in ``app.config``, then the default below.  docs/configuration.md lists them.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

CONFIG_PREFIX = "PINGTREE_LEADS_"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclasses.dataclass(frozen=True)
class Settings:
    #: Collection[Any] holding the database sources (their config and key hashes).
    sources_collection: str = "database_sources"
    #: Collection[Any] holding accepted leads.
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
    #: Serve ``GET /api/lead/fetch/<db_source_id>`` (returns PII to whoever holds the key).
    allow_fetch: bool = False
    #: Most live pre-ping holds one source may have at once; a held ping over it is ``429``.
    max_live_holds: int = 10_000
    #: Route of the OpenAPI document, under the blueprint's prefix; None: not served.
    openapi_route: str | None = "/api/lead/openapi.json"
    #: Collection holding the suppression lists' entries (hashes only; docs/endpoint.md "Suppression lists").
    suppressions_collection: str = "suppressions"
    #: Collection[Any] holding the PII-free erasure records (SHA-256s, time, counts) of erase_consumer.
    erasures_collection: str = "erasures"
    #: Let a post or held ping of an erased consumer through (it takes the erasure's block over)
    #: instead of answering ``suppressed``.
    allow_after_erasure: bool = False
    #: Clock used for created_at, dedupe windows and key grace (tests replace it).
    clock: Callable[[], datetime] = utc_now

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def config_key(cls, name: str) -> str:
        return CONFIG_PREFIX + name.upper()

    @classmethod
    def resolve(cls, config: Mapping[str, Any] | None = None, **overrides: Any) -> Settings:
        """Build settings from keyword overrides, then ``app.config``, then defaults.

        Config values may be strings (environment variables): converted by the option's type.
        An unknown ``PINGTREE_LEADS_*`` key, or a value that does not convert, is a
        ``ValueError`` naming the key; an unknown keyword is a ``TypeError``.
        """
        unknown = set(overrides) - set(cls.names())
        if unknown:
            raise TypeError(f"unknown pingtree_leads option(s): {', '.join(sorted(unknown))}")
        if config is not None:
            cls._refuse_unknown_keys(config)
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for name in cls.names():
            key = cls.config_key(name)
            if name in overrides:
                values[name] = _convert(f"option {name!r}", overrides[name], hints[name])
            elif config is not None and key in config:
                values[name] = _convert(key, config[key], hints[name])
        settings = cls(**values)
        settings.check()
        return settings

    @classmethod
    def _refuse_unknown_keys(cls, config: Mapping[str, Any]) -> None:
        """Every key in the ``PINGTREE_LEADS_`` namespace, in any case, must be an option's exact key.

        ``app.config`` keys are case-sensitive, so ``PINGTREE_LEADS_allow_get`` is not
        ``PINGTREE_LEADS_ALLOW_GET``: left alone it would leave the default in force.
        A mapping under ``PINGTREE_LEADS`` itself is what ``from_prefixed_env`` makes of a double
        underscore (``FLASK_PINGTREE_LEADS__ALLOW_GET``), refused for the same reason; options
        are never read from a nested mapping.
        """
        keys = [cls.config_key(name) for name in cls.names()]
        known = set(keys)
        namespace = CONFIG_PREFIX.rstrip("_")
        bad = sorted(key for key in config if isinstance(key, str) and key not in known
                     and (key.upper().startswith(CONFIG_PREFIX)
                          or (key.upper() == namespace and isinstance(config[key], Mapping))))
        if not bad:
            return
        described = []
        for key in bad:
            if key.upper() in known:
                described.append(f"{key} (keys are case-sensitive: write {key.upper()})")
            elif key.upper() == namespace:
                described.append(f"{key} (from_prefixed_env makes a nested value of <PREFIX>_{namespace}__NAME: "
                                 "one underscore after LEADS)")
            else:
                described.append(key)
        raise ValueError(f"unknown config key(s) {', '.join(described)}; pingtree_leads knows "
                         f"{', '.join(keys)}")

    def as_config(self) -> dict[str, Any]:
        """The settings in force as ``PINGTREE_LEADS_*`` config keys (the clock left out: not configuration)."""
        return {self.config_key(name): getattr(self, name) for name in self.names() if name != "clock"}

    def check(self) -> None:
        def refuse(name: str, rule: str) -> None:
            raise ValueError(f"{name} ({self.config_key(name)}) {rule}")

        if self.max_body_bytes < 1:
            refuse("max_body_bytes", "must be at least 1")
        for name in ("source_cache_seconds", "source_cache_size", "max_extra_fields", "retry_after_seconds"):
            if getattr(self, name) < 0:
                refuse(name, "must not be negative")
        if self.max_live_holds < 1:
            refuse("max_live_holds", "must be at least 1")
        if self.extra_value_max_length < 1:
            refuse("extra_value_max_length", "must be at least 1")
        for name in ("sources_collection", "leads_collection", "suppressions_collection", "erasures_collection"):
            if not getattr(self, name):
                refuse(name, "must not be empty")
        if self.openapi_route is not None and not self.openapi_route.startswith("/"):
            refuse("openapi_route", "must start with '/' (or be None to not serve the document)")


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _convert(where: str, value: Any, hint: Any) -> Any:
    """``value`` as the option's type; strings (environment variables) are parsed.

    What ``app.config.from_prefixed_env()`` makes of a variable (it JSON-decodes the text)
    converts as the text itself would: the integers 0 and 1 are booleans, an integer is
    the text of a text option.  docs/configuration.md has the table.
    """
    if hint is bool:
        if isinstance(value, bool):
            return value
        if type(value) is int and value in (0, 1):  # "0"/"1" through from_prefixed_env
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(f"{where}: expected a boolean (true/false, 1/0, yes/no, on/off), got {value!r}")
    if hint is int or hint is float:
        number = _number(value)
        if number is None or (hint is int and not float(number).is_integer()):
            kind = "a whole number" if hint is int else "a number"
            raise ValueError(f"{where}: expected {kind}, got {value!r}")
        return int(number) if hint is int else float(number)
    if hint is str:
        return _text(where, value, "text")
    if hint == (str | None):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
            return None
        return _text(where, value, "text or None")
    if not callable(value):
        raise ValueError(f"{where}: expected a callable, got {type(value).__name__}")
    return value


def _text(where: str, value: Any, kind: str) -> str:
    """Text, or an integer as its digits (``from_prefixed_env`` reads "2024" as 2024)."""
    if isinstance(value, str):
        return value
    if type(value) is int:
        return str(value)
    raise ValueError(f"{where}: expected {kind}, got {value!r} (from_prefixed_env JSON-decodes values: "
                     "quote the text in the variable, or call from_prefixed_env(loads=str))")


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None
