"""Intake compatibility (contract section 5): aliases, lenient sources, wider extras, custom dedupe."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from pingtree_leads import create_source

from .conftest import REAL_BACKENDS, FakeClock, Poster, assert_envelope, lead, make_app

# -- aliases: every source ---------------------------------------------------------------------


def test_pingtree_help_example_names_are_read_as_their_fields(database: Any, clock: FakeClock) -> None:
    src = create_source(database, "Requires mobile", required_fields=["mobile", "zip_code"], clock=clock)
    p = Poster(make_app(database, clock=clock).test_client(), database, src)
    data = assert_envelope(p.post({"first_name": "Ann", "phone": "5127891111", "zip": "73301",
                                   "dob": "1990-01-31"}), 201)
    assert data["lead_status"] == "accept"
    stored = p.stored()[0]
    assert (stored["mobile"], stored["zip_code"], stored["date_of_birth"]) == ("5127891111", "73301", "1990-01-31")
    assert stored["extra"] == {}
    # The alias takes part in dedupe as its field does.
    dup = assert_envelope(p.post({"mobile": "5127891111", "zip_code": "73301"}), 201)
    assert dup["lead_status"] == "duplicate" and dup["matched_on"] == ["mobile"]


@pytest.mark.parametrize(("alias", "field", "value"), [("phone", "mobile", "5127891111"),
                                                       ("zip", "zip_code", "73301"),
                                                       ("dob", "date_of_birth", "1990-01-31")])
def test_an_alias_and_its_field_together_are_invalid(poster: Poster, alias: str, field: str, value: str) -> None:
    data = assert_envelope(poster.post(lead(**{alias: value, field: value})), 400)
    assert data["lead_status"] == "invalidField" and alias in data["fields"]
    assert poster.count() == 0


def test_aliases_over_get_and_form(poster: Poster) -> None:
    assert assert_envelope(poster.get({"phone": "5550101010", "first_name": "G"}), 201)["lead_status"] == "accept"
    form = poster.client.post(poster.url, data={"zip": "10001", "first_name": "F"}, headers=poster.headers)
    assert assert_envelope(form, 201)["lead_status"] == "accept"
    assert sorted(d.get("mobile", d.get("zip_code")) for d in poster.stored()) == ["10001", "5550101010"]


def test_a_blank_alias_counts_as_absent(poster: Poster) -> None:
    assert_envelope(poster.post(lead(phone="  ")), 201)  # beside mobile: blank, so not "both"


# -- lenient sources ----------------------------------------------------------------------------


@pytest.fixture
def lenient(database: Any, clock: FakeClock) -> Poster:
    src = create_source(database, "Lenient", lenient=True, clock=clock)
    return Poster(make_app(database, clock=clock).test_client(), database, src)


@pytest.mark.parametrize("spelled", ["(512) 789-1111", "+1 512 789 1111", "1-512-789-1111", "512.789.1111",
                                     "512 789 1111", "+15127891111", "15127891111"])
def test_lenient_phone_numbers_become_ten_digits_and_one_consumer(lenient: Poster, spelled: str) -> None:
    assert_envelope(lenient.post(lead(mobile="5127891111")), 201)
    data = assert_envelope(lenient.post(lead(mobile=spelled)), 201)
    assert data["lead_status"] == "duplicate" and data["matched_on"] == ["mobile"]


@pytest.mark.parametrize("spelled", ["+44 20 7946 0958", "(512) 789-111", "2-512-789-1111", "512-789-1111 x2"])
def test_lenient_phone_numbers_that_are_not_us_numbers_are_still_refused(lenient: Poster, spelled: str) -> None:
    data = assert_envelope(lenient.post(lead(mobile=spelled)), 400)
    assert data["fields"] == ["mobile"]


def test_lenient_zip_state_and_date(lenient: Poster) -> None:
    data = assert_envelope(lenient.post(lead(zip_code="90210-1234", state="Texas", date_of_birth="01/31/1990",
                                             transaction_id="len-1")), 201)
    stored = lenient.stored()[0]
    assert (stored["zip_code"], stored["state"], stored["date_of_birth"]) == ("90210", "TX", "1990-01-31")
    assert stored["extra"]["zip_plus4"] == "1234"
    # A retry spelled the other way is the same lead: a replay, not a 409.
    again = lead(zip_code="90210 1234", state="texas", date_of_birth="1/31/1990", transaction_id="len-1")
    again.update({k: stored[k] for k in ("first_name", "last_name", "email", "mobile", "address", "city")})
    replay = assert_envelope(lenient.post(again), 201)
    assert replay["replayed"] is True and replay["lead_id"] == data["lead_id"]


@pytest.mark.parametrize(("field", "value"), [("state", "Texass"), ("date_of_birth", "02/30/1990"),
                                              ("date_of_birth", "31/01/1990"), ("zip_code", "90210-12")])
def test_lenient_values_that_do_not_normalise_are_refused_by_the_rule(lenient: Poster, field: str,
                                                                      value: str) -> None:
    data = assert_envelope(lenient.post(lead(**{field: value})), 400)
    assert data["fields"] == [field]


@pytest.mark.parametrize(("field", "value"), [("mobile", "(512) 789-1111"), ("zip_code", "90210-1234"),
                                              ("state", "Texas"), ("date_of_birth", "01/31/1990")])
def test_a_strict_source_keeps_the_original_rules(poster: Poster, field: str, value: str) -> None:
    assert_envelope(poster.post(lead(**{field: value})), 400)
    assert poster.count() == 0


# -- extras, bodies, cities ---------------------------------------------------------------------


def test_extra_names_with_dashes_and_json_types_are_kept(poster: Poster) -> None:
    body = lead(**{"page-url": "https://example.com/q", "utm-source": "g", "consent": True, "score": 7, "r": 1.5})
    assert_envelope(poster.post(body), 201)
    extra = poster.stored()[0]["extra"]
    assert extra == {"page-url": "https://example.com/q", "utm-source": "g", "consent": True, "score": 7, "r": 1.5}


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", None])
def test_a_json_object_body_is_read_as_json_without_a_json_type(poster: Poster, content_type: str | None) -> None:
    raw = json.dumps(lead(consent=True)).encode()
    headers = dict(poster.headers)
    if content_type:
        headers["Content-Type"] = content_type
    response = poster.client.post(poster.url, data=raw, headers=headers)
    assert assert_envelope(response, 201)["lead_status"] == "accept"
    assert poster.stored()[0]["extra"] == {"consent": True}


def test_a_broken_json_object_with_the_form_type_is_a_body_error(poster: Poster) -> None:
    response = poster.client.post(poster.url, data=b'{"email": ', headers={
        **poster.headers, "Content-Type": "application/x-www-form-urlencoded"})
    assert assert_envelope(response, 400)["errors"] == {"_body": [
        "Body starts like a JSON object (sent as application/x-www-form-urlencoded) but is not a valid JSON "
        "object: Body is not valid JSON."]}


def test_a_real_form_body_is_still_a_form(poster: Poster) -> None:
    response = poster.client.post(poster.url, data=b"first_name=Ada&email=ada%40example.com", headers={
        **poster.headers, "Content-Type": "application/x-www-form-urlencoded"})
    assert assert_envelope(response, 201)["lead_status"] == "accept"


def test_runs_of_spaces_in_a_city_are_one_space(poster: Poster) -> None:
    assert_envelope(poster.post(lead(city="New   York", transaction_id="city-1")), 201)
    assert poster.stored()[0]["city"] == "New York"


# -- custom dedupe fields -----------------------------------------------------------------------


def test_dedupe_on_a_custom_field(database: Any, clock: FakeClock) -> None:
    src = create_source(database, "Custom", dedupe_fields=["email", "customer_id"], clock=clock)
    p = Poster(make_app(database, clock=clock).test_client(), database, src)
    assert_envelope(p.post(lead(customer_id="C-77")), 201)
    data = assert_envelope(p.post(lead(customer_id="C-77")), 201)
    assert data == {**data, "lead_status": "duplicate", "matched_on": ["customer_id"]}
    assert assert_envelope(p.post(lead(customer_id="c-77")), 201)["lead_status"] == "accept"  # exact values
    assert assert_envelope(p.post(lead()), 201)["lead_status"] == "accept"  # no value: no claim
    assert p.count() == 3


def test_a_custom_number_and_its_digits_are_one_value(database: Any, clock: FakeClock) -> None:
    src = create_source(database, "Numbers", dedupe_fields=["customer_id"], clock=clock)
    p = Poster(make_app(database, clock=clock).test_client(), database, src)
    assert_envelope(p.post(lead(customer_id=12345)), 201)
    form = p.client.post(p.url, data={**lead(), "customer_id": "12345"}, headers=p.headers)
    assert assert_envelope(form, 201)["lead_status"] == "duplicate"


def test_a_custom_dedupe_field_with_a_window(database: Any, clock: FakeClock) -> None:
    src = create_source(database, "Custom window", dedupe_fields=["customer_id"], dedupe_window_days=1, clock=clock)
    p = Poster(make_app(database, clock=clock).test_client(), database, src)
    assert_envelope(p.post(lead(customer_id="W1")), 201)
    assert assert_envelope(p.post(lead(customer_id="W1")), 201)["lead_status"] == "duplicate"
    clock.advance(days=1, seconds=1)
    assert assert_envelope(p.post(lead(customer_id="W1")), 201)["lead_status"] == "accept"
    assert p.count() == 2


@pytest.mark.parametrize("database", REAL_BACKENDS, indirect=True)
def test_custom_dedupe_is_race_safe(database: Any) -> None:
    src = create_source(database, "Race", dedupe_fields=["customer_id"])
    app = make_app(database)
    make_app(database)  # a second app on the same database, as a second process would be
    answers: list[str] = []
    barrier = threading.Barrier(12)

    def post(n: int) -> None:
        client = app.test_client()
        barrier.wait()
        response = client.post(f"/api/lead/create/{src.id}", json=lead(customer_id="RACE"),
                               headers={"Authorization": f"Bearer {src.api_key}"})
        answers.append(response.get_json()["data"]["lead_status"])

    threads = [threading.Thread(target=post, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == ["accept"] + ["duplicate"] * 11
    assert database["leads"].count_documents({"extra.customer_id": "RACE"}) == 1


def test_cli_creates_lenient_and_custom_dedupe_sources(database: Any, tmp_path: Path) -> None:
    app: Flask = make_app(database)
    result = app.test_cli_runner().invoke(args=["pingtree-leads", "create-source", "Migrated", "--lenient",
                                                "--dedupe", "email,customer_id"])
    assert result.exit_code == 0, result.output
    doc = database["database_sources"].find_one({"name": "Migrated"})
    assert doc["lenient"] is True and doc["dedupe_fields"] == ["email", "customer_id"]
    listed = app.test_cli_runner().invoke(args=["pingtree-leads", "list-sources"])
    assert "LENIENT" in listed.output and "email,customer_id" in listed.output
    # The import reads aliases in headers and normalises for a lenient source too.
    source_id = next(line.split()[-1] for line in result.output.splitlines() if line.startswith("id:"))
    path = tmp_path / "migrate.csv"
    path.write_text("first_name,phone,zip,state,customer_id\nAnn,(512) 789-1111,90210-1234,Texas,C1\n"
                    "Bob,512.789.2222,73301,Ohio,C1\n")
    run = app.test_cli_runner().invoke(args=["pingtree-leads", "import", source_id, str(path), "--json"])
    summary = json.loads(run.stdout)
    assert summary["counts"]["accepted"] == 1 and summary["counts"]["duplicate"] == 1  # C1 twice
    stored = database["leads"].find_one({"first_name": "Ann"})
    assert (stored["mobile"], stored["zip_code"], stored["state"]) == ("5127891111", "90210", "TX")


@pytest.mark.parametrize(("state", "code"), [("Tex.", "TX"), ("N.Y.", "NY"), ("calif", "CA"), ("W. Va.", "WV"),
                                             ("district of  columbia", "DC")])
def test_lenient_state_abbreviations(lenient: Poster, state: str, code: str) -> None:
    assert_envelope(lenient.post(lead(state=state)), 201)
    assert lenient.stored()[0]["state"] == code


def test_a_lenient_refusal_says_what_was_expected(lenient: Poster) -> None:
    data = assert_envelope(lenient.post(lead(mobile="+44 20 7946 0958", zip_code="9021")), 400)
    assert data["errors"]["mobile"] == ["Must be a 10-digit US number, such as 5551234567 or (555) 123-4567; "
                                        "punctuation, spaces and a leading +1 or 1 are allowed."]
    assert data["errors"]["zip_code"] == ["Must be 5 digits or ZIP+4, such as 90210 or 90210-1234."]


@pytest.mark.parametrize("database", REAL_BACKENDS, indirect=True)
def test_concurrent_spellings_of_one_mobile_store_one_lead(database: Any) -> None:
    src = create_source(database, "Lenient race", lenient=True, dedupe_fields=["mobile"])
    app = make_app(database)
    spellings = ["(512) 789-3333", "+1 512 789 3333", "512.789.3333", "15127893333", "5127893333",
                 "512-789-3333", "1 (512) 789-3333", "+15127893333"] * 2
    answers: list[str] = []
    barrier = threading.Barrier(len(spellings))

    def post(mobile: str) -> None:
        client = app.test_client()
        barrier.wait()
        response = client.post(f"/api/lead/create/{src.id}", json=lead(mobile=mobile),
                               headers={"Authorization": f"Bearer {src.api_key}"})
        answers.append(response.get_json()["data"]["lead_status"])

    threads = [threading.Thread(target=post, args=(m,)) for m in spellings]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == ["accept"] + ["duplicate"] * (len(spellings) - 1)
    assert database["leads"].count_documents({"mobile": "5127893333"}) == 1
