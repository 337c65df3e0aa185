"""``PingtreeLeads``: the Flask-extension way to mount the endpoint (app-factory friendly)."""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import Flask
from pymongo.database import Database

from .blueprint import LeadsBlueprint, LeadsRuntime, create_blueprint
from .settings import CONFIG_PREFIX, Settings

EXTENSION_KEY = "pingtree_leads"


class PingtreeLeads:
    """Mounts the create-lead blueprint on one or more apps.

    ``PingtreeLeads(app, database=db)`` or, with an app factory,
    ``leads = PingtreeLeads()`` then ``leads.init_app(app, database=db)``.
    Keyword options given here are defaults for every ``init_app``.
    """

    def __init__(self, app: Flask | None = None, *, database: Database | None = None, **options: Any) -> None:
        self.database = database
        self.options = options
        if app is not None:
            self.init_app(app)

    def init_app(
        self, app: Flask, *, database: Database | None = None, url_prefix: str | None = None, **options: Any
    ) -> LeadsRuntime:
        """Register the blueprint and its JSON errors on ``app``; refuses a second call."""
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError("pingtree_leads is already initialised on this app")
        database = database if database is not None else self.database
        if database is None:
            raise TypeError("init_app needs database= (a pymongo Database)")
        options = {**self.options, **options}
        for field in dataclasses.fields(Settings):
            if field.name != "clock":  # a callable, not configuration
                app.config.setdefault(CONFIG_PREFIX + field.name.upper(), options.get(field.name, field.default))
        blueprint: LeadsBlueprint = create_blueprint(database, **options)
        app.register_blueprint(blueprint, url_prefix=url_prefix)
        runtime = blueprint.runtime(app)
        app.extensions[EXTENSION_KEY] = runtime
        return runtime
