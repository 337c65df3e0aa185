"""Intake compatibility (contract section 5): aliases for every source, normalisation for lenient ones.

A sender moving from Pingtree or a peer must not lose leads to cosmetic differences:

* aliases, always on: ``phone`` is ``mobile``, ``zip`` is ``zip_code``, ``dob`` is
  ``date_of_birth``, and Jornaya's own names for its token, ``leadid_token`` (its hidden
  form input) and ``universal_leadid`` (the older one), are ``jornaya_leadid`` (a body with
  two spellings of one field is refused);
* a *lenient* source (``create_source(..., lenient=True)``) normalises before the field
  rules run: a US phone number with punctuation, spaces or a leading ``+1``/``1`` becomes
  its 10 digits (Unicode spaces and dashes count as their ASCII forms, in a ZIP+4 too);
  ZIP+4 becomes the ZIP (the +4 is kept as ``extra.zip_plus4``; a ``zip_plus4`` sent too
  must agree with it and is never overwritten); a state's
  full name or common abbreviation (``Tex.``, ``N.Y.``) becomes its USPS code;
  ``MM/DD/YYYY`` and ``M/D/YYYY`` become ``YYYY-MM-DD`` (a day-first date is then no real
  date, or another one: US order is the only one read).  What does not normalise is left
  as sent, and the strict rule then says what is wrong with it.

Dedupe and replay see the normalised values, so ``(512) 555-0143`` and ``5125550143``
are one consumer.  Phone numbers are North American (the contract's 10 digits), so a
regular expression does the job exactly; the ``phonenumbers`` package would add ~40 µs
per lead for rules that cannot apply here.
"""

from __future__ import annotations

import re
from typing import Any

#: The extra field a lenient source keeps the +4 of a ZIP+4 in.
PLUS4_FIELD = "zip_plus4"
PLUS4_DISAGREES = ("Disagrees with the +4 of the ZIP+4 sent as zip_code: send the same 4 digits in both, "
                   "or only one of them.")

#: alias -> field, always on.
ALIASES: dict[str, str] = {"phone": "mobile", "zip": "zip_code", "dob": "date_of_birth",
                           "leadid_token": "jornaya_leadid", "universal_leadid": "jornaya_leadid"}

# Digits, spaces and ( ) . - with an optional leading +: what people write phone numbers with.
_PHONE = re.compile(r"\+?[0-9 ().\-]{10,24}")
_ZIP_PLUS4 = re.compile(r"([0-9]{5})[ -]?([0-9]{4})")
_US_DATE = re.compile(r"([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})")
_SPACES = re.compile(r"\s+")

#: Unicode space separators (category Zs) other than the ASCII space: the no-break space
#: (U+00A0), the narrow no-break space (U+202F), the en, em, thin, figure... spaces.
UNICODE_SPACES = "\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"
#: Dashes that stand for a hyphen-minus in a number: hyphen (U+2010), non-breaking hyphen (U+2011),
#: figure dash (U+2012), en dash (U+2013), em dash (U+2014), horizontal bar (U+2015), minus sign
#: (U+2212), small and full-width hyphen-minus (U+FE63, U+FF0D).
UNICODE_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d"
_AS_ASCII = str.maketrans({**dict.fromkeys(UNICODE_SPACES, " "), **dict.fromkeys(UNICODE_DASHES, "-")})

#: Full names of the USPS codes the state rule accepts (armed-forces codes have none).
STATE_NAMES: dict[str, str] = {
    "alabama": "AL", "alaska": "AK", "arizona": "AZ", "arkansas": "AR", "california": "CA", "colorado": "CO",
    "connecticut": "CT", "delaware": "DE", "district of columbia": "DC", "florida": "FL", "georgia": "GA",
    "hawaii": "HI", "idaho": "ID", "illinois": "IL", "indiana": "IN", "iowa": "IA", "kansas": "KS",
    "kentucky": "KY", "louisiana": "LA", "maine": "ME", "maryland": "MD", "massachusetts": "MA", "michigan": "MI",
    "minnesota": "MN", "mississippi": "MS", "missouri": "MO", "montana": "MT", "nebraska": "NE", "nevada": "NV",
    "new hampshire": "NH", "new jersey": "NJ", "new mexico": "NM", "new york": "NY", "north carolina": "NC",
    "north dakota": "ND", "ohio": "OH", "oklahoma": "OK", "oregon": "OR", "pennsylvania": "PA",
    "rhode island": "RI", "south carolina": "SC", "south dakota": "SD", "tennessee": "TN", "texas": "TX",
    "utah": "UT", "vermont": "VT", "virginia": "VA", "washington": "WA", "west virginia": "WV",
    "wisconsin": "WI", "wyoming": "WY", "american samoa": "AS", "guam": "GU", "northern mariana islands": "MP",
    "puerto rico": "PR", "virgin islands": "VI", "u.s. virgin islands": "VI", "us virgin islands": "VI",
    "federated states of micronesia": "FM", "micronesia": "FM", "marshall islands": "MH", "palau": "PW",
}


#: Common (AP style and postal-era) abbreviations, matched without case, dots or spaces.
STATE_ABBREVIATIONS: dict[str, str] = {
    "ala": "AL", "ariz": "AZ", "ark": "AR", "calif": "CA", "cal": "CA", "colo": "CO", "conn": "CT", "del": "DE",
    "fla": "FL", "ga": "GA", "ill": "IL", "ind": "IN", "kan": "KS", "kans": "KS", "ky": "KY", "la": "LA",
    "md": "MD", "mass": "MA", "mich": "MI", "minn": "MN", "miss": "MS", "mo": "MO", "mont": "MT", "neb": "NE",
    "nebr": "NE", "nev": "NV", "nh": "NH", "nj": "NJ", "nm": "NM", "ny": "NY", "nc": "NC", "nd": "ND",
    "okla": "OK", "ore": "OR", "oreg": "OR", "pa": "PA", "penn": "PA", "penna": "PA", "ri": "RI", "sc": "SC",
    "sd": "SD", "tenn": "TN", "tex": "TX", "vt": "VT", "va": "VA", "wash": "WA", "wva": "WV", "wis": "WI",
    "wisc": "WI", "wyo": "WY", "dc": "DC", "pr": "PR",
}


def apply_aliases(data: dict[str, Any]) -> dict[str, list[str]]:
    """Rename aliases in place; the problems of a body that sends two spellings of one field
    (reported under each alias sent beside the field or beside another alias of it)."""
    problems: dict[str, list[str]] = {}
    renamed: dict[str, str] = {}  # field -> the alias it was sent as
    for alias, field in ALIASES.items():
        if alias in data:
            if field in renamed:
                problems[alias] = [f"Sent together with {renamed[field]}, another name for {field}: send one."]
                del data[alias]
            elif field in data:
                problems[alias] = [f"Sent together with {field}, which it is another name for: send one."]
                del data[alias]
            else:
                data[field] = data.pop(alias)
                renamed[field] = alias
    return problems


def ascii_separators(value: str) -> str:
    """``value`` with Unicode spaces and dashes written as the ASCII space and hyphen-minus (a
    copy to match against: what does not normalise is left as sent)."""
    return value if value.isascii() else value.translate(_AS_ASCII)


def normalise(data: dict[str, Any]) -> dict[str, list[str]]:
    """A lenient source's normalisation, in place (text already NFC-normalised and trimmed);
    returns the problems it found (a sent ``zip_plus4`` that disagrees with the ZIP+4)."""
    problems: dict[str, list[str]] = {}
    mobile = data.get("mobile")
    if isinstance(mobile, str):
        mobile = ascii_separators(mobile)
    if isinstance(mobile, str) and _PHONE.fullmatch(mobile):
        digits = re.sub(r"[^0-9]", "", mobile)
        if len(digits) == 11 and digits.startswith("1"):
            digits = digits[1:]
        if len(digits) == 10 and (not mobile.startswith("+") or mobile.startswith("+1")):
            data["mobile"] = digits
    elif isinstance(mobile, int) and not isinstance(mobile, bool) and 10**10 <= mobile < 2 * 10**10:
        data["mobile"] = str(mobile)[1:]  # 1 + 10 digits as a JSON number
    zip_code = data.get("zip_code")
    if isinstance(zip_code, str):
        plus4 = _ZIP_PLUS4.fullmatch(ascii_separators(zip_code))
        if plus4:
            sent = data.get(PLUS4_FIELD)
            if isinstance(sent, int) and not isinstance(sent, bool):
                sent = str(sent)
            data["zip_code"] = plus4.group(1)
            if sent is None or sent == plus4.group(2):
                data[PLUS4_FIELD] = plus4.group(2)
            else:  # never overwritten: the sender said two different things
                problems[PLUS4_FIELD] = [PLUS4_DISAGREES]
    state = data.get("state")
    if isinstance(state, str) and len(state) > 2:
        code = STATE_NAMES.get(_SPACES.sub(" ", state).lower()) or STATE_ABBREVIATIONS.get(
            re.sub(r"[.\s]", "", state).lower())
        if code:
            data["state"] = code
    born = data.get("date_of_birth")
    if isinstance(born, str):
        us_date = _US_DATE.fullmatch(born)
        if us_date:
            month, day, year = us_date.groups()
            data["date_of_birth"] = f"{year}-{int(month):02d}-{int(day):02d}"
    return problems
