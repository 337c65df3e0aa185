"""The public Python API: create_blueprint, PingtreeLeads.init_app, options."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from pingtree_leads import AppRuntimes, LeadsRuntime, PingtreeLeads, create_blueprint, create_source, get_runtime

from .conftest import Poster, assert_envelope, lead


def test_register_blueprint_with_url_prefix(database: Any, source: Any) -> None:
    app = Flask("host")
    app.register_blueprint(create_blueprint(database), url_prefix="/x")
    p = Poster(app.test_client(), database, source)
    p.url = f"/x/api/lead/create/{source.id}"
    assert assert_envelope(p.post(lead()), 201)["lead_status"] == "accept"
    assert app.test_client().post(f"/api/lead/create/{source.id}").status_code == 404
    assert_envelope(app.test_client().get("/x/api/lead/nothing"), 404)


def test_same_blueprint_twice_with_name(database: Any, source: Any) -> None:
    app = Flask("host")
    bp = create_blueprint(database)
    app.register_blueprint(bp, url_prefix="/a")
    app.register_blueprint(bp, url_prefix="/b", name="pingtree_leads_b")
    client = app.test_client()
    for prefix in ("/a", "/b"):
        p = Poster(client, database, source)
        p.url = f"{prefix}/api/lead/create/{source.id}"
        assert assert_envelope(p.post(lead()), 201)["lead_status"] == "accept"


def test_host_routes_keep_their_own_error_pages(database: Any) -> None:
    app = Flask("host")

    @app.get("/hello")
    def hello() -> str:
        return "hi"

    @app.errorhandler(404)
    def host_404(exc: Exception) -> tuple[str, int]:
        return "host page", 404

    app.register_blueprint(create_blueprint(database))
    client = app.test_client()
    assert client.get("/hello").get_data(as_text=True) == "hi"
    assert client.get("/missing").get_data(as_text=True) == "host page"
    assert client.post("/hello").mimetype != "application/json"  # Flask's own 405 page
    assert_envelope(client.get("/api/lead/missing"), 404)


def test_init_app_sets_extension_and_refuses_double_init(database: Any, source: Any) -> None:
    app = Flask("host")
    leads = PingtreeLeads()
    runtime = leads.init_app(app, database=database)
    assert isinstance(app.extensions["pingtree_leads"], AppRuntimes)
    assert isinstance(runtime, LeadsRuntime)
    assert app.extensions["pingtree_leads"]["pingtree_leads"] is runtime
    assert get_runtime(app) is runtime
    assert app.config["PINGTREE_LEADS_MAX_BODY_BYTES"] == 64 * 1024
    with pytest.raises(RuntimeError):
        leads.init_app(app, database=database)
    p = Poster(app.test_client(), database, source)
    assert assert_envelope(p.post(lead()), 201)["lead_status"] == "accept"


def test_app_factory_with_one_extension_many_apps(database: Any, source: Any) -> None:
    leads = PingtreeLeads(database=database, allow_get=False)

    def create_app(prefix: str) -> Flask:
        app = Flask("factory")
        leads.init_app(app, url_prefix=prefix)
        return app

    for prefix in ("/one", "/two"):
        app = create_app(prefix)
        p = Poster(app.test_client(), database, source)
        p.url = f"{prefix}/api/lead/create/{source.id}"
        assert assert_envelope(p.post(lead()), 201)["lead_status"] == "accept"
        assert p.get(lead()).status_code == 405


def test_init_app_needs_a_database() -> None:
    with pytest.raises(TypeError):
        PingtreeLeads().init_app(Flask("host"))


def test_keyword_options_win_over_app_config(database: Any) -> None:
    app = Flask("host")
    app.config["PINGTREE_LEADS_MAX_BODY_BYTES"] = 10
    app.config["PINGTREE_LEADS_ALLOW_GET"] = False
    bp = create_blueprint(database, max_body_bytes=20)
    app.register_blueprint(bp)
    settings = get_runtime(app).settings
    assert settings.max_body_bytes == 20  # keyword wins
    assert settings.allow_get is False  # config beats default
    assert settings.retry_after_seconds == 2  # default


def test_unknown_option_is_refused(database: Any) -> None:
    with pytest.raises(TypeError):
        create_blueprint(database, max_body_byte=1)
    with pytest.raises(ValueError):
        create_blueprint(database, max_body_bytes=0)


def test_custom_collection_names(database: Any) -> None:
    src = create_source(database, "Custom", sources_collection="srcs")
    app = Flask("host")
    app.register_blueprint(create_blueprint(database, sources_collection="srcs", leads_collection="my_leads"))
    p = Poster(app.test_client(), database, src)
    assert assert_envelope(p.post(lead()), 201)["lead_status"] == "accept"
    assert database["my_leads"].count_documents({}) == 1
    assert database["leads"].count_documents({}) == 0
