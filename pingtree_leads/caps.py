"""Caps (contract section 10): what a source's caps are, and the windows they count in.

A cap is ``{"max": 500, "per": "day", "tz": "America/Chicago"}``: at most ``max`` leads
newly stored per window, windows reset at the start of each local hour, day, week
(Monday) or month in the IANA time zone ``tz`` (``"UTC"`` when omitted).  Local time is
what resets them, so a day on which the clocks change is 23 or 25 hours long.

The counting itself is done by the claims index (cap_slots.py, repository.py): each lead
of a capped source takes one *slot claim* per cap, ``~~<per>@<tz>:<window start>:<n>``
with ``n < max``.  ``~~`` sorts after every other claim (dedupe claims start with a
letter, hold twins with one ``~``), so the server reports a replay or a duplicate before
a full slot.  This module holds no state and touches no database.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: The periods a cap counts in.
PERIODS = ("hour", "day", "week", "month")
#: Most caps a source may have (one per period and zone at most).
MAX_CAPS = 8
#: Largest ``max``: a full window is found by reading its slots, so it stays bounded.
MAX_CAP_LEADS = 100_000
DEFAULT_TZ = "UTC"
#: Prefix of every slot claim: sorts after hold twins (``~<field>:``) and every dedupe claim.
CAP_PREFIX = "~~"
_CAP_KEYS = {"max", "per", "tz"}
_UTC = timezone.utc


@dataclasses.dataclass(frozen=True)
class Cap:
    """One cap of a source: at most ``max`` new leads per ``per`` in the zone ``tz``."""

    max: int
    per: str
    tz: str = DEFAULT_TZ

    @property
    def key(self) -> str:
        """What names the cap in its slot claims: ``day@America/Chicago``."""
        return f"{self.per}@{self.tz}"

    def as_document(self) -> dict[str, Any]:
        return {"max": self.max, "per": self.per, "tz": self.tz}

    def __str__(self) -> str:
        return f"{self.max}/{self.per}@{self.tz}"

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        """The window holding ``now``: (start, end) in UTC, start <= now < end."""
        return cap_window(self.per, ZoneInfo(self.tz), now)

    def window_prefix(self, start: datetime) -> str:
        """The common beginning of the slot claims of the window that starts at ``start``."""
        return f"{CAP_PREFIX}{self.key}:{start.astimezone(_UTC).strftime('%Y%m%dT%H%M%SZ')}"

    def slot_claim(self, start: datetime, number: int) -> str:
        return f"{self.window_prefix(start)}:{number}"


def is_cap_claim(claim: str) -> bool:
    return claim.startswith(CAP_PREFIX)


def slot_number(claim: str) -> int | None:
    """``n`` of a slot claim (None for anything else)."""
    if not is_cap_claim(claim):
        return None
    tail = claim.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    # A midnight that does not exist (a DST jump at 00:00) reads with the offset before the
    # jump: as UTC that is the jump itself, the first instant of the local day.
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(_UTC)


def cap_window(per: str, zone: ZoneInfo, now: datetime) -> tuple[datetime, datetime]:
    """(start, end) in UTC of the ``per`` window holding ``now`` in ``zone``."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=_UTC)
    local = now.astimezone(zone)
    if per == "hour":
        # The local hour, fold kept: the repeated hour of a fall-back day is two windows.
        start = local.replace(minute=0, second=0, microsecond=0).astimezone(_UTC)
        end = (start + timedelta(hours=1)).astimezone(zone).replace(minute=0, second=0, microsecond=0)
        end_utc = end.astimezone(_UTC)
        return start, end_utc if end_utc > start else start + timedelta(hours=1)
    today = local.date()
    if per == "day":
        first, after = today, today + timedelta(days=1)
    elif per == "week":  # weeks start on Monday
        first = today - timedelta(days=today.weekday())
        after = first + timedelta(days=7)
    elif per == "month":
        first = today.replace(day=1)
        after = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    else:
        raise ValueError(f"a cap's per is one of {', '.join(PERIODS)}; got {per!r}")
    return _local_midnight(first, zone), _local_midnight(after, zone)


def _zone_name(value: Any) -> str:
    if value is None:
        return DEFAULT_TZ
    if not isinstance(value, str):
        raise TypeError(f"a cap's tz is an IANA time zone name (e.g. 'America/Chicago'), not {type(value).__name__}")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"a cap's tz must be an IANA time zone name (e.g. 'America/Chicago'); got {value!r}") from None
    return value


def check_cap(item: Any) -> Cap:
    """One cap from a mapping ``{"max": int, "per": str, "tz": str}``; a ``Cap`` passes as itself."""
    if isinstance(item, Cap):
        item = item.as_document()
    if not isinstance(item, Mapping):
        raise TypeError(f"a cap is a mapping like {{'max': 500, 'per': 'day', 'tz': 'UTC'}}, not {type(item).__name__}")
    unknown = sorted(map(str, set(item) - _CAP_KEYS))
    if unknown:
        raise ValueError(f"a cap has only max, per and tz; got {', '.join(unknown)}")
    if "max" not in item or "per" not in item:
        raise ValueError("a cap needs max and per (tz is optional, UTC by default)")
    most = item["max"]
    if isinstance(most, bool) or not isinstance(most, int):
        raise TypeError(f"a cap's max is a whole number, not {type(most).__name__}")
    if not 1 <= most <= MAX_CAP_LEADS:
        raise ValueError(f"a cap's max must be from 1 to {MAX_CAP_LEADS}; got {most}")
    per = item["per"]
    if per not in PERIODS:
        raise ValueError(f"a cap's per is one of {', '.join(PERIODS)}; got {per!r}")
    return Cap(max=most, per=per, tz=_zone_name(item.get("tz")))


def check_caps(caps: Iterable[Any] | None) -> list[Cap]:
    """A source's caps, checked: ``TypeError``/``ValueError`` with a clear message.  None or [] = no cap."""
    if caps is None:
        return []
    if isinstance(caps, (str, bytes, Mapping)):
        raise TypeError(f"caps is a list of caps (e.g. [{{'max': 500, 'per': 'day'}}]), not one {type(caps).__name__}")
    try:
        items = list(caps)
    except TypeError:
        raise TypeError(f"caps is a list of caps, not {type(caps).__name__}") from None
    checked = [check_cap(item) for item in items]
    if len(checked) > MAX_CAPS:
        raise ValueError(f"a source has at most {MAX_CAPS} caps; got {len(checked)}")
    keys = [cap.key for cap in checked]
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:
        raise ValueError(f"two caps count in the same window ({', '.join(twice)}): keep the one you mean")
    return checked


def parse_cap(text: str) -> Cap:
    """A cap written as on the command line: ``500/day`` or ``500/day@America/Chicago``."""
    number, sep, rest = text.strip().partition("/")
    per, _, zone = rest.partition("@")
    if not sep or not number.strip().isdigit() or not per:
        raise ValueError(f"a cap is written MAX/PER[@TZ], e.g. 500/day@America/Chicago; got {text!r}")
    return check_cap({"max": int(number), "per": per.strip(), "tz": zone.strip() or None})


def caps_from_document(items: Any) -> tuple[Cap, ...]:
    """The caps stored on a source document (written by ``check_caps``)."""
    return tuple(Cap(max=int(c["max"]), per=str(c["per"]), tz=str(c.get("tz") or DEFAULT_TZ)) for c in items or ())


def iso_utc(moment: datetime) -> str:
    """``retry_at``: ISO 8601 in UTC with milliseconds."""
    return moment.astimezone(_UTC).isoformat(timespec="milliseconds")
