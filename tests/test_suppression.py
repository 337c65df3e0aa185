"""Suppression lists (contract section 10): hashed entries, intake, pre-ping, import, CLI, costs, races."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from pingtree_leads import (
    PingtreeLeads,
    clear_suppression_list,
    create_source,
    import_suppressions,
    set_suppression_lists,
    suppress,
    suppression_lists,
    unsuppress,
)
from pingtree_leads import suppression as suppression_module
from pingtree_leads.errors import SUPPRESSED_MESSAGE
from pingtree_leads.suppression import (
    MAX_SOURCE_LISTS,
    SUPPRESSION_EXPIRY_INDEX,
    SuppressionStore,
    value_keys,
)

from .conftest import FakeClock, Poster, assert_envelope, lead, make_app, write_csv
from .test_storage import CommandLog, monitored, server_uri  # noqa: F401  (fixtures)

LIST = "dnc-secret-list-name"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def app(database: Any, clock: FakeClock) -> Flask:
    app = Flask("suppression_host")
    PingtreeLeads().init_app(app, database=database, clock=clock)
    return app


def poster_for(app: Flask, database: Any, clock: FakeClock, **options: Any) -> Poster:
    options.setdefault("suppression_lists", [LIST])
    src = create_source(database, "Suppressing", clock=clock, **options)
    return Poster(app.test_client(), database, src)


def ping(p: Poster, body: dict[str, Any]) -> Any:
    return p.client.post(f"/api/lead/ping/{p.source.id}", json=body, headers=p.headers)


def assert_suppressed(response: Any, *, test: bool = False) -> dict[str, Any]:
    data = assert_envelope(response, 201)
    assert response.get_json()["message"] == SUPPRESSED_MESSAGE
    assert set(data) == {"lead_status", "transaction_id", *(["test"] if test else [])}
    assert data["lead_status"] == "suppressed"
    assert LIST not in response.get_data(as_text=True)  # no list named
    return data


# -- what matches -----------------------------------------------------------------------------


def test_every_spelling_of_one_mailbox_is_one_entry(app: Flask, database: Any, clock: FakeClock) -> None:
    p = poster_for(app, database, clock)
    suppress(database, LIST, emails=["Anna@BÜCHER.de"])
    for spelling in ("anna@xn--bcher-kva.de", "ANNA@bücher.DE", " Anna@ＢÜＣＨＥＲ.de "):
        data = assert_suppressed(p.post(lead(email=spelling, transaction_id=None)))
        assert len(data["transaction_id"]) == 32  # generated, as for any lead
    assert p.count() == 0
    stored = list(database["suppressions"].find({}, {"_id": 0, "key": 1, "list": 1}))
    assert stored == [{"list": LIST, "key": "email:" + sha("anna@xn--bcher-kva.de")}]  # only the hash
    assert assert_envelope(p.post(lead(email="anna2@bücher.de")), 201)["lead_status"] == "accept"


def test_a_mobile_in_any_spelling_and_a_lenient_sources_normalised_mobile(
    app: Flask, database: Any, clock: FakeClock
) -> None:
    strict = poster_for(app, database, clock)
    lenient = poster_for(app, database, clock, lenient=True)
    suppress(database, LIST, mobiles=["(512) 555-0143"])
    assert_suppressed(strict.post(lead(mobile="5125550143")))
    assert_suppressed(lenient.post(lead(mobile="+1 512 555 0143")))
    assert strict.count() == 0
    assert assert_envelope(strict.post(lead(mobile="5125550144")), 201)["lead_status"] == "accept"


def test_hashed_entries_sha256_and_md5_import(app: Flask, database: Any, clock: FakeClock, tmp_path: Path) -> None:
    p = poster_for(app, database, clock)
    suppress(database, LIST, sha256={"email": [sha("sha@example.com").upper()]})
    md5s = tmp_path / "md5.csv"
    md5s.write_text("md5\n" + hashlib.md5(b"md5@example.com").hexdigest() + "\nnot-a-hash\n\n"
                    + hashlib.md5(b"5125550199").hexdigest() + "\n")
    written = import_suppressions(database, LIST, md5s, hash="md5", field="email")
    assert (written.added, written.invalid_rows) == (2, (3,))  # the header skipped; row 3 named, not shown
    assert_suppressed(p.post(lead(email="SHA@example.com")))
    assert_suppressed(p.post(lead(email="Md5@Example.com")))
    # An MD5 entry is for its field: the same digits as a mobile are another entry.
    assert assert_envelope(p.post(lead(mobile="5125550199")), 201)["lead_status"] == "accept"
    assert p.count() == 1
    # A plain value removes its SHA-256 and its MD5 entry.
    assert unsuppress(database, LIST, emails=["md5@example.com", "sha@example.com"]) == 2
    assert assert_envelope(p.post(lead(email="md5@example.com")), 201)["lead_status"] == "accept"


def test_custom_field_entries_match_that_field_only(app: Flask, database: Any, clock: FakeClock) -> None:
    p = poster_for(app, database, clock)
    suppress(database, LIST, values={"customer_id": ["C-1001", 40017]})
    assert_suppressed(p.post(lead(customer_id=" C-1001 ")))
    assert_suppressed(p.post(lead(customer_id=40017)))  # a JSON number is its digits
    assert assert_envelope(p.post(lead(account="C-1001")), 201)["lead_status"] == "accept"
    assert p.count() == 1
    with pytest.raises(ValueError, match="custom"):
        suppress(database, LIST, values={"zip_code": ["10001"]})
    with pytest.raises(ValueError, match="not a valid email"):
        suppress(database, LIST, emails=["nope"])
    with pytest.raises(TypeError):
        suppress(database, LIST, emails="one@example.com")


def test_every_list_is_checked_in_one_read_and_large_batches_in_parts(
    database: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An entry of any list a source names is found by the one ``_id`` read, also when a batch
    asks for more ids than one read takes (an import of many rows against many lists)."""
    lists = [f"list-{n}" for n in range(MAX_SOURCE_LISTS)]
    suppress(database, lists[-1], emails=["last@example.com"])
    suppress(database, lists[0], mobiles=["5125550100"], expires_at=clock.now + timedelta(minutes=1))
    store = SuppressionStore(database)
    keys = [k for n in range(30) for k in value_keys("email", f"row{n}@example.com")]
    keys += list(value_keys("email", "last@example.com")) + list(value_keys("mobile", "5125550100"))
    everything = store.matching(lists, keys, clock.now, limit=0)
    assert everything == {value_keys("email", "last@example.com")[0], value_keys("mobile", "5125550100")[0]}
    monkeypatch.setattr(suppression_module, "READ_IDS", 7)  # the last list's entry is in the last part
    assert store.matching(lists, keys, clock.now, limit=0) == everything
    assert store.matching(lists, keys, clock.now + timedelta(minutes=1), limit=0) == {
        value_keys("email", "last@example.com")[0]}  # the mobile's entry has expired
    assert len(store.matching(lists, keys, clock.now)) == 1


def test_clearing_a_list_leaves_lists_whose_names_extend_its_name(database: Any) -> None:
    """A list's entries are the ``_id`` range "<name> ..."; lists named "<name>" plus more stay."""
    names = ["dnc", "dnc2", "dnc.old", "dnc-eu", "dnc_x", "dn", "dncz"]
    for name in names:
        suppress(database, name, emails=[f"{name}@example.com", "both@example.com"])
    assert clear_suppression_list(database, "dnc") == 2
    assert suppression_lists(database) == {name: 2 for name in names if name != "dnc"}
    assert clear_suppression_list(database, "dnc") == 0


def test_expired_entries_never_suppress(app: Flask, database: Any, clock: FakeClock) -> None:
    p = poster_for(app, database, clock)
    suppress(database, LIST, emails=["soon@example.com"], expires_at=clock.now + timedelta(hours=1))
    assert_suppressed(p.post(lead(email="soon@example.com")))
    clock.advance(hours=1)  # expires_at is not after now: over
    assert assert_envelope(p.post(lead(email="soon@example.com")), 201)["lead_status"] == "accept"
    assert suppression_lists(database, now=clock.now) == {}
    info = database["suppressions"].index_information()
    assert info[SUPPRESSION_EXPIRY_INDEX]["expireAfterSeconds"] == 0
    assert set(info) == {"_id_", SUPPRESSION_EXPIRY_INDEX}  # _id holds one entry per list and value
    # Adding it again without an expiry makes it permanent.
    suppress(database, LIST, emails=["soon@example.com"])
    assert_suppressed(p.post(lead(email="soon@example.com", transaction_id="t-soon")))
    assert suppression_lists(database, now=clock.now) == {LIST: 1}


def test_only_the_sources_own_lists_count(app: Flask, database: Any, clock: FakeClock) -> None:
    suppress(database, "other", emails=["x@example.com"])
    mine = poster_for(app, database, clock)
    plain = poster_for(app, database, clock, suppression_lists=[])
    assert assert_envelope(mine.post(lead(email="x@example.com")), 201)["lead_status"] == "accept"
    assert assert_envelope(plain.post(lead(email="x@example.com")), 201)["lead_status"] == "accept"
    set_suppression_lists(database, mine.source.id, ["other"])
    assert_suppressed(mine.post(lead(email="x@example.com", mobile="5125550100")))


def test_list_names_are_checked(database: Any) -> None:
    with pytest.raises(ValueError, match="list name"):
        create_source(database, "Bad", suppression_lists=["has space"])
    with pytest.raises(TypeError):
        create_source(database, "Bad", suppression_lists="dnc")
    with pytest.raises(ValueError, match="at most"):
        create_source(database, "Bad", suppression_lists=[f"l{i}" for i in range(MAX_SOURCE_LISTS + 1)])
    create_source(database, "Fine", suppression_lists=["not-yet-filled", "not-yet-filled"])
    create_source(database, "Default")
    assert database["database_sources"].find_one({"name": "Fine"})["suppression_lists"] == ["not-yet-filled"]
    assert "suppression_lists" not in database["database_sources"].find_one({"name": "Default"})  # unchanged doc


def test_the_answer_and_the_log_name_no_list_and_no_value(
    app: Flask, database: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    p = poster_for(app, database, clock)
    suppress(database, LIST, emails=["private@example.com"])
    caplog.set_level(logging.DEBUG, logger="pingtree_leads")
    assert_suppressed(p.post(lead(email="private@example.com", transaction_id="t-log")))
    assert_envelope(ping(p, {"email": "private@example.com"}), 200)
    assert "suppressed" in caplog.text and "t-log" in caplog.text
    assert LIST not in caplog.text and "private" not in caplog.text


def test_a_retry_of_an_accepted_lead_is_still_its_replay(app: Flask, database: Any, clock: FakeClock) -> None:
    p = poster_for(app, database, clock)
    body = lead(transaction_id="t-before")
    accepted = assert_envelope(p.post(body), 201)
    suppress(database, LIST, emails=[body["email"]])
    replay = assert_envelope(p.post(body), 201)
    assert replay["replayed"] is True and replay["lead_id"] == accepted["lead_id"]
    assert p.post({**body, "first_name": "Other"}).status_code == 409
    assert_suppressed(p.post({**body, "transaction_id": "t-after"}))
    assert p.count() == 1


def test_test_mode_answers_suppressed_and_stores_nothing(app: Flask, database: Any, clock: FakeClock) -> None:
    p = poster_for(app, database, clock)
    suppress(database, LIST, emails=["t@example.com"])
    assert_suppressed(p.post(lead(email="t@example.com", xxTest="true")), test=True)
    assert p.count() == 0


# -- pre-ping ---------------------------------------------------------------------------------


def test_a_ping_reports_suppressed_for_plain_and_hashed_values_and_holds_nothing(
    app: Flask, database: Any, clock: FakeClock
) -> None:
    p = poster_for(app, database, clock)
    suppress(database, LIST, emails=["ping@example.com"])
    for body in ({"email": "PING@example.com", "hold_seconds": 60},
                 {"email_sha256": sha("ping@example.com").upper()},
                 {"email": "ping@example.com", "xxTest": "true"}):
        response = ping(p, body)
        data = assert_envelope(response, 200)
        assert data["lead_status"] == "suppressed" and "ping_id" not in data
        assert LIST not in response.get_data(as_text=True)
    assert p.count() == 0  # no hold
    assert assert_envelope(ping(p, {"email": "other@example.com"}), 200)["lead_status"] == "accept"


# -- import -----------------------------------------------------------------------------------


def test_the_csv_import_counts_suppressed_rows(app: Flask, database: Any, clock: FakeClock, tmp_path: Path) -> None:
    src = create_source(database, "Imported", suppression_lists=[LIST], clock=clock)
    suppress(database, LIST, emails=["gone@example.com"])
    path = write_csv(tmp_path / "leads.csv", ["email", "first_name"],
                     [["gone@example.com", "A"], ["kept@example.com", "B"], ["GONE@example.com", "C"]])
    runner = app.test_cli_runner()
    database["suppressions"].drop_index(SUPPRESSION_EXPIRY_INDEX)  # a dry run needs no index, and makes none
    dry = runner.invoke(args=["pingtree-leads", "import", src.id, str(path), "--dry-run", "--json"])
    assert json.loads(dry.stdout)["counts"]["suppressed"] == 2
    assert SUPPRESSION_EXPIRY_INDEX not in database["suppressions"].index_information()
    real = runner.invoke(args=["pingtree-leads", "import", src.id, str(path), "--json",
                               "--rejects", str(tmp_path / "rejects.csv")])
    counts = json.loads(real.stdout)["counts"]
    assert (counts["accepted"], counts["suppressed"]) == (1, 2), real.output
    assert [d["email"] for d in database["leads"].find()] == ["kept@example.com"]
    rejects = (tmp_path / "rejects.csv").read_text()
    assert "suppressed" in rejects and LIST not in rejects


# -- CLI --------------------------------------------------------------------------------------


def test_cli_add_list_import_remove(app: Flask, database: Any, clock: FakeClock, tmp_path: Path) -> None:
    runner = app.test_cli_runner()

    def cli(*args: str) -> Any:
        result = runner.invoke(args=["pingtree-leads", "suppress", *args])
        assert result.exit_code == 0, result.output
        return result

    added = cli("add", "dnc", "--email", "A@example.com", "--mobile", "(512) 555-0143", "--value", "customer_id=C-1",
                "--expires-in-days", "30")
    assert added.stdout == "dnc: 3 added, 0 already there\n"
    assert cli("add", "dnc", "--email", "a@example.com").stdout == "dnc: 0 added, 1 already there\n"
    (tmp_path / "list.csv").write_text("sha256\n" + sha("b@example.com") + "\nzz\n")
    imported = cli("import", "complainers", str(tmp_path / "list.csv"), "--hash", "sha256")
    assert imported.stdout == "complainers: 1 added, 0 already there\n"
    assert "1 row(s) not read as sha256 email values: 3" in imported.stderr
    assert cli("list").stdout == "LIST         ENTRIES\ncomplainers  1\ndnc          3\n"
    assert cli("remove", "dnc", "--email", "a@EXAMPLE.com").stdout == "dnc: 1 removed\n"
    assert cli("remove", "complainers", "--all").stdout == "complainers: 1 removed\n"
    assert suppression_lists(database) == {"dnc": 2}
    bad = runner.invoke(args=["pingtree-leads", "suppress", "add", "dnc", "--email", "nope"])
    assert bad.exit_code == 2 and "not a valid email" in bad.output and "nope" not in bad.output.split("email")[-1]
    made = runner.invoke(args=["pingtree-leads", "create-source", "CLI", "--suppression-list", "dnc,complainers"])
    assert made.exit_code == 0, made.output
    assert database["database_sources"].find_one({"name": "CLI"})["suppression_lists"] == ["dnc", "complainers"]


def test_without_index_creation_the_index_must_be_there(database: Any, clock: FakeClock) -> None:
    app = make_app(database, clock=clock, create_indexes=False)
    from pingtree_leads import ensure_indexes, ensure_suppression_indexes

    ensure_indexes(database)
    p = poster_for(app, database, clock)
    assert p.post(lead()).status_code == 500  # a source with lists needs the suppression index
    assert "suppressions" not in database.list_collection_names()  # and nothing was created
    ensure_suppression_indexes(database)
    assert assert_envelope(p.post(lead()), 201)["lead_status"] == "accept"
    plain = poster_for(app, database, clock, suppression_lists=[])
    assert assert_envelope(plain.post(lead()), 201)["lead_status"] == "accept"


def test_the_collection_is_an_option(database: Any, clock: FakeClock) -> None:
    app = make_app(database, clock=clock, suppressions_collection="dnc_entries")
    p = poster_for(app, database, clock)
    suppress(database, LIST, emails=["opt@example.com"], suppressions_collection="dnc_entries")
    assert_suppressed(p.post(lead(email="opt@example.com")))
    assert "suppressions" not in database.list_collection_names()


# -- costs ------------------------------------------------------------------------------------


def test_one_indexed_read_for_a_source_with_lists_and_none_without(
    monitored: tuple[Any, CommandLog],  # noqa: F811
) -> None:
    db, log = monitored
    app = make_app(db)
    with_lists = Poster(app.test_client(), db,
                        create_source(db, "Lists", suppression_lists=[LIST, "other", "third"]))
    without = Poster(app.test_client(), db, create_source(db, "Plain"))
    db["suppressions"].insert_many([{"_id": f"{name} email:{i:064x}", "list": name, "key": f"email:{i:064x}"}
                                    for i in range(300) for name in (LIST, "other", "third")])
    suppress(db, "third", emails=["on@example.com"])
    assert_envelope(with_lists.post(lead()), 201)  # warm-up: indexes, source cache
    assert_envelope(without.post(lead()), 201)
    log.commands.clear()
    assert assert_envelope(without.post(lead(extra_field="x")), 201)["lead_status"] == "accept"
    assert [name for name, _ in log.commands] == ["insert"]
    log.commands.clear()
    assert assert_envelope(with_lists.post(lead(customer_id="C-9")), 201)["lead_status"] == "accept"
    assert [name for name, _ in log.commands] == ["find", "insert"]
    log.commands.clear()
    assert_suppressed(with_lists.post(lead(email="on@example.com")))
    assert [name for name, _ in log.commands] == ["find"]
    find = log.commands[0][1]
    assert find["find"] == "suppressions" and "hint" not in find
    plan = db.command("explain", {"find": "suppressions", "filter": find["filter"]}, verbosity="queryPlanner")
    text = repr(plan["queryPlanner"]["winningPlan"])
    assert "IXSCAN" in text and "COLLSCAN" not in text  # the _id index: the planner's own choice
    # Each list's field registry, and each list x SHA-256 and MD5 of the email and the mobile.
    assert find["filter"]["_id"]["$in"][:3] == [f"{name} !fields" for name in (LIST, "other", "third")]
    assert len(find["filter"]["_id"]["$in"]) == 3 + 3 * 4
    log.commands.clear()
    assert assert_envelope(ping(without, {"email": "on@example.com"}), 200)["lead_status"] == "accept"
    assert not [cmd for name, cmd in log.commands if cmd.get(name) == "suppressions"]


def test_a_sender_cannot_make_the_read_ask_for_every_custom_field_in_every_list(
    monitored: tuple[Any, CommandLog],  # noqa: F811
) -> None:
    """Custom keys are asked for only in lists whose registry names the field: 50 custom fields
    to a source with 20 lists cost the read 20 + 20 x 4 ids, not 20 x 104.  A field added to a
    list by another writer is found by the next post (a second read, that once)."""
    db, log = monitored
    app = make_app(db)
    lists = [f"list-{n}" for n in range(MAX_SOURCE_LISTS)]
    p = Poster(app.test_client(), db, create_source(db, "Many", suppression_lists=lists))
    suppress(db, lists[0], emails=["someone@example.com"])
    many = {f"field_{n}": f"value {n}" for n in range(50)}
    assert assert_envelope(p.post(lead(**many)), 201)["lead_status"] == "accept"  # warm-up
    log.commands.clear()
    assert assert_envelope(p.post(lead(**many)), 201)["lead_status"] == "accept"
    [find] = [cmd for name, cmd in log.commands if name == "find"]
    assert len(find["filter"]["_id"]["$in"]) == 20 + 20 * 4
    # Another writer (the CLI, another process: its own store) adds a custom field's value.
    suppress(db, lists[7], values={"field_3": ["value 3"]})
    log.commands.clear()
    assert_suppressed(p.post(lead(**many)))
    finds = [cmd for name, cmd in log.commands if name == "find"]
    assert len(finds) == 2 and len(finds[1]["filter"]["_id"]["$in"]) == 2  # field_3's SHA-256 and MD5 in list 7
    log.commands.clear()
    assert_suppressed(p.post(lead(**many)))
    [find] = [cmd for name, cmd in log.commands if name == "find"]  # known now: one read again
    assert len(find["filter"]["_id"]["$in"]) == 20 + 20 * 4 + 2
    assert assert_envelope(p.post(lead(**{**many, "field_3": "other"})), 201)["lead_status"] == "accept"
    # The registry is no entry: not counted, not removed as one.
    assert suppression_lists(db)[lists[7]] == 1
    assert clear_suppression_list(db, lists[7]) == 1
    # The registry stays (test_an_add_during_a_clear_still_suppresses).
    assert db["suppressions"].find_one({"_id": f"{lists[7]} !fields"}) == {"_id": f"{lists[7]} !fields",
                                                                           "fields": ["field_3"]}


# -- races ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["email", "custom field"])
def test_an_add_before_the_post_is_never_stored_after_it(real_database: Any, kind: str) -> None:
    """Adds and posts at once on a real server: a lead whose value's add was acknowledged
    before its post began is never stored.  For custom fields each value is of a field no
    list held before, so every post meets a field registry the endpoint has not read yet."""
    db = real_database
    app = make_app(db)
    src = create_source(db, "Raced", suppression_lists=[LIST])
    suppress(db, LIST, emails=["warm@example.com"])  # the indexes
    assert_envelope(Poster(app.test_client(), db, src).post(lead()), 201)
    tag = uuid.uuid4().hex[:6]
    values = [f"race-{i}-{tag}@example.com" for i in range(40)]
    field = {value: ("email" if kind == "email" else f"ref_{i}_{tag}") for i, value in enumerate(values)}
    txid = {value: f"race-{i}-{tag}" for i, value in enumerate(values)}
    added_at: dict[str, float] = {}
    posted_at: dict[str, float] = {}
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def adder(part: list[str]) -> None:
        try:
            barrier.wait()
            for value in part:
                if kind == "email":
                    suppress(db, LIST, emails=[value])
                else:
                    suppress(db, LIST, values={field[value]: [value]})
                added_at[value] = time.monotonic()  # acknowledged
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def poster(part: list[str]) -> None:
        try:
            p = Poster(app.test_client(), db, src)
            barrier.wait()
            for value in part:
                posted_at[value] = time.monotonic()  # before the request starts
                body = lead(transaction_id=txid[value],
                            **({"email": value} if kind == "email" else {field[value]: value}))
                assert p.post(body).status_code == 201
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    # Adders go front to back, posters back to front: they meet in the middle.
    threads = [threading.Thread(target=adder, args=(values[0::2],)),
               threading.Thread(target=adder, args=(values[1::2],)),
               threading.Thread(target=poster, args=(values[::-1][0::2],)),
               threading.Thread(target=poster, args=(values[::-1][1::2],))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    by_txid = {tx: value for value, tx in txid.items()}
    stored = {by_txid[doc["transaction_id"]] for doc in db["leads"].find({"transaction_id": {"$in": list(by_txid)}})}
    before = {value for value in values if added_at[value] < posted_at[value]}
    assert not stored & before
    assert before, "no add completed before its post: the race was not exercised"
    assert stored, "no post completed before its add: the race was not exercised"


# -- found by the attack of 2026-12-07 (branch attack-s20) ------------------------------------------


def test_remove_all_with_values_is_refused_not_a_clear_of_the_list(app: Flask, database: Any) -> None:
    """``suppress remove dnc --all --email x`` (an operator meaning one value) cleared the whole
    list and ignored the value."""
    suppress(database, "dnc", emails=["keep1@example.com", "keep2@example.com", "x@example.com"])
    runner = app.test_cli_runner()
    refused = runner.invoke(args=["pingtree-leads", "suppress", "remove", "dnc", "--all", "--email", "x@example.com"])
    assert refused.exit_code == 2, refused.output
    assert "--all" in refused.output
    assert suppression_lists(database) == {"dnc": 3}


@pytest.mark.parametrize("expiry", [["--expires-in-days", "3000000"], ["--expires-in-days", "inf"],
                                    ["--expires-at", "9999-12-31T23:59:59-0100"]])
def test_an_expiry_past_the_calendar_is_a_usage_error(app: Flask, database: Any, expiry: list[str]) -> None:
    """These raised OverflowError: a traceback instead of a one-line error."""
    result = app.test_cli_runner().invoke(args=["pingtree-leads", "suppress", "add", "dnc", "--email",
                                                "a@example.com", *expiry])
    assert result.exit_code == 2, (result.output, result.exception)
    assert "expires" in result.output
    assert suppression_lists(database) == {}


def test_an_unreadable_csv_file_is_a_usage_error(app: Flask, database: Any, tmp_path: Path) -> None:
    """A cell over the csv module's field limit (or an unterminated quote running to it) raised
    ``_csv.Error``: a traceback."""
    path = tmp_path / "list.csv"
    path.write_text("email\n" + "a" * 200_000 + "\nb@example.com\n")
    result = app.test_cli_runner().invoke(args=["pingtree-leads", "suppress", "import", "dnc", str(path)])
    assert result.exit_code == 2, (result.output, result.exception)
    assert "row 2" in result.output and "aaaa" not in result.output


def test_a_custom_field_files_header_is_no_entry(app: Flask, database: Any, clock: FakeClock, tmp_path: Path) -> None:
    """Every text is a valid custom value, so the header of a custom field's file was stored as an
    entry (and counted as added)."""
    path = tmp_path / "ids.csv"
    path.write_text("customer_id\nC-1\nC-2\n")
    written = import_suppressions(database, LIST, path, field="customer_id")
    assert (written.added, written.invalid_rows) == (2, ())
    p = poster_for(app, database, clock)
    assert assert_envelope(p.post(lead(customer_id="customer_id")), 201)["lead_status"] == "accept"
    assert_suppressed(p.post(lead(customer_id="C-2")))


# -- found by the attack of 2026-12-08 (branch attack2-s20) -----------------------------------------


def test_an_add_during_a_clear_still_suppresses(database: Any, clock: FakeClock) -> None:
    """``clear`` deleted the list's entries, then its field registry.  An add of a custom field's
    value acknowledged in between (another writer: the CLI, another process) kept its entry but
    lost the registry naming its field, so no endpoint that had not read the registry before
    ever asked for the entry: the value, acknowledged and counted, was stored by every post."""
    suppress(database, LIST, values={"customer_id": ["C-1"]})  # the list has a registry
    store = SuppressionStore(database)
    real = store.collection

    class AddInBetween:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def delete_many(self, *args: Any, **kwargs: Any) -> Any:  # the entries' delete, then the add
            result = real.delete_many(*args, **kwargs)
            suppress(database, LIST, values={"customer_id": ["C-7"]})
            return result

    store.collection = AddInBetween()  # type: ignore[assignment]
    assert store.clear(LIST) == 1
    assert suppression_lists(database) == {LIST: 1}  # C-7's entry, acknowledged after the entries went
    fresh = Flask("another_process")  # its own store: no registry read yet
    PingtreeLeads().init_app(fresh, database=database, clock=clock)
    p = poster_for(fresh, database, clock)
    assert_suppressed(p.post(lead(customer_id="C-7")))
    assert p.count() == 0
