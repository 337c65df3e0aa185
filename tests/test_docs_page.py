"""The interactive API docs page (Swagger UI from the swagger-ui-bundle package, no CDN).

Flask test-client tests check the page and its assets; a browser test runs the
example app in a real HTTP server and loads ``/docs/`` in Debian's headless
Chromium, checks the rendered DOM shows the endpoint and takes a screenshot
(kept in pytest's tmp dir; also copied to ``tests/artifacts/docs-page.png`` when
``PINGTREE_SAVE_SCREENSHOT`` is set).  Without ``/usr/bin/chromium`` the browser
test is skipped, unless ``CI`` is set: then it fails.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urljoin

import mongomock
import pytest
from flask import Flask
from werkzeug.serving import make_server

from pingtree_leads import create_blueprint
from pingtree_leads.docs_page import create_docs_blueprint

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "app.py"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
SPEC_URL = "/api/lead/openapi.json"
ENDPOINT_PATH = "/api/lead/create/{db_source_id}"
CHROMIUM_TIMEOUT = 120  # seconds, per browser run
ASSET_URL = re.compile(r'(?:src|href)="([^"]+)"')
CONTENT_TYPES = {".css": "text/css", ".js": "javascript", ".png": "image/png"}


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """examples/app.py, imported like tests/test_example_app.py does."""
    spec = importlib.util.spec_from_file_location("pingtree_example_app_docs", EXAMPLE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def example_app(example: ModuleType) -> Flask:
    app: Flask = example.create_app(mongomock.MongoClient()["x"])
    return app


def local_urls(html: str) -> list[str]:
    return ASSET_URL.findall(html)


# --- the page through the Flask test client ------------------------------------------------------


def test_page_is_html_pointing_at_the_spec(example_app: Flask) -> None:
    client = example_app.test_client()
    response = client.get("/docs/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert f'data-spec-url="{SPEC_URL}"' in html
    assert "<script>" not in html  # no inline script: the CSP below forbids it
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert client.get("/docs").status_code == 308  # the slash-less URL redirects to the page
    spec = client.get(SPEC_URL)
    assert spec.status_code == 200 and spec.mimetype == "application/json"
    assert ENDPOINT_PATH in spec.get_json()["paths"]


def test_page_references_only_local_assets_that_exist(example_app: Flask) -> None:
    client = example_app.test_client()
    html = client.get("/docs/").get_data(as_text=True)
    assert "http://" not in html and "https://" not in html and "//" not in html.replace("<!DOCTYPE", "")
    urls = local_urls(html)
    assert {Path(u).suffix for u in urls} >= {".css", ".js", ".png"}
    for url in urls:
        absolute = urljoin("/docs/", url)
        if absolute == SPEC_URL:  # the <noscript> link to the document
            continue
        assert absolute.startswith("/docs/"), url
        response = client.get(absolute)
        assert response.status_code == 200, absolute
        assert CONTENT_TYPES[Path(absolute).suffix] in response.content_type, (absolute, response.content_type)
        assert len(response.get_data()) > 0


def test_init_script_disables_the_validator_and_reads_the_spec_url_from_the_page(example_app: Flask) -> None:
    response = example_app.test_client().get("/docs/init.js")
    assert response.status_code == 200 and "javascript" in response.content_type
    script = response.get_data(as_text=True)
    assert "validatorUrl: null" in script
    assert 'getAttribute("data-spec-url")' in script
    assert "http" not in script


def test_only_the_needed_package_files_are_served(example_app: Flask) -> None:
    client = example_app.test_client()
    # The package's own index.html and initializer point at the public Petstore demo.
    for name in ("index.html", "swagger-initializer.js", "../__init__.py", "swagger-ui.js.map"):
        assert client.get(f"/docs/assets/{name}").status_code == 404, name


def test_custom_mount_and_spec_url() -> None:
    database = mongomock.MongoClient()["x"]
    app = Flask("host")
    app.register_blueprint(create_blueprint(database), url_prefix="/v1")
    app.register_blueprint(create_docs_blueprint("/v1/api/lead/openapi.json", name="api_docs"),
                           url_prefix="/reference")
    client = app.test_client()
    html = client.get("/reference/").get_data(as_text=True)
    assert 'data-spec-url="/v1/api/lead/openapi.json"' in html
    assert '<script src="/reference/assets/swagger-ui-bundle.js">' in html
    assert client.get("/reference/assets/swagger-ui.css").status_code == 200
    spec = client.get("/v1/api/lead/openapi.json").get_json()
    assert "/v1" + ENDPOINT_PATH in spec["paths"]


def test_spec_url_is_escaped_and_its_origin_allowed() -> None:
    app = Flask("host")
    app.register_blueprint(create_docs_blueprint('https://api.example.com/spec.json?a=1&b="x"'), url_prefix="/docs")
    response = app.test_client().get("/docs/")
    html = response.get_data(as_text=True)
    assert 'data-spec-url="https://api.example.com/spec.json?a=1&amp;b=&#34;x&#34;"' in html
    assert "connect-src 'self' https://api.example.com;" in response.headers["Content-Security-Policy"]


def test_missing_package_gives_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "swagger_ui_bundle", None)  # makes the import fail
    with pytest.raises(ImportError, match=re.escape("pip install 'pingtree-leads[docs]'")):
        create_docs_blueprint()


def test_the_library_does_not_import_the_docs_package() -> None:
    code = (
        "import sys, pingtree_leads\n"
        "assert 'swagger_ui_bundle' not in sys.modules, 'swagger_ui_bundle imported'\n"
        "assert 'pingtree_leads.docs_page' not in sys.modules, 'docs_page imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr


# --- the page in a real browser ------------------------------------------------------------------


@dataclass
class LiveServer:
    url: str
    paths: list[str] = field(default_factory=list)


@pytest.fixture
def live_example(example_app: Flask) -> Iterator[LiveServer]:
    """The example app in a real HTTP server on 127.0.0.1, recording the paths it was asked for."""
    inner = example_app.wsgi_app
    paths: list[str] = []

    def recording(environ: dict[str, Any], start_response: Any) -> Any:
        paths.append(environ.get("PATH_INFO", ""))
        return inner(environ, start_response)

    example_app.wsgi_app = recording  # type: ignore[method-assign]
    server = make_server("127.0.0.1", 0, example_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="docs-page-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(f"http://127.0.0.1:{server.server_port}", paths)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def chromium() -> Path:
    if not os.access(CHROMIUM, os.X_OK):
        reason = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) to run the browser test"
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI is set, so this is a failure, not a skip)")
        pytest.skip(reason)
    return CHROMIUM


def run_chromium(chromium: Path, tmp_path: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """One headless Chromium run with a fresh profile; its whole process group is killed on timeout."""
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path))
    command = [
        str(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--no-proxy-server", "--hide-scrollbars",
        f"--user-data-dir={profile}", "--virtual-time-budget=10000", *extra, url,
    ]
    env = {**os.environ, "HOME": str(profile)}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=tmp_path, env=env, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=CHROMIUM_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"chromium did not finish within {CHROMIUM_TIMEOUT}s: {' '.join(command)}")
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # helpers chromium may have left behind
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_docs_page_renders_the_endpoint_in_chromium(
    live_example: LiveServer, example_app: Flask, chromium: Path, tmp_path: Path
) -> None:
    page = f"{live_example.url}/docs/"

    dom_run = run_chromium(chromium, tmp_path, page, "--dump-dom")
    dom = dom_run.stdout
    context = f"chromium exit {dom_run.returncode}\nDOM:\n{dom[:3000]}\nstderr:\n{dom_run.stderr[-3000:]}"
    assert dom_run.returncode == 0, context
    # Rendered by Swagger UI from the document, not text of the page itself.
    assert 'class="swagger-ui' in dom, context
    assert ENDPOINT_PATH in dom, context
    assert "createLead" in dom and "Create a lead" in dom, context
    assert not re.search(r'(?:src|href)="(?:https?:)?//', dom), context  # nothing loaded from another host
    assert "validator.swagger.io" not in dom, context
    # The browser really fetched the assets and the document from this server.
    for path in ("/docs/", "/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css", "/docs/init.js",
                 SPEC_URL):
        assert path in live_example.paths, (path, live_example.paths)

    # Swagger UI's deep link (#/<tag>/<operationId>) opens the operation: its parameters,
    # request body example and responses are rendered from the document too.
    operation = example_app.test_client().get(SPEC_URL).get_json()["paths"][ENDPOINT_PATH]["post"]
    opened = f"{page}#/{operation.get('tags', ['default'])[0]}/{operation['operationId']}"
    open_run = run_chromium(chromium, tmp_path, opened, "--dump-dom")
    context = f"chromium exit {open_run.returncode}\nstderr:\n{open_run.stderr[-3000:]}"
    for text in ("db_source_id", "Request body", "Try it out", "Lead accepted", "missingField"):
        assert text in open_run.stdout, (text, context)

    shot = tmp_path / "docs-page.png"
    shot_run = run_chromium(chromium, tmp_path, opened, f"--screenshot={shot}", "--window-size=1280,1600")
    assert shot_run.returncode == 0 and shot.is_file(), shot_run.stderr[-3000:]
    data = shot.read_bytes()
    assert png_size(data) == (1280, 1600)
    # A blank 1280x1600 page compresses to a few kB; the rendered docs are far larger.
    assert len(data) > 20_000, len(data)
    if os.environ.get("PINGTREE_SAVE_SCREENSHOT"):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, ARTIFACTS / "docs-page.png")
