"""Caps (contract section 10) and ``update_source``: windows, the capped answer, what counts,
ping / test mode / import, the CLI, races at the cap edge, and what a lead costs."""

from __future__ import annotations

import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from bson import ObjectId
from flask import Flask

from pingtree_leads import Cap, CreatedSource, PingtreeLeads, create_source, update_source
from pingtree_leads.caps import cap_window, check_caps, parse_cap

from .conftest import FakeClock, Poster, assert_envelope, lead, make_app, write_csv
from .test_storage import CommandLog, monitored, server_uri  # noqa: F401  (fixtures)

UTC = timezone.utc
CHICAGO = ZoneInfo("America/Chicago")
#: A Wednesday, 15:00 UTC = 09:00 in Chicago (CST, UTC-6).
START = datetime(2025, 3, 5, 15, 0, tzinfo=UTC)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


def capped_source(database: Any, clock: FakeClock, *caps: dict[str, Any], **options: Any) -> Poster:
    src = create_source(database, "Capped", caps=list(caps), clock=clock, **options)
    return Poster(make_app(database, clock=clock).test_client(), database, src)


def status(response: Any, code: int = 201) -> str:
    return str(assert_envelope(response, code)["lead_status"])


# -- windows -----------------------------------------------------------------


def test_day_windows_reset_at_local_midnight_and_dst_days_are_23_or_25_hours() -> None:
    assert cap_window("day", CHICAGO, START) == (utc(2025, 3, 5, 6), utc(2025, 3, 6, 6))
    spring = cap_window("day", CHICAGO, utc(2025, 3, 9, 12))  # clocks go forward at 02:00
    assert spring == (utc(2025, 3, 9, 6), utc(2025, 3, 10, 5))
    assert spring[1] - spring[0] == timedelta(hours=23)
    fall = cap_window("day", CHICAGO, utc(2025, 11, 2, 12))  # clocks go back at 02:00
    assert fall[1] - fall[0] == timedelta(hours=25)
    # Just before and at local midnight.
    assert cap_window("day", CHICAGO, utc(2025, 3, 6, 5, 59, 59))[0] == utc(2025, 3, 5, 6)
    assert cap_window("day", CHICAGO, utc(2025, 3, 6, 6))[0] == utc(2025, 3, 6, 6)
    assert cap_window("day", ZoneInfo("UTC"), START) == (utc(2025, 3, 5), utc(2025, 3, 6))


def test_week_windows_start_on_monday_and_month_windows_on_the_first() -> None:
    assert cap_window("week", CHICAGO, START) == (utc(2025, 3, 3, 6), utc(2025, 3, 10, 5))  # DST inside the week
    sunday_night = utc(2025, 3, 10, 4, 30)  # Sunday 23:30 CDT: still the week of the 3rd
    assert cap_window("week", CHICAGO, sunday_night)[0] == utc(2025, 3, 3, 6)
    assert cap_window("month", CHICAGO, START) == (utc(2025, 3, 1, 6), utc(2025, 4, 1, 5))
    assert cap_window("month", ZoneInfo("UTC"), utc(2024, 2, 29, 23, 59)) == (utc(2024, 2, 1), utc(2024, 3, 1))
    assert cap_window("month", ZoneInfo("UTC"), utc(2025, 12, 31, 23)) == (utc(2025, 12, 1), utc(2026, 1, 1))
    # Jan 31 in Chicago is already Feb 1 in UTC: the local month decides.
    assert cap_window("month", CHICAGO, utc(2025, 2, 1, 3)) == (utc(2025, 1, 1, 6), utc(2025, 2, 1, 6))


def test_hour_windows_follow_local_hours_including_the_repeated_one() -> None:
    assert cap_window("hour", CHICAGO, utc(2025, 3, 5, 15, 42)) == (utc(2025, 3, 5, 15), utc(2025, 3, 5, 16))
    # 2025-11-02 01:00-02:00 happens twice in Chicago: two windows of one hour each.
    first = cap_window("hour", CHICAGO, utc(2025, 11, 2, 6, 30))
    second = cap_window("hour", CHICAGO, utc(2025, 11, 2, 7, 30))
    assert first == (utc(2025, 11, 2, 6), utc(2025, 11, 2, 7))
    assert second == (utc(2025, 11, 2, 7), utc(2025, 11, 2, 8))
    kathmandu = ZoneInfo("Asia/Kathmandu")  # UTC+5:45
    assert cap_window("hour", kathmandu, utc(2025, 3, 5, 15, 0)) == (utc(2025, 3, 5, 14, 15), utc(2025, 3, 5, 15, 15))


@pytest.mark.parametrize(("caps", "error", "words"), [
    ({"max": 5, "per": "day"}, TypeError, "list of caps"),
    ("5/day", TypeError, "list of caps"),
    ([5], TypeError, "mapping"),
    ([{"max": 5}], ValueError, "needs max and per"),
    ([{"max": 0, "per": "day"}], ValueError, "from 1 to"),
    ([{"max": True, "per": "day"}], TypeError, "whole number"),
    ([{"max": "5", "per": "day"}], TypeError, "whole number"),
    ([{"max": 5, "per": "fortnight"}], ValueError, "hour, day, week, month"),
    ([{"max": 5, "per": "day", "tz": "Mars/Olympus"}], ValueError, "IANA"),
    ([{"max": 5, "per": "day", "tz": "../etc/passwd"}], ValueError, "IANA"),
    ([{"max": 5, "per": "day", "tz": 5}], TypeError, "IANA"),
    ([{"max": 5, "per": "day", "every": 2}], ValueError, "every"),
    ([{"max": 5, "per": "day"}, {"max": 9, "per": "day", "tz": "UTC"}], ValueError, "same window"),
])
def test_bad_caps_are_refused_with_clear_messages(database: Any, caps: Any, error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        create_source(database, "Bad", caps=caps)
    assert database["database_sources"].count_documents({}) == 0


def test_caps_are_stored_on_the_source_with_utc_by_default(database: Any) -> None:
    src = create_source(database, "Stored", caps=[{"max": 5, "per": "day"}, Cap(9, "hour", "America/Chicago")])
    doc = database["database_sources"].find_one()
    assert doc["caps"] == [{"max": 5, "per": "day", "tz": "UTC"}, {"max": 9, "per": "hour", "tz": "America/Chicago"}]
    assert src.id == str(doc["_id"])
    plain = create_source(database, "Plain")
    assert "caps" not in database["database_sources"].find_one({"name": "Plain"})
    assert plain.id
    assert parse_cap("500/day@America/Chicago") == Cap(500, "day", "America/Chicago")
    assert check_caps(None) == []


# -- the capped answer ---------------------------------------------------------


def test_over_the_cap_is_201_capped_with_retry_at_and_nothing_stored(database: Any, clock: FakeClock) -> None:
    p = capped_source(database, clock, {"max": 2, "per": "day", "tz": "America/Chicago"})
    assert [status(p.post(lead())) for _ in range(2)] == ["accept", "accept"]
    response = p.post(lead(transaction_id="over-1"))
    body = response.get_json()
    data = assert_envelope(response, 201)
    assert body["message"] == "Source cap reached: not stored; retry at retry_at"
    assert data == {"lead_status": "capped", "transaction_id": "over-1", "retry_at": "2025-03-06T06:00:00.000+00:00"}
    assert p.count() == 2
    assert p.database["leads"].count_documents({"transaction_id": "over-1"}) == 0


def test_duplicates_replays_tests_and_rejects_never_count(database: Any, clock: FakeClock) -> None:
    p = capped_source(database, clock, {"max": 2, "per": "day"})
    first = lead(transaction_id="first")
    assert status(p.post(first)) == "accept"
    assert p.post(first).get_json()["data"]["replayed"] is True
    assert status(p.post(lead(email=first["email"]))) == "duplicate"
    assert status(p.post({**lead(), "xxTest": True})) == "accept"
    assert status(p.post(lead(email="not-an-email")), 400) == "invalidField"
    assert status(p.post(lead())) == "accept"  # the second of two: the others took no slot
    assert status(p.post(lead())) == "capped"
    # Over the cap a replay, a 409 and a duplicate still say so (they come first).
    assert p.post(first).get_json()["data"]["replayed"] is True
    assert_envelope(p.post({**first, "first_name": "Changed"}), 409)
    assert p.post(lead(email=first["email"])).get_json()["data"]["matched_on"] == ["email"]
    assert p.count() == 2


def test_the_window_resets_and_a_new_window_counts_from_zero(database: Any, clock: FakeClock) -> None:
    p = capped_source(database, clock, {"max": 1, "per": "day", "tz": "America/Chicago"})
    assert status(p.post(lead())) == "accept"
    assert status(p.post(lead())) == "capped"
    clock.now = utc(2025, 3, 6, 5, 59, 59)  # 23:59:59 in Chicago
    assert status(p.post(lead())) == "capped"
    clock.now = utc(2025, 3, 6, 6)  # local midnight
    assert status(p.post(lead())) == "accept"
    assert status(p.post(lead())) == "capped"
    assert p.count() == 2


def test_every_cap_applies_and_retry_at_is_the_latest_full_reset(database: Any, clock: FakeClock) -> None:
    p = capped_source(database, clock, {"max": 1, "per": "hour"}, {"max": 2, "per": "day"})
    assert status(p.post(lead())) == "accept"
    data = assert_envelope(p.post(lead()), 201)
    assert (data["lead_status"], data["retry_at"]) == ("capped", "2025-03-05T16:00:00.000+00:00")  # the hour's end
    clock.advance(hours=1)
    assert status(p.post(lead())) == "accept"
    clock.advance(hours=1)  # a new hour, but the day is full
    data = assert_envelope(p.post(lead()), 201)
    assert (data["lead_status"], data["retry_at"]) == ("capped", "2025-03-06T00:00:00.000+00:00")
    assert p.count() == 2


def test_a_source_without_caps_is_never_capped(database: Any, clock: FakeClock) -> None:
    p = capped_source(database, clock)
    assert [status(p.post(lead())) for _ in range(5)] == ["accept"] * 5
    assert not any(c.startswith("~~") for doc in p.stored() for c in doc["claims"])


# -- ping, test mode, import ---------------------------------------------------------------


def test_ping_and_test_mode_report_capped(database: Any, clock: FakeClock) -> None:
    p = capped_source(database, clock, {"max": 1, "per": "day"})
    ping_url = f"/api/lead/ping/{p.source.id}"
    stored = lead()
    assert status(p.client.post(ping_url, json={"email": "x@example.com"}, headers=p.headers), 200) == "accept"
    assert status(p.post({**lead(), "xxTest": "1"})) == "accept"
    assert status(p.post(stored)) == "accept"
    data = assert_envelope(p.client.post(ping_url, json={"email": "y@example.com", "hold_seconds": 60},
                                         headers=p.headers), 200)
    assert data == {"lead_status": "capped", "retry_at": "2025-03-06T00:00:00.000+00:00"}
    assert p.database["leads"].count_documents({"kind": "hold"}) == 0  # a capped ping holds nothing
    # A duplicate still says so.
    assert status(p.client.post(ping_url, json={"email": stored["email"]}, headers=p.headers), 200) == "duplicate"
    data = assert_envelope(p.post({**lead(transaction_id="t-test"), "xxTest": True}), 201)
    assert data == {"lead_status": "capped", "transaction_id": "t-test", "retry_at": "2025-03-06T00:00:00.000+00:00",
                    "test": True}
    assert p.count() == 1


def test_a_held_ping_taken_over_by_its_post_takes_a_slot(database: Any, clock: FakeClock) -> None:
    clock.now = FakeClock().now  # mongomock drops documents past a TTL index's expiry by the real clock
    p = capped_source(database, clock, {"max": 1, "per": "day"})
    body = lead()
    held = assert_envelope(p.client.post(f"/api/lead/ping/{p.source.id}", json={"email": body["email"],
                                         "hold_seconds": 60}, headers=p.headers), 200)
    data = assert_envelope(p.post({**body, "ping_id": held["ping_id"]}), 201)
    assert (data["lead_status"], data["lead_id"]) == ("accept", held["ping_id"])
    assert status(p.post(lead())) == "capped"
    [stored] = p.stored()
    day = clock.now.strftime("%Y%m%dT000000Z")
    assert [c for c in stored["claims"] if c.startswith("~~")] == [f"~~day@UTC:{day}:0"]


@pytest.fixture
def import_app(database: Any, clock: FakeClock) -> Flask:
    app = Flask("caps_import")
    PingtreeLeads().init_app(app, database=database, clock=clock)
    return app


@pytest.mark.parametrize("dry_run", [True, False])
def test_import_counts_capped_rows(database: Any, clock: FakeClock, import_app: Flask, tmp_path: Path,
                                   dry_run: bool) -> None:
    src = create_source(database, "Import", caps=[{"max": 3, "per": "day"}], clock=clock)
    Poster(make_app(database, clock=clock).test_client(), database, src).post(lead(email="before@example.com"))
    rows = [[f"row{i}@example.com", f"555000{i:04d}"] for i in range(5)] + [["before@example.com", "5559999999"]]
    path = write_csv(tmp_path / "leads.csv", ["email", "mobile"], rows)
    rejects = tmp_path / "rejects.csv"
    args = ["pingtree-leads", "import", src.id, str(path), "--json", "--rejects", str(rejects)]
    result = import_app.test_cli_runner().invoke(args=[*args, *(["--dry-run"] if dry_run else [])])
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)["counts"]
    assert (counts["accepted"], counts["capped"], counts["duplicate"]) == (2, 3, 1)
    reasons = [line.rsplit(",", 2)[-2:] for line in rejects.read_text().splitlines()[1:]]
    assert reasons.count(["capped", "over the source's cap until 2025-03-06T00:00:00.000+00:00"]) == 3
    assert database["leads"].count_documents({}) == (1 if dry_run else 3)


# -- update_source and the CLI ---------------------------------------------------------------


def test_update_source_changes_only_what_is_given_and_applies_at_once(database: Any, clock: FakeClock) -> None:
    p = capped_source(database, clock, {"max": 1, "per": "day"}, required_fields=["email"])
    assert status(p.post(lead())) == "accept"
    assert status(p.post(lead())) == "capped"  # the app has cached the source
    update_source(database, p.source.id, caps=[{"max": 2, "per": "day"}])
    assert status(p.post(lead())) == "accept"  # the new max applies to the current window
    assert status(p.post(lead())) == "capped"
    update_source(database, p.source.id, caps=None)
    assert status(p.post(lead())) == "accept"
    doc = database["database_sources"].find_one()
    assert "caps" not in doc and doc["required_fields"] == ["email"] and doc["name"] == "Capped"
    update_source(database, p.source.id, name=" Renamed ", required_fields=["mobile"], dedupe_fields=["email"],
                  dedupe_window_days=3, lenient=True)
    doc = database["database_sources"].find_one()
    assert (doc["name"], doc["required_fields"], doc["dedupe_fields"], doc["dedupe_window_days"], doc["lenient"]) == (
        "Renamed", ["mobile"], ["email"], 3, True)
    assert status(p.post(lead(mobile=None)), 400) == "missingField"
    update_source(database, p.source.id, caps=[{"max": 1, "per": "day"}])
    assert status(p.post(lead())) == "capped"  # 2 slots of today are taken, the cap is now 1


def test_update_source_refuses_bad_values_and_unknown_sources(database: Any) -> None:
    src = create_source(database, "Kept", caps=[{"max": 5, "per": "day"}])
    before = database["database_sources"].find_one()
    cases: list[tuple[dict[str, Any], type[Exception]]] = [
        ({"caps": [{"max": -1, "per": "day"}]}, ValueError), ({"name": " "}, ValueError),
        ({"dedupe_fields": "email"}, TypeError), ({"required_fields": ["shoe"]}, ValueError),
        ({"dedupe_window_days": 0}, ValueError), ({"caps": "500/day"}, TypeError),
    ]
    for kwargs, error in cases:
        with pytest.raises(error):
            update_source(database, src.id, **kwargs)
    assert database["database_sources"].find_one() == before
    with pytest.raises(LookupError):
        update_source(database, "0" * 24, name="x")
    with pytest.raises(LookupError):
        update_source(database, "nope", name="x")


def cli(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["pingtree-leads", *args])


def test_cli_creates_updates_and_lists_caps(database: Any, clock: FakeClock, import_app: Flask) -> None:
    result = cli(import_app, "create-source", "From CLI", "--cap", "2/day@America/Chicago", "--cap", "100/month")
    assert result.exit_code == 0, result.output
    source_id = result.stdout.split("id:", 1)[1].split()[0]
    key = result.stdout.split("api key:", 1)[1].split()[0]
    doc = database["database_sources"].find_one()
    assert doc["caps"] == [{"max": 2, "per": "day", "tz": "America/Chicago"}, {"max": 100, "per": "month", "tz": "UTC"}]
    poster = Poster(import_app.test_client(), database, CreatedSource(source_id, key, "From CLI"))
    assert status(poster.post(lead())) == "accept"
    listing = cli(import_app, "list-sources")
    assert "1/2 day@America/Chicago,1/100 month" in listing.stdout, listing.stdout
    result = cli(import_app, "update-source", source_id, "--cap", "1/day@America/Chicago")
    assert result.exit_code == 0, result.output
    assert database["database_sources"].find_one()["caps"] == [{"max": 1, "per": "day", "tz": "America/Chicago"}]
    assert status(poster.post(lead())) == "capped"
    assert cli(import_app, "update-source", source_id, "--no-caps").exit_code == 0
    assert "caps" not in database["database_sources"].find_one()
    assert "  -  " in cli(import_app, "list-sources").stdout
    assert status(poster.post(lead())) == "accept"
    bad = cli(import_app, "update-source", source_id, "--cap", "ten/day")
    assert bad.exit_code == 2 and "MAX/PER[@TZ]" in bad.output
    assert cli(import_app, "update-source", source_id, "--cap", "5/day", "--no-caps").exit_code == 2
    assert cli(import_app, "update-source", source_id).exit_code == 2
    assert cli(import_app, "update-source", "0" * 24, "--name", "x").exit_code == 1
    result = cli(import_app, "update-source", source_id, "--required", "email", "--strict", "--window-days", "2")
    assert result.exit_code == 0, result.output
    doc = database["database_sources"].find_one()
    assert (doc["required_fields"], doc["lenient"], doc["dedupe_window_days"]) == (["email"], False, 2)


# -- races on real servers --------------------------------------------------------------------


def race(app: Flask, src: Any, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Post each body from its own thread and test client, released together."""
    start = threading.Barrier(len(bodies))
    url, headers = f"/api/lead/create/{src.id}", {"Authorization": f"Bearer {src.api_key}"}

    def worker(body: dict[str, Any]) -> dict[str, Any]:
        client = app.test_client()
        start.wait()
        response = client.post(url, json=body, headers=headers)
        assert response.status_code == 201, response.get_data(as_text=True)
        data: dict[str, Any] = response.get_json()["data"]
        return data

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(worker, bodies))


def test_32_racing_posts_at_a_cap_of_10_store_exactly_10(real_database: Any) -> None:
    src = create_source(real_database, "Race cap", caps=[{"max": 10, "per": "day"}])
    app = make_app(real_database)
    results = race(app, src, [lead() for _ in range(32)])
    assert Counter(data["lead_status"] for data in results) == {"accept": 10, "capped": 22}
    assert real_database["leads"].count_documents({}) == 10
    assert all("retry_at" in data for data in results if data["lead_status"] == "capped")


def test_racing_posts_from_two_processes_worth_of_hints_store_exactly_max(real_database: Any) -> None:
    """Two apps (two repositories: separate hints, like two processes) race for one cap."""
    src = create_source(real_database, "Two apps", caps=[{"max": 7, "per": "day"}])
    first, second = make_app(real_database), make_app(real_database)
    Poster(first.test_client(), real_database, src).post(lead())
    Poster(second.test_client(), real_database, src).post(lead())  # both hints know the window
    bodies = [lead() for _ in range(20)]
    with ThreadPoolExecutor(2) as pool:
        parts = list(pool.map(lambda pair: race(pair[0], src, pair[1]), [(first, bodies[:10]), (second, bodies[10:])]))
    statuses = Counter(data["lead_status"] for part in parts for data in part)
    assert statuses == {"accept": 5, "capped": 15}
    assert real_database["leads"].count_documents({}) == 7


def test_racing_duplicates_at_the_cap_edge_never_waste_a_slot(real_database: Any) -> None:
    src = create_source(real_database, "Race dup", caps=[{"max": 10, "per": "day"}])
    app = make_app(real_database)
    same = lead(email="same@example.com")
    bodies = [lead() for _ in range(24)] + [lead(email=same["email"]) for _ in range(8)]
    results = race(app, src, bodies)
    statuses = Counter(data["lead_status"] for data in results)
    assert statuses["accept"] == 10 and real_database["leads"].count_documents({}) == 10
    assert real_database["leads"].count_documents({"email": "same@example.com"}) <= 1
    assert statuses["duplicate"] + statuses["capped"] == 22


# -- cost ---------------------------------------------------------------------------------------


def test_a_capped_lead_costs_one_insert_once_the_window_is_known(
    monitored: tuple[Any, CommandLog],  # noqa: F811
) -> None:
    db, log = monitored
    clock = FakeClock(START)
    plain = Poster(make_app(db, clock=clock).test_client(), db, create_source(db, "Plain", clock=clock))
    capped = capped_source(db, clock, {"max": 3, "per": "day"}, {"max": 10, "per": "week"})
    assert status(plain.post(lead())) == "accept"  # warm-up: indexes, source cache
    log.commands.clear()
    assert status(plain.post(lead())) == "accept"
    assert [name for name, _ in log.commands] == ["insert"]  # a source without caps pays nothing new
    assert plain.stored()[0]["claims"] == sorted(plain.stored()[0]["claims"])
    assert status(capped.post(lead())) == "accept"  # first lead of the windows here: one read per cap
    log.commands.clear()
    assert status(capped.post(lead())) == "accept"
    assert [name for name, _ in log.commands] == ["insert"]
    log.commands.clear()
    assert status(capped.post(lead())) == "accept"
    assert [name for name, _ in log.commands] == ["insert"]
    log.commands.clear()
    assert status(capped.post(lead())) == "capped"  # believed full: made sure with one read of the day
    assert [name for name, _ in log.commands][:1] == ["find"]
    finds = [cmd for name, cmd in log.commands if name == "find" and cmd["find"] == "leads"]
    slot_read = next(cmd for cmd in finds if "$gte" in repr(cmd["filter"]))
    assert "hint" not in slot_read  # SecantusDB reads the whole index for a hinted find (~240 ms)
    plan = db.command("explain", {"find": "leads", "filter": slot_read["filter"]}, verbosity="queryPlanner")
    text = repr(plan["queryPlanner"]["winningPlan"])
    assert "IXSCAN" in text and "COLLSCAN" not in text
    for cmd in finds:  # the rule look-ups of the capped answer use the index too
        plan = db.command("explain", {"find": "leads", "filter": cmd["filter"],
                                      **({"hint": cmd["hint"]} if "hint" in cmd else {})}, verbosity="queryPlanner")
        assert "IXSCAN" in repr(plan["queryPlanner"]["winningPlan"]), cmd["filter"]


# -- a max lowered mid-window (found by attack: slots above the new max were not counted) -----------


def _high_slots(database: Any, src: Any, clock: FakeClock, count: int, old_max: int) -> None:
    """``count`` leads of ``src`` holding the window's highest slots below ``old_max`` (as random
    picks after refusals leave them), written through the library's own claims layout."""
    cap = check_caps([{"max": old_max, "per": "day"}])[0]
    start, _ = cap.window(clock())
    p = Poster(make_app(database, clock=clock).test_client(), database, src)
    for _ in range(count):
        assert status(p.post(lead())) == "accept"
    leads = database["leads"]
    for n, doc in enumerate(leads.find({"source_id": ObjectId(src.id)}).sort("_id", 1)):
        prefix = cap.window_prefix(start) + ":"
        claims = sorted(cap.slot_claim(start, old_max - 1 - n) if c.startswith(prefix) else c for c in doc["claims"])
        leads.update_one({"_id": doc["_id"]}, {"$set": {"claims": claims}})


def test_lowering_max_counts_every_lead_of_the_window(database: Any, clock: FakeClock) -> None:
    src = create_source(database, "Lowered", caps=[{"max": 100, "per": "day"}], clock=clock)
    _high_slots(database, src, clock, 6, 100)  # 6 leads in slots 94..99
    update_source(database, src.id, caps=[{"max": 4, "per": "day"}], clock=clock)
    p = Poster(make_app(database, clock=clock, source_cache_seconds=0).test_client(), database, src)
    assert [status(p.post(lead())) for _ in range(3)] == ["capped"] * 3  # 6 stored, max 4: full
    assert database["leads"].count_documents({}) == 6
    update_source(database, src.id, caps=[{"max": 8, "per": "day"}], clock=clock)
    assert [status(p.post(lead())) for _ in range(4)] == ["accept", "accept", "capped", "capped"]
    assert database["leads"].count_documents({}) == 8


def test_lowering_max_moves_high_slots_down_so_the_index_keeps_the_count(database: Any, clock: FakeClock) -> None:
    src = create_source(database, "Compacted", caps=[{"max": 100, "per": "day"}], clock=clock)
    _high_slots(database, src, clock, 3, 100)  # slots 97..99
    update_source(database, src.id, caps=[{"max": 5, "per": "day"}], clock=clock)
    cap = check_caps([{"max": 5, "per": "day"}])[0]
    start, _ = cap.window(clock())
    numbers = sorted(int(c.rsplit(":", 1)[1]) for doc in database["leads"].find()
                     for c in doc["claims"] if c.startswith(cap.window_prefix(start) + ":"))
    assert numbers == [0, 1, 2]  # every held slot below the new max: no lead can slip past it
    p = Poster(make_app(database, clock=clock, source_cache_seconds=0).test_client(), database, src)
    assert [status(p.post(lead())) for _ in range(3)] == ["accept", "accept", "capped"]


def test_racing_posts_after_lowering_max_store_exactly_the_new_max(real_database: Any) -> None:
    clock = FakeClock(START)
    src = create_source(real_database, "Lowered race", caps=[{"max": 100, "per": "day"}], clock=clock)
    _high_slots(real_database, src, clock, 5, 100)
    update_source(real_database, src.id, caps=[{"max": 12, "per": "day"}], clock=clock)
    app = make_app(real_database, clock=clock, source_cache_seconds=0)
    results = race(app, src, [lead() for _ in range(24)])
    assert Counter(data["lead_status"] for data in results) == {"accept": 7, "capped": 17}
    assert real_database["leads"].count_documents({}) == 12


def test_a_ping_of_an_erased_consumer_on_a_full_cap_says_suppressed_as_the_post(database: Any,
                                                                               clock: FakeClock) -> None:
    from pingtree_leads import erase_consumer

    p = capped_source(database, clock, {"max": 1, "per": "day"})
    assert status(p.post(lead())) == "accept"  # the cap is full
    erase_consumer(database, email="gone@example.com", clock=clock)
    post = status(p.post(lead(email="gone@example.com")))
    ping = p.client.post(f"/api/lead/ping/{p.source.id}", json={"email": "gone@example.com"}, headers=p.headers)
    assert post == status(ping, 200) == "suppressed"


def test_a_source_keeps_its_leads_longer_than_its_cap_windows(database: Any, clock: FakeClock) -> None:
    """A lead removed by retention before its window ended would free its slot (found by attack:
    4 leads stored in a week capped at 2 once the TTL monitor had run)."""
    with pytest.raises(ValueError, match="retention_days"):
        create_source(database, "Short", caps=[{"max": 2, "per": "week"}], retention_days=1)
    src = create_source(database, "Long enough", caps=[{"max": 2, "per": "day"}], retention_days=2)
    with pytest.raises(ValueError, match="retention_days"):
        update_source(database, src.id, caps=[{"max": 2, "per": "month"}])
    update_source(database, src.id, caps=[{"max": 2, "per": "hour"}])
    create_source(database, "Month", caps=[{"max": 2, "per": "month"}], retention_days=32)
