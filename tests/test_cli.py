"""``flask pingtree-leads ...`` commands, with their error paths, on every backend."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from flask import Flask
from openapi_spec_validator import validate

from pingtree_leads import PingtreeLeads, create_blueprint, create_source

from .conftest import Poster, assert_envelope, lead, write_csv


@pytest.fixture
def cli_app(database: Any) -> Flask:
    app = Flask("cli_host")
    PingtreeLeads().init_app(app, database=database)
    return app


def run(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["pingtree-leads", *args])


def created(result: Any) -> tuple[str, str]:
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    return lines["id"].strip(), lines["api key"].strip()


def test_create_source_prints_id_and_key_and_stores_the_config(cli_app: Flask, database: Any) -> None:
    result = run(cli_app, "create-source", "Home Q1", "--required", "email", "--required", "mobile,zip_code",
                 "--dedupe", "email", "--window-days", "30", "--inactive")
    assert result.exit_code == 0, result.output
    source_id, key = created(result)
    doc = database["database_sources"].find_one({"_id": ObjectId(source_id)})
    assert doc["name"] == "Home Q1"
    assert doc["required_fields"] == ["email", "mobile", "zip_code"]
    assert doc["dedupe_fields"] == ["email"]
    assert doc["dedupe_window_days"] == 30
    assert doc["is_active"] is False
    assert doc["api_keys"][0]["hash"] == hashlib.sha256(key.encode()).hexdigest()


def test_created_source_works_on_the_endpoint(cli_app: Flask, database: Any) -> None:
    source_id, key = created(run(cli_app, "create-source", "Live", "--dedupe", "none"))
    response = cli_app.test_client().post(f"/api/lead/create/{source_id}", json=lead(),
                                          headers={"Authorization": f"Bearer {key}"})
    assert assert_envelope(response, 201)["lead_status"] == "accept"
    assert database["database_sources"].find_one({"_id": ObjectId(source_id)})["dedupe_fields"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("create-source", "X", "--required", "shoe_size"), "shoe_size"),
        (("create-source", "X", "--dedupe", "1abc"), "1abc"),
        (("create-source", "X", "--dedupe", "phone"), "phone"),  # an alias: dedupe on mobile
        (("create-source", "X", "--window-days", "0"), "window-days"),
        (("create-source", "   "), "blank"),
        (("rotate-key", "nope"), "no database source"),
        (("rotate-key", str(ObjectId())), "no database source"),
        (("rotate-key", str(ObjectId()), "--grace", "-1"), "grace"),
        (("activate", str(ObjectId())), "no database source"),
        (("deactivate", "123"), "no database source"),
        (("import", str(ObjectId()), "missing.csv"), "missing.csv"),
    ],
)
def test_bad_arguments_fail_clearly(cli_app: Flask, args: tuple[str, ...], message: str) -> None:
    result = run(cli_app, *args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_list_sources_never_shows_keys(cli_app: Flask, database: Any) -> None:
    first = create_source(database, "Alpha", required_fields=["email"], dedupe_window_days=7)
    second = create_source(database, "Beta", dedupe_fields=[], is_active=False)
    result = run(cli_app, "list-sources")
    assert result.exit_code == 0
    assert first.id in result.output and second.id in result.output
    assert "Alpha" in result.output and "Beta" in result.output and "7d" in result.output
    for src in (first, second):
        assert src.api_key not in result.output
        assert hashlib.sha256(src.api_key.encode()).hexdigest() not in result.output


def test_list_sources_shows_suppression_lists_and_retention(cli_app: Flask, database: Any) -> None:
    create_source(database, "Listed and kept", suppression_lists=["dnc", "complainers"], retention_days=90)
    lines = run(cli_app, "list-sources").output.splitlines()
    header, row = lines[0].split(), lines[1].split()
    assert header[-3:] == ["LISTS", "KEEP", "NAME"]
    assert row[header.index("LISTS")] == "dnc,complainers" and row[header.index("KEEP")] == "90d"


def test_rotate_key_with_grace_and_activation(cli_app: Flask, database: Any) -> None:
    src = create_source(database, "Rotated")
    result = run(cli_app, "rotate-key", src.id, "--grace", "3600")
    assert result.exit_code == 0, result.output
    new_key = result.stdout.split("api key: ")[1].strip()
    p = Poster(cli_app.test_client(), database, src)
    assert_envelope(p.post(lead()), 201)  # old key: in its grace period
    p.headers = {"Authorization": f"Bearer {new_key}"}
    assert_envelope(p.post(lead()), 201)
    assert run(cli_app, "deactivate", src.id).exit_code == 0
    assert_envelope(p.post(lead()), 403)
    assert run(cli_app, "activate", src.id).exit_code == 0
    assert_envelope(p.post(lead()), 201)


def test_ensure_indexes_and_openapi(cli_app: Flask, database: Any) -> None:
    result = run(cli_app, "ensure-indexes")
    assert result.exit_code == 0
    assert "pingtree_claims" in database["leads"].index_information()
    # The suppression lists' and the erasure records' indexes too (create_indexes=False deployments).
    assert "pingtree_suppression_expiry" in database["suppressions"].index_information()
    assert "pingtree_erasure_keys" in database["erasures"].index_information()
    result = run(cli_app, "openapi", "--prefix", "/x")
    assert result.exit_code == 0
    import json

    doc = json.loads(result.stdout)
    validate(doc)
    assert list(doc["paths"]) == ["/x/api/lead/create/{db_source_id}", "/x/api/lead/ping/{db_source_id}"]


def test_plain_blueprint_users_get_the_commands_too(database: Any) -> None:
    app = Flask("plain")
    app.register_blueprint(create_blueprint(database))
    result = run(app, "create-source", "Plain")
    assert result.exit_code == 0
    assert len(created(result)[0]) == 24


# -- import ---------------------------------------------------------------------------------------

def summary(result: Any) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split(": ") for line in result.stdout.splitlines() if ": " in line)}


HEADER = ["First Name", "last_name", "email", "mobile", "state", "zip_code", "campaign"]


def test_import_counts_every_outcome_and_writes_rejects(cli_app: Flask, database: Any, tmp_path: Path) -> None:
    src = create_source(database, "Import", required_fields=["email"])
    rows = [
        ["Ada", "Lovelace", "ada@example.com", "5550000001", "NY", "10001", "spring"],
        ["Alan", "Turing", "alan@example.com", "5550000002", "ca", "94105", ""],
        ["Ada", "Again", "ADA@example.com", "5550000009", "NY", "10001", ""],  # duplicate email, same file
        ["No", "Email", "", "5550000003", "TX", "73301", ""],  # missingField
        ["Bad", "Zip", "bad@example.com", "5550000004", "TX", "7330", ""],  # invalidField
        ["Ragged", "Row", "r@example.com"],  # too few values
    ]
    path = write_csv(tmp_path / "leads.csv", HEADER, rows)
    rejects = tmp_path / "rejects.csv"
    result = run(cli_app, "import", src.id, str(path), "--map", "First Name=first_name", "--rejects", str(rejects),
                 "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert summary(result) == {"rows": 6, "accepted": 2, "already_imported": 0, "duplicate": 1,
                               "missingField": 1, "invalidField": 2, "conflict": 0, "capped": 0}
    stored = {d["email"]: d for d in database["leads"].find()}
    assert set(stored) == {"ada@example.com", "alan@example.com"}
    assert stored["ada@example.com"]["extra"] == {"campaign": "spring"}
    assert stored["alan@example.com"]["state"] == "CA"
    with rejects.open(newline="", encoding="utf-8") as handle:
        rejected = list(csv.DictReader(handle))
    by_row = {int(r["reject_row"]): r for r in rejected}
    assert {n: r["reject_status"] for n, r in by_row.items()} == {
        3: "duplicate", 4: "missingField", 5: "invalidField", 6: "invalidField"}
    assert by_row[3]["last_name"] == "Again" and "email" in by_row[3]["reject_reason"]
    assert "zip_code" in by_row[5]["reject_reason"]
    assert "3 values" in by_row[6]["reject_reason"]


def test_reimporting_the_same_file_stores_nothing_new(cli_app: Flask, database: Any, tmp_path: Path) -> None:
    src = create_source(database, "Twice", dedupe_fields=[])  # no dedupe: only transaction ids can stop it
    rows = [["A", "B", f"p{i}@example.com", f"555000{i:04d}", "NY", "10001", ""] for i in range(25)]
    path = write_csv(tmp_path / "leads.csv", ["first_name", *HEADER[1:]], rows)
    first = run(cli_app, "import", src.id, str(path))
    assert summary(first)["accepted"] == 25
    again = run(cli_app, "import", src.id, str(path), "--batch-size", "7")
    assert again.exit_code == 0
    assert summary(again)["accepted"] == 0 and summary(again)["already_imported"] == 25
    assert database["leads"].count_documents({}) == 25


def test_import_uses_transaction_ids_from_the_file(cli_app: Flask, database: Any, tmp_path: Path) -> None:
    src = create_source(database, "Txn")
    Poster(cli_app.test_client(), database, src).post(lead(transaction_id="t-1", email="t1@example.com"))
    path = write_csv(tmp_path / "t.csv", ["transaction_id", "email"],
                     [["t-1", "other@example.com"], ["t-2", "t2@example.com"]])
    result = run(cli_app, "import", src.id, str(path))
    assert summary(result)["conflict"] == 1 and summary(result)["accepted"] == 1
    assert database["leads"].find_one({"transaction_id": "t-2"})["email"] == "t2@example.com"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "no header"),
        (b"\n\n", "no header"),
        (b"email,email\na@example.com,b@example.com\n", "repeated"),
        ("first_name,email\nJos\xe9,j@example.com\n".encode("latin-1"), "not UTF-8"),
        (b'email\n"unterminated\n', None),  # csv accepts it: a value with a newline (then invalid email)
    ],
)
def test_bad_files_fail_clearly(
    cli_app: Flask, database: Any, tmp_path: Path, content: bytes, message: str | None
) -> None:
    src = create_source(database, "Files")
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    result = run(cli_app, "import", src.id, str(path))
    assert "Traceback" not in result.output
    if message is None:
        assert result.exit_code == 3 and summary(result)["accepted"] == 0  # rows, none accepted (§7)
    else:
        assert result.exit_code == 1 and message in result.output
    assert database["leads"].count_documents({}) == 0


def test_bad_mappings_fail_clearly(cli_app: Flask, database: Any, tmp_path: Path) -> None:
    src = create_source(database, "Maps")
    path = write_csv(tmp_path / "m.csv", ["email", "phone"], [["a@example.com", "5551112222"]])
    for args, message in (
        (("--map", "phone"), "COLUMN=FIELD"),
        (("--map", "cell=mobile"), "not in the header"),
        (("--map", "phone=bad name"), "not a lead field"),
        (("--map", "phone=email"), "more than one column"),
    ):
        result = run(cli_app, "import", src.id, str(path), *args)
        assert result.exit_code == 1 and message in result.output, (args, result.output)
    result = run(cli_app, "import", src.id, str(path), "--map", "phone=mobile")
    assert summary(result)["accepted"] == 1
    assert database["leads"].find_one()["mobile"] == "5551112222"


def test_import_reads_a_bom_and_windows_line_ends(cli_app: Flask, database: Any, tmp_path: Path) -> None:
    src = create_source(database, "Bom")
    path = tmp_path / "bom.csv"
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows([["email", "city"], ["b@example.com", "El Paso"]])
    path.write_bytes(b"\xef\xbb\xbf" + buffer.getvalue().encode())
    result = run(cli_app, "import", src.id, str(path))
    assert summary(result)["accepted"] == 1
    assert database["leads"].find_one()["city"] == "El Paso"


def test_import_refuses_an_inactive_source(cli_app: Flask, database: Any, tmp_path: Path) -> None:
    src = create_source(database, "Off", is_active=False)
    path = write_csv(tmp_path / "i.csv", ["email"], [["a@example.com"]])
    result = run(cli_app, "import", src.id, str(path))
    assert result.exit_code == 1 and "inactive" in result.output
    assert database["leads"].count_documents({}) == 0


def test_rejects_file_keeps_the_file_column_names(cli_app: Flask, database: Any, tmp_path: Path) -> None:
    src = create_source(database, "Names")
    path = write_csv(tmp_path / "n.csv", ["Phone", "email"], [["123", "a@example.com"]])
    rejects = tmp_path / "rejects.csv"
    run(cli_app, "import", src.id, str(path), "--map", "Phone=mobile", "--rejects", str(rejects))
    with rejects.open(newline="", encoding="utf-8") as handle:
        assert next(csv.reader(handle)) == ["Phone", "email", "reject_row", "reject_status", "reject_reason"]


def test_derived_transaction_ids_ignore_whitespace_case_and_column_order(
    cli_app: Flask, database: Any, tmp_path: Path
) -> None:
    src = create_source(database, "Stable", dedupe_fields=[])
    first = write_csv(tmp_path / "a.csv", ["email", "state"], [["a@example.com", "ny"]])
    second = write_csv(tmp_path / "b.csv", ["state", "e"], [[" NY ", " A@Example.com "]])
    assert summary(run(cli_app, "import", src.id, str(first)))["accepted"] == 1
    result = run(cli_app, "import", src.id, str(second), "--map", "e=email")
    assert summary(result)["already_imported"] == 1
    assert database["leads"].count_documents({}) == 1


def test_ensure_indexes_says_why_the_server_refused(cli_app: Flask, database: Any) -> None:
    database["leads"].create_index([("transaction_id", 1)], name="pingtree_claims")  # the name, another shape
    result = run(cli_app, "ensure-indexes")
    assert result.exit_code == 1
    assert "refused to create the indexes" in result.output and "Traceback" not in result.output
