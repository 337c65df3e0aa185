"""``flask pingtree-leads import``: --dry-run, --json, exit codes, column warnings, progress."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pymongo
import pytest
from bson import ObjectId
from flask import Flask

from pingtree_leads import PingtreeLeads, create_source
from pingtree_leads.cli import _Progress
from pingtree_leads.importer import likely_field

from .conftest import FakeClock, write_csv


@pytest.fixture
def cli_app(database: Any, clock: FakeClock) -> Flask:
    app = Flask("import_cli_host")
    PingtreeLeads().init_app(app, database=database, clock=clock)
    return app


def run(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["pingtree-leads", "import", *args])


def counts(result: Any) -> dict[str, int]:
    """The human summary's ``name: number`` lines."""
    pairs = (line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    return {name: int(value) for name, value in pairs if name != "rows"}


def rejected(path: Path) -> set[tuple[str, str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return {(r["reject_row"], r["reject_status"], r["reject_reason"]) for r in csv.DictReader(handle)}


def dump(database: Any) -> dict[str, Any]:
    """Everything in the database: every document of every collection, and the lead indexes."""
    names = sorted(database.list_collection_names())
    return {
        "collections": {name: list(database[name].find().sort("_id", 1)) for name in names},
        "lead_indexes": sorted(database["leads"].index_information()) if "leads" in names else None,
    }


HEADER = ["transaction_id", "first_name", "email", "mobile", "zip_code", "utm_source"]
STORED = ["t-stored", "Stored", "s@example.com", "5550000001", "10001", ""]
ROWS = [
    ["", "New", "new1@example.com", "5550000101", "10001", "a"],  # accepted
    ["", "Dup", "S@Example.com", "5550000102", "10001", ""],  # duplicate of a stored lead (email)
    STORED,  # already_imported: a replay of the stored lead
    ["t-stored", "Changed", "s@example.com", "5550000001", "10001", ""],  # conflict with the stored lead
    ["", "Twin", "new1@example.com", "5550000103", "10001", ""],  # duplicate of row 1 (same file)
    ["", "New", " NEW1@example.com ", "5550000101", "10001", "a"],  # already_imported: row 1 again
    ["t-new", "A", "a2@example.com", "5550000104", "10001", ""],  # accepted
    ["t-new", "B", "b2@example.com", "5550000105", "10001", ""],  # conflict with row 7 (same file)
    ["", "No", "", "5550000106", "10001", ""],  # missingField
    ["", "Bad", "bad@example.com", "5550000107", "1000", ""],  # invalidField
    ["", "Mob", "mob@example.com", "5550000104", "10001", ""],  # duplicate of row 7 on mobile
    ["ragged"],  # invalidField
]
EXPECTED = {"accepted": 2, "already_imported": 2, "duplicate": 3, "missingField": 1, "invalidField": 2,
            "conflict": 2, "capped": 0}


def test_dry_run_gives_a_real_imports_counts_and_writes_nothing(
    cli_app: Flask, database: Any, tmp_path: Path
) -> None:
    src = create_source(database, "Dry", required_fields=["email"])
    assert run(cli_app, src.id, str(write_csv(tmp_path / "stored.csv", HEADER, [STORED]))).exit_code == 0
    path = write_csv(tmp_path / "leads.csv", HEADER, ROWS)
    before = dump(database)

    dry = run(cli_app, src.id, str(path), "--dry-run", "--json", "--rejects", str(tmp_path / "dry.csv"))
    assert dry.exit_code == 0, dry.output
    predicted = json.loads(dry.stdout)
    assert predicted["dry_run"] is True and predicted["rows"] == len(ROWS)
    assert predicted["counts"] == EXPECTED
    assert dump(database) == before  # no lead, no claim taken or released, no index

    real = run(cli_app, src.id, str(path), "--batch-size", "3", "--rejects", str(tmp_path / "real.csv"))
    assert real.exit_code == 0, real.output
    assert counts(real) == predicted["counts"]
    assert rejected(tmp_path / "dry.csv") == rejected(tmp_path / "real.csv")
    assert database["leads"].count_documents({}) == 1 + EXPECTED["accepted"]
    # Now every valid row is decided by stored leads only, and the prediction still agrees.
    again = run(cli_app, src.id, str(path), "--dry-run", "--json")
    assert json.loads(again.stdout)["counts"] == counts(run(cli_app, src.id, str(path)))


def test_dry_run_lets_a_claim_past_the_window_go_without_releasing_it(
    cli_app: Flask, database: Any, clock: FakeClock, tmp_path: Path
) -> None:
    src = create_source(database, "Window", dedupe_fields=["email"], dedupe_window_days=1)
    run(cli_app, src.id, str(write_csv(tmp_path / "old.csv", ["email", "first_name"], [["w@example.com", "Old"]])))
    path = write_csv(tmp_path / "new.csv", ["email", "first_name"], [["w@example.com", "New"]])
    assert json.loads(run(cli_app, src.id, str(path), "--dry-run", "--json").stdout)["counts"]["duplicate"] == 1
    clock.advance(days=2)
    before = dump(database)
    dry = run(cli_app, src.id, str(path), "--dry-run", "--json")
    assert json.loads(dry.stdout)["counts"]["accepted"] == 1
    assert dump(database) == before  # the old lead keeps its claim
    assert counts(run(cli_app, src.id, str(path)))["accepted"] == 1
    old = database["leads"].find_one({"first_name": "Old"})
    assert old["claims"] == ["-" + old["transaction_id"]]  # a real import releases its email claim


def test_dry_run_on_a_fresh_database_creates_nothing(cli_app: Flask, database: Any, tmp_path: Path) -> None:
    src = create_source(database, "Fresh")
    path = write_csv(tmp_path / "f.csv", ["email", "first_name"], [["f@example.com", "F"], ["f@example.com", "G"]])
    result = run(cli_app, src.id, str(path), "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("dry run, nothing stored")
    assert counts(result) == {"accepted": 1, "already_imported": 0, "duplicate": 1, "missingField": 0,
                              "invalidField": 0, "conflict": 0, "capped": 0}
    assert "indexes are not in place" in result.stderr
    assert "leads" not in database.list_collection_names()


def test_json_summary_is_all_that_goes_to_stdout(cli_app: Flask, database: Any, tmp_path: Path) -> None:
    src = create_source(database, "Json")
    path = write_csv(tmp_path / "j.csv", ["email", "cell"], [["j@example.com", "5551230000"], ["bad", ""]])
    rejects = tmp_path / "rejects.csv"
    result = run(cli_app, src.id, str(path), "--json", "--rejects", str(rejects))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # the whole of stdout is one JSON object
    assert set(summary) == {"source_id", "dry_run", "rows", "counts", "elapsed_seconds", "rejects"}
    assert summary["source_id"] == src.id and summary["dry_run"] is False and summary["rows"] == 2
    assert summary["counts"]["accepted"] == 1 and summary["counts"]["invalidField"] == 1
    assert summary["rejects"] == str(rejects) and isinstance(summary["elapsed_seconds"], float)
    assert "Warning: column 'cell'" in result.stderr and "importing: 2/2 rows" in result.stderr


def test_human_summary_shows_the_rejects_file_and_the_time(cli_app: Flask, database: Any, tmp_path: Path) -> None:
    src = create_source(database, "Human")
    path = write_csv(tmp_path / "h.csv", ["email"], [["h@example.com"], ["nope"]])
    rejects = tmp_path / "rejects.csv"
    result = run(cli_app, src.id, str(path), "--rejects", str(rejects))
    assert result.exit_code == 0, result.output
    assert f"rejected rows written to {rejects}" in result.stdout.splitlines()
    assert re.search(r"^elapsed \d+\.\d\d s$", result.stdout, re.MULTILINE)


@pytest.mark.parametrize(
    ("rows", "dry_run", "exit_code"),
    [
        ([["bad"], ["x@"], ["y@"]], False, 3),  # every row rejected
        ([["bad"], ["x@"], ["y@"]], True, 3),
        ([], False, 0),  # a header and no data row
        ([["a@example.com"], ["bad"]], False, 0),  # some accepted
        ([["a@example.com"], ["bad"]], True, 0),
    ],
)
def test_exit_codes(
    cli_app: Flask, database: Any, tmp_path: Path, rows: list[list[str]], dry_run: bool, exit_code: int
) -> None:
    src = create_source(database, "Codes")
    path = write_csv(tmp_path / "c.csv", ["email"], rows)
    result = run(cli_app, src.id, str(path), "--json", *(["--dry-run"] if dry_run else []))
    assert result.exit_code == exit_code, result.output
    assert json.loads(result.stdout)["rows"] == len(rows)  # the summary comes first, also on failure


def test_exit_code_when_every_row_was_already_imported(cli_app: Flask, database: Any, tmp_path: Path) -> None:
    src = create_source(database, "Again")
    path = write_csv(tmp_path / "a.csv", ["email"], [["a@example.com"], ["b@example.com"]])
    assert run(cli_app, src.id, str(path), "--json").exit_code == 0
    duplicates = write_csv(tmp_path / "d.csv", ["email", "first_name"], [["a@example.com", "Other"]])
    assert run(cli_app, src.id, str(duplicates), "--json").exit_code == 3  # rejected as duplicates: nothing taken
    for extra in ((), ("--dry-run",)):
        result = run(cli_app, src.id, str(path), "--json", *extra)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["counts"]["already_imported"] == 2


def test_a_database_error_has_its_own_exit_code(tmp_path: Path) -> None:
    client: Any = pymongo.MongoClient("mongodb://127.0.0.1:1", serverSelectionTimeoutMS=200, connect=False)
    app = Flask("dead_db")
    PingtreeLeads().init_app(app, database=client["x"])
    path = write_csv(tmp_path / "d.csv", ["email"], [["a@example.com"]])
    try:
        result = run(app, str(ObjectId()), str(path))
    finally:
        client.close()
    assert result.exit_code == 4, result.output
    assert "Error: database error (ServerSelectionTimeoutError)" in result.stderr
    assert "Traceback" not in result.output


def test_columns_that_look_like_lead_fields_are_warned_about(
    cli_app: Flask, database: Any, tmp_path: Path
) -> None:
    src = create_source(database, "Typos")
    # (Email, in another case only, is no look-alike: it is read as email, tests/test_issue18_fields.py.)
    header = ["E_MAIL", "e-mail", "phone", "zip", "utm_source", "first name"]
    path = write_csv(tmp_path / "t.csv", header, [["a@example.com", "", "5550001111", "10001", "x", ""]])
    result = run(cli_app, src.id, str(path))
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning: ")]
    for column, option in (("E_MAIL", "--map E_MAIL=email"), ("e-mail", "--map e-mail=email"),
                           ("first name", "--map 'first name=first_name'")):
        assert any(f"column {column!r}" in w and w.endswith(option) for w in warnings), (column, warnings)
    # None for utm_source (a real extra field), nor for phone and zip: aliases every source reads.
    assert len(warnings) == 3
    assert "Warning" not in result.stdout
    assert counts(result)["accepted"] == 1  # phone and zip were read as mobile and zip_code
    # A column that is mapped, or whose field another column already fills, is not warned about.
    mapped = run(cli_app, src.id, str(path), "--map", "e-mail=email")
    assert [w for w in mapped.stderr.splitlines() if w.startswith("Warning: ")] == [
        w for w in warnings if "'first name'" in w]


@pytest.mark.parametrize(
    ("column", "field"),
    [
        ("Email", "email"), ("e-mail", "email"), ("E_MAIL", "email"), ("emial", "email"), ("phone", "mobile"),
        ("Mobile Phone", "mobile"), ("zip", "zip_code"), ("zipcode", "zip_code"), ("dob", "date_of_birth"),
        ("date_of_brith", "date_of_birth"), ("firstname", "first_name"), ("first name", "first_name"),
        ("adress", "address"), ("sate", "state"), ("TrustedForm Cert URL", "xxTrustedFormCertUrl"),
        ("utm_source", None), ("ip", None), ("address2", None), ("email2", None),
        ("work_email", None), ("phone_type", None), ("name", None), ("age", None), ("county", None),
    ],
)
def test_likely_field(column: str, field: str | None) -> None:
    assert likely_field(column) == field


def test_progress_shows_rows_rate_and_eta_on_stderr(
    cli_app: Flask, database: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = create_source(database, "Progress")
    rows = [[f"p{i}@example.com"] for i in range(5)]
    path = write_csv(tmp_path / "p.csv", ["email"], [*rows[:2], [], *rows[2:]])  # a blank line is no row
    result = run(cli_app, src.id, str(path), "--batch-size", "2")
    assert re.search(r"^importing: 5/5 rows \(100%\), [\d,]+ rows/s, \d+\.\d s$", result.stderr, re.MULTILINE)
    assert "rows/s" not in result.stdout
    with _Progress(10, "importing", every=0) as progress:  # a line per update when stderr is no terminal
        progress.update(4)
    err = capsys.readouterr()
    assert re.search(r"^importing: 4/10 rows \(40%\), [\d,]+ rows/s, ETA \d+:\d\d:\d\d$", err.err, re.MULTILINE)
    assert err.out == ""
