"""The example host app: demo source kept across restarts, a printed curl that works,
``flask --app examples.app pingtree-leads ...`` against the running example, a busy port said plainly."""

from __future__ import annotations

import json
import os
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from flask import Flask

from pingtree_leads import get_runtime

from .conftest import assert_envelope

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "app.py"
START_HINT = "start the example first (bash examples/quickstart.sh) or set MONGODB_URI"




def run_curl(client: Any, command: str) -> Any:
    """Replay the printed curl through the test client."""
    words = shlex.split(command.replace("\\\n", " "))
    url = next(w for w in words if w.startswith("http://"))
    headers = dict(words[i + 1].split(": ", 1) for i, w in enumerate(words) if w == "-H")
    body = words[words.index("-d") + 1]
    path = "/" + url.split("/", 3)[3]
    return client.post(path, data=body, headers=headers)


def test_printed_curl_accepts_then_duplicates(example: ModuleType, database: Any) -> None:
    app = example.create_app(database)
    source_id, api_key = example.ensure_demo_source(database, get_runtime(app))
    command = example.demo_curl(5000, source_id, api_key)
    client = app.test_client()
    assert assert_envelope(run_curl(client, command), 201)["lead_status"] == "accept"
    assert assert_envelope(run_curl(client, command), 201)["lead_status"] == "duplicate"
    assert client.get("/").status_code == 200


def test_demo_source_is_reused_after_a_restart(example: ModuleType, database: Any) -> None:
    first = example.ensure_demo_source(database, get_runtime(example.create_app(database)))
    again = example.ensure_demo_source(database, get_runtime(example.create_app(database)))
    assert first == again
    assert json.loads(example.DEMO_SOURCE_FILE.read_text())["id"] == first[0]
    # A new curl after the restart still gets a 201 accept: its email is new.
    app = example.create_app(database)
    response = run_curl(app.test_client(), example.demo_curl(5000, *again))
    assert assert_envelope(response, 201)["lead_status"] == "accept"


# -- the argument-less factory: `flask --app examples.app pingtree-leads ...` --------------------

def cli(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["pingtree-leads", *args])


def test_factory_without_arguments_uses_the_running_examples_server(example: ModuleType,
                                                                    secantus_uri: str) -> None:
    import click

    with pytest.raises(click.ClickException, match=r"start the example first \(bash examples/quickstart.sh\)"):
        example.create_app()
    name = f"ptl_example_{os.getpid()}_{time.monotonic_ns()}"
    with ExitStack() as stack:
        example.publish_server(secantus_uri, name, stack)  # what the running example does
        app = example.create_app()
        database = get_runtime(app).database
        stack.callback(database.client.close)  # last-in first-out: dropped, then closed
        stack.callback(database.client.drop_database, name)
        assert database.name == name
        created = cli(app, "create-source", "From the CLI", "--required", "email")
        assert created.exit_code == 0, created.output
        source_id = created.stdout.split()[1]
        listed = cli(app, "list-sources")
        assert source_id in listed.stdout and "From the CLI" in listed.stdout
        rotated = cli(app, "rotate-key", source_id)
        assert rotated.exit_code == 0 and rotated.stdout.startswith("api key: ptl_")
    # Stopped: the file is gone, and the factory says what to do again.
    assert not example.SERVER_FILE.exists()
    with pytest.raises(click.ClickException, match="start the example first"):
        example.create_app()


def test_a_file_left_by_a_killed_example_is_not_trusted(example: ModuleType) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    example.INSTANCE.mkdir(parents=True, exist_ok=True)
    example.SERVER_FILE.write_text(json.dumps({"uri": "mongodb://127.0.0.1:1", "database": "x",
                                               "pid": int(dead.stdout)}))
    assert example.running_server() is None
    with pytest.raises(Exception, match="start the example first"):
        example.create_app()


# -- the real processes ---------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def example_env(instance: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "PINGTREE_DB", "FLASK_APP")}
    return {**env, "PINGTREE_INSTANCE": str(instance), "PORT": str(port), "PYTHONUNBUFFERED": "1"}


def flask_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`flask --app examples.app pingtree-leads ...`, run from the repository root as the docs say."""
    return subprocess.run([sys.executable, "-m", "flask", "--app", "examples.app", "pingtree-leads", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


@contextmanager
def running_example(env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`python examples/app.py` until it printed its banner; stopped with Ctrl-C (SIGINT) at the end."""
    process = subprocess.Popen([sys.executable, str(EXAMPLE)], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while not any("Press Ctrl-C" in line for line in seen):
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, "".join(seen)
            seen.append(line)
        yield process, "".join(seen)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_flask_cli_works_against_the_running_example(tmp_path: Path) -> None:
    port = free_port()
    env = example_env(tmp_path / "instance", port)
    with running_example(env) as (process, banner):
        server_file = tmp_path / "instance" / "server.json"
        assert json.loads(server_file.read_text())["pid"] == process.pid
        demo_id = banner.split("Demo database source:")[1].split()[0]

        listed = flask_cli(env, "list-sources")
        assert listed.returncode == 0, listed.stderr
        assert demo_id in listed.stdout and "Demo source" in listed.stdout
        created = flask_cli(env, "create-source", "Partner feed", "--required", "email")
        assert created.returncode == 0, created.stderr
        assert "Partner feed" in flask_cli(env, "list-sources").stdout
        rotated = flask_cli(env, "rotate-key", created.stdout.split()[1])
        assert rotated.returncode == 0, rotated.stderr
        new_key = rotated.stdout.split("api key:")[1].strip()
        # The running example accepts the key the CLI just issued: one database.
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/lead/create/{created.stdout.split()[1]}",
            data=json.dumps({"email": "cli.check@example.com"}).encode(), method="POST",
            headers={"Authorization": f"Bearer {new_key}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201

        # A second example on the same instance is refused in one line (the files are in use).
        second = subprocess.run([sys.executable, str(EXAMPLE)], cwd=ROOT, env={**env, "PORT": str(free_port())},
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and "already running" in second.stderr
        assert "Traceback" not in second.stderr + second.stdout
    assert process.returncode == 0
    assert not server_file.exists()
    # Stopped: the CLI says what to do, without a traceback.
    stopped = flask_cli(env, "list-sources")
    assert stopped.returncode == 1
    assert START_HINT in stopped.stderr and "Traceback" not in stopped.stderr


def test_a_busy_port_says_how_to_pick_another(tmp_path: Path) -> None:
    with socket.socket() as occupant:
        occupant.bind(("127.0.0.1", 0))
        occupant.listen()
        port = occupant.getsockname()[1]
        result = subprocess.run([sys.executable, str(EXAMPLE)], cwd=ROOT, env=example_env(tmp_path / "i", port),
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use by another program" in result.stderr
    assert f"PORT={port + 1} bash examples/quickstart.sh" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "i").exists()  # checked before the database started


def test_port_checks(example: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    import click

    for bad in ("abc", "0", "70000"):
        monkeypatch.setenv("PORT", bad)
        with pytest.raises(click.ClickException, match="PORT must be a number from 1 to 65535"):
            example.port_from_environment()
    monkeypatch.delenv("PORT")
    assert example.port_from_environment() == 5000
    with socket.socket() as occupant:
        occupant.bind(("127.0.0.1", 0))
        occupant.listen()
        port = occupant.getsockname()[1]
        with pytest.raises(click.ClickException, match=f"PORT={port + 1} bash examples/quickstart.sh"):
            example.check_port_free(port)
    example.check_port_free(port)  # free again


def test_the_example_shows_a_validator_and_a_signal_receiver(
    example: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    import mongomock

    database = mongomock.MongoClient()["example_hooks"]
    app = example.create_app(database)
    source_id, api_key = example.ensure_demo_source(database, get_runtime(app))
    client = app.test_client()
    headers = {"Authorization": f"Bearer {api_key}"}
    refused = client.post(f"/api/lead/create/{source_id}", headers=headers,
                          json={"first_name": "Ann", "email": "do-not-contact@example.com"})
    assert assert_envelope(refused, 400)["errors"] == {"email": ["On the suppression list."]}
    with caplog.at_level(logging.INFO):
        accepted = client.post(f"/api/lead/create/{source_id}", headers=headers,
                               json={"first_name": "Ann", "email": "ann@example.com"})
    lead_id = assert_envelope(accepted, 201)["lead_id"]
    assert any(lead_id in r.getMessage() and "route it to the buyers" in r.getMessage() for r in caplog.records)
