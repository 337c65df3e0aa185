"""The example host app: demo source kept across restarts, a printed curl that works."""

from __future__ import annotations

import importlib.util
import json
import shlex
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pingtree_leads import get_runtime

from .conftest import assert_envelope

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "app.py"


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("pingtree_example_app", EXAMPLE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "INSTANCE", tmp_path)
    monkeypatch.setattr(module, "DEMO_SOURCE_FILE", tmp_path / "demo_source.json")
    return module


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
