"""The lead's fields and their rules, as marshmallow schemas.

``validate_lead`` is the one entry point: it takes the raw fields of a request
(JSON object, form or query string, already parsed to a dict) and returns a
``ValidLead`` or a ``LeadRejection`` naming every problem.  Error messages
never repeat the submitted value, so they can be returned and logged safely.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlsplit

import idna
from marshmallow import INCLUDE, Schema, ValidationError, fields, missing, post_load, validate, validates_schema

from .canonical import canonical_email, has_invisible, nfc, text_character_problem
from .consent import (
    CONSENT_FIELDS,
    CONSENT_NAMES,
    CONSENT_TEXT_MAX_LENGTH,
    IP_MAX_LENGTH,
    IP_RULE,
    JORNAYA_LEADID,
    JORNAYA_RULE,
    PAGE_URL_MAX_LENGTH,
    PAGE_URL_RULE,
    SHA256_HEX,
    SHA256_RULE,
    TRUSTED_FORM_HOST_RULE,
    USER_AGENT_MAX_LENGTH,
    canonical_ip,
    missing_evidence,
    on_trusted_form_host,
    one_of_message,
    parse_consent_at,
    with_text_hash,
)
from .errors import LeadStatus
from .lenient import ALIASES, PLUS4_FIELD, apply_aliases, normalise
from .settings import Settings

#: The standard lead fields of the original API (a body needs at least one).
LEAD_FIELDS: tuple[str, ...] = (
    "first_name",
    "last_name",
    "email",
    "mobile",
    "address",
    "city",
    "state",
    "zip_code",
    "date_of_birth",
)
#: Fields a source may list as required.
REQUIRABLE_FIELDS = LEAD_FIELDS
#: The fields a source deduplicates on unless it says otherwise.
DEDUPE_FIELDS: tuple[str, ...] = ("email", "mobile")
#: Most dedupe fields one source may name (each is one index key per stored lead).
MAX_DEDUPE_FIELDS = 5
#: TrustedForm request names -> keys under ``trusted_form`` in the stored lead.
TRUSTED_FORM_FIELDS: dict[str, str] = {
    "xxTrustedFormToken": "token",
    "xxTrustedFormCertUrl": "cert_url",
    "xxTrustedFormPingUrl": "ping_url",
}

#: USPS codes: the 50 states, DC, the territories, the freely associated
#: states and the armed-forces codes.
US_STATES = frozenset(
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV "
    "NH NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY "
    "AS GU MP PR VI FM MH PW AA AE AP".split()
)

EXTRA_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
TRANSACTION_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_DIGITS = re.compile(r"[0-9]+")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_INT64 = (-(2**63), 2**63 - 1)

REQUIRED_MESSAGE = "Is required."
#: The state's refusal: what is expected, with an example (never the value sent).
STATE_RULE = "Must be a 2-letter USPS state or territory code, such as TX."
DATE_RULE = "Must be a real date in YYYY-MM-DD form, such as 1990-01-31."
#: "Letters" in the OpenAPI patterns: JSON Schema regexes are not Unicode-aware (no x or ÷).
LATIN_LETTERS = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f"


def text_problem(value: str, max_length: int) -> str | None:
    """The rule every text value obeys, standard or extra; None if it is fine."""
    if len(value) > max_length:
        return f"Longer than {max_length} characters."
    problem = text_character_problem(value)
    if problem:
        return problem
    if value.startswith("$"):
        return "Must not start with '$'."
    return None


class Text(fields.Field[str]):
    """A non-empty string (already trimmed) of at most ``max_length`` characters."""

    default_error_messages = {
        "type": "Must be a string.",
        "required": REQUIRED_MESSAGE,
        "bad": "{problem}",
    }

    def __init__(self, max_length: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_length = max_length

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise self.make_error("type")
        problem = text_problem(value, self.max_length)
        if problem:
            raise self.make_error("bad", problem=problem)
        return self.check(value)

    def check(self, value: str) -> str:
        """Field-specific rule and normalisation; the plain text rule by default."""
        return value

    def openapi(self) -> dict[str, Any]:
        """The rule as OpenAPI schema properties (read by openapi.py)."""
        return {"type": "string", "minLength": 1, "maxLength": self.max_length}


class Digits(Text):
    """Exactly ``count`` ASCII digits; a JSON integer is accepted if it renders so."""

    def __init__(self, count: int, example: str, lenient_rule: str | None = None, **kwargs: Any) -> None:
        super().__init__(max_length=count, **kwargs)
        self.count = count
        #: The refusal says what is expected, with an example (never the value sent).
        self.rule = f"Must be exactly {count} digits, such as {example}."
        #: What a lenient source accepts, said in its refusal (what normalisation could not fix).
        self.lenient_rule = lenient_rule

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not _DIGITS.fullmatch(value) or len(value) != self.count:
            parent = self.parent
            if self.lenient_rule and isinstance(parent, LeadSchema) and parent.lenient:
                raise self.make_error("bad", problem=self.lenient_rule)
            raise self.make_error("bad", problem=self.rule)
        return value

    def openapi(self) -> dict[str, Any]:
        return {"type": "string", "pattern": f"^[0-9]{{{self.count}}}$"}

    def openapi_integer(self) -> dict[str, Any]:
        """The JSON integers accepted in place of the digit string."""
        return {"type": "integer", "minimum": 10 ** (self.count - 1), "maximum": 10**self.count - 1}


class Email(Text):
    _validator = validate.Email()

    def check(self, value: str) -> str:
        # One mailbox, one spelling: no invisible characters, the domain in IDNA form (canonical.py).
        if has_invisible(value):
            raise self.make_error("bad", problem="Contains invisible characters.")
        if value.startswith('"'):
            raise self.make_error("bad", problem="Quoted local parts are not accepted.")
        canonical = canonical_email(value)
        try:
            if canonical is None:
                raise ValidationError("no mailbox")
            self._validator(canonical)
        except ValidationError:
            raise self.make_error("bad", problem="Not a valid email address.") from None
        if len(canonical) > self.max_length:  # an IDNA domain is longer than its Unicode spelling
            raise self.make_error("bad", problem=f"Longer than {self.max_length} characters.")
        return canonical

    def openapi(self) -> dict[str, Any]:
        return {**super().openapi(), "format": "email"}


#: A letter, then any combining marks NFC could not fold into it (a city stays "letters").
_LETTER = "[^\\W\\d_][\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]*"


_SPACE_RUNS = re.compile(" {2,}")
#: ASCII letters in words with single spaces: a subset of both city rules.
_ASCII_CITY = re.compile("[A-Za-z]+(?: [A-Za-z]+)*")


class City(Text):
    _plain = re.compile(f"(?:{_LETTER})+(?: (?:{_LETTER})+)*")
    # Letters and separators never overlap, so matching stays linear (no catastrophic backtracking).
    _punctuated = re.compile(f"(?:{_LETTER})+(?:[ .'-]+(?:{_LETTER})+)*\\.?")

    def check(self, value: str) -> str:
        if _ASCII_CITY.fullmatch(value):
            return value  # the usual city: both rules accept it as it is
        value = _SPACE_RUNS.sub(" ", value)  # "New  York" is New York, and stored so
        wide = _settings(self).city_allow_punctuation
        if not (self._punctuated if wide else self._plain).fullmatch(value):
            rule = "letters, spaces and . - '" if wide else "letters and spaces"
            raise self.make_error("bad", problem=f"Must contain only {rule}.")
        return value

    def openapi(self) -> dict[str, Any]:
        # JSON Schema regexes are not Unicode-aware: Latin letters stand for "letters" here.
        letters = LATIN_LETTERS
        return {**super().openapi(), "pattern": f"^[{letters}]+( [{letters}]+)*$"}


class State(Text):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise self.make_error("type")
        code = value.upper()
        if code in US_STATES:  # at most 2 letters: no text problem to find
            return code
        # "Texas" is told what a state is, not that it is longer than 2 characters.
        problem = text_problem(value, self.max_length) if len(value) <= self.max_length else None
        raise self.make_error("bad", problem=problem or STATE_RULE)

    def openapi(self) -> dict[str, Any]:
        # Any case: [Nn][Yy] for NY, and so on (JSON Schema regexes have no flags).
        cased = "|".join("".join(f"[{c}{c.lower()}]" for c in code) for code in sorted(US_STATES))
        return {"type": "string", "pattern": f"^({cased})$"}


class BirthDate(Text):
    def check(self, value: str) -> str:
        try:
            if not _ISO_DATE.fullmatch(value):
                raise ValueError
            born = date.fromisoformat(value)
        except ValueError:
            raise self.make_error("bad", problem=DATE_RULE) from None
        # The latest "today" anywhere on Earth (UTC+14), so no real birthday is refused.
        if born > (_settings(self).clock() + timedelta(hours=14)).date():
            raise self.make_error("bad", problem="Must not be in the future.")
        return value

    def openapi(self) -> dict[str, Any]:
        return {"type": "string", "format": "date"}


class TransactionId(Text):
    def check(self, value: str) -> str:
        if not TRANSACTION_ID.fullmatch(value):
            raise self.make_error("bad", problem="Must be 1-128 of A-Z a-z 0-9 . _ -")
        return value

    def openapi(self) -> dict[str, Any]:
        return {"type": "string", "pattern": "^" + TRANSACTION_ID.pattern + "$"}


#: A port: 1-65535, no leading zero.
_PORT = r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
#: An https URL whose host is a plain ASCII host name, with no user name, no escape, no ``\``, and
#: only printable ASCII after it: every such text passes ``is_https_url``, so the usual
#: TrustedForm URL skips the full check's cost.  The last label starts with a letter (browsers
#: read a host ending in a number as an IPv4 address: ``https://1.2`` is 1.0.0.2 to them, ``1.2``
#: to urllib); an ``xn--`` label is left to the full check (browsers refuse one that is no valid
#: IDNA).  A look-ahead per label costs little; nested groups per label cost twice the match.
PLAIN_HTTPS_URL = re.compile(
    rf"https://(?:(?![Xx][Nn]--)[A-Za-z0-9-]+\.)*(?![Xx][Nn]--)[A-Za-z][A-Za-z0-9-]*\.?(?::{_PORT})?"
    r"(?:[/?#][!-\[\]-~]*)?")
_HOST_LABEL = re.compile(r"[A-Za-z0-9-]+")
_PORT_TEXT = re.compile(_PORT)
_WHITE_SPACE = re.compile(r"\s")
#: Where the authority ends, for browsers and urllib alike once ``\`` is refused.
_AUTHORITY_END = re.compile(r"[/?#]")


def _host_name_ok(host: str) -> bool:
    """A host name browsers and urllib read alike: ASCII letter, digit and hyphen labels (an
    ``xn--`` label only if it is valid IDNA, as browsers require), the last one starting with a
    letter, an optional final dot.  Browsers lower-case it, as urllib's ``hostname`` does."""
    labels = (host[:-1] if host.endswith(".") else host).split(".")
    if not all(_HOST_LABEL.fullmatch(label) for label in labels) or not labels[-1][0].isalpha():
        return False
    for label in labels:
        if label[:4].lower() == "xn--":
            try:
                if idna.encode(idna.decode(label)).decode("ascii") != label.lower():
                    return False
            except (idna.IDNAError, UnicodeError, ValueError):
                return False
    return True


def is_https_url(value: str) -> bool:
    """The rule for TrustedForm URLs (contract section 9): scheme https; a host name (no user
    name or password, no ``\\``, no percent-escape, no IP address); a port in 1-65535 if any;
    no white space, control or invisible (Cf) character anywhere; and what urllib reads as the
    host and port is what a browser (WHATWG URL parsing) reads."""
    if value[:8].lower() != "https://" or "\\" in value or _WHITE_SPACE.search(value):
        return False
    if text_character_problem(value) or has_invisible(value):
        return False
    rest = value[8:]
    end = _AUTHORITY_END.search(rest)
    authority = rest[: end.start()] if end else rest
    host, colon, port = authority.partition(":")
    if (colon and not _PORT_TEXT.fullmatch(port)) or not host.isascii() or not _host_name_ok(host):
        return False
    try:  # the same host and port for Python as for a browser
        parts = urlsplit(value)
        return parts.scheme == "https" and parts.hostname == host.lower() and parts.port == (
            int(port) if colon else None)
    except ValueError:
        return False


#: What a TrustedForm URL must be, said in its refusal.
HTTPS_URL_RULE = ("Must be an https URL with a host name and no user name, such as "
                  "https://cert.trustedform.com/0123abcd.")


#: The URL rule, for the OpenAPI descriptions.
URL_RULE_TEXT = (
    "https, then a host name that browsers and Python read alike: ASCII letters, digits and - in dot-separated "
    "labels, the last starting with a letter (no IP address; an xn-- label only if valid IDNA); no user name or "
    "password, no backslash, no percent-escape in the host; a port 1-65535 if any; no white space, control or "
    "invisible character anywhere."
)


class HttpsUrl(Text):
    def check(self, value: str) -> str:
        if not PLAIN_HTTPS_URL.fullmatch(value) and not is_https_url(value):
            raise self.make_error("bad", problem=HTTPS_URL_RULE)
        return value

    def openapi(self) -> dict[str, Any]:
        return {**super().openapi(), "format": "uri", "pattern": "^https://"}


class TrustedFormCertUrl(HttpsUrl):
    """``xxTrustedFormCertUrl``: an https URL; on the certificate host itself when the source
    says so (``require_trusted_form_host``)."""

    #: Set by a ``require_trusted_form_host`` source's schema (each schema has its own field objects).
    host_only = False

    def check(self, value: str) -> str:
        # HttpsUrl.check inline: this is the usual TrustedForm field, a call less per lead.
        if not PLAIN_HTTPS_URL.fullmatch(value) and not is_https_url(value):
            raise self.make_error("bad", problem=HTTPS_URL_RULE)
        if self.host_only and not on_trusted_form_host(value):
            raise self.make_error("bad", problem=TRUSTED_FORM_HOST_RULE)
        return value


# -- consent evidence (contract section 10; the rules live in consent.py) ------------------------


class IpAddress(Text):
    def check(self, value: str) -> str:
        canonical = canonical_ip(value)
        if canonical is None:
            raise self.make_error("bad", problem=IP_RULE)
        return canonical

    def openapi(self) -> dict[str, Any]:
        # No single JSON Schema format covers "IPv4 or IPv6": the rule is in the description.
        return {**super().openapi(), "pattern": "^[0-9A-Fa-f:.]+$"}


class ConsentAt(Text):
    """An RFC 3339 date-time with an offset, stored as a UTC datetime (BSON: milliseconds)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        moment = parse_consent_at(text, _settings(self).clock())
        if isinstance(moment, str):
            raise self.make_error("bad", problem=moment)
        return moment

    def openapi(self) -> dict[str, Any]:
        return {"type": "string", "format": "date-time"}


class HttpUrl(Text):
    """An http or https URL, held to the TrustedForm URL rule's strictness (``is_https_url``)."""

    def check(self, value: str) -> str:
        scheme = value[:8].lower()
        as_https = value if scheme == "https://" else "https://" + value[7:] if scheme[:7] == "http://" else ""
        if not as_https or (not PLAIN_HTTPS_URL.fullmatch(as_https) and not is_https_url(as_https)):
            raise self.make_error("bad", problem=PAGE_URL_RULE)
        return value

    def openapi(self) -> dict[str, Any]:
        return {**super().openapi(), "format": "uri", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://"}


class Pattern(Text):
    """Text matching ``pattern`` (any case), stored upper- or lower-cased."""

    def __init__(self, max_length: int, pattern: re.Pattern[str], rule: str, upper: bool, **kwargs: Any) -> None:
        super().__init__(max_length, **kwargs)
        self.pattern, self.rule, self.upper = pattern, rule, upper

    def check(self, value: str) -> str:
        if not self.pattern.fullmatch(value):
            raise self.make_error("bad", problem=self.rule)
        return value.upper() if self.upper else value.lower()

    def openapi(self) -> dict[str, Any]:
        return {"type": "string", "pattern": "^" + self.pattern.pattern + "$"}


class LeadSchema(Schema):
    """The contract's field table.  Unknown names are kept under ``extra``."""

    class Meta:
        unknown = INCLUDE

    first_name = Text(100, metadata={"description": "Consumer's first name."})
    last_name = Text(100, metadata={"description": "Consumer's last name."})
    email = Email(254, metadata={"description": "Email address; stored with the local part lower-cased and the "
                                                 "domain in IDNA ASCII form; a dedupe field."})
    mobile = Digits(
        10,
        "5551234567",
        lenient_rule="Must be a 10-digit US number, such as 5551234567 or (555) 123-4567; punctuation, spaces "
                     "and a leading +1 or 1 are allowed.",
        metadata={"description": "10-digit phone number, digits only (a JSON integer is accepted if it renders "
                                 "so); a dedupe field. A lenient source also takes punctuation, spaces and a "
                                 "leading +1 or 1."},
    )
    address = Text(200, metadata={"description": "Street address."})
    city = City(100, metadata={"description": "City: letters and spaces (the city_allow_punctuation "
                                              "option also allows . - ')."})
    state = State(2, metadata={"description": "2-letter USPS state or territory code, any case; stored "
                                              "upper-cased."})
    zip_code = Digits(
        5,
        "90210",
        lenient_rule="Must be 5 digits or ZIP+4, such as 90210 or 90210-1234.",
        metadata={"description": "5-digit ZIP code (a JSON integer is accepted if it has 5 digits). A lenient "
                                 "source also takes ZIP+4 and keeps the +4 as extra.zip_plus4."},
    )
    date_of_birth = BirthDate(10, metadata={"description": "A real date YYYY-MM-DD, not in the future."})
    transaction_id = TransactionId(128, metadata={"description": "Your id for this lead, 1-128 of "
                                                                 "A-Z a-z 0-9 . _ -; generated if omitted. "
                                                                 "Retrying with it never stores twice."})
    xxTrustedFormToken = Text(255, metadata={"description": "TrustedForm token; stored as trusted_form.token."})
    xxTrustedFormCertUrl = TrustedFormCertUrl(2048, metadata={"description": "TrustedForm certificate URL; stored as "
                                                                    "trusted_form.cert_url. " + URL_RULE_TEXT})
    xxTrustedFormPingUrl = HttpsUrl(2048, metadata={"description": "TrustedForm ping URL; stored as "
                                                                   "trusted_form.ping_url. " + URL_RULE_TEXT})
    # Consent evidence, stored under ``consent`` (consent.py; docs/endpoint.md "Consent evidence").
    ip_address = IpAddress(IP_MAX_LENGTH, metadata={
        "description": "The consumer's IP address as the seller saw it (never this request's own address): IPv4 "
                       "or IPv6, stored in canonical form (IPv6 compressed, lower-case; an IPv4-mapped address "
                       "as IPv4). Not unspecified, loopback, multicast or broadcast; no zone id. PII."})
    user_agent = Text(USER_AGENT_MAX_LENGTH, metadata={"description": "The consumer's browser User-Agent. PII."})
    consent_text = Text(CONSENT_TEXT_MAX_LENGTH, metadata={
        "description": "The consent language the consumer agreed to, stored in full with its SHA-256 as "
                       "consent_text_sha256."})
    consent_text_sha256 = Pattern(64, SHA256_HEX, SHA256_RULE, upper=False, metadata={
        "description": "Lower- or upper-case hex SHA-256 of the consent language (UTF-8, NFC, trimmed); stored "
                       "lower-case. Sent with consent_text it must be that text's hash."})
    consent_at = ConsentAt(40, metadata={
        "description": "When the consumer consented: ISO 8601 / RFC 3339 date-time with seconds and a UTC offset; "
                       "stored as a UTC datetime (milliseconds); at most 5 minutes in the future, not before "
                       "2000-01-01."})
    page_url = HttpUrl(PAGE_URL_MAX_LENGTH, metadata={
        "description": "The page the consumer consented on: an http or https URL, held to the TrustedForm URL "
                       "rule otherwise."})
    jornaya_leadid = Pattern(36, JORNAYA_LEADID, JORNAYA_RULE, upper=True, metadata={
        "description": "Jornaya LeadiD token: 36 hexadecimal characters in GUID form (8-4-4-4-12), any case; "
                       "stored upper-cased."})

    def __init__(self, required: Iterable[str] = (), settings: Settings | None = None, lenient: bool = False,
                 require_any_of: tuple[str, ...] = (), require_trusted_form_host: bool = False) -> None:
        super().__init__()
        self.settings = settings or Settings()
        self.required_fields = tuple(required)
        #: Normalise before the rules (lenient.py): a lenient source's schema.
        self.lenient = lenient
        #: The source's consent rules (consent.py): evidence of which kind is required, the cert host.
        self.require_any_of = tuple(require_any_of)
        self.require_trusted_form_host = require_trusted_form_host
        cert_url = self.fields["xxTrustedFormCertUrl"]
        if require_trusted_form_host and isinstance(cert_url, TrustedFormCertUrl):
            cert_url.host_only = True
        for name in self.required_fields:
            self.fields[name].required = True
        #: Fields whose ``deserialize`` adds nothing to ``_deserialize`` for a present, non-null
        #: value (no validators, no field hooks): ``load_lead`` calls ``_deserialize`` directly.
        self._plain_fields = frozenset(
            name for name, field in self.load_fields.items()
            if not field.validators and not field.pre_load and not field.post_load)
        #: The fields without the consent ones: a lead with no consent field (the usual one) skips them.
        self._core_fields = {name: field for name, field in self.load_fields.items() if name not in CONSENT_NAMES}

    def load_lead(self, data: Mapping[str, Any]) -> ValidLead:
        """``load`` for one flat lead: the same fields, hooks and errors, a third of the cost.

        ``Schema.load``'s generic machinery (nesting, ``partial``, ``many``, hook
        dispatch) took more time per lead than the field rules themselves; a flat
        schema needs none of it.  ``tests/test_fuzz.py`` checks that both give the
        same lead or the same errors for any input.
        """
        result: dict[str, Any] = {}
        errors: dict[str, list[str]] = {}
        declared = self.load_fields
        plain = self._plain_fields
        # Consent fields are never required: a lead without any (the usual one) skips them.
        consent_sent = not CONSENT_NAMES.isdisjoint(data)
        checked = declared if consent_sent else self._core_fields
        for name, field in checked.items():
            value = data.get(name, missing)
            if value is missing and not field.required:
                continue
            try:
                if value is missing or value is None or name not in plain:
                    result[name] = field.deserialize(value, name, data)
                else:  # Field.deserialize's checks are about missing and null values only
                    result[name] = field._deserialize(value, name, data)
            except ValidationError as exc:
                errors[name] = exc.messages if isinstance(exc.messages, list) else [str(exc.messages)]
        for name in data:
            if name not in declared:
                result[name] = data[name]  # unknown = INCLUDE
        try:
            self.check_extra_fields(result, data)
        except ValidationError as exc:
            for name, messages in _flatten(exc.messages).items():
                errors.setdefault(name, []).extend(messages)
        if errors:
            raise ValidationError(errors)
        lead: ValidLead = self.to_lead(result, data, consent_sent=consent_sent)
        return lead

    @validates_schema(skip_on_field_errors=False, pass_original=True)
    def check_extra_fields(self, data: dict[str, Any], original: Mapping[str, Any], **kwargs: Any) -> None:
        errors: dict[str, list[str]] = {}
        extra = [name for name in original if name not in self.fields]
        if len(extra) > self.settings.max_extra_fields:
            errors["_schema"] = [f"At most {self.settings.max_extra_fields} extra fields are allowed."]
        for name in extra:
            problem = self._extra_problem(name, data[name])
            if problem:
                errors[name] = [problem]
        if errors:
            raise ValidationError(errors)

    def _extra_problem(self, name: str, value: Any) -> str | None:
        if not EXTRA_NAME.fullmatch(name):
            return "Unknown field name must match ^[A-Za-z][A-Za-z0-9_-]{0,63}$."
        if isinstance(value, str):
            return text_problem(value, self.settings.extra_value_max_length)
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return None if _INT64[0] <= value <= _INT64[1] else "Integer out of range."
        if isinstance(value, float):
            return None if math.isfinite(value) else "Must be a finite number."
        return "Must be a string, number or boolean."

    @post_load(pass_original=True)
    def to_lead(self, data: dict[str, Any], original: Mapping[str, Any], consent_sent: bool | None = None,
                **kwargs: Any) -> ValidLead:
        trusted_form = {TRUSTED_FORM_FIELDS[k]: data.pop(k) for k in TRUSTED_FORM_FIELDS if k in data}
        transaction_id = data.pop("transaction_id", None)
        lead_fields = {name: data.pop(name) for name in LEAD_FIELDS if name in data}
        if consent_sent is None:  # called by Schema.load, not load_lead
            consent_sent = not CONSENT_NAMES.isdisjoint(data)
        consent = {name: data.pop(name) for name in CONSENT_FIELDS if name in data} if consent_sent else {}
        if consent:
            problems = with_text_hash(consent)
            if problems:
                raise ValidationError(problems)
        extra = {name: data[name] for name in original if name in data}  # in the order sent
        return ValidLead(fields=lead_fields, trusted_form=trusted_form, extra=extra, transaction_id=transaction_id,
                         consent=consent)


#: Every name the schema declares (standard, transaction and TrustedForm fields); others are extra.
DECLARED_FIELDS = frozenset(LeadSchema._declared_fields)


def dedupe_field_ok(name: str) -> bool:
    """True for a name a source may deduplicate on besides the standard fields: an extra
    field name that is no alias, no TrustedForm or transaction field, and none of the names
    the endpoint reads itself (``xxTest``, ``ping_id``, ``hold_seconds``, ``*_sha256``)."""
    # In any case: the endpoint reads these names in any case (``Phone`` is ``phone``, ``XXTEST``
    # the test flag), so a custom rule on one of them could never see a value.
    lower = name.lower()
    return (bool(EXTRA_NAME.fullmatch(name)) and lower not in LEAD_NAMES.folded
            and lower not in _RESERVED_LOWER and not lower.endswith(HASH_SUFFIX))


@dataclasses.dataclass(frozen=True)
class ValidLead:
    fields: dict[str, str]
    trusted_form: dict[str, str]
    extra: dict[str, Any]
    transaction_id: str | None
    #: Consent evidence (consent.py), stored under ``consent`` only when there is some.
    consent: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_stored(self, transaction_id: str) -> dict[str, Any]:
        """The values as they would be stored (what host validators see): a fresh dict; ``consent``
        is always there ({} for none), as fetch shows it."""
        return {"transaction_id": transaction_id, **self.fields, "trusted_form": dict(self.trusted_form),
                "extra": dict(self.extra), "consent": dict(self.consent)}


#: Most entries in an answer's ``fields`` and ``errors``: a refusal never grows with the request.
MAX_REPORTED_FIELDS = 20
#: Longest field name echoed back; a longer (invalid) name is cut and ends with "…".
MAX_REPORTED_NAME = 100
#: Most bytes of a refusal's ``data`` (JSON): the answer never grows with the request.
MAX_REJECTION_BYTES = 6 * 1024


@dataclasses.dataclass(frozen=True)
class LeadRejection:
    status: LeadStatus  # MISSING_FIELD or INVALID_FIELD
    fields: list[str]
    errors: dict[str, list[str]]
    #: The answer's message when the usual one would mislead (one of several fields is required).
    message: str | None = None

    def as_data(self) -> dict[str, Any]:
        """The answer's ``data``: at most ``MAX_REPORTED_FIELDS`` entries each, standard fields first.

        A body of thousands of bad names would otherwise draw an answer many times its
        size; what is cut is flagged with ``"truncated": true``.
        """
        def rank(name: str) -> int:
            return 0 if name in DECLARED_FIELDS else 1 if name.startswith("_") else 2

        names = sorted(self.errors, key=rank)  # stable: the order found within each group
        kept = names[:MAX_REPORTED_FIELDS]
        listed = [name for name in self.fields if name in kept or name not in self.errors]
        data: dict[str, Any] = {
            "lead_status": self.status,
            "fields": [_reported_name(name) for name in listed[:MAX_REPORTED_FIELDS]],
            "errors": {_reported_name(name): self.errors[name] for name in kept},
        }
        if len(names) > MAX_REPORTED_FIELDS or len(listed) > MAX_REPORTED_FIELDS:
            data["truncated"] = True
        # Escaped non-ASCII names can still be long: drop entries from the end until it fits.
        while len(json.dumps(data)) > MAX_REJECTION_BYTES and data["errors"]:
            last = next(reversed(data["errors"]))
            del data["errors"][last]
            data["fields"] = [name for name in data["fields"] if name != last]
            data["truncated"] = True
        return data


def _reported_name(name: str) -> str:
    return name if len(name) <= MAX_REPORTED_NAME else name[: MAX_REPORTED_NAME - 1] + "…"


#: The test-mode flag: checked like a real lead, nothing stored, never stored itself.
TEST_FIELD = "xxTest"
#: Names the endpoint reads itself, never lead data: no source may deduplicate on them.
RESERVED_NAMES = frozenset({TEST_FIELD, "ping_id", "hold_seconds"})
_RESERVED_LOWER = frozenset(name.lower() for name in RESERVED_NAMES)
_TEST_ON = frozenset({"true", "1"})
_TEST_OFF = frozenset({"false", "0", ""})


def pop_test_flag(raw: dict[str, Any]) -> tuple[bool, list[str]]:
    """Take ``xxTest`` out of ``raw``: (is a test, problems).  ``true``/``1`` (any case) or
    JSON ``true`` is a test; ``false``/``0``/blank/null is not; anything else is a problem."""
    if TEST_FIELD not in raw:
        return False, []
    value = raw.pop(TEST_FIELD)
    if value is None or isinstance(value, bool):
        return bool(value), []
    if isinstance(value, int) and value in (0, 1):
        return bool(value), []
    if isinstance(value, str) and value.strip().lower() in _TEST_ON | _TEST_OFF:
        return value.strip().lower() in _TEST_ON, []
    return False, ["Must be true, false, 1 or 0."]


def normalize_input(raw: Mapping[str, Any]) -> dict[str, Any]:
    """NFC-normalise and trim text; a null or blank value counts as absent."""
    cleaned: dict[str, Any] = {}
    for name, value in raw.items():
        if isinstance(value, str):
            value = nfc(value).strip()
            if not value:
                continue
        elif value is None:
            continue
        cleaned[name] = value
    return cleaned


@functools.lru_cache(maxsize=1024)
def schema_for(required: tuple[str, ...], settings: Settings, lenient: bool = False,
               require_any_of: tuple[str, ...] = (), require_trusted_form_host: bool = False) -> LeadSchema:
    """One schema per source rule set and settings, built once and shared (load is thread-safe)."""
    return LeadSchema(required, settings, lenient, require_any_of, require_trusted_form_host)


def _settings(field: fields.Field[Any]) -> Settings:
    parent = field.parent
    return parent.settings if isinstance(parent, LeadSchema) else Settings()


@dataclasses.dataclass(frozen=True)
class NameSpellings:
    """The names read without regard to case: ``exact`` as the schema spells them, ``folded``
    maps each one's lower-case form to it."""

    exact: frozenset[str]
    folded: dict[str, str]

    @classmethod
    def of(cls, *names: str) -> NameSpellings:
        return cls(frozenset(names), {name.lower(): name for name in names})


#: A lead's standard names (fields, transaction_id, TrustedForm fields) and the aliases.
LEAD_NAMES = NameSpellings.of(*DECLARED_FIELDS, *ALIASES)
#: A lenient source also reads ``zip_plus4`` (the extra it writes the +4 of a ZIP+4 to) in any case.
LENIENT_LEAD_NAMES = NameSpellings.of(*LEAD_NAMES.exact, PLUS4_FIELD)


def fold_names(data: dict[str, Any], names: NameSpellings = LEAD_NAMES) -> dict[str, list[str]]:
    """Rename, in place, each ASCII name that is one of ``names`` in another case (``Mobile``,
    ``EMAIL``, ``Zip``, ``XXTRUSTEDFORMCERTURL``) to its own spelling; the problems of a body
    sending one name in two spellings (reported under the name, never the value).

    The usual body costs one pass of set look-ups (and a lower-case per extra field name),
    ~0.25 µs for a dozen names.  Only ASCII names fold (the Kelvin sign lower-cases to ``k``).
    Extra field names keep their case.
    """
    exact, folded = names.exact, names.folded
    for name in data:  # the common case, in one pass: every name spelt as the schema spells it
        if name not in exact and name.lower() in folded:
            break
    else:
        return {}
    odd = [name for name in data if name not in exact and name.isascii() and name.lower() in folded]
    problems: dict[str, list[str]] = {}
    spelt: dict[str, str] = {}
    for name in odd:
        own = folded[name.lower()]
        value = data.pop(name)
        if own in data:
            first = spelt.get(own, own)
            problems.setdefault(own, []).append(
                f"Sent twice, as {first} and as {name} (names are read in any case): send it once.")
        else:
            data[own] = value
            spelt[own] = name
    return problems


def own_spelling(name: str, names: NameSpellings = LEAD_NAMES) -> str:
    """``name`` as the schema spells it if it is one of ``names`` in another case, else ``name``."""
    return names.folded.get(name.lower(), name) if name.isascii() else name


def _prepared(raw: Mapping[str, Any], schema: LeadSchema,
              names: NameSpellings | None = None) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """What the rules see, for a lead and a ping alike: NFC and trimmed text, blanks dropped,
    standard names in another case read as themselves and aliases renamed (with the problems
    of a body sending one field twice), a lenient source's normalisation applied."""
    data = normalize_input(raw)
    if names is None:
        names = LENIENT_LEAD_NAMES if schema.lenient else LEAD_NAMES
    errors = fold_names(data, names)
    aliased = apply_aliases(data)
    for name, messages in aliased.items():
        errors.setdefault(name, []).extend(messages)
    if schema.lenient:
        for name, messages in normalise(data).items():
            errors.setdefault(name, []).extend(messages)
    return data, errors


def validate_lead(raw: Mapping[str, Any], schema: LeadSchema) -> ValidLead | LeadRejection:
    """Validate one lead's raw fields against a source's schema."""
    data, errors = _prepared(raw, schema)
    missing = [name for name in schema.required_fields if name not in data]
    evidence = missing_evidence(data, schema.require_any_of) if schema.require_any_of else []
    if evidence:  # none of the evidence the source requires: missingField, naming the alternatives
        for name in evidence:
            errors.setdefault(name, []).append(one_of_message(evidence))
    if not missing and not any(name in data for name in LEAD_FIELDS):
        # No required fields, but a lead still needs something to identify it.
        errors["_schema"] = ["At least one lead field is required."]
    try:
        lead = schema.load_lead(data)
    except ValidationError as exc:
        for name, messages in _flatten(exc.messages).items():
            errors.setdefault(name, []).extend(messages)
    else:
        if not missing and not errors:
            return lead
    for name in missing:
        errors.setdefault(name, [REQUIRED_MESSAGE])
    if evidence:
        message = None if missing else f"Missing required field: one of {', '.join(evidence)}"
        return LeadRejection(LeadStatus.MISSING_FIELD, [*missing, *evidence], errors, message)
    if missing:
        return LeadRejection(LeadStatus.MISSING_FIELD, missing, errors)
    if "_schema" in errors and not any(name in data for name in LEAD_FIELDS):
        return LeadRejection(LeadStatus.MISSING_FIELD, list(LEAD_FIELDS), errors)
    return LeadRejection(LeadStatus.INVALID_FIELD, [name for name in errors if name != "_schema"], errors)


#: A hashed dedupe value in a pre-ping: ``<field>_sha256``, 64 hex characters.
HASH_SUFFIX = "_sha256"
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


#: A ping's names read in any case: a lead's, and the hashes of the standard fields (``EMAIL_SHA256``).
#: A custom dedupe field's name, and so its hash's, keeps its case, as every extra field name does.
PING_NAMES = NameSpellings.of(*LEAD_NAMES.exact, *(name + HASH_SUFFIX for name in LEAD_FIELDS))
LENIENT_PING_NAMES = NameSpellings.of(*PING_NAMES.exact, PLUS4_FIELD)


@dataclasses.dataclass(frozen=True)
class PingValues:
    """A pre-ping's dedupe values: canonical plain values and lower-case SHA-256 hashes, by field."""

    plain: dict[str, str]
    hashed: dict[str, str]
    errors: dict[str, list[str]]


def ping_values(raw: Mapping[str, Any], schema: LeadSchema, fields: Iterable[str]) -> PingValues:
    """Read the dedupe values of ``fields`` from a pre-ping, plain or hashed, checked and made
    canonical exactly as a lead's (aliases, a lenient source's normalisation, NFC, IDNA...);
    anything else in the ping is ignored."""
    data, errors = _prepared(raw, schema, LENIENT_PING_NAMES if schema.lenient else PING_NAMES)
    fields = list(dict.fromkeys(fields))
    # Only the problems of what the ping reads: two spellings of a field it ignores (both of
    # Jornaya's inputs, zip beside zip_code) are ignored with the field, as a bad value of it is.
    read = {*fields, *(field + HASH_SUFFIX for field in fields)}
    errors = {name: messages for name, messages in errors.items() if ALIASES.get(name, name) in read}
    plain: dict[str, str] = {}
    hashed: dict[str, str] = {}
    for field in fields:
        digest = data.get(field + HASH_SUFFIX)
        if digest is not None:
            if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
                errors[field + HASH_SUFFIX] = ["Must be the 64 hex characters of a SHA-256."]
            elif field in data:
                errors[field + HASH_SUFFIX] = [f"Sent together with {field}: send one of them."]
            else:
                hashed[field] = digest.lower()
        if field not in data:
            continue
        declared = schema.load_fields.get(field)
        try:
            if declared is not None:
                value = declared.deserialize(data[field], field, data)
            else:
                problem = schema._extra_problem(field, data[field])
                if problem:
                    raise ValidationError(problem)
                value = data[field]
        except ValidationError as exc:
            errors[field] = _flatten({field: exc.messages})[field]
            continue
        plain[field] = value if isinstance(value, str) else dedupe_text(value)
    return PingValues(plain, hashed, errors)


def dedupe_text(value: Any) -> str:
    """A dedupe value as text: stored text as it is; a JSON number as its digits (a form post
    of it is the same value); booleans as ``true``/``false``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else repr(value)


def _flatten(messages: Any) -> dict[str, list[str]]:
    if isinstance(messages, dict):
        return {str(k): list(v) if isinstance(v, list) else [str(v)] for k, v in messages.items()}
    return {"_schema": [str(m) for m in messages]}
