"""Consent evidence (contract section 10): the fields, their storage under ``consent``, replay,
``require_any_of``, the TrustedForm certificate host rule, and what it costs a lead without any."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pymongo
import pytest
from flask import Flask

from pingtree_leads import PingtreeLeads, create_source, signals
from pingtree_leads.importer import likely_field
from pingtree_leads.repository import fingerprint
from pingtree_leads.schemas import ValidLead

from .conftest import FakeClock, Poster, assert_envelope, lead, make_app, write_csv
from .test_storage import CommandLog

JORNAYA = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"
CERT = "https://cert.trustedform.com/2f4c1e9a7b3d5f8e0a6c4b2d9e1f3a5c7b9d0e2f"
#: A marker no answer or log line may repeat (values are never echoed).
SECRET = "zq7secretvalue"


def consent_of(poster: Poster, transaction_id: str) -> Any:
    doc = poster.database["leads"].find_one({"transaction_id": transaction_id})
    assert doc is not None
    return doc.get("consent")


def refused(poster: Poster, body: dict[str, Any], field: str, status: str = "invalidField") -> dict[str, Any]:
    before = poster.count()
    response = poster.post(body)
    data = assert_envelope(response, 400)
    assert data["lead_status"] == status and field in data["fields"], data
    assert poster.count() == before
    return data


def test_every_consent_field_is_stored_under_consent(poster: Poster, clock: FakeClock) -> None:
    text = "I agree to be contacted by Acme at the number above, including by autodialer."
    body = lead(transaction_id="c-1", ip_address="2001:DB8:0:0:0:0:0:7", user_agent="Mozilla/5.0 (X11)",
                consent_text=text, consent_at="2024-05-01T09:03:22.123456-05:00",
                page_url="https://example.com/quote?step=2", jornaya_leadid=JORNAYA, utm_source="x")
    assert assert_envelope(poster.post(body), 201)["lead_status"] == "accept"
    doc = poster.database["leads"].find_one({"transaction_id": "c-1"})
    consent = doc["consent"]
    at = consent.pop("consent_at")
    assert consent == {
        "ip_address": "2001:db8::7", "user_agent": "Mozilla/5.0 (X11)", "consent_text": text,
        "consent_text_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "page_url": "https://example.com/quote?step=2", "jornaya_leadid": JORNAYA.upper(),
    }
    # A BSON datetime in UTC, at the stored (millisecond) precision.
    assert isinstance(at, datetime) and at.replace(tzinfo=None) == datetime(2024, 5, 1, 14, 3, 22, 123000)
    assert doc["extra"] == {"utm_source": "x"}  # consent fields are extras no more
    for name in ("ip_address", "user_agent", "consent_at", "jornaya_leadid"):
        assert name not in doc


def test_a_lead_without_consent_stores_and_fingerprints_as_before(poster: Poster) -> None:
    assert_envelope(poster.post(lead(transaction_id="plain")), 201)
    doc = poster.database["leads"].find_one({"transaction_id": "plain"})
    assert "consent" not in doc  # no bytes for a source that does not use it
    plain = ValidLead(fields={"email": "a@example.com"}, trusted_form={}, extra={}, transaction_id=None)
    old = json.dumps({"fields": plain.fields, "trusted_form": {}, "extra": {}}, sort_keys=True, separators=(",", ":"))
    assert fingerprint(plain) == hashlib.sha256(old.encode()).hexdigest()  # stored fingerprints stay valid
    with_ip = ValidLead(fields=plain.fields, trusted_form={}, extra={}, transaction_id=None,
                        consent={"ip_address": "203.0.113.7"})
    assert fingerprint(with_ip) != fingerprint(plain)


@pytest.mark.parametrize(("sent", "stored"), [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
    ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
    ("::ffff:203.0.113.7", "203.0.113.7"),  # IPv4-mapped: the IPv4 address, one spelling
    ("::FFFF:CB00:7107", "203.0.113.7"),
    ("10.1.2.3", "10.1.2.3"),  # private ranges are accepted (docs: a consumer on a private network)
    ("fe80::1", "fe80::1"),
    (" 198.51.100.2 ", "198.51.100.2"),
])
def test_ip_address_is_stored_canonical(poster: Poster, sent: str, stored: str) -> None:
    assert_envelope(poster.post(lead(transaction_id="ip", ip_address=sent)), 201)
    assert consent_of(poster, "ip")["ip_address"] == stored


def test_ip_address_refusals(poster: Poster) -> None:
    for bad in ("fe80::1%eth0", "127.0.0.1", "::1", "0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255",
                "01.2.3.4", "1.2.3", "[2001:db8::1]", "1.2.3.4:80", "not-an-ip", "1.2.3.4/32", 3405803783,
                "2001:db8::1" + "0" * 40,
                # Loopback in IPv4-compatible and NAT64 dress (found by attack), and ::a.b.c.d at all.
                "::127.0.0.1", "::8.8.8.8", "64:ff9b::7f00:1", "64:ff9b::127.0.0.1"):
        data = refused(poster, lead(ip_address=bad), "ip_address")
        assert data["errors"]["ip_address"][0].startswith(("Must be", "Longer than")), bad


def test_the_requests_own_address_is_never_the_consumers(poster: Poster) -> None:
    environ = {"REMOTE_ADDR": "198.51.100.77"}
    headers = {**poster.headers, "X-Forwarded-For": "192.0.2.55", "X-Real-IP": "192.0.2.56"}
    assert_envelope(poster.post(lead(transaction_id="no-ip"), headers=headers, environ_base=environ), 201)
    doc = poster.database["leads"].find_one({"transaction_id": "no-ip"})
    assert "consent" not in doc and "192.0.2.55" not in json.dumps(doc, default=str)
    assert_envelope(poster.post(lead(transaction_id="ip", ip_address="203.0.113.9"), headers=headers,
                                environ_base=environ), 201)
    assert consent_of(poster, "ip") == {"ip_address": "203.0.113.9"}


def test_consent_at_rules(poster: Poster, clock: FakeClock) -> None:
    clock.now = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
    accepted = {
        "2025-06-01T07:00:00-05:00": datetime(2025, 6, 1, 12, 0),
        "2025-06-01t12:00:00.9999999z": datetime(2025, 6, 1, 12, 0, 0, 999000),  # 7 digits, cut to ms
        "2025-06-01 12:04:59Z": datetime(2025, 6, 1, 12, 4, 59),  # within the 5-minute clock skew
        "2000-01-01T00:00:00+00:00": datetime(2000, 1, 1),
    }
    for i, (sent, stored) in enumerate(accepted.items()):
        assert_envelope(poster.post(lead(transaction_id=f"at{i}", consent_at=sent)), 201)
        assert consent_of(poster, f"at{i}")["consent_at"].replace(tzinfo=None) == stored
    for bad in ("2025-06-01T12:05:01Z", "2025-06-01T12:00:00", "2025-06-01", "2025-02-30T00:00:00Z",
                "2025-06-01T24:00:00Z", "2025-06-01T12:00:00+24:00", "2025-06-01T12:00:00+05:60",
                "1999-12-31T23:59:59Z", "2025-06-01T12:00Z", "20250601T120000Z", "2025-06-01T12:00:60Z",
                1748779200):
        refused(poster, lead(consent_at=bad), "consent_at")


def test_consent_text_and_its_hash(poster: Poster) -> None:
    text = "J'accepte d'être contacté."
    digest = hashlib.sha256(text.encode()).hexdigest()
    assert_envelope(poster.post(lead(transaction_id="t1", consent_text=text, consent_text_sha256=digest.upper())), 201)
    assert consent_of(poster, "t1") == {"consent_text": text, "consent_text_sha256": digest}
    assert_envelope(poster.post(lead(transaction_id="t2", consent_text_sha256=digest.upper())), 201)
    assert consent_of(poster, "t2") == {"consent_text_sha256": digest}  # the hash alone: stored lower-case
    refused(poster, lead(consent_text=text, consent_text_sha256="0" * 64), "consent_text_sha256")
    for bad in ("abc", "g" * 64, "0" * 63, "0" * 65):
        refused(poster, lead(consent_text_sha256=bad), "consent_text_sha256")
    refused(poster, lead(consent_text="x" * 10_001), "consent_text")
    assert_envelope(poster.post(lead(consent_text="x" * 10_000)), 201)
    refused(poster, lead(consent_text="I agree\u202e"), "consent_text")


def test_user_agent_page_url_and_jornaya(poster: Poster) -> None:
    assert_envelope(poster.post(lead(transaction_id="u", user_agent="A" * 2048, page_url="http://example.com/a",
                                     jornaya_leadid=JORNAYA.upper())), 201)
    assert consent_of(poster, "u") == {"user_agent": "A" * 2048, "page_url": "http://example.com/a",
                                       "jornaya_leadid": JORNAYA.upper()}
    refused(poster, lead(user_agent="A" * 2049), "user_agent")
    refused(poster, lead(user_agent="Mozilla\x00"), "user_agent")
    for bad in ("ftp://example.com/a", "javascript:alert(1)", "https://user@example.com/", "example.com/a",
                "http://exa mple.com/", "http://127.0.0.1/", "https://example.com:0/", "http://ex\\ample.com/"):
        refused(poster, lead(page_url=bad), "page_url")
    for wrong in (JORNAYA[:-1], JORNAYA + "0", JORNAYA.replace("-", ""), "g" + JORNAYA[1:], 12345):
        refused(poster, lead(jornaya_leadid=wrong), "jornaya_leadid")


def test_names_are_read_in_any_case(poster: Poster) -> None:
    body = lead(transaction_id="case", IP_Address="203.0.113.7", Jornaya_LeadID=JORNAYA, USER_AGENT="UA")
    assert_envelope(poster.post(body), 201)
    doc = poster.database["leads"].find_one({"transaction_id": "case"})
    assert doc["consent"] == {"ip_address": "203.0.113.7", "jornaya_leadid": JORNAYA.upper(), "user_agent": "UA"}
    assert doc["extra"] == {}
    data = refused(poster, lead(ip_address="203.0.113.7", IP_ADDRESS="203.0.113.8"), "ip_address")
    assert "names are read in any case" in data["errors"]["ip_address"][0]


def test_replay_includes_consent(poster: Poster) -> None:
    body = lead(transaction_id="r", ip_address="2001:db8::1", consent_at="2024-05-01T14:03:22Z", jornaya_leadid=JORNAYA)
    first = assert_envelope(poster.post(body), 201)
    # The same evidence in other spellings is the same lead: a replay.
    same = {**body, "ip_address": "2001:0db8:0:0:0:0:0:1", "consent_at": "2024-05-01T09:03:22.000-05:00",
            "jornaya_leadid": JORNAYA.upper()}
    again = assert_envelope(poster.post(same), 201)
    assert again["replayed"] is True and again["lead_id"] == first["lead_id"]
    response = poster.post({**body, "ip_address": "2001:db8::2"})  # other evidence, same transaction id
    assert response.status_code == 409
    assert poster.post({k: v for k, v in body.items() if k != "jornaya_leadid"}).status_code == 409
    assert poster.count() == 1


@pytest.fixture
def evidence_source(database: Any, clock: FakeClock) -> Any:
    return create_source(database, "Needs evidence", require_any_of=["trusted_form", "Jornaya_LeadiD"], clock=clock)


def test_require_any_of_is_missing_field_naming_the_alternatives(
        client: Any, database: Any, evidence_source: Any) -> None:
    poster = Poster(client, database, evidence_source)
    response = poster.post(lead())
    body = response.get_json()
    data = assert_envelope(response, 400)
    assert data["lead_status"] == "missingField"
    assert data["fields"] == ["xxTrustedFormCertUrl", "jornaya_leadid"]
    assert data["errors"]["jornaya_leadid"] == ["One of xxTrustedFormCertUrl, jornaya_leadid is required."]
    assert body["message"] == "Missing required field: one of xxTrustedFormCertUrl, jornaya_leadid"
    assert poster.count() == 0
    assert assert_envelope(poster.post(lead(xxTrustedFormCertUrl=CERT)), 201)["lead_status"] == "accept"
    assert assert_envelope(poster.post(lead(JORNAYA_LEADID=JORNAYA)), 201)["lead_status"] == "accept"
    # Sent but malformed: that field's own refusal, not "missing".
    data = refused(poster, lead(jornaya_leadid="nope"), "jornaya_leadid")
    assert data["fields"] == ["jornaya_leadid"]
    # Test mode answers the same, with test: true.
    tested = assert_envelope(poster.post(lead(xxTest=True)), 400)
    assert tested["lead_status"] == "missingField" and tested["test"] is True
    assert poster.count() == 2


def test_jornayas_own_names_are_jornaya_leadid(client: Any, database: Any, evidence_source: Any) -> None:
    """A sender posting Jornaya's form names (leadid_token, universal_leadid) in any case is not
    refused by a source requiring jornaya_leadid: they are aliases; two spellings are refused."""
    poster = Poster(client, database, evidence_source)
    for n, name in enumerate(("leadid_token", "universal_leadid", "LeadiD_Token", "UNIVERSAL_LEADID")):
        assert assert_envelope(poster.post(lead(transaction_id=f"j{n}", **{name: JORNAYA})), 201)["lead_status"] == \
            "accept"
        doc = database["leads"].find_one({"transaction_id": f"j{n}"})
        assert doc["consent"] == {"jornaya_leadid": JORNAYA.upper()} and doc["extra"] == {}
    data = refused(poster, lead(leadid_token=JORNAYA, universal_leadid=JORNAYA), "universal_leadid")
    assert data["errors"]["universal_leadid"] == [
        "Sent together with leadid_token, another name for jornaya_leadid: send one."]
    data = refused(poster, lead(jornaya_leadid=JORNAYA, leadid_token=JORNAYA), "leadid_token")
    assert data["errors"]["leadid_token"] == [
        "Sent together with jornaya_leadid, which it is another name for: send one."]
    refused(poster, lead(leadid_token="nope"), "jornaya_leadid")  # the field's rule
    # Blank is absent: the other spelling alone counts.
    assert assert_envelope(poster.post(lead(transaction_id="jb", leadid_token=" ", universal_leadid=JORNAYA)), 201)
    assert poster.count() == 5


def test_require_any_of_with_other_missing_fields(client: Any, database: Any, clock: FakeClock) -> None:
    src = create_source(database, "Strict", required_fields=["email"], require_any_of=["ip_address"], clock=clock)
    poster = Poster(client, database, src)
    response = poster.post({"mobile": "5125550143"})
    data = assert_envelope(response, 400)
    assert data["lead_status"] == "missingField" and data["fields"] == ["email", "ip_address"]
    assert data["errors"]["ip_address"] == ["Is required."]
    assert response.get_json()["message"] == "Missing required field(s)"


def test_create_source_checks_require_any_of(database: Any) -> None:
    with pytest.raises(TypeError):
        create_source(database, "One string", require_any_of="trusted_form")
    with pytest.raises(ValueError, match="require_any_of may only name"):
        create_source(database, "Unknown", require_any_of=["xxTrustedFormToken"])
    src = create_source(database, "Cased", require_any_of=["TRUSTED_FORM", "trusted_form", "Page_Url"])
    doc = database["database_sources"].find_one()
    assert doc["require_any_of"] == ["trusted_form", "page_url"] and src.id == str(doc["_id"])


def test_trusted_form_cert_host_rule(client: Any, database: Any, clock: FakeClock) -> None:
    strict = Poster(client, database, create_source(database, "Cert host", require_trusted_form_host=True,
                                                    clock=clock))
    loose = Poster(client, database, create_source(database, "Any host", clock=clock))
    for good in (CERT, "https://CERT.TrustedForm.com/abc", "https://cert.trustedform.com:443/abc"):
        assert assert_envelope(strict.post(lead(xxTrustedFormCertUrl=good)), 201)["lead_status"] == "accept"
    for bad in ("https://cert.trustedform.com.evil.example/abc", "https://evil.example/cert.trustedform.com",
                "https://cert.trustedform.com:8443/abc", "https://trustedform.com/abc",
                "https://cert.trustedform.com./abc", "https://xcert.trustedform.com/abc"):
        data = refused(strict, lead(xxTrustedFormCertUrl=bad), "xxTrustedFormCertUrl")
        assert data["errors"]["xxTrustedFormCertUrl"] == [
            "Must be a TrustedForm certificate URL on cert.trustedform.com."]
        assert_envelope(loose.post(lead(xxTrustedFormCertUrl=bad)), 201)  # a default source keeps its rule
    # The ping URL is not the certificate: any https host, as before.
    assert_envelope(strict.post(lead(xxTrustedFormPingUrl="https://ping.trustedform.com/x")), 201)


def test_get_form_multipart_and_test_mode_read_consent(poster: Poster) -> None:
    assert_envelope(poster.get(lead(transaction_id="g", ip_address="203.0.113.1")), 201)
    assert consent_of(poster, "g") == {"ip_address": "203.0.113.1"}
    assert_envelope(poster.post(data=lead(transaction_id="f", consent_at="2024-05-01T14:03:22Z")), 201)
    assert consent_of(poster, "f")["consent_at"].replace(tzinfo=None) == datetime(2024, 5, 1, 14, 3, 22)
    parts = lead(transaction_id="m", jornaya_leadid=JORNAYA)
    assert_envelope(poster.post(data=parts, content_type="multipart/form-data"), 201)
    assert consent_of(poster, "m") == {"jornaya_leadid": JORNAYA.upper()}
    before = poster.count()
    tested = assert_envelope(poster.post(lead(xxTest="true", ip_address="203.0.113.2")), 201)
    assert tested["test"] is True and "lead_id" not in tested and poster.count() == before
    tested = assert_envelope(poster.post(lead(xxTest="true", ip_address="127.0.0.1")), 400)
    assert tested["fields"] == ["ip_address"]


def test_fetch_signals_and_validators_see_consent(database: Any, clock: FakeClock) -> None:
    app = Flask("consent_host")
    leads = PingtreeLeads()
    seen: list[dict[str, Any]] = []
    leads.lead_validator(lambda values, source: seen.append(values))  # type: ignore[arg-type]
    leads.init_app(app, database=database, clock=clock, allow_fetch=True)
    accepted: list[dict[str, Any]] = []

    def receiver(sender: Any, **extra: Any) -> None:
        accepted.append(extra["lead"])

    signals.lead_accepted.connect(receiver, app)
    try:
        src = create_source(database, "Fetched", clock=clock)
        poster = Poster(app.test_client(), database, src)
        stored = assert_envelope(poster.post(lead(transaction_id="v", ip_address="::ffff:192.0.2.1",
                                                  consent_at="2024-05-01T14:03:22.5Z")), 201)
        plain = assert_envelope(poster.post(lead(transaction_id="w")), 201)
    finally:
        signals.lead_accepted.disconnect(receiver, app)
    expected = {"ip_address": "192.0.2.1", "consent_at": "2024-05-01T14:03:22.500+00:00"}
    assert seen[0]["consent"]["ip_address"] == "192.0.2.1" and seen[1]["consent"] == {}
    assert accepted[0]["consent"] == expected and accepted[1]["consent"] == {}
    fetch = f"/api/lead/fetch/{src.id}"
    found = assert_envelope(poster.client.get(fetch, query_string={"lead_id": stored["lead_id"]},
                                              headers=poster.headers), 200)["lead"]
    assert found["consent"] == expected
    found = assert_envelope(poster.client.get(fetch, query_string={"lead_id": plain["lead_id"]},
                                              headers=poster.headers), 200)["lead"]
    assert found["consent"] == {}  # always there: {} for a lead without evidence


def test_import_reads_consent_columns(database: Any, clock: FakeClock, tmp_path: Path) -> None:
    app = Flask("consent_import")
    PingtreeLeads().init_app(app, database=database, clock=clock)
    src = create_source(database, "Imported", require_any_of=["jornaya_leadid"], clock=clock)
    path = write_csv(tmp_path / "leads.csv",
                     ["email", "IP_Address", "user_agent", "consent_at", "Jornaya_LeadID", "leadid"],
                     [["a@example.com", "2001:DB8::5", "UA/1", "2024-05-01T14:03:22Z", JORNAYA, "x"],
                      ["b@example.com", "203.0.113.5", "UA/2", "2024-05-01T14:03:22Z", "", ""]])
    result = app.test_cli_runner().invoke(args=["pingtree-leads", "import", src.id, str(path), "--json"])
    summary = json.loads(result.stdout)["counts"]
    assert summary["accepted"] == 1 and summary["missingField"] == 1, result.output
    doc = database["leads"].find_one({"email": "a@example.com"})
    assert doc["consent"]["ip_address"] == "2001:db8::5" and doc["consent"]["jornaya_leadid"] == JORNAYA.upper()
    assert doc["extra"] == {"leadid": "x"}
    # Jornaya's own names are aliases of jornaya_leadid, in a file as in a post; two of them in one row
    # are one field sent twice.
    other = write_csv(tmp_path / "other.csv", ["email", "universal_leadid", "LeadiD_Token"],
                      [["c@example.com", JORNAYA, ""], ["d@example.com", "", JORNAYA],
                       ["e@example.com", JORNAYA, JORNAYA]])
    result = app.test_cli_runner().invoke(args=["pingtree-leads", "import", src.id, str(other), "--json"])
    assert "--map" not in result.stderr
    summary = json.loads(result.stdout)["counts"]
    assert summary["accepted"] == 2 and summary["invalidField"] == 1, result.output
    for email in ("c@example.com", "d@example.com"):
        assert database["leads"].find_one({"email": email})["consent"] == {"jornaya_leadid": JORNAYA.upper()}
    assert likely_field("IP Address") == "ip_address" and likely_field("universal_leadid") == "jornaya_leadid"


def test_no_value_is_echoed_in_answers_or_logs(poster: Poster, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pingtree_leads")
    for field, bad in (("ip_address", SECRET), ("user_agent", SECRET + "\x01"), ("consent_text", SECRET + "\x02"),
                       ("consent_text_sha256", SECRET), ("consent_at", SECRET), ("page_url", "ftp://" + SECRET),
                       ("jornaya_leadid", SECRET)):
        response = poster.post(lead(**{field: bad}))
        assert response.status_code == 400 and SECRET not in response.get_data(as_text=True), field
    assert SECRET not in caplog.text


@pytest.fixture
def monitored(secantus_uri: str) -> Iterator[tuple[Any, CommandLog]]:
    log = CommandLog()
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(secantus_uri, event_listeners=[log],
                                                           serverSelectionTimeoutMS=5000)
    db = client["ptl_consent_cost"]
    yield db, log
    client.drop_database(db.name)
    client.close()


def test_cost_one_insert_and_no_extra_index_key(monitored: tuple[Any, CommandLog]) -> None:
    db, log = monitored
    plain = create_source(db, "Default")
    needs = create_source(db, "Evidence", require_any_of=["trusted_form", "jornaya_leadid"],
                          require_trusted_form_host=True)
    client = make_app(db).test_client()
    p, n = Poster(client, db, plain), Poster(client, db, needs)
    assert_envelope(p.post(lead()), 201)  # warm-up: indexes, source cache
    assert_envelope(n.post(lead(jornaya_leadid=JORNAYA)), 201)
    evidence = lead(transaction_id="n1", jornaya_leadid=JORNAYA, ip_address="203.0.113.1", xxTrustedFormCertUrl=CERT)
    for poster, body in ((p, lead(transaction_id="p1")), (n, evidence)):
        log.commands.clear()
        assert assert_envelope(poster.post(body), 201)["lead_status"] == "accept"
        assert [name for name, _ in log.commands] == ["insert"]
        doc = db["leads"].find_one({"transaction_id": body["transaction_id"]})
        assert doc["claims"][0] == "-" + body["transaction_id"] and len(doc["claims"]) == 5  # tx + 2 + 2 twins
    log.commands.clear()
    assert_envelope(n.post(lead()), 400)  # refused before the database
    assert log.commands == []


def test_concurrent_replays_with_consent_store_one(real_database: Any) -> None:
    src = create_source(real_database, "Racing", require_any_of=["ip_address"])
    app = make_app(real_database)
    body = lead(transaction_id="race", ip_address="2001:db8::9", consent_at="2024-05-01T14:03:22Z")
    assert_envelope(Poster(app.test_client(), real_database, src).post(lead(ip_address="203.0.113.3")), 201)
    barrier = threading.Barrier(8)
    answers: list[dict[str, Any]] = []

    def post() -> None:
        poster = Poster(app.test_client(), real_database, src)
        barrier.wait()
        answers.append(assert_envelope(poster.post(body), 201))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({a["lead_id"] for a in answers}) == 1 and sum(not a.get("replayed") for a in answers) == 1
    assert real_database["leads"].count_documents({"transaction_id": "race"}) == 1


def test_consent_at_near_now_uses_the_configured_clock(poster: Poster, clock: FakeClock) -> None:
    clock.now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    sent = (clock.now + timedelta(minutes=4)).isoformat()
    assert_envelope(poster.post(lead(transaction_id="skew", consent_at=sent)), 201)
    refused(poster, lead(consent_at=(clock.now + timedelta(minutes=6)).isoformat()), "consent_at")


def test_cli_create_source_sets_the_consent_rules(database: Any, clock: FakeClock) -> None:
    app = Flask("consent_cli")
    PingtreeLeads().init_app(app, database=database, clock=clock)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["pingtree-leads", "create-source", "Evidence", "--require-any-of",
                                 "Trusted_Form,jornaya_leadid", "--require-trusted-form-host"])
    assert result.exit_code == 0, result.output
    doc = database["database_sources"].find_one({"name": "Evidence"})
    assert doc["require_any_of"] == ["trusted_form", "jornaya_leadid"] and doc["require_trusted_form_host"] is True
    bad = runner.invoke(args=["pingtree-leads", "create-source", "Bad", "--require-any-of", "xxTest"])
    assert bad.exit_code != 0 and "--require-any-of" in bad.output


# -- found by the attack of 2026-12-08 (branch attack2-s20) -----------------------------------------


def test_a_ping_ignores_two_spellings_of_a_field_it_does_not_read(
        client: Any, database: Any, evidence_source: Any) -> None:
    """A ping reads only dedupe values; its other fields are ignored (contract section 8).  A
    seller's page carrying both Jornaya inputs (leadid_token and the older universal_leadid), or
    zip beside zip_code, had its ping refused with 400, while the same field sent once with a bad
    value was ignored.  Two spellings of a dedupe field stay a refusal."""
    poster = Poster(client, database, evidence_source)
    for extra in ({"leadid_token": JORNAYA, "universal_leadid": JORNAYA},
                  {"jornaya_leadid": JORNAYA, "LeadiD_Token": JORNAYA},
                  {"zip": "10001", "zip_code": "10001"}, {"first_name": "A", "FIRST_NAME": "B"}):
        response = client.post(f"/api/lead/ping/{evidence_source.id}", headers=poster.headers,
                               json={"email": "pinged@example.com", **extra})
        assert assert_envelope(response, 200)["lead_status"] == "accept", extra
    response = client.post(f"/api/lead/ping/{evidence_source.id}", headers=poster.headers,
                           json={"email": "pinged@example.com", "phone": "5125550143", "MOBILE": "5125550143"})
    assert assert_envelope(response, 400)["fields"] == ["phone"]
    assert poster.count() == 0
