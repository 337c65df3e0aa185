"""Consent evidence (contract section 10): the values a seller sends to prove the consumer agreed.

A lead may carry ``ip_address``, ``user_agent``, ``consent_text`` and/or
``consent_text_sha256``, ``consent_at``, ``page_url`` and ``jornaya_leadid``; they are
stored under ``consent`` in the lead (docs/endpoint.md, "Consent evidence").  This module
holds their rules as plain functions, below the schemas (which wrap them as marshmallow
fields), and the two source options: ``require_any_of`` (one of the named kinds of evidence
must be present) and ``require_trusted_form_host`` (``xxTrustedFormCertUrl`` must be on
``cert.trustedform.com``).

``ip_address`` is what the *seller* saw of the consumer: the request's own address (the
seller's server, or a proxy's ``X-Forwarded-For``) is never read for it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

#: The consent fields, by their request name (also their key under ``consent`` in the lead).
CONSENT_FIELDS: tuple[str, ...] = (
    "ip_address", "user_agent", "consent_text", "consent_text_sha256", "consent_at", "page_url",
    "jornaya_leadid",
)
#: The set, for the one look-up that tells whether a lead carries any consent field at all.
CONSENT_NAMES = frozenset(CONSENT_FIELDS)

IP_MAX_LENGTH = 45  # the longest IPv6 text, with an embedded IPv4 address
USER_AGENT_MAX_LENGTH = 2048
CONSENT_TEXT_MAX_LENGTH = 10_000
PAGE_URL_MAX_LENGTH = 2048

#: How far in the future ``consent_at`` may be: the seller's clock may run ahead of ours.
CONSENT_CLOCK_SKEW = timedelta(minutes=5)
#: The earliest ``consent_at`` taken: an earlier one is a placeholder (0001-01-01), not a moment.
CONSENT_AT_FLOOR = datetime(2000, 1, 1, tzinfo=timezone.utc)

#: RFC 3339 date-time: seconds required, a fraction of up to 9 digits, an offset required.
_CONSENT_AT = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))")
#: A Jornaya LeadiD token: 36 characters, hexadecimal in GUID form (8-4-4-4-12); stored upper-cased.
JORNAYA_LEADID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
SHA256_HEX = re.compile(r"[0-9A-Fa-f]{64}")

IP_RULE = ("Must be the consumer's IPv4 or IPv6 address (a host address: not unspecified, loopback, "
           "multicast or broadcast; no zone id), such as 203.0.113.7 or 2001:db8::7.")
CONSENT_AT_RULE = ("Must be an ISO 8601 date-time with seconds and a UTC offset, such as "
                   "2024-05-01T14:03:22Z or 2024-05-01T09:03:22-05:00.")
JORNAYA_RULE = "Must be a Jornaya LeadiD token: 36 characters, such as 0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9."
SHA256_RULE = "Must be the 64 hex characters of a SHA-256."
SHA256_MISMATCH = "Is not the SHA-256 of consent_text: send the hash of the text sent, or only one of them."
PAGE_URL_RULE = "Must be an http or https URL with a host name and no user name, such as https://example.com/quote."

#: The TrustedForm certificate host a ``require_trusted_form_host`` source insists on.
TRUSTED_FORM_CERT_HOST = "cert.trustedform.com"
TRUSTED_FORM_HOST_RULE = f"Must be a TrustedForm certificate URL on {TRUSTED_FORM_CERT_HOST}."

#: What ``require_any_of`` may name: ``trusted_form`` (the request's ``xxTrustedFormCertUrl``) and
#: each consent field; name -> the request field that satisfies it.
EVIDENCE: dict[str, str] = {"trusted_form": "xxTrustedFormCertUrl", **{name: name for name in CONSENT_FIELDS}}


_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def canonical_ip(value: str) -> str | None:
    """The consumer's address in its canonical text (IPv6 compressed and lower-case, RFC 5952;
    an IPv4-mapped IPv6 address as its IPv4 address: one consumer, one spelling), or None when
    ``value`` is no host address."""
    if "%" in value or len(value) > IP_MAX_LENGTH:
        return None  # a zone id names an interface of the seller's machine, never the consumer's
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif address in _IPV4_COMPATIBLE and int(address) > 1:
            return None  # ::a.b.c.d, deprecated since RFC 4291: no consumer's address looks so
        elif address in _NAT64:  # 64:ff9b::a.b.c.d: the IPv4 address a NAT64 gateway stands for
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
            if embedded.is_loopback or embedded.is_unspecified or embedded.is_multicast:
                return None
    if (address.is_unspecified or address.is_loopback or address.is_multicast
            or address == ipaddress.IPv4Address("255.255.255.255")):
        return None  # never a consumer's address as a web server sees it: a seller's bug
    return str(address)


def parse_consent_at(value: str, now: datetime) -> datetime | str:
    """``consent_at`` as an aware UTC datetime at the precision BSON stores (milliseconds), or
    the problem (never repeating the value).  Not before ``CONSENT_AT_FLOOR``, not after ``now``
    plus ``CONSENT_CLOCK_SKEW``."""
    match = _CONSENT_AT.fullmatch(value)
    if match is None:
        return CONSENT_AT_RULE
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    try:
        if zulu:
            offset = timedelta(0)
        elif int(off_m) > 59:
            raise ValueError
        else:
            offset = (1 if sign == "+" else -1) * timedelta(hours=int(off_h), minutes=int(off_m))
        micro = int((fraction or "").ljust(6, "0")[:6])
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro,
                          tzinfo=timezone(offset)).astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return CONSENT_AT_RULE  # no such day or time (2024-02-30, 25:00, an offset of 24 hours)
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    if moment > now + CONSENT_CLOCK_SKEW:
        return "Must not be in the future."
    if moment < CONSENT_AT_FLOOR:
        return "Must not be before 2000-01-01."
    return moment


def text_sha256(text: str) -> str:
    """The lower-case hex SHA-256 of ``text`` as stored (NFC, trimmed), in UTF-8."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def with_text_hash(consent: dict[str, Any]) -> dict[str, list[str]]:
    """Complete ``consent`` in place: the text's SHA-256 is stored with it (a buyer compares it
    with the wording it approved); a hash sent with the text must be that hash.  The problems."""
    text = consent.get("consent_text")
    if text is None:
        return {}
    digest = text_sha256(text)
    sent = consent.get("consent_text_sha256")
    if sent is not None and sent != digest:
        return {"consent_text_sha256": [SHA256_MISMATCH]}
    consent["consent_text_sha256"] = digest
    return {}


def on_trusted_form_host(url: str) -> bool:
    """True if ``url`` (already an https URL by the TrustedForm URL rule) is on the certificate
    host itself: the host name exactly (any case; a final dot is another host for certificates),
    no port other than https's own."""
    try:
        parts = urlsplit(url)
        return parts.hostname == TRUSTED_FORM_CERT_HOST and parts.port in (None, 443)
    except ValueError:
        return False


def check_require_any_of(names: Iterable[Any]) -> list[str]:
    """A source's ``require_any_of``: names from ``EVIDENCE`` (any case), without repeats.  One
    string is a ``TypeError`` (never the list of its letters); an unknown name a ``ValueError``."""
    if isinstance(names, (str, bytes, bytearray, memoryview)):
        raise TypeError("require_any_of is a list of evidence names, not one string "
                        "(write require_any_of=['trusted_form'] for one, [] for none)")
    try:
        given = list(names)
    except TypeError:
        raise TypeError(f"require_any_of is a list of evidence names, not {type(names).__name__}") from None
    folded = [name.lower() if isinstance(name, str) and name.isascii() else name for name in given]
    unknown = [name for name in folded if name not in EVIDENCE]
    if unknown:
        raise ValueError(f"require_any_of may only name {', '.join(EVIDENCE)}; got {', '.join(map(repr, unknown))}")
    return list(dict.fromkeys(folded))


def missing_evidence(data: Mapping[str, Any], require_any_of: tuple[str, ...]) -> list[str]:
    """The request names of the alternatives when ``data`` (a lead's prepared fields) carries none
    of the evidence ``require_any_of`` names; [] when it carries one (valid or not: an invalid
    value is that field's own refusal) or when the source requires none."""
    if not require_any_of:
        return []
    wanted = [EVIDENCE[name] for name in require_any_of]
    return [] if any(name in data for name in wanted) else wanted


def one_of_message(names: list[str]) -> str:
    """The refusal of a lead without any of the required evidence."""
    return f"One of {', '.join(names)} is required." if len(names) > 1 else "Is required."
