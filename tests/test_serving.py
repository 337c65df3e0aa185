"""Serving the example: its embedded database's configuration, the growth script, gunicorn workers.

The timings themselves are in docs/performance.md; these tests guard the configuration
the figures depend on, and that both scripts keep working (on tiny runs, no timing
asserted).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from .conftest import assert_envelope, load_benchmark

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "app.py"
BENCHMARKS = ROOT / "benchmarks"




def test_the_embedded_server_is_standalone_and_durable(example: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replica-set mode pays an oplog cost growing with every write; the journal stays on."""
    import secantus

    assert example.EMBEDDED_SERVER_OPTIONS == {"replica_set_name": None, "durable": True, "sync_on_commit": True}
    calls: list[dict[str, Any]] = []

    class Recording(secantus.SecantusDBServer):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            calls.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(secantus, "SecantusDBServer", Recording)
    # The tests' own fast mode must not turn the example's journal off.
    monkeypatch.setenv("SECANTUS_TEST_FAST_STORAGE", "1")
    with ExitStack() as stack:
        database = example.open_database(stack)
        hello = database.client.admin.command("hello")
        assert "setName" not in hello, hello  # standalone, as drivers see it
        assert database.client.topology_description.topology_type_name == "Single"
    [kwargs] = calls
    assert kwargs["replica_set_name"] is None and kwargs["durable"] is True and kwargs["sync_on_commit"] is True
    assert kwargs["storage_path"] == str(example.DATA_DIR)


def load_script(name: str) -> ModuleType:
    return load_benchmark(name, f"pingtree_serving_{name}")


def test_accepted_leads_survive_a_killed_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 right after the 201s: every accepted lead is there after a restart (sync_on_commit).

    With ``durable=True`` alone, measured, such a kill lost from 1 to all 30 of them.
    """
    growth = load_script("bench_example_growth")
    for name in ("MONGODB_URI", "PINGTREE_DB", "FLASK_APP"):
        monkeypatch.delenv(name, raising=False)
    instance = tmp_path / "instance"
    first = growth.Example(instance, growth.free_port())
    try:
        poster = growth.Poster(first.port, first.source_id, first.api_key)
        try:
            for n in range(30):
                elapsed, status, answer = poster.post(growth.lead_body(n))
                assert status == 201 and answer["data"]["lead_status"] == "accept", answer
        finally:
            poster.close()
    finally:
        first.process.kill()  # SIGKILL: no clean stop, no checkpoint
        first.process.wait()
    again = growth.Example(instance, growth.free_port())  # server.json names a dead pid: not trusted
    try:
        assert again.source_id == first.source_id
        assert growth.stored_leads(again.db_uri, again.db_name) == 30
    finally:
        assert again.stop() == 0


def run_script(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "PINGTREE_DB", "FLASK_APP")}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_growth_script_posts_to_the_running_example() -> None:
    """benchmarks/bench_example_growth.py on 50 leads: the real example, its dev server, standalone."""
    result = run_script(str(BENCHMARKS / "bench_example_growth.py"), "--leads", "50", "--window", "10", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["server"] == {"setName": None, "standalone": True}
    assert report["leads"] == report["stored"] == 50
    assert report["window"] == 10 and len(report["tenths_median_ms"]) == 10
    assert report["ratio"] == pytest.approx(report["last_median_ms"] / report["first_median_ms"], rel=0.01)
    assert "last/first =" in result.stderr and "standalone" in result.stderr
    assert {"other_cores_first", "other_cores_last"} <= set(report)


# -- examples/wsgi.py ---------------------------------------------------------------------------

def load_wsgi() -> ModuleType:
    import examples.wsgi

    return examples.wsgi


def test_wsgi_factory_makes_its_own_client_on_mongodb_uri(secantus_uri: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from pingtree_leads import create_source, get_runtime

    wsgi = load_wsgi()
    monkeypatch.delenv("MONGODB_URI", raising=False)
    with pytest.raises(RuntimeError, match="MONGODB_URI is not set"):
        wsgi.create_app()
    name = f"ptl_wsgi_{os.getpid()}"
    monkeypatch.setenv("MONGODB_URI", secantus_uri)
    monkeypatch.setenv("PINGTREE_DB", name)
    app = wsgi.create_app()
    database = get_runtime(app).database
    try:
        assert database.name == name
        assert database.client.options.server_selection_timeout == 5.0
        assert database.client.options.timeout == 10.0
        source = create_source(database, "wsgi", required_fields=["email"])
        client = app.test_client()
        assert client.get("/").status_code == 200
        response = client.post(f"/api/lead/create/{source.id}", json={"email": "wsgi@example.com"},
                               headers={"Authorization": f"Bearer {source.api_key}"})
        assert assert_envelope(response, 201)["lead_status"] == "accept"
    finally:
        database.client.drop_database(name)
        database.client.close()


def test_wsgi_client_options_leave_what_the_uri_sets() -> None:
    wsgi = load_wsgi()
    assert wsgi.client_options("mongodb://h/") == wsgi.CLIENT_DEFAULTS
    options = wsgi.client_options("mongodb://h/?w=majority&serverselectiontimeoutms=900&appName=x")
    assert options == {"timeoutMS": 10_000}


def test_gunicorn_serves_the_example_and_stores_every_accepted_post() -> None:
    """benchmarks/bench_http.py, tiny: SecantusDB in its own process, gunicorn with 1 worker."""
    if importlib.util.find_spec("gunicorn") is None:
        reason = "gunicorn is not installed (pip install -e '.[examples]')"
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI is set, so this is a failure, not a skip)")
        pytest.skip(reason)
    result = run_script(str(BENCHMARKS / "bench_http.py"), "--workers", "1", "--requests", "60", "--warmup", "5",
                        "--concurrency", "4", "--threads", "4", "--duration", "60", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["database"].startswith("SecantusDB standalone, own process")
    [run] = report["results"]
    assert run["workers"] == 1 and run["requests"] == 60 and run["errors"] == 0
    assert run["accepted"] == run["stored"] == 65 and run["stored_ok"]
    assert run["fork_warnings"] == 0  # the client is made in the worker, after the fork
    assert 0 < run["p50_ms"] <= run["p99_ms"]
