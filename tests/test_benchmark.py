"""The benchmark script runs end to end and reports what it says it reports (no timing asserted)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pingtree_leads.settings import Settings

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_benchmark(name: str = "bench_create_lead") -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_small_run_reports_every_path_size_ratio_and_target(capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_benchmark()
    # Every request's status and lead_status is checked inside the script (it raises otherwise).
    assert bench.main(["--sizes", "60,120", "--requests", "100", "--json"]) == 0
    out, err = capsys.readouterr()
    result: dict[str, Any] = json.loads(out)
    assert [entry["size"] for entry in result["sizes"]] == [60, 120]
    for entry in result["sizes"]:
        paths = entry["paths"]
        assert set(paths) == set(bench.PATHS)
        for name, row in paths.items():
            assert row["requests"] == 100
            assert 0 < row["p50_us"] <= row["p99_us"]
            if name != "floor":
                assert math.isclose(row["rps_ratio"], row["rps"] / paths["floor"]["rps"])
        assert math.isclose(paths["accept"]["rps_ratio_rules"], paths["accept"]["rps"] / paths["floor_rules"]["rps"])
    growth = result["p50_growth"]["accept"]
    assert math.isclose(growth, result["sizes"][1]["paths"]["accept"]["p50_us"]
                        / result["sizes"][0]["paths"]["accept"]["p50_us"])
    assert [check["target"].split(" ")[0] for check in result["checks"]] == ["accept", "duplicate", "accept", "RSS"]
    # The human-readable table goes to stderr with --json, one line per target.
    assert err.count("PASS ") + err.count("FAIL ") == 4
    assert "floor_rules" in err


def test_stored_counts_stay_at_the_size(capsys: pytest.CaptureFixture[str]) -> None:
    """What a round stores is deleted after it, so every size is measured at its own count."""
    bench = load_benchmark()
    with bench.open_database() as (db, _backend):
        runner = bench.Bench(db)
        runner.fill(150)
        runner.rounds(120)
        assert db[Settings.leads_collection].count_documents({}) == 150
        for floor in runner.floors.values():
            assert floor.count_documents({}) == 150
        assert all(len(runner.latencies[path]) == 120 for path in bench.PATHS)


def test_index_layouts_small_run(capsys: pytest.CaptureFixture[str]) -> None:
    layouts = load_benchmark("bench_index_layouts")
    # The script itself raises if the duplicate it measures is stored.
    assert layouts.main(["--requests", "100", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    rows = result["layouts"]
    assert set(rows) == {*layouts.LAYOUTS, "duplicate_then_read_by_id"}
    assert all(row["inserts"] == 100 for row in rows.values())
    assert math.isclose(rows["floor"]["mean_vs_floor"], 1.0)


def test_load_lead_comparison_small_run(capsys: pytest.CaptureFixture[str]) -> None:
    # The script asserts that both loaders give the same lead before it times them.
    medians = load_benchmark("bench_load_lead").main(["--rounds", "2", "--number", "5"])
    assert set(medians) == {"load_lead", "Schema.load"} and all(v > 0 for v in medians.values())
    assert "load_lead / Schema.load" in capsys.readouterr().out
