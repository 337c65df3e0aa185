"""Host validators: the host app's own rules, after the built-in ones and before storage.

A validator is ``validator(lead, source) -> {field: [messages]} | None``: ``lead`` is a
mapping of the values as they would be stored (``ValidLead.as_stored``), ``source`` a
``PublicSource``.  Several run in the order they were registered; every refusal is
merged into one 400 ``invalidField``.  A validator that raises is the host's bug: the
request is a 500 and nothing is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .sources import PublicSource

#: What a host validator looks like.
LeadValidator = Callable[[Mapping[str, Any], PublicSource], "Mapping[str, Any] | None"]


class LeadValidators:
    """An ordered list of host validators; ``register`` is the decorator hosts use."""

    def __init__(self) -> None:
        self._validators: list[LeadValidator] = []

    def register(self, validator: LeadValidator) -> LeadValidator:
        if not callable(validator):
            raise TypeError("a lead validator must be callable: validator(lead, source)")
        self._validators.append(validator)
        return validator

    def __bool__(self) -> bool:
        return bool(self._validators)

    def __len__(self) -> int:
        return len(self._validators)

    def run(self, lead: Mapping[str, Any], source: PublicSource) -> dict[str, list[str]]:
        """Every validator's refusals, merged in order ({} when all carry on)."""
        errors: dict[str, list[str]] = {}
        for validator in self._validators:
            found = validator(lead, source)
            for field, messages in (found or {}).items():
                listed = [messages] if isinstance(messages, str) else list(messages)
                errors.setdefault(str(field), []).extend(str(message) for message in listed)
        return errors
