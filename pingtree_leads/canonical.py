"""Canonical text: one consumer, one spelling (contract section 3).

Every text value is NFC-normalised before it is checked, stored, fingerprinted
or hashed, so a city typed with a combining accent is the same city.  Control
characters and bidirectional overrides are refused in any text (they spoof
names in dashboards).  An email address may hold no invisible character at
all, and its domain is compared in IDNA (A-label) form, so full-width,
upper-case, Unicode and ``xn--`` spellings of one domain are one mailbox.

The ``idna`` package does the domain mapping: it implements IDNA 2008 with
UTS #46 (full-width and compatibility forms, case, the ideographic full stop),
where the standard library's ``idna`` codec is IDNA 2003 (it maps ``ß`` to
``ss``, a different domain today) and refuses ``xn--`` labels it cannot
round-trip instead of validating them.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

import idna

#: C0 and C1 controls (and DEL): never part of a name, address or id.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: Bidirectional embeddings, overrides (U+202A-U+202E) and isolates (U+2066-U+2069).
BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
#: Lone surrogates: JSON allows them, BSON cannot store them.
SURROGATES = re.compile("[\ud800-\udfff]")

#: Unicode's Default_Ignorable_Code_Point ranges (DerivedCoreProperties.txt) that are not
#: format characters (category Cf, checked separately): they render as nothing.
_IGNORABLE_NOT_CF = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u3164\ufe00-\ufe0f\uffa0\U000e0100-\U000e01ef]"
)
#: A plain ASCII domain: its canonical form is its lower-case form (no IDNA round trip needed).
_PLAIN_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?")


def nfc(value: str) -> str:
    """``value`` in Unicode Normalization Form C (ASCII is returned as is, at no cost)."""
    return value if value.isascii() else unicodedata.normalize("NFC", value)


def text_character_problem(value: str) -> str | None:
    """Characters no text value may hold; None if there are none."""
    if value.isascii():
        return "Contains control characters." if CONTROL_CHARACTERS.search(value) else None
    if SURROGATES.search(value):
        return "Not valid Unicode."
    if CONTROL_CHARACTERS.search(value):
        return "Contains control characters."
    if BIDI_CONTROLS.search(value):
        return "Contains bidirectional control characters."
    return None


def has_invisible(value: str) -> bool:
    """True if ``value`` holds a default-ignorable or format (Cf) character."""
    if value.isascii():
        return False
    return bool(_IGNORABLE_NOT_CF.search(value)) or any(unicodedata.category(ch) == "Cf" for ch in value)


def canonical_local_part(local: str) -> str | None:
    """The local part as compared: case and compatibility forms folded; None if it cannot be one.

    ASCII is lower-cased.  Other text gets the UTS #46 mapping the domain gets, then NFC:
    case is folded (``Σ`` and ``σ`` are one letter; ``ς`` and ``ß`` stay themselves, as in
    IDNA 2008) and full-width, ligature, superscript and half-width forms become their
    plain letters (``ａｂｃ``, ``ﬁ``, ``²`` are ``abc``, ``fi``, ``2``).  A quoted local part is refused: it is
    another spelling of the unquoted one that mail systems handle inconsistently.
    """
    if local.startswith('"'):
        return None
    if local.isascii():
        return local.lower()
    try:
        return nfc(idna.uts46_remap(local, std3_rules=False, transitional=False))
    except (idna.IDNAError, UnicodeError, ValueError):
        return None


def canonical_domain(domain: str) -> str | None:
    """The domain's IDNA A-label form, lower-case; None if it is no valid domain.

    ``ｅｘａｍｐｌｅ.com``, ``EXAMPLE.com`` and ``example.com`` all give
    ``example.com``; ``bücher.de`` and ``xn--bcher-kva.de`` both give ``xn--bcher-kva.de``.
    An IPv4 address literal is written in its one standard form (``[192.0.2.1]``); an
    IPv4 literal with leading zeros and any other literal are refused.
    """
    lowered = domain.lower()
    if lowered.startswith("["):
        try:
            return f"[{ipaddress.IPv4Address(lowered[1:-1])}]" if lowered.endswith("]") else None
        except ValueError:
            return None
    if _PLAIN_DOMAIN.fullmatch(lowered) and "--" not in lowered and ".." not in lowered:
        return lowered  # what the UTS #46 mapping would give, without its cost
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        return None


def canonical_email(value: str) -> str | None:
    """The address as stored and compared, or None if it cannot be one mailbox.

    The local part is folded by ``canonical_local_part`` (lower-cased, as the contract
    stores it); the domain is its IDNA A-label form.  ``value`` is NFC-normalised, trimmed and free of invisible
    characters already (``has_invisible``).
    """
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        return None
    folded = canonical_local_part(local)
    ascii_domain = canonical_domain(domain)
    if folded is None or ascii_domain is None:
        return None
    return f"{folded}@{ascii_domain}"
