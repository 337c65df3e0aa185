"""The benchmark script runs end to end and reports what it says it reports (no timing asserted)."""

from __future__ import annotations

import json
import math
import os
from types import ModuleType
from typing import Any

import pytest
from bson import ObjectId

from pingtree_leads.repository import LEAD_INDEXES
from pingtree_leads.settings import Settings
from pingtree_leads.sources import SourceConfig

from .conftest import load_benchmark as load_script


def load_benchmark(name: str = "bench_create_lead") -> ModuleType:
    return load_script(name)


@pytest.mark.parametrize(("fill", "server"), [("single", "process"), ("bulk", "in-process")])
def test_small_run_reports_every_path_size_ratio_and_target(fill: str, server: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_benchmark()
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    # Every request's status and lead_status is checked inside the script (it raises otherwise).
    assert bench.main(["--sizes", "60,120", "--requests", "100", "--fill", fill, "--server", server, "--json"]) == 0
    out, err = capsys.readouterr()
    result: dict[str, Any] = json.loads(out)
    assert result["fill"] == fill and result["server"] == server
    if affinity is not None:  # pinning (the default) is undone when the run ends
        assert os.sched_getaffinity(0) == affinity
    if not os.environ.get("MONGODB_URI"):
        assert ("own process" in result["backend"]) == (server == "process")
        can_pin = affinity is not None and len(affinity) >= 2
        assert result["pinned"] == (server == "process" and can_pin)
        # The server's own memory is reported when it runs apart (and only then).
        assert all((entry["server_rss_mb"] is not None) == (server == "process") for entry in result["sizes"])
    assert [entry["size"] for entry in result["sizes"]] == [60, 120]
    assert [entry["fill"]["leads_added"] for entry in result["sizes"]] == [60, 60]
    assert all(entry["fill"]["mode"] == fill for entry in result["sizes"])
    for entry in result["sizes"]:
        paths = entry["paths"]
        assert set(paths) == set(bench.PATHS)
        for name, row in paths.items():
            assert row["requests"] == 100 and row["rounds"] == 1
            assert 0 < row["p50_us"] <= row["p99_us"] and row["rps"] > 0
            if name != "floor":
                assert math.isclose(row["rps_ratio"], row["rps"] / paths["floor"]["rps"])
            if name not in ("floor", "floor_rules"):
                assert math.isclose(row["rps_ratio_rules"], row["rps"] / paths["floor_rules"]["rps"])
    growth = result["p50_growth"]["accept"]
    assert math.isclose(growth, result["sizes"][1]["paths"]["accept"]["p50_us"]
                        / result["sizes"][0]["paths"]["accept"]["p50_us"])
    assert [check["key"] for check in result["checks"]] == [
        "accept_vs_floor_rules", "duplicate_vs_accept", "accept_p50_growth", "memory_flat"]
    assert set(result["floor_rules"]["indexes"]) == set(LEAD_INDEXES)
    # The human-readable table goes to stderr with --json, one line per target.
    assert err.count("PASS ") + err.count("FAIL ") == 4
    assert "floor_rules" in err and f"{fill}-write fill" in err


def test_median_of_rounds_is_the_throughput() -> None:
    bench = load_benchmark()
    row = bench.summarize([1000, 3000, 2000, 2000], [(2, 4000), (1, 2000), (1, 2000)])
    assert row["rps"] == 500_000 and row["rounds"] == 3 and row["p50_us"] == 2.0


@pytest.mark.parametrize("fill", ["single", "bulk"])
def test_stored_counts_stay_at_the_size(fill: str) -> None:
    """What a round stores for the default source is deleted after it, so every size is measured
    at its own count; the capped and the listed source keep their leads, as production does."""
    bench = load_benchmark()
    with bench.open_database() as (db, _backend, _pid):
        runner = bench.Bench(db)
        assert runner.fill(150, fill) == 150
        runner.rounds(120)
        leads = db[Settings.leads_collection]
        assert leads.count_documents({"source_id": runner.source_id}) == 150
        others = [{"$match": {"source_id": {"$ne": runner.source_id}}},
                  {"$group": {"_id": "$source_id", "n": {"$sum": 1}}}]
        by_source = {doc["_id"]: doc["n"] for doc in leads.aggregate(others)}
        assert sorted(by_source.values()) == [120, 120]  # the capped source's and the listed source's
        for floor in runner.floors.values():
            assert floor.count_documents({}) == 150
        assert all(len(runner.latencies[path]) == 120 for path in bench.PATHS)
        assert all(sum(n for n, _ns in runner.round_ns[path]) == 120 for path in bench.PATHS)


def test_a_new_capped_source_takes_over_before_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """The capped source keeps its leads, so the script moves to a fresh one before its cap
    is reached: every capped post stays an ``accept`` (the script raises on any other answer)."""
    bench = load_benchmark()
    monkeypatch.setattr(bench, "MAX_CAP_LEADS", 120)
    with bench.open_database() as (db, _backend, _pid):
        runner = bench.Bench(db)
        runner.fill(30, "single")
        first = runner.capped_url
        runner.rounds(150)  # rounds of 100 and 50: the second would pass the cap of 120
        assert runner.capped_url != first and runner.capped_stored == 50
        assert len(runner.latencies["accept_capped"]) == 150


def _index_shapes(info: dict[str, Any], names: Any) -> dict[str, Any]:
    return {name: ([tuple(k) for k in info[name]["key"]],
                   {opt: value for opt, value in info[name].items() if opt not in ("key", "v", "ns")})
            for name in names}


def test_floor_rules_has_the_library_indexes_and_index_fields() -> None:
    """floor_rules pays for exactly the library's unique rules, with the library's values in them."""
    bench = load_benchmark()
    with bench.open_database() as (db, _backend, _pid):
        runner = bench.Bench(db)
        runner.fill(40, "single")
        runner.rounds(20)
        info = runner.floors["floor_rules"].index_information()
        assert set(info) == {"_id_", *LEAD_INDEXES}
        for name, (keys, options) in LEAD_INDEXES.items():
            assert [tuple(k) for k in info[name]["key"]] == [tuple(k) for k in keys], name
            for option, value in options.items():
                assert (bool(info[name].get(option)) if isinstance(value, bool) else info[name].get(option)) == value
        # The same shapes the library created on its own collection.
        leads = db[Settings.leads_collection]
        assert _index_shapes(info, LEAD_INDEXES) == _index_shapes(leads.index_information(), LEAD_INDEXES)
        # Every top-level field an index key covers holds the same values in both collections.
        covered = {key.split(".", 1)[0] for keys, _options in LEAD_INDEXES.values() for key, _direction in keys}
        for field in covered:
            ours = sorted(repr(doc.get(field)) for doc in runner.floors["floor_rules"].find({}, {field: 1}))
            theirs = sorted(repr(doc.get(field)) for doc in leads.find({"source_id": runner.source_id}, {field: 1}))
            assert ours == theirs, field


def test_floor_rules_refuses_a_layout_it_cannot_follow(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load_benchmark()
    monkeypatch.setattr(bench, "LEAD_INDEXES", {
        **LEAD_INDEXES, "new_rule": ([("source_id", 1), ("not_in_the_document", 1)], {"unique": True})})
    source = SourceConfig.from_document({"_id": ObjectId(), "name": "b", "dedupe_fields": ["email", "mobile"]})
    with pytest.raises(RuntimeError, match="not_in_the_document"):
        bench.RulesFloor(source)


def test_index_layouts_small_run(capsys: pytest.CaptureFixture[str]) -> None:
    layouts = load_benchmark("bench_index_layouts")
    # The script itself raises if the duplicate it measures is stored.
    assert layouts.main(["--requests", "100", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    rows = result["layouts"]
    assert set(rows) == {*layouts.LAYOUTS, "library_duplicate"}
    assert all(row["inserts"] == 100 for row in rows.values())
    assert math.isclose(rows["floor"]["mean_vs_floor"], 1.0)


def test_load_lead_comparison_small_run(capsys: pytest.CaptureFixture[str]) -> None:
    # The script asserts that both loaders give the same lead before it times them.
    medians = load_benchmark("bench_load_lead").main(["--rounds", "2", "--number", "5"])
    assert set(medians) == {"load_lead", "Schema.load"} and all(v > 0 for v in medians.values())
    assert "load_lead / Schema.load" in capsys.readouterr().out


def test_python_cost_small_run(capsys: pytest.CaptureFixture[str]) -> None:
    from pymongo.collection import Collection

    real = Collection.insert_one
    result = load_benchmark("bench_python_cost").measure(rounds=2, requests=5)
    assert Collection.insert_one is real  # the stub is undone
    assert set(result) == {"floor_rules_us", "accept_us", "reject_us", "library_us"}
    assert all(value > 0 for key, value in result.items() if key != "library_us")
    assert math.isclose(result["library_us"], result["accept_us"] - result["floor_rules_us"])
