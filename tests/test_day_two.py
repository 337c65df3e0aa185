"""Day two for the host app (contract section 4): signals, host validators, test mode, fetch."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from bson import ObjectId
from flask import Flask

from pingtree_leads import PingtreeLeads, PublicSource, create_blueprint, create_source, find_lead, signals

from .conftest import FakeClock, Poster, assert_envelope, lead
from .test_storage import monitored, server_uri  # noqa: F401  (fixtures)

# -- helpers ----------------------------------------------------------------------------------


class Recorder:
    """Connects to the three signals for one app and records what they carry."""

    def __init__(self, app: Flask) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.app = app
        for name in ("lead_accepted", "lead_duplicate", "lead_rejected"):
            getattr(signals, name).connect(self._receiver(name), sender=app, weak=False)

    def _receiver(self, name: str) -> Any:
        def receive(sender: Any, **kwargs: Any) -> None:
            assert sender is self.app
            self.events.append((name, kwargs))

        return receive

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def disconnect(self) -> None:
        for name in ("lead_accepted", "lead_duplicate", "lead_rejected"):
            getattr(signals, name).receivers.clear()


@pytest.fixture
def host(database: Any, clock: FakeClock) -> Iterator[tuple[Flask, PingtreeLeads]]:
    app = Flask("day_two_host")
    leads = PingtreeLeads(clock=clock, allow_fetch=True)
    yield app, leads


def mount(app: Flask, leads: PingtreeLeads, database: Any) -> Flask:
    leads.init_app(app, database=database)
    return app


@pytest.fixture
def recorder(host: tuple[Flask, PingtreeLeads]) -> Iterator[Recorder]:
    rec = Recorder(host[0])
    yield rec
    rec.disconnect()


# -- signals ----------------------------------------------------------------------------------


def test_lead_accepted_once_per_new_lead_never_for_a_replay(
    host: tuple[Flask, PingtreeLeads], database: Any, source: Any, recorder: Recorder
) -> None:
    app, leads = host
    p = Poster(mount(app, leads, database).test_client(), database, source)
    body = lead(email="Sig@Example.COM", state="tx", transaction_id="sig-1", utm_source="x")
    data = assert_envelope(p.post(body), 201)
    assert recorder.names() == ["lead_accepted"]
    sent = recorder.events[0][1]
    assert isinstance(sent["source"], PublicSource) and sent["source"].id == source.id
    assert sent["source"].name == "Test source"
    stored = sent["lead"]
    assert stored["lead_id"] == data["lead_id"] and stored["transaction_id"] == "sig-1"
    assert stored["email"] == "sig@example.com" and stored["state"] == "TX"  # as stored
    assert stored["extra"] == {"utm_source": "x"} and stored["trusted_form"] == {}
    assert stored == find_lead(database, source.id, lead_id=data["lead_id"])  # the same shape as fetch
    assert_envelope(p.post(body), 201)  # a replay: no second signal
    assert recorder.names() == ["lead_accepted"]


def test_lead_duplicate_and_rejected_signals(
    host: tuple[Flask, PingtreeLeads], database: Any, source: Any, recorder: Recorder
) -> None:
    app, leads = host
    p = Poster(mount(app, leads, database).test_client(), database, source)
    assert_envelope(p.post(lead(email="d@example.com")), 201)
    assert_envelope(p.post(lead(email="d@example.com", transaction_id="dup-2")), 201)
    assert_envelope(p.post(lead(email="not-an-email")), 400)
    assert_envelope(p.post({"transaction_id": "only"}), 400)
    assert_envelope(p.client.post(p.url, data=b"[1]", headers={**p.headers, "Content-Type": "application/json"}),
                    400)
    assert recorder.names() == ["lead_accepted", "lead_duplicate", "lead_rejected", "lead_rejected",
                                "lead_rejected"]
    dup = recorder.events[1][1]
    assert dup["transaction_id"] == "dup-2" and dup["matched_on"] == ["email"]
    assert [e[1]["lead_status"] for e in recorder.events[2:]] == ["invalidField", "missingField", "invalidField"]
    assert recorder.events[2][1]["fields"] == ["email"]


def test_no_signal_before_the_key_check_or_for_an_inactive_source(
    host: tuple[Flask, PingtreeLeads], database: Any, source: Any, recorder: Recorder
) -> None:
    from pingtree_leads import set_source_active

    app, leads = host
    client = mount(app, leads, database).test_client()
    assert client.post(f"/api/lead/create/{source.id}", json={"email": "x"}).status_code == 401
    set_source_active(database, source.id, False)
    p = Poster(client, database, source)
    assert p.post({"email": "x"}).status_code == 403
    assert recorder.events == []


def test_a_receiver_that_raises_changes_nothing(
    host: tuple[Flask, PingtreeLeads], database: Any, source: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app, leads = host
    p = Poster(mount(app, leads, database).test_client(), database, source)
    later: list[str] = []

    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"boom {kwargs['lead']['email']}")

    def fine(sender: Any, **kwargs: Any) -> None:
        later.append(kwargs["lead"]["lead_id"])

    signals.lead_accepted.connect(broken, sender=app)
    signals.lead_accepted.connect(fine, sender=app)
    try:
        with caplog.at_level(logging.INFO, logger="pingtree_leads"):
            data = assert_envelope(p.post(lead(email="secret.person@example.com")), 201)
    finally:
        signals.lead_accepted.disconnect(broken)
        signals.lead_accepted.disconnect(fine)
    assert data["lead_status"] == "accept" and p.count() == 1
    assert later == [data["lead_id"]]  # the other receiver still ran
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "RuntimeError" in logged and "secret.person" not in logged


def test_signals_are_per_app(database: Any, source: Any, clock: FakeClock) -> None:
    first, second = Flask("first"), Flask("second")
    PingtreeLeads(clock=clock).init_app(first, database=database)
    PingtreeLeads(clock=clock).init_app(second, database=database)
    rec = Recorder(first)
    try:
        assert_envelope(Poster(second.test_client(), database, source).post(lead()), 201)
        assert rec.events == []
        assert_envelope(Poster(first.test_client(), database, source).post(lead()), 201)
        assert rec.names() == ["lead_accepted"]
    finally:
        rec.disconnect()


# -- host validators ----------------------------------------------------------------------------


def test_validators_see_stored_values_and_refusals_are_400(
    host: tuple[Flask, PingtreeLeads], database: Any, source: Any
) -> None:
    app, leads = host
    seen: list[tuple[dict[str, Any], PublicSource]] = []

    @leads.lead_validator
    def block_domain(values: Any, src: PublicSource) -> dict[str, list[str]] | None:
        seen.append((dict(values), src))
        return {"email": ["Domain not accepted."]} if values["email"].endswith("@blocked.example") else None

    @leads.lead_validator
    def suppression(values: Any, src: PublicSource) -> dict[str, Any]:
        return {"mobile": "On the suppression list."} if values.get("mobile") == "5550000000" else {}

    p = Poster(mount(app, leads, database).test_client(), database, source)
    assert assert_envelope(p.post(lead(email="OK@Example.com", transaction_id="v-1")), 201)["lead_status"] == "accept"
    values, src = seen[0]
    assert values["email"] == "ok@example.com" and values["transaction_id"] == "v-1"  # as it would be stored
    assert src.id == source.id and not hasattr(src, "key_hashes")
    data = assert_envelope(p.post(lead(email="a@blocked.example", mobile="5550000000")), 400)
    assert data["lead_status"] == "invalidField"
    assert data["fields"] == ["email", "mobile"]
    assert data["errors"] == {"email": ["Domain not accepted."], "mobile": ["On the suppression list."]}
    assert p.count() == 1


def test_validators_run_only_after_the_built_in_rules_pass(database: Any, source: Any) -> None:
    bp = create_blueprint(database)
    calls: list[str] = []
    bp.lead_validator(lambda values, src: calls.append(values["email"]))  # type: ignore[arg-type,func-returns-value]
    app = Flask("bp_host")
    app.register_blueprint(bp)
    p = Poster(app.test_client(), database, source)
    assert_envelope(p.post(lead(email="bad")), 400)
    assert calls == []
    assert_envelope(p.post(lead(email="good@example.com")), 201)
    assert calls == ["good@example.com"]


def test_a_validator_that_raises_is_a_500_with_nothing_stored(
    host: tuple[Flask, PingtreeLeads], database: Any, source: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app, leads = host

    @leads.lead_validator
    def broken(values: Any, src: Any) -> None:
        raise KeyError(values["email"])

    p = Poster(mount(app, leads, database).test_client(), database, source)
    with caplog.at_level(logging.INFO, logger="pingtree_leads"):
        response = p.post(lead(email="private.person@example.com"))
    assert_envelope(response, 500)
    assert p.count() == 0
    text = response.get_data(as_text=True) + "\n".join(r.getMessage() for r in caplog.records)
    assert "private.person" not in text and "KeyError" in text


# -- test mode ---------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["true", "TRUE", "1", True, 1, " True "])
def test_test_mode_checks_a_new_lead_and_stores_nothing(
    host: tuple[Flask, PingtreeLeads], database: Any, source: Any, recorder: Recorder, flag: Any
) -> None:
    app, leads = host
    p = Poster(mount(app, leads, database).test_client(), database, source)
    data = assert_envelope(p.post(lead(xxTest=flag, transaction_id="t-1")), 201)
    assert data == {"lead_status": "accept", "transaction_id": "t-1", "test": True}
    assert p.count() == 0 and recorder.events == []
    # Nothing held: the same lead for real is accepted, and then stored without xxTest.
    real = assert_envelope(p.post(lead(transaction_id="t-1")), 201)
    assert real["lead_status"] == "accept" and "test" not in real
    assert "xxTest" not in database["leads"].find_one()["extra"]


def test_test_mode_gives_every_outcome_of_a_real_post(
    host: tuple[Flask, PingtreeLeads], database: Any, source: Any, recorder: Recorder
) -> None:
    app, leads = host

    @leads.lead_validator
    def no_bobs(values: Any, src: Any) -> dict[str, list[str]] | None:
        return {"first_name": ["No Bobs."]} if values.get("first_name") == "Bob" else None

    p = Poster(mount(app, leads, database).test_client(), database, source)
    stored = lead(email="t@example.com", transaction_id="stored-1")
    first = assert_envelope(p.post(stored), 201)
    recorder.events.clear()
    before = list(database["leads"].find())

    dup = assert_envelope(p.post(lead(email="t@example.com", xxTest="1")), 201)
    assert dup["lead_status"] == "duplicate" and dup["matched_on"] == ["email"] and dup["test"] is True
    replay = assert_envelope(p.post({**stored, "xxTest": "true"}), 201)
    assert replay == {"lead_status": "accept", "transaction_id": "stored-1", "lead_id": first["lead_id"],
                      "replayed": True, "test": True}
    conflict = p.post({**stored, "first_name": "Other", "xxTest": "true"})
    assert assert_envelope(conflict, 409)["test"] is True
    missing = assert_envelope(p.post({"transaction_id": "x", "xxTest": "true"}), 400)
    assert missing["lead_status"] == "missingField" and missing["test"] is True
    invalid = assert_envelope(p.post(lead(zip_code="1", xxTest="true")), 400)
    assert invalid["lead_status"] == "invalidField" and invalid["test"] is True
    refused = assert_envelope(p.post(lead(first_name="Bob", xxTest="true")), 400)
    assert refused["errors"] == {"first_name": ["No Bobs."]} and refused["test"] is True
    assert list(database["leads"].find()) == before  # nothing stored, no claim touched
    assert recorder.events == []


@pytest.mark.parametrize("flag", ["false", "0", "", "  ", None, False, 0])
def test_a_false_or_blank_test_flag_is_a_normal_post(
    host: tuple[Flask, PingtreeLeads], database: Any, source: Any, flag: Any
) -> None:
    app, leads = host
    p = Poster(mount(app, leads, database).test_client(), database, source)
    data = assert_envelope(p.post(lead(xxTest=flag)), 201)
    assert "test" not in data and "lead_id" in data and p.count() == 1
    assert "xxTest" not in database["leads"].find_one()["extra"]


@pytest.mark.parametrize("flag", ["yes", "2", 2, "tru", [True], {"a": 1}])
def test_another_test_flag_is_invalid(host: tuple[Flask, PingtreeLeads], database: Any, source: Any,
                                      flag: Any) -> None:
    app, leads = host
    p = Poster(mount(app, leads, database).test_client(), database, source)
    data = assert_envelope(p.post(lead(xxTest=flag, zip_code="1")), 400)
    assert data["lead_status"] == "invalidField"
    assert data["errors"]["xxTest"] == ["Must be true, false, 1 or 0."] and "zip_code" in data["errors"]
    assert p.count() == 0


def test_test_mode_over_get_and_form(host: tuple[Flask, PingtreeLeads], database: Any, source: Any) -> None:
    app, leads = host
    p = Poster(mount(app, leads, database).test_client(), database, source)
    assert assert_envelope(p.get({**lead(), "xxTest": "1"}), 201)["test"] is True
    assert assert_envelope(p.client.post(p.url, data={**lead(), "xxTest": "TRUE"}, headers=p.headers),
                           201)["test"] is True
    assert p.count() == 0


# -- fetch --------------------------------------------------------------------------------------


def fetch(p: Poster, **query: str) -> Any:
    return p.client.get(f"/api/lead/fetch/{p.source.id}", query_string=query, headers=p.headers)


def test_fetch_is_off_by_default(database: Any, source: Any) -> None:
    app = Flask("default")
    PingtreeLeads().init_app(app, database=database)
    p = Poster(app.test_client(), database, source)
    data = assert_envelope(p.post(lead()), 201)
    assert_envelope(fetch(p, lead_id=data["lead_id"]), 404)
    assert_envelope(p.client.get(f"/api/lead/fetch/{source.id}", query_string={"lead_id": data["lead_id"]}), 404)


def test_fetch_by_lead_id_and_by_transaction_id(
    host: tuple[Flask, PingtreeLeads], database: Any, source: Any
) -> None:
    app, leads = host
    p = Poster(mount(app, leads, database).test_client(), database, source)
    body = lead(email="Fetch@Example.com", transaction_id="f-1", utm_source="y",
                xxTrustedFormCertUrl="https://cert.trustedform.com/abc")
    data = assert_envelope(p.post(body), 201)
    by_id = assert_envelope(fetch(p, lead_id=data["lead_id"]), 200)["lead"]
    by_tx = assert_envelope(fetch(p, transaction_id="f-1"), 200)["lead"]
    assert by_id == by_tx
    assert by_id["lead_id"] == data["lead_id"] and by_id["transaction_id"] == "f-1"
    assert by_id["email"] == "fetch@example.com" and by_id["extra"] == {"utm_source": "y"}
    assert by_id["trusted_form"] == {"cert_url": "https://cert.trustedform.com/abc"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", by_id["created_at"])
    assert not {"_id", "source_id", "claims", "fingerprint"} & set(by_id)


def test_fetch_never_crosses_sources(host: tuple[Flask, PingtreeLeads], database: Any, source: Any) -> None:
    app, leads = host
    client = mount(app, leads, database).test_client()
    other = create_source(database, "Other")
    theirs = assert_envelope(Poster(client, database, other).post(lead(transaction_id="shared")), 201)
    mine = Poster(client, database, source)
    assert_envelope(fetch(mine, lead_id=theirs["lead_id"]), 404)
    assert_envelope(fetch(mine, transaction_id="shared"), 404)
    assert find_lead(database, source.id, lead_id=theirs["lead_id"]) is None
    assert find_lead(database, other.id, transaction_id="shared")["lead_id"] == theirs["lead_id"]


@pytest.mark.parametrize("query", [{}, {"lead_id": "a" * 24, "transaction_id": "x"}, {"lead_id": "nope"},
                                   {"transaction_id": "bad id!"}, {"lead_id": " "}])
def test_fetch_needs_exactly_one_well_formed_parameter(
    host: tuple[Flask, PingtreeLeads], database: Any, source: Any, query: dict[str, str]
) -> None:
    app, leads = host
    p = Poster(mount(app, leads, database).test_client(), database, source)
    assert_envelope(fetch(p, **query), 400)


def test_fetch_answers_401_403_405_like_create(host: tuple[Flask, PingtreeLeads], database: Any,
                                              source: Any) -> None:
    from pingtree_leads import set_source_active

    app, leads = host
    client = mount(app, leads, database).test_client()
    url = f"/api/lead/fetch/{source.id}?lead_id={'a' * 24}"
    response = client.get(url, headers={"Authorization": "Bearer wrong"})
    assert_envelope(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert_envelope(client.post(url, headers={"Authorization": f"Bearer {source.api_key}"}), 405)
    assert_envelope(client.get("/api/lead/fetch/not-an-id?lead_id=x"), 404)
    set_source_active(database, source.id, False)
    assert_envelope(client.get(url, headers={"Authorization": f"Bearer {source.api_key}"}), 403)


def test_fetch_logs_never_carry_the_looked_up_values(
    host: tuple[Flask, PingtreeLeads], database: Any, source: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app, leads = host
    p = Poster(mount(app, leads, database).test_client(), database, source)
    assert_envelope(p.post(lead(transaction_id="internal-ref-77")), 201)
    with caplog.at_level(logging.DEBUG, logger="pingtree_leads"):
        assert_envelope(fetch(p, transaction_id="internal-ref-77"), 200)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "internal-ref-77" not in logged and "by=transaction_id" in logged


def test_find_lead_needs_exactly_one_key(database: Any, source: Any) -> None:
    with pytest.raises(ValueError):
        find_lead(database, source.id)
    with pytest.raises(ValueError):
        find_lead(database, source.id, lead_id=str(ObjectId()), transaction_id="x")
    assert find_lead(database, source.id, str(ObjectId())) is None  # positional, as the contract shows it
    assert find_lead(database, "not-an-id", transaction_id="x") is None


# -- cost: index-backed, bounded reads (real servers, command monitoring) ------------------------


def test_test_mode_and_fetch_reads_are_few_and_index_backed(monitored: tuple[Any, Any]) -> None:  # noqa: F811
    db, log = monitored
    src = create_source(db, "Costs", dedupe_window_days=30)
    app = Flask("costs")
    PingtreeLeads(allow_fetch=True).init_app(app, database=db)
    p = Poster(app.test_client(), db, src)
    db["leads"].insert_many([{"source_id": ObjectId(), "transaction_id": str(i), "claims": [f"-{i}"]}
                             for i in range(300)])
    stored = assert_envelope(p.post(lead(transaction_id="c-1")), 201)
    log.commands.clear()
    assert_envelope(p.post(lead(xxTest="1")), 201)  # a new lead in test mode: transaction + email + mobile
    finds = [cmd for name, cmd in log.commands if name == "find" and cmd["find"] == "leads"]
    assert len(finds) == 3 and not [name for name, _ in log.commands if name in ("insert", "update", "delete")]
    log.commands.clear()
    assert_envelope(fetch(p, lead_id=stored["lead_id"]), 200)
    assert_envelope(fetch(p, transaction_id="c-1"), 200)
    finds += [cmd for name, cmd in log.commands if name == "find" and cmd["find"] == "leads"]
    assert len(finds) == 5
    for cmd in finds:
        plan = db.command("explain", {"find": "leads", "filter": cmd["filter"]}, verbosity="queryPlanner")
        text = repr(plan["queryPlanner"]["winningPlan"])
        assert "IXSCAN" in text or "IDHACK" in text or "EXPRESS" in text, cmd["filter"]
        assert "COLLSCAN" not in text, cmd["filter"]


# -- the CSV import: the same validators and signals ---------------------------------------------


def test_the_import_applies_validators_and_sends_the_same_signals(
    host: tuple[Flask, PingtreeLeads], database: Any, source: Any, recorder: Recorder, tmp_path: Any
) -> None:
    app, leads = host

    @leads.lead_validator
    def no_bobs(values: Any, src: Any) -> dict[str, list[str]] | None:
        return {"first_name": ["No Bobs."]} if values.get("first_name") == "Bob" else None

    mount(app, leads, database)
    Poster(app.test_client(), database, source).post(lead(email="stored@example.com"))
    recorder.events.clear()
    path = tmp_path / "leads.csv"
    path.write_text("first_name,email\nAda,new@example.com\nBob,bob@example.com\nCy,stored@example.com\n"
                    "Di,not-an-email\n")
    runner = app.test_cli_runner()
    dry = runner.invoke(args=["pingtree-leads", "import", source.id, str(path), "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert recorder.events == []  # a dry run sends nothing
    result = runner.invoke(args=["pingtree-leads", "import", source.id, str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert sorted(recorder.names()) == ["lead_accepted", "lead_duplicate", "lead_rejected", "lead_rejected"]
    accepted = next(kw for name, kw in recorder.events if name == "lead_accepted")
    assert accepted["lead"]["email"] == "new@example.com"
    assert accepted["lead"] == find_lead(database, source.id, lead_id=accepted["lead"]["lead_id"])
    rejected = [kw for name, kw in recorder.events if name == "lead_rejected"]
    assert sorted(kw["fields"][0] for kw in rejected) == ["email", "first_name"]
    assert database["leads"].count_documents({"first_name": "Bob"}) == 0


def test_a_validator_that_raises_during_an_import_is_named_without_values(
    host: tuple[Flask, PingtreeLeads], database: Any, source: Any, tmp_path: Any
) -> None:
    app, leads = host

    @leads.lead_validator
    def broken(values: Any, src: Any) -> None:
        raise KeyError(values["email"])

    mount(app, leads, database)
    path = tmp_path / "leads.csv"
    path.write_text("first_name,email\nAda,private.person@example.com\n")
    result = app.test_cli_runner().invoke(args=["pingtree-leads", "import", source.id, str(path)])
    assert result.exit_code != 0
    assert "KeyError" in result.output and "private.person" not in result.output
    assert "Traceback" not in result.output and database["leads"].count_documents({}) == 0
