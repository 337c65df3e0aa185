"""docs/host-quickstart.md, run as written: a host project's factory, env config, tests, gunicorn.

The page's blocks become a project in a temporary directory: ``myapp/__init__.py`` (the
factory), ``conftest.py`` and ``test_leads.py`` (the plugin's fixtures); its ``sh``
blocks are run with their ``export``s, against SecantusDB for the CLI and gunicorn.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pymongo
import pytest

from .conftest import lead

PAGE = Path(__file__).resolve().parent.parent / "docs" / "host-quickstart.md"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.DOTALL)


def exports() -> dict[str, str]:
    """The ``export NAME=value`` lines of the page's sh blocks."""
    found = {}
    for block in blocks("sh"):
        for line in block.splitlines():
            if line.startswith("export "):
                name, value = shlex.split(line.split("#", 1)[0])[1].split("=", 1)
                found[name] = value
    return found


@pytest.fixture
def project(tmp_path: Path) -> Path:
    factory, conftest, test = blocks("python")
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text(factory)
    (tmp_path / "conftest.py").write_text(conftest)
    (tmp_path / "test_leads.py").write_text(test)
    return tmp_path


def env(project: Path, **extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "PINGTREE_LEADS_"))}
    return {**clean, "PYTHONPATH": str(project), **exports(), **extra}


def test_the_page_has_the_blocks_this_test_runs() -> None:
    assert len(blocks("python")) == 3 and len(blocks("sh")) == 4
    assert exports()["FLASK_PINGTREE_LEADS_ALLOW_GET"] == "false"


@pytest.mark.parametrize("backend", ["mongomock", "secantus"])
def test_the_hosts_tests_pass_with_the_plugin(project: Path, backend: str, request: pytest.FixtureRequest) -> None:
    extra = {}
    if backend == "secantus":
        extra["PINGTREE_TEST_MONGODB_URI"] = request.getfixturevalue("secantus_uri")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)],
                          cwd=project, env=env(project, **extra), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_provisioning_and_gunicorn_as_the_page_says(project: Path, secantus_uri: str) -> None:
    if importlib.util.find_spec("gunicorn") is None:
        if os.environ.get("CI"):
            pytest.fail("gunicorn is not installed (the test extra has it)")
        pytest.skip("gunicorn is not installed")
    _, _, provision, serve = blocks("sh")
    database = f"host_quickstart_{os.getpid()}"
    run_env = env(project, MONGODB_URI=secantus_uri, LEADS_DB=database)
    command = [line for line in provision.splitlines() if line.startswith("flask ")][0]
    for line in provision.splitlines():
        if line.startswith("export "):
            name, value = shlex.split(line)[1].split("=", 1)
            run_env[name] = value
    words = shlex.split(command)
    words[0] = str(Path(sys.executable).parent / words[0])  # this venv's flask
    created = subprocess.run(words, cwd=project, env=run_env, capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stdout + created.stderr
    source_id = re.search(r"^id:\s+(\w+)$", created.stdout, re.MULTILINE).group(1)  # type: ignore[union-attr]
    key = re.search(r"^api key:\s+(\S+)$", created.stdout, re.MULTILINE).group(1)  # type: ignore[union-attr]

    # The page's gunicorn command, on a free local port and one worker (this machine has two cores).
    words = shlex.split(serve.replace("\\\n", " "))
    assert words[0].startswith("MONGODB_URI=") and words[1] == "gunicorn"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = words[1:]
    args[args.index("-b") + 1] = f"127.0.0.1:{port}"
    args[args.index("-w") + 1] = "1"
    log = project / "gunicorn.log"
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", *args], cwd=project, env=run_env, stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/api/lead/create/{source_id}"
        answer = _post(url, key, lead(), deadline=time.monotonic() + 60)
        assert answer[0] == 201 and answer[1]["data"]["lead_status"] == "accept", answer
        assert _status(f"{url}?email=a@example.com", key) == 405  # FLASK_PINGTREE_LEADS_ALLOW_GET=false
    finally:
        server.terminate()
        server.wait(timeout=30)
        with pymongo.MongoClient(secantus_uri) as client:
            client.drop_database(database)


def _post(url: str, key: str, body: dict[str, Any], deadline: float) -> tuple[int, Any]:
    data = json.dumps(body).encode()
    while True:
        request = urllib.request.Request(url, data=data, method="POST", headers={
            "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)  # gunicorn is still starting


def _status(url: str, key: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
