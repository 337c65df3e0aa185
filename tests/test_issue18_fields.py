"""Issue 18, the field rules (contract section 9): standard names in any case, Unicode separators
on a lenient source, a sent ``zip_plus4`` never overwritten, TrustedForm URLs that browsers and
Python read alike, and refusals that say what is expected.  Over HTTP, on every backend."""

from __future__ import annotations

import hashlib
import string
import sys
import unicodedata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st

from pingtree_leads import create_source
from pingtree_leads.canonical import has_invisible
from pingtree_leads.lenient import UNICODE_DASHES, UNICODE_SPACES, normalise
from pingtree_leads.schemas import (
    DECLARED_FIELDS,
    HTTPS_URL_RULE,
    LEAD_NAMES,
    PLAIN_HTTPS_URL,
    STATE_RULE,
    fold_names,
    is_https_url,
)

from .conftest import FakeClock, Poster, assert_envelope, lead, write_csv
from .test_import_cli import cli_app, run  # noqa: F401  (cli_app is a fixture)


@pytest.fixture
def lenient(client: FlaskClient, database: Any, clock: FakeClock) -> Poster:
    return Poster(client, database, create_source(database, "Lenient", lenient=True, clock=clock))


def refused(poster: Poster, response: Any, status: str = "invalidField") -> dict[str, Any]:
    """A 400 with ``status``, and nothing in the database for it."""
    data = assert_envelope(response, 400)
    assert data["lead_status"] == status
    assert poster.count() == 0
    return data


# -- 1. standard names in another case ------------------------------------------------------------


@pytest.mark.parametrize(("sent", "field", "value", "stored"), [
    ("Mobile", "mobile", "5551234567", "5551234567"),
    ("MOBILE", "mobile", "5551234567", "5551234567"),
    ("PHONE", "mobile", "5551234567", "5551234567"),
    ("Phone", "mobile", "5551234567", "5551234567"),
    ("EMAIL", "email", "Ada@Example.com", "ada@example.com"),
    ("Email", "email", "ada@example.com", "ada@example.com"),
    ("Zip", "zip_code", "10001", "10001"),
    ("ZIP_CODE", "zip_code", "10001", "10001"),
    ("Date_Of_Birth", "date_of_birth", "1990-01-31", "1990-01-31"),
    ("DOB", "date_of_birth", "1990-01-31", "1990-01-31"),
    ("First_Name", "first_name", "Ada", "Ada"),
    ("STATE", "state", "tx", "TX"),
])
def test_a_standard_name_in_another_case_is_that_field(poster: Poster, sent: str, field: str, value: str,
                                                       stored: str) -> None:
    body = {**lead(**{field: None}), sent: value}
    assert assert_envelope(poster.post(body), 201)["lead_status"] == "accept"
    [doc] = poster.stored()
    assert doc[field] == stored
    assert doc["extra"] == {}  # never a silent extra


@pytest.mark.parametrize(("sent", "stored_as"), [("XXTRUSTEDFORMCERTURL", "cert_url"),
                                                 ("xxtrustedformcerturl", "cert_url"),
                                                 ("XxTrustedFormPingURL", "ping_url"),
                                                 ("xxTrustedFormTOKEN", "token")])
def test_trustedform_names_are_read_in_any_case(poster: Poster, sent: str, stored_as: str) -> None:
    value = "https://cert.trustedform.com/abc" if stored_as != "token" else "tok-1"
    assert_envelope(poster.post({**lead(), sent: value}), 201)
    [doc] = poster.stored()
    assert doc["trusted_form"] == {stored_as: value} and doc["extra"] == {}


def test_a_transaction_id_in_another_case_is_the_transaction_id(poster: Poster) -> None:
    body = lead()
    first = assert_envelope(poster.post({**body, "Transaction_ID": "tx-18"}), 201)
    assert first["transaction_id"] == "tx-18"
    again = assert_envelope(poster.post({**body, "transaction_id": "tx-18"}), 201)
    assert again["replayed"] is True and again["lead_id"] == first["lead_id"]
    assert poster.count() == 1 and poster.stored()[0]["extra"] == {}


@pytest.mark.parametrize(("field", "sent", "value"), [("email", "EMAIL", "ADA@EXAMPLE.COM"),
                                                      ("mobile", "Mobile", "5551230018"),
                                                      ("mobile", "PHONE", "5551230018")])
def test_another_case_takes_part_in_dedupe(poster: Poster, field: str, sent: str, value: str) -> None:
    assert_envelope(poster.post(lead(**{field: value.lower()})), 201)
    data = assert_envelope(poster.post({**lead(**{field: None}), sent: value}), 201)
    assert data["lead_status"] == "duplicate" and data["matched_on"] == [field]
    assert poster.count() == 1


def test_a_required_field_in_another_case_is_present(client: FlaskClient, database: Any) -> None:
    src = create_source(database, "Requires mobile", required_fields=["mobile", "email"])
    p = Poster(client, database, src)
    assert_envelope(p.post({"Mobile": "5551230019", "EMAIL": "req@example.com"}), 201)
    assert (p.stored()[0]["mobile"], p.stored()[0]["email"]) == ("5551230019", "req@example.com")


@pytest.mark.parametrize(("names", "reported"), [
    (("mobile", "Mobile"), "mobile"),
    (("Mobile", "MOBILE"), "mobile"),
    (("email", "EMAIL"), "email"),
    (("phone", "MOBILE"), "phone"),  # an alias beside its field in another case
    (("Phone", "mobile"), "phone"),
    (("phone", "PHONE"), "phone"),
    (("zip_code", "ZIP"), "zip"),
    (("transaction_id", "TRANSACTION_ID"), "transaction_id"),
    (("xxTrustedFormCertUrl", "XXTRUSTEDFORMCERTURL"), "xxTrustedFormCertUrl"),
])
def test_both_spellings_in_one_body_are_invalid(poster: Poster, names: tuple[str, str], reported: str) -> None:
    value = {"email": "a@example.com", "zip_code": "10001", "transaction_id": "tx-1",
             "xxTrustedFormCertUrl": "https://cert.trustedform.com/1"}.get(reported, "5551230020")
    body = {**lead(mobile=None, email="both@example.com"), **dict.fromkeys(names, value)}
    data = refused(poster, poster.post(body))
    assert reported in data["fields"] and data["errors"][reported]
    assert value not in str(data["errors"])  # never the value


def test_both_spellings_are_invalid_even_when_the_field_is_required(client: FlaskClient, database: Any) -> None:
    p = Poster(client, database, create_source(database, "Requires", required_fields=["mobile"]))
    data = refused(p, p.post({"mobile": "5551230021", "Mobile": "5551230022"}))
    assert data["fields"] == ["mobile"]


def test_a_blank_second_spelling_counts_as_absent(poster: Poster) -> None:
    assert_envelope(poster.post({**lead(), "Mobile": "  "}), 201)
    assert poster.stored()[0]["extra"] == {}


def test_other_names_keep_their_case(poster: Poster) -> None:
    assert_envelope(poster.post({**lead(), "UTM_Source": "g", "utm_source": "h", "Mobile_Type": "cell"}), 201)
    assert poster.stored()[0]["extra"] == {"UTM_Source": "g", "utm_source": "h", "Mobile_Type": "cell"}


def test_names_in_another_case_over_get_and_form(poster: Poster) -> None:
    assert_envelope(poster.get({"Mobile": "5551230023", "First_Name": "G"}), 201)
    form = poster.client.post(poster.url, data={"EMAIL": "form@example.com", "ZIP": "10001"},
                              headers=poster.headers)
    assert_envelope(form, 201)
    docs = sorted(poster.stored(), key=lambda d: "mobile" in d)
    assert (docs[0]["email"], docs[0]["zip_code"]) == ("form@example.com", "10001")
    assert (docs[1]["mobile"], docs[1]["first_name"]) == ("5551230023", "G")
    assert all(doc["extra"] == {} for doc in docs)
    both = poster.get({"mobile": "5551230024", "MOBILE": "5551230025"})
    assert assert_envelope(both, 400)["fields"] == ["mobile"]
    assert poster.count() == 2


def test_a_lookalike_name_that_is_not_ascii_is_not_folded() -> None:
    data = {"xxTrustedFormTo\u212aen": "t"}  # KELVIN SIGN lower-cases to k
    assert fold_names(data) == {} and list(data) == ["xxTrustedFormTo\u212aen"]


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(LEAD_NAMES.exact)), flips=st.lists(st.booleans(), min_size=30, max_size=30))
def test_any_casing_of_a_standard_name_folds_to_it(name: str, flips: list[bool]) -> None:
    spelt = "".join(c.swapcase() if flip else c for c, flip in zip(name, flips, strict=False))
    data = {spelt: "v", "extra_Name": "x"}
    assert fold_names(data) == {}
    assert data == {name: "v", "extra_Name": "x"}
    if spelt != name:
        both = {name: "v", spelt: "w"}
        assert list(fold_names(both)) == [name]
        assert both == {name: "v"}  # the one spelt as the schema spells it is kept


# -- the import and the pre-ping read names alike -------------------------------------------------


def test_the_import_reads_header_names_in_any_case(cli_app: Flask, database: Any, tmp_path: Path) -> None:  # noqa: F811
    src = create_source(database, "Import")
    path = write_csv(tmp_path / "c.csv", ["EMAIL", "Mobile", "Zip", "UTM_Source"],
                     [["Imp@Example.com", "5551230026", "10001", "x"],
                      ["imp@example.com", "5551230027", "10001", "y"]])  # a duplicate of row 1 (email)
    result = run(cli_app, src.id, str(path), "--json")
    assert result.exit_code == 0, result.output
    assert "Warning" not in result.stderr  # EMAIL is email: no look-alike column
    docs = list(database["leads"].find({}, {"_id": 0}))
    assert len(docs) == 1
    assert (docs[0]["email"], docs[0]["mobile"], docs[0]["zip_code"]) == ("imp@example.com", "5551230026", "10001")
    assert docs[0]["extra"] == {"UTM_Source": "x"}


def test_an_import_header_with_both_spellings_is_refused(
    cli_app: Flask, database: Any, tmp_path: Path,  # noqa: F811
) -> None:
    src = create_source(database, "Import twice")
    path = write_csv(tmp_path / "c.csv", ["email", "Email"], [["a@example.com", "b@example.com"]])
    result = run(cli_app, src.id, str(path))
    assert result.exit_code != 0 and "more than one column maps to: email" in result.output
    assert "leads" not in database.list_collection_names() or database["leads"].count_documents({}) == 0


def _ping(poster: Poster, body: dict[str, Any]) -> Any:
    return poster.client.post(f"/api/lead/ping/{poster.source.id}", json=body, headers=poster.headers)


def test_a_ping_reads_names_and_hash_names_in_any_case(poster: Poster) -> None:
    assert_envelope(poster.post(lead(email="ping18@example.com", mobile="5551230028")), 201)
    for body in ({"EMAIL": "Ping18@example.com"}, {"Mobile": "5551230028"}, {"PHONE": "5551230028"},
                 {"EMAIL_SHA256": hashlib.sha256(b"ping18@example.com").hexdigest()},
                 {"Mobile_Sha256": hashlib.sha256(b"5551230028").hexdigest().upper()}):
        data = assert_envelope(_ping(poster, body), 200)
        assert data["lead_status"] == "duplicate", body
    assert poster.count() == 1


@pytest.mark.parametrize("body", [{"email": "p@example.com", "Email": "p@example.com"},
                                  {"email_sha256": "0" * 64, "EMAIL_SHA256": "1" * 64},
                                  {"EMAIL": "p@example.com", "email_sha256": "0" * 64}])
def test_a_ping_with_one_name_twice_is_invalid(poster: Poster, body: dict[str, Any]) -> None:
    data = assert_envelope(_ping(poster, {**body, "hold_seconds": 60}), 400)
    assert data["lead_status"] == "invalidField" and data["fields"]
    assert poster.count() == 0  # no hold either


# -- 2. Unicode spaces and dashes on a lenient source ---------------------------------------------


NB_HYPHEN, EN_DASH, MINUS, NBSP, NNBSP = "\u2011", "\u2013", "\u2212", "\u00a0", "\u202f"


@pytest.mark.parametrize("spelled", [
    f"(555) 123{NB_HYPHEN}4567", f"555{NBSP}123{NBSP}4567", f"555{NNBSP}123{NNBSP}4567",
    f"555{EN_DASH}123{EN_DASH}4567", f"555{MINUS}123{MINUS}4567", "555\u2010123\u20124567",
    f"+1{NBSP}(555){NBSP}123\u20144567", "555\u3000123\u20094567",
])
def test_lenient_unicode_separators_in_a_mobile(lenient: Poster, spelled: str) -> None:
    assert_envelope(lenient.post(lead(mobile="5551234567")), 201)
    data = assert_envelope(lenient.post(lead(mobile=spelled)), 201)
    assert data["lead_status"] == "duplicate" and data["matched_on"] == ["mobile"]
    assert lenient.count() == 1


@pytest.mark.parametrize("spelled", [f"90210{EN_DASH}1234", f"90210{MINUS}1234", f"90210{NBSP}1234",
                                     f"90210{NB_HYPHEN}1234"])
def test_lenient_unicode_separators_in_a_zip(lenient: Poster, spelled: str) -> None:
    assert_envelope(lenient.post(lead(zip_code=spelled)), 201)
    [doc] = lenient.stored()
    assert doc["zip_code"] == "90210" and doc["extra"] == {"zip_plus4": "1234"}


@pytest.mark.parametrize(("field", "value"), [("mobile", f"555{NBSP}123{NBSP}4567"),
                                              ("mobile", f"(555) 123{NB_HYPHEN}4567"),
                                              ("zip_code", f"90210{EN_DASH}1234")])
def test_a_strict_source_keeps_its_rules_for_unicode_separators(poster: Poster, field: str, value: str) -> None:
    assert refused(poster, poster.post(lead(**{field: value})))["fields"] == [field]


def test_a_zero_width_character_is_no_separator(lenient: Poster) -> None:
    assert refused(lenient, lenient.post(lead(mobile="555\u200b123\u200b4567")))["fields"] == ["mobile"]


def test_the_unicode_spaces_are_every_space_separator() -> None:
    every = {chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Zs"}
    assert set(UNICODE_SPACES) == every - {" "}
    assert all(unicodedata.category(c) in ("Pd", "Sm") for c in UNICODE_DASHES)


@settings(max_examples=300, deadline=None)
@given(digits=st.from_regex(r"\A[2-9][0-9]{9}\Z"), seps=st.lists(st.sampled_from(UNICODE_SPACES + UNICODE_DASHES
                                                                                  + " -."), min_size=2, max_size=2),
       plus_one=st.booleans())
def test_any_unicode_separators_give_the_ten_digits(digits: str, seps: list[str], plus_one: bool) -> None:
    spelled = ("+1 " if plus_one else "") + digits[:3] + seps[0] + digits[3:6] + seps[1] + digits[6:]
    zip_sep = seps[0] if seps[0] != "." else "-"  # a ZIP+4 is written with a space or a dash
    data: dict[str, Any] = {"mobile": spelled, "zip_code": digits[:5] + zip_sep + digits[5:9]}
    assert normalise(data) == {}
    assert data == {"mobile": digits, "zip_code": digits[:5], "zip_plus4": digits[5:9]}


# -- 3. a sent zip_plus4 is never overwritten -----------------------------------------------------


@pytest.mark.parametrize("name", ["zip_plus4", "ZIP_PLUS4", "Zip_Plus4"])
def test_a_zip_plus4_that_disagrees_with_the_zip_is_invalid(lenient: Poster, name: str) -> None:
    data = refused(lenient, lenient.post({**lead(zip_code="90210-1234"), name: "9999"}))
    assert data["fields"] == ["zip_plus4"]
    assert "zip_code" in data["errors"]["zip_plus4"][0] and "9999" not in str(data)


@pytest.mark.parametrize("sent", ["1234", 1234, " 1234 "])
def test_a_zip_plus4_that_agrees_is_fine(lenient: Poster, sent: Any) -> None:
    assert_envelope(lenient.post({**lead(zip_code="90210-1234"), "ZIP_Plus4": sent}), 201)
    [doc] = lenient.stored()
    assert doc["zip_code"] == "90210" and doc["extra"] == {"zip_plus4": "1234"}


@pytest.mark.parametrize("sent", ["9999", "12", "abc"])
def test_a_zip_plus4_with_a_plain_zip_is_kept_as_sent(lenient: Poster, sent: str) -> None:
    assert_envelope(lenient.post({**lead(zip_code="90210"), "zip_plus4": sent}), 201)
    assert lenient.stored()[0]["extra"] == {"zip_plus4": sent}


def test_zip_plus4_twice_on_a_lenient_source_is_invalid(lenient: Poster) -> None:
    data = refused(lenient, lenient.post({**lead(zip_code="90210"), "zip_plus4": "1", "Zip_Plus4": "2"}))
    assert data["fields"] == ["zip_plus4"]


def test_a_strict_source_keeps_zip_plus4_as_an_ordinary_extra(poster: Poster) -> None:
    assert_envelope(poster.post({**lead(), "ZIP_PLUS4": "1234"}), 201)
    assert poster.stored()[0]["extra"] == {"ZIP_PLUS4": "1234"}


# -- 4. TrustedForm URLs --------------------------------------------------------------------------


BAD_URLS = [
    "https://a.com\\@evil.com", "https://a.com\\@evil.com/x", "https://user@a.com", "https://user:pw@a.com/x",
    "https://a.com@evil.com", "https://%00.com", "https://ex%2Eample.com", "https://a.com:99999/x",
    "https://a.com:0/x", "https://a.com:65536", "https://a.com:/x", "https://a.com:08/x", "https://a.com:-1",
    "https://a\u200b.com/", "https://a.com/\u200bx", "https://a.com/x\ufeff", "https://a.com/\u00ad",
    "https://a.com/x\u2060y", "https://a.com/\x7f", "https://a.com/x\\y", "http://a.com/x", "https:/a.com",
    "https:///a.com", "https://", "https://a.com /x", "https://a.com/x y", "https://a.com/x\u00a0y",
    "https://1.2", "https://192.0.2.1/x", "https://0x7f.1/", "https://[::1]/", "https://a..com/",
    "https://xn--zz.com/", "https://xn--.com/", "https://b\u00fccher.de/", "https://a_b.com/", "ftp://a.com",
    "https://a.com#\u202e", "javascript://a.com/%0aalert(1)",
]
GOOD_URLS = [
    "https://cert.trustedform.com/2f4c1e9a7b3d5f8e0a6c4b2d9e1f3a5c7b9d0e2f", "https://a.example:8443/x?y=1#z",
    "https://localhost", "https://a.b./c", "HTTPS://Cert.TrustedForm.com/x", "https://a.com:1/",
    "https://a.com:65535/", "https://xn--bcher-kva.de/x", "https://a.com/\u00fcber?q=\u00e9",
    "https://a.com/x@y", "https://a.com/%41",
]


@pytest.mark.parametrize("url", BAD_URLS)
@pytest.mark.parametrize("name", ["xxTrustedFormCertUrl", "xxTrustedFormPingUrl"])
def test_trustedform_urls_that_browsers_and_python_could_read_apart_are_invalid(poster: Poster, name: str,
                                                                                 url: str) -> None:
    data = refused(poster, poster.post(lead(**{name: url})))
    assert data["fields"] == [name]
    if url.isprintable():  # no control or format character (the text rule's own refusal): the URL rule's
        assert data["errors"][name] == [HTTPS_URL_RULE]


@pytest.mark.parametrize("url", GOOD_URLS)
def test_trustedform_urls_with_a_host_name_are_stored_as_sent(poster: Poster, url: str) -> None:
    assert_envelope(poster.post(lead(xxTrustedFormCertUrl=url, xxTrustedFormPingUrl=url)), 201)
    assert poster.stored()[0]["trusted_form"] == {"cert_url": url, "ping_url": url}


def test_the_fast_path_refuses_a_port_past_65535() -> None:
    assert PLAIN_HTTPS_URL.fullmatch("https://a.com:65535/x")
    assert not PLAIN_HTTPS_URL.fullmatch("https://a.com:99999/x") and not is_https_url("https://a.com:99999/x")


def _browser_host(url: str) -> str:
    """The host as a WHATWG parser reads an https URL with no ``\\``, ``@`` or ``%`` in its authority:
    up to the first of / ? # (and :), lower-cased."""
    authority = url[len("https://"):]
    for end in "/?#":
        authority = authority.split(end, 1)[0]
    return authority.split(":", 1)[0].lower()


url_text = st.builds(lambda head, tail: head + tail,
                     st.sampled_from(["https://", "HTTPS://", "https://a.com", "https://xn--", "http://"]),
                     st.text(string.ascii_letters + string.digits + ".-:/?#@[]%\\ \u00a0\u200b\u2011\u00e9\u212a",
                             max_size=24))


@settings(max_examples=3000, deadline=None)
@given(value=url_text)
def test_an_accepted_url_has_one_host_for_browsers_and_python(value: str) -> None:
    if not is_https_url(value):
        assert not PLAIN_HTTPS_URL.fullmatch(value), value
        return
    authority = value[8:].split("/")[0].split("?")[0].split("#")[0]
    assert not any(c in authority for c in "@%\\[]") and "\\" not in value and not has_invisible(value)
    assert not any(c.isspace() for c in value)
    parts = urlsplit(value)
    assert parts.hostname == _browser_host(value) and parts.hostname.isascii()
    assert parts.port is None or 1 <= parts.port <= 65535


# -- 5. refusals say what is expected ---------------------------------------------------------------


@pytest.mark.parametrize(("field", "value", "message"), [
    ("state", "XX", STATE_RULE),
    ("state", "Texas", STATE_RULE),
    ("mobile", "98712", "Must be exactly 10 digits, such as 5551234567."),
    ("mobile", "(555) 123-4567", "Must be exactly 10 digits, such as 5551234567."),
    ("zip_code", "8021", "Must be exactly 5 digits, such as 90210."),
    ("date_of_birth", "31/01/1990", "Must be a real date in YYYY-MM-DD form, such as 1990-01-31."),
    ("xxTrustedFormCertUrl", "http://cert.trustedform.com/1", HTTPS_URL_RULE),
])
def test_a_refusal_says_what_is_expected_never_the_value(poster: Poster, field: str, value: str,
                                                         message: str) -> None:
    response = poster.post(lead(**{field: value}))
    assert refused(poster, response)["errors"] == {field: [message]}
    assert value not in response.get_data(as_text=True)
    assert STATE_RULE == "Must be a 2-letter USPS state or territory code, such as TX."


def test_declared_names_fold_without_clashes() -> None:
    assert len({name.lower() for name in DECLARED_FIELDS}) == len(DECLARED_FIELDS)
