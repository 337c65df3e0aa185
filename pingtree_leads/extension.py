"""``PingtreeLeads``: the Flask-extension way to mount the endpoint (app-factory friendly)."""

from __future__ import annotations

from typing import Any

from flask import Flask
from pymongo.database import Database

from .blueprint import DEFAULT_NAME, create_blueprint
from .runtime import LeadsRuntime, app_runtimes, get_runtime
from .validators import LeadValidator, LeadValidators


class PingtreeLeads:
    """Mounts the create-lead blueprint on one or more apps.

    ``PingtreeLeads(app, database=db)`` or, with an app factory,
    ``leads = PingtreeLeads()`` then ``leads.init_app(app, database=db)``.
    Keyword options given here are defaults for every ``init_app``.
    """

    def __init__(self, app: Flask | None = None, *, database: Database[Any] | None = None, **options: Any) -> None:
        self.database = database
        self.options = options
        #: Host validators, run by every app this extension mounts the endpoint on.
        self.validators = LeadValidators()
        if app is not None:
            self.init_app(app)

    def lead_validator(self, validator: LeadValidator) -> LeadValidator:
        """Decorator: a host rule run after the built-in ones, before storage.

        ``validator(lead, source)`` returns ``{field: [messages]}`` to refuse the lead
        (400 invalidField), or None / {} to carry on (validators.py).
        """
        return self.validators.register(validator)

    def init_app(
        self,
        app: Flask,
        *,
        database: Database[Any] | None = None,
        url_prefix: str | None = None,
        name: str = DEFAULT_NAME,
        **options: Any,
    ) -> LeadsRuntime:
        """Register the blueprint (routes, JSON errors, CLI) on ``app`` and return its runtime.

        Refuses a second call for the same ``name``.  Afterwards ``app.config`` shows the
        settings in force as ``PINGTREE_LEADS_*`` keys, and
        ``app.extensions["pingtree_leads"][name]`` is the runtime.
        """
        if name in app_runtimes(app):
            raise RuntimeError(f"pingtree_leads is already initialised on this app as {name!r} "
                               "(pass name= to mount it a second time)")
        database = database if database is not None else self.database
        if database is None:
            raise TypeError("init_app needs database= (a pymongo Database)")
        options = {**self.options, **options}
        blueprint = create_blueprint(database, name=name, validators=self.validators, **options)
        app.register_blueprint(blueprint, url_prefix=url_prefix)
        runtime = get_runtime(app, name)
        if name == DEFAULT_NAME:  # the config shows one mount's settings: the default one's
            app.config.update(runtime.settings.as_config())
        return runtime
