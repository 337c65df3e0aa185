"""The soak run at a small size (slow: .ci/run runs it; `python -m tests.soak` for big runs)."""

from __future__ import annotations

from typing import Any

import pytest

from .soak import run


@pytest.mark.slow
def test_soak_small(real_database: Any) -> None:
    figures = run(real_database, leads=2000, threads=8, duplicates=0.2, replays=0.05, invalid=0.1)
    assert figures["stored"] == figures["expected_stored"] == 1300
    outcomes = figures["outcomes"]
    assert outcomes["accept"] == 1300  # one per unique lead, whichever of its posts came first
    assert outcomes["invalidField"] == 200
    assert outcomes["duplicate"] + outcomes.get("accept/replayed", 0) == 500
    print(f"\nsoak: {figures}")
