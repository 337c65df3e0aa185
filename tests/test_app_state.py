"""Per-app state in one place, configuration from strings (contract section 7), and the key never shown."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from pingtree_leads import AppRuntimes, PingtreeLeads, create_blueprint, create_source, get_runtime
from pingtree_leads.blueprint import LeadsBlueprint
from pingtree_leads.settings import Settings

from .conftest import Poster, assert_envelope, lead

# -- one home for per-app state ----------------------------------------------------------------


def test_register_blueprint_sets_the_extension_entry(database: Any) -> None:
    app = Flask("host")
    app.register_blueprint(create_blueprint(database))
    runtimes = app.extensions["pingtree_leads"]
    assert isinstance(runtimes, AppRuntimes) and list(runtimes) == ["pingtree_leads"]
    assert get_runtime(app) is runtimes["pingtree_leads"]


def test_the_blueprint_object_keeps_no_per_app_state(database: Any) -> None:
    bp = create_blueprint(database)
    before = set(vars(bp))
    for name in ("one", "two"):
        app = Flask(name)
        app.register_blueprint(bp)
    # Nothing per app was added to the blueprint (Flask's own registration flag aside).
    assert set(vars(bp)) - {"_got_registered_once"} == before
    assert not any(isinstance(v, dict) and any(isinstance(k, Flask) for k in v) for v in vars(bp).values())


def test_two_mounts_in_one_app_have_their_own_runtimes(database: Any, source: Any) -> None:
    app = Flask("host")
    app.register_blueprint(create_blueprint(database, allow_get=False), url_prefix="/a")
    app.register_blueprint(create_blueprint(database, name="second", allow_get=True), url_prefix="/b")
    runtimes = app.extensions["pingtree_leads"]
    assert sorted(runtimes) == ["pingtree_leads", "second"]
    assert runtimes["pingtree_leads"].url_prefix == "/a" and runtimes["second"].url_prefix == "/b"
    client = app.test_client()
    headers = {"Authorization": f"Bearer {source.api_key}"}
    a = client.get(f"/a/api/lead/create/{source.id}", query_string=lead(), headers=headers)
    b = client.get(f"/b/api/lead/create/{source.id}", query_string=lead(), headers=headers)
    assert a.status_code == 405 and b.status_code == 201  # each mount answers with its own settings
    with pytest.raises(LookupError, match="mounted 2 times"):
        get_runtime(app)
    assert get_runtime(app, "second") is runtimes["second"]


def test_init_app_twice_needs_another_name(database: Any) -> None:
    app = Flask("host")
    leads = PingtreeLeads()
    leads.init_app(app, database=database)
    with pytest.raises(RuntimeError, match="already initialised"):
        leads.init_app(app, database=database)
    second = leads.init_app(app, database=database, name="partners", url_prefix="/partners")
    assert get_runtime(app, "partners") is second


def test_a_foreign_extension_entry_is_refused(database: Any) -> None:
    app = Flask("host")
    app.extensions["pingtree_leads"] = object()
    with pytest.raises(RuntimeError, match="something else"):
        app.register_blueprint(create_blueprint(database))


def test_cli_commands_are_module_level_and_shared(database: Any) -> None:
    first, second = create_blueprint(database), create_blueprint(database, name="other")
    assert isinstance(first, LeadsBlueprint)
    assert first.cli.commands["list-sources"] is second.cli.commands["list-sources"]


# -- configuration: contract section 7 ------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("false", False), ("FALSE", False), ("0", False), ("no", False), ("Off", False),
    ("true", True), ("1", True), ("YES", True), ("on", True), (" true ", True),
])
def test_boolean_config_from_strings(database: Any, text: str, expected: bool) -> None:
    app = Flask("host")
    app.config["PINGTREE_LEADS_ALLOW_GET"] = text
    PingtreeLeads().init_app(app, database=database)
    assert get_runtime(app).settings.allow_get is expected
    assert app.config["PINGTREE_LEADS_ALLOW_GET"] is expected


def test_allow_get_false_as_a_string_really_turns_get_off(database: Any, source: Any) -> None:
    app = Flask("host")
    app.config["PINGTREE_LEADS_ALLOW_GET"] = "false"  # what an environment variable gives
    PingtreeLeads().init_app(app, database=database)
    p = Poster(app.test_client(), database, source)
    response = p.get(lead())
    assert_envelope(response, 405)
    assert response.headers["Allow"] == "POST"


@pytest.mark.parametrize(("key", "text", "expected"), [
    ("PINGTREE_LEADS_MAX_BODY_BYTES", "1000", 1000),
    ("PINGTREE_LEADS_MAX_BODY_BYTES", " 2048 ", 2048),
    ("PINGTREE_LEADS_MAX_BODY_BYTES", "4e3", 4000),
    ("PINGTREE_LEADS_SOURCE_CACHE_SECONDS", "2.5", 2.5),
    ("PINGTREE_LEADS_SOURCE_CACHE_SECONDS", "0", 0.0),
    ("PINGTREE_LEADS_RETRY_AFTER_SECONDS", "7", 7),
    ("PINGTREE_LEADS_OPENAPI_ROUTE", "none", None),
    ("PINGTREE_LEADS_OPENAPI_ROUTE", "", None),
    ("PINGTREE_LEADS_LEADS_COLLECTION", "my_leads", "my_leads"),
])
def test_number_and_text_config_from_strings(database: Any, key: str, text: str, expected: Any) -> None:
    app = Flask("host")
    app.config[key] = text
    PingtreeLeads().init_app(app, database=database)
    name = key[len("PINGTREE_LEADS_"):].lower()
    assert getattr(get_runtime(app).settings, name) == expected
    assert app.config[key] == expected  # the config shows what is in force, converted


@pytest.mark.parametrize(("key", "value"), [
    ("PINGTREE_LEADS_ALLOW_GET", "nope"),
    ("PINGTREE_LEADS_ALLOW_GET", 2),
    ("PINGTREE_LEADS_MAX_BODY_BYTES", "lots"),
    ("PINGTREE_LEADS_MAX_BODY_BYTES", "1.5"),
    ("PINGTREE_LEADS_MAX_BODY_BYTES", True),
    ("PINGTREE_LEADS_SOURCE_CACHE_SECONDS", "nan"),
    ("PINGTREE_LEADS_SOURCE_CACHE_SECONDS", "inf"),
    ("PINGTREE_LEADS_LEADS_COLLECTION", 5.0),  # an integer is its digits (from_prefixed_env); a float is not
    ("PINGTREE_LEADS_MAX_BODY_BYTES", "0"),
    ("PINGTREE_LEADS_SOURCE_CACHE_SECONDS", "-1"),
    ("PINGTREE_LEADS_OPENAPI_ROUTE", "openapi.json"),
])
def test_bad_config_values_are_a_value_error_naming_the_key(database: Any, key: str, value: Any) -> None:
    app = Flask("host")
    app.config[key] = value
    with pytest.raises(ValueError, match=key):
        PingtreeLeads().init_app(app, database=database)
    other = Flask("plain")
    other.config[key] = value
    with pytest.raises(ValueError, match=key):
        other.register_blueprint(create_blueprint(database))


def test_an_unknown_config_key_is_a_value_error_naming_it(database: Any) -> None:
    app = Flask("host")
    app.config["PINGTREE_LEADS_ALOW_GET"] = False  # a typo must not leave GET on silently
    with pytest.raises(ValueError, match="PINGTREE_LEADS_ALOW_GET"):
        PingtreeLeads().init_app(app, database=database)
    other = Flask("plain")
    other.config["PINGTREE_LEADS_MAX_BODY"] = 10
    with pytest.raises(ValueError, match="PINGTREE_LEADS_MAX_BODY"):
        other.register_blueprint(create_blueprint(database))


def test_init_app_writes_the_settings_in_force(database: Any) -> None:
    app = Flask("host")
    app.config["PINGTREE_LEADS_MAX_BODY_BYTES"] = "5000"
    PingtreeLeads(max_body_bytes=9000).init_app(app, database=database)  # the keyword wins
    assert get_runtime(app).settings.max_body_bytes == 9000
    assert app.config["PINGTREE_LEADS_MAX_BODY_BYTES"] == 9000
    settings = get_runtime(app).settings
    for name in Settings.names():
        if name != "clock":
            assert app.config[Settings.config_key(name)] == getattr(settings, name)
    assert "PINGTREE_LEADS_CLOCK" not in app.config


def test_keyword_options_are_converted_and_checked_too(database: Any) -> None:
    assert Settings.resolve(None, allow_get="off").allow_get is False
    with pytest.raises(ValueError, match="option 'max_body_bytes'"):
        create_blueprint(database, max_body_bytes="big")
    with pytest.raises(TypeError, match="unknown pingtree_leads option"):
        create_blueprint(database, max_body=5)


# -- the key is shown once, and only on purpose --------------------------------------------


def test_repr_and_str_of_a_created_source_never_show_the_key(database: Any) -> None:
    created = create_source(database, "Secretive")
    assert created.api_key not in repr(created)
    assert created.api_key not in str(created)
    assert created.api_key not in f"{created!r} {created}"
    assert created.id in repr(created) and created.id in str(created)
    assert created.api_key.startswith("ptl_")  # still there for the caller who asks for it
