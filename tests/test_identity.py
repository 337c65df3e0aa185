"""One consumer, one identity (contract section 3): canonical text and email addresses."""

from __future__ import annotations

import unicodedata
import uuid
from typing import Any

import idna
import pytest
from bson import ObjectId
from hypothesis import given, settings
from hypothesis import strategies as st

from pingtree_leads import create_source
from pingtree_leads.canonical import canonical_email

from .conftest import Poster, assert_envelope, lead, make_app
from .test_fuzz import FIXTURE_OK

BASE = "bob.smith@example.com"


def fullwidth(text: str) -> str:
    """ASCII letters and digits as their full-width forms (U+FF01..), other characters unchanged."""
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in text)


# Characters that render as nothing: an address holding one is refused, not stored as a new mailbox.
INVISIBLE = {
    "zero width space": "\u200b",
    "zero width non-joiner": "\u200c",
    "zero width joiner": "\u200d",
    "word joiner": "\u2060",
    "byte order mark": "\ufeff",
    "soft hyphen": "\u00ad",
    "combining grapheme joiner": "\u034f",
    "left-to-right mark": "\u200e",
    "variation selector": "\ufe0f",
    "hangul filler": "\u3164",
}


@pytest.mark.parametrize("where", ["end", "local", "domain"])
@pytest.mark.parametrize("char", list(INVISIBLE.values()), ids=list(INVISIBLE))
def test_an_email_with_an_invisible_character_is_refused(poster: Poster, char: str, where: str) -> None:
    assert_envelope(poster.post(lead(email=BASE)), 201)
    spelled = {"end": BASE + char, "local": "bob." + char + "smith@example.com",
               "domain": "bob.smith@exam" + char + "ple.com"}[where]
    data = assert_envelope(poster.post(lead(email=spelled)), 400)
    assert data["lead_status"] == "invalidField" and data["fields"] == ["email"]
    assert data["errors"]["email"] == ["Contains invisible characters."]
    assert poster.count() == 1


SAME_MAILBOX = {
    "upper case": "Bob.Smith@EXAMPLE.COM",
    "full-width domain": "bob.smith@" + fullwidth("example") + ".com",
    "full-width domain and dot": "bob.smith@" + fullwidth("example") + "\uff0e" + fullwidth("com"),
    "ideographic full stop": "bob.smith@example\u3002com",
}


@pytest.mark.parametrize("spelled", list(SAME_MAILBOX.values()), ids=list(SAME_MAILBOX))
def test_spellings_of_one_mailbox_are_one_lead(poster: Poster, spelled: str) -> None:
    assert_envelope(poster.post(lead(email=BASE)), 201)
    data = assert_envelope(poster.post(lead(email=spelled)), 201)
    assert data["lead_status"] == "duplicate" and data["matched_on"] == ["email"]
    assert poster.count() == 1


# Compatibility and case forms of a local part, found by attacking the endpoint.
SAME_LOCAL_PART = {
    "full-width letters": ("abc@example.com", "ａｂｃ@example.com"),
    "ligature": ("fin@example.com", "\ufb01n@example.com"),
    "superscript digit": ("t2@example.com", "t\u00b2@example.com"),
    "mathematical bold": ("ada@example.com", "\U0001d41a\U0001d41d\U0001d41a@example.com"),
    "half-width katakana": ("tガ@example.com", "t\uff76\uff9e@example.com"),
    "greek capital sigma": ("tοδοσ@example.com", "TΟΔΟΣ@example.com"),
    "upper-case umlaut": ("äbc@example.com", "ÄBC@example.com"),
    "ipv4 literal case": ("t@[192.0.2.1]", "T@[192.0.2.1]"),
}


@pytest.mark.parametrize(("first", "second"), list(SAME_LOCAL_PART.values()), ids=list(SAME_LOCAL_PART))
def test_compatibility_forms_of_a_local_part_are_one_mailbox(poster: Poster, first: str, second: str) -> None:
    assert_envelope(poster.post(lead(email=first)), 201)
    data = assert_envelope(poster.post(lead(email=second)), 201)
    assert data["lead_status"] == "duplicate" and data["matched_on"] == ["email"]
    assert poster.count() == 1


@pytest.mark.parametrize(("email", "message"), [
    ('"abc"@example.com', "Quoted local parts are not accepted."),
    ('"a.b"@example.com', "Quoted local parts are not accepted."),
    ("t@[192.000.002.001]", "Not a valid email address."),
    ("t@[IPv6:2001:db8::1]", "Not a valid email address."),
])
def test_other_spellings_of_a_mailbox_are_refused(poster: Poster, email: str, message: str) -> None:
    data = assert_envelope(poster.post(lead(email=email)), 400)
    assert data["errors"]["email"] == [message]
    assert poster.count() == 0


@pytest.mark.parametrize(("first", "second"), [("anna@bücher.de", "anna@xn--bcher-kva.de"),
                                               ("anna@xn--bcher-kva.de", "ANNA@BÜCHER.DE"),
                                               ("anna@bu\u0308cher.de", "anna@bücher.de")])
def test_unicode_and_ascii_spellings_of_a_domain_are_one_mailbox(poster: Poster, first: str, second: str) -> None:
    assert_envelope(poster.post(lead(email=first)), 201)
    data = assert_envelope(poster.post(lead(email=second)), 201)
    assert data["lead_status"] == "duplicate" and data["matched_on"] == ["email"]
    # The stored spelling: local part lower-cased, domain in its IDNA A-label form.
    assert [d["email"] for d in poster.stored()] == ["anna@xn--bcher-kva.de"]


def test_a_retry_in_another_spelling_is_a_replay_not_a_conflict(poster: Poster) -> None:
    first = assert_envelope(poster.post(lead(email="anna@bücher.de", transaction_id="spell-1")), 201)
    body = lead(email="ANNA@xn--bcher-kva.de", transaction_id="spell-1")
    body.update({k: v for k, v in poster.stored()[0].items() if k in ("first_name", "mobile", "last_name")})
    data = assert_envelope(poster.post(body), 201)
    assert data["replayed"] is True and data["lead_id"] == first["lead_id"]


@pytest.mark.parametrize("bad", ["bob@exa..mple.com", "bob@", "@example.com", "bob@ex_ample.com",
                                 "bob@xn--zz.com", "bob@ab--cd.com", "bob@" + "a" * 64 + ".com"])
def test_domains_that_are_no_domain_are_invalid(poster: Poster, bad: str) -> None:
    data = assert_envelope(poster.post(lead(email=bad)), 400)
    assert data["errors"]["email"] == ["Not a valid email address."]
    assert poster.count() == 0


def test_decomposed_text_is_the_same_text(poster: Poster) -> None:
    body = lead(first_name="Zoe\u0308", city="Sa\u0303o Paulo", transaction_id="nfd-1",
                custom_note="Cafe\u0301")
    first = assert_envelope(poster.post(body), 201)
    stored = poster.stored()[0]
    assert stored["first_name"] == "Zoë" and stored["city"] == "São Paulo"
    assert stored["extra"]["custom_note"] == "Café"
    composed = {k: unicodedata.normalize("NFC", v) if isinstance(v, str) else v for k, v in body.items()}
    data = assert_envelope(poster.post(composed), 201)  # the same lead: a replay, not a 409
    assert data["replayed"] is True and data["lead_id"] == first["lead_id"]


@pytest.mark.parametrize("city", ["Zu\u0308rich", "Sa\u0303o Paulo", "Ha\u0300 No\u0323i", "Bo\u0308rde"])
def test_cities_with_combining_accents_are_letters(poster: Poster, city: str) -> None:
    assert_envelope(poster.post(lead(city=city)), 201)
    assert poster.stored()[0]["city"] == unicodedata.normalize("NFC", city)


CONTROLS = {"C1 NEL": "\x85", "C1 CSI": "\x9b", "LRE": "\u202a", "RLO": "\u202e", "PDF": "\u202c",
            "LRI": "\u2066", "FSI": "\u2068", "PDI": "\u2069"}


@pytest.mark.parametrize("field", ["first_name", "address", "city", "custom_note"])
@pytest.mark.parametrize("char", list(CONTROLS.values()), ids=list(CONTROLS))
def test_c1_controls_and_bidi_overrides_are_invalid(poster: Poster, field: str, char: str) -> None:
    data = assert_envelope(poster.post(lead(**{field: "Ada" + char + "Evil"})), 400)
    assert data["lead_status"] == "invalidField" and data["fields"] == [field]
    assert "control" in data["errors"][field][0]
    assert poster.count() == 0


# -- properties -----------------------------------------------------------------------------

label_chars = st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789üéßñøåçž")
labels = st.text(label_chars, min_size=1, max_size=12).filter(lambda s: s[0].isalnum())
locals_ = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-éü"),
                  min_size=1, max_size=16).filter(lambda s: s[0] not in ".-" and s[-1] != "." and ".." not in s)
tlds = st.sampled_from(["com", "de", "org", "io", "café"])


def spellings(local: str, domain: str) -> list[str]:
    """Documented equivalent spellings of one mailbox."""
    ascii_domain = idna.encode(domain, uts46=True).decode()
    unicode_domain = idna.decode(ascii_domain)
    upper = [f"{local.upper()}@{domain.upper()}"] if f"{local}@{domain}".upper().lower() == f"{local}@{domain}" else []
    return [
        *upper,  # "ß".upper() is "SS": another address, not another spelling
        f"{local}@{ascii_domain}",
        f"{local}@{unicode_domain}",
        f"{local}@{ascii_domain.upper()}",
        unicodedata.normalize("NFD", f"{local}@{unicode_domain}"),
        f"{local}@{fullwidth(domain)}",
    ]


@settings(FIXTURE_OK, max_examples=25)
@given(data=st.data())
def test_every_spelling_of_an_accepted_email_is_a_duplicate_and_a_replay(database: Any, data: Any) -> None:
    local = data.draw(locals_)
    domain = ".".join(data.draw(st.lists(labels, min_size=1, max_size=2))) + "." + data.draw(tlds)
    src = create_source(database, "Spellings", dedupe_fields=["email"])
    poster = Poster(make_app(database).test_client(), database, src)
    before = poster.count()  # hypothesis reuses the database across examples
    tx = uuid.uuid4().hex
    body = lead(email=f"{local}@{domain}", transaction_id=tx)
    first = poster.post(body)
    if first.status_code == 400:  # not every drawn address is valid: only accepted ones are the subject
        assert canonical_email(f"{local}@{domain}") is None or first.get_json()["data"]["fields"] == ["email"]
        return
    lead_id = assert_envelope(first, 201)["lead_id"]
    for spelled in spellings(local, domain):
        dup = assert_envelope(poster.post(dict(body, email=spelled, transaction_id=uuid.uuid4().hex)), 201)
        assert dup["lead_status"] == "duplicate", spelled
        replay = assert_envelope(poster.post(dict(body, email=spelled)), 201)
        assert replay.get("replayed") is True and replay["lead_id"] == lead_id, spelled
    assert poster.count() == before + 1

any_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)


@settings(FIXTURE_OK, max_examples=40)
@given(first_name=any_text, city=any_text, note=any_text)
def test_nfc_and_nfd_forms_of_any_text_behave_identically(
    database: Any, first_name: str, city: str, note: str
) -> None:
    src = create_source(database, "Forms", dedupe_fields=[])
    poster = Poster(make_app(database).test_client(), database, src)
    poster.stored = lambda: list(database["leads"].find({"source_id": ObjectId(src.id)}, {"_id": 0}))  # type: ignore[method-assign]
    answers = []
    for form in ("NFC", "NFD"):
        body = {"first_name": unicodedata.normalize(form, first_name), "city": unicodedata.normalize(form, city),
                "note": unicodedata.normalize(form, note), "transaction_id": "forms-" + uuid.uuid4().hex}
        response = poster.post(body)
        payload = response.get_json()["data"]
        payload.pop("lead_id", None)
        payload.pop("transaction_id", None)
        answers.append((response.status_code, payload))
    assert answers[0] == answers[1]
    stored = [{k: v for k, v in d.items() if k not in ("transaction_id", "fingerprint", "created_at", "claims")}
              for d in poster.stored()]
    if stored:
        assert len(stored) == 2 and stored[0] == stored[1]
