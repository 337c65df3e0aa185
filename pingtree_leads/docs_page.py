"""An interactive API docs page (Swagger UI) for the endpoint's OpenAPI document.

``create_docs_blueprint()`` returns a blueprint that serves, under its url_prefix:

* ``/``: a small HTML page rendering the OpenAPI document at ``spec_url`` with Swagger UI;
* ``/init.js``: the script starting Swagger UI (kept out of the HTML so the page's
  Content-Security-Policy can forbid inline scripts);
* ``/assets/<file>``: Swagger UI's own files, from the ``swagger-ui-bundle`` package.

Nothing is loaded from a CDN or any other host: the page works offline and its
Content-Security-Policy allows only its own origin (plus the origin of ``spec_url``
for fetching the document, if that is an absolute URL).

Example::

    from pingtree_leads.docs_page import create_docs_blueprint

    app.register_blueprint(create_docs_blueprint(), url_prefix="/docs")  # GET /docs/

The assets come from an optional dependency: ``pip install 'pingtree-leads[docs]'``.
Only this module imports it, and only when ``create_docs_blueprint`` is called.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from flask import Blueprint, Response, abort, send_from_directory, url_for
from markupsafe import escape

__all__ = ["ASSETS", "create_docs_blueprint"]

#: The only files of the Swagger UI package the blueprint serves (its index.html and
#: swagger-initializer.js point at the public Petstore demo, so they are left out).
ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", "favicon-16x16.png"})

# Started by /init.js; the spec URL is read from the page, so this text never changes.
_INIT_JS = """\
"use strict";
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-spec-url"),
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "BaseLayout",
    validatorUrl: null,
    queryConfigEnabled: false
  });
});
"""

_PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title}</title>
  <link rel="stylesheet" href="{css}">
  <link rel="icon" type="image/png" sizes="32x32" href="{icon32}">
  <link rel="icon" type="image/png" sizes="16x16" href="{icon16}">
</head>
<body>
  <noscript>This page needs JavaScript. The OpenAPI document itself is at <a href="{spec}">{spec}</a>.</noscript>
  <div id="swagger-ui" data-spec-url="{spec}"></div>
  <script src="{bundle}"></script>
  <script src="{init}"></script>
</body>
</html>
"""


def _content_security_policy(spec_url: str) -> str:
    connect = "'self'"
    parts = urlsplit(spec_url)
    if parts.scheme in ("http", "https") and parts.netloc:
        connect += f" {parts.scheme}://{parts.netloc}"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        f"font-src 'self'; connect-src {connect}; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
    )


def create_docs_blueprint(
    spec_url: str = "/api/lead/openapi.json",
    *,
    name: str = "pingtree_leads_docs",
    title: str = "Pingtree Create Lead API",
) -> Blueprint:
    """A blueprint serving a Swagger UI page for the OpenAPI document at ``spec_url``.

    Register it with a url_prefix, e.g. ``app.register_blueprint(create_docs_blueprint(),
    url_prefix="/docs")``: the page is then ``GET /docs/``. ``spec_url`` is where the
    browser fetches the document: the leads blueprint's ``openapi_route`` (default
    ``/api/lead/openapi.json``) under the prefix it is mounted at.

    Raises ``ImportError`` if the optional ``swagger-ui-bundle`` package is missing.
    """
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError as exc:
        raise ImportError(
            "The API docs page needs the swagger-ui-bundle package: pip install 'pingtree-leads[docs]'"
        ) from exc

    assets_dir = Path(str(swagger_ui_path))
    missing = sorted(f for f in ASSETS if not (assets_dir / f).is_file())
    if missing:
        raise ImportError(f"swagger-ui-bundle at {assets_dir} lacks {', '.join(missing)}: reinstall it")
    csp = _content_security_policy(spec_url)
    blueprint = Blueprint(name, __name__)

    @blueprint.get("/")
    def page() -> Response:
        html = _PAGE.format(
            title=escape(title),
            spec=escape(spec_url),
            css=escape(url_for(f"{name}.asset", filename="swagger-ui.css")),
            bundle=escape(url_for(f"{name}.asset", filename="swagger-ui-bundle.js")),
            icon32=escape(url_for(f"{name}.asset", filename="favicon-32x32.png")),
            icon16=escape(url_for(f"{name}.asset", filename="favicon-16x16.png")),
            init=escape(url_for(f"{name}.init_js")),
        )
        response = Response(html, mimetype="text/html")
        response.headers["Content-Security-Policy"] = csp
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @blueprint.get("/init.js")
    def init_js() -> Response:
        return Response(_INIT_JS, mimetype="text/javascript")

    @blueprint.get("/assets/<filename>")
    def asset(filename: str) -> Response:
        if filename not in ASSETS:
            abort(404)
        return send_from_directory(assets_dir, filename)

    return blueprint
