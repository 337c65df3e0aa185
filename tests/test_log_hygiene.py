"""The library's own log lines never carry an API key or full PII, whatever the outcome."""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

import pymongo
import pytest
from bson import ObjectId

from pingtree_leads import create_source, get_runtime
from pingtree_leads.keys import key_matches

from .conftest import Poster, assert_envelope, lead, make_app

EMAIL = "Private.Person@Example.com"
MOBILE = "5557654321"


def test_no_key_or_pii_in_logs_for_any_outcome(
    database: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = create_source(database, "Logged", required_fields=["email"])
    inactive = create_source(database, "Off", is_active=False)
    app = make_app(database, max_body_bytes=2048)
    p = Poster(app.test_client(), database, src)
    off = Poster(p.client, database, inactive)
    private = lead(email=EMAIL, mobile=MOBILE, transaction_id="t-log")
    with caplog.at_level(logging.DEBUG, logger="pingtree_leads"):
        assert_envelope(p.post(private), 201)  # accept
        assert_envelope(p.post(private), 201)  # replay
        assert_envelope(p.post(dict(private, transaction_id="t-dup")), 201)  # duplicate
        assert_envelope(p.post(dict(private, first_name="Other")), 409)
        assert_envelope(p.post(lead(email=None, mobile=MOBILE)), 400)  # missingField
        assert_envelope(p.post(lead(email=EMAIL + "@", mobile=MOBILE[:-1])), 400)  # invalidField
        assert_envelope(p.post({"email": EMAIL, EMAIL.replace("@", "_at_").replace(".", "_"): "x"}), 201)
        assert_envelope(p.post({"email": "x" + EMAIL, "bad name " + EMAIL: MOBILE}), 400)  # extra name as sent
        assert_envelope(p.post(private, headers={"Authorization": f"Bearer {src.api_key}x"}), 401)
        assert_envelope(off.post(private), 403)
        assert_envelope(p.client.post(f"/api/lead/create/{src.id}z", json=private), 404)
        assert_envelope(p.client.put(p.url, json=private, headers=p.headers), 405)
        assert_envelope(p.post(dict(private, notes="n" * 3000)), 413)
        assert_envelope(p.client.post(p.url, data=EMAIL, content_type="text/plain", headers=p.headers), 415)
        runtime = get_runtime(app)

        def explode(*args: Any, **kwargs: Any) -> Any:
            raise ValueError(f"{EMAIL} {MOBILE} {src.api_key}")

        monkeypatch.setattr(runtime.repository, "store", explode)
        assert_envelope(p.post(lead(email="y" + EMAIL)), 500)
    dead = pymongo.MongoClient("mongodb://127.0.0.1:9", serverSelectionTimeoutMS=100, connectTimeoutMS=100)
    with caplog.at_level(logging.DEBUG, logger="pingtree_leads"):
        assert_envelope(Poster(make_app(dead["x"]).test_client(), database, src).post(private), 503)
    dead.close()

    text = "\n".join(record.getMessage() for record in caplog.records)
    assert len(caplog.records) >= 12  # the outcomes were logged ...
    assert "no valid key" in text and "source inactive" in text
    for secret in (src.api_key, inactive.api_key, EMAIL, EMAIL.lower(), MOBILE, MOBILE[:-1],
                   hashlib.sha256(src.api_key.encode()).hexdigest()):
        assert secret not in text, secret  # ... without keys or PII


def test_wrong_key_and_unknown_source_take_the_same_comparison_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from pingtree_leads.sources import SourceConfig

    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def counting(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    now = __import__("datetime").datetime.now(__import__("datetime").timezone.utc)
    known = SourceConfig(ObjectId(), "s", True, (), (), None, (("a" * 64, None),))
    assert not key_matches("wrong", known, now)
    assert not key_matches("wrong", None, now)
    assert not key_matches("", None, now)
    # One constant-time comparison of a 64-hex digest each time, known source or not.
    assert len(calls) == 3
    assert all(len(a) == len(b) == 64 for a, b in calls)
