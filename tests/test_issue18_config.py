"""Issue 18: configuration keys and the environment, signal receivers, provisioning
arguments, and the 401's hint (contract sections 1, 4, 7 and 9)."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from flask import Flask

from pingtree_leads import CreatedSource, PingtreeLeads, create_blueprint, create_source, get_runtime, signals
from pingtree_leads.errors import MESSAGES
from pingtree_leads.provisioning import check_dedupe_fields
from pingtree_leads.settings import Settings

from .conftest import FakeClock, Poster, assert_envelope, lead

CONFIGURATION_DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def get_is_off(app: Flask, database: Any, source: CreatedSource) -> None:
    """GET is refused with 405 and ``Allow: POST``; a POST is still accepted."""
    p = Poster(app.test_client(), database, source)
    response = p.get(lead())
    assert_envelope(response, 405)
    assert response.headers["Allow"] == "POST"
    assert assert_envelope(p.post(lead()), 201)["lead_status"] == "accept"
    assert p.count() == 1


def clear_pingtree_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if "PINGTREE_LEADS" in name.upper():
            monkeypatch.delenv(name)


# -- 1. a key in another case is refused, like any unknown key ------------------------------


@pytest.mark.parametrize("key", ["PINGTREE_LEADS_allow_get", "pingtree_leads_ALLOW_GET", "Pingtree_Leads_Allow_Get",
                                 "pingtree_leads_allow_get"])
def test_a_config_key_in_another_case_is_a_value_error_naming_it(database: Any, key: str) -> None:
    app = Flask("host")
    app.config[key] = "false"  # left alone, GET (PII in URLs) would silently stay on
    with pytest.raises(ValueError, match=re.escape(key)) as raised:
        PingtreeLeads().init_app(app, database=database)
    assert "PINGTREE_LEADS_ALLOW_GET" in str(raised.value)  # the key to write instead
    assert not app.extensions.get("pingtree_leads")  # no runtime was made
    other = Flask("plain")
    other.config[key] = False
    with pytest.raises(ValueError, match=re.escape(key)):
        other.register_blueprint(create_blueprint(database))


def test_an_unknown_key_in_another_case_is_refused_too() -> None:
    with pytest.raises(ValueError, match="pingtree_leads_alow_get"):
        Settings.resolve({"pingtree_leads_alow_get": False})


def test_a_nested_mapping_under_the_prefix_is_refused_but_a_plain_host_key_is_not() -> None:
    # What from_prefixed_env makes of FLASK_PINGTREE_LEADS__ALLOW_GET (a doubled underscore).
    with pytest.raises(ValueError, match="PINGTREE_LEADS"):
        Settings.resolve({"PINGTREE_LEADS": {"ALLOW_GET": False}})
    assert Settings.resolve({"PINGTREE_LEADS": True, "PINGTREE_LEADSX": 1}).allow_get is True  # the host's own


# -- 2. what from_prefixed_env makes of a variable --------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [("0", False), ("1", True), ("false", False), ("true", True),
                                                ("off", False), ("YES", True)])
def test_from_prefixed_env_booleans(monkeypatch: pytest.MonkeyPatch, text: str, expected: bool) -> None:
    clear_pingtree_environment(monkeypatch)
    monkeypatch.setenv("FLASK_PINGTREE_LEADS_ALLOW_GET", text)
    monkeypatch.setenv("FLASK_PINGTREE_LEADS_ALLOW_FETCH", text)
    app = Flask("host")
    app.config.from_prefixed_env()
    settings = Settings.resolve(app.config)
    assert (settings.allow_get, settings.allow_fetch) == (expected, expected)


def test_from_prefixed_env_zero_turns_get_off(database: Any, source: CreatedSource,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    clear_pingtree_environment(monkeypatch)
    monkeypatch.setenv("FLASK_PINGTREE_LEADS_ALLOW_GET", "0")
    app = Flask("host")
    app.config.from_prefixed_env()
    assert app.config["PINGTREE_LEADS_ALLOW_GET"] == 0  # Flask JSON-decodes it
    PingtreeLeads().init_app(app, database=database)
    assert app.config["PINGTREE_LEADS_ALLOW_GET"] is False  # the config shows what is in force
    get_is_off(app, database, source)


REFUSED = object()

#: (option, value in the environment, what it is taken as) -- the table in docs/configuration.md.
ENVIRONMENT_VALUES: list[tuple[str, str, Any]] = [
    ("allow_get", "2", REFUSED), ("allow_get", "-1", REFUSED), ("allow_get", "1.0", REFUSED),
    ("allow_get", "0.0", REFUSED), ("allow_get", "null", REFUSED), ("allow_get", '"x"', REFUSED),
    ("allow_get", "64", REFUSED), ("allow_get", '"off"', False),
    ("max_body_bytes", "64", 64), ("max_body_bytes", "4e3", 4000), ("max_body_bytes", "2.5", REFUSED),
    ("max_body_bytes", "true", REFUSED), ("max_body_bytes", "null", REFUSED), ("max_body_bytes", '"64"', 64),
    ("max_body_bytes", '"x"', REFUSED), ("max_body_bytes", "1", 1),
    ("source_cache_seconds", "2.5", 2.5), ("source_cache_seconds", "64", 64.0), ("source_cache_seconds", "0", 0.0),
    ("source_cache_seconds", "true", REFUSED), ("source_cache_seconds", "null", REFUSED),
    ("source_cache_seconds", "-1", REFUSED),
    ("leads_collection", "64", "64"), ("leads_collection", "2024", "2024"), ("leads_collection", '"x"', "x"),
    ("leads_collection", "my_leads", "my_leads"), ("leads_collection", "2.5", REFUSED),
    ("leads_collection", "true", REFUSED), ("leads_collection", "null", REFUSED),
    ("openapi_route", "null", None), ("openapi_route", '"/spec.json"', "/spec.json"),
    ("openapi_route", "/spec.json", "/spec.json"), ("openapi_route", "none", None),
    ("openapi_route", "64", REFUSED), ("openapi_route", "true", REFUSED), ("openapi_route", "2.5", REFUSED),
]


@pytest.mark.parametrize(("name", "text", "expected"), ENVIRONMENT_VALUES,
                         ids=[f"{name}={text}" for name, text, _ in ENVIRONMENT_VALUES])
def test_from_prefixed_env_values_of_every_option_type(monkeypatch: pytest.MonkeyPatch, name: str, text: str,
                                                        expected: Any) -> None:
    clear_pingtree_environment(monkeypatch)
    key = Settings.config_key(name)
    monkeypatch.setenv(f"FLASK_{key}", text)
    app = Flask("host")
    app.config.from_prefixed_env()
    if expected is REFUSED:
        with pytest.raises(ValueError, match=key):
            Settings.resolve(app.config)
        return
    assert getattr(Settings.resolve(app.config), name) == expected
    # loads=str hands over the text itself: the same value, except where the quotes were the point.
    if not text.startswith('"') and text != "null":
        strict = Flask("strict")
        strict.config.from_prefixed_env(loads=str)
        assert getattr(Settings.resolve(strict.config), name) == expected


def test_a_float_is_never_a_boolean_nor_text() -> None:
    with pytest.raises(ValueError, match="PINGTREE_LEADS_ALLOW_GET"):
        Settings.resolve({"PINGTREE_LEADS_ALLOW_GET": 1.0})
    with pytest.raises(ValueError, match="from_prefixed_env"):  # the message says how to keep the text
        Settings.resolve({"PINGTREE_LEADS_LEADS_COLLECTION": 1.5})


# -- 3. the documented way to configure from the environment, run as written ----------------


def environment_examples() -> list[tuple[dict[str, str], str]]:
    """Each ``sh`` block of the doc's "From the environment" section with the ``python`` block after it."""
    text = CONFIGURATION_DOC.read_text(encoding="utf-8")
    start = text.index("\n## From the environment\n")
    end = text.index("\n## ", start + 1)
    blocks = re.findall(r"```(sh|python)\n(.*?)```", text[start:end], re.S)
    examples = []
    assert len(blocks) % 2 == 0, blocks
    for (kind, shell), (next_kind, code) in zip(blocks[::2], blocks[1::2], strict=True):
        assert (kind, next_kind) == ("sh", "python")
        variables = {}
        for line in shell.splitlines():
            words = shlex.split(line)
            assert words[0] == "export" and len(words) == 2, line
            name, _, value = words[1].partition("=")
            variables[name] = value
        examples.append((variables, code))
    return examples


def test_the_doc_shows_both_ways() -> None:
    examples = environment_examples()
    assert len(examples) == 2
    assert [variables.get("FLASK_PINGTREE_LEADS_ALLOW_GET", variables.get("PINGTREE_LEADS_ALLOW_GET"))
            for variables, _ in examples] == ["false", "0"]


@pytest.mark.parametrize("index", [0, 1])
@pytest.mark.parametrize("allow_get", [None, "0", "false", "off", "No", "FALSE"])
def test_the_documented_environment_route_works_as_written(
    database: Any, source: CreatedSource, monkeypatch: pytest.MonkeyPatch, index: int, allow_get: str | None
) -> None:
    variables, code = environment_examples()[index]
    clear_pingtree_environment(monkeypatch)
    for name, value in variables.items():
        if allow_get is not None and name.endswith("PINGTREE_LEADS_ALLOW_GET"):
            value = allow_get  # the doc's value, or another way of saying "off"
        monkeypatch.setenv(name, value)
    namespace: dict[str, Any] = {"__name__": "documented_host"}
    exec(compile(code, str(CONFIGURATION_DOC), "exec"), namespace)  # noqa: S102  # the doc's own code
    app = namespace["create_app"](database)
    assert get_runtime(app).settings.allow_get is False
    assert app.config["PINGTREE_LEADS_ALLOW_GET"] is False
    for name in variables:  # every variable the doc sets reached the settings
        key = name.removeprefix("FLASK_")
        assert Settings.resolve({key: os.environ[name]}).as_config()[key] == app.config[key]
    get_is_off(app, database, source)


# -- 4. a receiver raising any exception changes nothing --------------------------------------


class HostAbort(BaseException):
    """A host's own BaseException subclass."""


@pytest.mark.parametrize("exc_type", [asyncio.CancelledError, GeneratorExit, HostAbort, RuntimeError])
def test_a_receiver_raising_any_exception_changes_nothing(
    database: Any, source: CreatedSource, clock: FakeClock, caplog: pytest.LogCaptureFixture,
    exc_type: type[BaseException],
) -> None:
    app = Flask("signals_host")
    PingtreeLeads(clock=clock).init_app(app, database=database)
    p = Poster(app.test_client(), database, source)
    heard: list[str] = []

    def broken(sender: Any, **kwargs: Any) -> None:
        raise exc_type(f"secret {kwargs}")

    def fine(sender: Any, **kwargs: Any) -> None:
        heard.append(kwargs.get("lead", {}).get("lead_id") or kwargs.get("lead_status") or "duplicate")

    for signal in (signals.lead_accepted, signals.lead_duplicate, signals.lead_rejected):
        signal.connect(broken, sender=app)
        signal.connect(fine, sender=app)
    try:
        with caplog.at_level(logging.INFO, logger="pingtree_leads"):
            first = lead(email="secret.person@example.com")
            data = assert_envelope(p.post(first), 201)
            duplicate = assert_envelope(p.post(lead(email="secret.person@example.com")), 201)
            rejected = assert_envelope(p.post(lead(email="not an email")), 400)
    finally:
        for signal in (signals.lead_accepted, signals.lead_duplicate, signals.lead_rejected):
            signal.disconnect(broken)
            signal.disconnect(fine)
    assert data["lead_status"] == "accept" and duplicate["lead_status"] == "duplicate"
    assert rejected["lead_status"] == "invalidField"
    assert heard == [data["lead_id"], "duplicate", "invalidField"]  # the other receiver still ran
    stored = p.stored()
    assert len(stored) == 1 and stored[0]["email"] == "secret.person@example.com"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert logged.count(f"raised {exc_type.__name__}") == 3
    assert "secret" not in logged
    assert not [r for r in caplog.records if r.exc_info]  # no traceback, which could show values


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_stopping_the_process_still_propagates(database: Any, source: CreatedSource, clock: FakeClock,
                                               exc_type: type[BaseException]) -> None:
    app = Flask("signals_host")
    PingtreeLeads(clock=clock).init_app(app, database=database)
    p = Poster(app.test_client(), database, source)

    def stop(sender: Any, **kwargs: Any) -> None:
        raise exc_type()

    signals.lead_accepted.connect(stop, sender=app)
    try:
        with pytest.raises(exc_type):
            p.post(lead())
    finally:
        signals.lead_accepted.disconnect(stop)
    assert p.count() == 1  # stored before the receiver ran


def test_send_swallows_base_exceptions_outside_a_request(caplog: pytest.LogCaptureFixture) -> None:
    sender = object()  # the CSV import sends through the same function, outside a request
    calls: list[str] = []

    def cancelled(_: Any, **kwargs: Any) -> None:
        raise asyncio.CancelledError()

    def after(_: Any, **kwargs: Any) -> None:
        calls.append("ran")

    signals.lead_duplicate.connect(cancelled, sender=sender)
    signals.lead_duplicate.connect(after, sender=sender)
    try:
        with caplog.at_level(logging.ERROR, logger="pingtree_leads"):
            signals.send(signals.lead_duplicate, sender, source=None, transaction_id="t", matched_on=["email"])
    finally:
        signals.lead_duplicate.disconnect(cancelled)
        signals.lead_duplicate.disconnect(after)
    assert calls == ["ran"]
    assert "raised CancelledError" in caplog.text


# -- 5. one string is not a list of field names -----------------------------------------------


@pytest.mark.parametrize("kwargs", [
    {"dedupe_fields": "email"}, {"required_fields": "email"}, {"dedupe_fields": b"email"},
    {"required_fields": b"email"}, {"dedupe_fields": "mobile"}, {"required_fields": bytearray(b"email")},
    {"dedupe_fields": ""}, {"required_fields": None}, {"dedupe_fields": 5},
])
def test_field_names_given_as_one_string_are_a_type_error(database: Any, kwargs: dict[str, Any]) -> None:
    (option,) = kwargs
    with pytest.raises(TypeError, match=option):
        create_source(database, "One string", **kwargs)
    assert database["database_sources"].count_documents({}) == 0


def test_the_type_error_says_what_to_write_instead(database: Any) -> None:
    with pytest.raises(TypeError, match=re.escape("dedupe_fields=['email']")):
        create_source(database, "One string", dedupe_fields="email")
    with pytest.raises(TypeError, match="dedupe_fields"):
        check_dedupe_fields("email")  # type: ignore[arg-type]  # the CLI's checker too
    assert check_dedupe_fields(["email", "mobile"]) == ["email", "mobile"]
    assert create_source(database, "Tuple", dedupe_fields=("email",), required_fields=("email",)).id


# -- 6. the 401 says how to send the key when it was sent the wrong way -----------------------

HINT = "Authorization: Bearer <api key>"


def refused(response: Any) -> str:
    assert_envelope(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    body = response.get_json()
    assert body["data"] == {}
    message: str = body["message"]
    assert message.startswith(MESSAGES[401])
    return message


WRONG_WAYS: list[tuple[str, Callable[[str], dict[str, Any]]]] = [
    ("no-scheme", lambda key: {"headers": {"Authorization": key}}),
    ("basic", lambda key: {"headers": {"Authorization": "Basic " + base64.b64encode(f"x:{key}".encode()).decode()}}),
    ("token-scheme", lambda key: {"headers": {"Authorization": f"Token {key}"}}),
    ("scheme-only", lambda key: {"headers": {"Authorization": "Bearer"}}),
    ("blank-token", lambda key: {"headers": {"Authorization": "Bearer   "}}),
    ("empty", lambda key: {"headers": {"Authorization": ""}}),
    ("x-api-key", lambda key: {"headers": {"X-Api-Key": key}}),
    ("api-key-header", lambda key: {"headers": {"Api-Key": key}}),
    ("query", lambda key: {"headers": {}, "query_string": {"api_key": key}}),
]


@pytest.mark.parametrize(("label", "how"), WRONG_WAYS, ids=[label for label, _ in WRONG_WAYS])
def test_a_key_sent_the_wrong_way_gets_a_hint_and_never_the_key(poster: Poster, label: str,
                                                               how: Callable[[str], dict[str, Any]]) -> None:
    key = poster.source.api_key
    response = poster.client.post(poster.url, json=lead(), **how(key))
    message = refused(response)
    assert HINT in message
    assert key not in response.get_data(as_text=True)
    # The hint depends on the request's shape only: an unknown source gets the very same body.
    unknown = poster.client.post(f"/api/lead/create/{ObjectId()}", json=lead(), **how(key))
    assert unknown.get_json() == response.get_json()
    assert poster.count() == 0


def test_no_key_at_all_and_a_wrong_bearer_key_get_no_hint(poster: Poster) -> None:
    bare = refused(poster.client.post(poster.url, json=lead()))
    assert bare == MESSAGES[401]  # as documented and in the OpenAPI examples
    wrong = poster.client.post(poster.url, json=lead(), headers={"Authorization": "Bearer ptl_wrong"})
    assert refused(wrong) == MESSAGES[401]
    unknown = poster.client.post(f"/api/lead/create/{ObjectId()}", json=lead(), headers=poster.headers)
    assert unknown.get_json() == wrong.get_json()  # still indistinguishable
    assert poster.count() == 0


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer"])
def test_the_scheme_is_matched_in_any_case(poster: Poster, scheme: str) -> None:
    headers = {"Authorization": f"{scheme} {poster.source.api_key}"}
    response = poster.client.post(poster.url, json=lead(), headers=headers)
    assert assert_envelope(response, 201)["lead_status"] == "accept"


def test_the_ping_route_gives_the_hint_too(poster: Poster) -> None:
    url = f"/api/lead/ping/{poster.source.id}"
    response = poster.client.post(url, json={"email": "a@example.com"},
                                  headers={"Authorization": poster.source.api_key})
    assert HINT in refused(response)
    assert poster.source.api_key not in response.get_data(as_text=True)


def test_the_hint_carries_no_value_into_the_logs(poster: Poster, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        refused(poster.client.post(poster.url, json=lead(email="secret.person@example.com"),
                                   headers={"Authorization": poster.source.api_key}))
    assert poster.source.api_key not in caplog.text and "secret.person" not in caplog.text
    assert "no valid key" in caplog.text

